//! Jobs in a VM: a slot reserved, the request sent, the output streamed as
//! events, the end (or the VM's death, or the timeout) awaited.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use vmtest_contract::messages::{Bytes, JobId, Request};

use crate::model::job::Input;
use crate::model::outcome::{Finished, Outcome};
use crate::model::splat::Allowed;

use super::error::JobRefused;
use super::link::{JobEnd, JobState, State};
use super::machine::Vm;

/// How long a killed job may take to be reported.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// How often an interactive job's input forwarder looks whether it has ended.
const INPUT_POLL: Duration = Duration::from_millis(100);

/// A job slot in a VM, given back when dropped.
pub(crate) struct Reservation {
    pub(super) vm: Arc<Vm>,
}

/// What became of a job sent to a VM.
pub(crate) enum Attempt {
    Finished(Finished),
    /// The VM died before the job's process existed: run it elsewhere.
    NotStarted,
}

impl Reservation {
    /// A job slot, waiting while the VM is full; `None` if it died.
    pub(crate) fn take(vm: &Arc<Vm>) -> Option<Reservation> {
        let capacity = vm.capacity;
        let mut state = vm.guest.link.wait_until(None, |state| {
            state.death.is_some() || state.reserved < capacity
        });
        if state.death.is_some() {
            return None;
        }
        state.reserved += 1;
        Some(Reservation { vm: Arc::clone(vm) })
    }

    /// Runs one job: sends `request` (whose id is `id`), streams its output
    /// as events, and waits for its end, killing it after `timeout`.
    pub(crate) fn run(
        &self,
        id: JobId,
        name: Arc<str>,
        request: &Request,
        timeout: Option<Duration>,
        allowed: &Allowed,
        input: Option<&Mutex<Receiver<Input>>>,
    ) -> Attempt {
        let ended = AtomicBool::new(false);
        std::thread::scope(|scope| {
            if let Some(input) = input {
                scope.spawn(|| self.forward(id, input, &ended));
            }
            let attempt = self.wait_for(id, name, request, timeout, allowed);
            ended.store(true, Ordering::Relaxed);
            attempt
        })
    }

    /// Sends the job what arrives on `input` until it has ended.
    fn forward(&self, id: JobId, input: &Mutex<Receiver<Input>>, ended: &AtomicBool) {
        let input = input.lock();
        while !ended.load(Ordering::Relaxed) {
            let request = match input.recv_timeout(INPUT_POLL) {
                Ok(Input::Bytes(data)) => Request::Input {
                    id,
                    data: Bytes(data),
                },
                Ok(Input::Resize(size)) => Request::Resize { id, size },
                Ok(Input::Close) => Request::CloseInput { id },
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            // A failed send means the VM is going away: the reader says why.
            let _ = self.vm.guest.link.send(&request);
        }
    }

    /// Sends `request` and waits for the job's end.
    fn wait_for(
        &self,
        id: JobId,
        name: Arc<str>,
        request: &Request,
        timeout: Option<Duration>,
        allowed: &Allowed,
    ) -> Attempt {
        let started = Instant::now();
        let link = &self.vm.guest.link;
        link.update(|state| {
            state.jobs.insert(
                id,
                JobState {
                    name,
                    started: false,
                    output: Default::default(),
                    end: None,
                },
            )
        });
        // A failed send means the VM is going away: the reader will say why.
        let _ = link.send(request);
        let over = |state: &State| {
            state.death.is_some() || state.jobs.get(&id).is_some_and(|job| job.end.is_some())
        };
        let mut state = link.wait_until(timeout.map(|timeout| started + timeout), over);
        let timed_out = !over(&state);
        if timed_out {
            drop(state);
            let _ = link.send(&Request::Kill { id });
            state = link.wait_until(Some(Instant::now() + KILL_GRACE), over);
        }
        let job = state
            .jobs
            .remove(&id)
            .expect("the job was registered above");
        let death = state.death.clone();
        drop(state);
        let (outcome, splats) = match (job.end, death) {
            (None, Some(_)) if !job.started => return Attempt::NotStarted,
            (None, Some(death)) => (Outcome::VmDied(death), Vec::new()),
            (Some(JobEnd::Refused(message)), _) => (
                Outcome::SetupFailed(Arc::new(JobRefused(message))),
                Vec::new(),
            ),
            (Some(JobEnd::Done { .. }), _) | (None, None) if timed_out => (
                Outcome::TimedOut {
                    after: timeout.unwrap_or_default(),
                },
                Vec::new(),
            ),
            (
                Some(JobEnd::Done {
                    status,
                    verdict,
                    splats,
                }),
                _,
            ) => (Outcome::of(status, verdict), allowed.filter(splats)),
            (None, None) => unreachable!("a job without an end or a death has timed out"),
        };
        Attempt::Finished(Finished {
            outcome,
            splats,
            output: job.output,
            duration: started.elapsed(),
        })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.vm.guest.link.update(|state| state.reserved -= 1);
    }
}
