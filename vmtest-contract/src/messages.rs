//! The control protocol between the host and the test server in the guest:
//! one JSON object per line on the control port, once the init has handed
//! the port over (see `contract::boot`).
//!
//! Bytes that need not be UTF-8 (arguments, paths) travel as base64. A
//! job's output, the bulk of what crosses, does not: a [`Reply::Output`]
//! line gives its length, and that many raw bytes follow the line
//! ([`output_frame`], read back by [`ReplyReader`]). Encoding megabytes as
//! base64 inside JSON costs the guest more than the output itself, and the
//! test server runs in the user's (often unoptimized) test binary.
//!
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
    /// Output the job wrote, as it was written: `len` raw bytes follow
    /// this line (see [`output_frame`]).
    Output {
        id: JobId,
        stream: Stream,
        len: usize,
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

/// The most output one [`Reply::Output`] frame carries.
pub const MAX_OUTPUT_FRAME: usize = 256 << 10;

/// A [`Reply::Output`] line and `data` (at most [`MAX_OUTPUT_FRAME`]
/// bytes) after it.
pub fn output_frame(id: JobId, stream: Stream, data: &[u8]) -> Vec<u8> {
    debug_assert!(data.len() <= MAX_OUTPUT_FRAME);
    let mut frame = to_line(&Reply::Output {
        id,
        stream,
        len: data.len(),
    });
    frame.extend_from_slice(data);
    frame
}

/// What arrives from the guest, whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A line that is no reply (the init speaks before the server), without
    /// its newline.
    Line(Vec<u8>),
    /// A reply other than [`Reply::Output`].
    Reply(Reply),
    /// A job's output, with its bytes.
    Output {
        id: JobId,
        stream: Stream,
        data: Vec<u8>,
    },
}

/// The guest broke the framing: what it sends cannot be read on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the guest announced {len} bytes of output in one frame (at most {MAX_OUTPUT_FRAME})")]
pub struct FrameError {
    pub len: usize,
}

/// Reads what the guest sends, bytes in, [`Incoming`] out. Memory stays
/// bounded whatever arrives: a line longer than `max_line` is dropped (up
/// to its newline), and an output frame holds at most [`MAX_OUTPUT_FRAME`].
#[derive(Debug)]
pub struct ReplyReader {
    buffer: Vec<u8>,
    /// Where unread bytes start in `buffer`.
    start: usize,
    /// The output frame whose bytes are being read.
    frame: Option<(JobId, Stream, usize)>,
    /// Dropping an overlong line until its newline.
    skipping: bool,
    max_line: usize,
}

impl ReplyReader {
    pub fn new(max_line: usize) -> ReplyReader {
        ReplyReader {
            buffer: Vec::new(),
            start: 0,
            frame: None,
            skipping: false,
            max_line,
        }
    }

    /// Takes bytes as they were read.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buffer.len() {
            self.buffer.clear();
            self.start = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole message, if one has arrived.
    pub fn next_message(&mut self) -> Result<Option<Incoming>, FrameError> {
        loop {
            let unread = &self.buffer[self.start..];
            if let Some((id, stream, len)) = self.frame {
                if unread.len() < len {
                    return Ok(None);
                }
                let data = unread[..len].to_vec();
                self.consume(len);
                self.frame = None;
                return Ok(Some(Incoming::Output { id, stream, data }));
            }
            let Some(end) = unread.iter().position(|&byte| byte == b'\n') else {
                if unread.len() > self.max_line {
                    self.skipping = true;
                    self.consume(unread.len());
                }
                return Ok(None);
            };
            let line = unread[..end].to_vec();
            self.consume(end + 1);
            if std::mem::take(&mut self.skipping) {
                continue;
            }
            return match serde_json::from_slice::<Reply>(&line) {
                Ok(Reply::Output { len, .. }) if len > MAX_OUTPUT_FRAME => Err(FrameError { len }),
                Ok(Reply::Output { id, stream, len }) => {
                    self.frame = Some((id, stream, len));
                    continue;
                }
                Ok(reply) => Ok(Some(Incoming::Reply(reply))),
                Err(_) => Ok(Some(Incoming::Line(line))),
            };
        }
    }

    fn consume(&mut self, count: usize) {
        self.start += count;
        // Keep the buffer from growing with what was read long ago.
        if self.start > (1 << 20) && self.start * 2 > self.buffer.len() {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_travels_raw_after_its_line_and_is_read_back_whatever_the_chunks() {
        let data: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
        let mut stream = b"vmtest-init ready\n".to_vec();
        stream.extend(output_frame(7, Stream::Stderr, &data));
        stream.extend(to_line(&Reply::Pong));
        stream.extend(output_frame(8, Stream::Stdout, b"line\n{\"not\": json}\n"));
        let expected = [
            Incoming::Line(b"vmtest-init ready".to_vec()),
            Incoming::Output {
                id: 7,
                stream: Stream::Stderr,
                data: data.clone(),
            },
            Incoming::Reply(Reply::Pong),
            Incoming::Output {
                id: 8,
                stream: Stream::Stdout,
                data: b"line\n{\"not\": json}\n".to_vec(),
            },
        ];
        for chunk in [1, 7, 4096, stream.len()] {
            let mut reader = ReplyReader::new(1 << 16);
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                reader.push(piece);
                while let Some(incoming) = reader.next_message().unwrap() {
                    got.push(incoming);
                }
            }
            assert_eq!(got, expected, "in chunks of {chunk}");
        }
    }

    #[test]
    fn a_reader_stays_bounded_whatever_arrives() {
        let mut reader = ReplyReader::new(100);
        reader.push(&[b'x'; 1000]);
        assert_eq!(reader.next_message(), Ok(None));
        reader.push(&[b'y'; 1000]);
        assert_eq!(reader.next_message(), Ok(None));
        assert!(reader.buffer.len() - reader.start <= 1000);
        reader.push(b"end of the long line\nshort\n");
        assert_eq!(
            reader.next_message(),
            Ok(Some(Incoming::Line(b"short".to_vec())))
        );
        let huge = to_line(&Reply::Output {
            id: 1,
            stream: Stream::Stdout,
            len: MAX_OUTPUT_FRAME + 1,
        });
        reader.push(&huge);
        assert!(reader.next_message().is_err());
    }
}
