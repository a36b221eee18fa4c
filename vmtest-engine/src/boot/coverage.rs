//! Coverage of code run in the guest. A binary built with
//! `-C instrument-coverage` writes its counters when it exits, to the file
//! `LLVM_PROFILE_FILE` names, relative to its working directory (rustc's
//! default is `default_%m_%p.profraw`). In the guest that path is on the
//! host's read-only root, and the guest's process ids repeat from one VM to
//! the next: so the file's directory is exported writable at its own path,
//! and the file name gets a prefix unique to the VM.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::elf;

/// The variable the LLVM profiling runtime reads.
pub(crate) const PROFILE_VAR: &str = "LLVM_PROFILE_FILE";
/// rustc's profile file when [`PROFILE_VAR`] is not set.
const DEFAULT_PROFILE: &str = "default_%m_%p.profraw";
/// The section of an instrumented binary that holds its counters.
const COUNTERS_SECTION: &str = "__llvm_prf_cnts";

/// Where a guest's profiles go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Profiles {
    /// The host directory exported writable, at its own path.
    pub dir: PathBuf,
    /// The guest's [`PROFILE_VAR`]: absolute, its file name prefixed with
    /// the VM's tag.
    pub pattern: PathBuf,
}

/// Where the profiles of a server `program` started in `cwd` with `env` go
/// in the VM tagged `vm_tag`; `None` when the run writes none: the
/// variable is not set and the program is not instrumented.
pub(crate) fn profiles(
    program: &Path,
    env: &[OsString],
    cwd: &Path,
    vm_tag: &str,
) -> Option<Profiles> {
    let set = env.iter().rev().find_map(|var| {
        var.as_bytes()
            .strip_prefix(PROFILE_VAR.as_bytes())?
            .strip_prefix(b"=")
            .filter(|value| !value.is_empty())
            .map(|value| PathBuf::from(std::ffi::OsStr::from_bytes(value)))
    });
    let pattern = match set {
        Some(pattern) => pattern,
        None if elf::has_section(program, COUNTERS_SECTION) => DEFAULT_PROFILE.into(),
        None => return None,
    };
    let pattern = cwd.join(pattern);
    // The runtime expands `%p` and the like in directories too: the export
    // is the deepest directory above them.
    let dir = pattern
        .parent()?
        .ancestors()
        .find(|dir| !dir.as_os_str().as_bytes().contains(&b'%'))?
        .to_path_buf();
    let mut tagged = OsString::from(format!("{vm_tag}-"));
    tagged.push(pattern.file_name()?);
    Some(Profiles {
        dir,
        pattern: pattern.with_file_name(tagged),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[&str]) -> Vec<OsString> {
        vars.iter().map(OsString::from).collect()
    }

    #[test]
    fn a_relative_pattern_is_made_absolute_and_tagged() {
        let profiles = profiles(
            Path::new("/bin/true"),
            &env(&["HOME=/root", "LLVM_PROFILE_FILE=cov/t-%p-%m.profraw"]),
            Path::new("/src/crate"),
            "vmtest-7-vm2",
        );
        assert_eq!(
            profiles,
            Some(Profiles {
                dir: "/src/crate/cov".into(),
                pattern: "/src/crate/cov/vmtest-7-vm2-t-%p-%m.profraw".into(),
            })
        );
    }

    #[test]
    fn patterns_in_directories_export_the_directory_above_them() {
        let profiles = profiles(
            Path::new("/bin/true"),
            &env(&["LLVM_PROFILE_FILE=/cov/%p/run/t.profraw"]),
            Path::new("/"),
            "tag",
        )
        .unwrap();
        assert_eq!(profiles.dir, Path::new("/cov"));
        assert_eq!(profiles.pattern, Path::new("/cov/%p/run/tag-t.profraw"));
    }

    #[test]
    fn without_the_variable_only_an_instrumented_program_writes_profiles() {
        let exe = std::env::current_exe().unwrap();
        let instrumented = elf::has_section(&exe, COUNTERS_SECTION);
        let profiles = profiles(&exe, &env(&["LLVM_PROFILE_FILE="]), Path::new("/c"), "tag");
        assert_eq!(
            profiles.map(|profiles| profiles.pattern),
            instrumented.then(|| PathBuf::from("/c/tag-default_%m_%p.profraw"))
        );
    }
}
