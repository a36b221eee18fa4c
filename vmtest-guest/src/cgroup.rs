//! One cgroup per job, so that whatever a job leaves running (a daemon,
//! `sleep 1000 &`) is killed when it ends, before the host hears that it
//! ended: `cgroup.kill` (Linux 5.14) kills every process in it at once, and
//! `cgroup.events` says when the last one is gone.
//!
//! Without cgroup2 (a kernel built without cgroups), jobs fall back to their
//! session: the job's process group is killed, which misses processes that
//! made a session of their own.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vmtest_contract::messages::JobId;

/// Where the guest init mounts cgroup2.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The parent of the jobs' cgroups.
const JOBS: &str = "vmtest";
/// How long the last processes of a killed job may take to go.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// The parent cgroup of all jobs, if the guest has cgroup2.
pub(super) struct Cgroups {
    parent: PathBuf,
}

/// A job's cgroup, removed when dropped.
pub(super) struct JobCgroup {
    path: PathBuf,
}

impl Cgroups {
    /// `None` when cgroup2 is not mounted (the job falls back to its session).
    pub(super) fn open() -> Option<Cgroups> {
        let root = Path::new(CGROUP_ROOT);
        if !root.join("cgroup.controllers").exists() {
            return None;
        }
        let parent = root.join(JOBS);
        match fs::create_dir(&parent) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => {
                eprintln!("vmtest test server: no job cgroups ({error}); using sessions");
                return None;
            }
        }
        Some(Cgroups { parent })
    }

    /// A new, empty cgroup for job `id`.
    pub(super) fn create(&self, id: JobId) -> io::Result<JobCgroup> {
        let path = self.parent.join(format!("job-{id}"));
        fs::create_dir(&path)?;
        Ok(JobCgroup { path })
    }
}

impl JobCgroup {
    /// `cgroup.procs`, which the job's child writes `0` to (itself) before
    /// anything else, so that everything it starts is inside.
    pub(super) fn procs(&self) -> PathBuf {
        self.path.join("cgroup.procs")
    }

    /// Kills every process in the cgroup and waits until none is left.
    pub(super) fn kill_all(&self) -> io::Result<()> {
        if !self.populated()? {
            return Ok(());
        }
        fs::write(self.path.join("cgroup.kill"), "1")?;
        let deadline = Instant::now() + KILL_TIMEOUT;
        while self.populated()? {
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("processes in {} outlived SIGKILL", self.path.display()),
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// Sends SIGKILL to everything in the cgroup, without waiting.
    pub(super) fn kill_now(&self) -> io::Result<()> {
        fs::write(self.path.join("cgroup.kill"), "1")
    }

    fn populated(&self) -> io::Result<bool> {
        let events = fs::read_to_string(self.path.join("cgroup.events"))?;
        Ok(events.lines().any(|line| line == "populated 1"))
    }
}

impl Drop for JobCgroup {
    fn drop(&mut self) {
        // Fails only if something is still inside, which kill_all reported.
        let _ = fs::remove_dir(&self.path);
    }
}
