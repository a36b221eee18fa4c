//! A writer for the "newc" cpio format, the one the kernel unpacks as an
//! initramfs (`Documentation/driver-api/early-userspace/buffer-format.rst`).
//!
//! Each entry is a 110-byte ASCII header (`070701` then thirteen 8-digit hex
//! fields), the NUL-terminated name, zeros up to a multiple of 4, the data,
//! and zeros up to a multiple of 4 again. `TRAILER!!!` ends the archive.
//!
//! Only directories and regular files are needed. Every entry is owned by
//! root with mtime 0, so equal inputs give equal bytes. Names are relative
//! (`dev`, `modules/00-virtio.ko`); absolute names and `..` are refused, as
//! ktstr's writer does, so an archive can never point outside its root.
//! Parents must be written before their children: the kernel does not
//! create missing directories.

use std::fmt::Write as _;
use std::io::{self, Write};

/// The newc magic.
const MAGIC: &str = "070701";
/// The name of the entry that ends an archive.
const TRAILER: &str = "TRAILER!!!";
/// Length of a newc header: the magic and 13 fields of 8 hex digits.
const HEADER_LEN: usize = 6 + 13 * 8;
/// The file type bits of a directory.
const S_IFDIR: u32 = 0o040_000;
/// The file type bits of a regular file.
const S_IFREG: u32 = 0o100_000;

/// Why an archive entry could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    /// The name would unpack outside the archive root or is malformed.
    #[error(
        "cpio entry name {name:?} is refused: {reason}; use a relative path like \"dir/file\""
    )]
    BadName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The mode holds bits other than permissions.
    #[error("cpio entry {name:?} has mode {mode:#o}; give only permission bits (at most 0o7777)")]
    BadMode {
        /// The entry.
        name: String,
        /// The mode given.
        mode: u32,
    },
    /// newc sizes are 32-bit.
    #[error("cpio entry {name:?} is {len} bytes, more than the 4 GiB newc allows")]
    TooLarge {
        /// The entry.
        name: String,
        /// Its size.
        len: usize,
    },
    /// More entries than 32-bit inode numbers.
    #[error("cpio archive has too many entries for 32-bit inode numbers")]
    TooManyEntries,
    /// Writing to the underlying writer failed.
    #[error("cannot write cpio archive")]
    Io(#[source] io::Error),
}

/// Writes a newc archive to `W`, entry by entry; [`CpioWriter::finish`]
/// writes the trailer. An archive dropped without `finish` is incomplete.
#[derive(Debug)]
pub(crate) struct CpioWriter<W: Write> {
    out: W,
    /// Bytes written so far, for padding.
    offset: u64,
    /// The inode number of the next entry (the trailer has 0).
    next_inode: u32,
}

impl<W: Write> CpioWriter<W> {
    /// Starts an archive on `out`.
    pub(crate) fn new(out: W) -> Self {
        CpioWriter {
            out,
            offset: 0,
            next_inode: 1,
        }
    }

    /// Adds a directory with permissions `mode` (e.g. `0o755`).
    pub(crate) fn directory(&mut self, name: &str, mode: u32) -> Result<(), CpioError> {
        check_name(name)?;
        let mode = full_mode(name, S_IFDIR, mode)?;
        let inode = self.take_inode()?;
        self.entry(name, inode, mode, 2, &[])
    }

    /// Adds a regular file with permissions `mode` (e.g. `0o644`) and contents `data`.
    pub(crate) fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> Result<(), CpioError> {
        check_name(name)?;
        let mode = full_mode(name, S_IFREG, mode)?;
        let inode = self.take_inode()?;
        self.entry(name, inode, mode, 1, data)
    }

    /// Writes the trailer, flushes, and gives the writer back.
    pub(crate) fn finish(mut self) -> Result<W, CpioError> {
        self.entry(TRAILER, 0, 0, 1, &[])?;
        self.out.flush().map_err(CpioError::Io)?;
        Ok(self.out)
    }

    /// A fresh inode number: each entry is its own file, none are hard links.
    fn take_inode(&mut self) -> Result<u32, CpioError> {
        let inode = self.next_inode;
        self.next_inode = inode.checked_add(1).ok_or(CpioError::TooManyEntries)?;
        Ok(inode)
    }

    /// Writes one header, name and data, each padded to 4 bytes.
    fn entry(
        &mut self,
        name: &str,
        inode: u32,
        mode: u32,
        nlink: u32,
        data: &[u8],
    ) -> Result<(), CpioError> {
        let too_large = || CpioError::TooLarge {
            name: name.to_owned(),
            len: data.len(),
        };
        let file_size = u32::try_from(data.len()).map_err(|_| too_large())?;
        // The name size counts the NUL.
        let name_size = u32::try_from(name.len() + 1).map_err(|_| too_large())?;
        let fields: [u32; 13] = [
            inode, mode, 0, // uid: root
            0, // gid: root
            nlink, 0, // mtime: fixed, so equal inputs give equal archives
            file_size, 0, // devmajor
            0, // devminor
            0, // rdevmajor
            0, // rdevminor
            name_size, 0, // check: unused by newc
        ];
        let mut header = String::with_capacity(HEADER_LEN);
        header.push_str(MAGIC);
        for field in fields {
            // Writing to a String cannot fail.
            let _ = write!(header, "{field:08X}");
        }
        self.write(header.as_bytes())?;
        self.write(name.as_bytes())?;
        self.write(&[0])?;
        self.pad()?;
        self.write(data)?;
        self.pad()
    }

    /// Writes `bytes`, counting them for alignment.
    fn write(&mut self, bytes: &[u8]) -> Result<(), CpioError> {
        self.out.write_all(bytes).map_err(CpioError::Io)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// Zeros up to the next multiple of 4.
    fn pad(&mut self) -> Result<(), CpioError> {
        let fill = (4 - self.offset % 4) % 4;
        self.write(&[0u8; 3][..fill as usize])
    }
}

/// Checks that `name` is relative and stays inside the archive root.
fn check_name(name: &str) -> Result<(), CpioError> {
    let refuse = |reason| {
        Err(CpioError::BadName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return refuse("it is empty");
    }
    if name.starts_with('/') {
        return refuse("it is absolute");
    }
    if name.contains('\0') {
        return refuse("it contains a NUL byte");
    }
    if name == TRAILER {
        return refuse("it is the end-of-archive marker");
    }
    for component in name.split('/') {
        match component {
            ".." => return refuse("it has a '..' component"),
            "" | "." => return refuse("it has an empty or '.' component"),
            _ => {}
        }
    }
    Ok(())
}

/// `kind | permissions`, refusing stray bits in `permissions`.
fn full_mode(name: &str, kind: u32, permissions: u32) -> Result<u32, CpioError> {
    if permissions & !0o7777 != 0 {
        return Err(CpioError::BadMode {
            name: name.to_owned(),
            mode: permissions,
        });
    }
    Ok(kind | permissions)
}

/// Reading archives back, for tests here and in the parent module.
#[cfg(test)]
pub(crate) mod read_back {
    /// One entry read from an archive.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) struct Entry {
        pub(crate) name: String,
        pub(crate) inode: u32,
        pub(crate) mode: u32,
        pub(crate) nlink: u32,
        pub(crate) data: Vec<u8>,
        /// Offset of the entry's header in the archive.
        pub(crate) offset: usize,
    }

    /// Parses a whole newc archive, checking magic, padding (zeros) and
    /// alignment on the way, and that it ends right after the trailer.
    /// Returns the entries before the trailer.
    pub(crate) fn entries(archive: &[u8]) -> Vec<Entry> {
        let mut entries = Vec::new();
        let mut at = 0usize;
        loop {
            assert_eq!(at % 4, 0, "header at {at} is not 4-byte aligned");
            let header = &archive[at..at + 110];
            assert_eq!(&header[..6], b"070701", "magic at {at}");
            let field = |i: usize| {
                let hex = std::str::from_utf8(&header[6 + 8 * i..14 + 8 * i]).unwrap();
                u32::from_str_radix(hex, 16).unwrap()
            };
            let (inode, mode, nlink, size, name_size) =
                (field(0), field(1), field(4), field(6), field(11));
            let name_start = at + 110;
            let name_end = name_start + name_size as usize;
            assert_eq!(
                archive[name_end - 1],
                0,
                "name at {at} is not NUL-terminated"
            );
            let name = std::str::from_utf8(&archive[name_start..name_end - 1])
                .unwrap()
                .to_owned();
            let data_start = name_end.next_multiple_of(4);
            assert!(
                archive[name_end..data_start].iter().all(|&b| b == 0),
                "name padding of {name} is not zeros"
            );
            let data_end = data_start + size as usize;
            let next = data_end.next_multiple_of(4);
            assert!(
                archive[data_end..next].iter().all(|&b| b == 0),
                "data padding of {name} is not zeros"
            );
            if name == "TRAILER!!!" {
                assert_eq!((inode, mode, size), (0, 0, 0), "trailer fields");
                assert_eq!(next, archive.len(), "bytes after the trailer");
                return entries;
            }
            entries.push(Entry {
                name,
                inode,
                mode,
                nlink,
                data: archive[data_start..data_end].to_vec(),
                offset: at,
            });
            at = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::read_back::entries;
    use super::*;
    use std::process::Command;

    fn sample() -> Vec<u8> {
        let mut cpio = CpioWriter::new(Vec::new());
        cpio.directory("dev", 0o755).unwrap();
        cpio.directory("modules", 0o700).unwrap();
        cpio.file("init", 0o755, b"#!/bin/true\n").unwrap();
        cpio.file("modules/00-a.ko", 0o644, b"a").unwrap();
        cpio.file("modules/01-bc.ko.xz", 0o600, b"bcde").unwrap();
        cpio.file("empty", 0o644, b"").unwrap();
        cpio.finish().unwrap()
    }

    #[test]
    fn archive_reads_back() {
        let archive = sample();
        let got = entries(&archive);
        let summary: Vec<(&str, u32, u32, &[u8])> = got
            .iter()
            .map(|e| (e.name.as_str(), e.mode, e.nlink, e.data.as_slice()))
            .collect();
        assert_eq!(
            summary,
            [
                ("dev", 0o040_755, 2, &b""[..]),
                ("modules", 0o040_700, 2, b""),
                ("init", 0o100_755, 1, b"#!/bin/true\n"),
                ("modules/00-a.ko", 0o100_644, 1, b"a"),
                ("modules/01-bc.ko.xz", 0o100_600, 1, b"bcde"),
                ("empty", 0o100_644, 1, b""),
            ]
        );
        let inodes: Vec<u32> = got.iter().map(|e| e.inode).collect();
        assert_eq!(inodes, [1, 2, 3, 4, 5, 6]);
        assert_eq!(archive.len() % 4, 0);
    }

    #[test]
    fn header_and_name_padding_is_exact() {
        // "dev": 110 + 4 = 114 -> padded to 116; no data.
        let archive = sample();
        let got = entries(&archive);
        assert_eq!(got[0].offset, 0);
        assert_eq!(got[1].offset, 116);
        // "modules": 110 + 8 = 118 -> 120.
        assert_eq!(got[2].offset, 236);
        assert_eq!(&archive[..6], b"070701");
        // The header is ASCII hex, mtime and uid zero.
        assert!(archive[..110].iter().all(u8::is_ascii_hexdigit));

        for name_len in 1..12 {
            for data_len in 0..9 {
                let name = "n".repeat(name_len);
                let data = vec![0xAB; data_len];
                let mut cpio = CpioWriter::new(Vec::new());
                cpio.file(&name, 0o644, &data).unwrap();
                let archive = cpio.finish().unwrap();
                let got = entries(&archive);
                assert_eq!(got[0].data, data);
                assert_eq!(got[0].name, name);
            }
        }
    }

    #[test]
    fn same_input_same_bytes() {
        assert_eq!(sample(), sample());
    }

    #[test]
    fn empty_archive_is_just_a_trailer() {
        let archive = CpioWriter::new(Vec::new()).finish().unwrap();
        assert!(entries(&archive).is_empty());
        assert_eq!(archive.len(), 124); // 110 + "TRAILER!!!\0" = 121 -> 124
    }

    #[test]
    fn refuses_escaping_and_malformed_names() {
        let mut cpio = CpioWriter::new(Vec::new());
        for name in [
            "",
            "/init",
            "..",
            "../etc/passwd",
            "a/../../b",
            "a/..",
            "a//b",
            "./a",
            "a/",
            "a\0b",
            "TRAILER!!!",
        ] {
            let err = cpio.file(name, 0o644, b"x").unwrap_err();
            assert!(
                matches!(err, CpioError::BadName { .. }),
                "{name:?}: {err:?}"
            );
        }
        assert!(matches!(
            cpio.directory("/dev", 0o755),
            Err(CpioError::BadName { .. })
        ));
        assert!(matches!(
            cpio.file("x", 0o100_644, b""),
            Err(CpioError::BadMode { .. })
        ));
        // Nothing was written for refused entries.
        let archive = cpio.finish().unwrap();
        assert!(entries(&archive).is_empty());
        // Names that merely contain dots are fine.
        let mut cpio = CpioWriter::new(Vec::new());
        cpio.file("a..b", 0o644, b"").unwrap();
        cpio.file(".hidden", 0o644, b"").unwrap();
    }

    #[test]
    fn write_errors_are_reported() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut cpio = CpioWriter::new(Full);
        assert!(matches!(cpio.file("a", 0o644, b"x"), Err(CpioError::Io(_))));
    }

    /// GNU cpio, the reference reader, extracts what we write.
    #[test]
    fn gnu_cpio_extracts_the_archive() {
        let archive = sample();
        let dir = tempfile::tempdir().unwrap();
        let archive_path = dir.path().join("test.cpio");
        std::fs::write(&archive_path, &archive).unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let output = Command::new("cpio")
            .args(["-idm", "--quiet", "--no-absolute-filenames", "-F"])
            .arg(&archive_path)
            .current_dir(&out)
            .output()
            .expect("GNU cpio must be installed for this test: apt-get install cpio");
        assert!(
            output.status.success(),
            "cpio failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| std::fs::metadata(out.join(p)).unwrap().permissions().mode() & 0o7777;
        assert!(out.join("dev").is_dir());
        assert_eq!(mode("modules"), 0o700);
        assert_eq!(std::fs::read(out.join("init")).unwrap(), b"#!/bin/true\n");
        assert_eq!(mode("init"), 0o755);
        assert_eq!(std::fs::read(out.join("modules/00-a.ko")).unwrap(), b"a");
        assert_eq!(
            std::fs::read(out.join("modules/01-bc.ko.xz")).unwrap(),
            b"bcde"
        );
        assert_eq!(mode("modules/01-bc.ko.xz"), 0o600);
        assert_eq!(std::fs::read(out.join("empty")).unwrap(), b"");

        // And its listing agrees with ours, in order.
        let listing = Command::new("cpio")
            .args(["-t", "--quiet", "-F"])
            .arg(&archive_path)
            .output()
            .unwrap();
        assert!(listing.status.success());
        let names: Vec<String> = entries(&archive).into_iter().map(|e| e.name).collect();
        assert_eq!(
            String::from_utf8(listing.stdout)
                .unwrap()
                .lines()
                .collect::<Vec<_>>(),
            names
        );
    }
}
