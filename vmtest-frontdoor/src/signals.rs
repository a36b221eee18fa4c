//! Ctrl-C, SIGTERM and SIGHUP, the way a test runner is expected to take
//! them (as nextest does): the first asks the run to stop, which the front
//! door does by cancelling every VM and ending once everything is shut down
//! and removed, with 128 + the signal as a shell reports it; a second one
//! ends the process at once. A signal the process was started with ignored
//! (`nohup`, `trap '' HUP`) stays ignored.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// The signal that interrupted the run, once one has.
#[derive(Clone, Default)]
pub struct Interrupted(Arc<AtomicI32>);

impl Interrupted {
    /// The first signal received, if any.
    pub fn signal(&self) -> Option<i32> {
        Some(self.0.load(Ordering::SeqCst)).filter(|&signal| signal != 0)
    }

    /// The exit code for a run that ended with `code`: 128 + the signal if
    /// one interrupted it.
    pub fn exit_code(&self, code: i32) -> i32 {
        self.signal().map_or(code, |signal| 128 + signal)
    }
}

/// Watches for the signals from now on: the first calls `stop` (with the
/// signal) and the run goes on to its end; a second calls `before_exit`
/// and exits at once. Without a watcher (the thread cannot start) the
/// signals end the process the usual way.
pub fn watch(
    stop: impl Fn(i32) + Send + 'static,
    before_exit: impl Fn() + Send + 'static,
) -> Interrupted {
    let interrupted = Interrupted::default();
    let ignored = ignored(&std::fs::read_to_string("/proc/self/status").unwrap_or_default());
    let wanted: Vec<i32> = [SIGINT, SIGTERM, SIGHUP]
        .into_iter()
        .filter(|signal| !ignored.contains(signal))
        .collect();
    let Ok(mut signals) = Signals::new(&wanted) else {
        return interrupted;
    };
    let seen = interrupted.clone();
    std::thread::spawn(move || {
        for signal in signals.forever() {
            if seen.0.swap(signal, Ordering::SeqCst) != 0 {
                before_exit();
                std::process::exit(128 + signal);
            }
            stop(signal);
        }
    });
    interrupted
}

/// The signals `/proc/<pid>/status` text says are ignored (`SigIgn`, a
/// mask: bit N-1 for signal N).
fn ignored(status: &str) -> Vec<i32> {
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
        assert_eq!(ignored(status), [SIGHUP, 3]);
        assert!(ignored("Name:\tvmtest\n").is_empty());
    }

    #[test]
    fn a_shell_that_ignores_sighup_says_so() {
        let output = std::process::Command::new("sh")
            .args(["-c", "trap '' HUP; cat /proc/self/status"])
            .output()
            .unwrap();
        let status = String::from_utf8(output.stdout).unwrap();
        assert!(ignored(&status).contains(&SIGHUP), "{status}");
        assert!(!ignored(&status).contains(&SIGTERM), "{status}");
    }

    #[test]
    fn the_exit_code_says_which_signal_ended_the_run() {
        let interrupted = Interrupted::default();
        assert_eq!(interrupted.exit_code(101), 101);
        interrupted.0.store(SIGTERM, Ordering::SeqCst);
        assert_eq!(interrupted.exit_code(101), 128 + SIGTERM);
    }
}
