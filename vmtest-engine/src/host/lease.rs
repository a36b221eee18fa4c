//! What a running process holds, and what it left when it died.
//!
//! A run's directories and the cache files it is writing carry no process
//! id: ids repeat across pid namespaces (a devcontainer and its host, two CI
//! containers on one target directory) and across hosts sharing a cache, so
//! a run judging another dead by its pid would delete its files mid-run.
//! Instead a process holds an exclusive `flock` on each thing it makes, for
//! as long as it needs it; the kernel drops the lock when the process dies,
//! however it dies. A thing is stale exactly when its lock can be taken
//! ([`remove_stale`]).
//!
//! A thing is made under a name of its own ([`NEW_PREFIX`]), locked, and
//! only then renamed to the name scans look for (a lock belongs to the file,
//! not its name): no scan ever finds one of ours unlocked.

use std::fs::{self, File, Permissions};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::{FlockOperation, Mode, OFlags, RenameFlags, CWD};

/// Starts the name of a thing being made, before it is locked.
const NEW_PREFIX: &str = ".vmtest-new-";
/// A thing still under its first name after this long was left by a
/// process killed in the moment between making and locking it.
const ORPHAN_AGE: Duration = Duration::from_secs(600);

/// An exclusive `flock` on a file or directory, held until dropped.
#[derive(Debug)]
pub(crate) struct Lease {
    _fd: OwnedFd,
}

/// Makes the directory `dir/{prefix}{random}` (mode `0700`), held by this
/// process while the lease lives.
pub(crate) fn create_dir(dir: &Path, prefix: &str) -> io::Result<(PathBuf, Lease)> {
    let temp = tempfile::Builder::new()
        .prefix(NEW_PREFIX)
        .permissions(Permissions::from_mode(0o700))
        .tempdir_in(dir)?
        .keep();
    let lease = match try_lock(&temp, true) {
        Ok(Some(fd)) => Lease { _fd: fd },
        Ok(None) => return Err(io::Error::other("a new directory is locked already")),
        Err(error) => return Err(error),
    };
    let path = rename_into_view(&temp, dir, prefix, "")?;
    Ok((path, lease))
}

/// Makes the file `dir/{prefix}{random}{suffix}` (mode `0600`), held by
/// this process while the returned file is open.
pub(crate) fn create_file(dir: &Path, prefix: &str, suffix: &str) -> io::Result<(PathBuf, File)> {
    let (file, temp) = tempfile::Builder::new()
        .prefix(NEW_PREFIX)
        .tempfile_in(dir)?
        .keep()
        .map_err(|error| error.error)?;
    let locked = rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive);
    if let Err(error) = locked {
        let _ = fs::remove_file(&temp);
        return Err(error.into());
    }
    let path = rename_into_view(&temp, dir, prefix, suffix)?;
    Ok((path, file))
}

/// Renames `temp` (`NEW_PREFIX` and a random part) to `dir/{prefix}{the
/// random part}{suffix}`, never over something that is there.
fn rename_into_view(temp: &Path, dir: &Path, prefix: &str, suffix: &str) -> io::Result<PathBuf> {
    let random = temp
        .file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| name.strip_prefix(NEW_PREFIX))
        .unwrap_or_default();
    let path = dir.join(format!("{prefix}{random}{suffix}"));
    let renamed = match rustix::fs::renameat_with(CWD, temp, CWD, &path, RenameFlags::NOREPLACE) {
        // A file system without RENAME_NOREPLACE: the random name is new.
        Err(rustix::io::Errno::INVAL) => fs::rename(temp, &path),
        result => result.map_err(io::Error::from),
    };
    if let Err(error) = renamed {
        let _ = fs::remove_dir_all(temp).or_else(|_| fs::remove_file(temp));
        return Err(error);
    }
    Ok(path)
}

/// Removes what dead processes left in `dir`: things named
/// `{prefix}…{suffix}` whose lock can be taken, and things left under
/// their first name long ago. Only this user's. Best effort.
pub(crate) fn remove_stale(dir: &Path, prefix: &str, suffix: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let me = rustix::process::geteuid().as_raw();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let ours = name.starts_with(prefix) && name.ends_with(suffix);
        let Ok(metadata) = entry.path().symlink_metadata() else {
            continue;
        };
        let orphan = name.starts_with(NEW_PREFIX)
            && metadata
                .modified()
                .is_ok_and(|modified| modified + ORPHAN_AGE < SystemTime::now());
        if !(ours || orphan) || metadata.uid() != me || metadata.file_type().is_symlink() {
            continue;
        }
        let path = entry.path();
        // Held while it is removed: a live owner never loses it.
        if let Ok(Some(_held)) = try_lock(&path, metadata.is_dir()) {
            let _ = match metadata.is_dir() {
                true => fs::remove_dir_all(&path),
                false => fs::remove_file(&path),
            };
        }
    }
}

/// The lock on `path`, if nobody holds it.
fn try_lock(path: &Path, dir: bool) -> io::Result<Option<OwnedFd>> {
    let mut flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    if dir {
        flags |= OFlags::DIRECTORY;
    }
    let fd = rustix::fs::open(path, flags, Mode::empty())?;
    match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(fd)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn what_is_held_stays_and_what_is_not_goes() {
        let dir = tempfile::tempdir().unwrap();
        let (held_dir, lease) = create_dir(dir.path(), "run-").unwrap();
        let (held_file, file) = create_file(dir.path(), ".tmp-", ".part").unwrap();
        let mode = fs::metadata(&held_dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // Left by processes that died (from another pid namespace, or
        // another host: no pid tells).
        fs::create_dir(dir.path().join("run-dead")).unwrap();
        fs::write(dir.path().join("run-dead/console.log"), "x").unwrap();
        fs::write(dir.path().join(".tmp-dead.part"), "x").unwrap();
        fs::write(dir.path().join("unrelated"), "x").unwrap();
        remove_stale(dir.path(), "run-", "");
        remove_stale(dir.path(), ".tmp-", ".part");
        let left = names(dir.path());
        assert!(left.contains(&"unrelated".to_string()));
        assert!(held_dir.exists() && held_file.exists(), "{left:?}");
        assert_eq!(left.len(), 3, "{left:?}");
        drop((lease, file));
        remove_stale(dir.path(), "run-", "");
        remove_stale(dir.path(), ".tmp-", ".part");
        assert_eq!(names(dir.path()), ["unrelated"]);
    }

    #[test]
    fn a_thing_left_under_its_first_name_goes_once_it_is_old() {
        let dir = tempfile::tempdir().unwrap();
        let young = dir.path().join(format!("{NEW_PREFIX}young"));
        let old = dir.path().join(format!("{NEW_PREFIX}old"));
        fs::write(&young, "").unwrap();
        fs::write(&old, "").unwrap();
        File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(SystemTime::now() - 2 * ORPHAN_AGE)
            .unwrap();
        remove_stale(dir.path(), "run-", "");
        assert!(young.exists() && !old.exists());
    }
}
