//! End to end: build a crate that uses the harness as a user would
//! (`fixture/`), run its tests on real kernels in real QEMU, and check what
//! libtest prints, what the guest saw, and that nothing is left behind.
//!
//! Needs the kernels `scripts/setup.sh --builtin-kernel` sets up (or
//! `VMTEST_KERNELS_DIR`).

mod common;
#[path = "../../vmtest-engine/tests/support/http.rs"]
mod http;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// Every test of the fixture, `--list` counts them.
const ALL_TESTS: usize = 63;

#[test]
fn a_full_run_reports_every_outcome() {
    let nonce = format!("{}-{}", std::process::id(), line!());
    // Not under /tmp, to keep this run about outcomes (see faults.rs for /tmp).
    let cwd = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    // Its own cache, whose shared directory no other run cleans up.
    let cache = tempfile::tempdir().unwrap();
    let run = fixture(&[], |command| {
        command
            .env("VMTEST_CACHE_DIR", cache.path())
            .env("FIXTURE_MARKER", "from the host")
            .env("FIXTURE_EXPECTED_CWD", cwd.path())
            .env("FIXTURE_NONCE", &nonce)
            .env("VMTEST_KERNEL_ARGS", "vmtest.fixture=on")
            .env("FIXTURE_EXPECTED_KARG", "vmtest.fixture=on")
            .current_dir(cwd.path());
    });
    assert_eq!(run.code(), Some(101), "a failing test makes exit 101");

    for passing in [
        "prints_uname[vmlinuz-6.1]",
        "prints_uname[vmlinuz-6.12]",
        "prints_uname[bzImage]",
        "host_root_is_read_only_and_tmp_is_writable[vmlinuz-6.1]",
        "host_root_is_read_only_and_tmp_is_writable[vmlinuz-6.12]",
        "host_root_is_read_only_and_tmp_is_writable[bzImage]",
        "kernel_filesystems_are_mounted[vmlinuz-6.1]",
        "kernel_filesystems_are_mounted[vmlinuz-6.12]",
        "kernel_filesystems_are_mounted[bzImage]",
        "loopback_is_up[vmlinuz-6.1]",
        "loopback_is_up[vmlinuz-6.12]",
        "loopback_is_up[bzImage]",
        "sees_the_host_environment_and_working_directory",
        "guest_environment_is_clean",
        "gets_the_runs_kernel_args",
        "writes_to_the_shared_directory",
        "closes_stdout_and_passes",
        "prints_slowly",
        "panics_as_expected",
        "gets_the_memory_and_cpus_it_asked_for",
        "splat_allowed_by_the_test",
        "runs_on_6_4_and_later[vmlinuz-6.12]",
        "runs_up_to_6_11[vmlinuz-6.1]",
        "on_each_listed_kernel[vmlinuz-6.1]",
        "on_each_listed_kernel[vmlinuz-6.12]",
        "boots_a_kernel_by_url",
        "process_substitution_and_the_standard_streams_work",
    ] {
        assert_eq!(run.result_of(passing), "ok", "{passing}");
    }
    for gated in [
        "runs_on_6_4_and_later[vmlinuz-6.1]",
        "runs_up_to_6_11[vmlinuz-6.12]",
    ] {
        assert_eq!(run.result_of(gated), "ignored", "{gated}");
    }
    for failing in [
        "fails_an_assertion",
        "returns_an_error",
        "is_killed_by_a_signal",
        "segfaults",
        "exits_before_reporting",
        "prints_200000_lines_and_fails",
        "prints_invalid_utf8_and_fails",
        "panics_with_the_wrong_message",
        "runs_past_its_timeout",
        "crashes_the_kernel",
        "kernel_never_reaches_userspace",
        "kernel_file_is_missing",
        "kernel_payload_is_corrupt",
        "kernel_is_a_dir",
        "has_no_kernel",
        "splat_fails_the_test",
    ] {
        assert_eq!(run.result_of(failing), "FAILED", "{failing}");
    }
    assert_eq!(run.result_of("ignored_test"), "ignored");
    assert!(
        run.stdout
            .contains("test result: FAILED. 27 passed; 16 failed; 20 ignored"),
        "{}",
        run.stdout.lines().last().unwrap_or_default()
    );

    // What the guest wrote to the shared directory is on the host.
    let shared = cache.path().join("shared");
    let written: Vec<_> = std::fs::read_dir(&shared)
        .unwrap()
        .flatten()
        .map(|run| run.path().join(format!("fixture-{nonce}")))
        .filter(|file| file.exists())
        .collect();
    assert_eq!(written.len(), 1, "{written:?}");
    assert_eq!(
        std::fs::read_to_string(&written[0]).unwrap(),
        "written in the guest"
    );

    let failure = run.failure_of("fails_an_assertion");
    assert!(failure.contains("output before the failure"), "{failure}");
    assert!(failure.contains("arithmetic is broken"), "{failure}");
    assert!(failure.contains("left: 2"), "{failure}");
    assert!(run
        .failure_of("returns_an_error")
        .contains("Error: \"the error value\""));
    let aborted = run.failure_of("is_killed_by_a_signal");
    assert!(aborted.contains("about to abort"), "{aborted}");
    assert!(
        aborted.contains("killed by signal 6 (SIGABRT)"),
        "{aborted}"
    );
    let segfault = run.failure_of("segfaults");
    assert!(segfault.contains("about to dereference null"), "{segfault}");
    assert!(
        segfault.contains("killed by signal 11 (SIGSEGV)"),
        "{segfault}"
    );
    let early = run.failure_of("exits_before_reporting");
    assert!(early.contains("leaving early"), "{early}");
    assert!(
        early.contains("exited with code 0 in the guest before reporting a result"),
        "{early}"
    );
    let lines = run.failure_of("prints_200000_lines_and_fails");
    assert!(lines.starts_with("line 0\nline 1\n"), "{}", &lines[..100]);
    assert!(lines.contains("bytes of output dropped here"));
    assert!(lines.contains("line 199999\n"));
    assert!(lines.contains("after 200000 lines"));
    let bytes = run.failure_of("prints_invalid_utf8_and_fails");
    assert!(
        bytes.contains("bytes: \u{fffd}\u{fffd}\u{fffd}( end"),
        "{bytes}"
    );
    assert!(run
        .failure_of("panics_with_the_wrong_message")
        .contains("panic did not contain expected string"));
    let timeout = run.failure_of("runs_past_its_timeout");
    assert!(timeout.contains("going to sleep"), "{timeout}");
    assert!(timeout.contains("timed out after 3s"), "{timeout}");
    let crash = run.failure_of("crashes_the_kernel");
    assert!(crash.contains("the guest kernel panicked"), "{crash}");
    assert!(crash.contains("sysrq: Trigger a crash"), "{crash}");
    let no_init = run.failure_of("kernel_never_reaches_userspace");
    assert!(no_init.contains("did not come up"), "{no_init}");
    assert!(no_init.contains("Kernel panic - not syncing"), "{no_init}");
    assert!(run
        .failure_of("kernel_file_is_missing")
        .contains("kernel image /nonexistent/vmlinuz does not exist"));
    let corrupt = run.failure_of("kernel_payload_is_corrupt");
    assert!(corrupt.contains("has a corrupt xz payload"), "{corrupt}");
    assert!(run
        .failure_of("kernel_is_a_dir")
        .contains("kernel image / is a directory"));
    assert!(run
        .failure_of("has_no_kernel")
        .contains("set VMTEST_KERNEL"));
    let splat = run.failure_of("splat_fails_the_test");
    assert!(
        splat.contains("the guest kernel logged a splat while the test ran"),
        "{splat}"
    );
    assert!(splat.contains("WARNING: CPU: 0 PID:"), "{splat}");
    assert!(splat.contains("lkdtm_WARNING"), "{splat}");

    // The timeout did not hold the others up: the whole run is far shorter
    // than the 600 s the timed-out test would have slept.
    assert!(
        run.elapsed < Duration::from_secs(300),
        "took {:?}",
        run.elapsed
    );
    run.assert_nothing_left_behind();
    assert_no_cache_debris(cache.path());
}

#[test]
fn each_test_runs_on_its_kernel() {
    let run = fixture(&["prints_uname", "--nocapture"], |_| {});
    assert!(run.output.status.success());
    for (label, release) in [
        ("vmlinuz-6.1", kernel("6.1").1),
        ("vmlinuz-6.12", kernel("6.12").1),
        ("bzImage", builtin_kernel().1),
    ] {
        assert_eq!(run.result_of(&format!("prints_uname[{label}]")), "ok");
        let shown = format!("guest kernel release: {release}\n");
        assert!(run.stdout.contains(&shown), "expected {shown:?}");
    }
    run.assert_nothing_left_behind();
}

#[test]
fn a_corrupt_kernel_fails_at_once() {
    let run = fixture(&["kernel_payload_is_corrupt", "--exact"], |_| {});
    assert_eq!(run.code(), Some(101));
    let failure = run.failure_of("kernel_payload_is_corrupt");
    assert!(failure.contains("has a corrupt xz payload"), "{failure}");
    assert!(
        run.elapsed < Duration::from_secs(5),
        "took {:?}",
        run.elapsed
    );
    run.assert_nothing_left_behind();
}

#[test]
fn tests_outside_their_kernel_range_are_ignored_with_the_reason() {
    let run = fixture(&["--list"], |_| {});
    assert!(run
        .stdout
        .contains("runs_on_6_4_and_later[vmlinuz-6.1]: test\n"));
    let (release_6_1, release_6_12) = (kernel("6.1").1, kernel("6.12").1);
    assert!(
        run.stderr.contains(&format!(
            "vmtest: runs_on_6_4_and_later[vmlinuz-6.1] is ignored: its kernel is {release_6_1}, older than min_kernel 6.4"
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!(
            "vmtest: runs_up_to_6_11[vmlinuz-6.12] is ignored: its kernel is {release_6_12}, newer than max_kernel 6.11"
        )),
        "{}",
        run.stderr
    );
    let listed = fixture(&["--list", "--ignored"], |_| {});
    assert!(listed
        .stdout
        .contains("runs_on_6_4_and_later[vmlinuz-6.1]: test\n"));
    assert!(!listed
        .stdout
        .contains("runs_on_6_4_and_later[vmlinuz-6.12]"));
    let run = fixture(&["runs_"], |_| {});
    assert_eq!(
        run.result_of("runs_on_6_4_and_later[vmlinuz-6.1]"),
        "ignored"
    );
    assert_eq!(run.result_of("runs_on_6_4_and_later[vmlinuz-6.12]"), "ok");
    assert_eq!(run.result_of("runs_up_to_6_11[vmlinuz-6.12]"), "ignored");
    assert_eq!(run.result_of("runs_up_to_6_11[vmlinuz-6.1]"), "ok");
    run.assert_nothing_left_behind();
}

#[test]
fn a_kernel_by_url_is_fetched_once_then_used_offline() {
    let files = tempfile::tempdir().unwrap();
    let deb = kernels_dir().join("debs/linux-image-6.12.deb");
    std::os::unix::fs::symlink(&deb, files.path().join("linux-image-6.12.deb")).unwrap();
    let server = http::Server::start(files.path().to_path_buf());
    let url = format!("{}/files/linux-image-6.12.deb", server.base);
    let cache = tempfile::tempdir().unwrap();
    let with_url = |command: &mut std::process::Command| {
        command
            .env("FIXTURE_KERNEL_URL", &url)
            .env("XDG_CACHE_HOME", cache.path());
    };
    let run = fixture(
        &["boots_a_kernel_by_url", "--exact", "--nocapture"],
        with_url,
    );
    assert!(run.output.status.success());
    let release = kernel("6.12").1;
    assert!(
        run.stdout
            .contains(&format!("fetched kernel release: {release}")),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains(&format!("vmtest: fetched {url} (")),
        "{}",
        run.stderr
    );
    drop(server);
    let run = fixture(
        &["boots_a_kernel_by_url", "--exact", "--nocapture"],
        with_url,
    );
    assert!(run.output.status.success(), "offline, from the cache");
    assert!(!run.stderr.contains("fetched"), "{}", run.stderr);
    run.assert_nothing_left_behind();
}

#[test]
fn list_boots_nothing() {
    let run = fixture(&["--list"], |command| {
        command.env("VMTEST_QEMU", "/nonexistent/qemu");
    });
    assert!(run.output.status.success());
    assert!(run.stdout.contains("prints_uname[vmlinuz-6.1]: test\n"));
    assert!(run.stdout.contains("prints_uname[vmlinuz-6.12]: test\n"));
    assert!(run.stdout.contains("has_no_kernel: test\n"));
    assert_eq!(
        run.stdout
            .lines()
            .filter(|line| line.ends_with(": test"))
            .count(),
        ALL_TESTS
    );
    assert!(
        run.elapsed < Duration::from_secs(5),
        "took {:?}",
        run.elapsed
    );
    run.assert_nothing_left_behind();
}

#[test]
fn filters_select_tests_as_libtest_does() {
    let filtered_out = |passed: usize| {
        format!(
            "{passed} passed; 0 failed; 0 ignored; 0 measured; {} filtered out",
            ALL_TESTS - passed
        )
    };
    let run = fixture(&["prints_uname[vmlinuz-6.12]", "--exact"], |_| {});
    assert!(run.output.status.success());
    assert_eq!(run.result_of("prints_uname[vmlinuz-6.12]"), "ok");
    assert!(run.stdout.contains(&filtered_out(1)));

    let run = fixture(&["panics_", "--skip", "wrong"], |_| {});
    assert!(run.output.status.success());
    assert_eq!(run.result_of("panics_as_expected"), "ok");
    assert!(run.stdout.contains(&filtered_out(1)));

    let run = fixture(&["ignored_test", "--ignored"], |_| {});
    assert_eq!(run.code(), Some(101));
    assert_eq!(run.result_of("ignored_test"), "FAILED");
    assert!(run
        .failure_of("ignored_test")
        .contains("ignored tests must not run"));
    run.assert_nothing_left_behind();
}

#[test]
fn a_missing_qemu_is_explained() {
    let run = fixture(&["prints_uname[vmlinuz-6.1]", "--exact"], |command| {
        command.env("VMTEST_QEMU", "/nonexistent/qemu");
    });
    assert_eq!(run.code(), Some(101));
    let failure = run.failure_of("prints_uname[vmlinuz-6.1]");
    assert!(
        failure.contains("/nonexistent/qemu was not found: install QEMU"),
        "{failure}"
    );
    run.assert_nothing_left_behind();
}

#[test]
fn bad_settings_fail_every_test_with_the_reason() {
    for (var, value) in [
        ("VMTEST_BOOT_TIMEOUT", "inf"),
        ("VMTEST_ACCEL", "fast"),
        ("VMTEST_VERBOSE", "very"),
    ] {
        let run = fixture(&["prints_uname[vmlinuz-6.1]", "--exact"], |command| {
            command.env(var, value);
        });
        assert_eq!(run.code(), Some(101), "{var}");
        let failure = run.failure_of("prints_uname[vmlinuz-6.1]");
        assert!(
            failure.contains(&format!("{var}={value:?} is not understood")),
            "{failure}"
        );
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        run.assert_nothing_left_behind();
    }
}

#[test]
fn a_guest_that_never_comes_up_fails_with_its_console() {
    // Too short for any boot here: the guest looks hung, is tried once
    // more, then reported. (A restore may come up that fast: booted only.)
    let run = fixture(&["prints_uname[vmlinuz-6.1]", "--exact"], |command| {
        command
            .env("VMTEST_BOOT_TIMEOUT", "0.5")
            .env("VMTEST_SNAPSHOT", "0");
    });
    assert_eq!(run.code(), Some(101));
    assert!(
        run.stderr
            .contains("did not come up (the guest was not ready within 500ms"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("trying once more"), "{}", run.stderr);
    let failure = run.failure_of("prints_uname[vmlinuz-6.1]");
    assert!(
        failure.contains("the guest was not ready within 500ms of QEMU starting"),
        "{failure}"
    );
    // Its console, or word that it printed nothing yet.
    assert!(failure.contains("guest console"), "{failure}");
    run.assert_nothing_left_behind();
}

#[test]
fn nocapture_shows_output_as_it_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = fixture_command(&["prints_slowly", "--exact", "--nocapture"], tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = None;
    let mut second = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line == "first line" {
            first = Some(Instant::now());
        } else if line == "second line" {
            second = Some(Instant::now());
        }
    }
    assert!(child.wait().unwrap().success());
    let (first, second) = (first.expect("first line"), second.expect("second line"));
    // The test sleeps 3 s between its lines.
    assert!(
        second - first > Duration::from_secs(2),
        "the first line came {:?} before the second",
        second - first
    );
    assert_nothing_left_in(tmp.path());
}

#[test]
fn ctrl_c_or_sigterm_ends_every_vm_and_leaves_no_file() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let child = fixture_command(&["runs_past_its_timeout"], tmp.path())
            .env("VMTEST_CACHE_DIR", cache.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until the VM exists, then interrupt the run mid-test.
        wait_for_a_vm(tmp.path());
        std::thread::sleep(Duration::from_secs(2));
        // SAFETY: plain syscall on our own child.
        unsafe { libc::kill(child.id() as i32, signal) };
        let output = child.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(128 + signal));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("interrupted; 1 VM(s) stopped"), "{stderr}");
        assert_nothing_left_in(tmp.path());
        assert_no_cache_debris(cache.path());
    }
}

#[test]
fn ctrl_c_while_the_kernel_is_extracted_leaves_no_partial_file() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let mut child = fixture_command(&["prints_uname[vmlinuz-6.1]", "--exact"], tmp.path())
        .env("VMTEST_CACHE_DIR", cache.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Extracting Debian 6.1's vmlinux takes about a second: interrupt it.
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: plain syscall on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(child.wait().unwrap().code(), Some(130));
    assert_nothing_left_in(tmp.path());
    assert_no_cache_debris(cache.path());
}

#[test]
fn what_a_killed_run_leaves_the_next_run_removes() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let mut child = fixture_command(&["runs_past_its_timeout"], tmp.path())
        .env("VMTEST_CACHE_DIR", cache.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_a_vm(tmp.path());
    child.kill().unwrap();
    child.wait().unwrap();
    // QEMU dies with its parent (PR_SET_PDEATHSIG); its files stay.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let qemus = std::process::Command::new("pgrep")
            .args(["-f", tmp.path().to_str().unwrap()])
            .output()
            .unwrap();
        if qemus.stdout.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "QEMU outlived its killed parent");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(std::fs::read_dir(tmp.path()).unwrap().next().is_some());

    let mut next = fixture_command(&["prints_uname[vmlinuz-6.12]", "--exact"], tmp.path())
        .env("VMTEST_CACHE_DIR", cache.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(next.wait().unwrap().success());
    assert_nothing_left_in(tmp.path());
    assert_no_cache_debris(cache.path());
    let shared_runs = std::fs::read_dir(cache.path().join("shared"))
        .unwrap()
        .count();
    assert_eq!(shared_runs, 0, "the killed run's shared directory is gone");
}

/// Waits until a run has a VM directory in `tmp`.
fn wait_for_a_vm(tmp: &Path) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let vms = std::fs::read_dir(tmp)
            .unwrap()
            .flatten()
            .flat_map(|run| std::fs::read_dir(run.path()).into_iter().flatten())
            .count();
        if vms > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "no VM started");
        std::thread::sleep(Duration::from_millis(50));
    }
}
