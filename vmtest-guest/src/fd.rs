//! Descriptor helpers for the server: pipes, non-blocking reads and writes,
//! pidfds, `poll`, through `rustix`'s safe calls.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::OFlags;
use rustix::io::{Errno, FdFlags};
use rustix::pipe::PipeFlags;
use rustix::process::{Pid, PidfdFlags};

/// What a non-blocking read found.
pub(super) enum Read {
    /// Some bytes.
    Data,
    /// Nothing for now.
    Empty,
    /// End of file (or, for a terminal's master, its slave closed: EIO).
    Closed,
}

/// A pipe, both ends close-on-exec: `(read, write)`.
pub(super) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(PipeFlags::CLOEXEC)?)
}

pub(super) fn set_nonblocking(fd: impl AsFd) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(&fd)?;
    Ok(rustix::fs::fcntl_setfl(&fd, flags | OFlags::NONBLOCK)?)
}

/// One read from a non-blocking descriptor, of at least `want` bytes if
/// there are that many (more if `buffer` has room), added to the end of
/// `buffer`.
pub(super) fn read_into(fd: impl AsFd, buffer: &mut Vec<u8>, want: usize) -> io::Result<Read> {
    buffer.reserve(want.max(1));
    loop {
        match rustix::io::read(&fd, rustix::buffer::spare_capacity(buffer)) {
            Ok(0) => return Ok(Read::Closed),
            Ok(_) => return Ok(Read::Data),
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return Ok(Read::Empty),
            Err(Errno::IO) => return Ok(Read::Closed),
            Err(error) => return Err(error.into()),
        }
    }
}

/// Reads everything there is now, until the writer would block or is gone.
/// Returns the bytes and whether the end was reached.
pub(super) fn drain(fd: impl AsFd) -> io::Result<(Vec<u8>, bool)> {
    let mut all = Vec::new();
    loop {
        match read_into(&fd, &mut all, 65536)? {
            Read::Data => {}
            Read::Empty => return Ok((all, false)),
            Read::Closed => return Ok((all, true)),
        }
    }
}

/// Writes as much of `data` as a non-blocking descriptor takes now.
pub(super) fn write_some(fd: impl AsFd, data: &[u8]) -> io::Result<usize> {
    loop {
        match rustix::io::write(&fd, data) {
            Ok(written) => return Ok(written),
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return Ok(0),
            Err(error) => return Err(error.into()),
        }
    }
}

/// A pidfd for our child `pid`: readable once it has exited (Linux 5.3),
/// close-on-exec as every pidfd is.
pub(super) fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    Ok(rustix::process::pidfd_open(pid, PidfdFlags::empty())?)
}

/// Asks for a pipe of `bytes` (Linux's `F_SETPIPE_SZ`).
pub(super) fn set_pipe_size(fd: impl AsFd, bytes: usize) -> io::Result<()> {
    rustix::pipe::fcntl_setpipe_size(fd, bytes)?;
    Ok(())
}

pub(super) fn set_cloexec(fd: impl AsFd) -> io::Result<()> {
    Ok(rustix::io::fcntl_setfd(fd, FdFlags::CLOEXEC)?)
}
