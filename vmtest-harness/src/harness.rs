//! `main()` for a `harness = false` test target: registered tests become
//! libtest trials, VMs boot ahead for the selected ones, and every VM is shut
//! down before the process exits with libtest's code.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use libtest_mimic::{Arguments, Conclusion, Failed, Trial};
use vmtest_engine::{
    chain, Engine, GuestServer, Reporter, Settings, SetupError, Supply, SupplyError, VmShape,
};

use crate::reporter::LibtestReporter;
use crate::resolve::{gated, shape_of, ShapeError};
use crate::trials::{self, KernelTrial};
use crate::{guest, registry, runner, signals};

/// Runs the test binary: inside a guest, the tests the host asks for; on
/// the host, the tests selected by the command line, each in its VM.
///
/// Call it from the test target's `main`. It exits the process with
/// libtest's exit code (101 when a test failed), after shutting down every VM.
pub fn main() -> ! {
    vmtest_guest::serve_if_requested(Some(guest::run_test));
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

/// A trial test, its VM's shape, and why it is ignored on its kernel.
struct Resolved {
    trial: KernelTrial,
    shape: Result<VmShape, ShapeError>,
    gate: Option<String>,
}

fn run(args: &Arguments, trial: Vec<KernelTrial>) -> Conclusion {
    let settings = Settings::from_env();
    let reporter = Arc::new(LibtestReporter {
        nocapture: args.nocapture,
        verbose: settings.as_ref().is_ok_and(|settings| settings.verbose),
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
    let resolved = resolve(trial, &reporter);
    for test in &resolved {
        if let Some(reason) = &test.gate {
            reporter.ignored(&test.trial.name, reason);
        }
    }
    let ignored = |test: &Resolved| test.trial.test.ignore || test.gate.is_some();
    if args.list {
        // Listing boots nothing.
        let trials = resolved
            .iter()
            .map(|test| {
                Trial::test(test.trial.name.clone(), || Ok(())).with_ignored_flag(ignored(test))
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

/// The shape of every trial test's VM, fetching kernels named by URL.
fn resolve(trial: Vec<KernelTrial>, reporter: &Arc<LibtestReporter>) -> Vec<Resolved> {
    let env = |var: &str| std::env::var(var).ok();
    let supply = Supply::from_env().map_err(Arc::new);
    // Once per URL, failures too: many tests may name one kernel.
    let fetched: RefCell<HashMap<String, Result<PathBuf, Arc<SupplyError>>>> = RefCell::default();
    let fetch = |url: &str| -> Result<PathBuf, Arc<SupplyError>> {
        if let Some(known) = fetched.borrow().get(url) {
            return known.clone();
        }
        let result = supply.as_ref().map_err(Arc::clone).and_then(|supply| {
            supply
                .kernel(url, &|event| reporter.report(event))
                .map_err(Arc::new)
        });
        fetched.borrow_mut().insert(url.to_string(), result.clone());
        result
    };
    trial
        .into_iter()
        .map(|trial| {
            let shape = shape_of(&trial, env, &fetch);
            let gate = shape.as_ref().ok().and_then(|shape| gated(&trial, shape));
            Resolved { trial, shape, gate }
        })
        .collect()
}

fn start_engine(settings: Settings, reporter: &Arc<LibtestReporter>) -> Result<Engine, SetupError> {
    let server = GuestServer::this_process().map_err(SetupError::Server)?;
    Engine::with_settings(settings, server, Arc::clone(reporter) as Arc<dyn Reporter>)
}
