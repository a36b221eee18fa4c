//! Running what the command line asks for: targets concurrently (as many at
//! once as the host has CPUs), each in its own VM, reported in file order.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use std::io::IsTerminal;

use vmtest_engine::{
    chain, is_url, Engine, Event, Finished, GuestServer, Outcome, SetupError, Supply, SupplyError,
};

use crate::cli::{Args, Mode};
use crate::config::{Boot, Target};
use crate::exit_codes;
use crate::image;
use crate::plan::{plan, Planned};
use crate::shell;
use crate::ui::{TargetInfo, Ui};

/// Runs what `args` ask for; returns the exit code.
pub fn main(args: Args) -> i32 {
    let cwd = match std::env::current_dir() {
        Ok(cwd) => cwd,
        Err(error) => {
            eprintln!("vmtest: cannot tell the current directory: {error}");
            return exit_codes::USAGE;
        }
    };
    match args.mode(&cwd) {
        Err(error) => {
            eprintln!("vmtest: {error}");
            exit_codes::USAGE
        }
        Ok(mut mode) => {
            let list = match &mut mode {
                Mode::OneLiner { target, .. } | Mode::Shell { target, .. } => {
                    std::slice::from_mut(target)
                }
                Mode::Config { targets, .. } => targets.as_mut_slice(),
            };
            if let Err((code, message)) = fetch_kernels(list) {
                eprintln!("vmtest: {message}");
                return code;
            }
            match mode {
                Mode::OneLiner { target, note } => targets(vec![target], &cwd, note),
                Mode::Config { targets: list, dir } => targets(list, &dir, None),
                Mode::Shell { target, note } => shell::run(&target, &cwd, note),
            }
        }
    }
}

/// Fetches the kernels named by URL (or finds them in the download cache),
/// with progress on a terminal.
/// On failure, the exit code and the message.
fn fetch_kernels(targets: &mut [Target]) -> Result<(), (i32, String)> {
    // Made at the first URL: a run of paths needs no download cache.
    let mut supply = None;
    let terminal = std::io::stderr().is_terminal();
    for target in targets {
        let Boot::Kernel { kernel, .. } = &mut target.boot else {
            continue;
        };
        let Some(url) = kernel
            .to_str()
            .filter(|kernel| is_url(kernel))
            .map(str::to_string)
        else {
            continue;
        };
        let supply = match &mut supply {
            Some(supply) => supply,
            None => supply.insert(Supply::from_env().map_err(|error| {
                let code = match error {
                    SupplyError::Settings(_) => exit_codes::USAGE,
                    _ => exit_codes::UNAVAILABLE,
                };
                (code, chain(&error))
            })?),
        };
        let report = |event: &Event| {
            if let Some(note) = event.download_note(terminal) {
                eprint!("{note}");
            }
        };
        *kernel = supply.kernel(&url, &report).map_err(|error| {
            (
                match error.is_bad_url() {
                    true => exit_codes::USAGE,
                    false => exit_codes::UNAVAILABLE,
                },
                format!(
                    "target {:?}: cannot fetch kernel {url}: {}",
                    target.name,
                    chain(&error)
                ),
            )
        })?;
    }
    Ok(())
}

/// Starts the engine, with `reporter` hearing its events.
pub fn engine(reporter: Arc<dyn vmtest_engine::Reporter>) -> Result<Engine, (i32, String)> {
    let server = GuestServer::this_process().map_err(|error| {
        (
            exit_codes::UNAVAILABLE,
            format!("cannot tell which binary this is: {error}"),
        )
    })?;
    Engine::new(server, reporter).map_err(|error| {
        let code = match error {
            SetupError::Settings(_) => exit_codes::USAGE,
            _ => exit_codes::UNAVAILABLE,
        };
        (code, chain(&error))
    })
}

/// Runs `targets` (from `dir`'s configuration); returns the exit code.
fn targets(targets: Vec<Target>, dir: &Path, note: Option<String>) -> i32 {
    let planned: Vec<Planned> = targets.iter().map(|target| plan(target, dir)).collect();
    let infos = targets
        .iter()
        .zip(&planned)
        .map(|(target, planned)| TargetInfo {
            name: target.name.clone(),
            shape: match planned {
                Planned::Kernel(job) => Some(job.shape.clone()),
                Planned::Image(_) => None,
            },
        })
        .collect();
    let ui = Ui::new(infos);
    if let Some(note) = note {
        ui.notice(&note);
    }
    let engine = match engine(Arc::clone(&ui) as Arc<dyn vmtest_engine::Reporter>) {
        Ok(engine) => engine,
        Err((code, message)) => {
            ui.notice(&message);
            return code;
        }
    };
    let results: Mutex<Vec<Option<Finished>>> = Mutex::new(vec![None; planned.len()]);
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(planned.len());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(planned) = planned.get(index) else {
                    break;
                };
                let finished = match planned {
                    Planned::Kernel(job) => engine.run(job.clone()),
                    Planned::Image(run) => image::run(&engine, run, index, &ui),
                };
                results.lock().unwrap_or_else(|p| p.into_inner())[index] = Some(finished);
            });
        }
    });
    ui.finish();
    engine.shutdown();
    drop(engine);
    let results: Vec<Finished> = results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .flatten()
        .collect();
    exit_code(&results)
}

/// One target: its command's code; several: how many failed.
pub fn exit_code(results: &[Finished]) -> i32 {
    match results {
        [finished] => match finished.outcome {
            Outcome::Exited { code } => code,
            Outcome::Signaled { signal } => exit_codes::SIGNAL_BASE + signal,
            Outcome::TimedOut { .. } => exit_codes::TIMED_OUT,
            _ => exit_codes::UNAVAILABLE,
        },
        results => {
            let failed = results
                .iter()
                .filter(|finished| !matches!(finished.outcome, Outcome::Exited { code: 0 }))
                .count();
            (failed as i32).min(exit_codes::MAX_FAILED)
        }
    }
}
