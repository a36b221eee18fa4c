//! The two facts the engine reads from an ELF binary: the dynamic loader
//! it names, and whether it has a section. Through `object` (which also
//! reads kernels and modules here), over a read cache: only the headers
//! and names are read, never the whole file (test binaries run to hundreds
//! of megabytes).

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use object::read::ReadCache;
use object::Object;

/// A 64-bit ELF file read through a cache.
pub(crate) type Elf<'data> =
    object::read::elf::ElfFile64<'data, object::Endianness, &'data ReadCache<File>>;

/// The dynamic loader an ELF binary names (`PT_INTERP`), if any.
pub(crate) fn interpreter(binary: &Path) -> Option<PathBuf> {
    let file = File::open(binary).ok()?;
    let cache = ReadCache::new(file);
    interpreter_of(&Elf::parse(&cache).ok()?)
}

/// The dynamic loader `elf` names (`PT_INTERP`), if any. (Read from the
/// program headers: `object`'s segments have no names.)
pub(crate) fn interpreter_of(elf: &Elf) -> Option<PathBuf> {
    use object::read::elf::ProgramHeader;
    let endian = elf.endian();
    elf.elf_program_headers().iter().find_map(|header| {
        if header.p_type(endian) != object::elf::PT_INTERP {
            return None;
        }
        let name = header.data(endian, elf.data()).ok()?;
        let name = name.strip_suffix(&[0]).unwrap_or(name).to_vec();
        Some(PathBuf::from(OsString::from_vec(name)))
    })
}

/// Whether an ELF binary has a section called `name`; `false` for a file
/// that is not one.
pub(crate) fn has_section(binary: &Path, name: &str) -> bool {
    let Ok(file) = File::open(binary) else {
        return false;
    };
    let cache = ReadCache::new(file);
    object::File::parse(&cache).is_ok_and(|elf| elf.section_by_name(name).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::arch::Arch;

    #[test]
    fn the_loader_is_read_from_the_binary() {
        let exe = std::env::current_exe().unwrap();
        let loader = match Arch::HOST {
            Arch::X86_64 => "/lib64/ld-linux-x86-64.so.2",
            Arch::Aarch64 => "/lib/ld-linux-aarch64.so.1",
        };
        assert_eq!(interpreter(&exe).as_deref(), Some(Path::new(loader)));
        assert_eq!(interpreter(Path::new("/etc/hostname")), None);
        assert_eq!(interpreter(Path::new("/nonexistent")), None);
    }

    #[test]
    fn sections_are_found_by_their_whole_name() {
        let exe = std::env::current_exe().unwrap();
        assert!(has_section(&exe, ".text"));
        assert!(has_section(&exe, ".data"));
        assert!(!has_section(&exe, ".tex"));
        assert!(!has_section(&exe, "__vmtest_no_such_section"));
        assert!(!has_section(Path::new("/etc/hostname"), ".text"));
    }
}
