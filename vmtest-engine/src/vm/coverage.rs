//! Coverage of code run in the guest. A binary built with
//! `-C instrument-coverage` writes its counters when it exits, to the file
//! `LLVM_PROFILE_FILE` names, relative to its working directory (rustc's
//! default is `default_%m_%p.profraw`). In the guest the host's root is
//! read-only, and no variable may make any of it writable: so the guest
//! writes its profiles into a directory of the VM's own (exported writable
//! at [`GUEST_DIR`]), under the names the variable asks for, prefixed with
//! the VM's tag (process ids repeat from one guest to the next), and the
//! host copies them where the variable says once the VM has ended
//! ([`Profiles::collect`]). Only an instrumented server binary gets any of
//! this; for others the variable means nothing.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::media;

/// The variable the LLVM profiling runtime reads.
pub(crate) const PROFILE_VAR: &str = "LLVM_PROFILE_FILE";
/// rustc's profile file when [`PROFILE_VAR`] is not set.
const DEFAULT_PROFILE: &str = "default_%m_%p.profraw";
/// The section of an instrumented binary that holds its counters.
const COUNTERS_SECTION: &str = "__llvm_prf_cnts";
/// Where the guest sees the VM's profile directory (on its own `/run`).
pub(crate) const GUEST_DIR: &str = "/run/vmtest/profiles";

/// Where a guest's profiles are written, and where they go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Profiles {
    /// The VM's own directory the guest writes them to, exported writable
    /// at [`GUEST_DIR`].
    pub written: PathBuf,
    /// Where they are copied once the VM has ended: the directory
    /// [`PROFILE_VAR`] names (its deepest part without a `%` pattern).
    pub destination: PathBuf,
    /// The guest's [`PROFILE_VAR`]: under [`GUEST_DIR`], what the host's
    /// asks for below `destination`, the file name prefixed with the VM's
    /// tag.
    pub guest_pattern: PathBuf,
}

/// Where the profiles of a server `program` started in `cwd` with `env`
/// go, when it runs in the VM tagged `vm_tag` whose directory is `vm_dir`;
/// `None` unless the program is instrumented.
pub(crate) fn profiles(
    program: &Path,
    env: &[OsString],
    cwd: &Path,
    vm_tag: &str,
    vm_dir: &Path,
) -> Option<Profiles> {
    if !media::has_section(program, COUNTERS_SECTION) {
        return None;
    }
    locations(env, cwd, vm_tag, vm_dir)
}

/// Where an instrumented server's profiles go (see [`profiles`]).
fn locations(env: &[OsString], cwd: &Path, vm_tag: &str, vm_dir: &Path) -> Option<Profiles> {
    let set = env.iter().rev().find_map(|var| {
        var.as_bytes()
            .strip_prefix(PROFILE_VAR.as_bytes())?
            .strip_prefix(b"=")
            .filter(|value| !value.is_empty())
            .map(|value| PathBuf::from(std::ffi::OsStr::from_bytes(value)))
    });
    let pattern = cwd.join(set.unwrap_or_else(|| DEFAULT_PROFILE.into()));
    // The runtime expands `%p` and the like in directories too: what is
    // copied goes to the deepest directory above them.
    let destination = pattern
        .parent()?
        .ancestors()
        .find(|dir| !dir.as_os_str().as_bytes().contains(&b'%'))?
        .to_path_buf();
    let below = pattern.strip_prefix(&destination).ok()?;
    let mut tagged = OsString::from(format!("{vm_tag}-"));
    tagged.push(pattern.file_name()?);
    Some(Profiles {
        written: vm_dir.join("profiles"),
        destination,
        guest_pattern: Path::new(GUEST_DIR).join(below).with_file_name(tagged),
    })
}

impl Profiles {
    /// Copies what the guest wrote to where it belongs on the host, keeping
    /// the directories the pattern made. For after the VM has ended.
    pub(crate) fn collect(&self) -> io::Result<()> {
        copy_tree(&self.written, &self.destination)
    }
}

/// Copies the files under `from` to the same places under `to`.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    let entries = match std::fs::read_dir(from) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        entries => entries?,
    };
    for entry in entries {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::create_dir_all(to)?;
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[&str]) -> Vec<OsString> {
        vars.iter().map(OsString::from).collect()
    }

    #[test]
    fn an_uninstrumented_program_writes_no_profiles_whatever_the_variable() {
        for var in [
            "LLVM_PROFILE_FILE=/%p.profraw",
            "LLVM_PROFILE_FILE=cov/t.profraw",
        ] {
            let profiles = profiles(
                Path::new("/bin/true"),
                &env(&[var]),
                Path::new("/src/crate"),
                "tag",
                Path::new("/run/vm-1"),
            );
            assert_eq!(profiles, None, "{var}");
        }
    }

    #[test]
    fn the_guest_writes_to_its_vm_what_the_host_pattern_asks_for() {
        let profiles = locations(
            &env(&["HOME=/root", "LLVM_PROFILE_FILE=cov/%p/t-%m.profraw"]),
            Path::new("/src/crate"),
            "vmtest-7-vm2",
            Path::new("/run/vm-2"),
        )
        .unwrap();
        assert_eq!(profiles.written, Path::new("/run/vm-2/profiles"));
        assert_eq!(profiles.destination, Path::new("/src/crate/cov"));
        assert_eq!(
            profiles.guest_pattern,
            Path::new("/run/vmtest/profiles/%p/vmtest-7-vm2-t-%m.profraw")
        );
        // `/%p.profraw`: the host's `/` is where they go, never what the
        // guest may write.
        let rooted = locations(
            &env(&["LLVM_PROFILE_FILE=/%p.profraw"]),
            Path::new("/src"),
            "tag",
            Path::new("/run/vm-1"),
        )
        .unwrap();
        assert_eq!(rooted.destination, Path::new("/"));
        assert_eq!(rooted.written, Path::new("/run/vm-1/profiles"));
        assert_eq!(
            rooted.guest_pattern,
            Path::new("/run/vmtest/profiles/tag-%p.profraw")
        );
        // Unset: rustc's default, in the working directory.
        let default = locations(&env(&[]), Path::new("/c"), "tag", Path::new("/v")).unwrap();
        assert_eq!(default.destination, Path::new("/c"));
        assert_eq!(
            default.guest_pattern,
            Path::new("/run/vmtest/profiles/tag-default_%m_%p.profraw")
        );
    }

    #[test]
    fn collected_profiles_keep_their_directories() {
        let root = tempfile::tempdir().unwrap();
        let written = root.path().join("vm/profiles");
        std::fs::create_dir_all(written.join("17")).unwrap();
        std::fs::write(written.join("17/tag-t.profraw"), "counters").unwrap();
        std::fs::write(written.join("tag-u.profraw"), "more").unwrap();
        let profiles = Profiles {
            written,
            destination: root.path().join("cov"),
            guest_pattern: PathBuf::new(),
        };
        profiles.collect().unwrap();
        let read = |path: &str| std::fs::read_to_string(root.path().join(path)).unwrap();
        assert_eq!(read("cov/17/tag-t.profraw"), "counters");
        assert_eq!(read("cov/tag-u.profraw"), "more");
    }
}
