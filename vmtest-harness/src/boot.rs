//! What a VM boots: the kernel image, an initramfs holding our init and the
//! modules the kernel needs for 9p and the guest agent, and the kernel
//! command line our init reads.

use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::initramfs::{self, InitramfsError};
use crate::kernel::image::{self, ImageError};
use crate::kernel::modules::{self, ModuleIndex, ModulesError, GUEST_MODULES};
use crate::kernel::vmlinux;
use crate::shape::VmShape;

/// The guest's PID 1, compiled from `guest/init.rs` by the build script.
static GUEST_INIT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vmtest-init"));

/// A kernel and the initramfs to boot it with.
#[derive(Debug, Clone)]
pub(crate) struct BootMedia {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
}

/// Why a kernel cannot be prepared for booting.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PrepareError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Modules(#[from] ModulesError),
    #[error(transparent)]
    Initramfs(#[from] InitramfsError),
}

/// Finds the modules `shape`'s kernel needs and writes (or reuses) the
/// initramfs that carries them.
pub(crate) fn prepare(shape: &VmShape, cache_dir: &Path) -> Result<BootMedia, PrepareError> {
    let version = image::kernel_version(&shape.kernel)?;
    let needed = match modules::locate(&shape.kernel, &version, shape.modules.as_deref())? {
        Some(dir) => modules::resolve(&ModuleIndex::load(&dir, &version)?, GUEST_MODULES)?,
        // Nothing to load: the kernel must have 9p and virtio built in, and
        // if it has not, the init says so on the console.
        None => Vec::new(),
    };
    let initramfs = initramfs::build(GUEST_INIT, &needed, cache_dir)?;
    Ok(BootMedia {
        kernel: fastest_image(&shape.kernel, cache_dir),
        initramfs,
    })
}

/// The kernel's uncompressed `vmlinux` when it can boot through PVH: under
/// emulation, a bzImage spends most of its boot in its own decompressor (up
/// to 2.8x longer for Debian's xz-compressed 6.1). Booting it so disables
/// KASLR; `VMTEST_BOOT_IMAGE_AS_IS=1` boots the image as given.
fn fastest_image(image: &Path, cache_dir: &Path) -> PathBuf {
    if std::env::var_os("VMTEST_BOOT_IMAGE_AS_IS").is_some_and(|value| value != "0") {
        return image.to_path_buf();
    }
    match vmlinux::uncompressed_kernel(image, cache_dir) {
        Ok(Some(vmlinux)) => vmlinux,
        Ok(None) => image.to_path_buf(),
        Err(error) => {
            eprintln!("vmtest: booting {} as it is: {error}", image.display());
            image.to_path_buf()
        }
    }
}

/// The guest kernel's command line: ours first, the test's `kernel_args`
/// last so they can override ours.
pub(crate) fn kernel_cmdline(shared_dir: &Path, extra: &str) -> String {
    let mut cmdline = String::from(concat!(
        // The serial port is the console the host keeps as a log.
        "console=ttyS0 ",
        // With QEMU's -no-reboot, a panic ends QEMU at once.
        "panic=-1 ",
        // Our init logs through /dev/kmsg, which is rate-limited otherwise.
        "printk.devkmsg=on ",
        "rdinit=/init ",
        // On QEMU's `pc` machine the kernel runs the ACPI `_PRT` method, an
        // emulated loop, once per PCI device: about 150 ms each under TCG.
        // Our devices use MSI-X and the serial port a fixed ISA IRQ, so
        // ACPI interrupt routing is not needed.
        "acpi=noirq ",
    ));
    cmdline.push_str("vmtest.shared=");
    for byte in shared_dir.as_os_str().as_bytes() {
        // Hex, so spaces and commas in the path survive the command line.
        let _ = write!(cmdline, "{byte:02x}");
    }
    if !extra.trim().is_empty() {
        cmdline.push(' ');
        cmdline.push_str(extra.trim());
    }
    cmdline
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_dir_is_hex_encoded_and_extra_arguments_come_last() {
        assert_eq!(
            kernel_cmdline(Path::new("/a b"), " nokaslr "),
            "console=ttyS0 panic=-1 printk.devkmsg=on rdinit=/init acpi=noirq vmtest.shared=2f612062 nokaslr"
        );
        assert!(kernel_cmdline(Path::new("/s"), "").ends_with("vmtest.shared=2f73"));
    }
}
