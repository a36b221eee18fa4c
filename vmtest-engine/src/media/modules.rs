//! Finding the kernel modules a guest needs, and the order to load them in.
//!
//! A distribution kernel keeps virtio and 9p as modules (Debian 6.1: `.ko`;
//! Debian 6.12: `.ko.xz`). The guest init loads them before it mounts the
//! host's root over 9p, so the host picks them here: [`locate`] finds the
//! kernel's `lib/modules/<release>`, [`ModuleIndex::load`] lists what is
//! there, and [`resolve`] turns the wanted names into a load order.
//!
//! Neither Debian package ships `modules.dep` (depmod writes it at install
//! time, and we never install), so dependencies come from each module's own
//! `.modinfo` section (`depends=a,b`), which is what depmod reads too. As aya
//! does for its test VMs, only the few modules needed are packed, not the tree.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// What the guest needs from a kernel, loaded in this order when they are
/// modules (names with `_`, as the kernel spells them). On a kernel where
/// `modules.builtin` lists them (Debian 6.12 builds virtio in) they are
/// skipped; their dependencies come along through [`resolve`].
pub(crate) const GUEST_MODULES: &[&str] = &[
    // The virtio-pci transport: every virtio device QEMU gives the guest
    // (`-device virtio-*-pci`) sits on it. Pulls in virtio and virtio_ring.
    "virtio_pci",
    // virtio-console provides virtio-serial ports (`/dev/vportNpM`); the
    // guest agent (qemu-ga) talks to the host over one.
    "virtio_console",
    // The virtio transport for 9p: the guest's `/` is the host's `/`,
    // shared read-only over 9p on virtio (`-virtfs`). Pulls in 9pnet.
    "9pnet_virtio",
    // The 9p filesystem itself (`rootfstype=9p`). Pulls in netfs (and fscache on 6.1).
    "9p",
];

/// Loaded when the kernel has them: overlayfs makes the guest's root an
/// overlay when a root other than the host's lacks a mount point.
pub(crate) const OPTIONAL_GUEST_MODULES: &[&str] = &["overlay"];

/// The largest module accepted, after decompression (the largest Debian
/// module is about 20 MiB); a guard against a corrupt or hostile `.ko.xz`.
const MAX_MODULE_SIZE: u64 = 256 << 20;

/// Why modules could not be found, read or ordered.
#[derive(Debug, thiserror::Error)]
pub enum ModulesError {
    /// An explicitly given modules directory does not exist.
    #[error(
        "modules directory {path} does not exist: point the override at a \
         lib/modules/<release> directory, or remove it to search next to the kernel image"
    )]
    OverrideMissing {
        /// The directory given.
        path: PathBuf,
    },
    /// The kernel image's path could not be resolved.
    #[error("cannot resolve kernel image path {path}: check that the file exists")]
    ImagePath {
        /// The image.
        path: PathBuf,
        /// Why canonicalization failed.
        #[source]
        source: io::Error,
    },
    /// The release string cannot name a directory.
    #[error(
        "kernel release {version:?} cannot name a modules directory \
         (it is empty or holds '/' or is '.' or '..'); is the kernel image sound?"
    )]
    BadVersion {
        /// The release string.
        version: String,
    },
    /// A directory of the modules tree could not be listed.
    #[error("cannot list modules directory {path}: check its permissions")]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: io::Error,
    },
    /// `modules.builtin` exists but could not be read.
    #[error("cannot read {path}: check its permissions, or remove it to treat missing modules as built in")]
    ReadBuiltin {
        /// The file.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: io::Error,
    },
    /// A module file could not be read or decompressed.
    #[error(
        "cannot read kernel module {path}: the file is unreadable or its compression is corrupt"
    )]
    ReadModule {
        /// The module file.
        path: PathBuf,
        /// The I/O or decompression failure.
        #[source]
        source: io::Error,
    },
    /// A module is larger than [`MAX_MODULE_SIZE`].
    #[error(
        "kernel module {path} is larger than 256 MiB once decompressed; the file is likely corrupt"
    )]
    TooLarge {
        /// The module file.
        path: PathBuf,
    },
    /// A module file is not an ELF object.
    #[error("kernel module {path} is not a valid ELF object; the file is likely corrupt")]
    Elf {
        /// The module file.
        path: PathBuf,
        /// The parse failure.
        #[source]
        source: object::Error,
    },
    /// A module file has no `.modinfo` section.
    #[error("kernel module {path} has no .modinfo section; is it a kernel module?")]
    NoModinfo {
        /// The module file.
        path: PathBuf,
    },
    /// A wanted module is neither a file nor built in.
    #[error(
        "kernel {version} has no {name} module and it is not built in \
         (not in {dir}/modules.builtin); use a kernel that has it, built in or as a module"
    )]
    NotAvailable {
        /// The kernel release.
        version: String,
        /// The module.
        name: String,
        /// The modules directory searched.
        dir: PathBuf,
    },
    /// A module depends on one that is missing.
    #[error(
        "kernel module {module} ({path}) depends on {dependency}, which is not in {dir}; \
         the modules directory is incomplete: extract the whole kernel package again"
    )]
    MissingDependency {
        /// The module that depends.
        module: String,
        /// Its file.
        path: PathBuf,
        /// The missing dependency.
        dependency: String,
        /// The modules directory searched.
        dir: PathBuf,
    },
    /// Modules depend on each other in a circle, so none can load first.
    #[error("kernel modules depend on each other in a cycle ({chain}); no load order exists")]
    Cycle {
        /// The cycle, as `a -> b -> a`.
        chain: String,
    },
}

/// How a module file is compressed, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Compression {
    /// A plain `.ko`.
    None,
    /// `.ko.xz` (Debian 6.12).
    Xz,
    /// `.ko.zst` (Ubuntu, Fedora, Arch).
    Zstd,
    /// `.ko.gz`.
    Gzip,
}

impl Compression {
    /// All kinds, longest suffix first so that matching is unambiguous.
    const ALL: [Compression; 4] = [
        Compression::Zstd,
        Compression::Gzip,
        Compression::Xz,
        Compression::None,
    ];

    /// The file name suffix, `.ko` included.
    pub(crate) fn suffix(self) -> &'static str {
        match self {
            Compression::None => ".ko",
            Compression::Xz => ".ko.xz",
            Compression::Zstd => ".ko.zst",
            Compression::Gzip => ".ko.gz",
        }
    }

    /// Splits a module file name into its module name (normalized) and compression.
    fn split(file_name: &str) -> Option<(String, Compression)> {
        Compression::ALL.into_iter().find_map(|kind| {
            let stem = file_name.strip_suffix(kind.suffix())?;
            (!stem.is_empty()).then(|| (normalize(stem), kind))
        })
    }
}

/// A module's name as the kernel knows it: `-` and `_` are the same to
/// modprobe, and the kernel spells them `_`.
pub(crate) fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// One module file in a modules directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ModuleFile {
    /// The module's name, normalized (`9pnet_virtio`).
    pub(crate) name: String,
    /// The file.
    pub(crate) path: PathBuf,
    /// How the file is compressed.
    pub(crate) compression: Compression,
}

impl ModuleFile {
    /// The modules this one needs loaded first (its `.modinfo` `depends=`),
    /// names normalized, in the order listed.
    pub(crate) fn depends(&self) -> Result<Vec<String>, ModulesError> {
        let elf = self.elf_bytes()?;
        let modinfo = modinfo_section(&self.path, &elf)?;
        Ok(parse_depends(modinfo))
    }

    /// The module's ELF image, decompressed if needed: the one place
    /// modules are decompressed (the guest loads them decompressed).
    pub(crate) fn elf_bytes(&self) -> Result<Vec<u8>, ModulesError> {
        let read_error = |source| ModulesError::ReadModule {
            path: self.path.clone(),
            source,
        };
        let file = File::open(&self.path).map_err(read_error)?;
        let mut bytes = Vec::new();
        let limit = MAX_MODULE_SIZE + 1;
        match self.compression {
            Compression::None => file.take(limit).read_to_end(&mut bytes),
            Compression::Xz => liblzma::read::XzDecoder::new(file)
                .take(limit)
                .read_to_end(&mut bytes),
            Compression::Zstd => zstd::stream::read::Decoder::new(file)
                .and_then(|decoder| decoder.take(limit).read_to_end(&mut bytes)),
            Compression::Gzip => flate2::read::GzDecoder::new(file)
                .take(limit)
                .read_to_end(&mut bytes),
        }
        .map_err(read_error)?;
        if bytes.len() as u64 > MAX_MODULE_SIZE {
            return Err(ModulesError::TooLarge {
                path: self.path.clone(),
            });
        }
        Ok(bytes)
    }
}

/// The `.modinfo` section of a module's ELF image.
fn modinfo_section<'data>(path: &Path, elf: &'data [u8]) -> Result<&'data [u8], ModulesError> {
    use object::{Object, ObjectSection};
    let elf_error = |source| ModulesError::Elf {
        path: path.to_path_buf(),
        source,
    };
    let file = object::File::parse(elf).map_err(elf_error)?;
    let section = file
        .section_by_name(".modinfo")
        .ok_or_else(|| ModulesError::NoModinfo {
            path: path.to_path_buf(),
        })?;
    section.data().map_err(elf_error)
}

/// The `depends=` entries of a `.modinfo` section: NUL-separated
/// `key=value` strings, `depends` holding comma-separated names (empty when
/// there are none). Normalized, duplicates kept once, in listed order.
fn parse_depends(modinfo: &[u8]) -> Vec<String> {
    let mut depends: Vec<String> = Vec::new();
    for entry in modinfo.split(|&b| b == 0) {
        let Some(value) = entry.strip_prefix(b"depends=") else {
            continue;
        };
        for name in value.split(|&b| b == b',') {
            let name = String::from_utf8_lossy(name);
            let name = normalize(name.trim());
            if !name.is_empty() && !depends.contains(&name) {
                depends.push(name);
            }
        }
    }
    depends
}

/// Finds the modules directory of the kernel in `image`, whose release is
/// `version`. In order:
///
/// 1. `override_dir`, when given; it must exist.
/// 2. Next to the image, as `dpkg-deb -x` lays a package out: for
///    `<root>/boot/vmlinuz-X`, `<root>/lib/modules/X`, then
///    `<root>/usr/lib/modules/X` (merged-/usr packages). The image path is
///    canonicalized first, so a symlink to the image works.
/// 3. The host's `/lib/modules/<version>`.
///
/// `Ok(None)` means none exists, which is fine for a kernel with everything
/// built in; a kernel that needs modules fails later with a clear message.
pub(crate) fn locate(
    image: &Path,
    version: &str,
    override_dir: Option<&Path>,
) -> Result<Option<PathBuf>, ModulesError> {
    if let Some(dir) = override_dir {
        return if dir.is_dir() {
            Ok(Some(dir.to_path_buf()))
        } else {
            Err(ModulesError::OverrideMissing {
                path: dir.to_path_buf(),
            })
        };
    }
    if version.is_empty() || version.contains('/') || version == "." || version == ".." {
        return Err(ModulesError::BadVersion {
            version: version.to_owned(),
        });
    }
    let image = fs::canonicalize(image).map_err(|source| ModulesError::ImagePath {
        path: image.to_path_buf(),
        source,
    })?;
    let mut candidates = Vec::new();
    if let Some(root) = image.parent().and_then(Path::parent) {
        candidates.push(root.join("lib/modules").join(version));
        candidates.push(root.join("usr/lib/modules").join(version));
    }
    candidates.push(Path::new("/lib/modules").join(version));
    Ok(candidates.into_iter().find(|dir| dir.is_dir()))
}

/// The module files of one kernel and what it has built in.
#[derive(Debug)]
pub(crate) struct ModuleIndex {
    /// The modules directory.
    dir: PathBuf,
    /// The kernel release, for messages.
    version: String,
    /// Module files by normalized name.
    files: BTreeMap<String, ModuleFile>,
    /// Names from `modules.builtin`, or `None` when the file is absent.
    builtin: Option<BTreeSet<String>>,
}

impl ModuleIndex {
    /// Lists every `*.ko`, `*.ko.xz`, `*.ko.zst` and `*.ko.gz` under `dir`
    /// (recursively, not following symlinked directories such as `build`)
    /// and reads `dir/modules.builtin` if present. `version` is the
    /// kernel's release, used in messages.
    ///
    /// When two files give the same name, the one under `updates/` wins (as
    /// with depmod), else the first in path order.
    pub(crate) fn load(dir: &Path, version: &str) -> Result<ModuleIndex, ModulesError> {
        let mut found = Vec::new();
        let mut pending = vec![dir.to_path_buf()];
        while let Some(current) = pending.pop() {
            for (path, is_dir) in entries(&current)? {
                if is_dir {
                    pending.push(path);
                    continue;
                }
                let split = path
                    .file_name()
                    .and_then(|name| name.to_str())
                    .and_then(Compression::split);
                if let Some((name, compression)) = split {
                    found.push(ModuleFile {
                        name,
                        path,
                        compression,
                    });
                }
            }
        }
        // Sorted by path, so the choice between duplicates never depends on
        // the order the file system lists entries in.
        found.sort_by(|a, b| a.path.cmp(&b.path));
        let mut files: BTreeMap<String, ModuleFile> = BTreeMap::new();
        for module in found {
            let replace = files
                .get(&module.name)
                .is_none_or(|old| prefer(dir, &module, old));
            if replace {
                files.insert(module.name.clone(), module);
            }
        }
        Ok(ModuleIndex {
            dir: dir.to_path_buf(),
            version: version.to_owned(),
            files,
            builtin: read_builtin(dir)?,
        })
    }
}

/// The entries of `dir`, each with whether to descend into it.
/// Symlinks are followed for files, not for directories: Debian's
/// `build` and `source` links point at header trees.
fn entries(dir: &Path) -> Result<Vec<(PathBuf, bool)>, ModulesError> {
    let read_dir_error = |source| ModulesError::ReadDir {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(read_dir_error)? {
        let entry = entry.map_err(read_dir_error)?;
        let kind = entry.file_type().map_err(read_dir_error)?;
        entries.push((entry.path(), kind.is_dir()));
    }
    Ok(entries)
}

/// Whether `new` should replace `old`, both with the same name: `updates/`
/// overrides the rest; otherwise the first in path order stays.
fn prefer(dir: &Path, new: &ModuleFile, old: &ModuleFile) -> bool {
    let in_updates = |module: &ModuleFile| {
        module
            .path
            .strip_prefix(dir)
            .is_ok_and(|relative| relative.starts_with("updates"))
    };
    in_updates(new) && !in_updates(old)
}

/// The names in `dir/modules.builtin` (`kernel/fs/9p/9p.ko` → `9p`), or
/// `None` when the file does not exist.
fn read_builtin(dir: &Path) -> Result<Option<BTreeSet<String>>, ModulesError> {
    let path = dir.join("modules.builtin");
    let text = match fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ModulesError::ReadBuiltin { path, source }),
    };
    let text = String::from_utf8_lossy(&text);
    let names = text
        .lines()
        .filter_map(|line| {
            let file_name = line.trim().rsplit('/').next()?;
            Compression::split(file_name).map(|(name, _)| name)
        })
        .collect();
    Ok(Some(names))
}

/// The modules to load for `wanted`, each after everything it depends on:
/// a depth-first walk of `depends=` in the order listed, so the result is
/// the same on every run. Built-in modules are left out.
///
/// A wanted module that is neither a file nor listed in `modules.builtin` is
/// an error when that file exists; without it, the module is assumed built
/// in. A missing dependency, or a dependency cycle, is always an error.
/// Then the `optional` modules the kernel has (a missing one, or one whose
/// dependencies are missing, is left out).
pub(crate) fn resolve(
    index: &ModuleIndex,
    wanted: &[&str],
    optional: &[&str],
) -> Result<Vec<ModuleFile>, ModulesError> {
    let mut resolver = Resolver {
        index,
        order: Vec::new(),
        done: BTreeSet::new(),
        path: Vec::new(),
    };
    for name in wanted {
        resolver.visit(&normalize(name), None)?;
    }
    for name in optional {
        let (order, done) = (resolver.order.len(), resolver.done.clone());
        if resolver.visit(&normalize(name), None).is_err() {
            resolver.order.truncate(order);
            resolver.done = done;
            resolver.path.clear();
        }
    }
    Ok(resolver.order)
}

/// The state of one [`resolve`].
struct Resolver<'a> {
    index: &'a ModuleIndex,
    /// The load order so far.
    order: Vec<ModuleFile>,
    /// Names already placed in `order`, or known built in.
    done: BTreeSet<String>,
    /// The modules being visited, outermost first (to report cycles).
    path: Vec<String>,
}

impl Resolver<'_> {
    /// Places `name` and its dependencies; `needed_by` is the module that
    /// depends on it, `None` for a wanted one.
    fn visit(&mut self, name: &str, needed_by: Option<&ModuleFile>) -> Result<(), ModulesError> {
        if self.done.contains(name) {
            return Ok(());
        }
        if let Some(start) = self.path.iter().position(|seen| seen == name) {
            let mut chain = self.path[start..].to_vec();
            chain.push(name.to_owned());
            return Err(ModulesError::Cycle {
                chain: chain.join(" -> "),
            });
        }
        let Some(module) = self.index.files.get(name) else {
            return self.not_a_file(name, needed_by);
        };
        self.path.push(name.to_owned());
        for dependency in module.depends()? {
            self.visit(&dependency, Some(module))?;
        }
        self.path.pop();
        self.done.insert(name.to_owned());
        self.order.push(module.clone());
        Ok(())
    }

    /// `name` has no file: fine if built in, else an error (see [`resolve`]).
    fn not_a_file(
        &mut self,
        name: &str,
        needed_by: Option<&ModuleFile>,
    ) -> Result<(), ModulesError> {
        let builtin = self.index.builtin.as_ref();
        let is_builtin = builtin.is_some_and(|set| set.contains(name));
        match needed_by {
            _ if is_builtin => {}
            Some(module) => {
                return Err(ModulesError::MissingDependency {
                    module: module.name.clone(),
                    path: module.path.clone(),
                    dependency: name.to_owned(),
                    dir: self.index.dir.clone(),
                })
            }
            None if builtin.is_some() => {
                return Err(ModulesError::NotAvailable {
                    version: self.index.version.clone(),
                    name: name.to_owned(),
                    dir: self.index.dir.clone(),
                })
            }
            // No modules.builtin to ask: assume the kernel has it built in.
            None => {}
        }
        self.done.insert(name.to_owned());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{kernel_image, test_kernels};
    use std::time::Instant;

    /// A minimal relocatable ELF64 (x86-64) with one `.modinfo` section,
    /// enough for `object` to find it.
    fn fake_module(modinfo: &[u8]) -> Vec<u8> {
        let shstrtab: &[u8] = b"\0.modinfo\0.shstrtab\0";
        let modinfo_off = 64usize;
        let shstrtab_off = modinfo_off + modinfo.len();
        let shoff = (shstrtab_off + shstrtab.len() + 7) & !7;
        let mut elf = vec![0u8; shoff];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2; // ELFCLASS64
        elf[5] = 1; // little-endian
        elf[6] = 1; // EV_CURRENT
        elf[16..18].copy_from_slice(&1u16.to_le_bytes()); // ET_REL
        elf[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
        elf[20..24].copy_from_slice(&1u32.to_le_bytes());
        elf[40..48].copy_from_slice(&(shoff as u64).to_le_bytes());
        elf[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        elf[58..60].copy_from_slice(&64u16.to_le_bytes()); // e_shentsize
        elf[60..62].copy_from_slice(&3u16.to_le_bytes()); // e_shnum
        elf[62..64].copy_from_slice(&2u16.to_le_bytes()); // e_shstrndx
        elf[modinfo_off..shstrtab_off].copy_from_slice(modinfo);
        elf[shstrtab_off..shstrtab_off + shstrtab.len()].copy_from_slice(shstrtab);
        let section = |name: u32, kind: u32, offset: usize, size: usize| {
            let mut header = vec![0u8; 64];
            header[0..4].copy_from_slice(&name.to_le_bytes());
            header[4..8].copy_from_slice(&kind.to_le_bytes());
            header[24..32].copy_from_slice(&(offset as u64).to_le_bytes());
            header[32..40].copy_from_slice(&(size as u64).to_le_bytes());
            header[48..56].copy_from_slice(&1u64.to_le_bytes());
            header
        };
        elf.extend(vec![0u8; 64]); // the null section
        elf.extend(section(1, 1, modinfo_off, modinfo.len())); // PROGBITS
        elf.extend(section(10, 3, shstrtab_off, shstrtab.len())); // STRTAB
        elf
    }

    fn modinfo(name: &str, depends: &str) -> Vec<u8> {
        format!("license=GPL\0depends={depends}\0retpoline=Y\0name={name}\0vermagic=6.1.0 SMP\0")
            .into_bytes()
    }

    /// Writes a module, compressed as its file name says.
    fn write_module(dir: &Path, relative: &str, depends: &str) {
        let path = dir.join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let name = relative
            .rsplit('/')
            .next()
            .unwrap()
            .split('.')
            .next()
            .unwrap();
        let elf = fake_module(&modinfo(name, depends));
        let mut bytes = Vec::new();
        match relative.rsplit('.').next() {
            Some("xz") => liblzma::read::XzEncoder::new(&elf[..], 6).read_to_end(&mut bytes),
            Some("zst") => zstd::stream::read::Encoder::new(&elf[..], 3)
                .and_then(|mut encoder| encoder.read_to_end(&mut bytes)),
            Some("gz") => flate2::read::GzEncoder::new(&elf[..], flate2::Compression::default())
                .read_to_end(&mut bytes),
            _ => Read::read_to_end(&mut &elf[..], &mut bytes),
        }
        .unwrap();
        fs::write(path, bytes).unwrap();
    }

    fn module<'a>(index: &'a ModuleIndex, name: &str) -> Option<&'a ModuleFile> {
        index.files.get(name)
    }

    fn is_builtin(index: &ModuleIndex, name: &str) -> Option<bool> {
        let builtin = index.builtin.as_ref()?;
        Some(builtin.contains(&normalize(name)))
    }

    fn names(modules: &[ModuleFile]) -> Vec<&str> {
        modules.iter().map(|module| module.name.as_str()).collect()
    }

    /// Asserts each module comes after all of its `depends`.
    fn assert_dependencies_first(order: &[ModuleFile]) {
        for (position, module) in order.iter().enumerate() {
            for dependency in module.depends().unwrap() {
                let at = order.iter().position(|m| m.name == dependency);
                if let Some(at) = at {
                    assert!(
                        at < position,
                        "{dependency} must load before {}",
                        module.name
                    );
                }
            }
        }
    }

    #[test]
    fn parses_depends_from_modinfo_strings() {
        assert_eq!(
            parse_depends(b"alias=fs-9p\0depends=9pnet,fscache,netfs\0intree=Y\0"),
            ["9pnet", "fscache", "netfs"]
        );
        assert!(parse_depends(b"depends=\0name=virtio_ring\0").is_empty());
        assert_eq!(
            parse_depends(b"depends=a-b,,c\0depends=c,d"),
            ["a_b", "c", "d"]
        );
        assert!(parse_depends(b"").is_empty());
        // A key that merely ends in "depends" is not it.
        assert!(parse_depends(b"softdepends=x\0").is_empty());
    }

    #[test]
    fn splits_file_names() {
        assert_eq!(
            Compression::split("9pnet_virtio.ko.xz"),
            Some(("9pnet_virtio".into(), Compression::Xz))
        );
        assert_eq!(
            Compression::split("amd-uncore.ko"),
            Some(("amd_uncore".into(), Compression::None))
        );
        assert_eq!(
            Compression::split("x.ko.zst"),
            Some(("x".into(), Compression::Zstd))
        );
        assert_eq!(
            Compression::split("x.ko.gz"),
            Some(("x".into(), Compression::Gzip))
        );
        assert_eq!(Compression::split(".ko"), None);
        assert_eq!(Compression::split("modules.order"), None);
        assert_eq!(Compression::split("x.ko.bz2"), None);
    }

    #[test]
    fn reads_depends_from_plain_and_xz_modules() {
        let dir = tempfile::tempdir().unwrap();
        write_module(dir.path(), "kernel/a.ko", "b,c-d");
        write_module(dir.path(), "kernel/b.ko.xz", "");
        let index = ModuleIndex::load(dir.path(), "6.1.0-test").unwrap();
        assert_eq!(
            module(&index, "a").unwrap().depends().unwrap(),
            ["b", "c_d"]
        );
        let b = module(&index, "b").unwrap();
        assert_eq!(b.compression, Compression::Xz);
        assert!(b.depends().unwrap().is_empty());
    }

    #[test]
    fn resolves_dependencies_first_deterministically() {
        let dir = tempfile::tempdir().unwrap();
        write_module(dir.path(), "kernel/fs/top.ko", "mid-one,leaf");
        write_module(dir.path(), "kernel/lib/mid-one.ko.xz", "leaf");
        write_module(dir.path(), "kernel/lib/leaf.ko", "");
        write_module(dir.path(), "kernel/lib/other.ko", "leaf");
        let index = ModuleIndex::load(dir.path(), "6.1.0-test").unwrap();
        let order = resolve(&index, &["top", "other", "top"], &[]).unwrap();
        assert_eq!(names(&order), ["leaf", "mid_one", "top", "other"]);
        assert_dependencies_first(&order);
        assert_eq!(
            names(&resolve(&index, &["top", "other"], &[]).unwrap()),
            names(&order)
        );
    }

    #[test]
    fn optional_modules_come_when_the_kernel_has_them() {
        let dir = tempfile::tempdir().unwrap();
        write_module(dir.path(), "kernel/fs/overlay.ko", "");
        write_module(dir.path(), "kernel/a.ko", "");
        write_module(dir.path(), "kernel/needs_missing.ko", "missing");
        fs::write(dir.path().join("modules.builtin"), "").unwrap();
        let index = ModuleIndex::load(dir.path(), "6.1.0-test").unwrap();
        let order = resolve(&index, &["a"], &["overlay", "absent", "needs_missing"]).unwrap();
        assert_eq!(names(&order), ["a", "overlay"]);
        // Not optional, the same are errors.
        assert!(resolve(&index, &["a", "absent"], &[]).is_err());
        assert!(resolve(&index, &["needs_missing"], &[]).is_err());
    }

    #[test]
    fn missing_wanted_module_depends_on_modules_builtin() {
        let dir = tempfile::tempdir().unwrap();
        write_module(dir.path(), "kernel/a.ko", "");
        let index = ModuleIndex::load(dir.path(), "6.1.0-test").unwrap();
        assert_eq!(is_builtin(&index, "virtio_pci"), None);
        // No modules.builtin: assumed built in.
        assert_eq!(
            names(&resolve(&index, &["virtio_pci", "a"], &[]).unwrap()),
            ["a"]
        );

        fs::write(
            dir.path().join("modules.builtin"),
            "kernel/drivers/virtio/virtio-pci.ko\nkernel/fs/ext4/ext4.ko\n",
        )
        .unwrap();
        let index = ModuleIndex::load(dir.path(), "6.1.0-test").unwrap();
        assert_eq!(is_builtin(&index, "virtio-pci"), Some(true));
        assert_eq!(
            names(&resolve(&index, &["virtio_pci", "a"], &[]).unwrap()),
            ["a"]
        );
        let err = resolve(&index, &["9p"], &[]).unwrap_err();
        assert!(matches!(err, ModulesError::NotAvailable { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("kernel 6.1.0-test has no 9p module and it is not built in"),
            "{err}"
        );
    }

    #[test]
    fn missing_dependency_names_both() {
        let dir = tempfile::tempdir().unwrap();
        write_module(dir.path(), "kernel/a.ko", "gone,builtin_one");
        let index = ModuleIndex::load(dir.path(), "6.1.0-test").unwrap();
        let err = resolve(&index, &["a"], &[]).unwrap_err().to_string();
        assert!(
            err.contains("module a ") && err.contains("depends on gone"),
            "{err}"
        );

        // A dependency listed as built in is satisfied.
        write_module(dir.path(), "kernel/gone.ko", "");
        fs::write(
            dir.path().join("modules.builtin"),
            "kernel/x/builtin-one.ko\n",
        )
        .unwrap();
        let index = ModuleIndex::load(dir.path(), "6.1.0-test").unwrap();
        assert_eq!(names(&resolve(&index, &["a"], &[]).unwrap()), ["gone", "a"]);
    }

    #[test]
    fn cycles_are_errors_not_hangs() {
        let dir = tempfile::tempdir().unwrap();
        write_module(dir.path(), "kernel/a.ko", "b");
        write_module(dir.path(), "kernel/b.ko", "c");
        write_module(dir.path(), "kernel/c.ko", "a");
        write_module(dir.path(), "kernel/self.ko", "self");
        let index = ModuleIndex::load(dir.path(), "6.1.0-test").unwrap();
        let err = resolve(&index, &["a"], &[]).unwrap_err().to_string();
        assert!(err.contains("a -> b -> c -> a"), "{err}");
        let err = resolve(&index, &["self"], &[]).unwrap_err().to_string();
        assert!(err.contains("self -> self"), "{err}");
    }

    #[test]
    fn every_compression_is_read() {
        let dir = tempfile::tempdir().unwrap();
        write_module(dir.path(), "kernel/a.ko", "z,g,x");
        write_module(dir.path(), "kernel/z.ko.zst", "");
        write_module(dir.path(), "kernel/g.ko.gz", "");
        write_module(dir.path(), "kernel/x.ko.xz", "");
        let index = ModuleIndex::load(dir.path(), "6.1.0-test").unwrap();
        let order = resolve(&index, &["a"], &[]).unwrap();
        assert_eq!(names(&order), ["z", "g", "x", "a"]);
        for module in &order {
            let elf = module.elf_bytes().unwrap();
            assert_eq!(
                elf,
                fake_module(&modinfo(
                    &module.name,
                    if module.name == "a" { "z,g,x" } else { "" }
                ))
            );
        }
    }

    #[test]
    fn corrupt_modules_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("kernel")).unwrap();
        fs::write(dir.path().join("kernel/junk.ko"), b"\x7fELF garbage").unwrap();
        fs::write(dir.path().join("kernel/badxz.ko.xz"), b"\xfd7zXZ\0 broken").unwrap();
        fs::write(dir.path().join("kernel/bare.ko"), fake_module(b"")).unwrap();
        let index = ModuleIndex::load(dir.path(), "6.1.0-test").unwrap();
        let err = resolve(&index, &["junk"], &[]).unwrap_err();
        assert!(matches!(err, ModulesError::Elf { .. }), "{err:?}");
        let err = resolve(&index, &["badxz"], &[]).unwrap_err();
        assert!(matches!(err, ModulesError::ReadModule { .. }), "{err:?}");
        // A .modinfo section that is there but empty: no dependencies.
        assert_eq!(names(&resolve(&index, &["bare"], &[]).unwrap()), ["bare"]);
        // No .modinfo at all: not a module.
        let mut elf = fake_module(b"");
        let at = elf.windows(8).position(|w| w == b".modinfo").unwrap();
        elf[at..at + 8].copy_from_slice(b".notinfo");
        fs::write(dir.path().join("kernel/bare.ko"), elf).unwrap();
        let err = resolve(&index, &["bare"], &[]).unwrap_err();
        assert!(matches!(err, ModulesError::NoModinfo { .. }), "{err:?}");
    }

    #[test]
    fn updates_override_and_symlinked_dirs_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        write_module(dir.path(), "kernel/a.ko", "");
        write_module(dir.path(), "updates/a.ko.xz", "");
        let outside = tempfile::tempdir().unwrap();
        write_module(outside.path(), "b.ko", "");
        std::os::unix::fs::symlink(outside.path(), dir.path().join("build")).unwrap();
        let index = ModuleIndex::load(dir.path(), "6.1.0-test").unwrap();
        assert_eq!(module(&index, "a").unwrap().compression, Compression::Xz);
        assert!(module(&index, "b").is_none());
    }

    #[test]
    fn locates_modules_next_to_image_through_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        fs::create_dir_all(root.join("boot")).unwrap();
        fs::create_dir_all(root.join("lib/modules/6.1.0-test")).unwrap();
        let image = root.join("boot/vmlinuz-6.1.0-test");
        fs::write(&image, b"image").unwrap();
        let link = tmp.path().join("vmlinuz");
        std::os::unix::fs::symlink(&image, &link).unwrap();

        let expected = fs::canonicalize(&root)
            .unwrap()
            .join("lib/modules/6.1.0-test");
        assert_eq!(
            locate(&image, "6.1.0-test", None).unwrap(),
            Some(expected.clone())
        );
        assert_eq!(locate(&link, "6.1.0-test", None).unwrap(), Some(expected));

        // Merged /usr layout.
        fs::create_dir_all(root.join("usr/lib/modules/6.13-test")).unwrap();
        let found = locate(&image, "6.13-test", None).unwrap().unwrap();
        assert!(found.ends_with("usr/lib/modules/6.13-test"), "{found:?}");

        // Nowhere: not an error.
        assert_eq!(locate(&image, "0.0.0-no-such-kernel", None).unwrap(), None);

        // An override wins, and must exist.
        let other = tmp.path().join("mods");
        fs::create_dir(&other).unwrap();
        assert_eq!(
            locate(&image, "6.1.0-test", Some(&other)).unwrap(),
            Some(other)
        );
        let err = locate(&image, "6.1.0-test", Some(&tmp.path().join("nope"))).unwrap_err();
        assert!(
            matches!(err, ModulesError::OverrideMissing { .. }),
            "{err:?}"
        );

        for bad in ["", "..", "../../etc"] {
            let err = locate(&image, bad, None).unwrap_err();
            assert!(matches!(err, ModulesError::BadVersion { .. }), "{err:?}");
        }
        let err = locate(&tmp.path().join("missing"), "6.1.0-test", None).unwrap_err();
        assert!(matches!(err, ModulesError::ImagePath { .. }), "{err:?}");
    }

    /// Indexes and resolves a real extracted kernel, printing the time taken.
    fn resolve_real(kernel: &str) -> (String, Vec<ModuleFile>) {
        let root = test_kernels::dir().join(kernel);
        let image = test_kernels::vmlinuz(&root.join("boot"));
        let version = kernel_image::kernel_version(&image).unwrap();
        let dir = locate(&image, &version, None)
            .unwrap()
            .expect("modules dir");
        assert!(dir.starts_with(fs::canonicalize(&root).unwrap()), "{dir:?}");
        let started = Instant::now();
        let index = ModuleIndex::load(&dir, &version).unwrap();
        let indexed = started.elapsed();
        let order = resolve(&index, GUEST_MODULES, &[]).unwrap();
        let resolved = started.elapsed() - indexed;
        println!(
            "{kernel}: index {} files in {indexed:?}, resolve {} modules in {resolved:?}",
            index.files.len(),
            order.len()
        );
        println!("{kernel}: load order {:?}", names(&order));
        assert_dependencies_first(&order);
        (version, order)
    }

    fn name_set(order: &[ModuleFile]) -> BTreeSet<&str> {
        order.iter().map(|m| m.name.as_str()).collect()
    }

    #[test]
    fn real_debian_6_1_needs_virtio_and_9p_modules() {
        let (_, order) = resolve_real("debian-6.1");
        let expected = BTreeSet::from([
            "virtio_ring",
            "virtio_pci_modern_dev",
            "virtio_pci_legacy_dev",
            "virtio",
            "virtio_pci",
            "virtio_console",
            "9pnet",
            "9pnet_virtio",
            "netfs",
            "fscache",
            "9p",
        ]);
        assert_eq!(name_set(&order), expected, "{:?}", names(&order));
        assert_eq!(order.len(), expected.len());
        assert!(order.iter().all(|m| m.compression == Compression::None));
    }

    #[test]
    fn real_debian_6_12_has_virtio_built_in() {
        let (version, order) = resolve_real("debian-6.12");
        assert_eq!(
            name_set(&order),
            BTreeSet::from(["netfs", "9pnet", "9pnet_virtio", "9p"]),
            "{:?}",
            names(&order)
        );
        assert_eq!(order.len(), 4);
        assert!(order.iter().all(|m| m.compression == Compression::Xz));
        let root = test_kernels::dir().join("debian-6.12");
        let index = ModuleIndex::load(&root.join("lib/modules").join(&version), &version).unwrap();
        assert_eq!(is_builtin(&index, "virtio_pci"), Some(true));
        assert_eq!(is_builtin(&index, "virtio_console"), Some(true));
    }
}
