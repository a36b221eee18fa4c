//! End to end, what shared machines, containers and signals do to a run:
//! a cache another user could write is refused, runs in different pid
//! namespaces share a target directory without harm, and `nohup` keeps a
//! run alive through SIGHUP. (Ctrl-C and SIGTERM: `e2e.rs`.)

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Whether this process is root (some cases need to give a directory away).
fn root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|metadata| std::os::unix::fs::MetadataExt::uid(&metadata) == 0)
        .unwrap_or(false)
}

/// Every test of a run whose cache is `dir` fails with `reason`, before any
/// VM boots, and nothing is written there.
fn refused(dir: &Path, reason: &str) {
    let before: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|entry| entry.path()).collect())
        .unwrap_or_default();
    let run = fixture(&["prints_uname[vmlinuz-6.12]", "--exact"], |command| {
        command.env("VMTEST_CACHE_DIR", dir);
    });
    assert_eq!(run.code(), Some(101), "{}", run.stdout);
    let failure = run.failure_of("prints_uname[vmlinuz-6.12]");
    assert!(failure.contains(reason), "{reason}: {failure}");
    assert!(failure.contains(&dir.display().to_string()), "{failure}");
    assert!(
        failure.contains("VMTEST_CACHE_DIR"),
        "what to do: {failure}"
    );
    let after: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|entry| entry.path()).collect())
        .unwrap_or_default();
    assert_eq!(before, after, "nothing was written there");
    run.assert_nothing_left_behind();
}

#[test]
fn a_cache_another_user_could_write_is_refused() {
    let root_dir = tempfile::tempdir().unwrap();
    let open = root_dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
    refused(&open, "can be written by other users (mode 1777)");

    let link = root_dir.path().join("link");
    let elsewhere = root_dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
    refused(&link, "is a symbolic link");

    if root() {
        // Planted by another user (nobody), as another account on a shared
        // machine would make it.
        let planted = root_dir.path().join("planted");
        std::fs::create_dir(&planted).unwrap();
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&planted, Some(65534), Some(65534)).unwrap();
        refused(&planted, "belongs to");
        refused(&planted, "uid 65534");
    }
}

#[test]
fn a_new_cache_is_private() {
    let root_dir = tempfile::tempdir().unwrap();
    let cache = root_dir.path().join("new/cache");
    let run = fixture(&["prints_uname[vmlinuz-6.12]", "--exact"], |command| {
        command.env("VMTEST_CACHE_DIR", &cache);
    });
    assert!(run.output.status.success(), "{}", run.stdout);
    for dir in [cache.clone(), cache.join("snapshots"), cache.join("shared")] {
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
    }
}

#[test]
fn runs_in_different_pid_namespaces_share_a_target_directory() {
    // Each run sees the other's pids as foreign or absent: neither may take
    // the other's files for a dead run's.
    let tmp = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let args = ["prints_", "--skip", "fails"];
    let outside = fixture_command(&args, tmp.path())
        .env("VMTEST_CACHE_DIR", cache.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once the first run has its directories, the second starts, in a pid
    // namespace (and a user namespace: no privilege needed) of its own.
    wait_for_run_dir(tmp.path());
    let mut inside = Command::new("unshare");
    inside
        .args([
            "--user",
            "--map-root-user",
            "--pid",
            "--fork",
            "--mount-proc",
        ])
        .arg(fixture_binary())
        .args(args);
    let inside = command_like(&mut inside, tmp.path())
        .env("VMTEST_CACHE_DIR", cache.path())
        .output()
        .unwrap();
    let outside = outside.wait_with_output().unwrap();
    for (which, output) in [("outside", &outside), ("inside", &inside)] {
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{which}:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains("4 passed"), "{which}: {stdout}");
    }
    assert_nothing_left_in(tmp.path());
}

/// `command` with the environment [`fixture_command`] gives, and `tmp` as
/// its temporary directory.
fn command_like<'a>(command: &'a mut Command, tmp: &Path) -> &'a mut Command {
    let template = fixture_command(&[], tmp);
    for (key, value) in template.get_envs() {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    command.stdin(Stdio::null())
}

#[test]
fn a_run_started_with_sighup_ignored_survives_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nohup = Command::new("nohup");
    nohup
        .arg(fixture_binary())
        .args(["prints_slowly", "--exact"]);
    let child = command_like(&mut nohup, tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_run_dir(tmp.path());
    std::thread::sleep(Duration::from_secs(1));
    signal(child.id(), "HUP");
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("1 passed"), "{stdout}");
    assert_nothing_left_in(tmp.path());
}

fn signal(pid: u32, name: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// Waits until a run has its directory in `tmp`.
fn wait_for_run_dir(tmp: &Path) {
    wait_until("a run directory", || {
        std::fs::read_dir(tmp).unwrap().flatten().any(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("vmtest-run-")
        })
    });
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(Instant::now() < deadline, "no {what} appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
}
