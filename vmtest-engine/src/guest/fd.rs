//! Descriptor helpers for the server: pipes, non-blocking reads and writes,
//! pidfds, `poll`. Thin wrappers over `libc`, each with its one `unsafe`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

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
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 just created both descriptors; we are their only owner.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

pub(super) fn set_nonblocking(fd: &impl AsRawFd) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: fcntl on a descriptor the caller owns.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One read of at most `max` bytes from a non-blocking descriptor, added
/// to the end of `buffer`.
pub(super) fn read_into(fd: &impl AsRawFd, buffer: &mut Vec<u8>, max: usize) -> io::Result<Read> {
    buffer.reserve(max);
    let spare = &mut buffer.spare_capacity_mut()[..max];
    loop {
        // SAFETY: reads into the spare capacity of a buffer we own, at most
        // its length; the bytes read are initialized by the kernel.
        let read = unsafe { libc::read(fd.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len()) };
        if read > 0 {
            let read = read as usize;
            // SAFETY: the kernel wrote `read` bytes after the buffer's end.
            unsafe { buffer.set_len(buffer.len() + read) };
            return Ok(Read::Data);
        }
        if read == 0 {
            return Ok(Read::Closed);
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => return Ok(Read::Empty),
            Some(libc::EIO) => return Ok(Read::Closed),
            _ => return Err(error),
        }
    }
}

/// Reads everything there is now, until the writer would block or is gone.
/// Returns the bytes and whether the end was reached.
pub(super) fn drain(fd: &impl AsRawFd) -> io::Result<(Vec<u8>, bool)> {
    let mut all = Vec::new();
    loop {
        match read_into(fd, &mut all, 65536)? {
            Read::Data => {}
            Read::Empty => return Ok((all, false)),
            Read::Closed => return Ok((all, true)),
        }
    }
}

/// Writes as much of `data` as a non-blocking descriptor takes now.
pub(super) fn write_some(fd: &impl AsRawFd, data: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: writes from a buffer we own, at most its length.
        let written = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
        if written >= 0 {
            return Ok(written as usize);
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => return Ok(0),
            _ => return Err(error),
        }
    }
}

/// A pidfd for our child `pid`: readable once it has exited (Linux 5.3),
/// close-on-exec as every pidfd is.
pub(super) fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; a new descriptor on success.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just created it; we are its only owner. Descriptors fit in c_int.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Asks for a pipe of `bytes` (Linux's `F_SETPIPE_SZ`).
pub(super) fn set_pipe_size(fd: &impl AsRawFd, bytes: libc::c_int) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor the caller owns.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, bytes) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub(super) fn set_cloexec(fd: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor the caller owns.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits until one of `fds` is ready or `timeout_ms` passes (-1: forever).
/// EINTR counts as nothing ready.
pub(super) fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<()> {
    // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if ready < 0 {
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
    Ok(())
}

pub(super) fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}
