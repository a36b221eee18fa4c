//! Running what the command line asks for: targets concurrently (as many at
//! once as the host has CPUs), each in its own VM, reported in file order.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use std::io::IsTerminal;

use vmtest_engine::{chain, is_url, Event, Finished, Supply, SupplyError};

use crate::cli::{Args, Mode};
use crate::config::{Boot, Target};
use crate::exit_codes;
use crate::image;
use crate::jobs::{job_for, TargetJob};
use crate::shell;
use crate::start;
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
            if let Some(note) = vmtest_frontdoor::notes::download(event, terminal) {
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

/// Runs `targets` (from `dir`'s configuration); returns the exit code.
fn targets(targets: Vec<Target>, dir: &Path, note: Option<String>) -> i32 {
    let jobs: Vec<TargetJob> = targets.iter().map(|target| job_for(target, dir)).collect();
    let infos = targets
        .iter()
        .zip(&jobs)
        .map(|(target, job)| TargetInfo {
            name: target.name.clone(),
            shape: match job {
                TargetJob::Kernel(job) => Some(job.shape.clone()),
                TargetJob::Image(_) => None,
            },
        })
        .collect();
    let ui = Ui::new(infos);
    if let Some(note) = note {
        ui.notice(&note);
    }
    let engine = match start::engine(Arc::clone(&ui) as Arc<dyn vmtest_engine::Reporter>) {
        Ok(engine) => engine,
        Err((code, message)) => {
            ui.notice(&message);
            return code;
        }
    };
    let results: Mutex<Vec<Option<Finished>>> = Mutex::new(vec![None; jobs.len()]);
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(jobs.len());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(index) else {
                    break;
                };
                let finished = match job {
                    TargetJob::Kernel(job) => engine.run(job.clone()),
                    TargetJob::Image(run) => image::run(&engine, run, index, &ui),
                };
                results.lock()[index] = Some(finished);
            });
        }
    });
    ui.finish();
    engine.shutdown();
    drop(engine);
    let results: Vec<Finished> = results.into_inner().into_iter().flatten().collect();
    exit_codes::of(&results)
}
