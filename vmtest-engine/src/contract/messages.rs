//! The control protocol between the host and the test server in the guest:
//! one JSON object per line on the control port, once the init has handed
//! the port over (see `contract::boot`).
//!
//! Bytes that need not be UTF-8 (output, arguments, paths) travel as base64.
//! A test's verdict travels here, never in its output: the test child writes
//! it on a pipe of its own, and the server sends it with [`Reply::Done`].

use std::fmt;

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Identifies one job (a test or a command) within a VM.
pub type JobId = u64;

/// From the host to the test server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// Run the `#[vmtest]` with this path in a child forked from the server
    /// (no exec). Its stdout and stderr are one stream, as libtest captures them.
    Run { id: JobId, test: String },
    /// Run a program: its stdout and stderr kept apart, or one terminal.
    Exec(Exec),
    /// Bytes for the job's stdin or terminal.
    Input { id: JobId, data: Bytes },
    /// End of the job's stdin (with a terminal: nothing; send ^D instead).
    CloseInput { id: JobId },
    /// The job's terminal changed size.
    Resize { id: JobId, size: WindowSize },
    /// Kill the job and everything it started.
    Kill { id: JobId },
    /// Answer with [`Reply::Pong`]: the host's liveness check.
    Ping,
}

/// A program to run, as [`Request::Exec`] carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exec {
    pub id: JobId,
    /// Looked up in `PATH` when it has no `/`.
    pub program: Bytes,
    pub args: Vec<Bytes>,
    /// `KEY=value` entries replacing the server's environment, or `None` to
    /// inherit it.
    pub env: Option<Vec<Bytes>>,
    /// `None`: the server's working directory.
    pub cwd: Option<Bytes>,
    /// Give the program a terminal of this size (a pseudo-terminal that is
    /// its stdin, stdout and stderr, and its controlling terminal).
    pub terminal: Option<WindowSize>,
    /// Whether [`Request::Input`] feeds its stdin; otherwise stdin is
    /// `/dev/null` (ignored with a terminal, which is always fed).
    pub stdin: bool,
}

/// From the test server to the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// The server is listening.
    Ready,
    /// The job's process exists: from now on it counts as running.
    Started { id: JobId },
    /// The job could not be started (no process was created).
    Refused { id: JobId, message: String },
    /// Output the job wrote, as it was written.
    Output {
        id: JobId,
        stream: Stream,
        data: Bytes,
    },
    /// A record of the guest kernel's log, and the jobs running when the
    /// server read it. Every record logged before a job ended is sent before
    /// the job's [`Reply::Done`].
    Kernel { record: String, running: Vec<JobId> },
    /// The job's process ended, and everything it started has been killed.
    Done {
        id: JobId,
        status: ExitStatus,
        /// What a test reported before it ended (never for a command).
        verdict: Option<Verdict>,
    },
    /// The answer to [`Request::Ping`].
    Pong,
}

/// Which of the job's outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// Standard output; also a test's merged output, and a terminal's.
    Stdout,
    Stderr,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    Exited(i32),
    /// Killed by this signal: never to be read as success.
    Signaled(i32),
}

/// What a test concluded about itself, from inside the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    Passed,
    /// It returned an error, or `#[should_panic]` was not satisfied.
    Failed {
        message: String,
    },
    /// It panicked (the panic message is also in its output).
    Panicked {
        message: String,
    },
}

/// A terminal's size, in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSize {
    pub rows: u16,
    pub cols: u16,
}

/// Bytes carried as base64 text.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

impl From<&[u8]> for Bytes {
    fn from(bytes: &[u8]) -> Bytes {
        Bytes(bytes.to_vec())
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
        let text = String::deserialize(deserializer)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map(Bytes)
            .map_err(serde::de::Error::custom)
    }
}

/// One message as a line (JSON and a newline).
pub fn to_line(message: &impl Serialize) -> Vec<u8> {
    // Our message types always serialize: no maps with non-string keys.
    let mut line = serde_json::to_vec(message).expect("control messages serialize");
    line.push(b'\n');
    line
}
