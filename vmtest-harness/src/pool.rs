//! VMs keyed by shape: one boot per shape per run, shared by every test that
//! needs it, booted in parallel ahead of the tests, shut down at the end.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use crate::boot;
use crate::settings::Settings;
use crate::shape::VmShape;
use crate::vm::{BootError, Vm, VmConfig};

type Slot = Arc<OnceLock<Result<Arc<Vm>, String>>>;

/// The run's VMs.
pub(crate) struct Pool {
    /// A setup problem (no agent, bad setting) fails every test with it.
    settings: Result<Settings, String>,
    slots: Mutex<HashMap<VmShape, Slot>>,
    boots: Mutex<Vec<JoinHandle<()>>>,
    announce: Once,
}

impl Pool {
    pub(crate) fn new(settings: Result<Settings, String>) -> Arc<Pool> {
        Arc::new(Pool {
            settings,
            slots: Mutex::default(),
            boots: Mutex::default(),
            announce: Once::new(),
        })
    }

    /// The VM for `shape`, booting it on first use; later callers wait for
    /// that boot and share its result.
    pub(crate) fn vm(&self, shape: &VmShape) -> Result<Arc<Vm>, String> {
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(shape.clone())
            .or_default()
            .clone();
        slot.get_or_init(|| self.boot(shape).map(Arc::new)).clone()
    }

    /// Starts booting every shape at once, so VMs for different kernels boot
    /// in parallel while the first tests wait.
    pub(crate) fn boot_ahead(self: &Arc<Self>, shapes: BTreeSet<VmShape>) {
        let mut boots = self
            .boots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for shape in shapes {
            let pool = Arc::clone(self);
            boots.push(thread::spawn(move || {
                let _ = pool.vm(&shape);
            }));
        }
    }

    fn boot(&self, shape: &VmShape) -> Result<Vm, String> {
        let settings = self.settings.as_ref().map_err(Clone::clone)?;
        self.announce.call_once(|| {
            eprintln!(
                "vmtest: accelerator {}: {}",
                settings.accel.accel.qemu_name().to_uppercase(),
                settings.accel.reason
            );
        });
        let media = boot::prepare(shape, &settings.cache_dir).map_err(|error| error.to_string())?;
        let config = VmConfig {
            qemu_binary: settings.qemu_binary.clone(),
            kernel: media.kernel,
            initramfs: media.initramfs,
            kernel_cmdline: boot::kernel_cmdline(&settings.shared_dir, &shape.kernel_args),
            memory_mib: shape.memory_mib,
            cpus: shape.cpus,
            accel: settings.accel.accel,
            shared_dir: settings.shared_dir.clone(),
            boot_timeout: settings.boot_timeout,
        };
        let describe = |error: BootError| format!("{}: {error}", shape.kernel.display());
        let started = Instant::now();
        let vm = match Vm::boot(&config) {
            Err(BootError::Hung { .. }) => {
                eprintln!(
                    "vmtest: {} did not come up in time; trying once more",
                    shape.kernel.display()
                );
                Vm::boot(&config).map_err(describe)
            }
            result => result.map_err(describe),
        }?;
        if settings.verbose {
            eprintln!(
                "vmtest: {} booted in {:.2?} ({} MiB, {} vCPUs)",
                shape.kernel.display(),
                started.elapsed(),
                shape.memory_mib,
                shape.cpus
            );
        }
        Ok(vm)
    }

    /// Waits for boots still in flight, then shuts every VM down.
    pub(crate) fn shutdown(&self) {
        let boots = std::mem::take(
            &mut *self
                .boots
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for boot in boots {
            let _ = boot.join();
        }
        let slots = std::mem::take(
            &mut *self
                .slots
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for slot in slots.into_values() {
            let vm = Arc::into_inner(slot).and_then(OnceLock::into_inner);
            if let Some(Ok(vm)) = vm {
                // Still shared only if a test is somehow running; dropping
                // the last reference kills QEMU then.
                if let Some(vm) = Arc::into_inner(vm) {
                    vm.shutdown();
                }
            }
        }
    }
}
