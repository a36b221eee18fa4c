//! The host's end of the control port: what has been heard from the guest,
//! guarded for the threads that wait on it. The VM's reader thread feeds
//! every line to [`Link::receive`]; jobs wait on [`Link::wait_until`] and
//! wake the moment their answer arrives (no polling).

use std::collections::HashMap;
use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex, MutexGuard};
use vmtest_contract::boot::{parse_init_failed, INIT_READY};
use vmtest_contract::messages::{to_line, ExitStatus, Incoming, JobId, Reply, Request, Verdict};

use crate::model::death::VmDeath;
use crate::model::events::{Event, VmId};
use crate::model::outcome::Captured;
use crate::model::splat::{Splat, SplatTracker};

/// Where the guest is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Phase {
    /// QEMU runs; the init has not spoken yet.
    Starting,
    /// The init waits for its boot parameters.
    InitReady,
    /// The init failed, for this reason.
    InitFailed(String),
    /// The parameters are sent; the test server is starting.
    Booting,
    /// The test server takes jobs.
    Ready,
    /// The host is stopping the VM: its end is no death.
    Stopping,
}

/// What the host knows about one VM.
pub(super) struct State {
    pub phase: Phase,
    pub jobs: HashMap<JobId, JobState>,
    /// Job slots taken (see `VmShape::job_capacity`).
    pub reserved: usize,
    pub splats: SplatTracker,
    /// Why the VM died, once it has.
    pub death: Option<Arc<VmDeath>>,
}

/// One job sent to the VM.
pub(super) struct JobState {
    pub name: Arc<str>,
    /// The guest created its process.
    pub started: bool,
    pub output: Captured,
    pub end: Option<JobEnd>,
}

/// How the guest said a job ended.
pub(super) enum JobEnd {
    Done {
        status: ExitStatus,
        verdict: Option<Verdict>,
        splats: Vec<Splat>,
    },
    Refused(String),
}

pub(super) struct Link {
    vm: VmId,
    writer: Mutex<UnixStream>,
    state: Mutex<State>,
    changed: Condvar,
}

impl Link {
    pub(super) fn new(vm: VmId, writer: UnixStream) -> Link {
        Link {
            vm,
            writer: Mutex::new(writer),
            state: Mutex::new(State {
                phase: Phase::Starting,
                jobs: HashMap::new(),
                reserved: 0,
                splats: SplatTracker::new(),
                death: None,
            }),
            changed: Condvar::new(),
        }
    }

    pub(super) fn send(&self, request: &Request) -> io::Result<()> {
        self.write(&to_line(request))
    }

    /// Writes raw bytes (the boot parameters' line).
    pub(super) fn write(&self, bytes: &[u8]) -> io::Result<()> {
        self.writer.lock().write_all(bytes)
    }

    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Changes the state and wakes every waiter.
    pub(super) fn update<T>(&self, change: impl FnOnce(&mut State) -> T) -> T {
        let result = change(&mut self.state());
        self.changed.notify_all();
        result
    }

    /// The state once `done` holds for it, or at `deadline`.
    pub(super) fn wait_until(
        &self,
        deadline: Option<Instant>,
        done: impl Fn(&State) -> bool,
    ) -> MutexGuard<'_, State> {
        let mut state = self.state();
        while !done(&state) {
            match deadline {
                None => self.changed.wait(&mut state),
                Some(deadline) => {
                    if self.changed.wait_until(&mut state, deadline).timed_out() {
                        break;
                    }
                }
            }
        }
        state
    }

    /// Takes one message from the guest; returns the events it makes.
    pub(super) fn receive(&self, incoming: Incoming) -> Vec<Event> {
        match incoming {
            Incoming::Line(line) => {
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end();
                if text == INIT_READY {
                    self.update(|state| state.phase = Phase::InitReady);
                } else if let Some(reason) = parse_init_failed(text) {
                    self.update(|state| state.phase = Phase::InitFailed(reason));
                }
                // Anything else that is not ours (a stray write to the port)
                // is ignored.
                Vec::new()
            }
            Incoming::Output { id, stream, data } => self.update(|state| {
                let Some(job) = state.jobs.get_mut(&id) else {
                    return Vec::new();
                };
                job.output.push(&data);
                vec![Event::Output {
                    job: id,
                    stream,
                    data,
                }]
            }),
            Incoming::Reply(reply) => self.update(|state| apply(state, self.vm, reply)),
        }
    }
}

/// Applies one reply to the state.
fn apply(state: &mut State, vm: VmId, reply: Reply) -> Vec<Event> {
    match reply {
        Reply::Ready => {
            state.phase = Phase::Ready;
            Vec::new()
        }
        Reply::Pong => Vec::new(),
        Reply::Started { id } => match state.jobs.get_mut(&id) {
            Some(job) => {
                job.started = true;
                vec![Event::JobStarted {
                    job: id,
                    name: Arc::clone(&job.name),
                    vm,
                }]
            }
            None => Vec::new(),
        },
        Reply::Refused { id, message } => {
            if let Some(job) = state.jobs.get_mut(&id) {
                job.end = Some(JobEnd::Refused(message));
            }
            Vec::new()
        }
        // Its bytes come as [`Incoming::Output`].
        Reply::Output { .. } => Vec::new(),
        Reply::Kernel { record, running } => {
            state.splats.record(&record, &running);
            Vec::new()
        }
        Reply::Done {
            id,
            status,
            verdict,
        } => {
            let splats = state.splats.for_job(id);
            if let Some(job) = state.jobs.get_mut(&id) {
                job.end = Some(JobEnd::Done {
                    status,
                    verdict,
                    splats,
                });
            }
            Vec::new()
        }
    }
}
