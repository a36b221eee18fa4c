//! Coverage of code run in the guest: the fixture built with
//! `-C instrument-coverage`, as `cargo llvm-cov` builds it, writes the
//! profiles of its guest-run tests where `LLVM_PROFILE_FILE` says on the
//! host, one set per VM.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// The first bytes of a raw profile: `__llvm_profile_raw_magic`, little-endian.
const PROFRAW_MAGIC: u64 = 0xff6c_7072_6f66_7281;

#[test]
fn profiles_of_guest_tests_land_on_the_host() {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixture-coverage-target");
    let binary = build_fixture(&target, Some("-C instrument-coverage"));
    let profiles = tempfile::tempdir().unwrap();
    let pattern = profiles.path().join("cov/fixture-%p-%m.profraw");
    let run = run_binary(&binary, &["prints_uname"], |command| {
        command.env("LLVM_PROFILE_FILE", &pattern);
    });
    for label in ["vmlinuz-6.1", "vmlinuz-6.12", "bzImage"] {
        assert_eq!(run.result_of(&format!("prints_uname[{label}]")), "ok");
    }
    assert_eq!(run.code(), Some(0));

    let written: Vec<PathBuf> = std::fs::read_dir(profiles.path().join("cov"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    let name = |path: &PathBuf| path.file_name().unwrap().to_string_lossy().into_owned();
    let guest: Vec<&PathBuf> = written
        .iter()
        .filter(|path| name(path).starts_with("vmtest-"))
        .collect();
    // One VM per kernel, and each VM's profiles carry its own tag.
    let mut vms: Vec<String> = guest
        .iter()
        .map(|path| name(path).split("-fixture-").next().unwrap().to_string())
        .collect();
    vms.sort();
    vms.dedup();
    assert_eq!(vms.len(), 3, "profiles: {written:?}");
    for path in &guest {
        let bytes = std::fs::read(path).unwrap();
        assert!(
            bytes.len() > 64,
            "{} is {} bytes",
            path.display(),
            bytes.len()
        );
        let magic = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        assert_eq!(
            magic,
            PROFRAW_MAGIC,
            "{} is not a raw profile",
            path.display()
        );
    }
    // The host's own process writes its profile as usual, untagged.
    assert!(
        written
            .iter()
            .any(|path| name(path).starts_with("fixture-")),
        "profiles: {written:?}"
    );
    run.assert_nothing_left_behind();
}
