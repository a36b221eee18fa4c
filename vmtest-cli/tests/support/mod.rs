//! What the command's end-to-end tests share: the kernels, and running the
//! `vmtest` binary as a user does.
#![allow(dead_code)] // each test file uses its part

#[path = "../../../vmtest-engine/tests/support/leftovers.rs"]
pub mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Where `scripts/setup.sh` put the kernels.
pub fn kernels_dir() -> PathBuf {
    std::env::var_os("VMTEST_KERNELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernels"))
}

pub fn kernel(series: &str) -> PathBuf {
    let image = kernels_dir().join(format!("vmlinuz-{series}"));
    assert!(
        image.exists(),
        "{} is missing: run scripts/setup.sh",
        image.display()
    );
    image.canonicalize().unwrap()
}

/// `vmtest args`, in `dir`, with a private TMPDIR; plain lines.
pub fn vmtest(dir: &Path, args: &[&str]) -> Run {
    vmtest_with(dir, args, &[])
}

/// [`vmtest`] with more variables.
pub fn vmtest_with(dir: &Path, args: &[&str], vars: &[(&str, &Path)]) -> Run {
    let tmp = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_vmtest"))
        .args(args)
        .current_dir(dir)
        .env("TMPDIR", tmp.path())
        .env("VMTEST_NO_UI", "1")
        .env_remove("VMTEST_KERNEL")
        // What the README has users export for aarch64 guests: a test
        // gives it when it means to.
        .env_remove("VMTEST_GUEST_AARCH64")
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let run = Run {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        output,
        elapsed: started.elapsed(),
        tmp,
    };
    eprintln!(
        "vmtest {args:?}: {:?} in {:.1?}\n--- stdout\n{}--- stderr\n{}",
        run.output.status, run.elapsed, run.stdout, run.stderr
    );
    run
}

pub struct Run {
    pub output: Output,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    pub tmp: tempfile::TempDir,
}

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    pub fn assert_nothing_left(&self) {
        common::assert_nothing_left_in(self.tmp.path());
    }
}

/// `cargo test ARGS` in a new crate named `name` whose `src/lib.rs` is
/// `lib`, with `runner` as cargo's runner for `triple` and `vars` set;
/// asserts that it passed and left nothing in its TMPDIR, and returns its
/// output.
pub fn cargo_test_with_runner(
    name: &str,
    lib: &str,
    triple: &str,
    runner: &str,
    args: &[&str],
    vars: &[(&str, &str)],
) -> String {
    let krate = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::create_dir(krate.path().join("src")).unwrap();
    std::fs::write(
        krate.path().join("Cargo.toml"),
        format!(
            "[package]\nname = \"{name}\"\nversion = \"0.0.0\"\nedition = \"2021\"\n[workspace]\n"
        ),
    )
    .unwrap();
    std::fs::write(krate.path().join("src/lib.rs"), lib).unwrap();
    let runner_var = format!(
        "CARGO_TARGET_{}_RUNNER",
        triple.to_uppercase().replace('-', "_")
    );
    let tmp = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO"))
        .args(["test", "--quiet"])
        .args(args)
        .current_dir(krate.path())
        .env("CARGO_TARGET_DIR", krate.path().join("target"))
        .env(runner_var, runner)
        .env("TMPDIR", tmp.path())
        .env("VMTEST_NO_UI", "1")
        .envs(vars.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("--- stdout\n{stdout}--- stderr\n{stderr}");
    assert!(output.status.success());
    common::assert_nothing_left_in(tmp.path());
    stdout
}

/// The host's Rust target triple, as cargo names it.
pub fn host_triple() -> String {
    format!("{}-unknown-linux-gnu", std::env::consts::ARCH)
}
