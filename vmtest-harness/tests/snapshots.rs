//! Snapshots, end to end: the first run boots its VM and saves it, later
//! runs restore it; a restored guest is a fresh one (the host's clock, its
//! own random numbers, nothing of an earlier VM); a snapshot that cannot be
//! restored costs a boot, is said once and is replaced, and one that cannot
//! even be removed costs one boot per VM and one message per run, never
//! more; `VMTEST_SNAPSHOT=0` boots every time. The guest's memory stays in
//! a file of the snapshot that restores map copy-on-write and never change;
//! a QEMU that cannot keep it there still boots, and says so once.

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

/// The snapshots in `cache`: a directory each.
fn snapshots(cache: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(cache.join("snapshots"))
        .map(|entries| entries.flatten().map(|entry| entry.path()).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs
}

fn state_file(cache: &Path) -> PathBuf {
    let dirs = snapshots(cache);
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].join("vmstate")
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

/// The digest of `path`'s contents.
fn digest(path: &Path) -> String {
    let output = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn the_guest_memory_stays_in_a_file_that_restores_do_not_change() {
    let cache = tempfile::tempdir().unwrap();
    fresh(cache.path(), |_| {});
    let state = state_file(cache.path());
    let memory = state.with_file_name("memory");
    let size = |path: &Path| std::fs::metadata(path).unwrap().len();
    let disk_use = |path: &Path| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).unwrap().blocks() * 512
    };
    // The saved state is the devices alone; the memory is the guest's
    // 512 MiB, of which only what it touched takes room.
    assert!(size(&state) < 4 << 20, "{} bytes of state", size(&state));
    assert_eq!(size(&memory), 512 << 20);
    assert!(
        disk_use(&memory) < 384 << 20,
        "{} bytes on disk",
        disk_use(&memory)
    );
    let before = digest(&memory);
    for _ in 0..2 {
        assert!(fresh(cache.path(), |_| {}).restored);
    }
    assert_eq!(
        digest(&memory),
        before,
        "a restored guest wrote to the file"
    );
}

#[test]
fn a_qemu_that_cannot_keep_memory_in_a_file_still_boots() {
    let cache = tempfile::tempdir().unwrap();
    let bin = tempfile::tempdir().unwrap();
    // QEMU as a file system that cannot map a file would leave it.
    let qemu = bin.path().join("qemu-system-x86_64");
    std::fs::write(
        &qemu,
        "#!/bin/sh\n\
         case \"$*\" in *memory-backend-file*) echo 'cannot map the file' >&2; exit 1;; esac\n\
         exec qemu-system-x86_64 \"$@\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&qemu, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = fresh(cache.path(), |command| {
        command.env("VMTEST_QEMU", &qemu);
    });
    assert!(!run.restored, "{}", run.stderr);
    assert_eq!(
        run.stderr.matches("cannot save it").count(),
        1,
        "said once: {}",
        run.stderr
    );
    assert!(run.stderr.contains("cannot map the file"), "{}", run.stderr);
    assert!(snapshots(cache.path()).is_empty());
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

/// Makes a snapshot impossible to remove or change while alive: immutable
/// (`chattr +i`, which binds root too) where the file system has it, else a
/// directory without write permission.
struct Pinned(PathBuf);

impl Pinned {
    fn new(snapshot: &Path) -> Pinned {
        let immutable = std::process::Command::new("chattr")
            .arg("+i")
            .arg(snapshot.join("vmstate"))
            .status()
            .is_ok_and(|status| status.success());
        if !immutable {
            use std::os::unix::fs::PermissionsExt;
            let read_only = std::fs::Permissions::from_mode(0o555);
            std::fs::set_permissions(snapshot, read_only).unwrap();
        }
        Pinned(snapshot.to_path_buf())
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(self.0.join("vmstate"))
            .status();
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o700));
    }
}

#[test]
fn a_bad_snapshot_that_cannot_be_removed_costs_one_boot_per_vm() {
    let cache = tempfile::tempdir().unwrap();
    let crashes = |name: &str, exact: bool| {
        // (`panic_1_crashes_the_kernel` is of another shape.)
        let mut args = vec![name, "--ignored", "--test-threads=1", "--skip", "panic_"];
        if exact {
            args.push("--exact");
        }
        fixture(&args, |command| {
            command
                .env("VMTEST_CACHE_DIR", cache.path())
                .env("VMTEST_VERBOSE", "1");
        })
    };
    // The shape's first VM saves its snapshot.
    crashes("crashes_1", true);
    let state = state_file(cache.path());
    std::fs::write(&state, b"not a saved guest").unwrap();
    let _pinned = Pinned::new(state.parent().unwrap());
    for _ in 0..2 {
        // VMs of the shape, one after the other: the first tries the
        // snapshot and boots, the others boot at once.
        let run = crashes("crashes_", false);
        assert_eq!(
            run.stderr.matches("cannot restore it").count(),
            1,
            "said once: {}",
            run.stderr
        );
        assert!(run.stderr.contains("cannot be removed"), "{}", run.stderr);
        // Four VMs die, one after the other, before the run gives up.
        let starts = run.stderr.matches("vmtest: starting a VM for").count();
        let booted = run.stderr.matches(" booted in ").count();
        assert_eq!(booted, 4, "every VM of the shape booted: {}", run.stderr);
        assert_eq!(
            run.stderr.matches(" restored in ").count(),
            0,
            "{}",
            run.stderr
        );
        assert_eq!(
            starts,
            booted + 1,
            "one QEMU tried the snapshot: {}",
            run.stderr
        );
        run.assert_nothing_left_behind();
    }
    assert_eq!(std::fs::read(&state).unwrap(), b"not a saved guest");
}
