//! Boot media remembered per kernel: reading the module tree, decompressing
//! modules and hashing the image happen once for a kernel, not once per VM
//! shape and run. A record, named by the identity of everything the media
//! are made from (the image file, its modules directory, the guest init,
//! the choice of booting the image as it is), names the media in the cache;
//! it is used while they are there.

use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::host::cache;

/// A kernel and the initramfs to boot it with.
#[derive(Debug, Clone)]
pub(crate) struct BootMedia {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
}

/// The name of the record for media made from `image`, with its modules in
/// `modules` (and those of `optional_modules` it has); `None` if a file
/// cannot be looked at.
pub(super) fn key(
    image: &Path,
    modules: Option<&Path>,
    optional_modules: &[&str],
    init: &[u8],
    as_is: bool,
) -> Option<String> {
    let mut digest = Sha256::new();
    digest.update(Sha256::digest(init));
    digest.update([u8::from(as_is)]);
    for module in optional_modules {
        digest.update(format!("{module}\0"));
    }
    for path in std::iter::once(image).chain(modules) {
        let path = fs::canonicalize(path).ok()?;
        let metadata = fs::metadata(&path).ok()?;
        digest.update(path.as_os_str().as_bytes());
        digest.update(format!("\0{}\0", cache::file_identity(&metadata)));
    }
    Some(cache::entry_name(&digest.finalize()))
}

/// The media a record names, if they are all still there (marked as used).
pub(super) fn find(cache_dir: &Path, key: &str) -> Option<BootMedia> {
    let record_path = dir(cache_dir).join(key);
    let record = fs::read(&record_path).ok()?;
    let mut lines = record.split(|&byte| byte == b'\n');
    let mut path = || Some(PathBuf::from(std::ffi::OsStr::from_bytes(lines.next()?)));
    let media = BootMedia {
        kernel: path()?,
        initramfs: path()?,
    };
    if !(media.kernel.is_file() && media.initramfs.is_file()) {
        return None;
    }
    for used in [&record_path, &media.kernel, &media.initramfs] {
        cache::mark_used(used);
    }
    Some(media)
}

/// Prunes the records (see [`cache::RECORDS`]).
pub(super) fn prune(cache_dir: &Path) {
    cache::prune(&dir(cache_dir), |_| true, cache::RECORDS);
}

/// Records `media` under `key`; a record that cannot be written only costs
/// the next run the work again.
pub(super) fn remember(cache_dir: &Path, key: &str, media: &BootMedia) {
    let _ = cache::store(&dir(cache_dir), key, |file| {
        for path in [&media.kernel, &media.initramfs] {
            file.write_all(path.as_os_str().as_bytes())?;
            file.write_all(b"\n")?;
        }
        Ok(())
    });
}

fn dir(cache_dir: &Path) -> PathBuf {
    cache_dir.join("prepared")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_are_found_by_what_they_are_made_from() {
        let cache = tempfile::tempdir().unwrap();
        let image = cache.path().join("vmlinuz");
        fs::write(&image, "kernel").unwrap();
        let media = BootMedia {
            kernel: image.clone(),
            initramfs: cache.path().join("initramfs"),
        };
        fs::write(&media.initramfs, "cpio").unwrap();
        let key = key(&image, None, &[], b"init", false).unwrap();
        assert!(find(cache.path(), &key).is_none());
        remember(cache.path(), &key, &media);
        let found = find(cache.path(), &key).unwrap();
        assert_eq!(
            (found.kernel, found.initramfs),
            (media.kernel.clone(), media.initramfs.clone())
        );
        assert_ne!(
            Some(&key),
            super::key(&image, None, &[], b"init", true).as_ref()
        );
        assert_ne!(
            Some(&key),
            super::key(&image, None, &[], b"other init", false).as_ref()
        );
        assert_ne!(
            Some(&key),
            super::key(&image, Some(cache.path()), &[], b"init", false).as_ref()
        );
        assert_ne!(
            Some(&key),
            super::key(&image, None, &["overlay"], b"init", false).as_ref()
        );
        fs::write(&image, "another kernel").unwrap();
        assert_ne!(
            Some(&key),
            super::key(&image, None, &[], b"init", false).as_ref()
        );
        // Media that are gone are made again.
        fs::remove_file(&media.initramfs).unwrap();
        assert!(find(cache.path(), &key).is_none());
    }
}
