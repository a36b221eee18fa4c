//! The guest's own programs for an architecture: its init (PID 1 of the
//! initramfs) and its test server. For the host's architecture, this
//! binary's: `vmtest_guest::INIT` and the front door's server. For another
//! (`VmShape::arch`), a static build of the `vmtest` command for that
//! architecture, named by `VMTEST_GUEST_<ARCH>` (see
//! [`Arch::guest_build_var`]): it carries its init in the section
//! `vmtest_guest::INIT_SECTION_NAME` and serves jobs as it is, without a
//! dynamic loader, whatever the guest's root holds.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object::read::elf::FileHeader;
use object::read::ReadCache;
use object::{Object, ObjectSection};

use super::elf::{self, Elf};
use crate::host::settings::Settings;
use crate::model::arch::Arch;

/// The init and the server binary of guests of one architecture.
#[derive(Debug, Clone)]
pub(crate) struct GuestPrograms {
    pub init: Arc<[u8]>,
    /// The server to run instead of the host's, for another architecture.
    pub server: Option<PathBuf>,
}

/// Why guests of an architecture cannot be run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GuestBuildError {
    #[error(
        "{arch} guests need a static build of vmtest for {arch}: set {var} to one \
         (scripts/setup.sh --arm64 builds it; see the README)"
    )]
    Missing {
        arch: &'static str,
        var: &'static str,
    },
    #[error("{path} (from {var}) cannot be read as an ELF binary: {reason}")]
    Unreadable {
        path: PathBuf,
        var: &'static str,
        reason: String,
    },
    #[error(
        "{path} (from {var}) is not a static {arch} build of vmtest: {reason}; build it with \
         `-C target-feature=+crt-static` for {arch} (scripts/setup.sh --arm64 does)"
    )]
    NotAGuestBuild {
        path: PathBuf,
        var: &'static str,
        arch: &'static str,
        reason: &'static str,
    },
    #[error(
        "{path} (from {var}) was built from another version of vmtest, whose guest speaks \
         another protocol: rebuild it from the sources of this vmtest (scripts/setup.sh --arm64 \
         does)"
    )]
    Stale { path: PathBuf, var: &'static str },
}

/// The programs of `arch`'s guests.
pub(crate) fn programs(settings: &Settings, arch: Arch) -> Result<GuestPrograms, GuestBuildError> {
    if arch == Arch::HOST {
        return Ok(GuestPrograms {
            init: Arc::from(vmtest_guest::INIT),
            server: None,
        });
    }
    let var = arch.guest_build_var();
    let path = settings
        .guest_builds
        .iter()
        .find(|(of, _)| *of == arch)
        .map(|(_, path)| path.clone())
        .ok_or(GuestBuildError::Missing {
            arch: arch.name(),
            var,
        })?;
    let init = init_of(&path, arch).map_err(|reason| match reason {
        Problem::Unreadable(reason) => GuestBuildError::Unreadable {
            path: path.clone(),
            var,
            reason,
        },
        Problem::NotAGuestBuild(reason) => GuestBuildError::NotAGuestBuild {
            path: path.clone(),
            var,
            arch: arch.name(),
            reason,
        },
        Problem::Stale => GuestBuildError::Stale {
            path: path.clone(),
            var,
        },
    })?;
    Ok(GuestPrograms {
        init: Arc::from(init),
        server: Some(path),
    })
}

enum Problem {
    Unreadable(String),
    NotAGuestBuild(&'static str),
    Stale,
}

/// The init a static `arch` build of vmtest carries.
fn init_of(build: &Path, arch: Arch) -> Result<Vec<u8>, Problem> {
    let file = File::open(build).map_err(|error| Problem::Unreadable(error.to_string()))?;
    let cache = ReadCache::new(file);
    let elf = Elf::parse(&cache).map_err(|error| Problem::Unreadable(error.to_string()))?;
    is_static_build_for(&elf, arch)?;
    let init = section(&elf, vmtest_guest::INIT_SECTION_NAME)?
        .ok_or(Problem::NotAGuestBuild("it carries no guest init"))?;
    speaks_this_contract(section(&elf, vmtest_guest::CONTRACT_SECTION_NAME)?.as_deref())?;
    Ok(init)
}

/// Whether `elf` is of `arch` and needs no dynamic loader (in a guest
/// whose root is another architecture's, a loader is found nowhere).
fn is_static_build_for(elf: &Elf, arch: Arch) -> Result<(), Problem> {
    if elf.elf_header().e_machine(elf.endian()) != arch.elf_machine() {
        return Err(Problem::NotAGuestBuild(
            "it is a binary of another architecture",
        ));
    }
    if elf::interpreter_of(elf).is_some() {
        return Err(Problem::NotAGuestBuild("it needs a dynamic loader"));
    }
    Ok(())
}

/// The contents of the section `name`, if there is one.
fn section(elf: &Elf, name: &str) -> Result<Option<Vec<u8>>, Problem> {
    let Some(section) = elf.section_by_name(name) else {
        return Ok(None);
    };
    section
        .data()
        .map(|data| Some(data.to_vec()))
        .map_err(|error| Problem::Unreadable(error.to_string()))
}

/// Whether a build's contract section is this host's contract (builds
/// from before the section speak another).
fn speaks_this_contract(digest: Option<&[u8]>) -> Result<(), Problem> {
    match digest {
        Some(digest) if digest == vmtest_contract::DIGEST.to_le_bytes() => Ok(()),
        _ => Err(Problem::Stale),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings_with(builds: Vec<(Arch, PathBuf)>) -> Settings {
        let cache = tempfile::tempdir().unwrap().keep();
        let cache = cache.to_str().unwrap().to_string();
        let mut settings = Settings::from_vars(|var| match var {
            "VMTEST_CACHE_DIR" => Some(cache.clone()),
            _ => None,
        })
        .unwrap();
        settings.guest_builds = builds;
        settings
    }

    #[test]
    fn the_hosts_guests_use_this_binarys_programs() {
        let programs = programs(&settings_with(Vec::new()), Arch::HOST).unwrap();
        assert_eq!(&*programs.init, vmtest_guest::INIT);
        assert_eq!(programs.server, None);
    }

    #[test]
    fn another_architecture_needs_a_static_build_for_it() {
        let other = Arch::ALL
            .into_iter()
            .find(|&arch| arch != Arch::HOST)
            .unwrap();
        let error = programs(&settings_with(Vec::new()), other).unwrap_err();
        assert!(
            error.to_string().contains(other.guest_build_var()),
            "{error}"
        );
        // This test binary is of the host's architecture, and dynamic.
        let exe = std::env::current_exe().unwrap();
        let error = programs(&settings_with(vec![(other, exe)]), other).unwrap_err();
        assert!(
            matches!(error, GuestBuildError::NotAGuestBuild { .. }),
            "{error}"
        );
        let not_elf = tempfile::NamedTempFile::new().unwrap();
        let error =
            programs(&settings_with(vec![(other, not_elf.path().into())]), other).unwrap_err();
        assert!(
            matches!(error, GuestBuildError::Unreadable { .. }),
            "{error}"
        );
    }

    #[test]
    fn a_dynamic_build_of_the_right_architecture_is_refused() {
        // This test binary is of the host's architecture, and dynamic.
        let file = File::open(std::env::current_exe().unwrap()).unwrap();
        let cache = ReadCache::new(file);
        let elf = Elf::parse(&cache).unwrap();
        assert!(matches!(
            is_static_build_for(&elf, Arch::HOST),
            Err(Problem::NotAGuestBuild("it needs a dynamic loader"))
        ));
    }

    #[test]
    fn the_init_and_the_contract_are_read_from_their_sections() {
        // This test binary links vmtest-guest: its sections are the init
        // and this contract.
        let file = File::open(std::env::current_exe().unwrap()).unwrap();
        let cache = ReadCache::new(file);
        let elf = Elf::parse(&cache).unwrap();
        let init = section(&elf, vmtest_guest::INIT_SECTION_NAME)
            .ok()
            .flatten();
        assert_eq!(init.as_deref(), Some(vmtest_guest::INIT));
        let digest = section(&elf, vmtest_guest::CONTRACT_SECTION_NAME)
            .ok()
            .flatten();
        assert!(speaks_this_contract(digest.as_deref()).is_ok());
        assert!(section(&elf, ".vmtest_none").is_ok_and(|none| none.is_none()));
    }

    #[test]
    fn a_build_of_another_contract_is_stale() {
        let other = (vmtest_contract::DIGEST ^ 1).to_le_bytes();
        for digest in [Some(&other[..]), Some(&[][..]), None] {
            assert!(matches!(speaks_this_contract(digest), Err(Problem::Stale)));
        }
    }
}
