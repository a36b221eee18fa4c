//! Reading facts out of an x86 kernel image (bzImage) without booting it:
//! the one home of its real-mode setup header, described by the x86 boot
//! protocol (`Documentation/arch/x86/boot.rst` in the kernel tree):
//!
//! | offset | size | field | meaning |
//! |---|---|---|---|
//! | 0x1F1 | 1 | `setup_sects` | real-mode sectors after the boot sector; 0 means 4 |
//! | 0x202 | 4 | `header` | the magic `HdrS` |
//! | 0x206 | 2 | `version` | boot protocol version, `0x0200` = 2.00 |
//! | 0x20E | 2 | `kernel_version` | offset, less 0x200, of a NUL-terminated string |
//! | 0x248 | 4 | `payload_offset` | compressed kernel, from the protected-mode code (2.08) |
//! | 0x24C | 4 | `payload_length` | its length |
//!
//! [`kernel_version`] reads the release (`uname -r`), which names the
//! modules directory; its string reads like `6.1.0-47-amd64
//! (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC Debian 6.1.170-3`,
//! the first word being the release. [`payload`] finds the compressed kernel
//! for [`super::vmlinux`]. As rust-vmm/linux-loader does, every offset here
//! is computed with checked arithmetic, so a corrupt or truncated image is an
//! error, never a panic.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::image_error::KernelImageError;

/// Where `setup_sects` (u8) sits.
pub(super) const SETUP_SECTS_OFFSET: usize = 0x1F1;
/// What a `setup_sects` of 0 means.
const DEFAULT_SETUP_SECTS: usize = 4;
/// The size of a boot sector, the unit of `setup_sects`.
pub(super) const SECTOR: usize = 512;
/// Where the `HdrS` magic sits.
pub(super) const MAGIC_OFFSET: usize = 0x202;
/// The setup header's magic, `HdrS`.
pub(super) const MAGIC: &[u8; 4] = b"HdrS";
/// Where the boot protocol version (u16, little-endian) sits.
pub(super) const PROTOCOL_OFFSET: usize = 0x206;
/// The first boot protocol with `payload_offset` and `payload_length`.
const MIN_PAYLOAD_PROTOCOL: u16 = 0x0208;
/// Where `payload_offset` (u32, little-endian) sits.
pub(super) const PAYLOAD_OFFSET_OFFSET: usize = 0x248;
/// Where `payload_length` (u32, little-endian) sits.
pub(super) const PAYLOAD_LENGTH_OFFSET: usize = 0x24C;
/// The first boot protocol with a `kernel_version` field.
const MIN_PROTOCOL: u16 = 0x0200;
/// Where the `kernel_version` pointer (u16, little-endian) sits.
const VERSION_POINTER_OFFSET: usize = 0x20E;
/// What `kernel_version` is relative to.
const VERSION_POINTER_BASE: usize = 0x200;
/// The longest version string read; real ones are about 100 bytes.
const MAX_VERSION_LEN: usize = 512;
/// How much of the image can matter: the farthest string start plus its length.
const READ_LIMIT: usize = VERSION_POINTER_BASE + u16::MAX as usize + MAX_VERSION_LEN;

/// Reads the kernel release (what `uname -r` prints in the guest, and the
/// name of its `lib/modules` directory) from an x86 bzImage's setup header.
pub(super) fn kernel_version(image: &Path) -> Result<String, KernelImageError> {
    let read_error = |source| KernelImageError::Read {
        path: image.to_path_buf(),
        source,
    };
    let file = File::open(image).map_err(read_error)?;
    let mut head = Vec::new();
    // READ_LIMIT is a small constant, so the cast cannot truncate.
    file.take(READ_LIMIT as u64)
        .read_to_end(&mut head)
        .map_err(read_error)?;
    version_from_header(image, &head)
}

/// Parses the release out of the start of an image (`head`, at most
/// [`READ_LIMIT`] bytes, may be the whole file). `path` is only for errors.
fn version_from_header(path: &Path, head: &[u8]) -> Result<String, KernelImageError> {
    let len = head.len();
    let magic_end = MAGIC_OFFSET + MAGIC.len();
    let Some(magic) = head.get(MAGIC_OFFSET..magic_end) else {
        return Err(KernelImageError::TooShort {
            path: path.to_path_buf(),
            len,
        });
    };
    if magic != MAGIC {
        return Err(KernelImageError::NotBzImage {
            path: path.to_path_buf(),
            hint: looks_like(head),
        });
    }
    let truncated = |what, needed| KernelImageError::Truncated {
        path: path.to_path_buf(),
        what,
        needed,
        len,
    };

    let protocol = read_u16(head, PROTOCOL_OFFSET)
        .ok_or_else(|| truncated("the boot protocol version", PROTOCOL_OFFSET + 2))?;
    if protocol < MIN_PROTOCOL {
        let [minor, major] = protocol.to_le_bytes();
        return Err(KernelImageError::OldProtocol {
            path: path.to_path_buf(),
            major,
            minor,
        });
    }

    let pointer = read_u16(head, VERSION_POINTER_OFFSET).ok_or_else(|| {
        truncated(
            "the kernel_version field of the setup header",
            VERSION_POINTER_OFFSET + 2,
        )
    })?;
    if pointer == 0 {
        return Err(KernelImageError::NoVersion {
            path: path.to_path_buf(),
        });
    }
    // Cannot overflow (0x200 + u16::MAX), but stay checked as the header is untrusted.
    let start = VERSION_POINTER_BASE
        .checked_add(usize::from(pointer))
        .ok_or(KernelImageError::BadVersion {
            path: path.to_path_buf(),
            problem: "its offset overflows",
        })?;
    let Some(rest) = head.get(start..) else {
        return Err(truncated("the version string", start.saturating_add(1)));
    };
    let window = &rest[..rest.len().min(MAX_VERSION_LEN)];
    let Some(nul) = window.iter().position(|&b| b == 0) else {
        if window.len() < MAX_VERSION_LEN {
            // The file ended before the string did.
            return Err(truncated(
                "the NUL-terminated version string",
                start.saturating_add(window.len()).saturating_add(1),
            ));
        }
        return Err(KernelImageError::BadVersion {
            path: path.to_path_buf(),
            problem: "no NUL terminator within 512 bytes",
        });
    };
    let Some(token) = window[..nul]
        .split(u8::is_ascii_whitespace)
        .find(|word| !word.is_empty())
    else {
        return Err(KernelImageError::BadVersion {
            path: path.to_path_buf(),
            problem: "it is empty",
        });
    };
    match std::str::from_utf8(token) {
        Ok(release) if release.bytes().all(|b| b.is_ascii_graphic()) => Ok(release.to_owned()),
        _ => Err(KernelImageError::BadVersion {
            path: path.to_path_buf(),
            problem: "its first word is not printable ASCII",
        }),
    }
}

/// The compressed kernel inside a bzImage, as its setup header locates it:
/// `payload_length` bytes at `payload_offset` past the protected-mode code,
/// which starts at `(setup_sects + 1) * 512`. Or what is wrong with the
/// header.
pub(super) fn payload(bytes: &[u8]) -> Result<&[u8], String> {
    if bytes.get(MAGIC_OFFSET..MAGIC_OFFSET + MAGIC.len()) != Some(MAGIC.as_slice()) {
        return Err("it has no HdrS setup header".to_string());
    }
    let protocol = read_u16(bytes, PROTOCOL_OFFSET).unwrap_or(0);
    if protocol < MIN_PAYLOAD_PROTOCOL {
        return Err(format!(
            "its boot protocol {}.{:02} predates the payload fields of 2.08",
            protocol >> 8,
            protocol & 0xff
        ));
    }
    let (Some(offset), Some(length)) = (
        read_u32(bytes, PAYLOAD_OFFSET_OFFSET),
        read_u32(bytes, PAYLOAD_LENGTH_OFFSET),
    ) else {
        return Err("its setup header is truncated".to_string());
    };
    let setup_sects = match bytes.get(SETUP_SECTS_OFFSET).copied().unwrap_or(0) {
        0 => DEFAULT_SETUP_SECTS,
        sects => usize::from(sects),
    };
    (setup_sects + 1)
        .checked_mul(SECTOR)
        .and_then(|code| code.checked_add(usize::try_from(offset).ok()?))
        .and_then(|start| Some((start, start.checked_add(usize::try_from(length).ok()?)?)))
        .and_then(|(start, end)| bytes.get(start..end))
        .filter(|payload| !payload.is_empty())
        .ok_or_else(|| {
            format!(
                "its header's payload ({length} bytes at {offset} past the setup code) is empty \
                 or lies outside the {} byte file",
                bytes.len()
            )
        })
}

/// A hint for [`KernelImageError::NotBzImage`] from the file's first bytes.
fn looks_like(head: &[u8]) -> &'static str {
    if head.starts_with(b"\x7fELF") {
        " (it is an ELF file, perhaps an uncompressed vmlinux)"
    } else {
        ""
    }
}

/// The little-endian u16 at `at`, if `bytes` has it.
pub(super) fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    let field = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes(field.try_into().ok()?))
}

/// The little-endian u32 at `at`, if `bytes` has it.
pub(super) fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let field = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(field.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::test_kernels;

    const DEBIAN_STRING: &str = "6.1.0-47-amd64 (debian-kernel@lists.debian.org) #1 SMP \
                                 PREEMPT_DYNAMIC Debian 6.1.170-3 (2025-01-01)";

    /// A synthetic bzImage start: a setup header with `protocol` and the
    /// version string `version` placed at `string_at` (absolute offset).
    fn image(protocol: u16, string_at: usize, version: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0u8; string_at.max(0x400)];
        bytes[0x1FE..0x200].copy_from_slice(&[0x55, 0xAA]);
        bytes[MAGIC_OFFSET..MAGIC_OFFSET + 4].copy_from_slice(MAGIC);
        bytes[PROTOCOL_OFFSET..PROTOCOL_OFFSET + 2].copy_from_slice(&protocol.to_le_bytes());
        let pointer = u16::try_from(string_at - VERSION_POINTER_BASE).expect("test offset");
        bytes[VERSION_POINTER_OFFSET..VERSION_POINTER_OFFSET + 2]
            .copy_from_slice(&pointer.to_le_bytes());
        bytes.truncate(string_at);
        bytes.extend_from_slice(version);
        bytes.push(0);
        bytes.extend_from_slice(&[0xCC; 64]); // more setup code after the string
        bytes
    }

    fn parse(bytes: &[u8]) -> Result<String, KernelImageError> {
        version_from_header(Path::new("vmlinuz-test"), bytes)
    }

    #[test]
    fn reads_first_word_of_debian_style_string() {
        let bytes = image(0x020F, 0x3A0, DEBIAN_STRING.as_bytes());
        assert_eq!(parse(&bytes).unwrap(), "6.1.0-47-amd64");
    }

    #[test]
    fn reads_string_at_largest_offset_and_leading_spaces() {
        let at = VERSION_POINTER_BASE + usize::from(u16::MAX);
        let bytes = image(0x0200, at, b"  6.12.117+deb12-amd64\t(x)");
        assert_eq!(parse(&bytes).unwrap(), "6.12.117+deb12-amd64");
    }

    #[test]
    fn reads_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vmlinuz");
        std::fs::write(&path, image(0x020F, 0x3A0, DEBIAN_STRING.as_bytes())).unwrap();
        assert_eq!(kernel_version(&path).unwrap(), "6.1.0-47-amd64");
    }

    #[test]
    fn missing_file_is_a_read_error_naming_it() {
        let err = kernel_version(Path::new("/nonexistent/vmlinuz-x")).unwrap_err();
        assert!(matches!(err, KernelImageError::Read { .. }), "{err:?}");
        assert!(err.to_string().contains("/nonexistent/vmlinuz-x"), "{err}");
    }

    #[test]
    fn rejects_non_bzimage() {
        let mut bytes = image(0x020F, 0x3A0, b"6.1.0");
        bytes[MAGIC_OFFSET] = b'X';
        let err = parse(&bytes).unwrap_err();
        assert!(
            matches!(err, KernelImageError::NotBzImage { .. }),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains("not an x86 bzImage (no HdrS header)"),
            "{err}"
        );

        let mut elf = vec![0u8; 0x1000];
        elf[..4].copy_from_slice(b"\x7fELF");
        let err = parse(&elf).unwrap_err().to_string();
        assert!(err.contains("not an x86 bzImage (no HdrS header)"), "{err}");
        assert!(err.contains("uncompressed vmlinux"), "{err}");
    }

    #[test]
    fn rejects_short_file() {
        let err = parse(b"").unwrap_err();
        assert!(
            matches!(err, KernelImageError::TooShort { len: 0, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn rejects_old_protocol() {
        let bytes = image(0x0105, 0x3A0, b"2.2.26");
        let err = parse(&bytes).unwrap_err();
        assert!(
            matches!(err, KernelImageError::OldProtocol { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("boot protocol 1.05"), "{err}");
    }

    #[test]
    fn rejects_zero_version_pointer() {
        let mut bytes = image(0x020F, 0x3A0, b"6.1.0");
        bytes[VERSION_POINTER_OFFSET..VERSION_POINTER_OFFSET + 2].fill(0);
        let err = parse(&bytes).unwrap_err();
        assert!(matches!(err, KernelImageError::NoVersion { .. }), "{err:?}");
    }

    #[test]
    fn rejects_empty_unterminated_and_binary_strings() {
        let err = parse(&image(0x020F, 0x3A0, b"   ")).unwrap_err();
        assert!(
            matches!(err, KernelImageError::BadVersion { .. }),
            "{err:?}"
        );

        let mut bytes = image(0x020F, 0x3A0, b"");
        bytes.truncate(0x3A0);
        bytes.extend_from_slice(&[b'x'; MAX_VERSION_LEN + 10]);
        let err = parse(&bytes).unwrap_err();
        assert!(
            err.to_string().contains("no NUL terminator"),
            "{err:?} / {err}"
        );

        let err = parse(&image(0x020F, 0x3A0, b"\xff\xfe rest")).unwrap_err();
        assert!(
            matches!(err, KernelImageError::BadVersion { .. }),
            "{err:?}"
        );
    }

    /// Every prefix of a valid image parses or fails cleanly, and fails
    /// exactly when it stops before the version string's NUL.
    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let string_at = 0x3A0;
        let bytes = image(0x020F, string_at, DEBIAN_STRING.as_bytes());
        let nul_at = string_at + DEBIAN_STRING.len();
        for len in 0..=bytes.len() {
            let result = parse(&bytes[..len]);
            if len > nul_at {
                assert_eq!(result.unwrap(), "6.1.0-47-amd64", "prefix of {len} bytes");
                continue;
            }
            let err = result.expect_err("a prefix without the NUL must fail");
            match err {
                KernelImageError::TooShort { .. } => assert!(len < MAGIC_OFFSET + 4, "{len}"),
                KernelImageError::Truncated { needed, .. } => assert!(needed > len, "{len}"),
                other => panic!("prefix of {len} bytes: unexpected {other:?}"),
            }
        }
    }

    /// Random single-byte and multi-byte corruption of the header never panics.
    #[test]
    fn corrupted_headers_never_panic() {
        let base = image(0x020F, 0x3A0, DEBIAN_STRING.as_bytes());
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            // xorshift64: deterministic, no dependency.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..5000 {
            let mut bytes = base.clone();
            let flips = 1 + next() % 4;
            for _ in 0..flips {
                // Aim mostly at the header and the string, where parsing looks.
                let at = 0x1F0 + (next() as usize) % (bytes.len() - 0x1F0);
                bytes[at] = next() as u8;
            }
            let cut = (next() as usize) % (bytes.len() + 1);
            let _ = parse(&bytes[..cut]);
            let _ = parse(&bytes);
        }
    }

    #[test]
    fn real_kernels_report_their_module_directory_name() {
        let root = test_kernels::dir();
        for kernel in test_kernels::KERNELS {
            let boot = root.join(kernel).join("boot");
            let image = test_kernels::vmlinuz(&boot);
            let started = std::time::Instant::now();
            let version = kernel_version(&image).unwrap();
            let took = started.elapsed();
            let modules = root.join(kernel).join("lib/modules").join(&version);
            assert!(
                modules.is_dir(),
                "{}: version {version} has no {}",
                image.display(),
                modules.display()
            );
            println!("{kernel}: kernel_version = {version} in {took:?}");
        }
    }
}
