//! What a VM boots, prepared from a kernel image: the kernel (its extracted
//! vmlinux when it can), an initramfs holding the guest init and the
//! modules the kernel needs for 9p and the control port, and the kernel
//! command line.

use std::path::{Path, PathBuf};

use vmtest_contract::boot::DEBUG_PARAM;

use super::initramfs::{self, InitramfsError};
use super::kernel_image::{self, Format, KernelImageError};
use super::modules::{self, ModuleIndex, ModulesError, GUEST_MODULES, OPTIONAL_GUEST_MODULES};
use super::prepared::{self, BootMedia};
use super::vmlinux::{self, VmlinuxError};
use crate::host::cache;
use crate::model::arch::Arch;
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
    #[error(
        "kernel image {path} is an {image_arch} kernel, and the guest is {guest_arch}: \
         give a kernel of the guest's architecture, or --arch / `arch` for the kernel's"
    )]
    WrongArch {
        path: PathBuf,
        image_arch: &'static str,
        guest_arch: &'static str,
    },
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
    init: &[u8],
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
    let format = kernel_image::format(image)?;
    let image_arch = match format {
        Format::BzImage => Arch::X86_64,
        Format::Arm64Image => Arch::Aarch64,
    };
    if image_arch != shape.arch {
        return Err(PrepareError::WrongArch {
            path: image.clone(),
            image_arch: image_arch.name(),
            guest_arch: shape.arch.name(),
        });
    }
    let version = kernel_image::release(image, format)?;
    let modules_dir = modules::locate(image, &version, shape.modules.as_deref())?;
    // Only a root other than the host's may become an overlay.
    let optional = match shape.root == Path::new("/") {
        true => &[][..],
        false => OPTIONAL_GUEST_MODULES,
    };
    let key = prepared::key(image, modules_dir.as_deref(), optional, init, as_is);
    if let Some(media) = key
        .as_deref()
        .and_then(|key| prepared::find(cache_dir, key))
    {
        return Ok(media);
    }
    let needed = match modules_dir {
        Some(dir) => {
            modules::resolve(&ModuleIndex::load(&dir, &version)?, GUEST_MODULES, optional)?
        }
        // Nothing to load: the kernel must have 9p and virtio built in, and
        // if it has not, the init says so.
        None => Vec::new(),
    };
    let initramfs = initramfs::build(init, &needed, cache_dir)?;
    // PVH is x86's: an arm64 Image is uncompressed already.
    let kernel = match (as_is, format) {
        (false, Format::BzImage) => vmlinux::uncompressed_kernel(image, cache_dir)?,
        _ => None,
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
pub(crate) fn kernel_cmdline(arch: Arch, extra: &str, debug: bool) -> String {
    let mut cmdline = format!(
        // The serial port is the console the host keeps as a log.
        "console={} \
         panic=-1 \
         oops=panic \
         printk.devkmsg=on \
         rdinit=/init",
        arch.console()
    );
    // With QEMU's -no-reboot, a panic ends QEMU at once. An oops leaves a
    // poisoned kernel: panic instead, so that the VM is replaced before the
    // next job (`oops=panic`: `panic_on_oops=` is only a sysctl, the kernel
    // ignores it on its command line). Our init logs through /dev/kmsg,
    // which is rate-limited otherwise.
    for arg in arch.kernel_args() {
        cmdline.push(' ');
        cmdline.push_str(arg);
    }
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
        let cmdline = kernel_cmdline(Arch::X86_64, " nokaslr ", true);
        assert_eq!(
            cmdline,
            "console=ttyS0 panic=-1 oops=panic printk.devkmsg=on rdinit=/init acpi=noirq \
             no_timer_check vmtest.debug=1 nokaslr"
        );
        assert_eq!(
            kernel_cmdline(Arch::Aarch64, "", false),
            "console=ttyAMA0 panic=-1 oops=panic printk.devkmsg=on rdinit=/init"
        );
    }

    #[test]
    fn a_kernel_of_another_architecture_is_refused_before_anything_boots() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("Image");
        let mut arm64 = vec![0u8; 4096];
        arm64[0x38..0x3c].copy_from_slice(b"ARM\x64");
        std::fs::write(&image, arm64).unwrap();
        let mut shape = VmShape::new(&image);
        shape.arch = Arch::X86_64;
        let error = prepare(&shape, vmtest_guest::INIT, dir.path(), false).unwrap_err();
        assert!(matches!(error, PrepareError::WrongArch { .. }), "{error}");
        assert!(error.to_string().contains("an aarch64 kernel"), "{error}");
    }

    #[test]
    fn bad_kernel_paths_say_what_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let init = vmtest_guest::INIT;
        let error = prepare(&VmShape::new(dir.path()), init, dir.path(), false).unwrap_err();
        assert!(error.to_string().contains("is a directory"), "{error}");
        let missing = dir.path().join("vmlinuz");
        let error = prepare(&VmShape::new(&missing), init, dir.path(), false).unwrap_err();
        assert!(error.to_string().contains("does not exist"), "{error}");
    }
}
