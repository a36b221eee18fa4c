//! The one way files enter the cache: written whole to a temporary file of
//! this process, synced, then renamed into place, so that a reader sees the
//! whole file or none and concurrent writers of the same entry (who write
//! the same bytes) never get in each other's way. An interrupted write
//! leaves nothing: the temporary file is registered for cleanup on
//! [`cancel`](crate::cancel), and held with a lease ([`crate::lease`]) so
//! that the next run removes it after a SIGKILL. Every cache directory is
//! this user's alone ([`crate::private`]).

use std::fs::{self, File, FileTimes};
use std::io::{self, BufWriter};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::host::cancel::{self, Resource};
use crate::host::{lease, private};
use vmtest_contract::boot::hex;

/// Starts every temporary file's name (after a dot).
const TEMP_PREFIX: &str = ".vmtest-tmp-";
const TEMP_SUFFIX: &str = ".tmp";

/// What chooses where caches are, for messages about them.
pub(crate) const CACHE_SETTING: &str = "VMTEST_CACHE_DIR (XDG_CACHE_HOME for downloads)";

/// Bytes of a digest that name a cache entry made from what it digests.
const NAME_BYTES: usize = 16;

/// The name of the entry that `digest` stands for.
pub(crate) fn entry_name(digest: &[u8]) -> String {
    hex(&digest[..digest.len().min(NAME_BYTES)])
}

/// What tells one version of a file from another without reading it:
/// device, inode, size and modification time.
pub(crate) fn file_identity(metadata: &fs::Metadata) -> String {
    format!(
        "{}:{}:{}:{}:{}",
        metadata.dev(),
        metadata.ino(),
        metadata.len(),
        metadata.mtime(),
        metadata.mtime_nsec()
    )
}

/// A cache file could not be written.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot write cache file {path}: check free space and permissions, or set VMTEST_CACHE_DIR"
)]
pub struct CacheError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Writes `dir/name` through `write`, atomically; returns its path.
pub(crate) fn store(
    dir: &Path,
    name: &str,
    write: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> Result<PathBuf, CacheError> {
    // A failed write has no name of its own yet: it is this entry's.
    store_as(dir, |file| write(file).map(|()| name.to_string())).map_err(|error| CacheError {
        path: dir.join(name),
        source: error.source,
    })
}

/// Writes a file into `dir` through `write`, atomically, under the name
/// `write` returns once it has written it (a digest of what it wrote);
/// returns its path.
pub(crate) fn store_as(
    dir: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> io::Result<String>,
) -> Result<PathBuf, CacheError> {
    let error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CacheError { path, source }
    };
    ensure_dir(dir)?;
    let (temp, file) = lease::create_file(dir, TEMP_PREFIX, TEMP_SUFFIX).map_err(error(dir))?;
    let _registration = cancel::register(Resource::Path(temp.clone()));
    let mut target = dir.to_path_buf();
    let written = (|| {
        let mut writer = BufWriter::new(file);
        target = dir.join(write(&mut writer)?);
        let file = writer
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?;
        // The entry is trusted from then on: on disk before it has its name.
        file.sync_all()?;
        fs::rename(&temp, &target)
    })();
    if let Err(source) = written {
        let _ = fs::remove_file(&temp);
        return Err(error(&target)(source));
    }
    Ok(target)
}

/// Makes `dir` a cache directory of this user's alone (see [`private`]).
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), CacheError> {
    private::ensure(dir, CACHE_SETTING).map_err(|error| CacheError {
        path: dir.to_path_buf(),
        source: io::Error::other(error),
    })
}

/// A directory made whole before it is renamed into the cache (`dir`),
/// held while the lease lives; [`remove_stale`] removes it after a SIGKILL.
pub(crate) fn temp_dir(dir: &Path) -> Result<(PathBuf, lease::Lease), CacheError> {
    ensure_dir(dir)?;
    lease::create_dir(dir, TEMP_PREFIX).map_err(|source| CacheError {
        path: dir.to_path_buf(),
        source,
    })
}

/// How much of one kind of cache entry is kept.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// The most disk the kind's entries take together.
    pub max_bytes: u64,
    /// How long an entry may go unused.
    pub max_idle: Duration,
}

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
const GIB: u64 = 1 << 30;

/// Snapshots of booted guests (`snapshots/`).
pub(crate) const SNAPSHOTS: Limits = Limits {
    max_bytes: 2 * GIB,
    max_idle: Duration::from_secs(14 * DAY.as_secs()),
};
/// Extracted kernels and initramfs images (`vmlinux-*`, `initramfs-*`).
pub(crate) const BOOT_MEDIA: Limits = Limits {
    max_bytes: 2 * GIB,
    max_idle: Duration::from_secs(14 * DAY.as_secs()),
};
/// Downloaded kernels and packages, and what they unpacked to (`blobs/`,
/// `unpacked/`), each.
pub(crate) const DOWNLOADS: Limits = Limits {
    max_bytes: 4 * GIB,
    max_idle: Duration::from_secs(30 * DAY.as_secs()),
};
/// Small records: which media a kernel was prepared into (`prepared/`),
/// what QEMU said of itself (`qemu/`), which download a URL gave (`urls/`).
pub(crate) const RECORDS: Limits = Limits {
    max_bytes: 64 << 20,
    max_idle: Duration::from_secs(30 * DAY.as_secs()),
};

/// Marks `path` (a file or a directory) as just used, for [`prune`]: a
/// file's access time, never its modification time, which is part of the
/// identity of the files snapshots are named after ([`file_identity`]); a
/// directory's modification time (listing a directory may touch its access
/// time, and [`prune`] lists them).
pub(crate) fn mark_used(path: &Path) {
    let Ok(file) = File::open(path) else { return };
    let now = FileTimes::new();
    let _ = match path.is_dir() {
        true => file.set_times(now.set_modified(SystemTime::now())),
        false => file.set_times(now.set_accessed(SystemTime::now())),
    };
}

/// When `metadata`'s entry was last used, as [`mark_used`] marks it.
fn last_used(metadata: &fs::Metadata) -> Option<SystemTime> {
    let modified = metadata.modified().ok()?;
    match metadata.is_dir() {
        true => Some(modified),
        false => Some(metadata.accessed().ok()?.max(modified)),
    }
}

/// Removes the entries of `dir` (files or directories) whose name `kind`
/// accepts that went unused (neither used nor written) longer than
/// `limits.max_idle`, then the least recently used until the rest take at
/// most `limits.max_bytes` of disk.
/// The most recently used one stays whatever its size. Entries being
/// written (temporary names) are left alone. Best effort.
pub(crate) fn prune(dir: &Path, kind: impl Fn(&str) -> bool, limits: Limits) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut found: Vec<(SystemTime, u64, PathBuf)> = entries
        .flatten()
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            !name.starts_with('.') && kind(&name)
        })
        .filter_map(|entry| {
            let metadata = entry.path().symlink_metadata().ok()?;
            Some((last_used(&metadata)?, disk_use(&entry.path()), entry.path()))
        })
        .collect();
    found.sort();
    let unused_since = SystemTime::now()
        .checked_sub(limits.max_idle)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut total: u64 = found.iter().map(|(_, bytes, _)| bytes).sum();
    let newest = found.pop();
    for (used, bytes, path) in found {
        if total <= limits.max_bytes && used >= unused_since {
            break;
        }
        let removed = match path.is_dir() {
            true => fs::remove_dir_all(&path),
            false => fs::remove_file(&path),
        };
        if removed.is_ok() {
            total -= bytes;
        }
    }
    drop(newest);
}

/// The disk `path` takes, with everything under it.
fn disk_use(path: &Path) -> u64 {
    let Ok(metadata) = path.symlink_metadata() else {
        return 0;
    };
    let own = metadata.blocks() * 512;
    if !metadata.is_dir() {
        return own;
    }
    let inside: u64 = fs::read_dir(path)
        .map(|entries| entries.flatten().map(|entry| disk_use(&entry.path())).sum())
        .unwrap_or(0);
    own + inside
}

/// Removes temporary files that writers killed with SIGKILL left in `dir`.
pub(crate) fn remove_stale(dir: &Path) {
    // Files and directories alike (directories carry no suffix).
    lease::remove_stale(dir, TEMP_PREFIX, "");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_written_entry_is_whole_and_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = store(dir.path(), "entry", |file| file.write_all(b"contents")).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"contents");
        assert_eq!(names(dir.path()), ["entry"]);
    }

    #[test]
    fn a_failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let error = store(dir.path(), "entry", |file| {
            file.write_all(b"half")?;
            Err(io::Error::other("disk on fire"))
        })
        .unwrap_err();
        assert!(error.to_string().contains("entry"), "{error}");
        assert!(names(dir.path()).is_empty());
    }

    #[test]
    fn concurrent_writers_agree() {
        let dir = tempfile::tempdir().unwrap();
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    store(dir.path(), "same", |file| file.write_all(&[7; 100_000])).unwrap()
                });
            }
        });
        assert_eq!(names(dir.path()), ["same"]);
        assert_eq!(fs::read(dir.path().join("same")).unwrap(), vec![7; 100_000]);
    }

    #[test]
    fn pruning_removes_the_long_unused_then_the_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        for (name, age_hours) in [("a", 1), ("b", 2), ("c", 3), ("old", 100)] {
            let path = dir.path().join(name);
            fs::create_dir(&path).unwrap();
            fs::write(path.join("data"), vec![1u8; 8192]).unwrap();
            let then = now - hour * age_hours;
            let times = FileTimes::new().set_accessed(then).set_modified(then);
            File::open(&path).unwrap().set_times(times).unwrap();
        }
        fs::write(dir.path().join("other-kind"), vec![1u8; 100_000]).unwrap();
        fs::write(dir.path().join(".being-written"), "").unwrap();
        let one = disk_use(&dir.path().join("a"));
        assert!(one >= 8192, "{one}");
        let kind = |name: &str| name.len() <= 3;
        // "old" went unused too long; "c" is the least recently used of the
        // rest, which then fit.
        prune(
            dir.path(),
            kind,
            Limits {
                max_bytes: 2 * one,
                max_idle: 10 * hour,
            },
        );
        assert_eq!(
            names(dir.path()),
            [".being-written", "a", "b", "other-kind"]
        );
        mark_used(&dir.path().join("b"));
        let file = dir.path().join("b/data");
        let before = fs::metadata(&file).unwrap().modified().unwrap();
        mark_used(&file);
        let after = fs::metadata(&file).unwrap();
        assert_eq!(
            after.modified().unwrap(),
            before,
            "a used file keeps its identity"
        );
        assert!(after.accessed().unwrap() > before);
        // Nothing fits: the most recently used stays anyway.
        prune(
            dir.path(),
            kind,
            Limits {
                max_bytes: 0,
                max_idle: 10 * hour,
            },
        );
        assert_eq!(names(dir.path()), [".being-written", "b", "other-kind"]);
    }

    #[test]
    fn leftovers_of_dead_writers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join(format!("{TEMP_PREFIX}dead{TEMP_SUFFIX}"));
        fs::write(&dead, "partial").unwrap();
        fs::write(dir.path().join("entry"), "kept").unwrap();
        remove_stale(dir.path());
        assert_eq!(names(dir.path()), ["entry"]);
    }
}
