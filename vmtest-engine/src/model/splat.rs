//! Kernel splats: warnings, oopses, sanitizer reports, lockups, stalls and
//! hung tasks in the guest kernel's log while jobs run.
//!
//! libbpf's CI greps dmesg for these after its tests, with an allowlist of
//! known ones; no harness checked them per test. Here the guest's server
//! forwards each kernel log record with the jobs running when it was logged
//! (every record a job caused arrives before the job's end), and a splat
//! fails exactly those jobs, unless a pattern allows it.

use regex::{Regex, RegexSet};

use vmtest_contract::messages::JobId;

/// Log lines that start a splat (after the kernel's own prefix).
const STARTS: &[&str] = &[
    r"\bWARNING:",
    r"\bBUG:",
    r"kernel BUG at",
    r"\bOops\b",
    r"general protection fault",
    r"\bUBSAN:",
    r"\bKASAN:",
    r"hard LOCKUP",
    r"soft lockup",
    r"rcu.*detected stall",
    r"blocked for more than \d+ seconds",
    r"Kernel panic",
];
/// The line that ends a warning's or an oops's report.
const END: &str = "---[ end trace";
/// The most lines kept of one splat.
const MAX_LINES: usize = 80;
/// The most splats kept per VM (the first ones explain the rest).
const MAX_SPLATS: usize = 64;

/// One splat: its first line and its whole text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Splat {
    /// The line that started it, e.g. `WARNING: CPU: 0 PID: 81 at ...`.
    pub title: String,
    /// Its lines, the title first.
    pub text: String,
}

/// Reads a VM's kernel log records and remembers the splats in them, with
/// the jobs each one concerns.
pub(crate) struct SplatTracker {
    starts: RegexSet,
    splats: Vec<(Splat, Vec<JobId>)>,
    /// The splat still collecting lines, and how many it has.
    open: Option<usize>,
    lines: usize,
}

impl SplatTracker {
    pub(crate) fn new() -> SplatTracker {
        SplatTracker {
            starts: RegexSet::new(STARTS).expect("the splat patterns are valid"),
            splats: Vec::new(),
            open: None,
            lines: 0,
        }
    }

    /// One record, logged while the jobs `running` ran.
    pub(crate) fn record(&mut self, text: &str, running: &[JobId]) {
        if self.starts.is_match(text) && self.splats.len() < MAX_SPLATS {
            self.splats.push((
                Splat {
                    title: text.to_string(),
                    text: text.to_string(),
                },
                running.to_vec(),
            ));
            self.open = Some(self.splats.len() - 1);
            self.lines = 1;
            return;
        }
        if let Some(open) = self.open {
            let splat = &mut self.splats[open].0;
            splat.text.push('\n');
            splat.text.push_str(text);
            self.lines += 1;
            if text.contains(END) || self.lines >= MAX_LINES {
                self.open = None;
            }
        }
    }

    /// The splats logged while `job` ran.
    pub(crate) fn for_job(&self, job: JobId) -> Vec<Splat> {
        self.splats
            .iter()
            .filter(|(_, jobs)| jobs.contains(&job))
            .map(|(splat, _)| splat.clone())
            .collect()
    }
}

/// An allowed-splat pattern that does not compile.
#[derive(Debug, thiserror::Error)]
#[error("allowed-splat pattern {pattern:?} is not a valid regular expression")]
pub struct SplatPatternError {
    pub pattern: String,
    #[source]
    pub source: regex::Error,
}

/// Patterns for splats that are known and fail nothing.
#[derive(Debug, Clone, Default)]
pub(crate) struct Allowed {
    patterns: Vec<Regex>,
}

impl Allowed {
    /// Compiles `patterns` (regular expressions, matched against every line
    /// of a splat).
    pub(crate) fn new<'a>(
        patterns: impl IntoIterator<Item = &'a str>,
    ) -> Result<Allowed, SplatPatternError> {
        let patterns = patterns
            .into_iter()
            .map(|pattern| {
                Regex::new(pattern).map_err(|source| SplatPatternError {
                    pattern: pattern.to_string(),
                    source,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Allowed { patterns })
    }

    /// These patterns and `other`'s.
    pub(crate) fn and(&self, other: &Allowed) -> Allowed {
        Allowed {
            patterns: self
                .patterns
                .iter()
                .chain(&other.patterns)
                .cloned()
                .collect(),
        }
    }

    /// `splats` without the allowed ones.
    pub(crate) fn filter(&self, splats: Vec<Splat>) -> Vec<Splat> {
        splats
            .into_iter()
            .filter(|splat| {
                !self
                    .patterns
                    .iter()
                    .any(|pattern| splat.text.lines().any(|line| pattern.is_match(line)))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WARNING: &[&str] = &[
        "------------[ cut here ]------------",
        "WARNING: CPU: 0 PID: 81 at drivers/misc/lkdtm/bugs.c:87 lkdtm_WARNING+0x1c/0x30",
        "Modules linked in:",
        "CPU: 0 PID: 81 Comm: kernels-4f2 Not tainted 6.1.0 #1",
        "RIP: 0010:lkdtm_WARNING+0x1c/0x30",
        "Call Trace:",
        " <TASK>",
        " direct_entry+0x90/0xd0",
        " </TASK>",
        "---[ end trace 0000000000000000 ]---",
    ];

    #[test]
    fn a_warning_is_one_splat_for_the_jobs_running_then() {
        let mut tracker = SplatTracker::new();
        tracker.record("random: crng init done", &[1]);
        for line in WARNING {
            tracker.record(line, &[1, 2]);
        }
        tracker.record("after the end", &[1, 2]);
        let splats = tracker.for_job(2);
        assert_eq!(splats.len(), 1);
        assert!(splats[0].title.starts_with("WARNING: CPU: 0 PID: 81"));
        assert!(splats[0]
            .text
            .ends_with("---[ end trace 0000000000000000 ]---"));
        assert!(!splats[0].text.contains("after the end"));
        assert!(tracker.for_job(3).is_empty());
    }

    #[test]
    fn every_kind_starts_a_splat() {
        for line in [
            "BUG: kernel NULL pointer dereference, address: 0000000000000000",
            "kernel BUG at mm/slub.c:123!",
            "Oops: general protection fault, probably for non-canonical address",
            "UBSAN: array-index-out-of-bounds in net/core/filter.c:42:3",
            "BUG: KASAN: slab-out-of-bounds in bpf_prog_run+0x1/0x2",
            "watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [spin:99]",
            "Watchdog detected hard LOCKUP on cpu 1",
            "rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
            "INFO: task kworker/0:1:12 blocked for more than 120 seconds.",
        ] {
            let mut tracker = SplatTracker::new();
            tracker.record(line, &[5]);
            assert_eq!(tracker.for_job(5).len(), 1, "{line}");
        }
        let mut tracker = SplatTracker::new();
        tracker.record("virtio_net virtio0: mergeable buffers enabled", &[5]);
        assert!(tracker.for_job(5).is_empty());
    }

    #[test]
    fn allowed_patterns_match_any_line() {
        let mut tracker = SplatTracker::new();
        for line in WARNING {
            tracker.record(line, &[1]);
        }
        let splats = tracker.for_job(1);
        assert_eq!(
            Allowed::new(["lkdtm_WARNING"])
                .unwrap()
                .filter(splats.clone()),
            []
        );
        assert_eq!(
            Allowed::new(["direct_entry"])
                .unwrap()
                .filter(splats.clone()),
            []
        );
        assert_eq!(
            Allowed::new(["unrelated"]).unwrap().filter(splats.clone()),
            splats
        );
        let error = Allowed::new(["(unclosed"]).unwrap_err();
        assert!(error.to_string().contains("\"(unclosed\""), "{error}");
    }
}
