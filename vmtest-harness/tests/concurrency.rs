//! Eight `cargo test` runs of the examples at once, on one target directory:
//! all pass, and none leaves a QEMU, a temporary file or cache debris.
//!
//! The examples are built by the time this runs (`cargo test --workspace`
//! builds every test target first; cargo holds its build lock only while
//! building, so these runs share the workspace's target directory).

mod common;

use std::process::{Command, Stdio};
use std::time::Instant;

use common::*;

const RUNS: usize = 8;

#[test]
fn eight_concurrent_runs_of_the_examples_pass_and_leave_nothing() {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let cache = target.join("vmtest");
    let started = Instant::now();
    let runs: Vec<_> = (0..RUNS)
        .map(|_| {
            let tmp = tempfile::tempdir().unwrap();
            let child = Command::new(env!("CARGO"))
                .args([
                    "test",
                    "-p",
                    "vmtest-example-basics",
                    "-p",
                    "vmtest-example-bpf",
                ])
                .current_dir(repo_root())
                .env("TMPDIR", tmp.path())
                .env_remove("VMTEST_CACHE_DIR")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (tmp, child)
        })
        .collect();
    let (mut retries, mut deaths) = (0, 0);
    for (tmp, child) in runs {
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        retries += stderr.matches("trying once more").count();
        deaths += stderr.matches("died:").count();
        assert!(output.status.success(), "a run failed:\n{stdout}\n{stderr}");
        // Each test target's summary: basics, bpf, and their unit tests.
        assert!(stdout.contains("test result: ok. 5 passed"), "{stdout}");
        assert!(stdout.contains("test result: ok. 15 passed"), "{stdout}");
        assert_nothing_left_in(tmp.path());
    }
    eprintln!(
        "{RUNS} concurrent runs took {:.1?}; {retries} boots were retried, {deaths} VMs died",
        started.elapsed()
    );
    assert_no_cache_debris(&cache);
    // The examples write nothing to their shared directories: every run
    // removed its own.
    let shared: Vec<_> = std::fs::read_dir(cache.join("shared"))
        .map(|entries| entries.flatten().map(|entry| entry.path()).collect())
        .unwrap_or_default();
    let ours: Vec<_> = shared
        .iter()
        .filter(|dir| std::fs::read_dir(dir).is_ok_and(|mut files| files.next().is_none()))
        .collect();
    assert!(ours.is_empty(), "empty shared directories left: {ours:?}");
}
