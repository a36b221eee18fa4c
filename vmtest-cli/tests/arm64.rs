//! aarch64 guests on this x86-64 host, end to end, emulated by QEMU:
//! Debian's arm64 6.1 and 6.12 kernels with a small arm64 root, through
//! `--arch`, `-r` and `--exec` (a program of the root's, by its host path),
//! and `arch =` in a `vmtest.toml`; an arm64 disk image booted through UEFI;
//! and a crate's plain tests cross-built for aarch64 with `vmtest --exec` as
//! cargo's runner, one of them creating a BPF map through `bpf(2)`.
//!
//! Opt-in, as the setup fetches packages and cross-builds vmtest:
//! `scripts/setup-arm64.sh && scripts/build-image.sh --arch arm64 &&
//! cargo test -p vmtest-cli --test arm64 -- --ignored`
//! (`.ci/run` does).

mod support;

use std::path::PathBuf;

use support::*;

/// What `scripts/setup-arm64.sh` made.
fn arm64() -> PathBuf {
    let dir = kernels_dir().join("arm64");
    assert!(
        dir.join("vmtest").is_file() && dir.join("root/bin/bash").exists(),
        "{} is incomplete: run scripts/setup-arm64.sh",
        dir.display()
    );
    dir
}

fn kernel(series: &str) -> PathBuf {
    arm64().join(format!("vmlinuz-{series}"))
}

/// The variables an aarch64 run needs: the static aarch64 build of vmtest.
fn guest_build() -> PathBuf {
    arm64().join("vmtest")
}

#[test]
#[ignore = "needs scripts/setup-arm64.sh: run with --ignored"]
fn an_aarch64_guest_runs_a_command_in_its_root() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    for series in ["6.1", "6.12"] {
        let kernel = kernel(series);
        let root = arm64().join("root");
        let run = vmtest_with(
            dir.path(),
            &[
                "--arch",
                "aarch64",
                "-k",
                kernel.to_str().unwrap(),
                "-r",
                root.to_str().unwrap(),
                "uname -m; uname -r",
            ],
            &[("VMTEST_GUEST_AARCH64", &guest_build())],
        );
        assert_eq!(run.code(), Some(0));
        assert!(
            run.stdout.starts_with(&format!("aarch64\n{series}.")),
            "{}",
            run.stdout
        );
        run.assert_nothing_left();
        // A program of the root's, by its host path, with its arguments.
        let bash = root.join("bin/bash");
        let run = vmtest_with(
            dir.path(),
            &[
                "--arch",
                "aarch64",
                "-k",
                kernel.to_str().unwrap(),
                "-r",
                root.to_str().unwrap(),
                "--exec",
                bash.to_str().unwrap(),
                "-c",
                r#"printf '[%s]' "$@"; uname -m; pwd; exit 3"#,
                "bash",
                "two words",
                "--dash",
            ],
            &[("VMTEST_GUEST_AARCH64", &guest_build())],
        );
        assert_eq!(run.code(), Some(3));
        assert_eq!(
            run.stdout,
            format!("[two words][--dash]aarch64\n{}\n", dir.path().display())
        );
        run.assert_nothing_left();
    }
}

#[test]
#[ignore = "needs scripts/setup-arm64.sh: run with --ignored"]
fn a_vmtest_toml_target_of_arch_aarch64_runs() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::write(
        dir.path().join("vmtest.toml"),
        format!(
            "[[target]]\nname = \"arm\"\nkernel = \"{}\"\nrootfs = \"{}\"\narch = \"aarch64\"\n\
             command = \"test $(uname -m) = aarch64\"\n[target.vm]\nmemory = \"512M\"\nnum_cpus = 1\n",
            kernel("6.12").display(),
            arm64().join("root").display()
        ),
    )
    .unwrap();
    let run = vmtest_with(dir.path(), &[], &[("VMTEST_GUEST_AARCH64", &guest_build())]);
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    // Without the aarch64 build, the target says what is missing.
    let run = vmtest(dir.path(), &[]);
    assert_ne!(run.code(), Some(0));
    assert!(
        run.stderr.contains("VMTEST_GUEST_AARCH64"),
        "{}",
        run.stderr
    );
}

/// The arm64 disk image `scripts/build-image.sh --arch arm64` builds.
fn image() -> PathBuf {
    let image = arm64().join("debian-12.qcow2");
    assert!(
        image.is_file(),
        "{} is missing: run scripts/build-image.sh --arch arm64",
        image.display()
    );
    image
}

#[test]
#[ignore = "needs scripts/setup-arm64.sh and scripts/build-image.sh --arch arm64: run with --ignored"]
fn an_aarch64_disk_image_boots_through_uefi_and_runs_a_command_through_its_agent() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::write(dir.path().join("from-host"), "shared\n").unwrap();
    std::fs::write(
        dir.path().join("vmtest.toml"),
        format!(
            "[[target]]\nname = \"arm image\"\nimage = \"{}\"\narch = \"aarch64\"\n\
             command = \"uname -m; cat from-host; echo back > to-host; echo oops >&2; exit 3\"\n",
            image().display()
        ),
    )
    .unwrap();
    let run = vmtest(dir.path(), &[]);
    assert_eq!(run.code(), Some(3), "{}", run.stderr);
    assert_eq!(run.stdout, "aarch64\nshared\n");
    assert!(run.stderr.contains("oops\n"), "{}", run.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("to-host")).unwrap(),
        "back\n"
    );
    run.assert_nothing_left();
    // The one-liner's `--arch` needs no root for an image: it brings its own.
    std::fs::remove_file(dir.path().join("vmtest.toml")).unwrap();
    let image = image();
    let run = vmtest(
        dir.path(),
        &[
            "--arch",
            "aarch64",
            "-i",
            image.to_str().unwrap(),
            "uname -m",
        ],
    );
    assert_eq!((run.code(), run.stdout.as_str()), (Some(0), "aarch64\n"));
    run.assert_nothing_left();
}

#[test]
#[ignore = "needs scripts/setup-arm64.sh: run with --ignored"]
fn cross_built_tests_run_in_aarch64_guests_with_vmtest_as_cargos_runner() {
    let runner = format!(
        "{} --arch aarch64 -k {} -r {} --exec",
        env!("CARGO_BIN_EXE_vmtest"),
        kernel("6.12").display(),
        arm64().join("root").display()
    );
    let guest_build = guest_build();
    let stdout = cargo_test_with_runner(
        "cross",
        CROSS_TESTS,
        "aarch64-unknown-linux-gnu",
        &runner,
        &["--target", "aarch64-unknown-linux-gnu"],
        &[
            (
                "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER",
                "aarch64-linux-gnu-gcc",
            ),
            ("VMTEST_GUEST_AARCH64", guest_build.to_str().unwrap()),
        ],
    );
    assert!(stdout.contains("test result: ok. 3 passed"), "{stdout}");
}

/// A crate's plain tests, for an aarch64 guest: its architecture, its files
/// at their host paths, and a BPF map made through `bpf(2)`.
const CROSS_TESTS: &str = r#"
#[cfg(test)]
mod tests {
    #[test]
    fn runs_on_aarch64() {
        assert_eq!(std::env::consts::ARCH, "aarch64");
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
        assert!(cpuinfo.contains("asimd"), "{cpuinfo}");
    }

    #[test]
    fn sees_its_crate_at_its_host_path() {
        let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        assert!(manifest.is_file());
    }

    extern "C" {
        fn syscall(number: i64, ...) -> i64;
    }

    /// `union bpf_attr` for BPF_MAP_CREATE, as far as it is used.
    #[repr(C)]
    struct MapCreate {
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        rest: [u8; 112],
    }

    #[test]
    fn creates_a_bpf_array_map() {
        const SYS_BPF: i64 = 280; // aarch64
        const BPF_MAP_CREATE: i64 = 0;
        const BPF_MAP_TYPE_ARRAY: u32 = 2;
        let attr = MapCreate {
            map_type: BPF_MAP_TYPE_ARRAY,
            key_size: 4,
            value_size: 8,
            max_entries: 16,
            rest: [0; 112],
        };
        // SAFETY: a valid attribute of the size given.
        let fd = unsafe {
            syscall(SYS_BPF, BPF_MAP_CREATE, &attr as *const MapCreate, std::mem::size_of::<MapCreate>())
        };
        assert!(fd >= 0, "bpf(BPF_MAP_CREATE) failed: {}", std::io::Error::last_os_error());
    }
}
"#;
