//! One VM's lifecycle: boot to a ready guest agent, start the test server in
//! it, run tests through the server, shut it down. Each VM owns a private
//! directory for its sockets and logs, removed with it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use qapi::qga::GuestExecStatus;
use tempfile::TempDir;

use crate::accel::Accel;
use crate::cleanup;
use crate::control::{Control, ControlError, Outcome};
use crate::qemu::agent::{Agent, AgentError};
use crate::qemu::command::{self, QemuConfig};
use crate::qemu::monitor::Monitor;
use crate::qemu::process::QemuProcess;
use crate::qemu::WireError;

/// How many lines of the guest console a failure shows.
const CONSOLE_LINES: usize = 40;
/// How long QEMU may take to exit after its guest went away.
const EXIT_GRACE: Duration = Duration::from_secs(2);
/// Console lines that start the story of a crash, the most telling first.
const CRASH_MARKERS: [&str; 5] = [
    "sysrq: Trigger a crash",
    "BUG:",
    "Oops:",
    "general protection fault",
    "Kernel panic",
];
/// How long the test server may take to start in a booted guest (it is
/// this very binary, read cold over 9p the first time).
const SERVER_START_TIMEOUT: Duration = Duration::from_secs(60);

/// What to boot.
#[derive(Debug, Clone)]
pub(crate) struct VmConfig {
    pub qemu_binary: String,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub kernel_cmdline: String,
    pub memory_mib: u32,
    pub cpus: u32,
    pub accel: Accel,
    pub shared_dir: PathBuf,
    pub boot_timeout: Duration,
}

/// A booted VM with a ready guest agent.
pub(crate) struct Vm {
    qemu: Mutex<QemuProcess>,
    agent: Mutex<Agent>,
    monitor: Mutex<Option<Monitor>>,
    control: Control,
    /// The guest pid of the test server, once started (or why it did not).
    server: OnceLock<Result<i64, String>>,
    console_log: PathBuf,
    /// Why the VM stopped working, once it has: every later request fails
    /// with the same explanation.
    died: OnceLock<String>,
    // Dropped last, after QEMU is gone.
    _registration: cleanup::Registration,
    _workdir: TempDir,
}

/// Why a VM did not come up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BootError {
    #[error("could not create the VM's private directory: {0}")]
    Workdir(#[source] std::io::Error),
    #[error(transparent)]
    Spawn(#[from] crate::qemu::process::SpawnError),
    /// The guest never answered: worth one more try (a boot in about twenty
    /// has been seen to hang under TCG).
    #[error("the guest agent did not answer within {timeout:?} of QEMU starting{details}")]
    Hung { timeout: Duration, details: String },
    #[error("the VM failed during boot: {reason}{details}")]
    Failed { reason: String, details: String },
}

/// Why a test has no outcome.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RunError {
    #[error("timed out after {timeout:?}")]
    TimedOut {
        timeout: Duration,
        /// Whatever the test printed before it was killed.
        partial: Option<Outcome>,
    },
    #[error("{0}")]
    VmDied(String),
    #[error("{0}")]
    Server(String),
}

impl Vm {
    /// Starts QEMU and waits until the guest agent answers.
    pub(crate) fn boot(config: &VmConfig) -> Result<Vm, BootError> {
        let workdir = tempfile::Builder::new()
            .prefix("vmtest-vm-")
            .tempdir()
            .map_err(BootError::Workdir)?;
        let dir = workdir.path();
        let console_log = dir.join("console.log");
        let agent_socket = dir.join("agent.sock");
        let control_socket = dir.join("control.sock");
        let monitor_socket = dir.join("qmp.sock");
        let args = command::arguments(&QemuConfig {
            kernel: &config.kernel,
            initramfs: &config.initramfs,
            kernel_cmdline: &config.kernel_cmdline,
            memory_mib: config.memory_mib,
            cpus: config.cpus,
            accel: config.accel,
            console_log: &console_log,
            agent_socket: &agent_socket,
            control_socket: &control_socket,
            monitor_socket: &monitor_socket,
            shared_dir: &config.shared_dir,
        });
        let started = Instant::now();
        let mut qemu = QemuProcess::spawn(&config.qemu_binary, args, &dir.join("qemu.log"))?;
        let registration = cleanup::register(qemu.id(), dir.to_path_buf());
        let deadline = started + config.boot_timeout;
        let agent = Agent::connect(&agent_socket, deadline, || match qemu.exit_status() {
            Some(status) => Err(format!("QEMU exited ({status})")),
            None => Ok(()),
        });
        let agent = match agent {
            Ok(agent) => agent,
            Err(error) => {
                // A panicking kernel closes the agent's socket a moment before
                // QEMU exits: give it that moment, so the error says what
                // really happened.
                let exited = match error {
                    AgentError::NotReady => qemu.exit_status(),
                    _ => qemu.wait_for_exit(EXIT_GRACE),
                };
                let details = failure_details(&mut qemu, &console_log);
                return Err(match (exited, error) {
                    (Some(status), _) => BootError::Failed {
                        reason: format!(
                            "QEMU exited ({status}) before the guest agent answered: \
                             the kernel panicked or the guest powered off"
                        ),
                        details,
                    },
                    (None, AgentError::NotReady) => BootError::Hung {
                        timeout: config.boot_timeout,
                        details,
                    },
                    (None, AgentError::Died(reason)) => BootError::Failed { reason, details },
                    (None, AgentError::Wire(error)) => BootError::Failed {
                        reason: error.to_string(),
                        details,
                    },
                });
            }
        };
        let control = Control::connect(&control_socket).map_err(|error| BootError::Failed {
            reason: format!("cannot connect to the control port: {error}"),
            details: String::new(),
        })?;
        // QMP is only used to quit; without it, shutdown kills QEMU instead.
        let monitor = Monitor::connect(&monitor_socket).ok();
        Ok(Vm {
            qemu: Mutex::new(qemu),
            agent: Mutex::new(agent),
            monitor: Mutex::new(monitor),
            control,
            server: OnceLock::new(),
            console_log,
            died: OnceLock::new(),
            _registration: registration,
            _workdir: workdir,
        })
    }

    /// Runs the test with path `test` in the guest's test server, which is
    /// `binary` started with exactly the environment `env()` on first use;
    /// waits at most `timeout` for the test to end.
    pub(crate) fn run_test(
        &self,
        binary: &str,
        env: impl FnOnce() -> Vec<String>,
        test: &str,
        timeout: Duration,
    ) -> Result<Outcome, RunError> {
        if let Some(reason) = self.died.get() {
            return Err(RunError::VmDied(reason.clone()));
        }
        self.server
            .get_or_init(|| self.start_server(binary, env()))
            .clone()
            .map_err(RunError::Server)?;
        match self.control.run(test, timeout) {
            Ok(outcome) => Ok(outcome),
            Err(ControlError::TimedOut(partial)) => Err(RunError::TimedOut { timeout, partial }),
            Err(ControlError::Closed) => Err(self.server_gone()),
            Err(ControlError::Io(error)) => Err(RunError::Server(format!(
                "cannot talk to the test server in the guest: {error}"
            ))),
        }
    }

    /// Starts the test server and waits until it listens.
    fn start_server(&self, binary: &str, env: Vec<String>) -> Result<i64, String> {
        let pid = self
            .request(|agent| agent.spawn(binary, Vec::new(), env))
            .map_err(|error| match error {
                RequestError::VmDied(reason) => reason,
                RequestError::Wire(error) => format!(
                    "could not start {binary} in the guest: {error} (the guest sees the host's \
                     root, but has its own /tmp and /run: build outside them)"
                ),
            })?;
        if self
            .control
            .wait_ready(Instant::now() + SERVER_START_TIMEOUT)
        {
            return Ok(pid);
        }
        let why = match self.request(|agent| agent.status(pid)) {
            Ok(status) if status.exited => format!(
                "the test server exited before it was ready ({}){}",
                exit_description(status.exitcode, status.signal),
                output_of(&status)
            ),
            Ok(_) => format!("the test server did not start within {SERVER_START_TIMEOUT:?}"),
            Err(RequestError::VmDied(reason)) => return Err(reason),
            Err(RequestError::Wire(error)) => format!("the test server did not start: {error}"),
        };
        Err(self.mark_dead(why))
    }

    /// Explains why the control port closed: the VM stopped (a kernel panic
    /// ends QEMU), or the server died.
    fn server_gone(&self) -> RunError {
        // Bound first: the guard must be gone before `mark_dead` locks again.
        let exited = self.qemu().wait_for_exit(EXIT_GRACE);
        if let Some(status) = exited {
            return RunError::VmDied(self.mark_dead(format!(
                "the VM stopped while the test ran (QEMU exited: {status}; a kernel panic ends QEMU)"
            )));
        }
        let pid = self.server.get().and_then(|server| server.clone().ok());
        let output = pid
            .and_then(|pid| self.request(|agent| agent.status(pid)).ok())
            .map(|status| output_of(&status))
            .unwrap_or_default();
        RunError::VmDied(self.mark_dead(format!("the test server in the guest stopped{output}")))
    }

    /// One request to the agent, failing fast once the VM is known dead and
    /// explaining a failure with QEMU's state and the console.
    fn request<T>(
        &self,
        call: impl FnOnce(&mut Agent) -> Result<T, WireError>,
    ) -> Result<T, RequestError> {
        if let Some(reason) = self.died.get() {
            return Err(RequestError::VmDied(reason.clone()));
        }
        let result = call(&mut self.agent());
        result.map_err(|error| {
            let exited = match error {
                WireError::Closed { .. } | WireError::Io { .. } => {
                    self.qemu().wait_for_exit(EXIT_GRACE)
                }
                _ => self.qemu().exit_status(),
            };
            match exited {
                Some(status) => RequestError::VmDied(self.mark_dead(format!(
                    "the VM stopped while the test ran (QEMU exited: {status}; a kernel panic ends QEMU)"
                ))),
                None if matches!(error, WireError::Closed { .. }) => RequestError::VmDied(
                    self.mark_dead(format!("the guest agent went away: {error}")),
                ),
                None => RequestError::Wire(error),
            }
        })
    }

    /// Records why the VM is dead (the first reason wins) and returns the
    /// full explanation.
    fn mark_dead(&self, reason: String) -> String {
        self.died
            .get_or_init(|| {
                let details = failure_details(&mut self.qemu(), &self.console_log);
                format!("{reason}{details}")
            })
            .clone()
    }

    fn agent(&self) -> MutexGuard<'_, Agent> {
        self.agent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn qemu(&self) -> MutexGuard<'_, QemuProcess> {
        self.qemu
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Asks QEMU to quit, then makes sure it is gone; the VM's directory is
    /// removed when `self` drops.
    pub(crate) fn shutdown(self) {
        let monitor = self
            .monitor
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(mut monitor) = monitor {
            if monitor.quit().is_ok() {
                self.qemu().wait_for_exit(Duration::from_secs(3));
            }
        }
        // Dropping the process kills and reaps QEMU if it is still there.
    }
}

enum RequestError {
    VmDied(String),
    Wire(WireError),
}

/// "exit code N" or "signal N", as the agent reports a process's end.
fn exit_description(code: Option<i64>, signal: Option<i64>) -> String {
    match (code, signal) {
        (_, Some(signal)) => format!("killed by signal {signal}"),
        (Some(code), None) => format!("exit code {code}"),
        (None, None) => "no exit status".into(),
    }
}

/// What a process the agent started printed, for an error message.
fn output_of(status: &GuestExecStatus) -> String {
    let text: String = [&status.out_data, &status.err_data]
        .into_iter()
        .flatten()
        .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
        .collect();
    match text.trim() {
        "" => String::new(),
        text => format!(":\n{text}"),
    }
}

/// QEMU's own messages and the tail of the guest console, for a failure.
fn failure_details(qemu: &mut QemuProcess, console_log: &Path) -> String {
    let mut details = String::new();
    let stderr = qemu.stderr();
    if !stderr.is_empty() {
        let _ = write!(details, "\nQEMU said:\n{stderr}");
    }
    let console =
        String::from_utf8_lossy(&std::fs::read(console_log).unwrap_or_default()).replace('\r', "");
    let excerpt = console_excerpt(&console, CONSOLE_LINES);
    if excerpt.is_empty() {
        details.push_str("\n(the guest console is empty)");
    } else {
        let _ = write!(details, "\nguest console:\n{excerpt}");
    }
    details
}

/// The part of the console that explains a failure: from a little before
/// the first crash marker (a panic's cause comes before its long stack
/// trace), else the last lines; `lines` lines at most.
fn console_excerpt(console: &str, lines: usize) -> String {
    let all: Vec<&str> = console.lines().collect();
    let start = CRASH_MARKERS
        .iter()
        .find_map(|marker| all.iter().position(|line| line.contains(marker)))
        .map(|first| first.saturating_sub(5))
        .unwrap_or(all.len().saturating_sub(lines));
    let end = all.len().min(start + lines);
    all[start..end].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_excerpt_starts_just_before_a_crash() {
        let mut console: Vec<String> = (0..100).map(|n| format!("boot line {n}")).collect();
        console.insert(50, "sysrq: Trigger a crash".into());
        let excerpt = console_excerpt(&console.join("\n"), 10);
        let lines: Vec<&str> = excerpt.lines().collect();
        assert_eq!(lines.len(), 10);
        assert_eq!(lines[0], "boot line 45");
        assert_eq!(lines[5], "sysrq: Trigger a crash");
    }

    #[test]
    fn without_a_crash_the_excerpt_is_the_tail() {
        let console: Vec<String> = (0..100).map(|n| format!("line {n}")).collect();
        let excerpt = console_excerpt(&console.join("\n"), 3);
        assert_eq!(excerpt, "line 97\nline 98\nline 99");
    }
}
