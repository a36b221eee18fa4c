//! What a front door asks the engine to run: a [`Job`] (a test of the
//! front door's own binary, or a [`Program`]), in a VM of a shape, served in
//! the guest by the [`GuestServer`].

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use vmtest_contract::messages::WindowSize;

use super::shape::VmShape;

/// The program the guest init starts as the test server: the front door's
/// own binary, whose `main` calls
/// `vmtest_guest::serve_if_requested` first.
#[derive(Debug, Clone)]
pub struct GuestServer {
    /// Absolute.
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Its environment (and every job's), as `KEY=value`.
    pub env: Vec<OsString>,
    pub cwd: PathBuf,
}

impl GuestServer {
    /// This very binary, with this process's environment and working
    /// directory: jobs see the host's.
    pub fn this_process() -> std::io::Result<GuestServer> {
        Ok(GuestServer {
            program: std::env::current_exe()?,
            args: Vec::new(),
            env: std::env::vars_os()
                .map(|(key, value)| {
                    let mut var = key;
                    var.push("=");
                    var.push(value);
                    var
                })
                .collect(),
            cwd: std::env::current_dir()?,
        })
    }
}

/// One job: what to run, in what VM, for how long.
#[derive(Debug, Clone)]
pub struct Job {
    /// For events and messages.
    pub name: String,
    pub shape: VmShape,
    pub work: Work,
    /// Killed and failed after this long; `None`: no limit.
    pub timeout: Option<Duration>,
    /// Regular expressions for kernel splats this job may cause.
    pub allowed_splats: Vec<String>,
}

/// What a job runs in the guest.
#[derive(Debug, Clone)]
pub enum Work {
    /// The `#[vmtest]` with this path, in the test server's binary.
    Test { path: String },
    /// A program.
    Program(Program),
}

/// A program to run in the guest.
#[derive(Debug, Clone, Default)]
pub struct Program {
    /// Looked up in `PATH` when it has no `/`.
    pub program: OsString,
    pub args: Vec<OsString>,
    /// Replaces the server's environment (`KEY=value` entries); `None`: the
    /// host's.
    pub env: Option<Vec<OsString>>,
    /// `None`: the host's working directory.
    pub cwd: Option<PathBuf>,
    /// Run it in a terminal of this size (fed by `Engine::run_interactive`).
    pub terminal: Option<WindowSize>,
    /// Whether `Engine::run_interactive`'s input is its stdin (else
    /// `/dev/null`; a terminal is always fed).
    pub stdin: bool,
}

/// What an interactive job is sent while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Bytes for its stdin or terminal.
    Bytes(Vec<u8>),
    /// Its terminal has a new size.
    Resize(WindowSize),
    /// The end of its stdin.
    Close,
}
