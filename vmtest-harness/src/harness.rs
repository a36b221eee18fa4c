//! `main()` for a `harness = false` test target: registered tests become
//! libtest trials, VMs boot ahead for the selected ones, and every VM is shut
//! down before the process exits with libtest's code.

use std::collections::BTreeSet;
use std::sync::Arc;

use libtest_mimic::{Arguments, Conclusion, Failed, Trial};
use vmtest_engine::{chain, Engine, GuestServer, Settings, SetupError};

use crate::plan::{self, PlannedTest};
use crate::reporter::LibtestReporter;
use crate::resolve::shape_of;
use crate::{guest, registry, runner};

/// Runs the test binary: inside a guest, the tests the host asks for; on
/// the host, the tests selected by the command line, each in its VM.
///
/// Call it from the test target's `main`. It exits the process with
/// libtest's exit code (101 when a test failed), after shutting down every VM.
pub fn main() -> ! {
    vmtest_engine::serve_if_requested(Some(guest::run_test));
    let args = Arguments::from_args();
    let env = |var: &str| std::env::var(var).ok();
    let conclusion = run(&args, plan::plan(&registry::all(), env));
    conclusion.exit()
}

fn run(args: &Arguments, planned: Vec<PlannedTest>) -> Conclusion {
    if args.list {
        // Listing boots nothing and needs no settings.
        let trials = planned
            .into_iter()
            .map(|planned| {
                Trial::test(planned.name, || Ok(())).with_ignored_flag(planned.test.ignore)
            })
            .collect();
        return libtest_mimic::run(args, trials);
    }
    let engine = match start_engine(args) {
        Ok(engine) => Arc::new(engine),
        // Every test fails with the reason.
        Err(error) => {
            let message = chain(&error);
            let trials = planned
                .into_iter()
                .map(|planned| {
                    let message = message.clone();
                    Trial::test(planned.name, move || Err(Failed::from(message)))
                        .with_ignored_flag(planned.test.ignore)
                })
                .collect();
            return libtest_mimic::run(args, trials);
        }
    };
    let env = |var: &str| std::env::var(var).ok();
    let mut ahead = BTreeSet::new();
    let trials: Vec<Trial> = planned
        .into_iter()
        .map(|planned| {
            let shape = shape_of(&planned, env);
            let ignore = planned.test.ignore;
            let nocapture = args.nocapture;
            let trial = Trial::test(planned.name.clone(), {
                let (engine, shape) = (Arc::clone(&engine), shape.clone());
                move || runner::run(&engine, &planned, shape?, nocapture)
            })
            .with_ignored_flag(ignore);
            if let Ok(shape) = shape {
                if !args.is_filtered_out(&trial) && !args.is_ignored(&trial) {
                    ahead.insert(shape);
                }
            }
            trial
        })
        .collect();
    engine.boot_ahead(ahead);
    let conclusion = libtest_mimic::run(args, trials);
    engine.shutdown();
    conclusion
}

fn start_engine(args: &Arguments) -> Result<Engine, SetupError> {
    let settings = Settings::from_env()?;
    let reporter = Arc::new(LibtestReporter {
        nocapture: args.nocapture,
        verbose: settings.verbose,
    });
    let server = GuestServer::this_process().map_err(SetupError::Server)?;
    Engine::with_settings(settings, server, reporter)
}
