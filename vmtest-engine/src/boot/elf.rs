//! The two facts the engine reads from an ELF binary's headers: the dynamic
//! loader it names, and whether it has a section. Written by hand: a few
//! small reads at fixed offsets, where a parsing crate would read or map
//! the whole file (test binaries run to hundreds of megabytes).

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// `PT_INTERP`: the program header naming the dynamic loader.
const PT_INTERP: u32 = 3;
/// The start of a 64-bit little-endian ELF file.
const ELF64_LE: &[u8] = b"\x7fELF\x02\x01";
/// The ELF header's size.
const HEADER_LEN: usize = 64;
/// The most bytes of headers or names read at once; more is not a binary
/// this reads.
const MAX_READ: usize = 4 << 20;

/// The dynamic loader an ELF binary names (`PT_INTERP`), if any.
pub(crate) fn interpreter(binary: &Path) -> Option<PathBuf> {
    let elf = Elf::open(binary)?;
    elf.entries(0x20, 0x36, 0x38)?.iter().find_map(|entry| {
        if le32(entry, 0)? != PT_INTERP {
            return None;
        }
        let name = elf.read(le(entry, 8)?, le(entry, 32)?)?;
        let name = name.strip_suffix(&[0]).unwrap_or(&name).to_vec();
        Some(PathBuf::from(OsString::from_vec(name)))
    })
}

/// Whether an ELF binary has a section called `name`; `false` for a file
/// that is not one.
pub(crate) fn has_section(binary: &Path, name: &str) -> bool {
    let has = || -> Option<bool> {
        let elf = Elf::open(binary)?;
        let entries = elf.entries(0x28, 0x3a, 0x3c)?;
        let names = entries.get(usize::from(elf.u16_at(0x3e)?))?;
        let names = elf.read(le(names, 0x18)?, le(names, 0x20)?)?;
        let wanted = [name.as_bytes(), &[0]].concat();
        Some(entries.iter().any(|entry| {
            le32(entry, 0)
                .and_then(|at| names.get(usize::try_from(at).ok()?..))
                .is_some_and(|rest| rest.starts_with(&wanted))
        }))
    };
    has().unwrap_or(false)
}

/// An open 64-bit little-endian ELF file and its header.
struct Elf {
    file: File,
    header: Vec<u8>,
}

impl Elf {
    fn open(path: &Path) -> Option<Elf> {
        let file = File::open(path).ok()?;
        let mut header = vec![0; HEADER_LEN];
        file.read_exact_at(&mut header, 0).ok()?;
        header.starts_with(ELF64_LE).then_some(Elf { file, header })
    }

    fn u16_at(&self, at: usize) -> Option<u16> {
        Some(u16::from_le_bytes(
            self.header.get(at..at + 2)?.try_into().ok()?,
        ))
    }

    /// The entries of the table of headers whose offset, entry size and
    /// count the ELF header holds at these places.
    fn entries(&self, offset_at: usize, len_at: usize, count_at: usize) -> Option<Vec<Vec<u8>>> {
        let offset = le(&self.header, offset_at)?;
        let (len, count) = (self.u16_at(len_at)?, self.u16_at(count_at)?);
        let table = self.read(offset, u64::from(len) * u64::from(count))?;
        Some(match len {
            0 => Vec::new(),
            len => table.chunks(usize::from(len)).map(<[u8]>::to_vec).collect(),
        })
    }

    fn read(&self, offset: u64, len: u64) -> Option<Vec<u8>> {
        let len = usize::try_from(len).ok().filter(|&len| len <= MAX_READ)?;
        let mut bytes = vec![0; len];
        self.file.read_exact_at(&mut bytes, offset).ok()?;
        Some(bytes)
    }
}

/// The little-endian `u32` at `at` in `bytes`.
fn le32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        bytes.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// The little-endian `u64` at `at` in `bytes`.
fn le(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        bytes.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loader_is_read_from_the_binary() {
        let exe = std::env::current_exe().unwrap();
        assert_eq!(
            interpreter(&exe).as_deref(),
            Some(Path::new("/lib64/ld-linux-x86-64.so.2"))
        );
        assert_eq!(interpreter(Path::new("/etc/hostname")), None);
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
