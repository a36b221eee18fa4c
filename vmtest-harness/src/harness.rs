//! `main()` for a `harness = false` test target: registered tests become
//! libtest trials, VMs boot ahead for the selected ones, and every VM is shut
//! down before the process exits with libtest's code.

use std::collections::BTreeSet;
use std::sync::Arc;

use libtest_mimic::{Arguments, Conclusion, Trial};

use crate::plan::{self, PlannedTest};
use crate::pool::Pool;
use crate::runner::Runner;
use crate::settings::{self, Settings};
use crate::shape::VmShape;
use crate::{guest, registry};

/// Runs the test binary: inside a guest, the one test the host asked for;
/// on the host, the tests selected by the command line, each in its VM.
///
/// Call it from the test target's `main`. It exits the process with
/// libtest's exit code (101 when a test failed), after shutting down every VM.
pub fn main() -> ! {
    guest::serve_if_requested();
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
    let settings = Settings::from_env().map_err(|error| error.to_string());
    let runner = Arc::new(Runner {
        binary: std::env::current_exe()
            .map(|exe| exe.to_string_lossy().into_owned())
            .unwrap_or_default(),
        cwd: std::env::current_dir().map(Into::into).unwrap_or_default(),
        shared_dir: settings
            .as_ref()
            .ok()
            .map(|settings| settings.shared_dir.to_string_lossy().into_owned()),
        nocapture: args.nocapture,
        verbose: settings::verbose(),
    });
    let pool = Pool::new(settings);
    let env = |var: &str| std::env::var(var).ok();
    let mut ahead = BTreeSet::new();
    let trials: Vec<Trial> = planned
        .into_iter()
        .map(|planned| {
            let shape = VmShape::of(&planned, env);
            let ignore = planned.test.ignore;
            let trial = Trial::test(planned.name.clone(), {
                let (pool, runner, shape) = (Arc::clone(&pool), Arc::clone(&runner), shape.clone());
                move || runner.run(&pool, &planned, &shape?)
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
    pool.boot_ahead(ahead);
    let conclusion = libtest_mimic::run(args, trials);
    pool.shutdown();
    conclusion
}
