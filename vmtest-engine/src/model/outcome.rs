//! How a job ended, as the engine reports it: a domain type that each front
//! door maps once (libtest's `Failed`, the command's exit code).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use std::error::Error;
use std::fmt::Write as _;

use vmtest_contract::messages::{ExitStatus, Verdict};

use super::death::VmDeath;
use super::splat::Splat;

/// Why a job could not run at all: the engine's `SetupError` (a bad
/// setting, a kernel that cannot be prepared or booted, …) or a refusal
/// of the guest, its type kept (`downcast_ref`).
pub type SetupCause = Arc<dyn Error + Send + Sync + 'static>;

/// How one job (a test or a command) ended.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Outcome {
    /// The test reported success and exited normally.
    Passed,
    /// The test returned an error, or `#[should_panic]` was not satisfied.
    Failed { message: String },
    /// The test panicked; the message is also in its output.
    Panicked { message: String },
    /// The process exited with this code: a command's result, or, for a
    /// test, an exit before it reported anything (a failure even when 0).
    Exited { code: i32 },
    /// A signal killed the process (never a success).
    Signaled { signal: i32 },
    /// The job outlived its timeout and was killed.
    TimedOut { after: Duration },
    /// The VM died while the job ran in it.
    VmDied(Arc<VmDeath>),
    /// The job could not run at all: bad settings, a kernel that cannot be
    /// prepared or booted, a guest that refused it.
    SetupFailed(SetupCause),
    /// The run was cancelled ([`cancel`](crate::cancel)) before the job
    /// ended: its VM was stopped, or it never started.
    Cancelled,
}

impl Outcome {
    /// How a process ended, read with what it reported (a test's verdict;
    /// never anything for a command). A verdict counts only if the process
    /// then exited normally: a test that passed and then crashed failed.
    pub(crate) fn of(status: ExitStatus, verdict: Option<Verdict>) -> Outcome {
        match (verdict, status) {
            (Some(Verdict::Passed), ExitStatus::Exited(0)) => Outcome::Passed,
            (Some(Verdict::Failed { message }), ExitStatus::Exited(_)) => {
                Outcome::Failed { message }
            }
            (Some(Verdict::Panicked { message }), ExitStatus::Exited(_)) => {
                Outcome::Panicked { message }
            }
            (_, ExitStatus::Signaled(signal)) => Outcome::Signaled { signal },
            (_, ExitStatus::Exited(code)) => Outcome::Exited { code },
        }
    }
}

/// A finished job: its outcome, the kernel splats it caused that were not
/// allowed, what it printed, and how long it took.
#[derive(Debug, Clone)]
pub struct Finished {
    pub outcome: Outcome,
    pub splats: Vec<Splat>,
    pub output: Captured,
    pub duration: Duration,
}

impl Finished {
    /// A job that never started.
    pub(crate) fn setup_failed(error: SetupCause, duration: Duration) -> Finished {
        Finished {
            outcome: Outcome::SetupFailed(error),
            splats: Vec::new(),
            output: Captured::default(),
            duration,
        }
    }

    /// Whether a test passed: it said so, and the kernel did not splat.
    pub fn passed(&self) -> bool {
        matches!(self.outcome, Outcome::Passed) && self.splats.is_empty()
    }
}

impl fmt::Display for Outcome {
    /// Why a job did not pass, in a sentence (empty for [`Outcome::Passed`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Passed => Ok(()),
            Outcome::Failed { message } => f.write_str(message),
            // The panic message is in the output already.
            Outcome::Panicked { .. } => Ok(()),
            Outcome::Exited { code } => write!(f, "the process exited with code {code}"),
            Outcome::Signaled { signal } => {
                write!(f, "the process was killed by signal {signal}")?;
                match signal_name(*signal) {
                    Some(name) => write!(f, " ({name})"),
                    None => Ok(()),
                }
            }
            Outcome::TimedOut { after } => write!(f, "timed out after {after:?} and was killed"),
            Outcome::VmDied(death) => write!(f, "{death}"),
            Outcome::SetupFailed(error) => f.write_str(&chain(error.as_ref())),
            Outcome::Cancelled => f.write_str("the run was cancelled"),
        }
    }
}

/// An error and its causes, one per line after the first, as reporters
/// show them.
pub fn chain(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // `#[error(transparent)]` and wrappers repeat their source's text.
        if !text.ends_with(&cause_text) {
            let _ = write!(text, "\n  caused by: {cause_text}");
        }
        source = cause.source();
    }
    text
}

/// The usual name of a signal, for messages.
pub fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSYS => "SIGSYS",
        _ => return None,
    })
}

/// What a job printed, bounded: the first and the last [`Captured::HALF`]
/// bytes are kept, and the bytes in between are counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    head: Vec<u8>,
    /// The most recent bytes after `head` filled, as a ring.
    tail: Vec<u8>,
    /// Where the next byte goes in `tail` once it is full.
    tail_start: usize,
    dropped: u64,
}

impl Captured {
    /// How much of each end is kept.
    pub const HALF: usize = 512 << 10;

    pub(crate) fn push(&mut self, mut data: &[u8]) {
        let room = Self::HALF - self.head.len();
        if room > 0 {
            let take = room.min(data.len());
            self.head.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        // Only the last HALF bytes of `data` can stay in the tail.
        if data.len() > Self::HALF {
            let skipped = data.len() - Self::HALF;
            self.dropped += (self.tail.len() + skipped) as u64;
            self.tail.clear();
            self.tail_start = 0;
            data = &data[skipped..];
        }
        let room = Self::HALF - self.tail.len();
        let take = room.min(data.len());
        self.tail.extend_from_slice(&data[..take]);
        data = &data[take..];
        // The tail is full: the rest overwrites its oldest bytes, in place.
        while !data.is_empty() {
            let take = (Self::HALF - self.tail_start).min(data.len());
            self.tail[self.tail_start..self.tail_start + take].copy_from_slice(&data[..take]);
            self.tail_start = (self.tail_start + take) % Self::HALF;
            self.dropped += take as u64;
            data = &data[take..];
        }
    }

    /// How many bytes in the middle were not kept.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The kept bytes, with a line where bytes were dropped.
    pub fn bytes(&self) -> Vec<u8> {
        let mut bytes = self.head.clone();
        if self.dropped > 0 {
            let note = format!(
                "\n[vmtest: {} bytes of output dropped here; the first and last {} KiB are kept]\n",
                self.dropped,
                Self::HALF >> 10
            );
            bytes.extend_from_slice(note.as_bytes());
        }
        bytes.extend_from_slice(&self.tail[self.tail_start..]);
        bytes.extend_from_slice(&self.tail[..self.tail_start]);
        bytes
    }

    /// [`Captured::bytes`] as text, invalid UTF-8 replaced.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_names_every_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot create /x")]
        struct Outer(#[source] std::io::Error);
        let error = Outer(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "denied",
        ));
        assert_eq!(chain(&error), "cannot create /x\n  caused by: denied");
    }

    #[test]
    fn small_output_is_kept_whole() {
        let mut captured = Captured::default();
        captured.push(b"hello ");
        captured.push(b"world");
        assert_eq!(captured.bytes(), b"hello world");
        assert_eq!(captured.dropped(), 0);
    }

    #[test]
    fn large_output_keeps_both_ends_and_counts_the_rest() {
        let mut captured = Captured::default();
        let lines: Vec<String> = (0..200_000).map(|n| format!("line {n}\n")).collect();
        for line in &lines {
            captured.push(line.as_bytes());
        }
        let total: usize = lines.iter().map(String::len).sum();
        assert_eq!(captured.dropped() as usize, total - 2 * Captured::HALF);
        let text = captured.text();
        assert!(text.starts_with("line 0\nline 1\n"));
        assert!(text.ends_with("line 199998\nline 199999\n"));
        assert!(text.contains(&format!(
            "[vmtest: {} bytes of output dropped",
            captured.dropped()
        )));
    }

    #[test]
    fn pushes_of_any_size_keep_the_same_ends() {
        let data: Vec<u8> = (0..3 * Captured::HALF + 17)
            .map(|n| (n % 251) as u8)
            .collect();
        let mut whole = Captured::default();
        whole.push(&data);
        for size in [1, 1000, Captured::HALF - 1, Captured::HALF + 3] {
            let mut pieces = Captured::default();
            for piece in data.chunks(size) {
                pieces.push(piece);
            }
            assert_eq!(pieces.bytes(), whole.bytes(), "pieces of {size}");
            assert_eq!(pieces.dropped(), whole.dropped());
        }
        assert_eq!(whole.dropped() as usize, data.len() - 2 * Captured::HALF);
        let bytes = whole.bytes();
        assert!(bytes.ends_with(&data[data.len() - Captured::HALF..]));
    }

    #[test]
    fn bytes_need_not_be_text() {
        let mut captured = Captured::default();
        captured.push(&[0xff, 0xfe, b'\n']);
        assert_eq!(captured.bytes(), [0xff, 0xfe, b'\n']);
        assert_eq!(captured.text(), "\u{fffd}\u{fffd}\n");
    }

    #[test]
    fn a_verdict_counts_only_with_a_normal_exit() {
        let passed = Some(Verdict::Passed);
        assert!(matches!(
            Outcome::of(ExitStatus::Exited(0), passed.clone()),
            Outcome::Passed
        ));
        assert!(matches!(
            Outcome::of(ExitStatus::Signaled(11), passed),
            Outcome::Signaled { signal: 11 }
        ));
        assert!(matches!(
            Outcome::of(ExitStatus::Exited(0), None),
            Outcome::Exited { code: 0 }
        ));
        assert!(matches!(
            Outcome::of(
                ExitStatus::Exited(0),
                Some(Verdict::Failed {
                    message: "m".into()
                })
            ),
            Outcome::Failed { .. }
        ));
    }

    #[test]
    fn signals_are_named() {
        let killed = Outcome::Signaled { signal: 11 }.to_string();
        assert_eq!(killed, "the process was killed by signal 11 (SIGSEGV)");
    }
}
