//! The one way files enter the cache: written whole to a temporary file of
//! this process, synced, then renamed into place, so that a reader sees the
//! whole file or none and concurrent writers of the same entry (who write
//! the same bytes) never get in each other's way. An interrupted write
//! leaves nothing: the temporary file is registered for cleanup on
//! [`cancel`](crate::cancel), and held with a lease ([`crate::lease`]) so
//! that the next run removes it after a SIGKILL. Every cache directory is
//! this user's alone ([`crate::private`]).

use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::cancel::{self, Resource};
use crate::contract::boot::hex;
use crate::{lease, private};

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
    fn leftovers_of_dead_writers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join(format!("{TEMP_PREFIX}dead{TEMP_SUFFIX}"));
        fs::write(&dead, "partial").unwrap();
        fs::write(dir.path().join("entry"), "kept").unwrap();
        remove_stale(dir.path());
        assert_eq!(names(dir.path()), ["entry"]);
    }
}
