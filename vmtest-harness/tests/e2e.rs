//! End to end: build a crate that uses the harness as a user would
//! (`fixture/`), run its tests on real kernels in real QEMU, and check what
//! libtest prints, what the guest saw, and that nothing is left behind.
//!
//! Needs the kernels `scripts/setup.sh` fetches (or `VMTEST_KERNELS_DIR`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn kernels_dir() -> PathBuf {
    std::env::var_os("VMTEST_KERNELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("kernels"))
}

/// A Debian kernel set up by scripts/setup.sh, and its release string.
fn kernel(series: &str) -> (PathBuf, String) {
    let image = kernels_dir().join(format!("vmlinuz-{series}"));
    let resolved = image.canonicalize().unwrap_or_else(|_| {
        panic!(
            "{} is missing: run scripts/setup.sh (or set VMTEST_KERNELS_DIR)",
            image.display()
        )
    });
    let release = resolved
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .trim_start_matches("vmlinuz-")
        .to_string();
    (image, release)
}

/// The kernel with 9p and virtio built in (`scripts/setup.sh
/// --builtin-kernel`), and its release string.
fn builtin_kernel() -> (PathBuf, String) {
    let dir = kernels_dir().join("builtin-6.1");
    let release = std::fs::read_to_string(dir.join("release")).unwrap_or_else(|_| {
        panic!(
            "{} is missing: run scripts/setup.sh --builtin-kernel",
            dir.display()
        )
    });
    (dir.join("bzImage"), release.trim().to_string())
}

/// The fixture's test binary, built once per run of this file.
fn fixture_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixture/Cargo.toml");
        // Its own target directory: the outer cargo holds the lock on ours.
        let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixture-target");
        let output = Command::new(env!("CARGO"))
            .args([
                "test",
                "--no-run",
                "--message-format=json",
                "--manifest-path",
            ])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&target)
            .stderr(Stdio::inherit())
            .output()
            .expect("cargo runs");
        assert!(output.status.success(), "building the fixture failed");
        let stdout = String::from_utf8(output.stdout).unwrap();
        stdout
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|message| message["target"]["name"] == "kernels")
            .find_map(|message| message["executable"].as_str().map(PathBuf::from))
            .expect("cargo reports the fixture's test executable")
    })
}

/// One run of the fixture, with a private temporary directory so we can see
/// whether anything was left in it.
struct Run {
    output: Output,
    stdout: String,
    tmp: tempfile::TempDir,
    elapsed: Duration,
}

/// The fixture with `args`, the kernels, and `tmp` as its temporary directory.
fn fixture_command(args: &[&str], tmp: &Path) -> Command {
    let mut command = Command::new(fixture_binary());
    command
        .args(args)
        .env("TMPDIR", tmp)
        .env("FIXTURE_KERNEL_6_1", kernel("6.1").0)
        .env("FIXTURE_KERNEL_6_12", kernel("6.12").0)
        .env("FIXTURE_KERNEL_BUILTIN", builtin_kernel().0)
        .env_remove("VMTEST_KERNEL")
        .stdin(Stdio::null());
    command
}

fn fixture(args: &[&str], configure: impl FnOnce(&mut Command)) -> Run {
    let tmp = tempfile::tempdir().unwrap();
    let mut command = fixture_command(args, tmp.path());
    configure(&mut command);
    let started = Instant::now();
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    eprintln!(
        "fixture {args:?} took {:.1?}\n--- stdout\n{stdout}\n--- stderr\n{}",
        started.elapsed(),
        String::from_utf8_lossy(&output.stderr)
    );
    Run {
        elapsed: started.elapsed(),
        output,
        stdout,
        tmp,
    }
}

impl Run {
    fn result_of(&self, test: &str) -> &str {
        // `test NAME<padding> ... RESULT`
        self.stdout
            .lines()
            .filter_map(|line| line.strip_prefix("test ")?.split_once(" ... "))
            .find(|(name, _)| name.trim_end() == test)
            .map(|(_, result)| result)
            .unwrap_or_else(|| panic!("no result line for {test}"))
    }

    /// The failure section libtest prints for `test`.
    fn failure_of(&self, test: &str) -> &str {
        let header = format!("---- {test} ----\n");
        let start = self
            .stdout
            .find(&header)
            .unwrap_or_else(|| panic!("no failure section for {test}"))
            + header.len();
        let rest = &self.stdout[start..];
        let end = rest
            .find("\n---- ")
            .or_else(|| rest.find("\nfailures:"))
            .unwrap_or(rest.len());
        &rest[..end]
    }

    fn assert_nothing_left_behind(&self) {
        assert_nothing_left_in(self.tmp.path());
    }
}

/// Nothing of a run may outlive it: no VM directory in its `TMPDIR`, no
/// process using one.
fn assert_nothing_left_in(tmp: &Path) {
    let leftovers: Vec<_> = std::fs::read_dir(tmp).unwrap().collect();
    assert!(leftovers.is_empty(), "left in TMPDIR: {leftovers:?}");
    let processes = Command::new("pgrep")
        .args(["-af", tmp.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        processes.stdout.is_empty(),
        "processes still running: {}",
        String::from_utf8_lossy(&processes.stdout)
    );
}

#[test]
fn a_full_run_reports_every_outcome_on_both_kernels() {
    let nonce = format!("{}-{}", std::process::id(), line!());
    // Not under /tmp, which the guest covers with its own tmpfs.
    let cwd = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let run = fixture(&["--nocapture"], |command| {
        command
            .env("FIXTURE_MARKER", "from the host")
            .env("FIXTURE_EXPECTED_CWD", cwd.path())
            .env("FIXTURE_NONCE", &nonce)
            .current_dir(cwd.path());
    });
    assert_eq!(
        run.output.status.code(),
        Some(101),
        "a failing test makes exit 101"
    );

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
        "writes_to_the_shared_directory",
        "panics_as_expected",
        "gets_the_memory_and_cpus_it_asked_for",
    ] {
        assert_eq!(run.result_of(passing), "ok", "{passing}");
    }
    for failing in [
        "fails_an_assertion",
        "returns_an_error",
        "is_killed_by_a_signal",
        "panics_with_the_wrong_message",
        "runs_past_its_timeout",
        "crashes_the_kernel",
        "kernel_never_reaches_userspace",
        "kernel_file_is_missing",
        "has_no_kernel",
    ] {
        assert_eq!(run.result_of(failing), "FAILED", "{failing}");
    }
    assert_eq!(run.result_of("ignored_test"), "ignored");
    assert!(run
        .stdout
        .contains("test result: FAILED. 16 passed; 9 failed; 1 ignored"));

    // The guest ran the kernel each test was annotated with.
    for (label, release) in [
        ("vmlinuz-6.1", kernel("6.1").1),
        ("vmlinuz-6.12", kernel("6.12").1),
        ("bzImage", builtin_kernel().1),
    ] {
        let shown =
            format!("---- prints_uname[{label}] output ----\nguest kernel release: {release}\n");
        assert!(run.stdout.contains(&shown), "expected {shown:?}");
    }
    // What the guest wrote to the shared directory is on the host.
    let shared = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("fixture-target/vmtest/shared")
        .join(format!("fixture-{nonce}"));
    assert_eq!(
        std::fs::read_to_string(&shared).unwrap(),
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
    assert!(aborted.contains("killed by signal 6"), "{aborted}");
    assert!(run
        .failure_of("panics_with_the_wrong_message")
        .contains("panic did not contain expected string"));
    let timeout = run.failure_of("runs_past_its_timeout");
    assert!(timeout.contains("going to sleep"), "{timeout}");
    assert!(timeout.contains("timed out after 3s"), "{timeout}");
    let crash = run.failure_of("crashes_the_kernel");
    assert!(
        crash.contains("the VM stopped while the test ran"),
        "{crash}"
    );
    assert!(crash.contains("sysrq: Trigger a crash"), "{crash}");
    let no_init = run.failure_of("kernel_never_reaches_userspace");
    assert!(no_init.contains("QEMU exited"), "{no_init}");
    assert!(no_init.contains("Kernel panic - not syncing"), "{no_init}");
    assert!(run
        .failure_of("kernel_file_is_missing")
        .contains("kernel image /nonexistent/vmlinuz does not exist"));
    assert!(run
        .failure_of("has_no_kernel")
        .contains("set VMTEST_KERNEL"));

    // The timeout did not hold the others up: the whole run is far shorter
    // than the 600 s the timed-out test would have slept.
    assert!(
        run.elapsed < Duration::from_secs(300),
        "took {:?}",
        run.elapsed
    );
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
        26
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
    let run = fixture(&["prints_uname[vmlinuz-6.12]", "--exact"], |_| {});
    assert!(run.output.status.success());
    assert_eq!(run.result_of("prints_uname[vmlinuz-6.12]"), "ok");
    assert!(run
        .stdout
        .contains("1 passed; 0 failed; 0 ignored; 0 measured; 25 filtered out"));

    let run = fixture(&["panics_", "--skip", "wrong"], |_| {});
    assert!(run.output.status.success());
    assert_eq!(run.result_of("panics_as_expected"), "ok");
    assert!(run
        .stdout
        .contains("1 passed; 0 failed; 0 ignored; 0 measured; 25 filtered out"));

    let run = fixture(&["--ignored"], |_| {});
    assert_eq!(run.output.status.code(), Some(101));
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
    assert_eq!(run.output.status.code(), Some(101));
    let failure = run.failure_of("prints_uname[vmlinuz-6.1]");
    assert!(
        failure.contains("/nonexistent/qemu was not found: install QEMU"),
        "{failure}"
    );
    run.assert_nothing_left_behind();
}

#[test]
fn a_guest_that_never_comes_up_fails_with_its_console() {
    // Too short for any boot here: the guest looks hung, is tried once
    // more, then reported.
    let run = fixture(&["prints_uname[vmlinuz-6.1]", "--exact"], |command| {
        command.env("VMTEST_BOOT_TIMEOUT", "0.5");
    });
    assert_eq!(run.output.status.code(), Some(101));
    let stderr = String::from_utf8_lossy(&run.output.stderr);
    assert!(
        stderr.contains("did not come up in time; trying once more"),
        "{stderr}"
    );
    let failure = run.failure_of("prints_uname[vmlinuz-6.1]");
    assert!(
        failure.contains("the guest agent did not answer within 500ms of QEMU starting"),
        "{failure}"
    );
    // Its console, or word that it printed nothing yet.
    assert!(failure.contains("guest console"), "{failure}");
    run.assert_nothing_left_behind();
}

#[test]
fn ctrl_c_ends_every_vm() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = fixture_command(&["runs_past_its_timeout"], tmp.path())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the VM exists, then interrupt the run mid-test.
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::read_dir(tmp.path()).unwrap().next().is_none() {
        assert!(Instant::now() < deadline, "no VM started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: plain syscall on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert_nothing_left_in(tmp.path());
}
