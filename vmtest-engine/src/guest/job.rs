//! Starting a job's process: forked from the server, in a session and a
//! cgroup of its own, with its output on pipes (or a pseudo-terminal) the
//! server watches.
//!
//! A test is forked without exec: it runs the test function in the copy of
//! the server (under emulation an exec costs tens of milliseconds). The
//! server is single-threaded, so the child finds no lock held by a thread
//! that does not exist in it. A command is exec'd, with the dispositions a
//! new program expects (SIGPIPE back to default: Rust's runtime ignores it,
//! and an ignored signal stays ignored across exec).

use std::ffi::{CString, OsStr};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use super::cgroup::{Cgroups, JobCgroup};
use super::fd;
use super::TestRunner;
use crate::contract::messages::{to_line, Exec, JobId, Stream, WindowSize};

/// In a test's child, the descriptor its verdict is written to.
const VERDICT_FD: RawFd = 3;

/// What to run.
pub(super) enum Spec<'a> {
    Test { name: &'a str, runner: TestRunner },
    Program(&'a Exec),
}

/// A running (or just ended) job, as the server tracks it.
pub(super) struct Job {
    pub id: JobId,
    pub pid: libc::pid_t,
    /// Readable once the process has exited; `None` once it has been reaped.
    pub pidfd: Option<OwnedFd>,
    /// Output descriptors, non-blocking.
    pub outputs: Vec<Output>,
    /// A test's verdict pipe, until it reaches its end.
    pub verdict_pipe: Option<OwnedFd>,
    /// What came through the verdict pipe (`None` for a command).
    pub verdict: Option<Vec<u8>>,
    /// Where [`Request::Input`](crate::contract::messages::Request::Input) goes.
    pub input: Option<Input>,
    /// The terminal's master side, for resizing.
    pub terminal: Option<RawFd>,
    pub cgroup: Option<JobCgroup>,
}

/// One of a job's outputs.
pub(super) struct Output {
    pub stream: Stream,
    pub fd: OwnedFd,
    /// Not at its end yet.
    pub open: bool,
    /// Read, not yet sent.
    pub pending: Vec<u8>,
    /// When `pending` goes to the host; until then the descriptor is not
    /// watched, and what the job writes collects in its pipe.
    pub flush_at: Option<std::time::Instant>,
}

/// How much a job's output pipe holds: what it writes while the server
/// lets output collect (see `server::FLUSH_DELAY`) without blocking it.
const PIPE_BYTES: libc::c_int = 1 << 20;

impl Output {
    fn new(stream: Stream, fd: OwnedFd) -> Output {
        // Best effort: a smaller pipe only blocks the writer sooner.
        let _ = fd::set_pipe_size(&fd, PIPE_BYTES);
        Output {
            stream,
            fd,
            open: true,
            pending: Vec::new(),
            flush_at: None,
        }
    }
}

/// A job's stdin (or terminal), fed without blocking the server.
pub(super) struct Input {
    pub fd: OwnedFd,
    /// Bytes the job has not taken yet.
    pub pending: Vec<u8>,
    /// Close once `pending` is written.
    pub closing: bool,
}

/// Starts `spec` as job `id`.
pub(super) fn spawn(id: JobId, spec: &Spec, cgroups: Option<&Cgroups>) -> io::Result<Job> {
    let cgroup = cgroups.map(|cgroups| cgroups.create(id)).transpose()?;
    let procs = cgroup
        .as_ref()
        .map(|cgroup| c_string(cgroup.procs().as_os_str().as_bytes()))
        .transpose()?;
    match spec {
        Spec::Test { name, runner } => spawn_test(id, name, *runner, procs, cgroup),
        Spec::Program(exec) => {
            let program = Program::new(exec)?;
            match exec.terminal {
                Some(size) => spawn_in_terminal(id, program, size, procs, cgroup),
                None => spawn_with_pipes(id, program, exec.stdin, procs, cgroup),
            }
        }
    }
}

fn spawn_test(
    id: JobId,
    name: &str,
    runner: TestRunner,
    procs: Option<CString>,
    cgroup: Option<JobCgroup>,
) -> io::Result<Job> {
    let (output_read, output_write) = fd::pipe()?;
    let (verdict_read, verdict_write) = fd::pipe()?;
    let null = open_null()?;
    let pid = fork()?;
    if pid == 0 {
        enter_job(procs.as_ref());
        redirect(&[
            (null.as_raw_fd(), 0),
            (output_write.as_raw_fd(), 1),
            (output_write.as_raw_fd(), 2),
            (verdict_write.as_raw_fd(), VERDICT_FD),
        ]);
        close_from(VERDICT_FD + 1);
        let verdict = runner(name);
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        // SAFETY: VERDICT_FD was set up above and is owned by nothing else
        // in this process; ManuallyDrop leaves it to the exit to close.
        let mut pipe =
            std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(VERDICT_FD) });
        let _ = pipe.write_all(&to_line(&verdict));
        // A normal exit, not `_exit`: the exit handlers are what write a
        // coverage build's profile (see `boot::coverage`).
        std::process::exit(0)
    }
    drop((output_write, verdict_write, null));
    fd::set_nonblocking(&output_read)?;
    fd::set_nonblocking(&verdict_read)?;
    Ok(Job {
        outputs: vec![Output::new(Stream::Stdout, output_read)],
        verdict_pipe: Some(verdict_read),
        verdict: Some(Vec::new()),
        ..Job::started(id, pid, cgroup)?
    })
}

fn spawn_with_pipes(
    id: JobId,
    program: Program,
    stdin: bool,
    procs: Option<CString>,
    cgroup: Option<JobCgroup>,
) -> io::Result<Job> {
    let (stdout_read, stdout_write) = fd::pipe()?;
    let (stderr_read, stderr_write) = fd::pipe()?;
    let (stdin_read, stdin_write) = if stdin {
        let (read, write) = fd::pipe()?;
        (read, Some(write))
    } else {
        (open_null()?, None)
    };
    let pid = fork()?;
    if pid == 0 {
        enter_job(procs.as_ref());
        redirect(&[
            (stdin_read.as_raw_fd(), 0),
            (stdout_write.as_raw_fd(), 1),
            (stderr_write.as_raw_fd(), 2),
        ]);
        program.run()
    }
    drop((stdout_write, stderr_write, stdin_read));
    fd::set_nonblocking(&stdout_read)?;
    fd::set_nonblocking(&stderr_read)?;
    let input = stdin_write
        .map(|fd| {
            fd::set_nonblocking(&fd)?;
            Ok::<_, io::Error>(Input {
                fd,
                pending: Vec::new(),
                closing: false,
            })
        })
        .transpose()?;
    Ok(Job {
        outputs: vec![
            Output::new(Stream::Stdout, stdout_read),
            Output::new(Stream::Stderr, stderr_read),
        ],
        input,
        ..Job::started(id, pid, cgroup)?
    })
}

fn spawn_in_terminal(
    id: JobId,
    program: Program,
    size: WindowSize,
    procs: Option<CString>,
    cgroup: Option<JobCgroup>,
) -> io::Result<Job> {
    let (master, slave_path) = open_terminal()?;
    resize(master.as_raw_fd(), size)?;
    let pid = fork()?;
    if pid == 0 {
        enter_job(procs.as_ref());
        // SAFETY: opens the terminal's slave, which becomes the controlling
        // terminal of this new session (we are its leader, and it is the
        // first terminal opened without O_NOCTTY).
        let slave = unsafe { libc::open(slave_path.as_ptr(), libc::O_RDWR) };
        // SAFETY: plain ioctl on the descriptor just opened.
        if slave < 0 || unsafe { libc::ioctl(slave, libc::TIOCSCTTY, 0) } < 0 {
            fail_in_child("cannot open the terminal", 126);
        }
        redirect(&[(slave, 0), (slave, 1), (slave, 2)]);
        program.run()
    }
    let input = master.try_clone()?;
    fd::set_nonblocking(&master)?;
    let master_fd = master.as_raw_fd();
    Ok(Job {
        outputs: vec![Output::new(Stream::Stdout, master)],
        input: Some(Input {
            fd: input,
            pending: Vec::new(),
            closing: false,
        }),
        terminal: Some(master_fd),
        ..Job::started(id, pid, cgroup)?
    })
}

impl Job {
    fn started(id: JobId, pid: libc::pid_t, cgroup: Option<JobCgroup>) -> io::Result<Job> {
        Ok(Job {
            id,
            pid,
            pidfd: Some(fd::pidfd_open(pid)?),
            outputs: Vec::new(),
            verdict_pipe: None,
            verdict: None,
            input: None,
            terminal: None,
            cgroup,
        })
    }

    /// Kills the job's process and everything it started.
    pub(super) fn kill(&self) {
        if let Some(cgroup) = &self.cgroup {
            if cgroup.kill_now().is_ok() {
                return;
            }
        }
        // SAFETY: signals to our own child and its group (its session).
        unsafe {
            libc::kill(-self.pid, libc::SIGKILL);
            libc::kill(self.pid, libc::SIGKILL);
        }
    }

    /// After the job's process exited: kills what it left behind and waits
    /// until it is gone, so that nothing of it outlives its report.
    pub(super) fn kill_leftovers(&self) -> io::Result<()> {
        match &self.cgroup {
            Some(cgroup) => cgroup.kill_all(),
            None => {
                // SAFETY: signals the job's process group.
                unsafe { libc::kill(-self.pid, libc::SIGKILL) };
                Ok(())
            }
        }
    }
}

/// Sets a terminal's size.
pub(super) fn resize(master: RawFd, size: WindowSize) -> io::Result<()> {
    let winsize = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a valid winsize.
    if unsafe { libc::ioctl(master, libc::TIOCSWINSZ, &winsize) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A program ready to exec, its strings prepared before the fork.
struct Program {
    program: CString,
    argv: Vec<CString>,
    env: Option<Vec<CString>>,
    cwd: Option<CString>,
}

impl Program {
    fn new(exec: &Exec) -> io::Result<Program> {
        Ok(Program {
            program: c_string(&exec.program.0)?,
            argv: std::iter::once(&exec.program)
                .chain(&exec.args)
                .map(|arg| c_string(&arg.0))
                .collect::<io::Result<_>>()?,
            env: exec
                .env
                .as_ref()
                .map(|env| env.iter().map(|var| c_string(&var.0)).collect())
                .transpose()?,
            cwd: exec.cwd.as_ref().map(|cwd| c_string(&cwd.0)).transpose()?,
        })
    }

    /// In the child: becomes the program, or reports why not and exits as
    /// a shell would (127: not found, 126: found but not runnable).
    fn run(self) -> ! {
        reset_signals();
        close_from(3);
        if let Some(cwd) = &self.cwd {
            // SAFETY: a NUL-terminated path.
            if unsafe { libc::chdir(cwd.as_ptr()) } != 0 {
                let message = format!("cannot enter {}", cwd.to_string_lossy());
                fail_in_child(&message, 126);
            }
        }
        if let Some(env) = self.env {
            // SAFETY: this child is single-threaded; putenv keeps pointers to
            // strings we leak on purpose, since exec replaces everything.
            unsafe {
                libc::clearenv();
                for var in env {
                    libc::putenv(var.into_raw());
                }
            }
        }
        let mut argv: Vec<*const libc::c_char> = self.argv.iter().map(|arg| arg.as_ptr()).collect();
        argv.push(std::ptr::null());
        // SAFETY: a NUL-terminated program name and a NULL-terminated argv.
        unsafe { libc::execvp(self.program.as_ptr(), argv.as_ptr()) };
        let code = match io::Error::last_os_error().raw_os_error() {
            Some(libc::ENOENT) => 127,
            _ => 126,
        };
        let message = format!("cannot run {}", self.program.to_string_lossy());
        fail_in_child(&message, code)
    }
}

/// In a job's child, first of all: a session of its own (so that the job
/// and what it starts are one process group, and a terminal can become its
/// controlling one), its cgroup, and the default OOM score (the server has
/// shielded itself from the OOM killer; its children must not be).
fn enter_job(procs: Option<&CString>) {
    // SAFETY: plain syscalls and writes to files named by NUL-terminated paths.
    unsafe {
        libc::setsid();
        if let Some(procs) = procs {
            write_file(procs.as_ptr(), b"0");
        }
        write_file(c"/proc/self/oom_score_adj".as_ptr(), b"0");
    }
}

/// Writes `data` to the file at `path`, ignoring failures (best effort in a child).
unsafe fn write_file(path: *const libc::c_char, data: &[u8]) {
    let fd = libc::open(path, libc::O_WRONLY | libc::O_CLOEXEC);
    if fd >= 0 {
        libc::write(fd, data.as_ptr().cast(), data.len());
        libc::close(fd);
    }
}

/// `dup2` each `(from, to)`; `to` loses its close-on-exec flag.
fn redirect(pairs: &[(RawFd, RawFd)]) {
    for &(from, to) in pairs {
        // SAFETY: plain syscall on descriptors of this process.
        unsafe { libc::dup2(from, to) };
    }
}

/// Closes every descriptor from `first` on (Linux 5.9's close_range).
fn close_from(first: RawFd) {
    // SAFETY: plain syscall; closing descriptors this child does not need.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            0,
        )
    };
}

/// Every signal back to its default, none blocked, as a new program expects.
fn reset_signals() {
    // SAFETY: plain syscalls with valid (empty) signal sets.
    unsafe {
        for signal in 1..libc::SIGRTMAX() {
            if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                libc::signal(signal, libc::SIG_DFL);
            }
        }
        let mut none = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
}

/// In a child that cannot become its job: says why on its stderr and exits.
fn fail_in_child(what: &str, code: i32) -> ! {
    let error = io::Error::last_os_error();
    let _ = writeln!(io::stderr(), "vmtest: {what}: {error}");
    // SAFETY: ends the child without running the server's exit handlers.
    unsafe { libc::_exit(code) }
}

fn fork() -> io::Result<libc::pid_t> {
    // SAFETY: the server is single-threaded (see the module docs).
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        pid => Ok(pid),
    }
}

fn open_null() -> io::Result<OwnedFd> {
    // SAFETY: opens /dev/null; a new descriptor on success.
    let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just opened; we are its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A new pseudo-terminal: its master, and the path of its slave.
fn open_terminal() -> io::Result<(OwnedFd, CString)> {
    // SAFETY: plain calls; the master is ours once opened.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        if master < 0 {
            return Err(io::Error::last_os_error());
        }
        let master = OwnedFd::from_raw_fd(master);
        if libc::grantpt(master.as_raw_fd()) != 0 || libc::unlockpt(master.as_raw_fd()) != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut name = [0 as libc::c_char; 128];
        if libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) != 0 {
            return Err(io::Error::last_os_error());
        }
        let slave = std::ffi::CStr::from_ptr(name.as_ptr()).to_owned();
        Ok((master, slave))
    }
}

fn c_string(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{:?} contains a NUL byte", OsStr::from_bytes(bytes)),
        )
    })
}
