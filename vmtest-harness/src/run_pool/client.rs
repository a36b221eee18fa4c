//! A test process's side: find its run's pool (starting it if no process of
//! the run has yet), ask it to run the test, print what the test printed,
//! and take its verdict.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{self, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::Failed;
use vmtest_engine::Settings;

use super::place::{Place, POOL_VAR, RUNNER_VAR};
use super::wire::{Frame, Request};

/// How long a new pool may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The pool of the nextest run this process belongs to.
pub(crate) struct RunPool(Place);

impl RunPool {
    /// The pool of this process's nextest run (`NEXTEST_RUN_ID`), shared by
    /// its test processes of this binary; `None` outside nextest, with
    /// `VMTEST_SHARED_VMS=0`, or if the cache has no room for it.
    pub(crate) fn of_this_run(settings: &Settings) -> Option<RunPool> {
        let run = std::env::var("NEXTEST_RUN_ID")
            .ok()
            .filter(|run| !run.is_empty())?;
        if std::env::var("VMTEST_SHARED_VMS").is_ok_and(|value| value == "0") {
            return None;
        }
        let exe = std::env::current_exe().ok()?;
        let identity = fs::metadata(&exe).ok()?;
        // The cache is private to the user: nobody else can put a pool there.
        let dir = settings.cache_dir.join("pools");
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(_) => return None,
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (run, exe, identity.dev(), identity.ino(), identity.size()).hash(&mut hasher);
        (identity.mtime(), identity.mtime_nsec()).hash(&mut hasher);
        Place::open(dir, format!("{:016x}", hasher.finish()))
            .ok()
            .map(RunPool)
    }

    /// Makes sure the pool is running, so that its VMs come up while nextest
    /// is still listing the tests.
    pub(crate) fn start_early(&self) {
        let _ = self.connect();
    }

    /// Runs the test `name` in the pool: prints what it prints, returns its
    /// verdict.
    pub(crate) fn run(&self, name: &str, nocapture: bool) -> Result<(), Failed> {
        let failed = |error: io::Error| {
            Failed::from(format!(
                "the VMs this nextest run shares (in {}) did not run the test: {error}",
                self.0.dir_path.display()
            ))
        };
        let stream = self.connect().map_err(failed)?;
        let request = Request {
            name: name.to_string(),
            nocapture,
        };
        request.write(&mut &stream).map_err(failed)?;
        let mut frames = BufReader::new(stream);
        loop {
            match Frame::read(&mut frames).map_err(failed)? {
                Some(Frame::Stdout(bytes)) => {
                    let _ = io::stdout().lock().write_all(&bytes);
                }
                Some(Frame::Stderr(bytes)) => {
                    let _ = io::stderr().lock().write_all(&bytes);
                }
                Some(Frame::Passed) => return Ok(()),
                Some(Frame::Failed(message)) => return Err(message.into()),
                None => {
                    return Err(failed(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the pool ended before the test did",
                    )))
                }
            }
        }
    }

    /// A connection to the pool, started by this process if it is not
    /// running (one process at a time decides, holding the lock).
    fn connect(&self) -> io::Result<UnixStream> {
        if let Ok(stream) = self.0.connect() {
            return Ok(stream);
        }
        let _lock = self.0.lock(true)?;
        if let Ok(stream) = self.0.connect() {
            return Ok(stream);
        }
        // A pool that was killed left its socket.
        let _ = fs::remove_file(self.0.socket());
        self.start()?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.0.connect() {
                Ok(stream) => return Ok(stream),
                Err(error) if Instant::now() >= deadline => return Err(error),
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }

    /// Starts the pool: this binary again, apart from this process (its own
    /// process group, no inherited output that nextest would wait for).
    fn start(&self) -> io::Result<()> {
        let exe = std::env::current_exe()?;
        Command::new(exe)
            .env(POOL_VAR, self.0.dir_path.join(&self.0.name))
            .env(RUNNER_VAR, std::os::unix::process::parent_id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map(drop)
    }
}
