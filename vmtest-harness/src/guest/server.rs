//! The test server: one per VM, started by the host through the guest agent.
//! It reads [`Request`]s from the control port and answers with [`Reply`]s.
//! Each test runs in a child forked from the server, its stdout and stderr
//! one pipe, in a process group of its own (so a timeout kills everything
//! the test started).
//!
//! The server is single-threaded: a fork copies only the calling thread, and
//! the child goes on to run arbitrary test code, which must not find a lock
//! held by a thread that no longer exists. One `poll` loop watches the port
//! and every test's pipe; exits are collected with `waitpid(WNOHANG)`.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::protocol::{Reply, Request, CONTROL_PORT, GUEST_CWD_VAR};

/// How long the control port may take to appear.
const PORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves tests until the host closes the port, then exits the process.
pub(super) fn serve() -> ! {
    let setup_error = enter_working_directory().err();
    let code = match Server::open().and_then(|mut server| server.run(setup_error.as_deref())) {
        Ok(()) => 0,
        Err(error) => {
            // The agent captures this for the host's error message.
            eprintln!("vmtest test server: {error}");
            1
        }
    };
    std::process::exit(code)
}

/// The host's working directory, as the tests expect it.
fn enter_working_directory() -> Result<(), String> {
    let Some(dir) = std::env::var_os(GUEST_CWD_VAR) else {
        return Ok(());
    };
    std::env::set_current_dir(&dir).map_err(|error| {
        format!(
            "cannot enter the working directory {} in the guest: {error} (the guest sees the \
             host's root, but has its own /tmp and /run: run from elsewhere)",
            dir.to_string_lossy()
        )
    })
}

struct Server {
    port: File,
    /// Bytes from the host not yet ending in a newline.
    inbox: Vec<u8>,
    runs: Vec<Run>,
}

/// One test's child process.
struct Run {
    id: u64,
    pid: libc::pid_t,
    output_pipe: OwnedFd,
    output: Vec<u8>,
    /// The pipe reached end of file: the child is exiting.
    closed: bool,
}

impl Server {
    fn open() -> io::Result<Server> {
        let path = find_port()?;
        let port = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)?;
        Ok(Server {
            port,
            inbox: Vec::new(),
            runs: Vec::new(),
        })
    }

    fn run(&mut self, setup_error: Option<&str>) -> io::Result<()> {
        self.send(&Reply::Ready)?;
        loop {
            let (port_readable, readable) = self.wait()?;
            if port_readable && !self.receive(setup_error)? {
                // The host has gone: nothing left to report to.
                return Ok(());
            }
            for index in readable {
                drain(&mut self.runs[index]);
            }
            self.reap()?;
        }
    }

    /// Waits for the port or a test's pipe. Returns whether the port is
    /// readable and which runs' pipes are.
    fn wait(&self) -> io::Result<(bool, Vec<usize>)> {
        let mut fds = vec![pollfd(self.port.as_raw_fd())];
        let watched: Vec<usize> = (0..self.runs.len())
            .filter(|&index| !self.runs[index].closed)
            .collect();
        fds.extend(
            watched
                .iter()
                .map(|&index| pollfd(self.runs[index].output_pipe.as_raw_fd())),
        );
        // A closed pipe means an exit is imminent: look again soon. A child
        // whose pipe a grandchild holds open is still found within 20 ms.
        let timeout = if self.runs.iter().any(|run| run.closed) {
            1
        } else if self.runs.is_empty() {
            -1
        } else {
            20
        };
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if ready < 0 {
            let error = io::Error::last_os_error();
            return match error.kind() {
                io::ErrorKind::Interrupted => Ok((false, Vec::new())),
                _ => Err(error),
            };
        }
        let readable = |fd: &libc::pollfd| fd.revents & (libc::POLLIN | libc::POLLHUP) != 0;
        let runs = watched
            .into_iter()
            .zip(&fds[1..])
            .filter(|(_, fd)| readable(fd))
            .map(|(index, _)| index)
            .collect();
        Ok((readable(&fds[0]), runs))
    }

    /// Handles what the host sent; `false` once the host has gone.
    fn receive(&mut self, setup_error: Option<&str>) -> io::Result<bool> {
        let mut buffer = [0u8; 4096];
        let read = match self.port.read(&mut buffer) {
            Ok(0) => return Ok(false),
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => return Ok(true),
            Err(error) => return Err(error),
        };
        self.inbox.extend_from_slice(&buffer[..read]);
        while let Some(end) = self.inbox.iter().position(|&byte| byte == b'\n') {
            let line: Vec<u8> = self.inbox.drain(..=end).collect();
            match serde_json::from_slice::<Request>(&line) {
                Ok(Request::Run { id, test }) => self.start(id, &test, setup_error)?,
                Ok(Request::Kill { id }) => self.kill(id),
                Err(error) => eprintln!("vmtest test server: bad request: {error}"),
            }
        }
        Ok(true)
    }

    /// Forks a child that runs `test`.
    fn start(&mut self, id: u64, test: &str, setup_error: Option<&str>) -> io::Result<()> {
        let (read_end, write_end) = pipe()?;
        // SAFETY: the server is single-threaded (see the module docs), so
        // the child may run any code.
        match unsafe { libc::fork() } {
            -1 => {
                let error = io::Error::last_os_error();
                self.send(&Reply::Done {
                    id,
                    code: None,
                    signal: None,
                    output: format!("cannot fork the test process: {error}"),
                })
            }
            0 => {
                // SAFETY: plain fd and process-group syscalls in the child.
                unsafe {
                    libc::setpgid(0, 0);
                    libc::dup2(write_end.as_raw_fd(), 1);
                    libc::dup2(write_end.as_raw_fd(), 2);
                }
                drop((read_end, write_end));
                let code = super::run_one(test, setup_error);
                // SAFETY: ends the child without running the server's exit
                // handlers; its output is flushed.
                unsafe { libc::_exit(code) }
            }
            pid => {
                drop(write_end);
                set_nonblocking(read_end.as_raw_fd())?;
                self.runs.push(Run {
                    id,
                    pid,
                    output_pipe: read_end,
                    output: Vec::new(),
                    closed: false,
                });
                Ok(())
            }
        }
    }

    fn kill(&self, id: u64) {
        if let Some(run) = self.runs.iter().find(|run| run.id == id) {
            // SAFETY: signals to our own child and its group. The child may
            // not have made its group yet, hence both.
            unsafe {
                libc::kill(-run.pid, libc::SIGKILL);
                libc::kill(run.pid, libc::SIGKILL);
            }
        }
    }

    /// Reports every child that has exited.
    fn reap(&mut self) -> io::Result<()> {
        let mut index = 0;
        while index < self.runs.len() {
            let mut status = 0;
            // SAFETY: `status` is a valid out-pointer.
            let reaped = unsafe { libc::waitpid(self.runs[index].pid, &mut status, libc::WNOHANG) };
            if reaped != self.runs[index].pid {
                index += 1;
                continue;
            }
            let mut run = self.runs.swap_remove(index);
            drain(&mut run);
            let (code, signal) = if libc::WIFSIGNALED(status) {
                (None, Some(libc::WTERMSIG(status)))
            } else {
                (Some(libc::WEXITSTATUS(status)), None)
            };
            self.send(&Reply::Done {
                id: run.id,
                code,
                signal,
                output: String::from_utf8_lossy(&run.output).into_owned(),
            })?;
        }
        Ok(())
    }

    fn send(&mut self, reply: &Reply) -> io::Result<()> {
        let mut line = serde_json::to_vec(reply)?;
        line.push(b'\n');
        self.port.write_all(&line)
    }
}

/// Reads what a test printed so far, without blocking.
fn drain(run: &mut Run) {
    let mut buffer = [0u8; 16384];
    loop {
        // SAFETY: reads into a buffer we own from a descriptor we own.
        let read = unsafe {
            libc::read(
                run.output_pipe.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
            )
        };
        match read {
            0 => {
                run.closed = true;
                return;
            }
            read if read > 0 => run.output.extend_from_slice(&buffer[..read as usize]),
            _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            // EAGAIN: nothing more for now.
            _ => return,
        }
    }
}

fn pollfd(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 just created both descriptors; we are their only owner.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The device of the control port: the `vportNpM` whose sysfs name is
/// [`CONTROL_PORT`] (no udev in the guest, so no /dev/virtio-ports links).
fn find_port() -> io::Result<PathBuf> {
    let deadline = Instant::now() + PORT_TIMEOUT;
    loop {
        for entry in std::fs::read_dir("/sys/class/virtio-ports")?.flatten() {
            let name = std::fs::read_to_string(entry.path().join("name")).unwrap_or_default();
            if name.trim() == CONTROL_PORT {
                return Ok(PathBuf::from("/dev").join(entry.file_name()));
            }
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no virtio-serial port named {CONTROL_PORT}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
