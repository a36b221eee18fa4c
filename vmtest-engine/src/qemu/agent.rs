//! The guest agent (qemu-ga): runs processes in the guest and reports their
//! exit status and output.

use std::path::Path;
use std::time::{Duration, Instant};

use qapi::qga::{self, GuestExecStatus};

use super::wire::{Channel, WireError};

const PEER: &str = "the guest agent";

/// How long one request may take once the agent is up. Generous: under TCG a
/// loaded guest can take a while to schedule the agent.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long to wait for each `guest-sync-delimited` answer before sending a
/// fresh one while the guest boots.
const SYNC_RETRY: Duration = Duration::from_millis(500);

/// A connected, synchronised guest agent.
pub(crate) struct Agent {
    channel: Channel,
}

impl Agent {
    /// Connects to the agent's socket and waits until the agent in the guest
    /// answers. `check_alive` is called between attempts and should fail when
    /// QEMU has exited, so a dead VM is reported at once instead of at the
    /// deadline.
    ///
    /// danobi/vmtest learned that the agent must be synced with retries:
    /// requests sent while the guest's port is still closed queue up and are
    /// all answered once the agent opens it, so each attempt uses a fresh id
    /// and every answer but the newest is discarded.
    pub(crate) fn connect<E>(
        socket: &Path,
        deadline: Instant,
        mut check_alive: impl FnMut() -> Result<(), E>,
    ) -> Result<Self, AgentError<E>> {
        let mut channel = loop {
            check_alive().map_err(AgentError::Died)?;
            match Channel::connect(socket, PEER) {
                Ok(channel) => break channel,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(error) => return Err(AgentError::Wire(error)),
            }
        };
        let mut id = first_sync_id();
        loop {
            id += 1;
            if Instant::now() >= deadline {
                return Err(AgentError::NotReady);
            }
            check_alive().map_err(AgentError::Died)?;
            channel.send(&qga::guest_sync_delimited { id })?;
            let attempt_deadline = deadline.min(Instant::now() + SYNC_RETRY);
            loop {
                match channel.receive(attempt_deadline) {
                    Ok(message) if message.get("return").and_then(|v| v.as_i64()) == Some(id) => {
                        return Ok(Self { channel });
                    }
                    Ok(_stale) => continue,
                    Err(WireError::Timeout { .. }) => break,
                    Err(error) => {
                        check_alive().map_err(AgentError::Died)?;
                        return Err(error.into());
                    }
                }
            }
        }
    }

    /// Starts `path` with `args` in the agent's environment, capturing its
    /// output; returns the guest pid.
    pub(crate) fn spawn(&mut self, path: &str, args: Vec<String>) -> Result<i64, WireError> {
        let command = qga::guest_exec {
            path: path.to_string(),
            arg: Some(args),
            env: None,
            input_data: None,
            capture_output: Some(qga::GuestExecCaptureOutput::flag(true)),
        };
        Ok(self.channel.execute(&command, REQUEST_TIMEOUT)?.pid)
    }

    /// The status of a process started by [`Agent::spawn`]. Once it reports
    /// `exited`, the agent forgets the pid.
    pub(crate) fn status(&mut self, pid: i64) -> Result<GuestExecStatus, WireError> {
        self.channel
            .execute(&qga::guest_exec_status { pid }, REQUEST_TIMEOUT)
    }
}

/// Where sync ids start: each attempt takes the next one, and a large,
/// per-process start avoids matching an answer meant for an earlier client.
fn first_sync_id() -> i64 {
    i64::from(std::process::id()) << 20
}

/// Why the agent could not be reached.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AgentError<E> {
    #[error("the VM stopped before its guest agent answered")]
    Died(#[source] E),
    #[error("the guest agent did not answer before the boot deadline")]
    NotReady,
    #[error(transparent)]
    Wire(#[from] WireError),
}
