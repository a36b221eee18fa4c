//! Booted guests, saved and restored. A VM's first boot saves the guest at
//! the init's handshake (its modules loaded, nothing of the run in it yet:
//! the host root is not even mounted); later VMs of the same kind, in this
//! run, a later one or another process, load that state into a new QEMU
//! instead of booting, for a fraction of a boot's time. The boot line the
//! host then sends sets the guest's clock and reseeds its random pool, so a
//! restored guest is as fresh as a booted one.
//!
//! The guest's memory is not copied, neither when saved nor when loaded:
//! the first boot keeps it in a file mapped shared (`memory`), QEMU's
//! `x-ignore-shared` leaves it out of the saved state (`vmstate`, the
//! devices alone: well under a MiB), and every restored guest maps the same
//! file private, copy-on-write, so that restores share its pages in the
//! host's page cache. A QEMU that refuses `x-ignore-shared` saves the
//! memory into the state instead, as a snapshot without a `memory` file,
//! which is loaded whole.
//!
//! A snapshot is named by a digest of everything that shapes the saved
//! state: QEMU's command line, without the paths that differ from one VM
//! to the next, the identity (device, inode, size, modification time) of
//! the kernel, the initramfs and QEMU's binary, and the host ([`host`]:
//! QEMU's version and machine type, and under KVM the CPU). A snapshot is a
//! directory made whole under a temporary name (a [`Draft`]) and renamed,
//! so two processes saving the same snapshot at once, or a run cut short,
//! never leave a partial one; the snapshots are kept under
//! [`cache::SNAPSHOTS`] (counted by the disk blocks they use: the memory
//! file is sparse), the least recently used going first, and a snapshot
//! long unused (one of an older kernel or vmtest) goes.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};

pub(crate) mod host;

use crate::host::cache::{self, CacheError};
use crate::host::cancel::{self, Registration, Resource};
use crate::host::lease::{self, Lease};
use crate::qemu::monitor::Monitor;
use crate::qemu::shell::quoted;
use crate::qemu::wire::WireError;

const STATE: &str = "vmstate";
const MEMORY: &str = "memory";
const CONSOLE: &str = "console";
const TEMP_PREFIX: &str = ".vmtest-snapshot-";
/// Changes when what a snapshot holds does (2: the memory in a file of its
/// own), so that snapshots of the old kind are replaced, not used.
const FORMAT: &[u8] = b"2\0";

/// The snapshots directory of a cache.
#[derive(Debug)]
pub(crate) struct Snapshots {
    dir: PathBuf,
}

/// What one boot does with its snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SnapshotUse {
    /// Load this saved guest instead of booting.
    Restore(Snapshot),
    /// Boot, and save the guest here at the init's handshake.
    Save(Snapshot),
}

/// One snapshot: a directory of the guest's state and its console up to
/// then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub dir: PathBuf,
}

/// A snapshot being made, in a temporary directory of its own that
/// becomes the snapshot once it is whole, and is removed otherwise.
#[derive(Debug)]
pub(crate) struct Draft {
    dir: PathBuf,
    dir_of_snapshots: PathBuf,
    _lease: Lease,
    _registration: Registration,
}

/// Where a saved guest's memory went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SavedMemory {
    /// It stays in the snapshot's memory file: the guest that was saved
    /// must not run on, or it would write into the snapshot.
    InFile,
    /// Into the saved state (QEMU refused `x-ignore-shared`): the guest may
    /// run on.
    InState,
}

/// Why a snapshot could not be saved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SaveError {
    #[error("the cache path {0} is not UTF-8, which QEMU's monitor needs")]
    Path(PathBuf),
    #[error(transparent)]
    Qemu(#[from] WireError),
    #[error("cannot keep the snapshot in {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl Snapshots {
    /// The snapshots of the cache in `cache_dir`, without what writers
    /// killed with SIGKILL left.
    pub(crate) fn open(cache_dir: &Path) -> Result<Snapshots, CacheError> {
        let dir = cache_dir.join("snapshots");
        cache::ensure_dir(&dir)?;
        lease::remove_stale(&dir, TEMP_PREFIX, "");
        cache::prune(&dir, |_| true, cache::SNAPSHOTS);
        Ok(Snapshots { dir })
    }

    /// Restore the snapshot named `key` if there is one, else save it.
    pub(crate) fn use_for(&self, key: &str) -> SnapshotUse {
        let snapshot = Snapshot {
            dir: self.dir.join(key),
        };
        match snapshot.state().is_file() {
            true => SnapshotUse::Restore(snapshot),
            false => SnapshotUse::Save(snapshot),
        }
    }

    /// A new, empty snapshot in the making, for a boot that saves one.
    pub(crate) fn draft(&self) -> Result<Draft, SaveError> {
        let (dir, lease) =
            lease::create_dir(&self.dir, TEMP_PREFIX).map_err(|source| SaveError::Io {
                path: self.dir.clone(),
                source,
            })?;
        let registration = cancel::register(Resource::Path(dir.clone()));
        Ok(Draft {
            dir,
            dir_of_snapshots: self.dir.clone(),
            _lease: lease,
            _registration: registration,
        })
    }

    /// Removes a snapshot that could not be restored; says whether it is
    /// gone (a read-only cache keeps it).
    pub(crate) fn discard(snapshot: &Snapshot) -> bool {
        let _ = fs::remove_dir_all(&snapshot.dir);
        !snapshot.state().exists()
    }
}

impl Draft {
    /// Where the guest's memory is kept while it boots, mapped shared.
    pub(crate) fn memory(&self) -> PathBuf {
        self.dir.join(MEMORY)
    }

    /// Saves the guest QEMU runs, stopped at the init's handshake, with
    /// `console`, what its console showed until now, and makes it the
    /// snapshot `snapshot`; the guest stays stopped. Then prunes the
    /// snapshots.
    pub(crate) fn save(
        self,
        monitor: &mut Monitor,
        snapshot: &Snapshot,
        console: &Path,
        deadline: Instant,
    ) -> Result<SavedMemory, SaveError> {
        let io_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SaveError::Io { path, source }
        };
        let state = self.dir.join(STATE);
        let shell_path = shell_word(&state).ok_or_else(|| SaveError::Path(state.clone()))?;
        let memory = match monitor.ignore_shared_memory() {
            Ok(()) => SavedMemory::InFile,
            Err(_) => {
                fs::remove_file(self.memory()).map_err(io_error(&self.memory()))?;
                SavedMemory::InState
            }
        };
        monitor.save(&format!("cat > {shell_path}"), deadline)?;
        fs::copy(console, self.dir.join(CONSOLE)).map_err(io_error(&self.dir))?;
        match fs::rename(&self.dir, &snapshot.dir) {
            Ok(()) => {}
            // Another process saved it first: theirs is as good.
            Err(_) if snapshot.state().is_file() => {}
            Err(error) => return Err(io_error(&snapshot.dir)(error)),
        }
        cache::prune(&self.dir_of_snapshots, |_| true, cache::SNAPSHOTS);
        Ok(memory)
    }
}

impl Drop for Draft {
    fn drop(&mut self) {
        // Gone already once it has become the snapshot.
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Snapshot {
    /// The saved guest.
    pub(crate) fn state(&self) -> PathBuf {
        self.dir.join(STATE)
    }

    /// The guest's memory, if it was not saved into the state.
    pub(crate) fn memory(&self) -> Option<PathBuf> {
        Some(self.dir.join(MEMORY)).filter(|memory| memory.is_file())
    }

    /// The console of the boot that was saved.
    pub(crate) fn console(&self) -> PathBuf {
        self.dir.join(CONSOLE)
    }

    /// The shell command that writes the saved state to its stdout, for
    /// `migrate-incoming`; marks the snapshot as just used, for [`cache::prune`].
    pub(crate) fn load_command(&self) -> Option<String> {
        cache::mark_used(&self.dir);
        Some(format!("cat {}", shell_word(&self.state())?))
    }
}

/// The snapshot name for a VM started with `args` (made with the same
/// placeholder paths for every VM) from `files`, on a host described by
/// `host` ([`host::identity`]).
pub(crate) fn key(args: &[OsString], files: &[&Path], host: &str) -> String {
    let mut digest = Sha256::new();
    digest.update(FORMAT);
    digest.update(host);
    digest.update([0]);
    for arg in args {
        digest.update(arg.as_encoded_bytes());
        digest.update([0]);
    }
    for file in files {
        let identity = fs::metadata(file).map_or_else(
            |_| "missing".into(),
            |metadata| cache::file_identity(&metadata),
        );
        digest.update(format!("{}:{identity}\0", file.display()));
    }
    cache::entry_name(&digest.finalize())
}

/// `path` as a word for QEMU's `/bin/sh`; `None` if it is not UTF-8, which
/// QMP's JSON cannot carry.
fn shell_word(path: &Path) -> Option<String> {
    path.to_str().map(quoted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::fake_qmp::{self, DONE};

    #[test]
    fn a_snapshot_is_restored_once_it_exists() {
        let cache = tempfile::tempdir().unwrap();
        let snapshots = Snapshots::open(cache.path()).unwrap();
        let SnapshotUse::Save(snapshot) = snapshots.use_for("k1") else {
            panic!("nothing to restore yet")
        };
        fs::create_dir(&snapshot.dir).unwrap();
        fs::write(snapshot.state(), "state").unwrap();
        assert_eq!(
            snapshots.use_for("k1"),
            SnapshotUse::Restore(snapshot.clone())
        );
        assert_eq!(
            snapshot.load_command().unwrap(),
            format!("cat '{}'", snapshot.state().display())
        );
        assert!(matches!(snapshots.use_for("k2"), SnapshotUse::Save(_)));
        assert!(Snapshots::discard(&snapshot));
        assert!(matches!(snapshots.use_for("k1"), SnapshotUse::Save(_)));
    }

    #[test]
    fn keys_follow_the_command_line_the_files_and_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = dir.path().join("vmlinux");
        fs::write(&kernel, "one").unwrap();
        let args = |memory: &str| vec![OsString::from("-m"), OsString::from(memory)];
        let host = "version: QEMU 7.2\nmachine: pc-i440fx-7.2\n";
        let first = key(&args("512M"), &[&kernel], host);
        assert_eq!(first, key(&args("512M"), &[&kernel], host));
        assert_ne!(first, key(&args("1024M"), &[&kernel], host));
        let other_cpu = format!("{host}cpu flags: fpu vme\n");
        assert_ne!(first, key(&args("512M"), &[&kernel], &other_cpu));
        fs::write(&kernel, "other").unwrap();
        assert_ne!(first, key(&args("512M"), &[&kernel], host));
    }

    /// Saves a draft whose memory file holds `memory` through a QMP peer
    /// that accepts `x-ignore-shared` or not; returns where the memory
    /// went and the snapshot.
    fn save_with(accepts_ignore_shared: bool) -> (SavedMemory, Snapshot, tempfile::TempDir) {
        let cache = tempfile::tempdir().unwrap();
        let snapshots = Snapshots::open(cache.path()).unwrap();
        let SnapshotUse::Save(snapshot) = snapshots.use_for("k") else {
            panic!("nothing to restore yet")
        };
        let draft = snapshots.draft().unwrap();
        fs::write(draft.memory(), "memory").unwrap();
        let console = cache.path().join("console.log");
        fs::write(&console, "booted\n").unwrap();
        let socket = cache.path().join("qmp.sock");
        let peer = fake_qmp::serve(&socket, move |command| {
            match command {
                "migrate-set-capabilities" if !accepts_ignore_shared => {
                    r#"{"error": {"class": "GenericError", "desc": "unknown capability"}}"#
                }
                "query-migrate" => r#"{"return": {"status": "completed"}}"#,
                _ => DONE,
            }
            .to_string()
        });
        let mut monitor = Monitor::connect(&socket).unwrap();
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let saved = draft.save(&mut monitor, &snapshot, &console, deadline);
        drop(monitor);
        let commands = peer.join().unwrap();
        assert!(commands.contains(&"migrate".to_string()), "{commands:?}");
        assert_eq!(fs::read_to_string(snapshot.console()).unwrap(), "booted\n");
        (saved.unwrap(), snapshot, cache)
    }

    #[test]
    fn a_saved_guest_keeps_its_memory_in_its_file() {
        let (saved, snapshot, _cache) = save_with(true);
        assert_eq!(saved, SavedMemory::InFile);
        let memory = snapshot.memory().expect("the memory file is kept");
        assert_eq!(fs::read_to_string(memory).unwrap(), "memory");
    }

    #[test]
    fn a_qemu_without_ignore_shared_saves_the_memory_in_the_state() {
        let (saved, snapshot, _cache) = save_with(false);
        assert_eq!(saved, SavedMemory::InState);
        assert_eq!(snapshot.memory(), None, "restored whole, from the state");
    }

    #[test]
    fn a_path_that_is_not_text_has_no_shell_word() {
        use std::os::unix::ffi::OsStrExt;
        let path = Path::new(std::ffi::OsStr::from_bytes(b"/c/\xff"));
        assert_eq!(shell_word(path), None);
        assert_eq!(shell_word(Path::new("/c/it's")).unwrap(), r"'/c/it'\''s'");
    }
}
