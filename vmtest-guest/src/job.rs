//! Starting a job's process: in a session and a cgroup of its own, with its
//! output on pipes (or a pseudo-terminal) the server watches.
//!
//! A test is forked without exec: it runs the test function in the copy of
//! the server (under emulation an exec costs tens of milliseconds). The
//! server is single-threaded, so the child finds no lock held by a thread
//! that does not exist in it. A program is started by `std::process`, which
//! resets what a new program expects (the signal mask, SIGPIPE). Both enter
//! their job the same way first ([`enter_job`]).

use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use rustix::fs::{Mode, OFlags};
use rustix::process::{Pid, Signal};
use rustix::pty::OpenptFlags;
use rustix::termios::Winsize;
use vmtest_contract::messages::{to_line, Exec, JobId, Stream, WindowSize};

use super::cgroup::{Cgroups, JobCgroup};
use super::fd;
use super::TestRunner;

/// How much a job's output pipe holds: what it writes while the server
/// lets output collect (see `server::FLUSH_DELAY`) without blocking it.
const PIPE_BYTES: usize = 1 << 20;

/// What to run.
pub(super) enum Spec<'a> {
    Test { name: &'a str, runner: TestRunner },
    Program(&'a Exec),
}

/// A job that started, or a program that could not be (which ends at once,
/// as a shell would report it: 127 when it is not found, 126 otherwise).
pub(super) enum Spawned {
    Running(Job),
    Failed { code: i32, message: String },
}

/// A running (or just ended) job, as the server tracks it.
pub(super) struct Job {
    pub id: JobId,
    pub pid: Pid,
    /// Readable once the process has exited; `None` once it has been reaped.
    pub pidfd: Option<OwnedFd>,
    /// Output descriptors, non-blocking.
    pub outputs: Vec<Output>,
    /// A test's verdict pipe, until it reaches its end.
    pub verdict_pipe: Option<OwnedFd>,
    /// What came through the verdict pipe (`None` for a program).
    pub verdict: Option<Vec<u8>>,
    /// Where [`Request::Input`](vmtest_contract::messages::Request::Input) goes.
    pub input: Option<Input>,
    /// The terminal's master side, for resizing.
    pub terminal: Option<OwnedFd>,
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

impl Output {
    fn new(stream: Stream, fd: OwnedFd) -> io::Result<Output> {
        // Best effort: a smaller pipe only blocks the writer sooner (and a
        // terminal is no pipe).
        let _ = fd::set_pipe_size(&fd, PIPE_BYTES);
        fd::set_nonblocking(&fd)?;
        Ok(Output {
            stream,
            fd,
            open: true,
            pending: Vec::new(),
            flush_at: None,
        })
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

impl Input {
    fn new(fd: OwnedFd) -> io::Result<Input> {
        fd::set_nonblocking(&fd)?;
        Ok(Input {
            fd,
            pending: Vec::new(),
            closing: false,
        })
    }
}

/// How a job's child enters its job, prepared before the fork (the child
/// allocates nothing to use it).
struct Entry {
    /// The job cgroup's `cgroup.procs`, if it has one.
    procs: Option<CString>,
}

/// Starts `spec` as job `id`.
pub(super) fn spawn(id: JobId, spec: &Spec, cgroups: Option<&Cgroups>) -> io::Result<Spawned> {
    let cgroup = cgroups.map(|cgroups| cgroups.create(id)).transpose()?;
    let entry = Entry {
        procs: cgroup
            .as_ref()
            .map(|cgroup| CString::new(cgroup.procs().into_os_string().into_vec()))
            .transpose()?,
    };
    match spec {
        Spec::Test { name, runner } => spawn_test(id, name, *runner, &entry, cgroup),
        Spec::Program(exec) => spawn_program(id, exec, entry, cgroup),
    }
}

fn spawn_test(
    id: JobId,
    name: &str,
    runner: TestRunner,
    entry: &Entry,
    cgroup: Option<JobCgroup>,
) -> io::Result<Spawned> {
    let (output_read, output_write) = fd::pipe()?;
    let (verdict_read, verdict_write) = fd::pipe()?;
    let null = File::options().read(true).write(true).open("/dev/null")?;
    // SAFETY: the server is single-threaded (see the module docs): the
    // child has every lock free and may run the test as the server would.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            enter_job(entry);
            let redirected = rustix::stdio::dup2_stdin(&null)
                .and_then(|()| rustix::stdio::dup2_stdout(&output_write))
                .and_then(|()| rustix::stdio::dup2_stderr(&output_write));
            if redirected.is_err() {
                exit_child(126);
            }
            close_all_but(verdict_write.as_raw_fd());
            let verdict = runner(name);
            let _ = io::stdout().flush();
            let _ = io::stderr().flush();
            let _ = File::from(verdict_write).write_all(&to_line(&verdict));
            // A normal exit, not `_exit`: the exit handlers are what write a
            // coverage build's profile.
            std::process::exit(0)
        }
        child => {
            drop((output_write, verdict_write, null));
            fd::set_nonblocking(&verdict_read)?;
            let pid = Pid::from_raw(child).expect("fork returns a positive pid");
            Ok(Spawned::Running(Job {
                outputs: vec![Output::new(Stream::Stdout, output_read)?],
                verdict_pipe: Some(verdict_read),
                verdict: Some(Vec::new()),
                ..Job::started(id, pid, cgroup)?
            }))
        }
    }
}

fn spawn_program(
    id: JobId,
    exec: &Exec,
    entry: Entry,
    cgroup: Option<JobCgroup>,
) -> io::Result<Spawned> {
    let program = OsStr::from_bytes(&exec.program.0);
    let mut command = Command::new(program);
    command.args(exec.args.iter().map(|arg| OsStr::from_bytes(&arg.0)));
    if let Some(env) = &exec.env {
        command.env_clear();
        for var in env {
            let var = &var.0;
            let at = var
                .iter()
                .position(|&byte| byte == b'=')
                .unwrap_or(var.len());
            let value = var.get(at + 1..).unwrap_or_default();
            command.env(OsStr::from_bytes(&var[..at]), OsStr::from_bytes(value));
        }
    }
    if let Some(cwd) = &exec.cwd {
        command.current_dir(OsStr::from_bytes(&cwd.0));
    }
    let terminal = exec.terminal.is_some();
    // SAFETY: runs in the child between fork and exec, and only makes
    // system calls on what was prepared before the fork.
    unsafe {
        command.pre_exec(move || {
            enter_job(&entry);
            // The terminal (stdin by now) becomes the session's.
            if terminal {
                rustix::process::ioctl_tiocsctty(io::stdin())?;
            }
            Ok(())
        });
    }
    let mut input = None;
    let mut outputs = Vec::new();
    let mut terminal_master = None;
    match exec.terminal {
        Some(size) => {
            let (master, slave) = open_terminal()?;
            resize(master.as_fd(), size)?;
            command
                .stdin(slave.try_clone()?)
                .stdout(slave.try_clone()?)
                .stderr(slave);
            input = Some(Input::new(master.try_clone()?)?);
            terminal_master = Some(master.try_clone()?);
            outputs.push(Output::new(Stream::Stdout, master)?);
        }
        None => {
            let (stdout_read, stdout_write) = fd::pipe()?;
            let (stderr_read, stderr_write) = fd::pipe()?;
            command.stdout(stdout_write).stderr(stderr_write);
            if exec.stdin {
                let (stdin_read, stdin_write) = fd::pipe()?;
                command.stdin(stdin_read);
                input = Some(Input::new(stdin_write)?);
            } else {
                command.stdin(Stdio::null());
            }
            outputs.push(Output::new(Stream::Stdout, stdout_read)?);
            outputs.push(Output::new(Stream::Stderr, stderr_read)?);
        }
    }
    let child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            let code = match error.kind() {
                io::ErrorKind::NotFound => 127,
                _ => 126,
            };
            let message = format!(
                "vmtest: cannot run {}: {error}\n",
                program.to_string_lossy()
            );
            return Ok(Spawned::Failed { code, message });
        }
    };
    // The pipes' other ends went with `command`, which is dropped here.
    drop(command);
    let pid = Pid::from_child(&child);
    Ok(Spawned::Running(Job {
        outputs,
        input,
        terminal: terminal_master,
        ..Job::started(id, pid, cgroup)?
    }))
}

impl Job {
    fn started(id: JobId, pid: Pid, cgroup: Option<JobCgroup>) -> io::Result<Job> {
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
        // Its session, which is its process group, and itself.
        let _ = rustix::process::kill_process_group(self.pid, Signal::KILL);
        let _ = rustix::process::kill_process(self.pid, Signal::KILL);
    }

    /// After the job's process exited: kills what it left behind and waits
    /// until it is gone, so that nothing of it outlives its report.
    pub(super) fn kill_leftovers(&self) -> io::Result<()> {
        match &self.cgroup {
            Some(cgroup) => cgroup.kill_all(),
            None => {
                let _ = rustix::process::kill_process_group(self.pid, Signal::KILL);
                Ok(())
            }
        }
    }
}

/// Sets a terminal's size.
pub(super) fn resize(master: impl AsFd, size: WindowSize) -> io::Result<()> {
    let size = Winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    Ok(rustix::termios::tcsetwinsize(master, size)?)
}

/// In a job's child, first of all: a session of its own (so that the job
/// and what it starts are one process group, and a terminal can become its
/// controlling one), its cgroup, and the default OOM score (the server has
/// shielded itself from the OOM killer; its children must not be). Best
/// effort, and nothing allocated: it runs between fork and exec.
fn enter_job(entry: &Entry) {
    let _ = rustix::process::setsid();
    if let Some(procs) = &entry.procs {
        write_file(procs, b"0");
    }
    write_file(c"/proc/self/oom_score_adj", b"0");
}

/// Writes `data` to the file at `path`, ignoring failures.
fn write_file(path: &CStr, data: &[u8]) {
    if let Ok(fd) = rustix::fs::open(path, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty()) {
        let _ = rustix::io::write(fd, data);
    }
}

/// In a test's child: closes every descriptor from 3 on but `keep`, so the
/// test holds nothing of the server's (the control port above all).
fn close_all_but(keep: RawFd) {
    let range = |first: RawFd, last: RawFd| {
        if first <= last {
            // SAFETY: this child owns these descriptors and uses none of
            // them again (it exits without dropping what owns them).
            unsafe {
                libc::syscall(
                    libc::SYS_close_range,
                    first as libc::c_uint,
                    last as libc::c_uint,
                    0,
                )
            };
        }
    };
    range(3, keep - 1);
    range(keep + 1, RawFd::MAX);
}

/// In a test's child that cannot become its job: ends it.
fn exit_child(code: i32) -> ! {
    let _ = writeln!(io::stderr(), "vmtest: cannot set up the test's process");
    std::process::exit(code)
}

/// A new pseudo-terminal: its master, and its slave (not yet anyone's
/// controlling terminal).
fn open_terminal() -> io::Result<(OwnedFd, File)> {
    let master = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let name = rustix::pty::ptsname(&master, Vec::new())?;
    let slave = File::options()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(OsStr::from_bytes(name.as_bytes()))?;
    fd::set_cloexec(&master)?;
    Ok((master, slave))
}
