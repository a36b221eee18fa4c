//! The engine's front: a run of jobs, each in a VM of the shape it asks for.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use vmtest_contract::messages::{Bytes, Exec, JobId, Request};

use super::error::SetupError;
use super::image::{self, ImageJob};
use super::pool::{Pool, RunSetup};
use crate::host::run_dir::{RunDir, SharedDir};
use crate::host::settings::Settings;
use crate::host::{cache, cancel};
use crate::media::prepare;
use crate::model::events::{Event, Reporter};
use crate::model::job::{GuestServer, Input, Job, Work};
use crate::model::outcome::{Finished, Outcome};
use crate::model::shape::VmShape;
use crate::model::splat::Allowed;
use crate::snapshot::Snapshots;
use crate::vm::jobs::Attempt;

/// A run: VMs booted as jobs need them, shared by jobs of the same shape,
/// shut down by [`Engine::shutdown`].
pub struct Engine {
    pool: Arc<Pool>,
    reporter: Arc<dyn Reporter>,
    allowed: Allowed,
    shared_dir: SharedDir,
    next_job: AtomicU64,
}

impl Engine {
    /// Reads the settings, prepares the run's directories, and chooses the
    /// accelerator. Boots nothing yet.
    pub fn new(server: GuestServer, reporter: Arc<dyn Reporter>) -> Result<Engine, SetupError> {
        let settings = Settings::from_env()?;
        Engine::with_settings(settings, server, reporter)
    }

    /// [`Engine::new`] with settings from elsewhere.
    pub fn with_settings(
        settings: Settings,
        server: GuestServer,
        reporter: Arc<dyn Reporter>,
    ) -> Result<Engine, SetupError> {
        reporter.report(&Event::Accelerator {
            accel: settings.accel.accel,
            reason: settings.accel.reason.clone(),
        });
        cache::remove_stale(&settings.cache_dir);
        prepare::prune_cache(&settings.cache_dir);
        let run_dir = RunDir::create().map_err(|source| SetupError::RunDir {
            path: std::env::temp_dir(),
            source,
        })?;
        let shared_dir = SharedDir::create(&settings.cache_dir)?;
        let allowed = Allowed::new(settings.allowed_splats.as_deref())?;
        // Without a place for them, VMs boot as they would with snapshots off.
        let snapshots = settings
            .snapshots
            .then(|| Snapshots::open(&settings.cache_dir).ok())
            .flatten();
        let pool = Pool::new(RunSetup {
            snapshots,
            settings,
            reporter: Arc::clone(&reporter),
            run_dir,
            server,
            shared_dir: shared_dir.path().to_path_buf(),
        });
        Ok(Engine {
            pool,
            reporter,
            allowed,
            shared_dir,
            next_job: AtomicU64::new(1),
        })
    }

    /// The host directory every guest of this run may write to, at the same
    /// path (`VMTEST_SHARED_DIR` in the guest).
    pub fn shared_dir(&self) -> &Path {
        self.shared_dir.path()
    }

    /// Starts booting VMs of these shapes now, in parallel.
    pub fn boot_ahead(&self, shapes: impl IntoIterator<Item = VmShape>) {
        self.pool.boot_ahead(shapes);
    }

    /// Runs `job` in a VM of its shape and waits for its end. A VM that
    /// dies before the job's process starts is replaced, and the job runs in
    /// the next one.
    pub fn run(&self, job: Job) -> Finished {
        self.run_with_input(job, None)
    }

    /// [`Engine::run`], sending the job what arrives on `input` (keys for a
    /// terminal, bytes for stdin) while it runs.
    pub fn run_interactive(&self, job: Job, input: Receiver<Input>) -> Finished {
        self.run_with_input(job, Some(&Mutex::new(input)))
    }

    fn run_with_input(&self, job: Job, input: Option<&Mutex<Receiver<Input>>>) -> Finished {
        let started = Instant::now();
        let id: JobId = self.next_job.fetch_add(1, Ordering::Relaxed);
        let name: Arc<str> = Arc::from(job.name.as_str());
        let finished = match Allowed::new(job.allowed_splats.iter().map(String::as_str)) {
            Ok(allowed) => {
                self.attempt(id, &name, &job, &allowed.and(&self.allowed), input, started)
            }
            Err(error) => {
                Finished::setup_failed(Arc::new(SetupError::from(error)), started.elapsed())
            }
        };
        let finished = Arc::new(cancelled_if_stopped(finished));
        self.reporter.report(&Event::JobFinished {
            job: id,
            name,
            finished: Arc::clone(&finished),
        });
        Arc::unwrap_or_clone(finished)
    }

    fn attempt(
        &self,
        id: JobId,
        name: &Arc<str>,
        job: &Job,
        allowed: &Allowed,
        input: Option<&Mutex<Receiver<Input>>>,
        started: Instant,
    ) -> Finished {
        let request = request(id, &job.work);
        loop {
            let reservation = match self.pool.acquire(&job.shape) {
                Ok(reservation) => reservation,
                Err(error) => return Finished::setup_failed(error, started.elapsed()),
            };
            match reservation.run(id, Arc::clone(name), &request, job.timeout, allowed, input) {
                Attempt::Finished(finished) => return finished,
                // The VM died before the job started: the pool replaces it.
                Attempt::NotStarted => continue,
            }
        }
    }

    /// Boots `job`'s disk image, runs its command through the image's own
    /// guest agent, and shuts the image down.
    pub fn run_image(&self, job: ImageJob) -> Finished {
        let id: JobId = self.next_job.fetch_add(1, Ordering::Relaxed);
        let finished = Arc::new(cancelled_if_stopped(image::run(
            self.pool.setup(),
            self.pool.next_vm(),
            id,
            &job,
        )));
        self.reporter.report(&Event::JobFinished {
            job: id,
            name: Arc::from(job.name.as_str()),
            finished: Arc::clone(&finished),
        });
        Arc::unwrap_or_clone(finished)
    }

    /// Shuts every VM down. The run's files go when the engine is dropped.
    pub fn shutdown(&self) {
        self.pool.shutdown();
    }
}

/// `finished`, unless the run was cancelled while it ran, which is then why
/// it ended (its VM was killed, or it never started).
fn cancelled_if_stopped(finished: Finished) -> Finished {
    let ended_by_itself = matches!(
        finished.outcome,
        Outcome::Passed
            | Outcome::Failed { .. }
            | Outcome::Panicked { .. }
            | Outcome::Exited { .. }
            | Outcome::Signaled { .. }
    );
    match ended_by_itself || !cancel::cancelled() {
        true => finished,
        false => Finished {
            outcome: Outcome::Cancelled,
            ..finished
        },
    }
}

/// The request that starts `work` as job `id`.
fn request(id: JobId, work: &Work) -> Request {
    let bytes = |text: &OsStr| Bytes(text.as_bytes().to_vec());
    match work {
        Work::Test { path } => Request::Run {
            id,
            test: path.clone(),
        },
        Work::Program(command) => Request::Exec(Exec {
            id,
            program: bytes(&command.program),
            args: command.args.iter().map(|arg| bytes(arg)).collect(),
            env: command
                .env
                .as_ref()
                .map(|env| env.iter().map(|var| bytes(var)).collect()),
            cwd: command.cwd.as_ref().map(|cwd| bytes(cwd.as_os_str())),
            terminal: command.terminal,
            stdin: command.stdin,
        }),
    }
}
