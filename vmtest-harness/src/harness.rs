//! `main()` for a `harness = false` test target: registered tests become
//! libtest trials, VMs boot ahead for the selected ones, and every VM is shut
//! down before the process exits with libtest's code.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::sync::Arc;

use libtest_mimic::{Arguments, Conclusion, Failed, Trial};
use vmtest_engine::{chain, Engine, GuestServer, Reporter, Settings, SetupError};

use crate::reporter::LibtestReporter;
use crate::resolve::{resolve_all, Resolved};
use crate::run_pool::{self, RunPool};
use crate::trials::{self, KernelTrial};
use crate::{guest, registry, runner, signals};

/// Runs the test binary: inside a guest, the tests the host asks for; on
/// the host, the tests selected by the command line, each in its VM.
///
/// Call it from the test target's `main`. It exits the process with
/// libtest's exit code (101 when a test failed), after shutting down every VM.
pub fn main() -> ! {
    vmtest_guest::serve_if_requested(Some(guest::run_test));
    run_pool::serve_if_requested();
    let interrupted = signals::watch();
    let args = Arguments::from_args();
    let env = |var: &str| std::env::var(var).ok();
    let conclusion = run(&args, trials::per_kernel(&registry::all(), env));
    // Every VM is down and every file gone by now.
    if interrupted.signal().is_some() {
        std::process::exit(interrupted.exit_code(101));
    }
    conclusion.exit()
}

fn run(args: &Arguments, trial: Vec<KernelTrial>) -> Conclusion {
    let settings = Settings::from_env();
    let reporter = Arc::new(LibtestReporter {
        nocapture: args.nocapture,
        verbose: settings.as_ref().is_ok_and(|settings| settings.verbose),
        terminal: std::io::stderr().is_terminal(),
    });
    // Tests the name filters leave out are not resolved (no kernel is
    // fetched for them), only counted as libtest counts them. (`--ignored`
    // is left to libtest: whether a test is ignored is known once resolved.)
    let by_name = Arguments {
        ignored: false,
        ..args.clone()
    };
    let (trial, left_out): (Vec<KernelTrial>, Vec<KernelTrial>) = trial
        .into_iter()
        .partition(|test| !by_name.is_filtered_out(&Trial::test(test.name.clone(), || Ok(()))));
    let left_out = || {
        left_out
            .iter()
            .map(|test| Trial::test(test.name.clone(), || Ok(())))
    };
    let resolved = resolve_all(trial, reporter.as_ref());
    for test in &resolved {
        if let Some(reason) = &test.gate {
            reporter.ignored(&test.trial.name, reason);
        }
    }
    let ignored = |test: &Resolved| test.trial.test.ignore || test.gate.is_some();
    let pool = settings.as_ref().ok().and_then(RunPool::of_this_run);
    if args.list {
        // Listing boots nothing here; under nextest, the run's pool starts
        // its VMs while nextest lists the tests.
        if let Some(pool) = &pool {
            pool.start_early();
        }
        let trials = resolved
            .iter()
            .map(|test| {
                Trial::test(test.trial.name.clone(), || Ok(())).with_ignored_flag(ignored(test))
            })
            .chain(left_out())
            .collect();
        return libtest_mimic::run(args, trials);
    }
    if let Some(pool) = pool {
        let pool = Arc::new(pool);
        let trials = resolved
            .into_iter()
            .map(|test| {
                let is_ignored = ignored(&test);
                let (pool, nocapture) = (Arc::clone(&pool), args.nocapture);
                let Resolved { trial, shape, .. } = test;
                Trial::test(trial.name.clone(), move || {
                    shape?;
                    pool.run(&trial.name, nocapture)
                })
                .with_ignored_flag(is_ignored)
            })
            .chain(left_out())
            .collect();
        return libtest_mimic::run(args, trials);
    }
    let engine = match settings
        .map_err(SetupError::from)
        .and_then(|settings| start_engine(settings, &reporter))
    {
        Ok(engine) => Arc::new(engine),
        // Every test fails with the reason.
        Err(error) => {
            let message = chain(&error);
            let trials = resolved
                .iter()
                .map(|test| {
                    let message = message.clone();
                    Trial::test(test.trial.name.clone(), move || Err(Failed::from(message)))
                        .with_ignored_flag(ignored(test))
                })
                .chain(left_out())
                .collect();
            return libtest_mimic::run(args, trials);
        }
    };
    let mut ahead = BTreeSet::new();
    let trials: Vec<Trial> = resolved
        .into_iter()
        .map(|test| {
            let is_ignored = ignored(&test);
            let Resolved { trial, shape, .. } = test;
            let nocapture = args.nocapture;
            let trial = Trial::test(trial.name.clone(), {
                let (engine, shape) = (Arc::clone(&engine), shape.clone());
                move || runner::run(&engine, &trial, shape?, nocapture)
            })
            .with_ignored_flag(is_ignored);
            if let Ok(shape) = shape {
                if !args.is_filtered_out(&trial) && !args.is_ignored(&trial) {
                    ahead.insert(shape);
                }
            }
            trial
        })
        .chain(left_out())
        .collect();
    engine.boot_ahead(ahead);
    let conclusion = libtest_mimic::run(args, trials);
    engine.shutdown();
    conclusion
}

fn start_engine(settings: Settings, reporter: &Arc<LibtestReporter>) -> Result<Engine, SetupError> {
    let server = GuestServer::this_process().map_err(SetupError::Server)?;
    Engine::with_settings(settings, server, Arc::clone(reporter) as Arc<dyn Reporter>)
}
