//! What Ctrl-C, SIGTERM and SIGHUP do to `vmtest`. The first stops every VM
//! at once ([`vmtest_engine::cancel`]) and gives the terminal back if a
//! shell had it: the targets still running fail as cancelled, the others do
//! not start, and once everything is shut down and removed vmtest exits with
//! 128 + the signal. A second one ends vmtest at once (its VMs die with it).
//! A signal vmtest was started with ignored (`nohup`) stays ignored.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::shell;

/// The signal that interrupted vmtest, once one has.
#[derive(Clone, Default)]
pub struct Interrupted(Arc<AtomicI32>);

impl Interrupted {
    pub fn signal(&self) -> Option<i32> {
        Some(self.0.load(Ordering::SeqCst)).filter(|&signal| signal != 0)
    }
}

/// Starts watching for the signals.
pub fn watch() -> Interrupted {
    let interrupted = Interrupted::default();
    let ignored =
        ignored_signals(&std::fs::read_to_string("/proc/self/status").unwrap_or_default());
    let wanted: Vec<i32> = [SIGINT, SIGTERM, SIGHUP]
        .into_iter()
        .filter(|signal| !ignored.contains(signal))
        .collect();
    // Without a watcher, the signals end vmtest the usual way: its VMs die
    // with it, and the next run removes its files.
    let Ok(mut signals) = Signals::new(&wanted) else {
        return interrupted;
    };
    let seen = interrupted.clone();
    std::thread::spawn(move || {
        for signal in signals.forever() {
            shell::restore_terminal();
            if seen.0.swap(signal, Ordering::SeqCst) != 0 {
                std::process::exit(128 + signal);
            }
            let vms = vmtest_engine::cancel();
            eprintln!("vmtest: interrupted; {vms} VM(s) stopped");
        }
    });
    interrupted
}

/// The signals `/proc/<pid>/status` text says are ignored (`SigIgn`, a
/// mask: bit N-1 for signal N).
fn ignored_signals(status: &str) -> Vec<i32> {
    let mask = status
        .lines()
        .find_map(|line| line.strip_prefix("SigIgn:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .unwrap_or(0);
    (1..=64)
        .filter(|signal| mask & (1 << (signal - 1)) != 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_ignored_at_start_are_read_from_the_status() {
        let status = "Name:\tvmtest\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000000005\n";
        assert_eq!(ignored_signals(status), [SIGHUP, 3]);
        assert!(ignored_signals("Name:\tvmtest\n").is_empty());
    }
}
