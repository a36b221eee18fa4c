//! Ending every VM on Ctrl-C (SIGINT), SIGTERM and SIGHUP.
//!
//! Each live VM registers its QEMU process group and its private directory;
//! a signal thread kills the groups, removes the directories and exits with
//! the conventional 128 + signal code. Normal ends go through the VMs' own
//! shutdown instead; this is for runs cut short.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, Once};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::qemu::process::kill_group;

static LIVE: Mutex<BTreeMap<u32, PathBuf>> = Mutex::new(BTreeMap::new());

/// While alive, the VM's process group and directory are cleaned up if the
/// run is interrupted.
pub(crate) struct Registration {
    pid: u32,
}

/// Records a VM; drop the registration once the VM is shut down.
pub(crate) fn register(pid: u32, dir: PathBuf) -> Registration {
    install_handler();
    live().insert(pid, dir);
    Registration { pid }
}

impl Drop for Registration {
    fn drop(&mut self) {
        live().remove(&self.pid);
    }
}

fn live() -> std::sync::MutexGuard<'static, BTreeMap<u32, PathBuf>> {
    LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn install_handler() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let Ok(mut signals) = Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
            eprintln!("vmtest: could not install signal handlers; an interrupted run may leave VMs behind");
            return;
        };
        std::thread::spawn(move || {
            if let Some(signal) = signals.forever().next() {
                // Hold the lock to the end: no VM registers or unregisters
                // while we clean up.
                let vms = live();
                for (&pid, dir) in vms.iter() {
                    kill_group(pid);
                    let _ = std::fs::remove_dir_all(dir);
                }
                eprintln!("vmtest: interrupted; {} VM(s) stopped", vms.len());
                std::process::exit(128 + signal);
            }
        });
    });
}
