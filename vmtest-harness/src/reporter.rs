//! The libtest front door's reporter: what the engine's events show beside
//! libtest's own lines (which libtest-mimic prints). Notices go to stderr;
//! with `--nocapture`, tests' output goes where they wrote it, as it comes.

use std::io::Write;

use vmtest_engine::{Event, Reporter, Stream};

pub(crate) struct LibtestReporter {
    /// `--nocapture`: stream every test's output live.
    pub nocapture: bool,
    /// `VMTEST_VERBOSE`: say how long each boot and each test took.
    pub verbose: bool,
    /// Whether stderr is a terminal (asked once, not per event).
    pub terminal: bool,
}

impl LibtestReporter {
    /// A test that does not run on its kernel, and why (libtest has no
    /// place for an ignored test's reason).
    pub(crate) fn ignored(&self, name: &str, reason: &str) {
        eprintln!("vmtest: {name} is ignored: {reason}");
    }
}

impl Reporter for LibtestReporter {
    fn report(&self, event: &Event) {
        match event {
            Event::Output { stream, data, .. } if self.nocapture => {
                let _ = match stream {
                    Stream::Stdout => std::io::stdout().lock().write_all(data),
                    Stream::Stderr => std::io::stderr().lock().write_all(data),
                };
            }
            _ => {
                if let Some(notice) = notice(event, self.verbose, self.terminal) {
                    eprint!("{notice}");
                }
            }
        }
    }
}

/// What `event` shows on stderr, if anything (not a test's output): with
/// `verbose`, how long boots and tests took; `terminal` when stderr is one.
pub(crate) fn notice(event: &Event, verbose: bool, terminal: bool) -> Option<String> {
    Some(match event {
        Event::Accelerator { accel, reason } => {
            format!(
                "vmtest: accelerator {}: {reason}\n",
                accel.name().to_uppercase()
            )
        }
        Event::VmBooting { shape, attempt, .. } if verbose => {
            format!("vmtest: starting a VM for {shape} (attempt {attempt})\n")
        }
        Event::VmReady {
            shape,
            boot_time,
            restored,
            ..
        } if verbose => {
            let how = if *restored { "restored" } else { "booted" };
            format!(
                "vmtest: {} {how} in {boot_time:.2?} ({shape})\n",
                shape.kernel.display()
            )
        }
        Event::SnapshotUnusable { shape, reason } => {
            let reason = reason.lines().next().unwrap_or_default();
            format!("vmtest: no snapshot for {shape}: {reason}; booting it instead\n")
        }
        Event::VmRetrying { shape, reason, .. } => {
            let reason = reason.lines().next().unwrap_or_default();
            format!("vmtest: {shape} did not come up ({reason}); trying once more\n")
        }
        Event::VmDied { shape, death, .. } => format!(
            "vmtest: the VM for {shape} died: {}; its running tests fail, the next ones get a \
             new VM\n",
            death.cause
        ),
        Event::GaveUp { shape, deaths } => format!(
            "vmtest: giving up on {shape}: its VMs died {deaths} times; its remaining tests fail\n"
        ),
        Event::JobFinished { name, finished, .. } if verbose => {
            format!(
                "vmtest: {name} ran in {:.2?} in its VM\n",
                finished.duration
            )
        }
        Event::ProfilesLost {
            destination,
            reason,
        } => format!(
            "vmtest: cannot copy the guest's coverage profiles to {}: {reason}\n",
            destination.display()
        ),
        Event::Downloading { .. } | Event::Downloaded { .. } => {
            vmtest_frontdoor::notes::download(event, terminal)?
        }
        _ => return None,
    })
}
