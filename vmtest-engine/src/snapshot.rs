//! Booted guests, saved and restored. A VM's first boot saves the guest at
//! the init's handshake (its modules loaded, nothing of the run in it yet:
//! the host root is not even mounted); later VMs of the same kind, in this
//! run, a later one or another process, load that state into a new QEMU
//! instead of booting, for a fraction of a boot's time. The boot line the
//! host then sends sets the guest's clock and reseeds its random pool, so a
//! restored guest is as fresh as a booted one.
//!
//! A snapshot is named by a digest of everything that shapes the saved
//! state: QEMU's command line, without the paths that differ from one VM
//! to the next, and the identity (device, inode, size, modification time)
//! of the kernel, the initramfs and QEMU's binary. It is written under a
//! temporary name and renamed, so two processes saving the same snapshot at
//! once, or a run cut short, never leave a partial one; the directory is
//! kept under [`MAX_BYTES`], the least recently used going first, and a
//! snapshot unused for [`MAX_IDLE`] (one of an older kernel or vmtest) goes.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use crate::cache::{self, CacheError};
use crate::cancel::{self, Resource};
use crate::lease;
use crate::qemu::monitor::Monitor;
use crate::qemu::WireError;

/// How much disk the snapshots may take together.
pub(crate) const MAX_BYTES: u64 = 2 << 30;
/// How long a snapshot may go unused before it is removed.
const MAX_IDLE: Duration = Duration::from_secs(14 * 24 * 60 * 60);
const STATE: &str = "vmstate";
const CONSOLE: &str = "console";
const TEMP_PREFIX: &str = ".vmtest-snapshot-";
const TEMP_SUFFIX: &str = ".tmp";

/// The snapshots directory of a cache.
#[derive(Debug)]
pub(crate) struct Snapshots {
    dir: PathBuf,
}

/// What one boot does with its snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Load this saved guest instead of booting.
    Restore(Snapshot),
    /// Boot, and save the guest here at the init's handshake.
    Save(Snapshot),
}

/// One snapshot's files: the guest's state, and its console up to then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub state: PathBuf,
    pub console: PathBuf,
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
    /// The snapshots of the cache in `cache_dir`, without the temporary
    /// files of writers killed with SIGKILL.
    pub(crate) fn open(cache_dir: &Path) -> Result<Snapshots, CacheError> {
        let dir = cache_dir.join("snapshots");
        cache::ensure_dir(&dir)?;
        lease::remove_stale(&dir, TEMP_PREFIX, TEMP_SUFFIX);
        Ok(Snapshots { dir })
    }

    /// Restore the snapshot named `key` if there is one, else save it.
    pub(crate) fn plan(&self, key: &str) -> Plan {
        let snapshot = Snapshot {
            state: self.dir.join(format!("{key}.{STATE}")),
            console: self.dir.join(format!("{key}.{CONSOLE}")),
        };
        match snapshot.state.is_file() {
            true => Plan::Restore(snapshot),
            false => Plan::Save(snapshot),
        }
    }

    /// Saves the guest QEMU runs into `snapshot`, with `console`, what its
    /// console showed until now; the guest stays stopped. Then trims the
    /// directory.
    pub(crate) fn save(
        &self,
        monitor: &mut Monitor,
        snapshot: &Snapshot,
        console: &Path,
        deadline: Instant,
    ) -> Result<(), SaveError> {
        // Held while QEMU writes it (it opens the path anew: the lock is
        // the file's).
        let (temp, _held) =
            lease::create_file(&self.dir, TEMP_PREFIX, TEMP_SUFFIX).map_err(|source| {
                SaveError::Io {
                    path: self.dir.clone(),
                    source,
                }
            })?;
        let _registration = cancel::register(Resource::Path(temp.clone()));
        let shell_path = shell_quoted(&temp).ok_or_else(|| SaveError::Path(temp.clone()))?;
        let saved = monitor.save(&format!("cat > {shell_path}"), deadline);
        let kept = saved.map_err(SaveError::from).and_then(|()| {
            let io_error = |source| SaveError::Io {
                path: snapshot.state.clone(),
                source,
            };
            // The console first: a state without it still restores.
            fs::copy(console, &snapshot.console).map_err(io_error)?;
            fs::rename(&temp, &snapshot.state).map_err(io_error)
        });
        let _ = fs::remove_file(&temp);
        kept?;
        self.trim(MAX_BYTES, SystemTime::now() - MAX_IDLE);
        Ok(())
    }

    /// Removes a snapshot that could not be restored.
    pub(crate) fn discard(snapshot: &Snapshot) {
        let _ = fs::remove_file(&snapshot.state);
        let _ = fs::remove_file(&snapshot.console);
    }

    /// Removes the snapshots last used before `unused_since`, then the least
    /// recently used until the rest take at most `max_bytes` (the newest is
    /// kept whatever its size and age).
    fn trim(&self, max_bytes: u64, unused_since: SystemTime) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut states: Vec<(SystemTime, u64, PathBuf)> = entries
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|extension| extension == STATE))
            .filter_map(|path| {
                let metadata = path.metadata().ok()?;
                Some((metadata.modified().ok()?, metadata.len(), path))
            })
            .collect();
        states.sort();
        let mut total: u64 = states.iter().map(|(_, len, _)| len).sum();
        for (used, len, state) in states.iter().rev().skip(1).rev() {
            if total <= max_bytes && *used >= unused_since {
                break;
            }
            Snapshots::discard(&Snapshot {
                state: state.clone(),
                console: state.with_extension(CONSOLE),
            });
            total -= len;
        }
    }
}

impl Snapshot {
    /// The shell command that writes the saved state to its stdout, for
    /// `migrate-incoming`; marks the snapshot as just used, for [`MAX_BYTES`].
    pub(crate) fn load_command(&self) -> Option<String> {
        if let Ok(file) = fs::File::options().append(true).open(&self.state) {
            let _ = file.set_modified(SystemTime::now());
        }
        Some(format!("cat {}", shell_quoted(&self.state)?))
    }
}

/// The snapshot name for a VM started with `args` (made with the same
/// placeholder paths for every VM) from `files`.
pub(crate) fn key(args: &[OsString], files: &[&Path]) -> String {
    let mut digest = Sha256::new();
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

/// `path` in single quotes for `/bin/sh`; `None` if it is not UTF-8.
fn shell_quoted(path: &Path) -> Option<String> {
    Some(format!("'{}'", path.to_str()?.replace('\'', r"'\''")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_is_restored_once_it_exists() {
        let cache = tempfile::tempdir().unwrap();
        let snapshots = Snapshots::open(cache.path()).unwrap();
        let Plan::Save(snapshot) = snapshots.plan("k1") else {
            panic!("nothing to restore yet")
        };
        fs::write(&snapshot.state, "state").unwrap();
        assert_eq!(snapshots.plan("k1"), Plan::Restore(snapshot.clone()));
        assert!(matches!(snapshots.plan("k2"), Plan::Save(_)));
        Snapshots::discard(&snapshot);
        assert!(matches!(snapshots.plan("k1"), Plan::Save(_)));
    }

    #[test]
    fn the_least_recently_used_and_long_unused_go_and_the_newest_stays() {
        let cache = tempfile::tempdir().unwrap();
        let snapshots = Snapshots::open(cache.path()).unwrap();
        let old = SystemTime::now() - std::time::Duration::from_secs(60);
        for (index, key) in ["a", "b", "c"].iter().enumerate() {
            let Plan::Save(snapshot) = snapshots.plan(key) else {
                panic!()
            };
            fs::write(&snapshot.state, vec![0u8; 100]).unwrap();
            fs::write(&snapshot.console, "log").unwrap();
            let age = old + std::time::Duration::from_secs(index as u64);
            fs::File::options()
                .append(true)
                .open(&snapshot.state)
                .unwrap()
                .set_modified(age)
                .unwrap();
        }
        // Restoring "a" makes it the most recently used.
        let Plan::Restore(a) = snapshots.plan("a") else {
            panic!()
        };
        assert_eq!(
            a.load_command().unwrap(),
            format!("cat '{}'", a.state.display())
        );
        snapshots.trim(200, old);
        assert!(matches!(snapshots.plan("b"), Plan::Save(_)), "b was oldest");
        assert!(!cache.path().join("snapshots/b.console").exists());
        assert!(matches!(snapshots.plan("a"), Plan::Restore(_)));
        assert!(matches!(snapshots.plan("c"), Plan::Restore(_)));
        snapshots.trim(u64::MAX, old + std::time::Duration::from_secs(3));
        assert!(
            matches!(snapshots.plan("c"), Plan::Save(_)),
            "c was unused for too long"
        );
        snapshots.trim(0, SystemTime::now());
        assert!(
            matches!(snapshots.plan("a"), Plan::Restore(_)),
            "the newest stays"
        );
    }

    #[test]
    fn keys_follow_the_command_line_and_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = dir.path().join("vmlinux");
        fs::write(&kernel, "one").unwrap();
        let args = |memory: &str| vec![OsString::from("-m"), OsString::from(memory)];
        let first = key(&args("512M"), &[&kernel]);
        assert_eq!(first, key(&args("512M"), &[&kernel]));
        assert_ne!(first, key(&args("1024M"), &[&kernel]));
        fs::write(&kernel, "other").unwrap();
        assert_ne!(first, key(&args("512M"), &[&kernel]));
    }

    #[test]
    fn paths_are_quoted_for_the_shell() {
        assert_eq!(
            shell_quoted(Path::new("/c/it's here")).unwrap(),
            r"'/c/it'\''s here'"
        );
    }
}
