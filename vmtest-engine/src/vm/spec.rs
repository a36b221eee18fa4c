//! Everything one boot needs, and what follows from it: QEMU's command
//! line, the VM's files, and the name of its snapshot.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use vmtest_contract::boot::{BootParams, CONTROL_PORT};

use crate::host::settings::Settings;
use crate::media::prepared::BootMedia;
use crate::model::accel::Accel;
use crate::model::shape::VmShape;
use crate::qemu::command::{self, Export, Machine, QemuConfig};
use crate::qemu::process;
use crate::snapshot::{self, SnapshotUse, Snapshots};

use super::coverage::Profiles;

/// Everything one boot needs.
pub(crate) struct BootSpec<'a> {
    pub settings: &'a Settings,
    pub media: &'a BootMedia,
    pub shape: &'a Arc<VmShape>,
    pub cmdline: &'a str,
    pub exports: &'a [Export],
    /// The init's boot parameters, but for the clock and the seed, which
    /// are the host's when it sends them.
    pub params: &'a BootParams,
    /// Where the guest's coverage profiles go, if it writes any.
    pub profiles: Option<&'a Profiles>,
    /// Restore the guest from a snapshot, or save one as it boots.
    pub snapshot: Option<(&'a Snapshots, &'a SnapshotUse)>,
}

/// The files of one VM.
pub(super) struct Paths {
    pub console: PathBuf,
    pub control: PathBuf,
    pub monitor: PathBuf,
    pub qemu_log: PathBuf,
}

impl Paths {
    pub(super) fn new(dir: &Path) -> Paths {
        Paths {
            console: dir.join("console.log"),
            control: dir.join("control.sock"),
            monitor: dir.join("qmp.sock"),
            qemu_log: dir.join("qemu.log"),
        }
    }
}

impl BootSpec<'_> {
    /// QEMU's arguments for this boot, with its files in `paths`.
    pub(super) fn qemu_arguments(&self, paths: &Paths) -> Vec<std::ffi::OsString> {
        let shape = self.shape;
        command::arguments(&QemuConfig {
            machine: Machine {
                arch: shape.arch,
                accel: self.accel(),
                kvm_cpu: shape.kvm_cpu.as_deref(),
                cpus: shape.cpus,
                memory_mib: shape.memory_mib,
            },
            boot: command::Boot::Kernel {
                kernel: &self.media.kernel,
                initramfs: &self.media.initramfs,
                cmdline: self.cmdline,
                root: &shape.root,
            },
            exports: self.exports,
            ports: &[(CONTROL_PORT, paths.control.as_path())],
            console_log: &paths.console,
            monitor_socket: &paths.monitor,
            extra: &shape.qemu_args,
        })
    }

    /// The QEMU binary this VM runs.
    pub(super) fn qemu_binary(&self) -> &Path {
        self.settings
            .qemu_binary_for(self.shape.arch, self.shape.qemu_binary.as_deref())
    }

    fn accel(&self) -> Accel {
        self.settings.accel_for(self.shape.arch)
    }

    /// The name of the snapshot this boot saves or restores: its QEMU
    /// command line, with the same paths for every VM where they do not
    /// shape the saved guest, the kernel, initramfs and QEMU it uses, and
    /// the host.
    pub(crate) fn snapshot_key(&self) -> String {
        let shape = Arc::new(VmShape {
            root: "/root".into(),
            ..(**self.shape).clone()
        });
        let exports: Vec<Export> = self
            .exports
            .iter()
            .map(|export| Export {
                host_path: "/export".into(),
                ..export.clone()
            })
            .collect();
        let neutral = BootSpec {
            shape: &shape,
            exports: &exports,
            ..*self
        };
        let args = neutral.qemu_arguments(&Paths::new(Path::new("/vm")));
        let qemu = process::resolve(self.qemu_binary());
        let host = snapshot::host::identity(
            &qemu,
            self.shape.arch,
            self.accel(),
            &self.settings.cache_dir,
        );
        snapshot::key(
            &args,
            &[&self.media.kernel, &self.media.initramfs, &qemu],
            &host,
        )
    }
}
