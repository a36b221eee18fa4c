//! End to end, disk images: a Debian 12 image built by
//! `scripts/build-image.sh` (from Debian packages, no loop mounts) boots with
//! BIOS and with UEFI, runs qemu-guest-agent, and runs a target's command
//! with its output streamed, its exit code, and the shared directory.
//!
//! Opt-in, as building the image takes a minute or two:
//! `scripts/build-image.sh && cargo test -p vmtest-cli --test image -- --ignored`
//! (`.ci/run` does).

#[path = "../../vmtest-engine/tests/support/leftovers.rs"]
mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn image() -> PathBuf {
    let image = std::env::var_os("VMTEST_TEST_IMAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernels/debian-12.qcow2")
        });
    assert!(
        image.is_file(),
        "{} is missing: run scripts/build-image.sh",
        image.display()
    );
    image
}

/// Runs `vmtest args` in `dir`, its temporary files in `tmp`, and shows
/// what it printed; returns its exit code, stdout and stderr.
fn vmtest<I, S>(dir: &Path, tmp: &Path, args: I) -> (Option<i32>, String, String)
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let output = Command::new(env!("CARGO_BIN_EXE_vmtest"))
        .current_dir(dir)
        .env("VMTEST_NO_UI", "1")
        .env("TMPDIR", tmp)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    eprintln!("--- stdout\n{stdout}--- stderr\n{stderr}");
    (output.status.code(), stdout, stderr)
}

#[test]
#[ignore = "needs the image scripts/build-image.sh builds (a minute or two): run with --ignored"]
fn an_image_boots_with_bios_and_uefi_and_runs_the_command_through_its_agent() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::write(dir.path().join("from-host"), "shared\n").unwrap();
    let config = format!(
        r#"
[[target]]
name = "bios"
image = "{image}"
command = "test ! -d /sys/firmware/efi && cat /mnt/vmtest/from-host && echo bios-booted > /mnt/vmtest/from-guest && echo on-stderr >&2; exit 5"
[target.vm]
memory = "1G"
num_cpus = 1

[[target]]
name = "uefi"
image = "{image}"
uefi = true
command = "test -d /sys/firmware/efi && echo uefi-booted"
[target.vm]
memory = "1G"
num_cpus = 1
"#,
        image = image().display()
    );
    std::fs::write(dir.path().join("vmtest.toml"), config).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = vmtest(dir.path(), tmp.path(), std::iter::empty::<&str>());
    assert_eq!(code, Some(1), "one target fails");
    assert!(stdout.contains("[bios] shared\n"), "{stdout}");
    assert!(stderr.contains("[bios] on-stderr\n"), "{stderr}");
    assert!(
        stderr.contains("vmtest: [bios] FAIL: the command exited with code 5"),
        "{stderr}"
    );
    assert!(stdout.contains("[uefi] uefi-booted\n"), "{stdout}");
    assert!(stderr.contains("vmtest: [uefi] PASS"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("from-guest")).unwrap(),
        "bios-booted\n"
    );
    common::assert_nothing_left_in(tmp.path());
    // The image was never written to.
    let check = Command::new("qemu-img")
        .args(["check", "-q"])
        .arg(image())
        .status()
        .unwrap();
    assert!(check.success());
}

#[test]
#[ignore = "needs the image scripts/build-image.sh builds (a minute or two): run with --ignored"]
fn a_one_liner_runs_on_an_image() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let image = image();
    let (code, stdout, _) = vmtest(
        dir.path(),
        tmp.path(),
        [
            OsStr::new("-i"),
            image.as_os_str(),
            OsStr::new("--"),
            OsStr::new("grep -h ^VERSION_CODENAME= /etc/os-release; pwd; exit 3"),
        ],
    );
    assert_eq!(stdout, "VERSION_CODENAME=bookworm\n/mnt/vmtest\n");
    assert_eq!(code, Some(3), "the command's exit code");
    common::assert_nothing_left_in(tmp.path());
}

#[test]
#[ignore = "needs the image scripts/build-image.sh builds (a minute or two): run with --ignored"]
fn an_image_command_past_its_timeout_fails_and_the_image_stops() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let image = image();
    let (code, stdout, stderr) = vmtest(
        dir.path(),
        tmp.path(),
        [
            OsStr::new("-i"),
            image.as_os_str(),
            OsStr::new("--timeout"),
            OsStr::new("5s"),
            OsStr::new("--"),
            OsStr::new("echo started; sleep 3600"),
        ],
    );
    assert_eq!(code, Some(124), "as timeout(1) exits");
    assert_eq!(stdout, "started\n");
    assert!(stderr.contains("timed out after 5s"), "{stderr}");
    // Booting the image takes its time; the command's hour does not.
    assert!(started.elapsed() < std::time::Duration::from_secs(240));
    common::assert_nothing_left_in(tmp.path());
}
