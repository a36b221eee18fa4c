//! `vmtest -k KERNEL -`: a shell in the guest.
//!
//! On a real terminal it is interactive: the host's terminal goes raw, so
//! every key (Ctrl-C, Ctrl-Z included) reaches the guest's terminal, whose
//! line discipline signals the guest's foreground job: job control works
//! there, and vmtest is not interrupted. The window size follows the host's
//! (SIGWINCH). The terminal is given back on every way out: the end of the
//! shell, an error, and a signal to vmtest ([`restore_terminal`]).
//!
//! Fed from a pipe (or writing to one), the shell reads its commands from
//! vmtest's stdin, as `bash` would, and its output goes where vmtest's goes.

use std::io::{IsTerminal, Read};
use std::path::Path;
use std::sync::{mpsc, Arc};

use parking_lot::{Mutex, MutexGuard};

use rustix::termios::{OptionalActions, Termios};
use signal_hook::consts::SIGWINCH;
use signal_hook::iterator::Signals;
use vmtest_engine::{Event, Input, Job, Outcome, Program, Reporter, Stream, WindowSize, Work};

use crate::config::Target;
use crate::jobs::{job_for, TargetJob};
use crate::{exit_codes, start, ui};

/// Runs a shell in a guest booted as `target` says; returns the shell's
/// exit code.
pub fn run(target: &Target, cwd: &Path, note: Option<String>) -> i32 {
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let TargetJob::Kernel(job) = job_for(target, cwd) else {
        unreachable!("the command line makes kernel targets only")
    };
    if let Some(note) = note {
        eprintln!("vmtest: {note}");
    }
    let engine = match start::engine(Arc::new(Screen { interactive })) {
        Ok(engine) => engine,
        Err((code, message)) => {
            eprintln!("vmtest: {message}");
            return code;
        }
    };
    let cwd = match &job.work {
        Work::Program(program) => program.cwd.clone(),
        Work::Test { .. } => unreachable!("a command target"),
    };
    let job = Job {
        work: Work::Program(Program {
            program: "bash".into(),
            cwd,
            terminal: interactive.then(window_size),
            stdin: true,
            ..Program::default()
        }),
        ..job
    };
    let (input, inputs) = mpsc::channel();
    forward_stdin(input.clone(), interactive);
    if interactive {
        forward_resizes(input);
    }
    let finished = {
        let _raw = interactive.then(RawMode::enter);
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
    exit_codes::of(&[finished])
}

/// What the shell session shows besides the shell's own output.
struct Screen {
    /// On a raw terminal, where a line ends with CR LF.
    interactive: bool,
}

impl Reporter for Screen {
    fn report(&self, event: &Event) {
        let end = if self.interactive { "\r\n" } else { "\n" };
        match event {
            Event::VmBooting { shape, .. } => eprint!("vmtest: booting {shape}{end}"),
            Event::VmDied { death, .. } => {
                eprint!("{end}vmtest: the VM died: {}{end}", death.cause)
            }
            Event::Output { stream, data, .. } => {
                ui::pass_through(*stream == Stream::Stderr, data);
            }
            _ => {}
        }
    }
}

/// Sends what arrives on stdin to the guest, byte for byte; from a pipe,
/// its end too (a terminal's end is a ^D the guest's terminal reads).
fn forward_stdin(input: mpsc::Sender<Input>, interactive: bool) {
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buffer = [0u8; 4096];
        while let Ok(read) = stdin.read(&mut buffer) {
            if read == 0 {
                if !interactive {
                    let _ = input.send(Input::Close);
                }
                break;
            }
            if input.send(Input::Bytes(buffer[..read].to_vec())).is_err() {
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

/// The terminal's settings before it went raw, while it is.
static SAVED: Mutex<Option<Termios>> = Mutex::new(None);

fn saved() -> MutexGuard<'static, Option<Termios>> {
    SAVED.lock()
}

/// Gives the terminal its settings back if a shell made it raw; safe to
/// call from any thread, any number of times.
pub fn restore_terminal() {
    if let Some(settings) = saved().take() {
        let _ = rustix::termios::tcsetattr(std::io::stdin(), OptionalActions::Now, &settings);
    }
}

/// The host's terminal in raw mode while alive; restored when dropped.
struct RawMode;

impl RawMode {
    fn enter() -> RawMode {
        let stdin = std::io::stdin();
        if let Ok(settings) = rustix::termios::tcgetattr(&stdin) {
            let mut raw = settings.clone();
            raw.make_raw();
            *saved() = Some(settings);
            let _ = rustix::termios::tcsetattr(&stdin, OptionalActions::Now, &raw);
        }
        RawMode
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore_terminal();
    }
}
