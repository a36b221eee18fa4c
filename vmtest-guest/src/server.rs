//! The server's loop: one `poll` over the control port, the kernel's log,
//! and each job's pidfd, outputs, verdict pipe and stdin.
//!
//! It is single-threaded on purpose: a test child is forked from it without
//! exec, and a fork copies only the calling thread (see [`super::job`]).
//! It shields itself so that the host can tell a slow guest from a dead one:
//! real-time priority (not inherited by jobs) keeps it answering pings while
//! tests hog the CPU, and an OOM score of -1000 keeps the OOM killer on the
//! tests.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::process::{Pid, WaitOptions};

use super::cgroup::Cgroups;
use super::fd;
use super::job::{self, Job, Output, Spawned, Spec};
use super::kmsg::KernelLog;
use super::TestRunner;
use vmtest_contract::boot::CONTROL_FD;
use vmtest_contract::messages::{
    output_frame, to_line, ExitStatus, JobId, Reply, Request, Stream, Verdict, MAX_OUTPUT_FRAME,
};

/// How long a job's output may collect in its pipe before it goes to the
/// host. Sending each `write(2)` as it comes would wake the server (which
/// has real-time priority) and cross to the host once per line: 1.1 ms a
/// line under emulation. Well under what a person notices in a live view.
const FLUSH_DELAY: Duration = Duration::from_millis(10);
/// How much output one flush reads before it lets the loop go on (a job
/// that writes faster is read again at once).
const FLUSH_MAX: usize = 1 << 20;
/// The longest verdict message sent (the whole panic message is in the
/// test's output anyway).
const MAX_VERDICT_MESSAGE: usize = 64 << 10;
/// `SCHED_RESET_ON_FORK` (`include/uapi/linux/sched.h`): children start
/// with the normal policy.
const SCHED_RESET_ON_FORK: libc::c_int = 0x4000_0000;

/// Serves until the host hangs up, then exits the process.
pub(super) fn serve(tests: Option<TestRunner>) -> ! {
    let code = match Server::start(tests).and_then(|mut server| server.run()) {
        Ok(()) => 0,
        Err(error) => {
            // Goes to the guest console, which the host keeps.
            eprintln!("vmtest test server: {error}");
            1
        }
    };
    std::process::exit(code)
}

struct Server {
    port: File,
    /// Bytes from the host not yet ending in a newline.
    inbox: Vec<u8>,
    jobs: Vec<Job>,
    kernel_log: Option<KernelLog>,
    cgroups: Option<Cgroups>,
    tests: Option<TestRunner>,
}

/// What a descriptor in the poll set belongs to.
#[derive(Clone, Copy)]
enum Watch {
    Port,
    KernelLog,
    Exit(JobId),
    Output(JobId, usize),
    Verdict(JobId),
    Input(JobId),
}

impl Server {
    fn start(tests: Option<TestRunner>) -> io::Result<Server> {
        // SAFETY: the init hands the control port over as CONTROL_FD, and
        // nothing else in this process owns it.
        let port = unsafe { File::from_raw_fd(CONTROL_FD) };
        fd::set_cloexec(&port)?;
        shield();
        let kernel_log = KernelLog::open()
            .map_err(|error| eprintln!("vmtest test server: no kernel log ({error})"))
            .ok();
        let mut server = Server {
            port,
            inbox: Vec::new(),
            jobs: Vec::new(),
            kernel_log,
            cgroups: Cgroups::open(),
            tests,
        };
        server.send(&Reply::Ready)?;
        Ok(server)
    }

    fn run(&mut self) -> io::Result<()> {
        loop {
            self.flush_due_output()?;
            let timeout = self.poll_timeout();
            let ready = self.wait_for_any(timeout.as_ref())?;
            let mut exited = Vec::new();
            let mut port_ready = false;
            for watch in ready {
                match watch {
                    Watch::Port => port_ready = true,
                    Watch::KernelLog => self.forward_kernel_log()?,
                    Watch::Exit(id) => exited.push(id),
                    Watch::Output(id, index) => self.collect_output(id, index)?,
                    Watch::Verdict(id) => self.read_verdict(id),
                    Watch::Input(id) => self.feed(id),
                }
            }
            for id in exited {
                self.finish(id)?;
            }
            if port_ready && !self.receive()? {
                // The host has gone: nothing left to report to.
                for job in &self.jobs {
                    job.kill();
                }
                return Ok(());
            }
        }
    }

    /// Waits until something the server watches is ready, or `timeout`
    /// passes; says what is ready.
    fn wait_for_any(&self, timeout: Option<&Timespec>) -> io::Result<Vec<Watch>> {
        let (mut fds, watches) = self.poll_set();
        match rustix::event::poll(&mut fds, timeout) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(error) => return Err(error.into()),
        }
        Ok(fds
            .iter()
            .zip(watches)
            .filter(|(fd, _)| !fd.revents().is_empty())
            .map(|(_, watch)| watch)
            .collect())
    }

    fn poll_set(&self) -> (Vec<PollFd<'_>>, Vec<Watch>) {
        let mut fds = vec![PollFd::new(&self.port, PollFlags::IN)];
        let mut watches = vec![Watch::Port];
        if let Some(log) = &self.kernel_log {
            fds.push(PollFd::new(log, PollFlags::IN));
            watches.push(Watch::KernelLog);
        }
        for job in &self.jobs {
            if let Some(pidfd) = &job.pidfd {
                fds.push(PollFd::new(pidfd, PollFlags::IN));
                watches.push(Watch::Exit(job.id));
            }
            for (index, output) in job.outputs.iter().enumerate() {
                if output.open && output.flush_at.is_none() {
                    fds.push(PollFd::new(&output.fd, PollFlags::IN));
                    watches.push(Watch::Output(job.id, index));
                }
            }
            if let Some(verdict) = &job.verdict_pipe {
                fds.push(PollFd::new(verdict, PollFlags::IN));
                watches.push(Watch::Verdict(job.id));
            }
            if let Some(input) = job.input.as_ref().filter(|input| !input.pending.is_empty()) {
                fds.push(PollFd::new(&input.fd, PollFlags::OUT));
                watches.push(Watch::Input(job.id));
            }
        }
        (fds, watches)
    }

    /// Handles what the host sent; `false` once the host has gone.
    fn receive(&mut self) -> io::Result<bool> {
        let mut buffer = vec![0u8; 65536];
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
                Ok(request) => self.handle(request)?,
                Err(error) => eprintln!("vmtest test server: bad request: {error}"),
            }
        }
        Ok(true)
    }

    fn handle(&mut self, request: Request) -> io::Result<()> {
        match request {
            Request::Ping => self.send(&Reply::Pong),
            Request::Run { id, test } => match self.tests {
                Some(runner) => self.start_job(
                    id,
                    &Spec::Test {
                        name: &test,
                        runner,
                    },
                ),
                None => self.send(&Reply::Refused {
                    id,
                    message: "this server runs commands, not tests".into(),
                }),
            },
            Request::Exec(exec) => self.start_job(exec.id, &Spec::Program(&exec)),
            Request::Input { id, data } => {
                if let Some(input) = self.job_mut(id).and_then(|job| job.input.as_mut()) {
                    input.pending.extend_from_slice(&data.0);
                }
                self.feed(id);
                Ok(())
            }
            Request::CloseInput { id } => {
                if let Some(input) = self.job_mut(id).and_then(|job| job.input.as_mut()) {
                    input.closing = true;
                }
                self.feed(id);
                Ok(())
            }
            Request::Resize { id, size } => {
                if let Some(master) = self.job_mut(id).and_then(|job| job.terminal.as_ref()) {
                    if let Err(error) = job::resize(master, size) {
                        eprintln!("vmtest test server: resize job {id}: {error}");
                    }
                }
                Ok(())
            }
            Request::Kill { id } => {
                if let Some(job) = self.jobs.iter().find(|job| job.id == id) {
                    job.kill();
                }
                Ok(())
            }
        }
    }

    fn start_job(&mut self, id: JobId, spec: &Spec) -> io::Result<()> {
        match job::spawn(id, spec, self.cgroups.as_ref()) {
            Ok(Spawned::Running(job)) => {
                self.jobs.push(job);
                self.send(&Reply::Started { id })
            }
            // As a shell says a program cannot be run, and exits.
            Ok(Spawned::Failed { code, message }) => {
                self.send(&Reply::Started { id })?;
                self.port
                    .write_all(&output_frame(id, Stream::Stderr, message.as_bytes()))?;
                self.send(&Reply::Done {
                    id,
                    status: ExitStatus::Exited(code),
                    verdict: None,
                })
            }
            Err(error) => self.send(&Reply::Refused {
                id,
                message: format!("cannot start the job in the guest: {error}"),
            }),
        }
    }

    fn job_mut(&mut self, id: JobId) -> Option<&mut Job> {
        self.jobs.iter_mut().find(|job| job.id == id)
    }

    /// How long `poll` may wait: until the first output is due, or forever.
    fn poll_timeout(&self) -> Option<Timespec> {
        let due = self
            .jobs
            .iter()
            .flat_map(|job| &job.outputs)
            .filter_map(|output| output.flush_at)
            .min()?;
        let left = due.saturating_duration_since(Instant::now());
        Some(Timespec::try_from(left).unwrap_or(Timespec {
            tv_sec: i64::MAX,
            tv_nsec: 0,
        }))
    }

    /// Reads what a job wrote and holds it for a moment (see
    /// [`FLUSH_DELAY`]), or sends it at once when it fills a frame.
    fn collect_output(&mut self, id: JobId, index: usize) -> io::Result<()> {
        let Some(job) = self.jobs.iter_mut().find(|job| job.id == id) else {
            return Ok(());
        };
        let output = &mut job.outputs[index];
        read_into(output, MAX_OUTPUT_FRAME)?;
        if output.pending.len() >= MAX_OUTPUT_FRAME || !output.open {
            send_output(&mut self.port, id, output)
        } else {
            if !output.pending.is_empty() && output.flush_at.is_none() {
                output.flush_at = Some(Instant::now() + FLUSH_DELAY);
            }
            Ok(())
        }
    }

    /// Sends the output whose moment has come, with what collected behind it.
    fn flush_due_output(&mut self) -> io::Result<()> {
        let now = Instant::now();
        for job in &mut self.jobs {
            for output in &mut job.outputs {
                if output.flush_at.is_some_and(|due| due <= now) {
                    output.flush_at = None;
                    read_into(output, FLUSH_MAX)?;
                    send_output(&mut self.port, job.id, output)?;
                }
            }
        }
        Ok(())
    }

    fn read_verdict(&mut self, id: JobId) {
        let Some(job) = self.job_mut(id) else { return };
        let Some(pipe) = &job.verdict_pipe else {
            return;
        };
        match fd::drain(pipe) {
            Ok((data, closed)) => {
                job.verdict
                    .get_or_insert_with(Vec::new)
                    .extend_from_slice(&data);
                if closed {
                    job.verdict_pipe = None;
                }
            }
            Err(error) => eprintln!("vmtest test server: verdict of job {id}: {error}"),
        }
    }

    /// Writes what the job's stdin takes now; closes it when asked and done.
    fn feed(&mut self, id: JobId) {
        let Some(job) = self.job_mut(id) else { return };
        let Some(input) = &mut job.input else { return };
        if !input.pending.is_empty() {
            match fd::write_some(&input.fd, &input.pending) {
                Ok(written) => drop(input.pending.drain(..written)),
                // The job closed its stdin: what it did not read is lost.
                Err(_) => {
                    job.input = None;
                    return;
                }
            }
        }
        if input.closing && input.pending.is_empty() {
            job.input = None;
        }
    }

    /// The job's process has exited: kill what it left, send the rest of
    /// its output and the kernel's records, then report it.
    fn finish(&mut self, id: JobId) -> io::Result<()> {
        let Some(job) = self.job_mut(id) else {
            return Ok(());
        };
        let status = reap(job.pid)?;
        job.pidfd = None;
        if let Err(error) = job.kill_leftovers() {
            eprintln!("vmtest test server: job {id}: {error}");
        }
        let mut outputs = std::mem::take(&mut job.outputs);
        if let Some(pipe) = job.verdict_pipe.take() {
            let data = fd::drain(&pipe)?.0;
            job.verdict
                .get_or_insert_with(Vec::new)
                .extend_from_slice(&data);
        }
        let verdict_bytes = job.verdict.take();
        for output in &mut outputs {
            // What the job's children still write is killed with them.
            read_into(output, usize::MAX)?;
            send_output(&mut self.port, id, output)?;
        }
        // Every record the job caused is in the log by now: send them
        // while the job still counts as running.
        self.forward_kernel_log()?;
        let verdict = verdict_bytes
            .and_then(|bytes| serde_json::from_slice::<Verdict>(&bytes).ok())
            .map(bounded);
        let position = self.jobs.iter().position(|job| job.id == id);
        let job = position.map(|position| self.jobs.swap_remove(position));
        let sent = self.send(&Reply::Done {
            id,
            status,
            verdict,
        });
        // Its cgroup is removed once the host knows, off the test's time.
        drop(job);
        sent
    }

    fn forward_kernel_log(&mut self) -> io::Result<()> {
        let Some(log) = &mut self.kernel_log else {
            return Ok(());
        };
        let records = log.read_new();
        let running: Vec<JobId> = self.jobs.iter().map(|job| job.id).collect();
        for record in records {
            self.send(&Reply::Kernel {
                record,
                running: running.clone(),
            })?;
        }
        Ok(())
    }

    fn send(&mut self, reply: &Reply) -> io::Result<()> {
        self.port.write_all(&to_line(reply))
    }
}

/// Reads what `output`'s descriptor holds now into its pending bytes, up
/// to `max` of them; notes its end.
fn read_into(output: &mut Output, max: usize) -> io::Result<()> {
    while output.open && output.pending.len() < max {
        let room = max
            .saturating_sub(output.pending.len())
            .min(MAX_OUTPUT_FRAME);
        match fd::read_into(&output.fd, &mut output.pending, room)? {
            fd::Read::Data => {}
            fd::Read::Empty => break,
            fd::Read::Closed => output.open = false,
        }
    }
    Ok(())
}

/// Sends `output`'s pending bytes, a frame at a time.
fn send_output(port: &mut File, id: JobId, output: &mut Output) -> io::Result<()> {
    for chunk in output.pending.chunks(MAX_OUTPUT_FRAME) {
        port.write_all(&output_frame(id, output.stream, chunk))?;
    }
    output.pending.clear();
    Ok(())
}

/// A verdict whose message is at most [`MAX_VERDICT_MESSAGE`] bytes.
fn bounded(verdict: Verdict) -> Verdict {
    let cut = |mut message: String| {
        if message.len() > MAX_VERDICT_MESSAGE {
            let mut end = MAX_VERDICT_MESSAGE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push_str("\n[vmtest: the rest of the message is in the output]");
        }
        message
    };
    match verdict {
        Verdict::Passed => Verdict::Passed,
        Verdict::Failed { message } => Verdict::Failed {
            message: cut(message),
        },
        Verdict::Panicked { message } => Verdict::Panicked {
            message: cut(message),
        },
    }
}

/// The exit status of our child `pid`, which has exited.
fn reap(pid: Pid) -> io::Result<ExitStatus> {
    loop {
        match rustix::process::waitpid(Some(pid), WaitOptions::empty()) {
            Ok(Some((_, status))) => {
                return Ok(match status.terminating_signal() {
                    Some(signal) => ExitStatus::Signaled(signal),
                    None => ExitStatus::Exited(status.exit_status().unwrap_or_default()),
                })
            }
            Ok(None) | Err(rustix::io::Errno::INTR) => continue,
            Err(error) => return Err(error.into()),
        }
    }
}

/// Real-time priority, not inherited by children, and no OOM kills: best
/// effort (a kernel without real-time scheduling still serves).
fn shield() {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: plain syscall with a valid sched_param.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO | SCHED_RESET_ON_FORK, &param) } != 0 {
        eprintln!(
            "vmtest test server: no real-time priority ({})",
            io::Error::last_os_error()
        );
    }
    if let Err(error) = std::fs::write("/proc/self/oom_score_adj", "-1000") {
        eprintln!("vmtest test server: cannot avoid the OOM killer ({error})");
    }
}
