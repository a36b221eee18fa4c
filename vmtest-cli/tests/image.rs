//! End to end, disk images: a Debian 12 image built by
//! `scripts/build-image.sh` (from Debian packages, no loop mounts) boots with
//! BIOS and with UEFI, runs qemu-guest-agent, and runs a target's command
//! with its output streamed, its exit code, and the shared directory.
//!
//! Opt-in, as building the image takes a minute or two:
//! `scripts/build-image.sh && cargo test -p vmtest-cli --test image -- --ignored`
//! (`.ci/run` does).

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::*;

fn image() -> PathBuf {
    let image = std::env::var_os("VMTEST_TEST_IMAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| kernels_dir().join("debian-12.qcow2"));
    assert!(
        image.is_file(),
        "{} is missing: run scripts/build-image.sh",
        image.display()
    );
    image
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
    let run = vmtest(dir.path(), &[]);
    let (code, stdout, stderr) = (run.code(), &run.stdout, &run.stderr);
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
    run.assert_nothing_left();
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
    let image = image();
    let run = vmtest(
        dir.path(),
        &[
            "-i",
            image.to_str().unwrap(),
            "--",
            "grep -h ^VERSION_CODENAME= /etc/os-release; pwd; exit 3",
        ],
    );
    assert_eq!(run.stdout, "VERSION_CODENAME=bookworm\n/mnt/vmtest\n");
    assert_eq!(run.code(), Some(3), "the command's exit code");
    run.assert_nothing_left();
}

#[test]
#[ignore = "needs the image scripts/build-image.sh builds (a minute or two): run with --ignored"]
fn an_image_command_past_its_timeout_fails_and_the_image_stops() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let image = image();
    let run = vmtest(
        dir.path(),
        &[
            "-i",
            image.to_str().unwrap(),
            "--timeout",
            "5s",
            "--",
            "echo started; sleep 3600",
        ],
    );
    assert_eq!(run.code(), Some(124), "as timeout(1) exits");
    assert_eq!(run.stdout, "started\n");
    assert!(run.stderr.contains("timed out after 5s"), "{}", run.stderr);
    // Booting the image takes its time; the command's hour does not.
    assert!(run.elapsed < std::time::Duration::from_secs(240));
    run.assert_nothing_left();
}
