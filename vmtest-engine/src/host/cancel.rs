//! Stopping a run from outside, and leaving nothing behind.
//!
//! Everything a run must not leave (QEMU process groups, its directories,
//! half-written cache files) is registered here while it exists. The front
//! door owns the process's signals; told to stop, it calls [`cancel`]:
//! every registered QEMU is killed and every registered path removed, and
//! from then on jobs end as [`Outcome::Cancelled`](crate::Outcome) without
//! booting anything, and downloads stop. The engine never installs a
//! signal handler and never exits the process.
//!
//! A run killed with SIGKILL cannot clean up: its QEMUs die with it
//! (`PR_SET_PDEATHSIG`), and the next run removes its files
//! ([`crate::lease`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::{Mutex, MutexGuard};

/// What an interrupted run must end or remove.
#[derive(Debug)]
pub(crate) enum Resource {
    /// A QEMU process group, whose leader has not been reaped (so that its
    /// id cannot have been reused).
    Qemu(u32),
    /// A file or a directory tree.
    Path(PathBuf),
    /// A directory kept if it holds anything (the guest's output).
    DirIfEmpty(PathBuf),
}

static REGISTRY: Mutex<BTreeMap<u64, Resource>> = Mutex::new(BTreeMap::new());
static NEXT: AtomicU64 = AtomicU64::new(0);
static CANCELLED: AtomicBool = AtomicBool::new(false);

/// While alive, its resource is ended or removed by [`cancel`].
#[must_use]
#[derive(Debug)]
pub(crate) struct Registration {
    id: u64,
}

/// Records `resource`; drop the registration once it is gone.
pub(crate) fn register(resource: Resource) -> Registration {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    registry().insert(id, resource);
    Registration { id }
}

impl Drop for Registration {
    fn drop(&mut self) {
        registry().remove(&self.id);
    }
}

fn registry() -> MutexGuard<'static, BTreeMap<u64, Resource>> {
    REGISTRY.lock()
}

/// Stops everything the engine runs in this process, at once: kills every
/// VM (their running jobs end as cancelled), removes the run's files, and
/// makes every job not yet started, and every download, end as cancelled.
/// Returns how many VMs were stopped. For a front door's signal handling
/// (a first Ctrl-C); calling it again is harmless.
pub fn cancel() -> usize {
    CANCELLED.store(true, Ordering::SeqCst);
    // Held to the end: nothing registers or unregisters meanwhile.
    let registry = registry();
    let mut vms = 0;
    for resource in registry.values() {
        match resource {
            Resource::Qemu(pid) => {
                kill_group(*pid);
                vms += 1;
            }
            Resource::Path(path) => remove(path),
            Resource::DirIfEmpty(path) => {
                let _ = std::fs::remove_dir(path);
            }
        }
    }
    vms
}

/// SIGKILL to a process group whose leader is not reaped yet (so that its
/// id cannot have been reused).
pub(crate) fn kill_group(leader: u32) {
    if let Some(pid) = i32::try_from(leader)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// Whether [`cancel`] was called.
pub(crate) fn cancelled() -> bool {
    CANCELLED.load(Ordering::SeqCst)
}

fn remove(path: &Path) {
    if path.is_dir() {
        let _ = std::fs::remove_dir_all(path);
    } else {
        let _ = std::fs::remove_file(path);
    }
}
