//! What the end-to-end tests share: the kernels `scripts/setup.sh` sets up,
//! the fixture crate (a user's crate, built once per test binary), running
//! it, reading what libtest printed, and checking that nothing is left.
#![allow(dead_code)] // each test binary uses its own part

#[path = "../../../vmtest-engine/tests/support/leftovers.rs"]
mod leftovers;

pub use leftovers::assert_nothing_left_in;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn kernels_dir() -> PathBuf {
    std::env::var_os("VMTEST_KERNELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("kernels"))
}

/// A Debian kernel set up by scripts/setup.sh, and its release string.
pub fn kernel(series: &str) -> (PathBuf, String) {
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
pub fn builtin_kernel() -> (PathBuf, String) {
    let dir = kernels_dir().join("builtin-6.1");
    let release = std::fs::read_to_string(dir.join("release")).unwrap_or_else(|_| {
        panic!(
            "{} is missing: run scripts/setup.sh --builtin-kernel",
            dir.display()
        )
    });
    (dir.join("bzImage"), release.trim().to_string())
}

/// A copy of Debian's 6.1 bzImage with 4 KiB in the middle of its xz
/// payload zeroed: its header is fine, its payload does not decompress.
pub fn corrupt_kernel() -> &'static Path {
    static KERNEL: OnceLock<PathBuf> = OnceLock::new();
    KERNEL.get_or_init(|| {
        let mut bytes = std::fs::read(kernel("6.1").0).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle..middle + 4096].fill(0);
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("corrupt-vmlinuz");
        std::fs::write(&path, bytes).unwrap();
        path
    })
}

/// The fixture's target directory: its own, as the outer cargo holds the
/// lock on ours while it builds.
pub fn fixture_target() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixture-target")
}

/// The fixture's test binary, built once per test binary.
pub fn fixture_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| build_fixture(&fixture_target(), None))
}

/// Builds the fixture's test binary into `target`, with `rustflags` if
/// given; returns its path.
pub fn build_fixture(target: &Path, rustflags: Option<&str>) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixture/Cargo.toml");
    let mut command = Command::new(env!("CARGO"));
    command
        .args([
            "test",
            "--no-run",
            "--message-format=json",
            "--manifest-path",
        ])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .stderr(Stdio::inherit());
    match rustflags {
        // Instrumented flags also instrument the build scripts and proc
        // macros, which write their profiles into the working directory
        // (the source tree) unless told otherwise.
        Some(flags) => command.env("RUSTFLAGS", flags).env(
            "LLVM_PROFILE_FILE",
            target.join("build-profiles/%m_%p.profraw"),
        ),
        None => command.env_remove("RUSTFLAGS"),
    };
    let output = command.output().expect("cargo runs");
    assert!(output.status.success(), "building the fixture failed");
    let stdout = String::from_utf8(output.stdout).unwrap();
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["target"]["name"] == "kernels")
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .expect("cargo reports the fixture's test executable")
}

/// One run of the fixture, with a private temporary directory so we can see
/// whether anything was left in it.
pub struct Run {
    pub output: Output,
    pub stdout: String,
    pub stderr: String,
    pub tmp: tempfile::TempDir,
    pub elapsed: Duration,
}

/// `binary` with `args`, the kernels, and `tmp` as its temporary directory.
pub fn command(binary: &Path, args: &[&str], tmp: &Path) -> Command {
    let mut command = Command::new(binary);
    command
        .args(args)
        .env("TMPDIR", tmp)
        .env("FIXTURE_KERNEL_6_1", kernel("6.1").0)
        .env("FIXTURE_KERNEL_6_12", kernel("6.12").0)
        .env("FIXTURE_KERNEL_BUILTIN", builtin_kernel().0)
        .env("FIXTURE_KERNEL_CORRUPT", corrupt_kernel())
        .env("FIXTURE_KERNEL_URL", kernel("6.12").0)
        .env(
            "FIXTURE_KERNELS",
            format!(
                "{},{}",
                kernel("6.1").0.display(),
                kernel("6.12").0.display()
            ),
        )
        .env_remove("VMTEST_KERNEL")
        .env_remove("VMTEST_ALLOWED_SPLATS")
        .stdin(Stdio::null());
    command
}

/// The fixture with `args`.
pub fn fixture_command(args: &[&str], tmp: &Path) -> Command {
    command(fixture_binary(), args, tmp)
}

/// Runs the fixture with `args`, after `configure`.
pub fn fixture(args: &[&str], configure: impl FnOnce(&mut Command)) -> Run {
    run_binary(fixture_binary(), args, configure)
}

pub fn run_binary(binary: &Path, args: &[&str], configure: impl FnOnce(&mut Command)) -> Run {
    let tmp = tempfile::tempdir().unwrap();
    let mut command = command(binary, args, tmp.path());
    configure(&mut command);
    let started = Instant::now();
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    eprintln!(
        "fixture {args:?} took {:.1?}\n--- stdout\n{}\n--- stderr\n{stderr}",
        started.elapsed(),
        shortened(&stdout)
    );
    Run {
        elapsed: started.elapsed(),
        output,
        stdout,
        stderr,
        tmp,
    }
}

/// Long output cut in the middle, for the log.
fn shortened(text: &str) -> String {
    if text.len() < 20_000 {
        return text.to_string();
    }
    let mut head = 10_000;
    while !text.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = text.len() - 10_000;
    while !text.is_char_boundary(tail) {
        tail += 1;
    }
    format!("{}\n[...]\n{}", &text[..head], &text[tail..])
}

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    /// `test NAME<padding> ... RESULT`
    pub fn result_of(&self, test: &str) -> &str {
        self.stdout
            .lines()
            .filter_map(|line| line.strip_prefix("test ")?.split_once(" ... "))
            .find(|(name, _)| name.trim_end() == test)
            .map(|(_, result)| result.trim())
            .unwrap_or_else(|| panic!("no result line for {test}"))
    }

    /// The failure section libtest prints for `test`.
    pub fn failure_of(&self, test: &str) -> &str {
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

    pub fn assert_nothing_left_behind(&self) {
        assert_nothing_left_in(self.tmp.path());
    }
}

/// No half-written cache file in `cache`.
pub fn assert_no_cache_debris(cache: &Path) {
    let debris: Vec<String> = std::fs::read_dir(cache)
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.'))
        .collect();
    assert!(debris.is_empty(), "left in {}: {debris:?}", cache.display());
}
