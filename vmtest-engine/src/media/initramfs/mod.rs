//! The initramfs the engine writes for a guest: the static guest init plus
//! the kernel modules it must load before it can mount the host's root.
//!
//! Layout (all owned by root):
//!
//! | path | what |
//! |---|---|
//! | `/init` (0755) | the guest init, run by the kernel as PID 1 |
//! | `/dev`, `/proc`, `/sys`, `/newroot` | mount points for the init |
//! | `/modules/NN-name.ko` (0644) | modules, `NN` their load order |
//!
//! Modules are stored decompressed (Debian 6.12 ships `.ko.xz`): the guest
//! kernel could decompress them itself, but under emulation that costs
//! 50-100 ms of every boot. Signatures survive decompression. The index is
//! zero-padded to a common width, so sorting the names gives the load order.
//!
//! Archives are cached by a hash of their content, so every test process
//! after the first reuses the file; they are written atomically
//! ([`crate::cache`]), so processes racing to write one never clash.

pub(crate) mod cpio;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use self::cpio::{CpioError, CpioWriter};
use super::modules::{ModuleFile, ModulesError};
use crate::host::cache::{self, CacheError};

/// The directory in the initramfs holding the modules, for the guest init.
pub(crate) const MODULES_DIR: &str = "/modules";
/// Mount points created empty in the initramfs.
const MOUNT_POINTS: [&str; 4] = ["dev", "proc", "sys", "newroot"];
/// Changes whenever the layout does, so older cached archives are not reused.
const LAYOUT_TAG: &[u8] = b"vmtest-initramfs-v1\0";

/// Why an initramfs could not be built.
#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    /// A module file could not be read or decompressed.
    #[error(transparent)]
    Module(#[from] ModulesError),
    /// A module's name cannot be a file name.
    #[error(
        "kernel module name {name:?} cannot name a file in the initramfs (empty, or holds '/')"
    )]
    ModuleName {
        /// The name.
        name: String,
    },
    /// An entry was refused by the archive writer.
    #[error("cannot add an entry to initramfs {name}")]
    Archive {
        /// The archive's name in the cache.
        name: String,
        /// What the writer refused.
        #[source]
        source: CpioError,
    },
    /// The archive could not be written to the cache.
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// Returns the path of an initramfs holding `init` as `/init` and `modules`
/// in the given (load) order, writing it into `cache_dir` (created if
/// needed) unless an identical one is already there.
///
/// The file is `cache_dir/initramfs-<hash>.cpio`, `<hash>` the first 16 hex
/// digits of a SHA-256 over the layout version, the init's bytes, and each
/// module's name, suffix and bytes. Concurrent callers are safe: each
/// writes its own temporary file and renames it into place.
pub(crate) fn build(
    init: &[u8],
    modules: &[ModuleFile],
    cache_dir: &Path,
) -> Result<PathBuf, InitramfsError> {
    let contents = modules
        .iter()
        .map(|module| {
            if module.name.is_empty() || module.name.contains('/') {
                return Err(InitramfsError::ModuleName {
                    name: module.name.clone(),
                });
            }
            // Stored decompressed: a guest kernel decompressing xz under
            // emulation spends 50-100 ms of every boot on it.
            Ok((module, module.elf_bytes()?))
        })
        .collect::<Result<Vec<_>, _>>()?;

    let name = format!("initramfs-{}.cpio", content_hash(init, &contents));
    let path = cache_dir.join(&name);
    if path.is_file() {
        return Ok(path);
    }
    let mut refused = None;
    let stored = cache::store(cache_dir, &name, |file| {
        write_archive(file, init, &contents).map_err(|error| match error {
            CpioError::Io(error) => error,
            error => {
                refused = Some(error);
                io::Error::other("the archive writer refused an entry")
            }
        })
    });
    match (stored, refused) {
        (_, Some(source)) => Err(InitramfsError::Archive { name, source }),
        (stored, None) => Ok(stored?),
    }
}

/// The archive's name: 16 hex digits of SHA-256 over everything that goes
/// in, each part length-prefixed so that no two inputs hash alike.
fn content_hash(init: &[u8], modules: &[(&ModuleFile, Vec<u8>)]) -> String {
    fn part(hasher: &mut Sha256, bytes: &[u8]) {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    }
    let mut hasher = Sha256::new();
    hasher.update(LAYOUT_TAG);
    part(&mut hasher, init);
    hasher.update((modules.len() as u64).to_le_bytes());
    for (module, bytes) in modules {
        part(&mut hasher, module.name.as_bytes());
        part(&mut hasher, module.compression.suffix().as_bytes());
        part(&mut hasher, bytes);
    }
    cache::entry_name(&hasher.finalize())
}

/// Writes the archive: the mount points, the init, then the modules in
/// load order.
fn write_archive(
    out: &mut impl Write,
    init: &[u8],
    modules: &[(&ModuleFile, Vec<u8>)],
) -> Result<(), CpioError> {
    let mut cpio = CpioWriter::new(out);
    let modules_dir = MODULES_DIR.trim_start_matches('/');
    for dir in MOUNT_POINTS.into_iter().chain([modules_dir]) {
        cpio.directory(dir, 0o755)?;
    }
    cpio.file("init", 0o755, init)?;
    // Wide enough for the last index, at least two digits: names sort in load order.
    let width = modules.len().saturating_sub(1).to_string().len().max(2);
    for (index, (module, bytes)) in modules.iter().enumerate() {
        let name = format!("{modules_dir}/{index:0width$}-{}.ko", module.name);
        cpio.file(&name, 0o644, bytes)?;
    }
    cpio.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::cpio::read_back::entries;
    use super::*;
    use crate::media::modules::{self, Compression, ModuleIndex, GUEST_MODULES};
    use crate::media::{kernel_image, test_kernels};
    use std::fs;
    use std::time::Instant;

    /// A module file whose content is `bytes`, compressed as `compression`.
    fn module(dir: &Path, name: &str, compression: Compression, bytes: &[u8]) -> ModuleFile {
        let path = dir.join(format!("{name}{}", compression.suffix()));
        let stored = match compression {
            Compression::Xz => {
                let mut encoder = liblzma::write::XzEncoder::new(Vec::new(), 1);
                std::io::Write::write_all(&mut encoder, bytes).unwrap();
                encoder.finish().unwrap()
            }
            _ => bytes.to_vec(),
        };
        fs::write(&path, stored).unwrap();
        ModuleFile {
            name: name.to_owned(),
            path,
            compression,
        }
    }

    fn names_and_modes(archive: &[u8]) -> Vec<(String, u32)> {
        entries(archive)
            .into_iter()
            .map(|e| (e.name, e.mode))
            .collect()
    }

    #[test]
    fn lays_out_init_dirs_and_modules_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let mods = [
            module(tmp.path(), "virtio_ring", Compression::None, b"ring"),
            module(tmp.path(), "9pnet", Compression::Xz, b"\xfd7zXZ 9pnet"),
        ];
        let cache = tmp.path().join("cache/nested");
        let path = build(b"INIT", &mods, &cache).unwrap();
        let file_name = path.file_name().unwrap().to_str().unwrap();
        assert!(file_name.starts_with("initramfs-") && file_name.ends_with(".cpio"));
        assert_eq!(file_name.len(), "initramfs-.cpio".len() + 32, "{file_name}");
        assert_eq!(path.parent().unwrap(), cache);

        let archive = fs::read(&path).unwrap();
        let got = entries(&archive);
        assert_eq!(
            names_and_modes(&archive),
            [
                ("dev".into(), 0o040_755),
                ("proc".into(), 0o040_755),
                ("sys".into(), 0o040_755),
                ("newroot".into(), 0o040_755),
                ("modules".into(), 0o040_755),
                ("init".into(), 0o100_755),
                ("modules/00-virtio_ring.ko".into(), 0o100_644),
                ("modules/01-9pnet.ko".into(), 0o100_644),
            ]
        );
        assert_eq!(got[5].data, b"INIT");
        assert_eq!(got[6].data, b"ring");
        assert_eq!(got[7].data, b"\xfd7zXZ 9pnet");
        // Nothing but the archive is left in the cache.
        assert_eq!(fs::read_dir(&cache).unwrap().count(), 1);
    }

    #[test]
    fn reuses_cached_archive_and_rebuilds_on_change() {
        let tmp = tempfile::tempdir().unwrap();
        let mods = [module(tmp.path(), "a", Compression::None, b"one")];
        let cache = tmp.path().join("cache");
        let first = build(b"INIT", &mods, &cache).unwrap();
        // Mark the cached file: a second build must return it untouched.
        fs::write(&first, b"marker").unwrap();
        assert_eq!(build(b"INIT", &mods, &cache).unwrap(), first);
        assert_eq!(fs::read(&first).unwrap(), b"marker");

        let changed_init = build(b"INIT2", &mods, &cache).unwrap();
        fs::write(&mods[0].path, b"two").unwrap();
        let changed_module = build(b"INIT", &mods, &cache).unwrap();
        let renamed = [ModuleFile {
            name: "b".into(),
            ..mods[0].clone()
        }];
        let changed_name = build(b"INIT", &renamed, &cache).unwrap();
        let all = [&first, &changed_init, &changed_module, &changed_name];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn concurrent_builds_agree_and_leave_no_temp_files() {
        let tmp = tempfile::tempdir().unwrap();
        let mods = vec![module(tmp.path(), "a", Compression::Xz, &[7u8; 100_000])];
        let cache = tmp.path().join("cache");
        let paths: Vec<PathBuf> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| build(b"INIT", &mods, &cache).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(paths.iter().all(|p| p == &paths[0]));
        assert_eq!(fs::read_dir(&cache).unwrap().count(), 1);
        assert_eq!(entries(&fs::read(&paths[0]).unwrap()).len(), 7);
    }

    #[test]
    fn no_modules_still_has_the_modules_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let path = build(b"INIT", &[], tmp.path()).unwrap();
        let names: Vec<String> = entries(&fs::read(path).unwrap())
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["dev", "proc", "sys", "newroot", "modules", "init"]);
    }

    #[test]
    fn more_than_a_hundred_modules_keep_sorting_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let mods: Vec<ModuleFile> = (0..101)
            .map(|i| module(tmp.path(), &format!("m{i}"), Compression::None, b"x"))
            .collect();
        let path = build(b"INIT", &mods, &tmp.path().join("cache")).unwrap();
        let names: Vec<String> = entries(&fs::read(path).unwrap())
            .into_iter()
            .map(|e| e.name)
            .filter(|name| name.starts_with("modules/"))
            .collect();
        assert_eq!(names[0], "modules/000-m0.ko");
        assert_eq!(names[100], "modules/100-m100.ko");
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(sorted, names);
    }

    #[test]
    fn errors_name_the_problem() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = ModuleFile {
            name: "gone".into(),
            path: tmp.path().join("gone.ko"),
            compression: Compression::None,
        };
        let err = build(b"INIT", std::slice::from_ref(&missing), tmp.path()).unwrap_err();
        assert!(matches!(err, InitramfsError::Module(_)), "{err:?}");
        assert!(err.to_string().contains("gone.ko"), "{err}");

        let bad = ModuleFile {
            name: "../x".into(),
            ..missing
        };
        let err = build(b"INIT", &[bad], tmp.path()).unwrap_err();
        assert!(matches!(err, InitramfsError::ModuleName { .. }), "{err:?}");

        let not_a_dir = tmp.path().join("file");
        fs::write(&not_a_dir, b"").unwrap();
        let err = build(b"INIT", &[], &not_a_dir.join("cache")).unwrap_err();
        assert!(matches!(err, InitramfsError::Cache(_)), "{err:?}");
    }

    /// The whole host-side path on a real kernel: index, resolve, build;
    /// timed, then timed again with the archive cached.
    fn build_real(kernel: &str, expected_modules: usize) {
        let root = test_kernels::dir().join(kernel);
        let image = test_kernels::vmlinuz(&root.join("boot"));
        let cache = tempfile::tempdir().unwrap();
        let init = b"\x7fELF stand-in for the static guest init".repeat(1000);

        let started = Instant::now();
        let version = kernel_image::kernel_version(&image).unwrap();
        let dir = modules::locate(&image, &version, None).unwrap().unwrap();
        let index = ModuleIndex::load(&dir, &version).unwrap();
        let t_index = started.elapsed();
        let order = modules::resolve(&index, GUEST_MODULES, &[]).unwrap();
        let t_resolve = started.elapsed();
        let path = build(&init, &order, cache.path()).unwrap();
        let t_build = started.elapsed();
        let cached = build(&init, &order, cache.path()).unwrap();
        let t_cached = started.elapsed();
        assert_eq!(cached, path);

        let archive = fs::read(&path).unwrap();
        let got = entries(&archive);
        let module_entries: Vec<_> = got
            .iter()
            .filter(|e| e.name.starts_with("modules/"))
            .collect();
        assert_eq!(module_entries.len(), expected_modules);
        for (entry, module) in module_entries.iter().zip(&order) {
            assert_eq!(entry.data, module.elf_bytes().unwrap(), "{}", entry.name);
            assert!(entry.data.starts_with(b"\x7fELF"), "{}", entry.name);
            assert!(entry.name.ends_with(".ko"), "{}", entry.name);
        }
        println!(
            "{kernel}: version+locate+index {:?}, resolve {:?}, build {:?} ({} bytes), \
             cached build {:?}; total first time {:?}",
            t_index,
            t_resolve - t_index,
            t_build - t_resolve,
            archive.len(),
            t_cached - t_build,
            t_build
        );
    }

    #[test]
    fn real_debian_6_1_initramfs() {
        build_real("debian-6.1", 11);
    }

    #[test]
    fn real_debian_6_12_initramfs() {
        build_real("debian-6.12", 4);
    }
}
