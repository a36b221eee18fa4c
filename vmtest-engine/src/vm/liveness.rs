//! Telling a dead guest from a slow one.
//!
//! The host pings the test server every [`PING_EVERY`] and counts every
//! message from the guest as a sign of life. A guest silent for
//! [`DEAD_AFTER`] is dead: a hung kernel, or a server that cannot run.
//!
//! Silence is measured in the time QEMU could have run. On a loaded host (a
//! CI runner, eight `cargo test` runs at once) QEMU's threads wait for a CPU,
//! and a guest that never ran cannot have answered: the time QEMU's threads
//! spent runnable but waiting (`run_delay` in `/proc/<pid>/task/*/schedstat`,
//! Linux's scheduler statistics) is not counted as silence. Without
//! schedstat, wall time counts.

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How often the host pings a ready guest.
pub(crate) const PING_EVERY: Duration = Duration::from_millis(250);
/// How long a guest that could run may stay silent.
pub(crate) const DEAD_AFTER: Duration = Duration::from_secs(1);

/// The silence of one guest.
pub(crate) struct Liveness {
    tasks: PathBuf,
    last_heard: Instant,
    /// QEMU's run delay when the guest was last heard from, once sampled.
    delay_then: Option<Duration>,
    last_ping: Instant,
}

impl Liveness {
    /// For the QEMU process `pid`, heard from just now.
    pub(crate) fn new(pid: u32) -> Liveness {
        let tasks = PathBuf::from(format!("/proc/{pid}/task"));
        let now = Instant::now();
        Liveness {
            delay_then: run_delay(&tasks),
            tasks,
            last_heard: now,
            last_ping: now,
        }
    }

    /// The guest said something. Cheap: called for every message.
    pub(crate) fn heard(&mut self) {
        self.last_heard = Instant::now();
        self.delay_then = None;
    }

    /// Whether a ping is due now (and counts it as sent).
    pub(crate) fn ping_due(&mut self) -> bool {
        let due = self.last_ping.elapsed() >= PING_EVERY;
        if due {
            self.last_ping = Instant::now();
        }
        due
    }

    /// How long the guest has been silent while it could run. Called a few
    /// times a second.
    pub(crate) fn silence(&mut self) -> Duration {
        let wall = self.last_heard.elapsed();
        let Some(now) = run_delay(&self.tasks) else {
            return wall;
        };
        // The first sample after a message stands for the moment it came.
        let then = *self.delay_then.get_or_insert(now);
        wall.saturating_sub(now.saturating_sub(then))
    }
}

/// The time all of QEMU's threads have spent waiting for a CPU.
fn run_delay(tasks: &std::path::Path) -> Option<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir(tasks).ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        // "<on-cpu ns> <run-delay ns> <timeslices>"
        total += stat.split_whitespace().nth(1)?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_run_delay_is_readable() {
        let tasks = PathBuf::from(format!("/proc/{}/task", std::process::id()));
        assert!(run_delay(&tasks).is_some());
    }

    #[test]
    fn silence_grows_from_the_last_message_and_resets() {
        // A process that sleeps, so that it never waits for a CPU.
        let mut sleeper = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .unwrap();
        let mut liveness = Liveness::new(sleeper.id());
        std::thread::sleep(Duration::from_millis(100));
        let silence = liveness.silence();
        liveness.heard();
        let after = liveness.silence();
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
        assert!(silence >= Duration::from_millis(90), "{silence:?}");
        assert!(after < Duration::from_millis(90), "{after:?}");
    }

    #[test]
    fn pings_are_spaced() {
        let mut liveness = Liveness::new(std::process::id());
        assert!(!liveness.ping_due());
        liveness.last_ping -= PING_EVERY;
        assert!(liveness.ping_due());
        assert!(!liveness.ping_due());
    }
}
