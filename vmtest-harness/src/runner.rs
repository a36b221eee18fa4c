//! One test, from libtest's side: the engine runs it in its VM, and its
//! outcome becomes libtest's verdict, in one place.

use std::fmt::Write as _;
use std::time::Duration;

use libtest_mimic::Failed;
use vmtest_engine::{Engine, Finished, Job, Outcome, VmShape, Work};

use crate::trials::KernelTrial;

/// How long a test may run when it does not say.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `trial` in a VM of `shape`.
pub(crate) fn run(
    engine: &Engine,
    trial: &KernelTrial,
    shape: VmShape,
    nocapture: bool,
) -> Result<(), Failed> {
    let test = trial.test;
    let finished = engine.run(Job {
        name: trial.name.clone(),
        shape,
        work: Work::Test { path: test.path() },
        timeout: Some(
            test.timeout_ms
                .map(Duration::from_millis)
                .unwrap_or(DEFAULT_TIMEOUT),
        ),
        allowed_splats: test
            .allowed_splats
            .iter()
            .map(|pattern| pattern.to_string())
            .collect(),
    });
    verdict(&finished, nocapture)
}

/// libtest's verdict: a failure shows what the test printed (unless it was
/// shown live), then why it failed, then the kernel splats it caused.
fn verdict(finished: &Finished, nocapture: bool) -> Result<(), Failed> {
    if finished.passed() {
        return Ok(());
    }
    let mut message = if nocapture {
        String::new()
    } else {
        finished.output.text()
    };
    let reason = match &finished.outcome {
        Outcome::Exited { code } => format!(
            "the test process exited with code {code} in the guest before reporting a result"
        ),
        outcome => outcome.to_string(),
    };
    for part in std::iter::once(reason).chain(finished.splats.iter().map(|splat| {
        format!(
            "the guest kernel logged a splat while the test ran:\n{}",
            splat.text
        )
    })) {
        if part.is_empty() {
            continue;
        }
        if !message.is_empty() && !message.ends_with('\n') {
            message.push('\n');
        }
        let _ = write!(message, "{part}");
    }
    Err(message.trim_end().into())
}
