//! End to end, faults: a test that panics the kernel, kills the test
//! server, hangs the guest or leaves a daemon behind hurts only itself;
//! kernel splats fail the tests that caused them, unless allowed; output of
//! any size and any bytes comes through; paths under `/tmp` work.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

/// Runs a `_1_`/`_2_` pair alone, in order.
fn pair(prefix: &str) -> Run {
    fixture(&[prefix, "--ignored", "--test-threads=1"], |_| {})
}

#[test]
fn a_daemon_left_by_a_test_is_gone_before_the_next_one() {
    let run = pair("daemon_");
    assert_eq!(run.result_of("daemon_1_is_left_running"), "ok");
    assert_eq!(run.result_of("daemon_2_is_gone"), "ok");
    run.assert_nothing_left_behind();
}

#[test]
fn a_kernel_panic_fails_its_test_and_the_next_runs_in_a_fresh_vm() {
    let run = pair("panic_");
    assert_eq!(run.code(), Some(101));
    let failure = run.failure_of("panic_1_crashes_the_kernel");
    assert!(failure.contains("the guest kernel panicked"), "{failure}");
    assert!(failure.contains("sysrq: Trigger a crash"), "{failure}");
    assert_eq!(run.result_of("panic_2_runs_in_a_fresh_vm"), "ok");
    assert!(
        run.stderr.contains("died: the guest kernel panicked"),
        "{}",
        run.stderr
    );
    run.assert_nothing_left_behind();
}

#[test]
fn an_oops_fails_its_test_and_the_next_runs_in_a_fresh_vm() {
    let run = pair("oops_");
    assert_eq!(run.code(), Some(101));
    let failure = run.failure_of("oops_1_hits_a_kernel_bug");
    assert!(failure.contains("the guest kernel panicked"), "{failure}");
    assert!(failure.contains("kernel BUG at"), "{failure}");
    assert_eq!(run.result_of("oops_2_runs_in_a_fresh_vm"), "ok");
    run.assert_nothing_left_behind();
}

#[test]
fn a_shape_whose_vms_keep_dying_is_given_up() {
    let run = fixture(&["crashes_", "--ignored", "--test-threads=1"], |_| {});
    assert_eq!(run.code(), Some(101));
    for test in ["crashes_1", "crashes_2", "crashes_3", "crashes_4"] {
        let failure = run.failure_of(test);
        assert!(
            failure.contains("the guest kernel panicked"),
            "{test}: {failure}"
        );
    }
    let failure = run.failure_of("crashes_5");
    assert!(
        failure.contains("died 4 times in this run; no more are booted"),
        "{failure}"
    );
    assert!(
        run.stderr.contains("giving up on vmlinuz-6.12"),
        "{}",
        run.stderr
    );
    run.assert_nothing_left_behind();
}

#[test]
fn a_killed_test_server_fails_its_test_and_the_next_runs_in_a_fresh_vm() {
    let run = pair("server_");
    assert_eq!(run.code(), Some(101));
    let failure = run.failure_of("server_1_kills_the_test_server");
    assert!(
        failure.contains("the test server in the guest exited (signal: 9"),
        "{failure}"
    );
    assert_eq!(run.result_of("server_2_runs_in_a_fresh_vm"), "ok");
    // Noticed at once, not at the test's 120 s timeout.
    assert!(
        run.elapsed < Duration::from_secs(60),
        "took {:?}",
        run.elapsed
    );
    run.assert_nothing_left_behind();
}

#[test]
fn a_hung_guest_is_noticed_within_seconds() {
    let run = pair("hang_");
    assert_eq!(run.code(), Some(101));
    let failure = run.failure_of("hang_1_stops_the_guest");
    assert!(
        failure.contains("the guest stopped answering for 1."),
        "{failure}"
    );
    assert_eq!(run.result_of("hang_2_runs_in_a_fresh_vm"), "ok");
    // Well before the hung test's own 60 s timeout.
    assert!(
        run.elapsed < Duration::from_secs(45),
        "took {:?}",
        run.elapsed
    );
    run.assert_nothing_left_behind();
}

#[test]
fn a_run_may_allow_known_splats() {
    let run = fixture(&["splat_fails_the_test", "--exact"], |command| {
        command.env("VMTEST_ALLOWED_SPLATS", "lkdtm_(WARNING|BUG)");
    });
    assert_eq!(run.result_of("splat_fails_the_test"), "ok");
    run.assert_nothing_left_behind();
}

#[test]
fn all_output_streams_through_with_nocapture() {
    let run = fixture(
        &[
            "prints_",
            "--nocapture",
            "--test-threads=1",
            "--skip",
            "slowly",
        ],
        |_| {},
    );
    assert_eq!(run.code(), Some(101));
    // libtest prints `test NAME ... ` before a test's first line.
    let lines: Vec<&str> = run
        .stdout
        .lines()
        .map(|line| line.rsplit(" ... ").next().unwrap_or(line))
        .filter(|line| line.starts_with("line "))
        .collect();
    assert_eq!(lines.len(), 200_000);
    assert_eq!(lines[0], "line 0");
    assert_eq!(lines[199_999], "line 199999");
    // The bytes as the test wrote them.
    let raw = b"bytes: \xff\xfe\xc3\x28 end\n";
    assert!(
        run.output
            .stdout
            .windows(raw.len())
            .any(|window| window == raw),
        "the raw bytes are not in the output"
    );
    run.assert_nothing_left_behind();
}

#[test]
fn a_crate_and_target_directory_under_tmp_work() {
    // The fixture's binary copied into a target directory under /tmp, run
    // from a crate directory there: the guest sees both, and its shared
    // directory (in that target directory) too.
    let root = tempfile::Builder::new()
        .prefix("vmtest-e2e-")
        .tempdir_in("/tmp")
        .unwrap();
    let target = root.path().join("target");
    let deps = target.join("debug/deps");
    std::fs::create_dir_all(&deps).unwrap();
    std::fs::write(
        target.join("CACHEDIR.TAG"),
        "Signature: 8a477f597d28d172789f06886806bc55\n",
    )
    .unwrap();
    let binary = deps.join("kernels-copy");
    std::fs::copy(fixture_binary(), &binary).unwrap();
    let crate_dir = root.path().join("crate");
    std::fs::create_dir(&crate_dir).unwrap();
    let nonce = format!("{}", std::process::id());

    let run = run_binary(
        &binary,
        // sees_the_host_environment_and_working_directory, writes_to_the_shared_directory
        &["_directory"],
        |command| {
            command
                .env("FIXTURE_MARKER", "from the host")
                .env("FIXTURE_EXPECTED_CWD", &crate_dir)
                .env("FIXTURE_NONCE", &nonce)
                .env_remove("VMTEST_CACHE_DIR")
                .current_dir(&crate_dir);
        },
    );
    assert!(run.output.status.success(), "{}", run.stdout);
    assert!(run.stdout.contains("2 passed"), "{}", run.stdout);
    let shared = target.join("vmtest/shared");
    let written = std::fs::read_dir(&shared)
        .unwrap()
        .flatten()
        .map(|dir| dir.path().join(format!("fixture-{nonce}")))
        .find(|file| file.exists())
        .expect("the guest wrote to the shared directory");
    assert_eq!(
        std::fs::read_to_string(written).unwrap(),
        "written in the guest"
    );
    run.assert_nothing_left_behind();
    assert_no_cache_debris(&target.join("vmtest"));
    assert!(Path::new(&binary).exists());
}
