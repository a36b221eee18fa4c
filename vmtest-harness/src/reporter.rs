//! The libtest front door's reporter: what the engine's events show beside
//! libtest's own lines (which libtest-mimic prints). Notices go to stderr;
//! with `--nocapture`, tests' output goes where they wrote it, as it comes.

use std::io::{IsTerminal, Write};

use vmtest_engine::{Event, Reporter, Stream};

pub(crate) struct LibtestReporter {
    /// `--nocapture`: stream every test's output live.
    pub nocapture: bool,
    /// `VMTEST_VERBOSE`: say how long each boot and each test took.
    pub verbose: bool,
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
            Event::Accelerator { accel, reason } => {
                eprintln!("vmtest: accelerator {}: {reason}", accel.name().to_uppercase());
            }
            Event::VmBooting { shape, attempt, .. } if self.verbose => {
                eprintln!("vmtest: starting a VM for {shape} (attempt {attempt})");
            }
            Event::VmReady {
                shape,
                boot_time,
                restored,
                ..
            } if self.verbose => {
                let how = if *restored { "restored" } else { "booted" };
                eprintln!("vmtest: {} {how} in {boot_time:.2?} ({shape})", shape.kernel.display());
            }
            Event::SnapshotUnusable { shape, reason } => {
                let reason = reason.lines().next().unwrap_or_default();
                eprintln!("vmtest: no snapshot for {shape}: {reason}; booting it instead");
            }
            Event::VmRetrying { shape, reason, .. } => {
                let reason = reason.lines().next().unwrap_or_default();
                eprintln!("vmtest: {shape} did not come up ({reason}); trying once more");
            }
            Event::VmDied { shape, death, .. } => eprintln!(
                "vmtest: the VM for {shape} died: {}; its running tests fail, the next ones get a \
                 new VM",
                death.cause
            ),
            Event::GaveUp { shape, deaths } => eprintln!(
                "vmtest: giving up on {shape}: its VMs died {deaths} times; its remaining tests fail"
            ),
            Event::Output { stream, data, .. } if self.nocapture => {
                let _ = match stream {
                    Stream::Stdout => std::io::stdout().lock().write_all(data),
                    Stream::Stderr => std::io::stderr().lock().write_all(data),
                };
            }
            Event::JobFinished { name, finished, .. } if self.verbose => {
                eprintln!("vmtest: {name} ran in {:.2?} in its VM", finished.duration);
            }
            Event::ProfilesLost {
                destination,
                reason,
            } => eprintln!(
                "vmtest: cannot copy the guest's coverage profiles to {}: {reason}",
                destination.display()
            ),
            Event::Downloading { .. } | Event::Downloaded { .. } => {
                if let Some(note) =
                    vmtest_frontdoor::notes::download(event, std::io::stderr().is_terminal())
                {
                    eprint!("{note}");
                }
            }
            _ => {}
        }
    }
}
