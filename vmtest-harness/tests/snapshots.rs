//! Snapshots, end to end: the first run boots its VM and saves it, later
//! runs restore it; a restored guest is a fresh one (the host's clock, its
//! own random numbers, nothing of an earlier VM); a snapshot that cannot be
//! restored costs a boot, is said once and is replaced; `VMTEST_SNAPSHOT=0`
//! boots every time.

mod common;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use common::*;

const FRESH: &str = "is_a_fresh_guest";

/// What one run of [`FRESH`] saw, and how its VM came up.
struct Fresh {
    boot_id: String,
    random: String,
    clock: f64,
    restored: bool,
    stderr: String,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Runs [`FRESH`] alone with `cache` as the cache, after `configure`.
fn fresh(cache: &Path, configure: impl FnOnce(&mut std::process::Command)) -> Fresh {
    let started = now();
    let run = fixture(&[FRESH, "--exact", "--ignored", "--nocapture"], |command| {
        command
            .env("VMTEST_CACHE_DIR", cache)
            .env("VMTEST_VERBOSE", "1");
        configure(command);
    });
    let ended = now();
    assert_eq!(run.result_of(FRESH), "ok", "{}", run.stdout);
    run.assert_nothing_left_behind();
    let line = run
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("fresh: "))
        .unwrap_or_else(|| panic!("no fresh: line in {}", run.stdout));
    let field = |name: &str| {
        line.split(' ')
            .find_map(|word| word.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in {line}"))
            .to_string()
    };
    let clock: f64 = field("clock").parse().unwrap();
    // The guest's clock is the host's, whatever the snapshot's age.
    assert!(
        (started - 1.0..=ended + 1.0).contains(&clock),
        "the guest's clock {clock} is outside the run ({started}..{ended})"
    );
    Fresh {
        boot_id: field("boot_id"),
        random: field("random"),
        clock,
        restored: run.stderr.contains(" restored in "),
        stderr: run.stderr.clone(),
    }
}

/// The snapshot files in `cache`.
fn snapshots(cache: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(cache.join("snapshots"))
        .map(|entries| entries.flatten().map(|entry| entry.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

fn state_file(cache: &Path) -> PathBuf {
    let states: Vec<PathBuf> = snapshots(cache)
        .into_iter()
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "vmstate")
        })
        .collect();
    assert_eq!(states.len(), 1, "{states:?}");
    states[0].clone()
}

#[test]
fn restored_guests_are_fresh_guests() {
    let cache = tempfile::tempdir().unwrap();
    let booted = fresh(cache.path(), |_| {});
    assert!(
        !booted.restored,
        "nothing to restore yet: {}",
        booted.stderr
    );
    let state = state_file(cache.path());
    // Old enough that a clock run on from the snapshot would show it.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let first = fresh(cache.path(), |_| {});
    let second = fresh(cache.path(), |_| {});
    for run in [&first, &second] {
        assert!(run.restored, "{}", run.stderr);
    }
    assert!(second.clock > first.clock);
    let boot_ids = [&booted.boot_id, &first.boot_id, &second.boot_id];
    let randoms = [&booted.random, &first.random, &second.random];
    for (index, (boot_id, random)) in boot_ids.iter().zip(&randoms).enumerate() {
        for (other_id, other_random) in boot_ids.iter().zip(&randoms).skip(index + 1) {
            assert_ne!(boot_id, other_id, "two guests share a boot id");
            assert_ne!(
                random, other_random,
                "two guests draw the same random numbers"
            );
        }
    }
    assert_eq!(state_file(cache.path()), state, "the snapshot is reused");
}

#[test]
fn a_snapshot_that_cannot_be_restored_costs_a_boot_and_is_replaced() {
    let cache = tempfile::tempdir().unwrap();
    fresh(cache.path(), |_| {});
    let state = state_file(cache.path());
    let whole = std::fs::read(&state).unwrap();
    for broken in [
        whole[..whole.len() / 2].to_vec(),
        b"not a saved guest".to_vec(),
    ] {
        std::fs::write(&state, broken).unwrap();
        let run = fresh(cache.path(), |_| {});
        assert!(!run.restored, "{}", run.stderr);
        assert_eq!(
            run.stderr.matches("cannot restore it").count(),
            1,
            "said once: {}",
            run.stderr
        );
        // A new one, whole (two saves of a guest differ a little).
        let replaced = std::fs::metadata(&state).unwrap().len();
        assert!(replaced > whole.len() as u64 * 9 / 10, "{replaced} bytes");
        assert!(fresh(cache.path(), |_| {}).restored, "the new one is used");
    }
}

#[test]
fn snapshots_can_be_turned_off() {
    let cache = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let run = fresh(cache.path(), |command| {
            command.env("VMTEST_SNAPSHOT", "0");
        });
        assert!(!run.restored, "{}", run.stderr);
        assert!(run.stderr.contains(" booted in "), "{}", run.stderr);
    }
    assert!(snapshots(cache.path()).is_empty());
}
