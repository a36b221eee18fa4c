//! What a job needs of its VM. Jobs with equal shapes share VMs.

use std::fmt;
use std::path::PathBuf;

use super::arch::Arch;

/// Guest memory when a job does not say.
pub const DEFAULT_MEMORY_MIB: u32 = 512;
/// Guest vCPUs when a job does not say. One: under TCG all vCPUs share one
/// host thread anyway (see `Accel::qemu_accel`), and a second one slows the
/// boot of some kernels (Debian 6.1 falls back from the TSC to the HPET
/// clocksource, 0.3-0.45 s). Jobs that need more ask for them.
pub const DEFAULT_CPUS: u32 = 1;
/// Guest memory set aside for the kernel, the page cache of the binaries
/// jobs run, and the test server, before jobs are counted.
const BASE_MIB: u32 = 128;
/// Guest memory budgeted for each job running at once: a test forked from
/// the server shares its pages until it writes them, so this is room for
/// what a test allocates, not for a copy of the binary.
const PER_JOB_MIB: u32 = 32;

/// Everything that makes two VMs different.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VmShape {
    /// The guest's architecture: the host's unless a build of vmtest for
    /// another is given (see `Settings::guest_builds`), which then runs
    /// under emulation.
    pub arch: Arch,
    /// The kernel image, absolute.
    pub kernel: PathBuf,
    /// Where its modules are, when not found beside it.
    pub modules: Option<PathBuf>,
    pub memory_mib: u32,
    pub cpus: u32,
    /// Added at the end of the guest kernel's command line.
    pub kernel_args: String,
    /// The directory the guest sees as `/`, read-only: the host's own root
    /// by default.
    pub root: PathBuf,
    /// More host directories the guest mounts.
    pub mounts: Vec<Mount>,
    /// QEMU for this VM, instead of `VMTEST_QEMU`'s.
    pub qemu_binary: Option<PathBuf>,
    /// Added to QEMU's command line.
    pub qemu_args: Vec<String>,
    /// QEMU's `-cpu` under KVM, instead of `host`.
    pub kvm_cpu: Option<String>,
}

/// A host directory mounted in the guest over 9p.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mount {
    /// Where the guest sees it, absolute. A path missing from the guest's
    /// read-only root may be under `/mnt` (which becomes a tmpfs for it),
    /// `/tmp` or `/run`.
    pub guest_path: PathBuf,
    /// The host directory, absolute.
    pub host_path: PathBuf,
    pub writable: bool,
}

impl VmShape {
    /// A VM of the default size for `kernel`.
    pub fn new(kernel: impl Into<PathBuf>) -> VmShape {
        VmShape {
            arch: Arch::HOST,
            kernel: kernel.into(),
            modules: None,
            memory_mib: DEFAULT_MEMORY_MIB,
            cpus: DEFAULT_CPUS,
            kernel_args: String::new(),
            root: PathBuf::from("/"),
            mounts: Vec::new(),
            qemu_binary: None,
            qemu_args: Vec::new(),
            kvm_cpu: None,
        }
    }

    /// How many jobs run at once in one VM of this shape: what its memory
    /// holds, [`PER_JOB_MIB`] each beyond [`BASE_MIB`], and at least one.
    pub fn job_capacity(&self) -> usize {
        (self.memory_mib.saturating_sub(BASE_MIB) / PER_JOB_MIB).max(1) as usize
    }
}

impl fmt::Display for VmShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kernel = self.kernel.file_name().map_or_else(
            || self.kernel.display().to_string(),
            |name| name.to_string_lossy().into_owned(),
        );
        let vcpus = if self.cpus == 1 { "vCPU" } else { "vCPUs" };
        write!(f, "{kernel} (")?;
        if self.arch != Arch::HOST {
            write!(f, "{}, ", self.arch.name())?;
        }
        write!(f, "{} MiB, {} {vcpus}", self.memory_mib, self.cpus)?;
        if !self.kernel_args.is_empty() {
            write!(f, ", {}", self.kernel_args)?;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_follows_memory() {
        let mut shape = VmShape::new("/k");
        assert_eq!(shape.job_capacity(), 12);
        shape.memory_mib = 128;
        assert_eq!(shape.job_capacity(), 1);
        shape.memory_mib = 1024;
        assert_eq!(shape.job_capacity(), 28);
    }

    #[test]
    fn shapes_read_well() {
        let mut shape = VmShape::new("/kernels/vmlinuz-6.1");
        assert_eq!(shape.to_string(), "vmlinuz-6.1 (512 MiB, 1 vCPU)");
        shape.cpus = 2;
        shape.kernel_args = "nokaslr".into();
        assert_eq!(shape.to_string(), "vmlinuz-6.1 (512 MiB, 2 vCPUs, nokaslr)");
        shape.arch = Arch::ALL
            .into_iter()
            .find(|&arch| arch != Arch::HOST)
            .unwrap();
        assert_eq!(
            shape.to_string(),
            format!(
                "vmlinuz-6.1 ({}, 512 MiB, 2 vCPUs, nokaslr)",
                shape.arch.name()
            )
        );
    }
}
