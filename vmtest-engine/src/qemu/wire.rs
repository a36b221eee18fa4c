//! The JSON-lines protocol QMP and the guest agent share, over a unix socket,
//! with a deadline on every read.
//!
//! The command and response types come from the `qapi` crate; the transport is
//! ours because `qapi`'s own stream blocks without a deadline and `expect`s on
//! EOF, so a QEMU that dies mid-handshake would hang or panic the caller.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use qapi::Command;
use serde_json::Value;

/// The guest agent prefixes `guest-sync-delimited` replies with this byte so
/// a client can drop any half-read line before it.
const SYNC_SENTINEL: u8 = 0xFF;

/// A failure talking to QMP or the guest agent.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("{peer}: connection failed")]
    Io {
        peer: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{peer} closed the connection")]
    Closed { peer: &'static str },
    #[error("{peer} did not answer within {waited:?}")]
    Timeout {
        peer: &'static str,
        waited: Duration,
    },
    #[error("{peer} refused {command}: {message}")]
    Refused {
        peer: &'static str,
        command: &'static str,
        message: String,
    },
    #[error("{peer} sent a malformed message: {source}")]
    Malformed {
        peer: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// One connection to a QEMU JSON socket.
pub(super) struct Channel {
    stream: UnixStream,
    /// Bytes read but not yet returned as a whole line; kept across reads that
    /// time out, so a deadline never loses half a message.
    pending: Vec<u8>,
    peer: &'static str,
}

impl Channel {
    pub(super) fn connect(path: &Path, peer: &'static str) -> Result<Self, WireError> {
        let stream = UnixStream::connect(path).map_err(|source| WireError::Io { peer, source })?;
        Ok(Self {
            stream,
            pending: Vec::new(),
            peer,
        })
    }

    /// Sends a command without waiting for its answer.
    pub(super) fn send<C: Command>(&mut self, command: &C) -> Result<(), WireError> {
        let mut line = serde_json::to_vec(&serde_json::json!({
            "execute": C::NAME,
            "arguments": command,
        }))
        .map_err(|source| WireError::Malformed {
            peer: self.peer,
            source,
        })?;
        line.push(b'\n');
        self.stream
            .write_all(&line)
            .map_err(|source| WireError::Io {
                peer: self.peer,
                source,
            })
    }

    /// Sends a command and waits for its answer, skipping asynchronous events.
    pub(super) fn execute<C: Command>(
        &mut self,
        command: &C,
        timeout: Duration,
    ) -> Result<C::Ok, WireError> {
        self.send(command)?;
        let deadline = Instant::now() + timeout;
        loop {
            let message = self.receive(deadline)?;
            if let Some(value) = message.get("return") {
                return serde_json::from_value(value.clone()).map_err(|source| {
                    WireError::Malformed {
                        peer: self.peer,
                        source,
                    }
                });
            }
            if let Some(error) = message.get("error") {
                let message = error
                    .get("desc")
                    .and_then(Value::as_str)
                    .unwrap_or("no description")
                    .to_string();
                return Err(WireError::Refused {
                    peer: self.peer,
                    command: C::NAME,
                    message,
                });
            }
            // Anything else is an event (QMP) or a greeting: not our answer.
        }
    }

    /// Reads the next whole JSON message, or fails at `deadline`.
    pub(super) fn receive(&mut self, deadline: Instant) -> Result<Value, WireError> {
        loop {
            if let Some(end) = self.pending.iter().position(|&byte| byte == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                let text: Vec<u8> = line
                    .into_iter()
                    .filter(|&byte| byte != SYNC_SENTINEL)
                    .collect();
                if text.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return serde_json::from_slice(&text).map_err(|source| WireError::Malformed {
                    peer: self.peer,
                    source,
                });
            }
            self.fill(deadline)?;
        }
    }

    fn fill(&mut self, deadline: Instant) -> Result<(), WireError> {
        let peer = self.peer;
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(WireError::Timeout {
                peer,
                waited: Duration::ZERO,
            });
        }
        self.stream
            .set_read_timeout(Some(remaining))
            .map_err(|source| WireError::Io { peer, source })?;
        let mut buffer = [0u8; 8192];
        match self.stream.read(&mut buffer) {
            Ok(0) => Err(WireError::Closed { peer }),
            Ok(read) => {
                self.pending.extend_from_slice(&buffer[..read]);
                Ok(())
            }
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(WireError::Timeout {
                    peer,
                    waited: remaining,
                })
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(source) => Err(WireError::Io { peer, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::thread;

    /// A channel to a fake peer that reads one request, answers `script`,
    /// and hangs up after `hold`.
    fn pair(script: &'static [u8], hold: Duration) -> (Channel, thread::JoinHandle<Vec<u8>>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = thread::spawn(move || {
            let _dir = dir;
            let (mut peer, _) = listener.accept().unwrap();
            let mut request = [0u8; 512];
            let read = peer.read(&mut request).unwrap();
            peer.write_all(script).unwrap();
            thread::sleep(hold);
            request[..read].to_vec()
        });
        let channel = loop {
            if let Ok(channel) = Channel::connect(&path, "test peer") {
                break channel;
            }
            thread::sleep(Duration::from_millis(5));
        };
        (channel, server)
    }

    #[test]
    fn execute_skips_events_and_sentinels_and_decodes_the_return() {
        let (mut channel, server) = pair(
            b"{\"event\":\"RESUME\"}\n\xff{\"return\": 42}\n",
            Duration::ZERO,
        );
        let id = channel
            .execute(
                &qapi::qga::guest_sync_delimited { id: 42 },
                Duration::from_secs(5),
            )
            .unwrap();
        assert_eq!(id, 42);
        let request: Value = serde_json::from_slice(&server.join().unwrap()).unwrap();
        assert_eq!(request["execute"], "guest-sync-delimited");
        assert_eq!(request["arguments"]["id"], 42);
    }

    #[test]
    fn an_error_reply_names_the_command() {
        let (mut channel, _server) = pair(
            b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"no such file\"}}\n",
            Duration::ZERO,
        );
        let error = channel
            .execute(
                &qapi::qga::guest_exec_status { pid: 7 },
                Duration::from_secs(5),
            )
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "test peer refused guest-exec-status: no such file"
        );
    }

    #[test]
    fn a_silent_peer_times_out_and_a_closed_one_says_so() {
        let (mut channel, server) = pair(b"{\"ret", Duration::from_millis(600));
        let started = Instant::now();
        let error = channel
            .execute(&qapi::qga::guest_ping {}, Duration::from_millis(200))
            .unwrap_err();
        assert!(matches!(error, WireError::Timeout { .. }), "{error}");
        assert!(started.elapsed() >= Duration::from_millis(200));
        server.join().unwrap();
        let error = channel
            .receive(Instant::now() + Duration::from_secs(5))
            .unwrap_err();
        assert!(matches!(error, WireError::Closed { .. }), "{error}");
    }
}
