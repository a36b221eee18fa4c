//! One test in a VM, from the host's side: ask the guest's test server to
//! run it, wait for it, turn what it printed into a libtest outcome.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use libtest_mimic::Failed;

use crate::control::Outcome;
use crate::plan::PlannedTest;
use crate::pool::Pool;
use crate::protocol::{Verdict, GUEST_CWD_VAR, GUEST_SERVER_VAR, SHARED_DIR_VAR};
use crate::shape::VmShape;
use crate::vm::RunError;

/// How long a test may run when it does not say.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Host-side facts every test run needs.
pub(crate) struct Runner {
    /// This very binary, run again inside the guest.
    pub binary: String,
    pub cwd: OsString,
    pub shared_dir: Option<String>,
    /// `--nocapture`: print each test's output when it finishes.
    pub nocapture: bool,
    /// Say how long each test took in its VM.
    pub verbose: bool,
}

impl Runner {
    /// Runs `planned` in its VM.
    pub(crate) fn run(
        &self,
        pool: &Pool,
        planned: &PlannedTest,
        shape: &VmShape,
    ) -> Result<(), Failed> {
        let vm = pool.vm(shape)?;
        let timeout = planned
            .test
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_TIMEOUT);
        let started = Instant::now();
        let result = vm.run_test(
            &self.binary,
            || self.environment(),
            &planned.test.path(),
            timeout,
        );
        if self.verbose {
            eprintln!(
                "vmtest: {} ran in {:.2?} in its VM",
                planned.name,
                started.elapsed()
            );
        }
        match result {
            Ok(outcome) => self.judge(&planned.name, outcome),
            Err(RunError::TimedOut { timeout, partial }) => {
                let output = partial.map(|outcome| outcome.output).unwrap_or_default();
                let (output, _) = Verdict::split_from(&output);
                self.show(&planned.name, &output);
                Err(failure(
                    &output,
                    &format!("test timed out after {timeout:?} and was killed"),
                ))
            }
            Err(error) => Err(error.to_string().into()),
        }
    }

    /// The host's environment, plus what starts the guest's test server.
    fn environment(&self) -> Vec<String> {
        let mut env: Vec<String> = std::env::vars_os()
            .filter(|(key, _)| key != GUEST_SERVER_VAR && key != GUEST_CWD_VAR)
            .map(|(key, value)| format!("{}={}", key.to_string_lossy(), value.to_string_lossy()))
            .collect();
        env.push(format!("{GUEST_SERVER_VAR}=1"));
        env.push(format!("{GUEST_CWD_VAR}={}", self.cwd.to_string_lossy()));
        if let Some(shared) = &self.shared_dir {
            env.push(format!("{SHARED_DIR_VAR}={shared}"));
        }
        env
    }

    fn judge(&self, name: &str, outcome: Outcome) -> Result<(), Failed> {
        let (output, verdict) = Verdict::split_from(&outcome.output);
        self.show(name, &output);
        match (verdict, outcome.code, outcome.signal) {
            (Some(Verdict::Passed), Some(0), None) => Ok(()),
            (Some(Verdict::Failed(message)), _, _) => Err(failure(&output, &message)),
            (_, code, signal) => {
                let how = match (code, signal) {
                    (_, Some(signal)) => format!("was killed by signal {signal}"),
                    (Some(code), None) => format!("exited with code {code}"),
                    (None, None) => "ended".to_string(),
                };
                Err(failure(
                    &output,
                    &format!("the test process {how} in the guest before reporting a result"),
                ))
            }
        }
    }

    /// With `--nocapture`, a test's output is shown as soon as it finishes.
    fn show(&self, name: &str, output: &str) {
        if self.nocapture && !output.is_empty() {
            println!("---- {name} output ----\n{output}");
        }
    }
}

/// A failure message laid out as libtest shows one: output, then reason.
fn failure(output: &str, message: &str) -> Failed {
    match (output.trim_end(), message) {
        ("", message) => message.into(),
        (output, "") => output.into(),
        (output, message) => format!("{output}\n{message}").into(),
    }
}
