//! What the user sees: the engine's events, rendered by one of two faces.
//!
//! - Attended (a terminal, and `VMTEST_NO_UI` unset): [`live`], each
//!   target's stages with a rolling window of its last lines, collapsing to a
//!   pass mark, or showing everything, in red, when it fails.
//! - Unattended: [`plain`], greppable lines.
//!
//! With one target (a one-liner), the command's output goes straight to
//! stdout and stderr as it is written, in both faces, and vmtest's own
//! lines go to stderr.

mod lines;
mod live;
mod plain;

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use vmtest_engine::{chain, Event, Finished, JobId, Outcome, Reporter, Splat, VmShape};

/// Writes a command's output where the command wrote it, as it is.
pub fn pass_through(stderr: bool, data: &[u8]) {
    use std::io::Write;
    let _ = match stderr {
        true => std::io::stderr().lock().write_all(data),
        false => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(data).and_then(|()| stdout.flush())
        }
    };
}

/// What a face needs to know about each target, in file order.
#[derive(Debug, Clone)]
pub struct TargetInfo {
    pub name: String,
    /// The VM shape of a kernel target, to tell its VM's events.
    pub shape: Option<VmShape>,
}

/// Where a target is.
#[derive(Debug, Clone)]
pub enum Stage {
    Waiting,
    Booting { what: String },
    Running,
    Done(Ending),
}

/// How a target ended, as a face shows it.
#[derive(Debug, Clone)]
pub struct Ending {
    pub passed: bool,
    /// What it printed (both ends, as the engine keeps them), for a
    /// failure.
    pub output: String,
    /// Why it failed: empty when it passed.
    pub reason: String,
    pub splats: Vec<Splat>,
    pub duration: Duration,
}

impl Ending {
    pub fn of(finished: &Finished) -> Ending {
        let passed = matches!(finished.outcome, Outcome::Exited { code: 0 });
        let reason = match &finished.outcome {
            Outcome::Exited { code: 0 } => String::new(),
            Outcome::Exited { code } => format!("the command exited with code {code}"),
            Outcome::Signaled { .. } => finished
                .outcome
                .to_string()
                .replace("the process", "the command"),
            Outcome::SetupFailed(error) => chain(error.as_ref()),
            outcome => outcome.to_string(),
        };
        Ending {
            passed,
            output: finished.output.text(),
            reason,
            splats: finished.splats.clone(),
            duration: finished.duration,
        }
    }
}

/// A face: how events become what the user sees.
pub trait Face: Send + Sync {
    /// Target `index` moved on.
    fn stage(&self, index: usize, stage: &Stage);
    /// Target `index` wrote `data` on stdout (or stderr).
    fn output(&self, index: usize, stderr: bool, data: &[u8]);
    /// Something to tell about the run as a whole.
    fn notice(&self, text: &str);
    /// Every target has ended.
    fn finish(&self);
}

/// Routes the engine's events to the targets they concern.
pub struct Ui {
    targets: Vec<TargetInfo>,
    face: Box<dyn Face>,
    jobs: Mutex<HashMap<JobId, usize>>,
}

impl Ui {
    /// The face for `targets`: attended if stderr is a terminal and
    /// `VMTEST_NO_UI` is unset.
    pub fn new(targets: Vec<TargetInfo>) -> Arc<Ui> {
        let attended =
            std::env::var_os("VMTEST_NO_UI").is_none() && std::io::stderr().is_terminal();
        let single = targets.len() == 1;
        let names: Vec<String> = targets.iter().map(|target| target.name.clone()).collect();
        let face: Box<dyn Face> = match attended {
            true => Box::new(live::Live::new(names, single)),
            false => Box::new(plain::Plain::new(names, single)),
        };
        Arc::new(Ui {
            targets,
            face,
            jobs: Mutex::default(),
        })
    }

    /// Target `index` is booting something the engine does not report on
    /// (a disk image).
    pub fn stage(&self, index: usize, stage: &Stage) {
        self.face.stage(index, stage);
    }

    pub fn notice(&self, text: &str) {
        self.face.notice(text);
    }

    pub fn finish(&self) {
        self.face.finish();
    }

    fn by_name(&self, name: &str) -> Option<usize> {
        self.targets.iter().position(|target| target.name == name)
    }

    fn by_shape(&self, shape: &VmShape) -> Vec<usize> {
        (0..self.targets.len())
            .filter(|&index| self.targets[index].shape.as_ref() == Some(shape))
            .collect()
    }
}

impl Reporter for Ui {
    fn report(&self, event: &Event) {
        match event {
            Event::VmBooting { shape, attempt, .. } => {
                let what = match attempt {
                    1 => format!("booting {shape}"),
                    _ => format!("booting {shape} again"),
                };
                for index in self.by_shape(shape) {
                    self.face
                        .stage(index, &Stage::Booting { what: what.clone() });
                }
            }
            Event::VmRetrying { shape, reason, .. } => {
                let reason = reason.lines().next().unwrap_or_default();
                self.face.notice(&format!(
                    "{shape} did not come up ({reason}); trying once more"
                ));
            }
            Event::VmDied { shape, death, .. } => {
                self.face
                    .notice(&format!("the VM for {shape} died: {}", death.cause));
            }
            Event::ProfilesLost {
                destination,
                reason,
            } => self.face.notice(&format!(
                "cannot copy the guest's coverage profiles to {}: {reason}",
                destination.display()
            )),
            Event::JobStarted { job, name, .. } => {
                if let Some(index) = self.by_name(name) {
                    self.jobs.lock().insert(*job, index);
                    self.face.stage(index, &Stage::Running);
                }
            }
            Event::Output { job, stream, data } => {
                let index = self.jobs.lock().get(job).copied();
                if let Some(index) = index {
                    self.face
                        .output(index, *stream == vmtest_engine::Stream::Stderr, data);
                }
            }
            Event::JobFinished { name, finished, .. } => {
                if let Some(index) = self.by_name(name) {
                    self.face.stage(index, &Stage::Done(Ending::of(finished)));
                }
            }
            _ => {}
        }
    }
}
