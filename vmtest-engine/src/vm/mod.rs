//! One VM's life: boot to a ready test server, run jobs in it, notice at
//! once when it dies (QEMU exits, the connection drops, or the guest stops
//! answering), shut it down.
//!
//! A reader thread per VM reads the control port: it files each message
//! with [`link::Link`], sends the heartbeat ([`liveness`]), and declares the
//! VM dead. Every waiting job wakes then: those that had started fail with
//! the reason and the console, the others are handed back to be run on a
//! fresh VM.

mod details;
mod link;
mod liveness;

pub use details::Details;

pub(crate) use details::read_console;

use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::boot::coverage::Profiles;
use crate::boot::params::Export;
use crate::boot::BootMedia;
use crate::contract::boot::{BootParams, CONTROL_PORT, SERVER_EXITED};
use crate::contract::messages::{Bytes, JobId, ReplyReader, Request};
use crate::engine::Input;
use crate::error::SetupError;
use crate::events::{Event, Reporter, VmId};
use crate::outcome::{Finished, Outcome};
use crate::qemu::command::{self, Machine, QemuConfig};
use crate::qemu::monitor::Monitor;
use crate::qemu::process::{QemuProcess, SpawnError};
use crate::run_dir::VmDir;
use crate::settings::Settings;
use crate::shape::VmShape;
use crate::snapshot::{self, Plan, Snapshot, Snapshots};
use crate::splat::Allowed;

use self::link::{JobEnd, JobState, Link, Phase};
use self::liveness::{Liveness, DEAD_AFTER};

/// How long QEMU may take to exit after its guest went away.
const EXIT_GRACE: Duration = Duration::from_secs(2);
/// How long a killed job may take to be reported.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// How often an interactive job's input forwarder looks whether it has ended.
const INPUT_POLL: Duration = Duration::from_millis(100);
/// How often the reader thread wakes without messages, to keep the heartbeat.
const TICK: Duration = Duration::from_millis(100);
/// The longest line read from the guest: longer ones are dropped (the
/// server's own lines are far shorter).
const MAX_LINE: usize = 1 << 20;
/// How much one read from the control port takes.
const READ_BUFFER: usize = 1 << 16;
/// Bytes of the host's entropy each guest's random pool gets.
const SEED_BYTES: usize = 32;
/// How long a restored guest may take to have its test server ready (or
/// the boot timeout, if shorter): far longer than it needs, and far shorter
/// than a boot's timeout, so that a snapshot gone bad costs little before
/// the VM is booted instead.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long saving a snapshot may take.
const SAVE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long QEMU may take to quit when asked.
const QUIT_GRACE: Duration = Duration::from_secs(3);

/// Why a VM died.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeathCause {
    #[error("the guest kernel panicked")]
    KernelPanic,
    #[error("the test server in the guest exited ({how})")]
    ServerExited { how: String },
    #[error("the VM stopped: QEMU exited ({status})")]
    QemuExited { status: String },
    #[error(
        "the guest stopped answering for {silent:.1?} (a hung kernel, or a job that keeps the \
         test server from running)"
    )]
    Unresponsive { silent: Duration },
    #[error("lost the control connection to the guest: {0}")]
    Connection(#[source] io::Error),
}

/// A VM's death: why, and what its console showed.
#[derive(Debug, thiserror::Error)]
#[error("{cause}{details}")]
pub struct VmDeath {
    pub cause: DeathCause,
    pub details: Details,
}

/// Why a VM did not come up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BootError {
    #[error("cannot create the VM's directory")]
    Workdir(#[source] io::Error),
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    #[error("cannot connect to QEMU's control socket")]
    Connect(#[source] io::Error),
    #[error("the VM died while booting: {0}")]
    Died(Arc<VmDeath>),
    #[error("the guest init failed: {message}{details}")]
    Init { message: String, details: Details },
    /// The guest never got ready: worth one more try (a boot in about twenty
    /// has been seen to hang under TCG).
    #[error("the guest was not ready within {timeout:?} of QEMU starting{details}")]
    Hung { timeout: Duration, details: Details },
    #[error(
        "the image's guest agent did not answer within {timeout:?} of QEMU starting: does the \
         image run qemu-guest-agent at boot? (a slow image may need a longer \
         VMTEST_BOOT_TIMEOUT){details}"
    )]
    AgentSilent { timeout: Duration, details: Details },
    #[error("loading the saved guest failed: {source}{}", qemu_said(.last_words))]
    Restore {
        source: crate::qemu::WireError,
        /// The last line QEMU printed.
        last_words: String,
    },
    #[error("QEMU's monitor did not answer, so the saved guest cannot be loaded")]
    RestoreWithoutMonitor,
    #[error("QEMU exited ({status}) before the image's guest agent answered{details}")]
    ImageExited { status: String, details: Details },
    #[error("talking to the image's guest agent failed: {error}{details}")]
    Agent {
        error: crate::qemu::WireError,
        details: Details,
    },
}

impl BootSpec<'_> {
    /// QEMU's command line for this boot, with `paths` and its control
    /// port at `control`.
    fn qemu_config<'p>(
        &'p self,
        paths: &'p Paths,
        control: &'p [(&'p str, &'p Path)],
    ) -> QemuConfig<'p> {
        let shape = self.shape;
        QemuConfig {
            machine: Machine {
                accel: self.settings.accel.accel,
                kvm_cpu: shape.kvm_cpu.as_deref(),
                cpus: shape.cpus,
                memory_mib: shape.memory_mib,
            },
            boot: command::Boot::Kernel {
                kernel: &self.media.kernel,
                initramfs: &self.media.initramfs,
                cmdline: self.cmdline,
                root: &shape.root,
            },
            exports: self.exports,
            ports: control,
            console_log: &paths.console,
            monitor_socket: &paths.monitor,
            extra: &shape.qemu_args,
        }
    }

    fn qemu_binary(&self) -> &Path {
        self.shape
            .qemu_binary
            .as_ref()
            .unwrap_or(&self.settings.qemu_binary)
    }
}

/// The name of the snapshot a boot of `spec` saves or restores: its QEMU
/// command line, with the same paths for every VM where they do not shape
/// the saved guest, the kernel, initramfs and QEMU it uses, and the host.
pub(crate) fn snapshot_key(spec: &BootSpec) -> String {
    let shape = Arc::new(VmShape {
        root: "/root".into(),
        ..(**spec.shape).clone()
    });
    let exports: Vec<Export> = spec
        .exports
        .iter()
        .map(|export| Export {
            host_path: "/export".into(),
            ..export.clone()
        })
        .collect();
    let neutral = BootSpec {
        shape: &shape,
        exports: &exports,
        ..*spec
    };
    let paths = Paths::new(Path::new("/vm"));
    let control = [(CONTROL_PORT, paths.control.as_path())];
    let args = command::arguments(&neutral.qemu_config(&paths, &control));
    let qemu = crate::qemu::process::resolve(spec.qemu_binary());
    let host = snapshot::host::identity(&qemu, spec.settings.accel.accel, &spec.settings.cache_dir);
    snapshot::key(
        &args,
        &[&spec.media.kernel, &spec.media.initramfs, &qemu],
        &host,
    )
}

/// Everything one boot needs.
pub(crate) struct BootSpec<'a> {
    pub settings: &'a Settings,
    pub media: &'a BootMedia,
    pub shape: &'a Arc<VmShape>,
    pub cmdline: &'a str,
    pub exports: &'a [Export],
    /// The init's boot parameters, but for the clock and the seed, which
    /// are the host's when it sends them.
    pub params: &'a BootParams,
    /// Where the guest's coverage profiles go, if it writes any.
    pub profiles: Option<&'a Profiles>,
    /// Restore the guest from a snapshot, or save one as it boots.
    pub snapshot: Option<(&'a Snapshots, &'a Plan)>,
}

/// A VM with a ready test server.
pub(crate) struct Vm {
    shared: Arc<Shared>,
    monitor: Mutex<Option<Monitor>>,
    capacity: usize,
    /// Copied to the host once QEMU is gone.
    profiles: Mutex<Option<Profiles>>,
    _dir: VmDir,
}

/// What the VM and its reader thread share.
struct Shared {
    vm: VmId,
    shape: Arc<VmShape>,
    link: Link,
    qemu: Mutex<QemuProcess>,
    console_log: PathBuf,
    reporter: Arc<dyn Reporter>,
}

/// A job slot in a VM, given back when dropped.
pub(crate) struct Reservation {
    vm: Arc<Vm>,
}

/// What became of a job sent to a VM.
pub(crate) enum Attempt {
    Finished(Finished),
    /// The VM died before the job's process existed: run it elsewhere.
    NotStarted,
}

impl Vm {
    /// Starts QEMU and waits until the guest's test server is ready.
    pub(crate) fn boot(
        id: VmId,
        dir: VmDir,
        spec: &BootSpec,
        reporter: Arc<dyn Reporter>,
    ) -> Result<Vm, BootError> {
        let started = Instant::now();
        let deadline = started + spec.settings.boot_timeout;
        let paths = Paths::new(dir.path());
        let control = [(CONTROL_PORT, paths.control.as_path())];
        let mut args = command::arguments(&spec.qemu_config(&paths, &control));
        let restore = match spec.snapshot {
            Some((_, Plan::Restore(snapshot))) => {
                // The console of the boot that was saved comes first.
                let _ = std::fs::copy(snapshot.console(), &paths.console);
                args.extend(command::incoming());
                Some(snapshot)
            }
            _ => None,
        };
        let mut qemu = QemuProcess::spawn(spec.qemu_binary(), args, &paths.qemu_log)?;
        let stream = match connect(&paths.control, &mut qemu, deadline) {
            Ok(stream) => stream,
            // QEMU itself was that slow: the boot counts as hung.
            Err(error) if error.kind() == io::ErrorKind::TimedOut => {
                return Err(BootError::Hung {
                    timeout: spec.settings.boot_timeout,
                    details: Details::new(qemu.stderr(), &read_console(&paths.console)),
                });
            }
            Err(error) => return Err(BootError::Connect(error)),
        };
        let reader = stream.try_clone().map_err(BootError::Connect)?;
        let shared = Arc::new(Shared {
            vm: id,
            shape: Arc::clone(spec.shape),
            link: Link::new(id, stream),
            qemu: Mutex::new(qemu),
            console_log: paths.console,
            reporter,
        });
        let reading = Arc::clone(&shared);
        std::thread::Builder::new()
            .name(format!("vmtest-vm-{id}"))
            .spawn(move || reading.read(reader))
            .map_err(BootError::Connect)?;
        // QMP saves and restores snapshots and asks QEMU to quit; without
        // it, shutdown kills QEMU instead.
        let mut monitor = Monitor::connect(&paths.monitor).ok();
        let started_up = match (restore, monitor.as_mut()) {
            (Some(snapshot), monitor) => {
                let timeout = RESTORE_TIMEOUT.min(spec.settings.boot_timeout);
                let restored =
                    monitor
                        .ok_or(BootError::RestoreWithoutMonitor)
                        .and_then(|monitor| {
                            restore_into(monitor, snapshot, started + timeout).map_err(|source| {
                                BootError::Restore {
                                    source,
                                    last_words: shared.last_words(),
                                }
                            })
                        });
                restored.and_then(|()| shared.start(spec.params, started + timeout, timeout))
            }
            (None, monitor) => {
                shared.handshake(spec.params, deadline, spec.settings.boot_timeout, || {
                    if let (Some((snapshots, Plan::Save(snapshot))), Some(monitor)) =
                        (spec.snapshot, monitor)
                    {
                        shared.save(snapshots, monitor, snapshot, &shared.console_log);
                    }
                })
            }
        };
        if let Err(error) = started_up {
            shared.qemu().kill();
            return Err(error);
        }
        Ok(Vm {
            capacity: spec.shape.job_capacity(),
            shared,
            monitor: Mutex::new(monitor),
            profiles: Mutex::new(spec.profiles.cloned()),
            _dir: dir,
        })
    }

    /// A job slot, waiting while the VM is full; `None` if it died.
    pub(crate) fn reserve(vm: &Arc<Vm>) -> Option<Reservation> {
        let capacity = vm.capacity;
        let mut state = vm.shared.link.wait_until(None, |state| {
            state.death.is_some() || state.reserved < capacity
        });
        if state.death.is_some() {
            return None;
        }
        state.reserved += 1;
        Some(Reservation { vm: Arc::clone(vm) })
    }

    pub(crate) fn alive(&self) -> bool {
        self.shared.link.state().death.is_none()
    }

    /// Asks QEMU to quit, then makes sure it is gone.
    pub(crate) fn shutdown(&self) {
        self.shared
            .link
            .update(|state| state.phase = Phase::Stopping);
        let monitor = self
            .monitor
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(mut monitor) = monitor {
            // The guest's root is read-only and its shares are written
            // through: nothing is lost by not shutting the guest down first.
            if monitor.quit().is_ok() {
                self.shared.qemu().wait_for_exit(QUIT_GRACE);
            }
        }
        self.shared.qemu().kill();
        let profiles = self
            .profiles
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(profiles) = profiles {
            if let Err(error) = profiles.collect() {
                self.shared.reporter.report(&Event::ProfilesLost {
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

impl Reservation {
    /// Runs one job: sends `request` (whose id is `id`), streams its output
    /// as events, and waits for its end, killing it after `timeout`.
    pub(crate) fn run(
        &self,
        id: JobId,
        name: Arc<str>,
        request: &Request,
        timeout: Option<Duration>,
        allowed: &Allowed,
        input: Option<&Mutex<Receiver<Input>>>,
    ) -> Attempt {
        let ended = AtomicBool::new(false);
        std::thread::scope(|scope| {
            if let Some(input) = input {
                scope.spawn(|| self.forward(id, input, &ended));
            }
            let attempt = self.wait_for(id, name, request, timeout, allowed);
            ended.store(true, Ordering::Relaxed);
            attempt
        })
    }

    /// Sends the job what arrives on `input` until it has ended.
    fn forward(&self, id: JobId, input: &Mutex<Receiver<Input>>, ended: &AtomicBool) {
        let input = input
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        while !ended.load(Ordering::Relaxed) {
            let request = match input.recv_timeout(INPUT_POLL) {
                Ok(Input::Bytes(data)) => Request::Input {
                    id,
                    data: Bytes(data),
                },
                Ok(Input::Resize(size)) => Request::Resize { id, size },
                Ok(Input::Close) => Request::CloseInput { id },
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            // A failed send means the VM is going away: the reader says why.
            let _ = self.vm.shared.link.send(&request);
        }
    }

    /// Sends `request` and waits for the job's end.
    fn wait_for(
        &self,
        id: JobId,
        name: Arc<str>,
        request: &Request,
        timeout: Option<Duration>,
        allowed: &Allowed,
    ) -> Attempt {
        let started = Instant::now();
        let link = &self.vm.shared.link;
        link.update(|state| {
            state.jobs.insert(
                id,
                JobState {
                    name,
                    started: false,
                    output: Default::default(),
                    end: None,
                },
            )
        });
        // A failed send means the VM is going away: the reader will say why.
        let _ = link.send(request);
        let over = |state: &link::State| {
            state.death.is_some() || state.jobs.get(&id).is_some_and(|job| job.end.is_some())
        };
        let mut state = link.wait_until(timeout.map(|timeout| started + timeout), over);
        let timed_out = !over(&state);
        if timed_out {
            drop(state);
            let _ = link.send(&Request::Kill { id });
            state = link.wait_until(Some(Instant::now() + KILL_GRACE), over);
        }
        let job = state
            .jobs
            .remove(&id)
            .expect("the job was registered above");
        let death = state.death.clone();
        drop(state);
        let (outcome, splats) = match (job.end, death) {
            (None, Some(_)) if !job.started => return Attempt::NotStarted,
            (None, Some(death)) => (Outcome::VmDied(death), Vec::new()),
            (Some(JobEnd::Refused(message)), _) => (
                Outcome::SetupFailed(Arc::new(SetupError::Refused(message))),
                Vec::new(),
            ),
            (Some(JobEnd::Done { .. }), _) | (None, None) if timed_out => (
                Outcome::TimedOut {
                    after: timeout.unwrap_or_default(),
                },
                Vec::new(),
            ),
            (
                Some(JobEnd::Done {
                    status,
                    verdict,
                    splats,
                }),
                _,
            ) => (Outcome::of(status, verdict), allowed.filter(splats)),
            (None, None) => unreachable!("a job without an end or a death has timed out"),
        };
        Attempt::Finished(Finished {
            outcome,
            splats,
            output: job.output,
            duration: started.elapsed(),
        })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.vm.shared.link.update(|state| state.reserved -= 1);
    }
}

impl Shared {
    fn qemu(&self) -> MutexGuard<'_, QemuProcess> {
        self.qemu
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits for the init, runs `at_init_ready` (the guest waits), and
    /// [`Shared::start`]s it.
    fn handshake(
        &self,
        params: &BootParams,
        deadline: Instant,
        timeout: Duration,
        at_init_ready: impl FnOnce(),
    ) -> Result<(), BootError> {
        let spoke = |state: &link::State| state.phase != Phase::Starting || state.death.is_some();
        let state = self.link.wait_until(Some(deadline), spoke);
        let phase = state.phase.clone();
        drop(state);
        if phase == Phase::InitReady {
            at_init_ready();
        }
        self.start(params, deadline, timeout)
    }

    /// Sends the init, which waits for them, its parameters, and waits for
    /// the server.
    fn start(
        &self,
        params: &BootParams,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(), BootError> {
        let waiting = self.link.update(|state| {
            let waiting = matches!(state.phase, Phase::Starting | Phase::InitReady);
            if waiting {
                state.phase = Phase::Booting;
            }
            waiting
        });
        if waiting {
            // A failed send means QEMU is gone: the reader says why.
            let _ = self.link.write(&boot_line(params));
        }
        let ready = |state: &link::State| {
            matches!(state.phase, Phase::Ready | Phase::InitFailed(_)) || state.death.is_some()
        };
        let state = self.link.wait_until(Some(deadline), ready);
        if let Some(death) = &state.death {
            return Err(BootError::Died(Arc::clone(death)));
        }
        match state.phase.clone() {
            Phase::Ready => Ok(()),
            Phase::InitFailed(message) => {
                drop(state);
                Err(BootError::Init {
                    message,
                    details: self.details(),
                })
            }
            _ => {
                drop(state);
                Err(BootError::Hung {
                    timeout,
                    details: self.details(),
                })
            }
        }
    }

    /// Saves the guest, waiting at the init's handshake, into `snapshot`,
    /// then lets it go on. A snapshot that cannot be saved is said, and the
    /// boot goes on without it.
    fn save(
        &self,
        snapshots: &Snapshots,
        monitor: &mut Monitor,
        snapshot: &Snapshot,
        console: &Path,
    ) {
        let saved = snapshots.save(monitor, snapshot, console, Instant::now() + SAVE_TIMEOUT);
        let resumed = monitor.resume();
        let trouble = match (saved, resumed) {
            (Ok(()), Ok(())) => return,
            (Err(error), _) => error.to_string(),
            (Ok(()), Err(error)) => error.to_string(),
        };
        self.reporter.report(&Event::SnapshotUnusable {
            shape: Arc::clone(&self.shape),
            reason: format!("cannot save it: {trouble}"),
        });
    }

    /// The last line QEMU printed, once it has exited (if it does at once).
    fn last_words(&self) -> String {
        let mut qemu = self.qemu();
        qemu.wait_for_exit(EXIT_GRACE);
        let said = qemu.stderr();
        said.lines().last().unwrap_or_default().to_string()
    }

    fn details(&self) -> Details {
        let qemu_said = self.qemu().stderr();
        Details::new(qemu_said, &read_console(&self.console_log))
    }

    /// The reader thread: everything the guest sends, and the heartbeat.
    fn read(&self, mut stream: UnixStream) {
        if let Err(error) = stream.set_read_timeout(Some(TICK)) {
            return self.die(DeathCause::Connection(error));
        }
        let pid = self.qemu().id();
        let mut reader = ReplyReader::new(MAX_LINE);
        let mut buffer = vec![0u8; READ_BUFFER];
        let mut liveness = Liveness::new(pid);
        let mut checked = Instant::now();
        loop {
            match stream.read(&mut buffer) {
                Ok(0) => {
                    let closed = io::Error::new(io::ErrorKind::UnexpectedEof, "QEMU closed it");
                    return self.die(DeathCause::Connection(closed));
                }
                Ok(read) => {
                    reader.push(&buffer[..read]);
                    loop {
                        let incoming = match reader.next_message() {
                            Ok(Some(incoming)) => incoming,
                            Ok(None) => break,
                            Err(error) => {
                                return self.die(DeathCause::Connection(io::Error::other(error)))
                            }
                        };
                        liveness.heard();
                        for event in &self.link.receive(incoming) {
                            self.reporter.report(event);
                        }
                    }
                }
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(error) => return self.die(DeathCause::Connection(error)),
            }
            if self.link.state().phase != Phase::Ready {
                continue;
            }
            if liveness.ping_due() {
                if let Err(error) = self.link.send(&Request::Ping) {
                    return self.die(DeathCause::Connection(error));
                }
            }
            if checked.elapsed() >= TICK {
                checked = Instant::now();
                let silent = liveness.silence();
                if silent >= DEAD_AFTER {
                    return self.die(DeathCause::Unresponsive { silent });
                }
            }
        }
    }

    /// Records the VM's death (the first reason wins), stops QEMU, and wakes
    /// every waiter.
    fn die(&self, cause: DeathCause) {
        let phase = self.link.state().phase.clone();
        if phase == Phase::Stopping || self.link.state().death.is_some() {
            return;
        }
        let status = {
            let mut qemu = self.qemu();
            // A closed connection means QEMU is exiting: give it a moment, so
            // that the cause names the exit.
            let grace = match cause {
                DeathCause::Connection(_) => EXIT_GRACE,
                _ => Duration::ZERO,
            };
            let status = qemu.wait_for_exit(grace);
            // A hung guest would burn a CPU for nothing.
            qemu.kill();
            status
        };
        let console = read_console(&self.console_log);
        let details = Details::new(self.qemu().stderr(), &console);
        let cause = match status {
            Some(_) if console.contains("Kernel panic - not syncing") => DeathCause::KernelPanic,
            Some(status) => match server_exit(&console) {
                Some(how) => DeathCause::ServerExited { how },
                None => DeathCause::QemuExited {
                    status: status.to_string(),
                },
            },
            None => cause,
        };
        let death = Arc::new(VmDeath { cause, details });
        let was_ready = self.link.update(|state| {
            state.death = Some(Arc::clone(&death));
            state.phase == Phase::Ready
        });
        // A cancelled run's VMs die by design: nothing to tell.
        if was_ready && !crate::cancel::cancelled() {
            self.reporter.report(&Event::VmDied {
                vm: self.vm,
                shape: Arc::clone(&self.shape),
                death,
            });
        }
    }
}

/// `" (QEMU: …)"`, or nothing if QEMU said nothing.
fn qemu_said(last_words: &str) -> String {
    match last_words {
        "" => String::new(),
        said => format!(" (QEMU: {said})"),
    }
}

/// Loads `snapshot` into a QEMU started with [`command::incoming`], and runs it.
fn restore_into(
    monitor: &mut Monitor,
    snapshot: &Snapshot,
    deadline: Instant,
) -> Result<(), crate::qemu::WireError> {
    let command = snapshot
        .load_command()
        .ok_or_else(|| crate::qemu::WireError::Refused {
            peer: "QMP",
            command: "migrate-incoming",
            message: format!("{} is not UTF-8", snapshot.state().display()),
        })?;
    monitor.load(&command, deadline)?;
    monitor.resume()
}

/// The line that starts the guest: `params`, with the host's time and
/// fresh entropy, and its newline.
fn boot_line(params: &BootParams) -> Vec<u8> {
    let clock_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        });
    let mut seed = vec![0u8; SEED_BYTES];
    // SAFETY: fills the buffer it is given, of the length it is given.
    let filled = unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), 0) };
    // getrandom(2) never returns less than 256 bytes once the host's pool
    // is ready; the guest gets what the host has.
    seed.truncate(usize::try_from(filled).unwrap_or(0));
    let params = BootParams {
        clock_ns,
        seed,
        ..params.clone()
    };
    let mut line = params.encode().into_bytes();
    line.push(b'\n');
    line
}

/// How the test server exited, as the init logged it on the console.
fn server_exit(console: &str) -> Option<String> {
    let line = console.lines().find(|line| line.contains(SERVER_EXITED))?;
    let after = &line[line.find(SERVER_EXITED)? + SERVER_EXITED.len()..];
    let after = after.trim();
    let inner = after
        .strip_prefix('(')
        .and_then(|rest| rest.strip_suffix(')'));
    Some(inner.unwrap_or(after).to_string())
}

/// The files of one VM.
struct Paths {
    console: PathBuf,
    control: PathBuf,
    monitor: PathBuf,
    qemu_log: PathBuf,
}

impl Paths {
    fn new(dir: &Path) -> Paths {
        Paths {
            console: dir.join("console.log"),
            control: dir.join("control.sock"),
            monitor: dir.join("qmp.sock"),
            qemu_log: dir.join("qemu.log"),
        }
    }
}

/// Connects to QEMU's end of the control port, which QEMU creates as it
/// starts (no event says when: it is looked for every few milliseconds);
/// fails at once if QEMU exits first, with `TimedOut` at the deadline.
fn connect(socket: &Path, qemu: &mut QemuProcess, deadline: Instant) -> io::Result<UnixStream> {
    loop {
        match UnixStream::connect(socket) {
            Ok(stream) => return Ok(stream),
            Err(error) => {
                if let Some(status) = qemu.exit_status() {
                    let said = qemu.stderr();
                    return Err(io::Error::other(format!("QEMU exited ({status}): {said}")));
                }
                if Instant::now() >= deadline {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, error));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_exit_is_read_from_the_console() {
        let console = "[    2.1] vmtest-init: started /t/bin\n\
                       [    3.5] vmtest-init: the test server exited (signal: 9 (SIGKILL))\n\
                       [    3.6] vmtest-init: powering off";
        assert_eq!(server_exit(console).as_deref(), Some("signal: 9 (SIGKILL)"));
        assert_eq!(server_exit("nothing here"), None);
    }
}
