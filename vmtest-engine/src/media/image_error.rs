//! Why a kernel image could not be read, whatever its format (see
//! [`super::kernel_image`]).

use std::io;
use std::path::PathBuf;

/// Why a kernel image's version could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KernelImageError {
    /// The image could not be opened or read.
    #[error("cannot read kernel image {path}: check that the file exists and is readable")]
    Read {
        /// The image.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: io::Error,
    },
    /// The file is shorter than a setup header.
    #[error(
        "kernel image {path} is too short ({len} bytes) to be an x86 bzImage; \
         is the file truncated? give a complete vmlinuz/bzImage"
    )]
    TooShort {
        /// The image.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
    },
    /// No `HdrS` magic where the boot protocol puts it.
    #[error(
        "kernel image {path} is not an x86 bzImage (no HdrS header){hint}; \
         give a vmlinuz from a distribution package or arch/x86/boot/bzImage from a kernel build"
    )]
    NotBzImage {
        /// The image.
        path: PathBuf,
        /// A note on what the file looks like instead, or empty.
        hint: &'static str,
    },
    /// The header is cut off, or the version string runs past the end of file.
    #[error(
        "kernel image {path} is truncated: {what} needs {needed} bytes, the file has {len}; \
         download or build the image again"
    )]
    Truncated {
        /// The image.
        path: PathBuf,
        /// What was being read.
        what: &'static str,
        /// Bytes needed to read it.
        needed: usize,
        /// Bytes available.
        len: usize,
    },
    /// The boot protocol predates the `kernel_version` field.
    #[error(
        "kernel image {path} uses boot protocol {major}.{minor:02}, older than 2.00, \
         and carries no version string; use a newer kernel"
    )]
    OldProtocol {
        /// The image.
        path: PathBuf,
        /// Protocol major version.
        major: u8,
        /// Protocol minor version.
        minor: u8,
    },
    /// The header's `kernel_version` pointer is zero.
    #[error(
        "kernel image {path} has no version string (its kernel_version field is 0); \
         the kernel release cannot be known, so its modules cannot be found"
    )]
    NoVersion {
        /// The image.
        path: PathBuf,
    },
    /// An arm64 `Image` in which no `Linux version` banner was found.
    #[error(
        "kernel image {path} is an arm64 Image without a \"Linux version\" banner; \
         is the file truncated? give the Image of a kernel build or a distribution package"
    )]
    NoBanner {
        /// The image.
        path: PathBuf,
    },
    /// The version string is there but unusable.
    #[error("kernel image {path} has a malformed version string: {problem}")]
    BadVersion {
        /// The image.
        path: PathBuf,
        /// What is wrong with it.
        problem: &'static str,
    },
}
