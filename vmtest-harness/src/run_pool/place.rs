//! Where a pool lives, and how it is started and ended without two pools
//! of one run and binary at once.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

/// Set for the pool's process: where its socket goes (without `.sock`).
pub(super) const POOL_VAR: &str = "VMTEST_RUN_POOL";
/// Set for the pool's process: the pid of the process that runs the tests
/// (nextest), whose end ends the pool.
pub(super) const RUNNER_VAR: &str = "VMTEST_RUN_POOL_RUNNER";

/// Where one pool lives: `NAME.sock`, its socket, and `NAME.lock`, held by
/// whoever starts or ends it, in the pools' directory.
pub(super) struct Place {
    /// The directory, held open: its files are reached through
    /// `/proc/self/fd`, whatever the length of its path (a socket's path may
    /// not be longer than 107 bytes).
    dir: File,
    pub dir_path: PathBuf,
    pub name: String,
}

impl Place {
    pub(super) fn open(dir_path: PathBuf, name: String) -> io::Result<Place> {
        Ok(Place {
            dir: File::open(&dir_path)?,
            dir_path,
            name,
        })
    }

    fn path(&self, suffix: &str) -> PathBuf {
        Path::new("/proc/self/fd")
            .join(self.dir.as_raw_fd().to_string())
            .join(format!("{}{suffix}", self.name))
    }

    pub(super) fn socket(&self) -> PathBuf {
        self.path(".sock")
    }

    pub(super) fn connect(&self) -> io::Result<UnixStream> {
        UnixStream::connect(self.socket())
    }

    /// Holds the lock file, waiting for it (`wait`) or not. A lock file
    /// removed while this waited is not the lock any more: the one the name
    /// now gives is taken instead.
    pub(super) fn lock(&self, wait: bool) -> io::Result<File> {
        let operation = match wait {
            true => FlockOperation::LockExclusive,
            false => FlockOperation::NonBlockingLockExclusive,
        };
        loop {
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(self.path(".lock"))?;
            flock(&file, operation)?;
            let held = file.metadata()?.ino();
            if fs::metadata(self.path(".lock")).is_ok_and(|now| now.ino() == held) {
                return Ok(file);
            }
        }
    }

    /// Removes the socket and the lock file; call it holding the lock.
    pub(super) fn remove(&self) {
        let _ = fs::remove_file(self.socket());
        let _ = fs::remove_file(self.path(".lock"));
    }
}
