//! The QEMU process: spawned in its own process group, tied to our life with
//! a parent-death signal, registered for [`cancel`](crate::cancel) until it
//! is reaped (a reaped id may be reused: the registration goes first),
//! killed and reaped when dropped.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions};

use parking_lot::Mutex;

use super::monitor::Monitor;
use crate::host::cancel::{self, Registration, Resource};
use crate::model::arch::Arch;

/// A running QEMU.
pub(crate) struct QemuProcess {
    child: Child,
    /// Readable once QEMU has exited: waits need no polling.
    pidfd: Option<OwnedFd>,
    stderr_log: PathBuf,
    /// Until QEMU is reaped.
    registration: Option<Registration>,
}

/// How long QEMU may take to exit once asked to quit.
const QUIT_GRACE: Duration = Duration::from_secs(3);

/// Why QEMU could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("{binary} was not found: {advice}")]
    NotInstalled { binary: String, advice: String },
    #[error("could not start {binary}")]
    Failed {
        binary: String,
        #[source]
        source: io::Error,
    },
}

/// What to do about a missing QEMU `binary`: install the package of the
/// architecture it is named after, else the host's (only the host's QEMU
/// can be `VMTEST_QEMU`).
fn install_advice(binary: &Path) -> String {
    let name = binary.file_name().unwrap_or_default();
    match Arch::ALL
        .into_iter()
        .find(|arch| name == arch.qemu_binary())
    {
        Some(arch) if arch != Arch::HOST => format!(
            "install QEMU for {} guests (Debian/Ubuntu: apt-get install {})",
            arch.name(),
            arch.qemu_package()
        ),
        _ => format!(
            "install QEMU (Debian/Ubuntu: apt-get install {}) or point VMTEST_QEMU at the binary",
            Arch::HOST.qemu_package()
        ),
    }
}

/// Where `binary` is: as given if it names a path, else the first of that
/// name in `PATH` (as given if there is none).
pub(crate) fn resolve(binary: &Path) -> PathBuf {
    if binary.components().count() > 1 {
        return binary.to_path_buf();
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(binary))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| binary.to_path_buf())
}

impl QemuProcess {
    /// Starts `binary args`, with its stdout and stderr in `stderr_log`.
    pub(crate) fn spawn(
        binary: &Path,
        args: Vec<std::ffi::OsString>,
        stderr_log: &Path,
    ) -> Result<Self, SpawnError> {
        let failed = |source: io::Error| SpawnError::Failed {
            binary: binary.display().to_string(),
            source,
        };
        let log = File::create(stderr_log).map_err(failed)?;
        let mut command = Command::new(binary);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(failed)?)
            .stderr(log)
            // Its own group: a Ctrl-C at the terminal reaches us, not QEMU,
            // and we end QEMU ourselves after cleaning up.
            .process_group(0);
        // SAFETY: prctl is async-signal-safe and touches no memory of ours.
        unsafe {
            command.pre_exec(|| {
                // If we die without cleaning up (SIGKILL), QEMU dies too.
                rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
                    .map_err(io::Error::from)
            });
        }
        let child = spawn_from_long_lived_thread(command).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                SpawnError::NotInstalled {
                    binary: binary.display().to_string(),
                    advice: install_advice(binary),
                }
            } else {
                failed(source)
            }
        })?;
        let registration = Some(cancel::register(Resource::Qemu(child.id())));
        Ok(Self {
            pidfd: pid(child.id())
                .and_then(|pid| rustix::process::pidfd_open(pid, PidfdFlags::empty()).ok()),
            child,
            stderr_log: stderr_log.to_path_buf(),
            registration,
        })
    }

    /// The process id, which is also its process group id.
    pub(crate) fn id(&self) -> u32 {
        self.child.id()
    }

    /// `Some` once QEMU has exited (and is reaped).
    pub(crate) fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.registration.is_some() {
            let exited = pid(self.child.id()).is_none_or(|pid| {
                let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
                !matches!(rustix::process::waitid(WaitId::Pid(pid), options), Ok(None))
            });
            if !exited {
                return None;
            }
            self.registration = None;
        }
        self.child.try_wait().ok().flatten()
    }

    /// Waits up to `grace` for QEMU to exit by itself.
    pub(crate) fn wait_for_exit(&mut self, grace: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + grace;
        loop {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            match &self.pidfd {
                Some(pidfd) => {
                    let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
                    let timeout = Timespec::try_from(left).unwrap_or(Timespec {
                        tv_sec: i64::MAX,
                        tv_nsec: 0,
                    });
                    let _ = rustix::event::poll(&mut fds, Some(&timeout));
                }
                // No pidfd (a kernel before 5.3): look again shortly.
                None => thread::sleep(left.min(Duration::from_millis(5))),
            }
        }
    }

    /// Asks QEMU to quit through its `monitor`, if it has one, gives it a
    /// moment, then makes sure it is gone. (The guest's root is read-only
    /// and its shares are written through: nothing is lost by not shutting
    /// the guest down first.)
    pub(crate) fn stop(&mut self, monitor: Option<Monitor>) {
        if let Some(mut monitor) = monitor {
            if monitor.quit().is_ok() {
                self.wait_for_exit(QUIT_GRACE);
            }
        }
        self.kill();
    }

    /// Kills QEMU's process group and reaps QEMU.
    pub(crate) fn kill(&mut self) {
        if self.exit_status().is_none() {
            cancel::kill_group(self.child.id());
            self.registration = None;
            let _ = self.child.wait();
        }
    }

    /// Connects to a socket QEMU makes as it starts (no event says when:
    /// it is looked for every few milliseconds); fails at once if QEMU exits
    /// first, with `TimedOut` at the deadline.
    pub(crate) fn connect(&mut self, socket: &Path, deadline: Instant) -> io::Result<UnixStream> {
        loop {
            match UnixStream::connect(socket) {
                Ok(stream) => return Ok(stream),
                Err(error) => {
                    if let Some(status) = self.exit_status() {
                        let said = self.stderr();
                        return Err(io::Error::other(format!("QEMU exited ({status}): {said}")));
                    }
                    if Instant::now() >= deadline {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, error));
                    }
                    thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }

    /// What QEMU printed, for error messages.
    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_log)
            .unwrap_or_default()
            .trim()
            .to_string()
    }
}

impl Drop for QemuProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A process id as rustix takes it.
fn pid(id: u32) -> Option<Pid> {
    i32::try_from(id).ok().and_then(Pid::from_raw)
}

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `command` from a thread that lives as long as the process.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits,
/// not the process; VMs are booted from short-lived threads, so the fork must
/// happen on one that never ends.
fn spawn_from_long_lived_thread(command: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (requests, incoming) = mpsc::channel::<SpawnRequest>();
        thread::Builder::new()
            .name("vmtest-spawner".into())
            .spawn(move || {
                for (mut command, reply) in incoming {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("the spawner thread starts");
        Mutex::new(requests)
    });
    let (reply, answer) = mpsc::channel();
    spawner
        .lock()
        .send((command, reply))
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    answer
        .recv()
        .map_err(|_| io::Error::other("the spawner thread is gone"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_qemu_is_met_with_its_architectures_package() {
        let host = install_advice(Path::new(Arch::HOST.qemu_binary()));
        assert!(host.contains(Arch::HOST.qemu_package()), "{host}");
        assert!(host.contains("VMTEST_QEMU"), "{host}");
        for other in Arch::ALL.into_iter().filter(|&arch| arch != Arch::HOST) {
            let path = Path::new("/usr/bin").join(other.qemu_binary());
            let advice = install_advice(&path);
            assert!(advice.contains(other.qemu_package()), "{advice}");
            // VMTEST_QEMU is the host architecture's QEMU alone.
            assert!(!advice.contains("VMTEST_QEMU"), "{advice}");
        }
        let error = SpawnError::NotInstalled {
            binary: "/opt/qemu".into(),
            advice: install_advice(Path::new("/opt/qemu")),
        };
        assert_eq!(
            error.to_string(),
            format!(
                "/opt/qemu was not found: install QEMU (Debian/Ubuntu: apt-get install {}) or \
                 point VMTEST_QEMU at the binary",
                Arch::HOST.qemu_package()
            )
        );
    }
}
