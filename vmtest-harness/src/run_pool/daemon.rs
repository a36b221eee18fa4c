//! The pool's side: an engine whose VMs serve every test process of the
//! run that connects, each connection one test; the engine's events go to
//! the process whose test they concern (its output, how long it took) or
//! to every connected one (a VM that booted, died or has no snapshot).

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::{self, BufReader};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rustix::process::{test_kill_process, Pid};
use vmtest_engine::{
    chain, Engine, Event, GuestServer, JobId, Reporter, Settings, SetupError, Stream,
};

use super::place::{Place, POOL_VAR, RUNNER_VAR};
use super::wire::{Frame, Request};
use crate::reporter::notice;
use crate::resolve::resolve_all;
use crate::{registry, runner, trials};

/// How long the pool waits, with no test to run, before it ends.
pub(crate) const IDLE_EXIT: Duration = Duration::from_secs(10);
/// How often the pool looks for connections and for the runner's end.
const TICK: Duration = Duration::from_millis(10);

/// Serves as the pool and exits, if this process was started as one.
pub(crate) fn serve_if_requested() {
    let Some(at) = std::env::var_os(POOL_VAR) else {
        return;
    };
    let runner = std::env::var(RUNNER_VAR)
        .ok()
        .and_then(|pid| pid.parse().ok())
        .and_then(Pid::from_raw);
    let code = match serve(Path::new(&at), runner) {
        Ok(()) => 0,
        Err(_) => 1,
    };
    std::process::exit(code)
}

/// Listens at `at` + `.sock` until `runner` is gone or nothing came for
/// [`IDLE_EXIT`].
fn serve(at: &Path, runner: Option<Pid>) -> io::Result<()> {
    let place = Place::open(
        at.parent().unwrap_or(Path::new("/")).to_path_buf(),
        at.file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned(),
    )?;
    sweep(&place);
    let listener = UnixListener::bind(place.socket())?;
    listener.set_nonblocking(true)?;
    let interrupted = vmtest_frontdoor::signals::watch(
        |_| {
            vmtest_engine::cancel();
        },
        || {},
    );
    let pool = Arc::new(Pool::start());
    let busy = Arc::new(AtomicUsize::new(0));
    let mut last_busy = Instant::now();
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                busy.fetch_add(1, Ordering::SeqCst);
                let (pool, busy) = (Arc::clone(&pool), Arc::clone(&busy));
                std::thread::spawn(move || {
                    let _ = pool.serve(stream);
                    busy.fetch_sub(1, Ordering::SeqCst);
                });
            }
            // Nothing waiting, or a connection given up before it was
            // taken (ECONNABORTED): the pool goes on either way.
            Err(_) => std::thread::sleep(TICK),
        }
        if busy.load(Ordering::SeqCst) > 0 {
            last_busy = Instant::now();
        }
        let runner_gone = runner.is_some_and(|pid| test_kill_process(pid).is_err());
        if runner_gone || last_busy.elapsed() >= IDLE_EXIT || interrupted.signal().is_some() {
            break;
        }
    }
    // No new test from here on: a process that comes now starts a new pool.
    if let Ok(_lock) = place.lock(true) {
        place.remove();
    }
    drop(listener);
    if let Ok(engine) = &pool.engine {
        if busy.load(Ordering::SeqCst) > 0 {
            vmtest_engine::cancel();
        }
        engine.shutdown();
    }
    Ok(())
}

/// Removes what pools killed with SIGKILL left beside `place`: a lock file
/// nobody holds, and its socket where nothing listens.
fn sweep(place: &Place) {
    let Ok(entries) = fs::read_dir(&place.dir_path) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(name) = file_name
            .to_str()
            .and_then(|name| name.strip_suffix(".lock"))
        else {
            continue;
        };
        if name == place.name {
            continue;
        }
        let Ok(other) = Place::open(place.dir_path.clone(), name.to_string()) else {
            continue;
        };
        if let Ok(_lock) = other.lock(false) {
            if other.connect().is_err() {
                other.remove();
            }
        }
    }
}

/// The engine, and where its events go.
struct Pool {
    engine: Result<Engine, SetupError>,
    router: Arc<Router>,
}

impl Pool {
    fn start() -> Pool {
        let settings = Settings::from_env();
        let router = Arc::new(Router {
            verbose: settings.as_ref().is_ok_and(|settings| settings.verbose),
            tests: Mutex::default(),
            jobs: Mutex::default(),
        });
        let engine = settings.map_err(SetupError::from).and_then(|settings| {
            let server = GuestServer::this_process().map_err(SetupError::Server)?;
            Engine::with_settings(settings, server, Arc::clone(&router) as Arc<dyn Reporter>)
        });
        if let Ok(engine) = &engine {
            // The VMs of the binary's first tests, as `cargo test` starts
            // them: nextest is about to ask for them. No more at once than
            // the host has CPUs, as nextest may run a few tests only.
            let env = |var: &str| std::env::var(var).ok();
            let trials = trials::per_kernel(&registry::all(), env);
            let mut shapes = BTreeSet::new();
            let most = std::thread::available_parallelism().map_or(1, usize::from);
            for test in resolve_all(trials, router.as_ref()) {
                if shapes.len() == most {
                    break;
                }
                if let (false, None, Ok(shape)) = (test.trial.test.ignore, &test.gate, test.shape) {
                    shapes.insert(shape);
                }
            }
            engine.boot_ahead(shapes);
        }
        Pool { engine, router }
    }

    /// Runs the test one connection asks for, and sends its verdict.
    fn serve(&self, stream: UnixStream) -> io::Result<()> {
        let Some(request) = Request::read(&mut BufReader::new(&stream))? else {
            return Ok(());
        };
        let client = Arc::new(Client {
            stream: Mutex::new(stream),
            nocapture: request.nocapture,
        });
        self.router
            .tests
            .lock()
            .insert(request.name.clone(), Arc::clone(&client));
        let verdict = self.run(&request);
        self.router.tests.lock().remove(&request.name);
        client.send(&match verdict {
            Ok(()) => Frame::Passed,
            Err(message) => Frame::Failed(message),
        })
    }

    /// The test's verdict, as libtest's message.
    fn run(&self, request: &Request) -> Result<(), String> {
        let engine = self.engine.as_ref().map_err(|error| chain(error))?;
        let env = |var: &str| std::env::var(var).ok();
        let trial = trials::per_kernel(&registry::all(), env)
            .into_iter()
            .find(|trial| trial.name == request.name)
            .ok_or_else(|| format!("no test named {} in this binary", request.name))?;
        let resolved = resolve_all(vec![trial], self.router.as_ref())
            .pop()
            .expect("one trial in, one out");
        let shape = resolved.shape.map_err(|error| error.to_string())?;
        runner::run(engine, &resolved.trial, shape, request.nocapture)
            .map_err(|failed| failed.message().unwrap_or_default().to_string())
    }
}

/// A connected test process.
struct Client {
    stream: Mutex<UnixStream>,
    nocapture: bool,
}

impl Client {
    fn send(&self, frame: &Frame) -> io::Result<()> {
        let mut stream = self.stream.lock();
        frame.write(&mut *stream)
    }
}

/// Sends each event to the test process it concerns.
struct Router {
    verbose: bool,
    /// The connected processes, by the name of their test.
    tests: Mutex<HashMap<String, Arc<Client>>>,
    /// The connected processes, by their test's job in the engine.
    jobs: Mutex<HashMap<JobId, Arc<Client>>>,
}

impl Reporter for Router {
    fn report(&self, event: &Event) {
        let jobs = || self.jobs.lock();
        let client = match event {
            Event::JobStarted { job, name, .. } => {
                let tests = self.tests.lock();
                if let Some(client) = tests.get(&**name) {
                    jobs().insert(*job, Arc::clone(client));
                }
                return;
            }
            Event::Output { job, stream, data } => {
                if let Some(client) = jobs().get(job).filter(|client| client.nocapture) {
                    let _ = client.send(&match stream {
                        Stream::Stdout => Frame::Stdout(data.clone()),
                        Stream::Stderr => Frame::Stderr(data.clone()),
                    });
                }
                return;
            }
            Event::JobFinished { job, .. } => jobs().remove(job),
            _ => None,
        };
        let Some(text) = notice(event, self.verbose, false) else {
            return;
        };
        let frame = Frame::Stderr(text.into_bytes());
        match client {
            Some(client) => drop(client.send(&frame)),
            None => {
                let tests = self.tests.lock();
                for client in tests.values() {
                    let _ = client.send(&frame);
                }
            }
        }
    }
}
