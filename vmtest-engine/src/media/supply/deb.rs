//! Unpacking a kernel's Debian package (`.deb`): an `ar` archive whose
//! `data.tar.{xz,zst,gz}` holds `boot/vmlinuz-*` and `lib/modules/*`. Only
//! those are extracted; the rest of the package is of no use to a guest.
//!
//! `ar` is written by hand (a 60-byte header per member, see `man 5 ar`):
//! no crate reads it for less than pulling in a general archive library.

use std::cell::Cell;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

/// The `ar` archive's first bytes.
const AR_MAGIC: &[u8] = b"!<arch>\n";
const HEADER: usize = 60;
/// The most a package's data may decompress to: Debian's 6.12 package holds
/// about 450 MB. More is no kernel package (or a decompression bomb).
pub(crate) const MAX_UNPACKED: u64 = 2 << 30;

/// Why a package could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    #[error("{path} is not a Debian package (no `ar` archive)")]
    NotAr { path: PathBuf },
    #[error("{path} has no data.tar member")]
    NoData { path: PathBuf },
    #[error("{path}: unsupported compression of {member}")]
    Compression { path: PathBuf, member: String },
    #[error(
        "{path} unpacks to more than {} MiB, more than any kernel package",
        MAX_UNPACKED >> 20
    )]
    TooLarge { path: PathBuf },
    #[error("cannot unpack {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Extracts the kernel images and modules of the package at `deb` into
/// `into`.
pub fn unpack(deb: &Path, into: &Path) -> Result<(), DebError> {
    unpack_at_most(deb, into, MAX_UNPACKED)
}

/// [`unpack`], the package's data decompressing to at most `cap` bytes.
fn unpack_at_most(deb: &Path, into: &Path, cap: u64) -> Result<(), DebError> {
    let io_error = |source| DebError::Io {
        path: deb.to_path_buf(),
        source,
    };
    let bytes = std::fs::read(deb).map_err(io_error)?;
    let (member, data) = data_member(&bytes).ok_or_else(|| match bytes.starts_with(AR_MAGIC) {
        true => DebError::NoData {
            path: deb.to_path_buf(),
        },
        false => DebError::NotAr {
            path: deb.to_path_buf(),
        },
    })?;
    let reader: Box<dyn Read + '_> = match member.rsplit('.').next() {
        Some("xz") => Box::new(liblzma::read::XzDecoder::new(data)),
        Some("zst") => Box::new(zstd::stream::read::Decoder::new(data).map_err(io_error)?),
        Some("gz") => Box::new(flate2::read::GzDecoder::new(data)),
        Some("tar") => Box::new(data),
        _ => {
            return Err(DebError::Compression {
                path: deb.to_path_buf(),
                member,
            })
        }
    };
    // `unpack_in` needs the directory it resolves paths against.
    std::fs::create_dir_all(into).map_err(io_error)?;
    let exceeded = Rc::new(Cell::new(false));
    let capped = Capped {
        inner: reader,
        left: cap,
        exceeded: Rc::clone(&exceeded),
    };
    let mut archive = tar::Archive::new(capped);
    let extracted = (|| {
        for entry in archive.entries()? {
            let mut entry = entry?;
            let path = entry.path()?.into_owned();
            if wanted(&path) {
                // `unpack_in` refuses paths that would leave `into`.
                entry.unpack_in(into)?;
            }
        }
        Ok(())
    })();
    match (extracted, exceeded.get()) {
        (_, true) => Err(DebError::TooLarge {
            path: deb.to_path_buf(),
        }),
        (result, false) => result.map_err(io_error),
    }
}

/// A reader that fails, and says so, past `left` bytes.
struct Capped<R> {
    inner: R,
    left: u64,
    exceeded: Rc<Cell<bool>>,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buffer)?;
        match self.left.checked_sub(read as u64) {
            Some(left) => {
                self.left = left;
                Ok(read)
            }
            None => {
                self.exceeded.set(true);
                Err(io::Error::other("the package is too large"))
            }
        }
    }
}

/// Whether a package path is a kernel image or a module tree's.
fn wanted(path: &Path) -> bool {
    let parts: Vec<&str> = path
        .components()
        .filter_map(|component| match component {
            Component::Normal(part) => part.to_str(),
            _ => None,
        })
        .collect();
    matches!(
        parts.as_slice(),
        ["boot", ..] | ["lib", "modules", ..] | ["usr", "lib", "modules", ..]
    )
}

/// The `data.tar.*` member of an `ar` archive: its name and bytes.
fn data_member(bytes: &[u8]) -> Option<(String, &[u8])> {
    let mut at = AR_MAGIC.len();
    if !bytes.starts_with(AR_MAGIC) {
        return None;
    }
    while at + HEADER <= bytes.len() {
        let header = &bytes[at..at + HEADER];
        let name = std::str::from_utf8(&header[..16])
            .ok()?
            .trim_end()
            .trim_end_matches('/');
        let size: usize = std::str::from_utf8(&header[48..58])
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let start = at + HEADER;
        let data = bytes.get(start..start.checked_add(size)?)?;
        if name.starts_with("data.tar") {
            return Some((name.to_string(), data));
        }
        // Members are 2-byte aligned.
        at = start + size + size % 2;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `ar` archive of `members`.
    fn ar(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut archive = AR_MAGIC.to_vec();
        for (name, data) in members {
            archive.extend_from_slice(
                format!(
                    "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                    name,
                    0,
                    0,
                    0,
                    100644,
                    data.len()
                )
                .as_bytes(),
            );
            archive.extend_from_slice(data);
            if data.len() % 2 == 1 {
                archive.push(b'\n');
            }
        }
        archive
    }

    fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        for (path, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, path, *data).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn the_kernel_and_its_modules_are_extracted_and_nothing_else() {
        let data = tar_gz(&[
            ("./boot/vmlinuz-6.1.0-1-amd64", b"kernel"),
            ("./lib/modules/6.1.0-1-amd64/kernel/fs/9p/9p.ko", b"module"),
            ("./usr/share/doc/linux-image/changelog.gz", b"docs"),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let deb = dir.path().join("linux-image.deb");
        std::fs::write(
            &deb,
            ar(&[
                ("debian-binary", b"2.0\n"),
                ("control.tar.gz", b"x"),
                ("data.tar.gz", &data),
            ]),
        )
        .unwrap();
        let into = dir.path().join("root");
        unpack(&deb, &into).unwrap();
        assert_eq!(
            std::fs::read(into.join("boot/vmlinuz-6.1.0-1-amd64")).unwrap(),
            b"kernel"
        );
        assert!(into
            .join("lib/modules/6.1.0-1-amd64/kernel/fs/9p/9p.ko")
            .exists());
        assert!(!into.join("usr").exists());
    }

    #[test]
    fn a_package_that_unpacks_to_too_much_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let deb = dir.path().join("big.deb");
        let big = vec![0u8; 1 << 20];
        let data = tar_gz(&[("./boot/vmlinuz-6.1.0-test", &big)]);
        std::fs::write(
            &deb,
            ar(&[("debian-binary", b"2.0\n"), ("data.tar.gz", &data)]),
        )
        .unwrap();
        let into = dir.path().join("out");
        let error = unpack_at_most(&deb, &into, 1 << 19).unwrap_err();
        assert!(matches!(error, DebError::TooLarge { .. }), "{error}");
        unpack_at_most(&deb, &dir.path().join("fits"), 2 << 20).unwrap();
    }

    #[test]
    fn other_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let not_deb = dir.path().join("x.deb");
        std::fs::write(&not_deb, b"MZ not an archive").unwrap();
        assert!(matches!(
            unpack(&not_deb, dir.path()),
            Err(DebError::NotAr { .. })
        ));
        let no_data = dir.path().join("y.deb");
        std::fs::write(&no_data, ar(&[("debian-binary", b"2.0\n")])).unwrap();
        assert!(matches!(
            unpack(&no_data, dir.path()),
            Err(DebError::NoData { .. })
        ));
    }
}
