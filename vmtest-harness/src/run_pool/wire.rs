//! What a test process and its run's pool say to each other over the
//! pool's socket: one request (`run NOCAPTURE NAME`), then frames back (a
//! header line, then its bytes): what the test printed and its verdict.
//! Both ends are this binary, so the format is its own business.

use std::io::{self, BufRead, Write};

/// The longest header or request line.
const MAX_LINE: usize = 64 << 10;
/// The largest frame: more than any output the pool sends at once, and
/// more than libtest's failure message with a test's kept output.
const MAX_FRAME: usize = 16 << 20;

/// A test to run, as a test process asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    pub name: String,
    /// libtest's `--nocapture`: the test's output comes as it is written.
    pub nocapture: bool,
}

/// What the pool sends back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// The test passed: the last frame.
    Passed,
    /// The test failed, with libtest's message: the last frame.
    Failed(String),
}

impl Request {
    pub(crate) fn write(&self, out: &mut impl Write) -> io::Result<()> {
        writeln!(out, "run {} {}", u8::from(self.nocapture), self.name)
    }

    /// The request on `input`; `None` at its end or if it is not one.
    pub(crate) fn read(input: &mut impl BufRead) -> io::Result<Option<Request>> {
        let line = read_line(input)?;
        let request = line.as_deref().and_then(|line| {
            let (nocapture, name) = line.strip_prefix("run ")?.split_once(' ')?;
            Some(Request {
                name: name.to_string(),
                nocapture: nocapture == "1",
            })
        });
        Ok(request)
    }
}

impl Frame {
    pub(crate) fn write(&self, out: &mut impl Write) -> io::Result<()> {
        let (kind, body): (&str, &[u8]) = match self {
            Frame::Stdout(bytes) => ("out", bytes),
            Frame::Stderr(bytes) => ("err", bytes),
            Frame::Passed => ("pass", b""),
            Frame::Failed(message) => ("fail", message.as_bytes()),
        };
        // Large output goes in several frames, each within the reader's limit.
        for chunk in body
            .chunks(MAX_FRAME)
            .chain(body.is_empty().then_some(&[][..]))
        {
            writeln!(out, "{kind} {}", chunk.len())?;
            out.write_all(chunk)?;
        }
        out.flush()
    }

    /// The next frame on `input`; `None` at its end.
    pub(crate) fn read(input: &mut impl BufRead) -> io::Result<Option<Frame>> {
        let Some(header) = read_line(input)? else {
            return Ok(None);
        };
        let malformed =
            || io::Error::new(io::ErrorKind::InvalidData, format!("bad frame {header:?}"));
        let (kind, len) = header.split_once(' ').ok_or_else(malformed)?;
        let len: usize = len.parse().map_err(|_| malformed())?;
        if len > MAX_FRAME {
            return Err(malformed());
        }
        let mut body = vec![0; len];
        input.read_exact(&mut body)?;
        Ok(Some(match kind {
            "out" => Frame::Stdout(body),
            "err" => Frame::Stderr(body),
            "pass" => Frame::Passed,
            "fail" => Frame::Failed(String::from_utf8_lossy(&body).into_owned()),
            _ => return Err(malformed()),
        }))
    }
}

/// One line without its newline; `None` at the end of `input`.
fn read_line(input: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    io::Read::take(&mut *input, MAX_LINE as u64 + 1).read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Ok(None);
    }
    if line.pop() != Some(b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a line too long, or cut short",
        ));
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_frames_come_back_as_sent() {
        let request = Request {
            name: "tests::a name with spaces[vmlinuz-6.12]".into(),
            nocapture: true,
        };
        let mut bytes = Vec::new();
        request.write(&mut bytes).unwrap();
        let frames = [
            Frame::Stdout(b"line\nno newline".to_vec()),
            Frame::Stderr(vec![0xff, b'\n', 0]),
            Frame::Failed("it failed\nbadly".into()),
            Frame::Passed,
        ];
        for frame in &frames {
            frame.write(&mut bytes).unwrap();
        }
        let mut input = &bytes[..];
        assert_eq!(Request::read(&mut input).unwrap(), Some(request));
        for frame in frames {
            assert_eq!(Frame::read(&mut input).unwrap(), Some(frame));
        }
        assert_eq!(Frame::read(&mut input).unwrap(), None);
    }

    #[test]
    fn a_cut_or_malformed_stream_is_an_error() {
        for bytes in [&b"out 10\nshort"[..], b"out x\n", b"what 0\n", b"pass"] {
            assert!(Frame::read(&mut &bytes[..]).is_err(), "{bytes:?}");
        }
        assert_eq!(Request::read(&mut &b"hello\n"[..]).unwrap(), None);
    }
}
