//! Coverage of code run in the guest: the fixture built with
//! `-C instrument-coverage`, as `cargo llvm-cov` builds it, writes the
//! profiles of its guest-run tests where `LLVM_PROFILE_FILE` says on the
//! host, one set per VM, and the guest can write to no host path for it;
//! for a binary that is not instrumented the variable means nothing.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// The first bytes of a raw profile: `__llvm_profile_raw_magic`, little-endian.
const PROFRAW_MAGIC: u64 = 0xff6c_7072_6f66_7281;

fn instrumented_fixture() -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixture-coverage-target");
    build_fixture(&target, Some("-C instrument-coverage"))
}

/// The raw profiles under `dir`, at any depth.
fn profiles_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(profiles_under(&path));
        } else if path
            .extension()
            .is_some_and(|extension| extension == "profraw")
        {
            found.push(path);
        }
    }
    found
}

#[test]
fn profiles_of_guest_tests_land_on_the_host() {
    let binary = instrumented_fixture();
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

#[test]
fn relative_and_directory_patterns_are_written_and_the_host_stays_read_only() {
    let binary = instrumented_fixture();
    // Outside /tmp: the guest sees them, read-only, on the host's root.
    let crate_dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let absolute = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    for (pattern, destination) in [
        // Relative to the working directory, as `prof-%p.profraw`.
        (
            "prof-%p.profraw".to_string(),
            crate_dir.path().to_path_buf(),
        ),
        // `%p` in a directory: the directories the runtime makes come too.
        (
            format!("{}/%p/t-%m.profraw", absolute.path().display()),
            absolute.path().to_path_buf(),
        ),
    ] {
        let run = run_binary(
            &binary,
            &["cannot_write_to_the_host", "--exact", "--ignored"],
            |command| {
                command
                    .env("LLVM_PROFILE_FILE", &pattern)
                    .env("FIXTURE_PROFILE_DIR", &destination)
                    .current_dir(crate_dir.path());
            },
        );
        assert_eq!(run.result_of("cannot_write_to_the_host"), "ok", "{pattern}");
        let guest: Vec<PathBuf> = profiles_under(&destination)
            .into_iter()
            .filter(|path| {
                path.file_name()
                    .is_some_and(|name| name.to_string_lossy().starts_with("vmtest-"))
            })
            .collect();
        assert!(
            !guest.is_empty(),
            "{pattern}: {:?}",
            profiles_under(&destination)
        );
        run.assert_nothing_left_behind();
    }
}

#[test]
fn a_binary_that_is_not_instrumented_opens_nothing_whatever_the_pattern() {
    let crate_dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let in_root = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".profraw") || name.starts_with("vmtest-planted"))
            .collect()
    };
    let before = in_root(Path::new("/"));
    for (pattern, dir) in [
        ("/%p.profraw", Path::new("/")),
        ("prof-%p.profraw", crate_dir.path()),
    ] {
        let run = fixture(
            &["cannot_write_to_the_host", "--exact", "--ignored"],
            |command| {
                command
                    .env("LLVM_PROFILE_FILE", pattern)
                    .env("FIXTURE_PROFILE_DIR", dir)
                    .current_dir(crate_dir.path());
            },
        );
        assert_eq!(run.result_of("cannot_write_to_the_host"), "ok", "{pattern}");
        run.assert_nothing_left_behind();
    }
    assert_eq!(in_root(Path::new("/")), before);
    assert!(in_root(crate_dir.path()).is_empty());
}
