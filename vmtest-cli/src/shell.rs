//! `vmtest -k KERNEL -`: an interactive shell in the guest, on a real
//! terminal. The host's terminal goes raw, so every key (Ctrl-C, Ctrl-Z
//! included) reaches the guest's terminal, whose line discipline signals the
//! guest's foreground job: job control works there, and vmtest is not
//! interrupted. The window size follows the host's (SIGWINCH).

use std::io::{IsTerminal, Read};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;

use signal_hook::consts::SIGWINCH;
use signal_hook::iterator::Signals;
use vmtest_engine::{Command, Event, Input, Job, Outcome, Reporter, Stream, WindowSize, Work};

use crate::config::Target;
use crate::exit_codes;
use crate::plan::{plan, Planned};
use crate::run;

/// Runs an interactive shell in a guest booted as `target` says; returns
/// the shell's exit code.
pub fn run(target: &Target, cwd: &Path, note: Option<String>) -> i32 {
    if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
        eprintln!("vmtest: an interactive shell needs a terminal on stdin and stdout");
        return exit_codes::USAGE;
    }
    let Planned::Kernel(job) = plan(target, cwd) else {
        unreachable!("the command line makes kernel targets only")
    };
    if let Some(note) = note {
        eprintln!("vmtest: {note}");
    }
    let engine = match run::engine(Arc::new(Screen)) {
        Ok(engine) => engine,
        Err((code, message)) => {
            eprintln!("vmtest: {message}");
            return code;
        }
    };
    let cwd = match &job.work {
        Work::Command(command) => command.cwd.clone(),
        Work::Test { .. } => unreachable!("a command target"),
    };
    let job = Job {
        work: Work::Command(Command {
            program: "bash".into(),
            cwd,
            terminal: Some(window_size()),
            ..Command::default()
        }),
        ..job
    };
    let (input, inputs) = mpsc::channel();
    forward_keys(input.clone());
    forward_resizes(input);
    let finished = {
        let _raw = RawMode::enter();
        engine.run_interactive(job, inputs)
    };
    engine.shutdown();
    drop(engine);
    if !matches!(
        finished.outcome,
        Outcome::Exited { .. } | Outcome::Signaled { .. }
    ) {
        eprintln!("vmtest: {}", finished.outcome);
    }
    run::exit_code(&[finished])
}

/// What the shell session shows besides the terminal's own output.
struct Screen;

impl Reporter for Screen {
    fn report(&self, event: &Event) {
        match event {
            // Raw mode: a line ends with CR LF.
            Event::VmBooting { shape, .. } => eprint!("vmtest: booting {shape}\r\n"),
            Event::VmDied { death, .. } => eprint!("\r\nvmtest: the VM died: {}\r\n", death.cause),
            Event::Output { stream, data, .. } => {
                crate::ui::pass_through(*stream == Stream::Stderr, data);
            }
            _ => {}
        }
    }
}

/// Sends what is typed to the guest, byte for byte.
fn forward_keys(input: mpsc::Sender<Input>) {
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buffer = [0u8; 4096];
        while let Ok(read) = stdin.read(&mut buffer) {
            if read == 0 || input.send(Input::Bytes(buffer[..read].to_vec())).is_err() {
                break;
            }
        }
    });
}

/// Sends the terminal's new size when it changes.
fn forward_resizes(input: mpsc::Sender<Input>) {
    let Ok(mut signals) = Signals::new([SIGWINCH]) else {
        return;
    };
    std::thread::spawn(move || {
        for _ in signals.forever() {
            if input.send(Input::Resize(window_size())).is_err() {
                break;
            }
        }
    });
}

/// The host terminal's size.
fn window_size() -> WindowSize {
    let (rows, cols) = console::Term::stdout().size();
    WindowSize { rows, cols }
}

/// The host's terminal in raw mode while alive; restored when dropped.
struct RawMode {
    saved: Option<libc::termios>,
}

impl RawMode {
    fn enter() -> RawMode {
        let fd = std::io::stdin().as_raw_fd();
        // SAFETY: termios calls on our own terminal with valid structs.
        unsafe {
            let mut saved = std::mem::zeroed::<libc::termios>();
            if libc::tcgetattr(fd, &mut saved) != 0 {
                return RawMode { saved: None };
            }
            let mut raw = saved;
            libc::cfmakeraw(&mut raw);
            libc::tcsetattr(fd, libc::TCSANOW, &raw);
            RawMode { saved: Some(saved) }
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            // SAFETY: restores the settings read in `enter`.
            unsafe { libc::tcsetattr(std::io::stdin().as_raw_fd(), libc::TCSANOW, saved) };
        }
    }
}
