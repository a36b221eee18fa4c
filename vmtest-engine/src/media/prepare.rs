//! What a VM boots, prepared from a kernel image: the kernel (its extracted
//! vmlinux when it can), an initramfs holding the guest init and the
//! modules the kernel needs for 9p and the control port, and the kernel
//! command line.

use std::path::{Path, PathBuf};

use vmtest_contract::boot::DEBUG_PARAM;

use super::bzimage::{self, KernelImageError};
use super::initramfs::{self, InitramfsError};
use super::modules::{self, ModuleIndex, ModulesError, GUEST_MODULES};
use super::prepared::{self, BootMedia};
use super::vmlinux::{self, VmlinuxError};
use crate::host::cache;
use crate::model::shape::VmShape;

/// Why a kernel cannot be prepared for booting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrepareError {
    #[error("kernel image {0} does not exist: run scripts/setup.sh or fix the path")]
    Missing(PathBuf),
    #[error("kernel image {0} is a directory: give the image file in it (a vmlinuz or bzImage)")]
    Directory(PathBuf),
    #[error(transparent)]
    Image(#[from] KernelImageError),
    #[error(transparent)]
    Modules(#[from] ModulesError),
    #[error(transparent)]
    Initramfs(#[from] InitramfsError),
    #[error(transparent)]
    Vmlinux(#[from] VmlinuxError),
}

/// Finds the modules `shape`'s kernel needs, writes (or reuses) the
/// initramfs that carries them, and picks the image to boot: the kernel's
/// uncompressed vmlinux, unless `as_is`.
///
/// Under emulation a bzImage spends most of its boot in its own
/// decompressor (up to 2.8x longer for Debian's xz-compressed 6.1), so the
/// vmlinux is extracted once and booted through PVH, which disables KASLR.
/// A payload that does not decompress is an error here, at once, rather
/// than a boot that hangs until its timeout.
pub(crate) fn prepare(
    shape: &VmShape,
    cache_dir: &Path,
    as_is: bool,
) -> Result<BootMedia, PrepareError> {
    let image = &shape.kernel;
    if image.is_dir() {
        return Err(PrepareError::Directory(image.clone()));
    }
    if !image.exists() {
        return Err(PrepareError::Missing(image.clone()));
    }
    let version = bzimage::kernel_version(image)?;
    let modules_dir = modules::locate(image, &version, shape.modules.as_deref())?;
    let key = prepared::key(image, modules_dir.as_deref(), as_is);
    if let Some(media) = key
        .as_deref()
        .and_then(|key| prepared::find(cache_dir, key))
    {
        return Ok(media);
    }
    let needed = match modules_dir {
        Some(dir) => modules::resolve(&ModuleIndex::load(&dir, &version)?, GUEST_MODULES)?,
        // Nothing to load: the kernel must have 9p and virtio built in, and
        // if it has not, the init says so.
        None => Vec::new(),
    };
    let initramfs = initramfs::build(vmtest_guest::INIT, &needed, cache_dir)?;
    let kernel = match as_is {
        true => None,
        false => vmlinux::uncompressed_kernel(image, cache_dir)?,
    };
    let media = BootMedia {
        kernel: kernel.unwrap_or_else(|| image.clone()),
        initramfs,
    };
    if let Some(key) = key {
        prepared::remember(cache_dir, &key, &media);
    }
    Ok(media)
}

/// Prunes the boot media in `cache_dir` and the records naming them (see
/// [`crate::host::cache::BOOT_MEDIA`]).
pub(crate) fn prune_cache(cache_dir: &Path) {
    let media = |name: &str| name.starts_with("vmlinux-") || name.starts_with("initramfs-");
    cache::prune(cache_dir, media, cache::BOOT_MEDIA);
    prepared::prune(cache_dir);
}

/// The guest kernel's command line: ours first, the job's `extra` last so
/// that it can override ours.
pub(crate) fn kernel_cmdline(extra: &str, debug: bool) -> String {
    let mut cmdline = String::from(concat!(
        // The serial port is the console the host keeps as a log.
        "console=ttyS0 ",
        // With QEMU's -no-reboot, a panic ends QEMU at once.
        "panic=-1 ",
        // An oops leaves a poisoned kernel: panic instead, so that the VM is
        // replaced before the next job. (`oops=panic`: `panic_on_oops=` is
        // only a sysctl, the kernel ignores it on its command line.)
        "oops=panic ",
        // Our init logs through /dev/kmsg, which is rate-limited otherwise.
        "printk.devkmsg=on ",
        "rdinit=/init ",
        // On QEMU's `pc` machine the kernel runs the ACPI `_PRT` method, an
        // emulated loop, once per PCI device: about 150 ms each under TCG.
        // Our devices use MSI-X and the serial port a fixed ISA IRQ, so
        // ACPI interrupt routing is not needed.
        "acpi=noirq ",
        // The kernel checks that the IO-APIC timer ticks within a few
        // milliseconds; a QEMU waiting for a CPU on a loaded host (eight
        // test runs on two cores) misses that window and the kernel panics.
        "no_timer_check",
    ));
    if debug {
        cmdline.push(' ');
        cmdline.push_str(DEBUG_PARAM);
        cmdline.push_str("=1");
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
    fn extra_arguments_come_last() {
        let cmdline = kernel_cmdline(" nokaslr ", true);
        assert!(cmdline.starts_with("console=ttyS0 panic=-1 oops=panic "));
        assert!(cmdline.ends_with(" vmtest.debug=1 nokaslr"), "{cmdline}");
        assert!(kernel_cmdline("", false).ends_with("no_timer_check"));
    }

    #[test]
    fn bad_kernel_paths_say_what_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let error = prepare(&VmShape::new(dir.path()), dir.path(), false).unwrap_err();
        assert!(error.to_string().contains("is a directory"), "{error}");
        let missing = dir.path().join("vmlinuz");
        let error = prepare(&VmShape::new(&missing), dir.path(), false).unwrap_err();
        assert!(error.to_string().contains("does not exist"), "{error}");
    }
}
