//! What `vmtest` exits with.
//!
//! | code | when |
//! |---|---|
//! | the command's | one target: its command's exit code |
//! | 128 + N | one target: its command was killed by signal N, as shells report it |
//! | 124 | one target: its command outlived its `--timeout` (as `timeout(1)` exits) |
//! | 69 | one target: the VM could not be brought up (`EX_UNAVAILABLE`, as danobi/vmtest) |
//! | N | several targets: how many failed (at most 100) |
//! | 64 | the command line or the configuration is wrong (`EX_USAGE`); nothing booted |

use vmtest_engine::{Finished, Outcome};

/// The VM could not be brought up (sysexits.h `EX_UNAVAILABLE`).
pub const UNAVAILABLE: i32 = 69;
/// Bad command line or configuration (sysexits.h `EX_USAGE`).
pub const USAGE: i32 = 64;
/// A command outlived its timeout (as coreutils' `timeout` exits).
pub const TIMED_OUT: i32 = 124;
/// A command killed by signal N exits with this plus N.
pub const SIGNAL_BASE: i32 = 128;
/// Several targets: the count of failures, at most this.
pub const MAX_FAILED: i32 = 100;

/// One target: its command's code; several: how many failed.
pub fn of(results: &[Finished]) -> i32 {
    match results {
        [finished] => match finished.outcome {
            Outcome::Exited { code } => code,
            Outcome::Signaled { signal } => SIGNAL_BASE + signal,
            Outcome::TimedOut { .. } => TIMED_OUT,
            _ => UNAVAILABLE,
        },
        results => {
            let failed = results
                .iter()
                .filter(|finished| !matches!(finished.outcome, Outcome::Exited { code: 0 }))
                .count();
            (failed as i32).min(MAX_FAILED)
        }
    }
}
