//! VMs by shape: one at a time per shape, shared by every job that needs
//! it, booted on first need (or ahead, all shapes in parallel), replaced
//! when it dies (at most [`MAX_REPLACEMENTS`] times per shape and run), shut
//! down at the end.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use super::error::SetupError;
use crate::host::cancel;
use crate::host::run_dir::RunDir;
use crate::host::settings::Settings;
use crate::media::guest;
use crate::media::prepare::{self, kernel_cmdline};
use crate::model::events::{Event, Reporter, VmId};
use crate::model::job::GuestServer;
use crate::model::outcome::chain;
use crate::model::shape::VmShape;
use crate::snapshot::{SnapshotUse, Snapshots};
use crate::vm::error::BootError;
use crate::vm::jobs::Reservation;
use crate::vm::layout;
use crate::vm::machine::Vm;
use crate::vm::spec::BootSpec;

/// How many times a shape's VM may die and be replaced in one run.
pub(crate) const MAX_REPLACEMENTS: u32 = 3;
/// How many restores of one snapshot may fail in a run before its VMs are
/// booted for the rest of it (the first failure replaces the snapshot).
const MAX_FAILED_RESTORES: u32 = 2;

/// What every boot of the run needs.
pub(crate) struct RunSetup {
    pub settings: Settings,
    pub reporter: Arc<dyn Reporter>,
    pub run_dir: RunDir,
    /// What the guest init starts.
    pub server: GuestServer,
    /// The run's shared directory.
    pub shared_dir: PathBuf,
    /// Where snapshots are kept; `None` when VMs are always booted.
    pub snapshots: Option<Snapshots>,
}

/// The run's VMs.
pub(crate) struct Pool {
    setup: RunSetup,
    slots: Mutex<HashMap<VmShape, Arc<Slot>>>,
    boots: Mutex<Vec<JoinHandle<()>>>,
    next_vm: AtomicU64,
    /// Snapshots that could not be saved or restored in this run: their
    /// VMs boot.
    unusable_snapshots: Mutex<HashSet<String>>,
    /// How many times each snapshot failed to restore in this run.
    failed_restores: Mutex<HashMap<String, u32>>,
}

/// One shape's VM.
struct Slot {
    shape: Arc<VmShape>,
    state: Mutex<SlotState>,
    changed: Condvar,
}

struct SlotState {
    current: Current,
    deaths: u32,
}

enum Current {
    Empty,
    Booting,
    Ready(Arc<Vm>),
    /// No VM of this shape can be had in this run.
    Failed(Arc<SetupError>),
}

impl Pool {
    pub(crate) fn new(setup: RunSetup) -> Arc<Pool> {
        Arc::new(Pool {
            setup,
            slots: Mutex::default(),
            boots: Mutex::default(),
            next_vm: AtomicU64::new(1),
            unusable_snapshots: Mutex::default(),
            failed_restores: Mutex::default(),
        })
    }

    /// What every boot of the run shares.
    pub(crate) fn setup(&self) -> &RunSetup {
        &self.setup
    }

    /// A new VM's number.
    pub(crate) fn next_vm(&self) -> VmId {
        self.next_vm.fetch_add(1, Ordering::Relaxed)
    }

    /// A slot in a live VM of `shape`, booting or replacing the VM as needed.
    pub(crate) fn acquire(&self, shape: &VmShape) -> Result<Reservation, Arc<SetupError>> {
        let slot = self.slot(shape);
        loop {
            if cancel::cancelled() {
                return Err(Arc::new(SetupError::Cancelled));
            }
            let vm = self.live_vm(&slot)?;
            if let Some(reservation) = Reservation::take(&vm) {
                return Ok(reservation);
            }
            // It died while we waited for room in it: the next one.
        }
    }

    /// Starts booting every shape at once, so VMs for different kernels boot
    /// in parallel while the first jobs wait.
    pub(crate) fn boot_ahead(self: &Arc<Self>, shapes: impl IntoIterator<Item = VmShape>) {
        let mut boots = self.boots.lock();
        for shape in shapes {
            let pool = Arc::clone(self);
            boots.push(thread::spawn(move || {
                let slot = pool.slot(&shape);
                let _ = pool.live_vm(&slot);
            }));
        }
    }

    /// Waits for boots still in flight, then shuts every VM down.
    pub(crate) fn shutdown(&self) {
        for boot in std::mem::take(&mut *self.boots.lock()) {
            let _ = boot.join();
        }
        for slot in std::mem::take(&mut *self.slots.lock()).into_values() {
            if let Current::Ready(vm) = &slot.state.lock().current {
                vm.shutdown();
            }
        }
    }

    fn slot(&self, shape: &VmShape) -> Arc<Slot> {
        let mut slots = self.slots.lock();
        let slot = slots.entry(shape.clone()).or_insert_with(|| {
            Arc::new(Slot {
                shape: Arc::new(shape.clone()),
                state: Mutex::new(SlotState {
                    current: Current::Empty,
                    deaths: 0,
                }),
                changed: Condvar::new(),
            })
        });
        Arc::clone(slot)
    }

    /// The slot's VM once it is alive: booted by the first caller, waited
    /// for by the others, replaced after a death.
    fn live_vm(&self, slot: &Slot) -> Result<Arc<Vm>, Arc<SetupError>> {
        let mut state = slot.state.lock();
        loop {
            match &state.current {
                Current::Ready(vm) if vm.alive() => return Ok(Arc::clone(vm)),
                Current::Ready(_) => {
                    state.deaths += 1;
                    state.current = if state.deaths > MAX_REPLACEMENTS {
                        self.setup.reporter.report(&Event::GaveUp {
                            shape: Arc::clone(&slot.shape),
                            deaths: state.deaths,
                        });
                        Current::Failed(Arc::new(SetupError::GaveUp {
                            shape: Arc::clone(&slot.shape),
                            deaths: state.deaths,
                        }))
                    } else {
                        Current::Empty
                    };
                }
                Current::Failed(error) => return Err(Arc::clone(error)),
                Current::Booting => {
                    slot.changed.wait(&mut state);
                }
                Current::Empty => {
                    state.current = Current::Booting;
                    let booted =
                        parking_lot::MutexGuard::unlocked(&mut state, || self.boot(&slot.shape));
                    state.current = match booted {
                        Ok(vm) => Current::Ready(Arc::new(vm)),
                        Err(error) => Current::Failed(Arc::new(error)),
                    };
                    slot.changed.notify_all();
                }
            }
        }
    }

    /// Boots a VM of `shape`, or restores it from its snapshot; boots it
    /// once more if the first boot hangs or dies (under emulation on a
    /// loaded host, a boot in a few dozen goes wrong for reasons of timing
    /// alone), and boots it if the snapshot cannot be restored.
    fn boot(&self, shape: &Arc<VmShape>) -> Result<Vm, SetupError> {
        let setup = &self.setup;
        let settings = &setup.settings;
        let programs = guest::programs(settings, shape.arch)?;
        let media = prepare::prepare(
            shape,
            &programs.init,
            &settings.cache_dir,
            settings.boot_image_as_is,
        )
        .map_err(|source| SetupError::Prepare {
            kernel: shape.kernel.clone(),
            source: Box::new(source),
        })?;
        // Another architecture's guests run its build's server.
        let server = match &programs.server {
            None => setup.server.clone(),
            Some(build) => GuestServer {
                program: build.clone(),
                args: Vec::new(),
                ..setup.server.clone()
            },
        };
        let kernel_args = format!("{} {}", shape.kernel_args, settings.kernel_args);
        let cmdline = kernel_cmdline(shape.arch, &kernel_args, settings.verbose);
        let boot_error = |source| SetupError::Boot {
            shape: Arc::clone(shape),
            source: Box::new(source),
        };
        let mut attempt = 0;
        let mut retried = false;
        loop {
            if cancel::cancelled() {
                return Err(SetupError::Cancelled);
            }
            attempt += 1;
            let vm = self.next_vm();
            setup.reporter.report(&Event::VmBooting {
                vm,
                shape: Arc::clone(shape),
                attempt,
            });
            let dir = setup
                .run_dir
                .vm_dir(vm)
                .map_err(|error| boot_error(BootError::Workdir(error)))?;
            // Apart from every other VM, of this run and of others.
            let vm_tag = format!("vmtest-{}-vm{vm}", setup.run_dir.tag());
            let layout = layout::layout(shape, &server, &setup.shared_dir, &vm_tag, dir.path());
            let mut spec = BootSpec {
                settings,
                media: &media,
                shape,
                cmdline: &cmdline,
                exports: &layout.exports,
                params: &layout.params,
                profiles: layout.profiles.as_ref(),
                snapshot: None,
            };
            let snapshot = self.snapshot_use(&spec);
            spec.snapshot = setup
                .snapshots
                .as_ref()
                .zip(snapshot.as_ref().map(|(_, usage)| usage));
            let started = Instant::now();
            let booted = Vm::boot(vm, dir, &spec, Arc::clone(&setup.reporter));
            match (booted, snapshot) {
                (Ok(booted), snapshot) => {
                    let restored = match snapshot {
                        Some((_, SnapshotUse::Restore(_))) => true,
                        // A save that failed (and said why) is not tried
                        // again in this run.
                        Some((key, SnapshotUse::Save(saved))) if !saved.state().is_file() => {
                            self.unusable_snapshots.lock().insert(key);
                            false
                        }
                        _ => false,
                    };
                    setup.reporter.report(&Event::VmReady {
                        vm,
                        shape: Arc::clone(shape),
                        boot_time: started.elapsed(),
                        restored,
                    });
                    return Ok(booted);
                }
                // Never much worse than a boot: the snapshot goes, the VM
                // boots and saves a new one. One that cannot be removed, or
                // fails again, is not tried again in this run.
                (Err(error), Some((key, usage))) if snapshot_to_blame(&error, &usage) => {
                    let saving = matches!(usage, SnapshotUse::Save(_));
                    let (SnapshotUse::Restore(snapshot) | SnapshotUse::Save(snapshot)) = usage;
                    let removed = Snapshots::discard(&snapshot);
                    let failures = {
                        let mut failures = self.failed_restores.lock();
                        let count = failures.entry(key.clone()).or_insert(0);
                        *count += 1;
                        *count
                    };
                    if saving || !removed || failures >= MAX_FAILED_RESTORES {
                        self.unusable_snapshots.lock().insert(key);
                    }
                    if failures == 1 {
                        let kept = match removed {
                            true => "",
                            false => "; it cannot be removed, so this run boots its VMs",
                        };
                        let what = if saving { "save" } else { "restore" };
                        setup.reporter.report(&Event::SnapshotUnusable {
                            shape: Arc::clone(shape),
                            reason: format!(
                                "cannot {what} it ({}){kept}",
                                chain(&error).replace("\n  caused by: ", ": ")
                            ),
                        });
                    }
                }
                (Err(error @ (BootError::Hung { .. } | BootError::Died(_))), _) if !retried => {
                    retried = true;
                    setup.reporter.report(&Event::VmRetrying {
                        vm,
                        shape: Arc::clone(shape),
                        reason: error.to_string(),
                    });
                }
                (Err(error), _) => return Err(boot_error(error)),
            }
        }
    }

    /// What a boot of `spec` does with snapshots, and the snapshot's name;
    /// `None` when they are off, or failed this run.
    fn snapshot_use(&self, spec: &BootSpec) -> Option<(String, SnapshotUse)> {
        let snapshots = self.setup.snapshots.as_ref()?;
        let key = spec.snapshot_key();
        if self.unusable_snapshots.lock().contains(&key) {
            return None;
        }
        let usage = snapshots.use_for(&key);
        Some((key, usage))
    }
}

/// Whether a VM that did not come up may owe it to its snapshot, so that a
/// boot without one is worth trying: any failed restore, and a saving boot
/// whose QEMU would not start with its memory in a file, or whose new
/// snapshot would not load.
fn snapshot_to_blame(error: &BootError, usage: &SnapshotUse) -> bool {
    match usage {
        SnapshotUse::Restore(_) => true,
        SnapshotUse::Save(_) => matches!(
            error,
            BootError::Connect(_) | BootError::Restore { .. } | BootError::RestoreWithoutMonitor
        ),
    }
}
