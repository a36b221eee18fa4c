//! What Ctrl-C, SIGTERM and SIGHUP do to a test run. The first stops every
//! VM at once ([`vmtest_engine::cancel`]): the running tests fail as
//! cancelled, the others do not start, and once every VM is shut down and
//! every file removed the process exits with 128 + the signal, as a shell
//! reports it. A second one ends the process at once, as nextest does (its
//! VMs die with it). A signal the run was started with ignored (`nohup`,
//! `trap '' HUP`) stays ignored.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// The signal that interrupted the run, once one has.
#[derive(Clone, Default)]
pub(crate) struct Interrupted(Arc<AtomicI32>);

impl Interrupted {
    pub(crate) fn signal(&self) -> Option<i32> {
        Some(self.0.load(Ordering::SeqCst)).filter(|&signal| signal != 0)
    }
}

/// Starts watching for the signals; a run that cannot watch them is ended
/// by them the usual way (its VMs die with it, the next run removes its
/// files).
pub(crate) fn watch() -> Interrupted {
    let interrupted = Interrupted::default();
    let wanted: Vec<i32> = [SIGINT, SIGTERM, SIGHUP]
        .into_iter()
        .filter(|&signal| !ignored_at_start(signal))
        .collect();
    let Ok(mut signals) = Signals::new(&wanted) else {
        return interrupted;
    };
    let seen = interrupted.clone();
    std::thread::spawn(move || {
        for signal in signals.forever() {
            if seen.0.swap(signal, Ordering::SeqCst) != 0 {
                std::process::exit(128 + signal);
            }
            let vms = vmtest_engine::cancel();
            eprintln!("vmtest: interrupted; {vms} VM(s) stopped (once more to exit at once)");
        }
    });
    interrupted
}

/// Whether the process started with `signal` ignored.
fn ignored_at_start(signal: i32) -> bool {
    ignored_in(
        &std::fs::read_to_string("/proc/self/status").unwrap_or_default(),
        signal,
    )
}

/// Whether `/proc/<pid>/status` text says `signal` is ignored (`SigIgn`, a
/// mask: bit N-1 for signal N).
fn ignored_in(status: &str, signal: i32) -> bool {
    status
        .lines()
        .find_map(|line| line.strip_prefix("SigIgn:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (signal - 1)) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ignored_signal_is_seen_as_ignored() {
        // A shell started with SIGHUP ignored, as `nohup` starts one.
        let output = std::process::Command::new("sh")
            .args(["-c", "trap '' HUP; cat /proc/self/status"])
            .output()
            .unwrap();
        let status = String::from_utf8(output.stdout).unwrap();
        assert!(ignored_in(&status, SIGHUP), "{status}");
        assert!(!ignored_in(&status, SIGTERM), "{status}");
        assert!(!ignored_in("Name: x\n", SIGHUP));
    }
}
