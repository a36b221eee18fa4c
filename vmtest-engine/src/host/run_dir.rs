//! The run's own directories: one under the temporary directory for the
//! VMs' sockets and logs, and the shared directory the guests may write to.
//! Both are private to one run (concurrent runs never share them, other
//! users cannot read them: `0700`, random names) and held with a lease
//! while the run lives, so that a run that starts after one killed with
//! SIGKILL, in any pid namespace, removes what it left
//! ([`lease::remove_stale`]).

use std::io;
use std::path::{Path, PathBuf};

use crate::host::cache::{self, CacheError};
use crate::host::cancel::{self, Registration, Resource};
use crate::host::lease::{self, Lease};
use crate::model::events::VmId;

const RUN_PREFIX: &str = "vmtest-run-";
const SHARED_PREFIX: &str = "run-";
/// Unix socket paths hold at most 108 bytes: a longer temporary directory
/// than this falls back to `/tmp`.
const MAX_BASE_LEN: usize = 64;

/// A directory of this run under `parent`, where what dead runs left is
/// removed first; registered for cleanup on [`cancel`](crate::cancel).
struct OwnedDir {
    path: PathBuf,
    /// Keep it if it is not empty (the guests' output).
    keep_contents: bool,
    _registration: Registration,
    _lease: Lease,
}

impl OwnedDir {
    fn create(parent: &Path, prefix: &str, keep_contents: bool) -> io::Result<OwnedDir> {
        lease::remove_stale(parent, prefix, "");
        let (path, _lease) = lease::create_dir(parent, prefix)?;
        let resource = match keep_contents {
            true => Resource::DirIfEmpty(path.clone()),
            false => Resource::Path(path.clone()),
        };
        Ok(OwnedDir {
            path,
            keep_contents,
            _registration: cancel::register(resource),
            _lease,
        })
    }
}

impl Drop for OwnedDir {
    fn drop(&mut self) {
        let _ = match self.keep_contents {
            // Fails when the guests left something: it is theirs to keep.
            true => std::fs::remove_dir(&self.path),
            false => std::fs::remove_dir_all(&self.path),
        };
    }
}

/// `$TMPDIR/vmtest-run-<random>/`, removed with the run.
pub(crate) struct RunDir(OwnedDir);

impl RunDir {
    pub(crate) fn create() -> io::Result<RunDir> {
        let mut base = std::env::temp_dir();
        if base.as_os_str().len() > MAX_BASE_LEN {
            base = PathBuf::from("/tmp");
        }
        OwnedDir::create(&base, RUN_PREFIX, false).map(RunDir)
    }

    /// What tells this run apart from every other, in names (the random
    /// part of its directory's).
    pub(crate) fn tag(&self) -> String {
        let name = self
            .0
            .path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy();
        name.trim_start_matches(RUN_PREFIX).to_string()
    }

    /// A new directory for the VM `vm`, removed when dropped.
    pub(crate) fn vm_dir(&self, vm: VmId) -> io::Result<VmDir> {
        let path = self.0.path.join(format!("vm-{vm}"));
        std::fs::create_dir(&path)?;
        Ok(VmDir { path })
    }
}

/// One VM's sockets and logs.
pub(crate) struct VmDir {
    path: PathBuf,
}

impl VmDir {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for VmDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// `<cache>/shared/run-<random>/`: the one host directory guests may write
/// to, empty when the run starts. Removed at the end if it is still empty;
/// what the guests left there stays until the next run starts.
pub(crate) struct SharedDir(OwnedDir);

impl SharedDir {
    pub(crate) fn create(cache_dir: &Path) -> Result<SharedDir, CacheError> {
        let parent = cache_dir.join("shared");
        cache::ensure_dir(&parent)?;
        OwnedDir::create(&parent, SHARED_PREFIX, true)
            .map(SharedDir)
            .map_err(|source| CacheError {
                path: parent,
                source,
            })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_dir_is_new_and_private_and_kept_only_with_contents() {
        let cache = tempfile::tempdir().unwrap();
        let stale = cache.path().join("shared/run-dead");
        std::fs::create_dir_all(&stale).unwrap();
        std::fs::write(stale.join("old"), "x").unwrap();

        let (first, second) = (
            SharedDir::create(cache.path()).unwrap(),
            SharedDir::create(cache.path()).unwrap(),
        );
        assert!(!stale.exists(), "a dead run's directory is removed");
        assert_ne!(first.path(), second.path());
        assert_eq!(std::fs::read_dir(first.path()).unwrap().count(), 0);

        std::fs::write(second.path().join("result"), "kept").unwrap();
        let (empty, full) = (first.path().to_path_buf(), second.path().to_path_buf());
        drop((first, second));
        assert!(!empty.exists());
        assert_eq!(
            std::fs::read_to_string(full.join("result")).unwrap(),
            "kept"
        );
    }
}
