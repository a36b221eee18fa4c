//! The host's end of the control port: sends [`Request`]s to the guest's
//! test server, and a reader thread hands each [`Reply::Done`] to the test
//! waiting for it the moment it arrives (no polling).

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crate::protocol::{Reply, Request};

/// How long a killed test may take to be reported.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// What a test's process did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub code: Option<i32>,
    /// The signal that killed it: never to be read as success.
    pub signal: Option<i32>,
    pub output: String,
}

/// Why a run has no outcome.
#[derive(Debug)]
pub(crate) enum ControlError {
    /// The port closed: the VM or the server is gone.
    Closed,
    /// The test outlived its timeout and was killed; what it printed, if the
    /// server reported it in time.
    TimedOut(Option<Outcome>),
    Io(io::Error),
}

/// A connection to one VM's control port.
pub(crate) struct Control {
    writer: Mutex<UnixStream>,
    inbox: Arc<Inbox>,
    next_id: AtomicU64,
}

/// What the reader thread has received, guarded for the waiting tests.
#[derive(Default)]
struct Inbox {
    state: Mutex<InboxState>,
    changed: Condvar,
}

#[derive(Default)]
struct InboxState {
    ready: bool,
    done: HashMap<u64, Outcome>,
    closed: bool,
}

impl Control {
    /// Connects to QEMU's end of the port. The server in the guest is
    /// started separately; [`Control::wait_ready`] waits for it.
    pub(crate) fn connect(socket: &Path) -> io::Result<Control> {
        let stream = UnixStream::connect(socket)?;
        let reader = BufReader::new(stream.try_clone()?);
        let inbox = Arc::new(Inbox::default());
        let receiving = Arc::clone(&inbox);
        thread::Builder::new()
            .name("vmtest-control".into())
            .spawn(move || receive(reader, &receiving))?;
        Ok(Control {
            writer: Mutex::new(stream),
            inbox,
            next_id: AtomicU64::new(1),
        })
    }

    /// Waits for the server's `ready`, or `false` at the deadline or when
    /// the port closes.
    pub(crate) fn wait_ready(&self, deadline: Instant) -> bool {
        let state = self
            .inbox
            .wait_until(deadline, |state| state.ready || state.closed);
        state.ready
    }

    /// Runs one test and waits for its outcome, killing it after `timeout`.
    pub(crate) fn run(&self, test: &str, timeout: Duration) -> Result<Outcome, ControlError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.send(&Request::Run {
            id,
            test: test.to_string(),
        })?;
        match self.outcome(id, Instant::now() + timeout) {
            Err(ControlError::TimedOut(_)) => {
                self.send(&Request::Kill { id })?;
                match self.outcome(id, Instant::now() + KILL_GRACE) {
                    Ok(partial) => Err(ControlError::TimedOut(Some(partial))),
                    Err(_) => Err(ControlError::TimedOut(None)),
                }
            }
            result => result,
        }
    }

    fn outcome(&self, id: u64, deadline: Instant) -> Result<Outcome, ControlError> {
        let mut state = self.inbox.wait_until(deadline, |state| {
            state.done.contains_key(&id) || state.closed
        });
        match state.done.remove(&id) {
            Some(outcome) => Ok(outcome),
            None if state.closed => Err(ControlError::Closed),
            None => Err(ControlError::TimedOut(None)),
        }
    }

    fn send(&self, request: &Request) -> Result<(), ControlError> {
        let mut line =
            serde_json::to_vec(request).map_err(|error| ControlError::Io(error.into()))?;
        line.push(b'\n');
        let mut writer = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        writer.write_all(&line).map_err(|error| match error.kind() {
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => ControlError::Closed,
            _ => ControlError::Io(error),
        })
    }
}

impl Inbox {
    /// The state once `done` holds for it, or at `deadline`.
    fn wait_until(
        &self,
        deadline: Instant,
        done: impl Fn(&InboxState) -> bool,
    ) -> MutexGuard<'_, InboxState> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        while !done(&state) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = match self.changed.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        state
    }

    fn update(&self, change: impl FnOnce(&mut InboxState)) {
        change(
            &mut self
                .state
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        self.changed.notify_all();
    }
}

/// The reader thread: files each reply until the port closes (QEMU exits).
fn receive(reader: BufReader<UnixStream>, inbox: &Inbox) {
    for line in reader.lines() {
        let Ok(line) = line else { break };
        match serde_json::from_str::<Reply>(&line) {
            Ok(Reply::Ready) => inbox.update(|state| state.ready = true),
            Ok(Reply::Done {
                id,
                code,
                signal,
                output,
            }) => inbox.update(|state| {
                state.done.insert(
                    id,
                    Outcome {
                        code,
                        signal,
                        output,
                    },
                );
            }),
            // Not ours (a stray write to the port): ignore it.
            Err(_) => {}
        }
    }
    inbox.update(|state| state.closed = true);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A control connection to a fake server that answers each run after
    /// `delay` with the test's name as its output, or ignores runs of
    /// `hangs` until killed.
    fn fake_server(delay: Duration) -> (Control, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let listener = UnixListener::bind(&path).unwrap();
        thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut writer = stream.try_clone().unwrap();
            writeln!(writer, r#"{{"reply":"ready"}}"#).unwrap();
            for line in BufReader::new(stream).lines() {
                let reply = match serde_json::from_str(&line.unwrap()).unwrap() {
                    Request::Run { test, .. } if test == "hangs" => continue,
                    Request::Run { id, test } => {
                        thread::sleep(delay);
                        Reply::Done {
                            id,
                            code: Some(0),
                            signal: None,
                            output: test,
                        }
                    }
                    Request::Kill { id } => Reply::Done {
                        id,
                        code: None,
                        signal: Some(9),
                        output: "partial".into(),
                    },
                };
                let mut line = serde_json::to_string(&reply).unwrap();
                line.push('\n');
                writer.write_all(line.as_bytes()).unwrap();
            }
        });
        let control = Control::connect(&path).unwrap();
        (control, dir)
    }

    #[test]
    fn runs_get_their_own_outcomes() {
        let (control, _dir) = fake_server(Duration::ZERO);
        assert!(control.wait_ready(Instant::now() + Duration::from_secs(5)));
        for test in ["a", "b::c"] {
            let outcome = control.run(test, Duration::from_secs(5)).unwrap();
            assert_eq!(outcome.output, test);
            assert_eq!((outcome.code, outcome.signal), (Some(0), None));
        }
    }

    #[test]
    fn a_run_past_its_timeout_is_killed_and_reported_with_its_output() {
        let (control, _dir) = fake_server(Duration::ZERO);
        let started = Instant::now();
        let Err(ControlError::TimedOut(Some(partial))) =
            control.run("hangs", Duration::from_millis(200))
        else {
            panic!("expected a timeout");
        };
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(
            (partial.signal, partial.output.as_str()),
            (Some(9), "partial")
        );
    }

    #[test]
    fn a_closed_port_fails_waiting_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = thread::spawn(move || drop(listener.accept().unwrap()));
        let control = Control::connect(&path).unwrap();
        server.join().unwrap();
        assert!(!control.wait_ready(Instant::now() + Duration::from_secs(5)));
        assert!(matches!(
            control.run("a", Duration::from_secs(5)),
            Err(ControlError::Closed)
        ));
    }
}
