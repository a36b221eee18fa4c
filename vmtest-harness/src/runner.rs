//! One test in a VM, from the host's side: start the test binary in the
//! guest, wait for it, turn what it printed into a libtest outcome.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use libtest_mimic::Failed;

use crate::plan::PlannedTest;
use crate::pool::Pool;
use crate::protocol::{Verdict, GUEST_CWD_VAR, GUEST_TEST_VAR, SHARED_DIR_VAR};
use crate::shape::VmShape;
use crate::vm::{Exit, Finished, RunError};

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
        let result = vm.run(&self.binary, Vec::new(), self.environment(planned), timeout);
        if self.verbose {
            eprintln!(
                "vmtest: {} ran in {:.2?} in its VM",
                planned.name,
                started.elapsed()
            );
        }
        match result {
            Ok(finished) => self.judge(&planned.name, finished),
            Err(RunError::TimedOut { timeout, partial }) => {
                let output = partial.map(|finished| finished.stdout).unwrap_or_default();
                self.show(&planned.name, &output);
                Err(failure(
                    &output,
                    &format!("test timed out after {timeout:?} and was killed"),
                ))
            }
            Err(error) => Err(error.to_string().into()),
        }
    }

    /// The host's environment, plus what tells the guest side what to do.
    fn environment(&self, planned: &PlannedTest) -> Vec<String> {
        let mut env: Vec<String> = std::env::vars_os()
            .filter(|(key, _)| key != GUEST_TEST_VAR && key != GUEST_CWD_VAR)
            .map(|(key, value)| format!("{}={}", key.to_string_lossy(), value.to_string_lossy()))
            .collect();
        env.push(format!("{GUEST_TEST_VAR}={}", planned.test.path()));
        env.push(format!("{GUEST_CWD_VAR}={}", self.cwd.to_string_lossy()));
        if let Some(shared) = &self.shared_dir {
            env.push(format!("{SHARED_DIR_VAR}={shared}"));
        }
        env
    }

    fn judge(&self, name: &str, finished: Finished) -> Result<(), Failed> {
        let (output, verdict) = Verdict::split_from(&finished.stdout);
        self.show(name, &output);
        match (verdict, finished.exit) {
            (Some(Verdict::Passed), Exit::Code(0)) => Ok(()),
            (Some(Verdict::Failed(message)), _) => Err(failure(&output, &message)),
            (_, exit) => {
                let how = match exit {
                    Exit::Code(code) => format!("exited with code {code}"),
                    Exit::Signal(signal) => format!("was killed by signal {signal}"),
                };
                let stderr = finished.stderr.trim();
                let extra = if stderr.is_empty() {
                    String::new()
                } else {
                    format!("\n{stderr}")
                };
                Err(failure(
                    &output,
                    &format!(
                        "the test process {how} in the guest before reporting a result{extra}"
                    ),
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
