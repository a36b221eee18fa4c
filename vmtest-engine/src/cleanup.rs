//! Leaving nothing behind when a run is cut short.
//!
//! Everything a run must not leave (QEMU process groups, its directories,
//! half-written cache files) is registered here while it exists. On Ctrl-C
//! (SIGINT), SIGTERM or SIGHUP a signal thread kills the processes, removes
//! the files, tells the reporter, and exits with the conventional 128 +
//! signal. A run killed with SIGKILL cannot clean up: its QEMUs die with it
//! (`PR_SET_PDEATHSIG`), and its files carry its pid in their names, so the
//! next run removes them ([`remove_stale`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::events::{Event, Reporter};
use crate::qemu::process::kill_group;

/// What an interrupted run must end or remove.
#[derive(Debug)]
pub(crate) enum Resource {
    /// A QEMU process group.
    Qemu(u32),
    /// A file or a directory tree.
    Path(PathBuf),
    /// A directory kept if it holds anything (the guest's output).
    DirIfEmpty(PathBuf),
}

struct Registry {
    resources: BTreeMap<u64, Resource>,
    reporter: Option<Arc<dyn Reporter>>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    resources: BTreeMap::new(),
    reporter: None,
});
static NEXT: AtomicU64 = AtomicU64::new(0);

/// While alive, its resource is cleaned up if the run is interrupted.
#[must_use]
pub(crate) struct Registration {
    id: u64,
}

/// Records `resource`; drop the registration once it is gone.
pub(crate) fn register(resource: Resource) -> Registration {
    install_handler();
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    registry().resources.insert(id, resource);
    Registration { id }
}

/// Who hears that the run was interrupted.
pub(crate) fn set_reporter(reporter: Arc<dyn Reporter>) {
    install_handler();
    registry().reporter = Some(reporter);
}

impl Drop for Registration {
    fn drop(&mut self) {
        registry().resources.remove(&self.id);
    }
}

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn install_handler() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let Ok(mut signals) = Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
            // Without handlers the default action (exit) applies; QEMUs still
            // die with us, and the next run removes our files.
            return;
        };
        std::thread::spawn(move || {
            if let Some(signal) = signals.forever().next() {
                // Hold the lock to the end: nothing registers or unregisters
                // while we clean up.
                let registry = registry();
                let mut vms = 0;
                for resource in registry.resources.values() {
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
                if let Some(reporter) = &registry.reporter {
                    reporter.report(&Event::Cancelled { signal, vms });
                }
                std::process::exit(128 + signal);
            }
        });
    });
}

fn remove(path: &Path) {
    if path.is_dir() {
        let _ = std::fs::remove_dir_all(path);
    } else {
        let _ = std::fs::remove_file(path);
    }
}

/// A name for something of this process that [`remove_stale`] can tell
/// apart: `{prefix}{pid}-{unique}{suffix}`.
pub(crate) fn owned_name(prefix: &str, suffix: &str) -> String {
    static UNIQUE: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos());
    format!(
        "{prefix}{}-{nanos:x}{}{suffix}",
        std::process::id(),
        UNIQUE.fetch_add(1, Ordering::Relaxed)
    )
}

/// Removes what dead processes left in `dir` under names made by
/// [`owned_name`] with `prefix` and `suffix`. Best effort.
pub(crate) fn remove_stale(dir: &Path, prefix: &str, suffix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|name| name.strip_prefix(prefix))
            .and_then(|rest| rest.strip_suffix(suffix))
        else {
            continue;
        };
        let pid = rest
            .split('-')
            .next()
            .and_then(|pid| pid.parse::<i32>().ok());
        if pid.is_some_and(|pid| !alive(pid)) {
            remove(&entry.path());
        }
    }
}

/// Whether a process with this pid exists.
fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe {
        libc::kill(pid, 0) == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_dead_processes_left_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let ours = dir.path().join(owned_name("vmtest-run-", ""));
        // Pids are below 2^22 on Linux: this one cannot exist.
        let dead = dir.path().join("vmtest-run-99999999-1");
        let other = dir.path().join("unrelated-99999999-1");
        for path in [&ours, &dead, &other] {
            std::fs::create_dir(path).unwrap();
        }
        std::fs::write(dead.join("console.log"), "x").unwrap();
        remove_stale(dir.path(), "vmtest-run-", "");
        assert!(ours.exists() && other.exists());
        assert!(!dead.exists());
    }
}
