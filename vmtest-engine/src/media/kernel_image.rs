//! A kernel image, whatever its architecture: what format it is in (from
//! its own header, not its name) and the release it carries (what `uname
//! -r` prints in the guest, and the name of its `lib/modules` directory).
//!
//! An x86 bzImage says where its version string is ([`super::bzimage`]). An
//! arm64 `Image` (`Documentation/arch/arm64/booting.rst`: a 64-byte header
//! with the magic `ARM\x64` at 0x38, then the kernel, uncompressed) does
//! not; its `linux_banner`, `Linux version 6.12.118+deb12-arm64 (...)`, is
//! found in it instead. Ubuntu ships it gzip-compressed, as QEMU boots it
//! too.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use super::bzimage;
pub use super::image_error::KernelImageError;

/// Where an arm64 `Image` has its magic.
const ARM64_MAGIC_OFFSET: usize = 0x38;
const ARM64_MAGIC: &[u8; 4] = b"ARM\x64";
/// What starts the kernel's banner.
const BANNER: &[u8] = b"Linux version ";
/// How much of an arm64 image is read at a time, looking for the banner.
const CHUNK: usize = 1 << 20;

/// The formats vmtest reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// An x86 bzImage (with a setup header, maybe a PVH entry once
    /// extracted).
    BzImage,
    /// An arm64 `Image`, booted as it is.
    Arm64Image,
}

/// The format of the image at `path`, from its first bytes: an arm64
/// `Image` (gzip-compressed or not), else taken for a bzImage (whose reader
/// says what is wrong).
pub(crate) fn format(image: &Path) -> Result<Format, KernelImageError> {
    let mut head = [0u8; ARM64_MAGIC_OFFSET + 4];
    let read = read_up_to(&mut open(image)?, &mut head).map_err(read_error(image))?;
    Ok(match head[..read].get(ARM64_MAGIC_OFFSET..) {
        Some(magic) if magic == ARM64_MAGIC => Format::Arm64Image,
        _ => Format::BzImage,
    })
}

/// The image's bytes, decompressed if it is gzip-compressed.
fn open(image: &Path) -> Result<Box<dyn Read>, KernelImageError> {
    let file = File::open(image).map_err(read_error(image))?;
    let mut file = BufReader::new(file);
    let gzip = file
        .fill_buf()
        .map_err(read_error(image))?
        .starts_with(&[0x1f, 0x8b]);
    Ok(match gzip {
        true => Box::new(flate2::bufread::GzDecoder::new(file)),
        false => Box::new(file),
    })
}

/// Reads the kernel release from the image at `path`.
pub fn kernel_version(image: &Path) -> Result<String, KernelImageError> {
    release(image, format(image)?)
}

/// The kernel release of the image at `path`, whose format is known.
pub(crate) fn release(image: &Path, format: Format) -> Result<String, KernelImageError> {
    match format {
        Format::BzImage => bzimage::kernel_version(image),
        Format::Arm64Image => banner_release(image),
    }
}

/// The release in the image's `Linux version` banner.
fn banner_release(image: &Path) -> Result<String, KernelImageError> {
    let mut file = open(image)?;
    // A banner cut by a chunk's end is found whole in the next, which
    // starts with the end of this one.
    const KEEP: usize = 256;
    let mut window = Vec::with_capacity(CHUNK + KEEP);
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let read = read_up_to(&mut file, &mut chunk).map_err(read_error(image))?;
        window.extend_from_slice(&chunk[..read]);
        if let Some(release) = release_after_banner(&window) {
            return Ok(release);
        }
        if read < CHUNK {
            return Err(KernelImageError::NoBanner {
                path: image.to_path_buf(),
            });
        }
        let keep_from = window.len().saturating_sub(KEEP);
        window.drain(..keep_from);
    }
}

/// The word after the first complete `Linux version ` in `bytes`.
fn release_after_banner(bytes: &[u8]) -> Option<String> {
    let mut rest = bytes;
    while let Some(at) = rest
        .windows(BANNER.len())
        .position(|window| window == BANNER)
    {
        let after = &rest[at + BANNER.len()..];
        let end = after.iter().position(|&byte| byte == b' ' || byte == 0)?;
        let word = &after[..end];
        // The kernel's format string (`Linux version %s`) comes first in
        // some builds: a release starts with a digit.
        if word.first().is_some_and(u8::is_ascii_digit) {
            return std::str::from_utf8(word).ok().map(str::to_string);
        }
        rest = after;
    }
    None
}

fn read_error(image: &Path) -> impl Fn(io::Error) -> KernelImageError + '_ {
    move |source| KernelImageError::Read {
        path: image.to_path_buf(),
        source,
    }
}

/// Fills `buffer` as far as the file goes; returns how much it read.
fn read_up_to(file: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic arm64 Image: its header, then `body` at `at`.
    fn arm64_image(at: usize, body: &[u8]) -> Vec<u8> {
        let mut image = vec![0u8; at + body.len() + 64];
        image[ARM64_MAGIC_OFFSET..ARM64_MAGIC_OFFSET + 4].copy_from_slice(ARM64_MAGIC);
        image[at..at + body.len()].copy_from_slice(body);
        image
    }

    #[test]
    fn an_arm64_image_gives_its_release_from_its_banner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vmlinuz");
        // Across a chunk's end, after the bare format string.
        let body = b"Linux version %s\0...Linux version 6.12.118+deb12-arm64 (debian-kernel@lists.debian.org) #1 SMP";
        std::fs::write(&path, arm64_image(CHUNK - 20, body)).unwrap();
        assert_eq!(format(&path).unwrap(), Format::Arm64Image);
        assert_eq!(kernel_version(&path).unwrap(), "6.12.118+deb12-arm64");
    }

    #[test]
    fn a_gzip_compressed_arm64_image_is_read_through() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vmlinuz");
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzip.write_all(&arm64_image(
            4096,
            b"Linux version 6.12.0-061200-generic (kernel@ubuntu)",
        ))
        .unwrap();
        std::fs::write(&path, gzip.finish().unwrap()).unwrap();
        assert_eq!(format(&path).unwrap(), Format::Arm64Image);
        assert_eq!(kernel_version(&path).unwrap(), "6.12.0-061200-generic");
    }

    #[test]
    fn an_arm64_image_without_a_banner_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Image");
        std::fs::write(&path, arm64_image(4096, b"no banner here")).unwrap();
        let error = kernel_version(&path).unwrap_err();
        assert!(
            matches!(error, KernelImageError::NoBanner { .. }),
            "{error}"
        );
    }

    #[test]
    fn anything_else_is_read_as_a_bzimage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vmlinuz");
        std::fs::write(&path, b"\x7fELF and more").unwrap();
        assert_eq!(format(&path).unwrap(), Format::BzImage);
        let error = kernel_version(&path).unwrap_err();
        assert!(error.to_string().contains("bzImage"), "{error}");
    }
}
