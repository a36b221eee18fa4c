//! One VM: QEMU started (or a saved guest loaded into it) and brought to a
//! ready test server, job slots handed out, and its end: QEMU asked to
//! quit, then killed, and the guest's coverage profiles copied out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::host::run_dir::VmDir;
use crate::model::death::{read_console, VmLogs};
use crate::model::events::{Event, Reporter, VmId};
use crate::qemu::command;
use crate::qemu::monitor::Monitor;
use crate::qemu::process::QemuProcess;
use crate::qemu::wire::WireError;
use crate::snapshot::{Draft, SavedMemory, Snapshot, SnapshotUse};

use super::coverage::Profiles;
use super::error::BootError;
use super::guest::Guest;
use super::link::{Link, Phase};
use super::spec::{BootSpec, Paths};

/// How long a restored guest may take to have its test server ready (or
/// the boot timeout, if shorter): far longer than it needs, and far shorter
/// than a boot's timeout, so that a snapshot gone bad costs little before
/// the VM is booted instead.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(30);

/// A VM with a ready test server.
pub(crate) struct Vm {
    pub(super) guest: Arc<Guest>,
    monitor: Mutex<Option<Monitor>>,
    pub(super) capacity: usize,
    /// Copied to the host once QEMU is gone.
    profiles: Mutex<Option<Profiles>>,
    _dir: VmDir,
}

impl Vm {
    /// Starts QEMU and waits until the guest's test server is ready. A boot
    /// that saves a snapshot whose memory stays in a file ends once it is
    /// saved, and the VM is the snapshot restored.
    pub(crate) fn boot(
        id: VmId,
        dir: VmDir,
        spec: &BootSpec,
        reporter: Arc<dyn Reporter>,
    ) -> Result<Vm, BootError> {
        let paths = Paths::new(dir.path());
        let how = match spec.snapshot {
            None => How::Boot,
            Some((_, SnapshotUse::Restore(snapshot))) => How::Restore(snapshot),
            Some((snapshots, SnapshotUse::Save(snapshot))) => match snapshots.draft() {
                Ok(draft) => How::Save(draft, snapshot),
                Err(error) => {
                    reporter.report(&Event::SnapshotUnusable {
                        shape: Arc::clone(spec.shape),
                        reason: format!("cannot save it: {error}"),
                    });
                    How::Boot
                }
            },
        };
        let (guest, monitor) = match start(id, &paths, spec, how, &reporter)? {
            Started::Ready(guest, monitor) => (guest, monitor),
            Started::Saved(snapshot) => {
                match start(id, &paths, spec, How::Restore(snapshot), &reporter)? {
                    Started::Ready(guest, monitor) => (guest, monitor),
                    Started::Saved(_) => unreachable!("a restore saves nothing"),
                }
            }
        };
        Ok(Vm {
            capacity: spec.shape.job_capacity(),
            guest,
            monitor: Mutex::new(monitor),
            profiles: Mutex::new(spec.profiles.cloned()),
            _dir: dir,
        })
    }

    pub(crate) fn alive(&self) -> bool {
        self.guest.link.state().death.is_none()
    }

    /// Asks QEMU to quit, then makes sure it is gone, and copies the
    /// guest's coverage profiles out.
    pub(crate) fn shutdown(&self) {
        self.guest
            .link
            .update(|state| state.phase = Phase::Stopping);
        let monitor = self.monitor.lock().take();
        self.guest.qemu().stop(monitor);
        if let Some(profiles) = self.profiles.lock().take() {
            if let Err(error) = profiles.collect() {
                self.guest.reporter.report(&Event::ProfilesLost {
                    destination: profiles.destination,
                    reason: error.to_string(),
                });
            }
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// How a VM comes up.
enum How<'a> {
    Boot,
    Restore(&'a Snapshot),
    /// Boot, its memory in the draft's file, and save it at the init's
    /// handshake into the snapshot.
    Save(Draft, &'a Snapshot),
}

/// What [`start`] came to.
enum Started<'a> {
    /// The test server is ready; QMP, if it answered.
    Ready(Arc<Guest>, Option<Monitor>),
    /// The snapshot was saved, its memory in its file, and its QEMU ended.
    Saved(&'a Snapshot),
}

/// Starts QEMU as `how` says, with its files in `paths`.
fn start<'a>(
    id: VmId,
    paths: &Paths,
    spec: &BootSpec,
    how: How<'a>,
    reporter: &Arc<dyn Reporter>,
) -> Result<Started<'a>, BootError> {
    let started = Instant::now();
    let deadline = started + spec.settings.boot_timeout;
    let memory_mib = spec.shape.memory_mib;
    let mut args = spec.qemu_arguments(paths);
    match &how {
        How::Boot => {}
        How::Restore(snapshot) => {
            // The console of the boot that was saved comes first.
            let _ = std::fs::copy(snapshot.console(), &paths.console);
            if let Some(memory) = snapshot.memory() {
                args.extend(command::memory_file(&memory, memory_mib, false));
            }
            args.extend(command::incoming());
        }
        How::Save(draft, _) => args.extend(command::memory_file(&draft.memory(), memory_mib, true)),
    }
    let mut qemu = QemuProcess::spawn(spec.qemu_binary(), args, &paths.qemu_log)?;
    let stream = match qemu.connect(&paths.control, deadline) {
        Ok(stream) => stream,
        // QEMU itself was that slow: the boot counts as hung.
        Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {
            return Err(BootError::Hung {
                timeout: spec.settings.boot_timeout,
                logs: VmLogs::new(qemu.stderr(), &read_console(&paths.console)),
            });
        }
        Err(error) => return Err(BootError::Connect(error)),
    };
    let reader = stream.try_clone().map_err(BootError::Connect)?;
    let guest = Arc::new(Guest {
        vm: id,
        shape: Arc::clone(spec.shape),
        link: Link::new(id, stream),
        qemu: Mutex::new(qemu),
        console_log: paths.console.clone(),
        reporter: Arc::clone(reporter),
    });
    let reading = Arc::clone(&guest);
    std::thread::Builder::new()
        .name(format!("vmtest-vm-{id}"))
        .spawn(move || reading.read(reader))
        .map_err(BootError::Connect)?;
    // QMP saves and restores snapshots and asks QEMU to quit; without it,
    // shutdown kills QEMU instead.
    let mut monitor = Monitor::connect(&paths.monitor).ok();
    let timeout = spec.settings.boot_timeout;
    let started_up = match (how, monitor.as_mut()) {
        (How::Restore(snapshot), monitor) => {
            let timeout = RESTORE_TIMEOUT.min(timeout);
            monitor
                .ok_or(BootError::RestoreWithoutMonitor)
                .and_then(|monitor| {
                    restore_into(monitor, snapshot, started + timeout).map_err(|source| {
                        BootError::Restore {
                            source,
                            last_words: guest.last_words(),
                        }
                    })
                })
                .and_then(|()| guest.start(spec.params, started + timeout, timeout))
        }
        (How::Save(draft, snapshot), Some(monitor)) if guest.init_waits(deadline) => {
            if guest.save(draft, monitor, snapshot) == Some(SavedMemory::InFile) {
                guest.end();
                return Ok(Started::Saved(snapshot));
            }
            guest.start(spec.params, deadline, timeout)
        }
        (How::Save(..), None) => {
            guest.cannot_save("QEMU's monitor did not answer");
            guest.start(spec.params, deadline, timeout)
        }
        (How::Boot | How::Save(..), _) => guest.start(spec.params, deadline, timeout),
    };
    match started_up {
        Ok(()) => Ok(Started::Ready(guest, monitor)),
        Err(error) => {
            guest.qemu().kill();
            Err(error)
        }
    }
}

/// Loads `snapshot` into a QEMU started with [`command::incoming`], and runs it.
fn restore_into(
    monitor: &mut Monitor,
    snapshot: &Snapshot,
    deadline: Instant,
) -> Result<(), WireError> {
    if snapshot.memory().is_some() {
        monitor.ignore_shared_memory()?;
    }
    let command = snapshot.load_command().ok_or_else(|| WireError::Refused {
        peer: "QMP",
        command: "migrate-incoming",
        message: format!("{} is not UTF-8", snapshot.state().display()),
    })?;
    monitor.load(&command, deadline)?;
    monitor.resume()
}
