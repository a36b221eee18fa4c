//! The uncompressed kernel (`vmlinux`) inside an x86 bzImage, extracted on
//! the host so that QEMU boots it directly.
//!
//! Under TCG most of a bzImage's boot is its decompressor running emulated:
//! Debian's xz-compressed 6.1 reaches its first panic in 4.5 s as a bzImage
//! and in 1.65 s as a vmlinux. Given an ELF, QEMU's `pc` machine boots it
//! through the PVH entry point that the kernel announces in an ELF note
//! (`XEN_ELFNOTE_PHYS32_ENTRY`, type 18, name `Xen`, in a `PT_NOTE` segment;
//! kernels built with `CONFIG_PVH=y` have it). Booting that way skips the
//! decompressor and also KASLR, which tests rarely need.
//!
//! [`uncompressed_kernel`] finds the compressed payload through the setup
//! header (see [`super::bzimage`]). The payload's first bytes name its
//! format; the kernel's build appends the uncompressed
//! size as 4 bytes, so every decoder here stops at the end of its stream and
//! ignores what follows. When the header is unusable, the image is scanned for
//! the formats' magic numbers as the kernel's `scripts/extract-vmlinux` does,
//! and the first candidate that decompresses to a complete x86-64 ELF wins.
//!
//! The result is cached as `<cache_dir>/vmlinux-<hash>`, `<hash>` being the
//! first 16 hex digits of the bzImage's SHA-256, written atomically
//! ([`crate::cache`]). A kernel without the PVH note leaves an empty
//! `vmlinux-<hash>.no-pvh` instead, so that the next run skips the decompression that found nothing.
//!
//! Every offset is computed with checked arithmetic and every decoder is
//! bounded, so a corrupt or truncated image is an error, never a panic.

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use object::elf;
use object::read::elf::{FileHeader, ProgramHeader, SectionHeader};
use object::Endianness;
use sha2::{Digest, Sha256};

use super::bzimage::{self, read_u32};
use crate::host::cache::{self, CacheError};

/// The most a payload may decompress to. Debian's stripped vmlinux is 55-65
/// MiB; anything past this is a corrupt stream or a decompression bomb.
const MAX_VMLINUX: usize = 1 << 30;
/// The largest output buffer reserved up front, from the payload's size
/// trailer; a larger vmlinux still decompresses, the buffer growing.
const MAX_SIZE_HINT: usize = 256 << 20;
/// The largest compression ratio the size trailer is believed for (Debian's
/// kernels: 8 for xz, 5 for zstd).
const MAX_RATIO_HINT: usize = 32;
/// The memory liblzma may use for xz and lzma. The kernel's xz uses a 32 MiB
/// dictionary and `lzma -9` a 64 MiB one.
const LZMA_MEMLIMIT: u64 = 256 << 20;
/// The largest zstd window accepted, as a power of two (`zstd -22 --ultra`,
/// which the kernel uses, needs 27).
const ZSTD_MAX_WINDOW_LOG: u32 = 30;
/// How many magic-number candidates a scan tries before giving up.
const MAX_SCAN_CANDIDATES: usize = 4096;

/// The lz4 legacy frame's magic, as the u32 it is stored as (LE `02 21 4c 18`).
const LZ4_LEGACY_MAGIC: u32 = 0x184C_2102;
/// The uncompressed size of an lz4 legacy block (the last may be shorter).
const LZ4_LEGACY_BLOCK: usize = 8 << 20;
/// The largest compressed lz4 legacy block: `LZ4_compressBound(8 MiB)`.
const LZ4_LEGACY_MAX_COMPRESSED: usize = LZ4_LEGACY_BLOCK + LZ4_LEGACY_BLOCK / 255 + 16;

/// The ELF magic.
const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
/// The name of the Xen ELF notes.
const XEN_NOTE_NAME: &[u8] = b"Xen";
/// `XEN_ELFNOTE_PHYS32_ENTRY`: the 32-bit physical PVH entry point.
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// What follows a cache entry's name to mark a kernel without the PVH note.
const NO_PVH_SUFFIX: &str = ".no-pvh";

/// A compression format the kernel's build can use for its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `CONFIG_KERNEL_GZIP`.
    Gzip,
    /// `CONFIG_KERNEL_XZ` (with the x86 BCJ filter).
    Xz,
    /// `CONFIG_KERNEL_ZSTD`.
    Zstd,
    /// `CONFIG_KERNEL_LZ4`, in lz4's legacy frame format.
    Lz4,
    /// `CONFIG_KERNEL_LZMA`, in the `.lzma` ("alone") format.
    Lzma,
    /// `CONFIG_KERNEL_BZIP2`.
    Bzip2,
    /// `CONFIG_KERNEL_LZO`, in lzop's format: recognised, not decompressed.
    Lzo,
}

impl Format {
    /// Every format, in the order the header path checks their magics.
    const ALL: [Format; 7] = [
        Format::Gzip,
        Format::Xz,
        Format::Zstd,
        Format::Lz4,
        Format::Lzma,
        Format::Bzip2,
        Format::Lzo,
    ];

    /// The bytes a payload in this format starts with.
    fn magic(self) -> &'static [u8] {
        match self {
            Format::Gzip => b"\x1f\x8b",
            Format::Xz => b"\xfd7zXZ\x00",
            Format::Zstd => b"\x28\xb5\x2f\xfd",
            Format::Lz4 => b"\x02\x21\x4c\x18",
            Format::Lzma => b"\x5d\x00\x00",
            Format::Bzip2 => b"BZh",
            Format::Lzo => b"\x89LZO",
        }
    }

    /// Whether `bytes` start like a stream in this format. Stricter than
    /// [`Format::magic`] where that is short, since a scan tests every offset.
    fn starts(self, bytes: &[u8]) -> bool {
        bytes.starts_with(self.magic())
            && match self {
                // Compression method 8 (deflate), as extract-vmlinux requires.
                Format::Gzip => bytes.get(2) == Some(&8),
                // The block size digit.
                Format::Bzip2 => bytes.get(3).is_some_and(|b| (b'1'..=b'9').contains(b)),
                _ => true,
            }
    }

    /// The format whose magic `payload` starts with.
    fn detect(payload: &[u8]) -> Option<Format> {
        Format::ALL
            .into_iter()
            .find(|format| payload.starts_with(format.magic()))
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Gzip => "gzip",
            Format::Xz => "xz",
            Format::Zstd => "zstd",
            Format::Lz4 => "lz4",
            Format::Lzma => "lzma",
            Format::Bzip2 => "bzip2",
            Format::Lzo => "lzo",
        })
    }
}

/// Why a kernel image's vmlinux could not be extracted.
///
/// None of these says the bzImage itself cannot boot (QEMU decides that):
/// a caller may report the error and boot the image as it is.
#[derive(Debug, thiserror::Error)]
pub enum VmlinuxError {
    /// The image could not be read.
    #[error("cannot read kernel image {path}: {source}")]
    Read {
        /// The image.
        path: PathBuf,
        /// The I/O failure.
        source: io::Error,
    },
    /// Neither the setup header nor a scan found a compressed kernel.
    #[error(
        "kernel image {path} holds no compressed kernel that could be found \
         ({header}, and no gzip, xz, zstd, lz4, lzma or bzip2 stream in it \
         decompresses to an x86-64 ELF); give an x86 bzImage (vmlinuz)"
    )]
    NoPayload {
        /// The image.
        path: PathBuf,
        /// What was wrong with the setup header.
        header: String,
    },
    /// The payload the setup header points at does not decompress.
    #[error("kernel image {path} has a corrupt {format} payload: {problem}")]
    Decompress {
        /// The image.
        path: PathBuf,
        /// The payload's format.
        format: Format,
        /// The decoder's complaint.
        problem: String,
    },
    /// The payload decompresses to something other than an x86-64 vmlinux.
    #[error("the {format} payload of kernel image {path} is not an x86-64 ELF vmlinux: {problem}")]
    NotVmlinux {
        /// The image.
        path: PathBuf,
        /// The payload's format.
        format: Format,
        /// What is wrong with it.
        problem: String,
    },
    /// The cache could not be written.
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// The uncompressed `vmlinux` of the bzImage `image`, extracted into (or
/// found in) `cache_dir`, which is created if missing.
///
/// `Ok(None)` means "boot `image` as it is": its kernel has no PVH entry
/// note, it is compressed with lzo (not supported here), or `image` is an
/// ELF already.
pub(crate) fn uncompressed_kernel(
    image: &Path,
    cache_dir: &Path,
) -> Result<Option<PathBuf>, VmlinuxError> {
    let bytes = fs::read(image).map_err(|source| VmlinuxError::Read {
        path: image.to_path_buf(),
        source,
    })?;
    let cached = cache_dir.join(format!("vmlinux-{}", short_hash(&bytes)));
    let mut no_pvh = cached.clone().into_os_string();
    no_pvh.push(NO_PVH_SUFFIX);
    let no_pvh = PathBuf::from(no_pvh);
    if cached.is_file() {
        return Ok(Some(cached));
    }
    if no_pvh.is_file() {
        return Ok(None);
    }
    match extract(image, &bytes)? {
        Extracted::Vmlinux(vmlinux) => {
            let name = cached.file_name().expect("a file name").to_string_lossy();
            Ok(Some(cache::store(cache_dir, &name, |file| {
                file.write_all(&vmlinux)
            })?))
        }
        Extracted::NoPvh => {
            let name = no_pvh.file_name().expect("a file name").to_string_lossy();
            cache::store(cache_dir, &name, |_| Ok(()))?;
            Ok(None)
        }
        Extracted::Unsupported => Ok(None),
    }
}

/// The cache's name for the SHA-256 of `bytes`.
fn short_hash(bytes: &[u8]) -> String {
    cache::entry_name(&Sha256::digest(bytes))
}

/// What an image holds, as far as booting it through PVH goes.
#[derive(Debug)]
enum Extracted {
    /// A complete x86-64 vmlinux with the PVH note.
    Vmlinux(Vec<u8>),
    /// A complete x86-64 vmlinux without the PVH note.
    NoPvh,
    /// An lzo payload, or an image that is an ELF already.
    Unsupported,
}

/// The vmlinux in the bzImage `bytes` (read from `path`, for messages).
fn extract(path: &Path, bytes: &[u8]) -> Result<Extracted, VmlinuxError> {
    if bytes.starts_with(ELF_MAGIC) {
        return Ok(Extracted::Unsupported);
    }
    let header_problem = match payload_from_header(bytes) {
        Ok((payload, format)) => return extract_payload(path, payload, format),
        Err(problem) => problem,
    };
    scan(bytes).ok_or_else(|| VmlinuxError::NoPayload {
        path: path.to_path_buf(),
        header: header_problem,
    })
}

/// Decompresses and checks the payload the setup header pointed at.
fn extract_payload(path: &Path, payload: &[u8], format: Format) -> Result<Extracted, VmlinuxError> {
    if format == Format::Lzo {
        return Ok(Extracted::Unsupported);
    }
    // The kernel's build appends the uncompressed size: a good first guess,
    // trusted only as far as a damaged image could not make it absurd.
    let size_hint = payload
        .len()
        .checked_sub(4)
        .and_then(|at| read_u32(payload, at))
        .map_or(0, |size| {
            (size as usize)
                .min(payload.len().saturating_mul(MAX_RATIO_HINT))
                .min(MAX_SIZE_HINT)
        });
    let vmlinux = decompress(format, payload, size_hint).map_err(|err| match err {
        DecodeError::Corrupt(problem) => VmlinuxError::Decompress {
            path: path.to_path_buf(),
            format,
            problem,
        },
        DecodeError::NotElf => VmlinuxError::NotVmlinux {
            path: path.to_path_buf(),
            format,
            problem: "it does not start with the ELF magic".to_string(),
        },
    })?;
    match check_vmlinux(&vmlinux) {
        Ok(true) => Ok(Extracted::Vmlinux(vmlinux)),
        Ok(false) => Ok(Extracted::NoPvh),
        Err(problem) => Err(VmlinuxError::NotVmlinux {
            path: path.to_path_buf(),
            format,
            problem,
        }),
    }
}

/// The payload the setup header describes, with its format, or what is
/// wrong with the header.
fn payload_from_header(bytes: &[u8]) -> Result<(&[u8], Format), String> {
    let payload = bzimage::payload(bytes)?;
    match Format::detect(payload) {
        Some(format) => Ok((payload, format)),
        None => Err(format!(
            "its header's payload starts with unknown bytes {:02x?}",
            &payload[..payload.len().min(6)]
        )),
    }
}

/// Looks for a compressed vmlinux at every offset of `bytes` where a format's
/// magic number appears, as `scripts/extract-vmlinux` does.
fn scan(bytes: &[u8]) -> Option<Extracted> {
    let mut lzo_seen = false;
    let mut tried = 0;
    for at in 0..bytes.len() {
        let rest = &bytes[at..];
        for format in Format::ALL {
            if !format.starts(rest) {
                continue;
            }
            if format == Format::Lzo {
                lzo_seen = true;
                continue;
            }
            if tried == MAX_SCAN_CANDIDATES {
                return lzo_seen.then_some(Extracted::Unsupported);
            }
            tried += 1;
            let Ok(vmlinux) = decompress(format, rest, 0) else {
                continue;
            };
            match check_vmlinux(&vmlinux) {
                Ok(true) => return Some(Extracted::Vmlinux(vmlinux)),
                Ok(false) => return Some(Extracted::NoPvh),
                Err(_) => continue,
            }
        }
    }
    lzo_seen.then_some(Extracted::Unsupported)
}

/// Why a stream did not decompress to something ELF-like.
#[derive(Debug)]
enum DecodeError {
    /// The decoder failed, or the output outgrew [`MAX_VMLINUX`].
    Corrupt(String),
    /// The output does not start with the ELF magic.
    NotElf,
}

/// Decompresses the one `format` stream at the start of `input`, ignoring
/// whatever follows it. Gives up early if the output is no ELF.
fn decompress(format: Format, input: &[u8], size_hint: usize) -> Result<Vec<u8>, DecodeError> {
    let corrupt = |err: io::Error| DecodeError::Corrupt(err.to_string());
    let lzma = |err: liblzma::stream::Error| DecodeError::Corrupt(err.to_string());
    let mut reader: Box<dyn Read + '_> = match format {
        Format::Gzip => Box::new(flate2::bufread::GzDecoder::new(input)),
        Format::Xz => Box::new(LzmaReader::new(
            liblzma::stream::Stream::new_stream_decoder(LZMA_MEMLIMIT, 0).map_err(lzma)?,
            input,
        )),
        Format::Lzma => Box::new(LzmaReader::new(
            liblzma::stream::Stream::new_lzma_decoder(LZMA_MEMLIMIT).map_err(lzma)?,
            input,
        )),
        Format::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(input)
                .map_err(corrupt)?
                .single_frame();
            decoder
                .window_log_max(ZSTD_MAX_WINDOW_LOG)
                .map_err(corrupt)?;
            Box::new(decoder)
        }
        Format::Bzip2 => Box::new(bzip2::bufread::BzDecoder::new(input)),
        Format::Lz4 => Box::new(Lz4LegacyReader::new(input).map_err(corrupt)?),
        Format::Lzo => return Err(DecodeError::Corrupt("lzo is not supported".to_string())),
    };
    let mut magic = [0; 4];
    reader.read_exact(&mut magic).map_err(corrupt)?;
    if &magic != ELF_MAGIC {
        return Err(DecodeError::NotElf);
    }
    let mut out = Vec::with_capacity(size_hint.max(magic.len()));
    out.extend_from_slice(&magic);
    let limit = (MAX_VMLINUX - magic.len() + 1) as u64;
    reader.take(limit).read_to_end(&mut out).map_err(corrupt)?;
    if out.len() > MAX_VMLINUX {
        return Err(DecodeError::Corrupt(format!(
            "it decompresses to more than {} MiB",
            MAX_VMLINUX >> 20
        )));
    }
    Ok(out)
}

/// A reader over one xz or lzma stream that stops at the stream's end,
/// whatever bytes follow it (`liblzma`'s own readers call those corrupt).
struct LzmaReader<'a> {
    /// The liblzma decoder.
    stream: liblzma::stream::Stream,
    /// The input not yet consumed.
    input: &'a [u8],
    /// Whether the stream has ended.
    done: bool,
}

impl<'a> LzmaReader<'a> {
    fn new(stream: liblzma::stream::Stream, input: &'a [u8]) -> Self {
        LzmaReader {
            stream,
            input,
            done: false,
        }
    }
}

impl Read for LzmaReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        loop {
            let (in_before, out_before) = (self.stream.total_in(), self.stream.total_out());
            let action = if self.input.is_empty() {
                liblzma::stream::Action::Finish
            } else {
                liblzma::stream::Action::Run
            };
            let status = self
                .stream
                .process(self.input, buf, action)
                .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
            let consumed =
                usize::try_from(self.stream.total_in() - in_before).unwrap_or(usize::MAX);
            let produced = usize::try_from(self.stream.total_out() - out_before).unwrap_or(0);
            self.input = self.input.get(consumed..).unwrap_or_default();
            if status == liblzma::stream::Status::StreamEnd {
                self.done = true;
                return Ok(produced);
            }
            if produced > 0 {
                return Ok(produced);
            }
            if consumed == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the stream ends before its end marker",
                ));
            }
        }
    }
}

/// A reader over an lz4 legacy frame, which the kernel's lz4 payloads use and
/// `lz4_flex` does not read: the magic, then blocks of at most
/// [`LZ4_LEGACY_BLOCK`] bytes uncompressed, each a u32 (little-endian)
/// compressed size and that many bytes. The frame has no end marker: it ends
/// where the input does or where no plausible block header follows (the
/// kernel's 4-byte size trailer, or the bytes after the payload in a scan).
/// A repeated magic starts a new frame and is skipped. A stream cut short
/// therefore reads as a short vmlinux, which [`check_vmlinux`] rejects.
struct Lz4LegacyReader<'a> {
    /// The input after the blocks decoded so far.
    input: &'a [u8],
    /// The current block, decompressed.
    block: Vec<u8>,
    /// How much of `block` holds data.
    len: usize,
    /// How much of that has been read.
    pos: usize,
    /// Whether a block has been decoded yet.
    started: bool,
}

impl<'a> Lz4LegacyReader<'a> {
    fn new(input: &'a [u8]) -> io::Result<Self> {
        let Some((LZ4_LEGACY_MAGIC, input)) = split_u32(input) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "no lz4 legacy frame magic",
            ));
        };
        Ok(Lz4LegacyReader {
            input,
            block: Vec::new(),
            len: 0,
            pos: 0,
            started: false,
        })
    }

    /// Decodes the next block; false at the end of the frame.
    fn next_block(&mut self) -> io::Result<bool> {
        while let Some((size, rest)) = split_u32(self.input) {
            if size == LZ4_LEGACY_MAGIC {
                self.input = rest;
                continue;
            }
            let size = size as usize;
            if size == 0 || size > LZ4_LEGACY_MAX_COMPRESSED || size > rest.len() {
                break;
            }
            let (compressed, rest) = rest.split_at(size);
            if self.block.is_empty() {
                // Zeroed by the allocator, not a loop: cheap for a false start in a scan.
                self.block = vec![0; LZ4_LEGACY_BLOCK];
            }
            self.len = lz4_flex::block::decompress_into(compressed, &mut self.block)
                .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err.to_string()))?;
            self.pos = 0;
            self.input = rest;
            self.started = true;
            return Ok(true);
        }
        if self.started {
            Ok(false)
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the lz4 frame has no valid block",
            ))
        }
    }
}

impl Read for Lz4LegacyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.len {
            if buf.is_empty() || !self.next_block()? {
                return Ok(0);
            }
        }
        let available = self.block.get(self.pos..self.len).unwrap_or_default();
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.pos += n;
        Ok(n)
    }
}

/// Checks that `data` is a complete x86-64 ELF executable: every segment and
/// section lies within it (a truncated stream fails here). Tells whether it
/// has the PVH entry note QEMU boots it through.
fn check_vmlinux(data: &[u8]) -> Result<bool, String> {
    let header = elf::FileHeader64::<Endianness>::parse(data)
        .map_err(|err| format!("not an ELF64 file ({err})"))?;
    let endian = header
        .endian()
        .map_err(|err| format!("bad ELF header ({err})"))?;
    if endian != Endianness::Little || header.e_machine(endian) != elf::EM_X86_64 {
        return Err(format!(
            "an ELF for machine {} rather than little-endian x86-64 ({})",
            header.e_machine(endian),
            elf::EM_X86_64
        ));
    }
    if header.e_type(endian) != elf::ET_EXEC {
        return Err(format!(
            "an ELF of type {} rather than an executable",
            header.e_type(endian)
        ));
    }
    let segments = header
        .program_headers(endian, data)
        .map_err(|err| format!("bad program headers ({err})"))?;
    if segments.is_empty() {
        return Err("an ELF without program headers".to_string());
    }
    let mut pvh = false;
    for segment in segments {
        if segment.data(endian, data).is_err() {
            return Err(format!(
                "a segment runs past the end of the {} byte file (truncated?)",
                data.len()
            ));
        }
        let Some(mut notes) = segment
            .notes(endian, data)
            .map_err(|err| format!("bad note segment ({err})"))?
        else {
            continue;
        };
        while let Some(note) = notes
            .next()
            .map_err(|err| format!("bad note segment ({err})"))?
        {
            if note.name() == XEN_NOTE_NAME
                && note.n_type(endian) == XEN_ELFNOTE_PHYS32_ENTRY
                && read_u32(note.desc(), 0).is_some_and(|entry| entry != 0)
            {
                pvh = true;
            }
        }
    }
    let sections = header
        .sections(endian, data)
        .map_err(|err| format!("bad section headers ({err}; truncated?)"))?;
    for section in sections.iter() {
        if section.sh_type(endian) != elf::SHT_NOBITS && section.data(endian, data).is_err() {
            return Err(format!(
                "a section runs past the end of the {} byte file (truncated?)",
                data.len()
            ));
        }
    }
    Ok(pvh)
}

/// The little-endian u32 `bytes` start with, and the bytes after it.
fn split_u32(bytes: &[u8]) -> Option<(u32, &[u8])> {
    Some((read_u32(bytes, 0)?, bytes.get(4..)?))
}

#[cfg(test)]
mod tests {
    use super::bzimage::{
        MAGIC as HEADER_MAGIC, MAGIC_OFFSET as HEADER_MAGIC_OFFSET, PAYLOAD_LENGTH_OFFSET,
        PAYLOAD_OFFSET_OFFSET, PROTOCOL_OFFSET, SECTOR, SETUP_SECTS_OFFSET,
    };
    use super::*;
    use crate::media::test_kernels;
    use std::time::Instant;

    /// Where the tiny ELF's PVH entry points.
    const ENTRY: u32 = 0x0100_0000;
    /// `setup_sects` of the synthetic images (Debian's are 39, written as 0x27).
    const SETUP_SECTS: u8 = 3;
    /// Where the payload starts past the synthetic protected-mode code.
    const PAYLOAD_OFFSET: usize = 0x3c0;

    /// Deterministic pseudo-random numbers (xorshift64*).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// A note of `name` and type `n_type` whose desc is `entry`.
    fn note(name: &[u8], n_type: u32, entry: u32) -> Vec<u8> {
        let mut note = Vec::new();
        note.extend_from_slice(&(name.len() as u32 + 1).to_le_bytes());
        note.extend_from_slice(&4u32.to_le_bytes());
        note.extend_from_slice(&n_type.to_le_bytes());
        note.extend_from_slice(name);
        note.push(0);
        while note.len() % 4 != 0 {
            note.push(0);
        }
        note.extend_from_slice(&entry.to_le_bytes());
        note
    }

    /// A small but complete ELF64 executable for `machine`: a load segment
    /// over 48 KiB of compressible bytes, a note segment holding `notes`, and
    /// section headers at the end, as in a real vmlinux.
    fn tiny_elf(machine: u16, notes: &[u8]) -> Vec<u8> {
        const EHDR: usize = 64;
        const PHDR: usize = 56;
        const SHDR: usize = 64;
        let notes_at = EHDR + 2 * PHDR;
        let body_at = notes_at + notes.len();
        let mut rng = Rng(7);
        let body: Vec<u8> = (0..48 * 1024)
            .map(|_| b"\x0f\x1f\x44\x00\x00\x48\x89\xe5\xc3\x90"[rng.below(10)])
            .collect();
        let strtab = b"\0.notes\0.shstrtab\0";
        let strtab_at = body_at + body.len();
        let shdrs_at = (strtab_at + strtab.len() + 7) & !7;
        let mut elf = vec![0; shdrs_at];
        let put = |elf: &mut Vec<u8>, at: usize, bytes: &[u8]| {
            elf[at..at + bytes.len()].copy_from_slice(bytes)
        };
        put(&mut elf, 0, b"\x7fELF\x02\x01\x01");
        put(&mut elf, 16, &elf::ET_EXEC.to_le_bytes());
        put(&mut elf, 18, &machine.to_le_bytes());
        put(&mut elf, 20, &1u32.to_le_bytes());
        put(&mut elf, 24, &u64::from(ENTRY).to_le_bytes());
        put(&mut elf, 32, &(EHDR as u64).to_le_bytes());
        put(&mut elf, 40, &(shdrs_at as u64).to_le_bytes());
        put(&mut elf, 52, &(EHDR as u16).to_le_bytes());
        put(&mut elf, 54, &(PHDR as u16).to_le_bytes());
        put(&mut elf, 56, &2u16.to_le_bytes());
        put(&mut elf, 58, &(SHDR as u16).to_le_bytes());
        put(&mut elf, 60, &3u16.to_le_bytes());
        put(&mut elf, 62, &2u16.to_le_bytes());
        // PT_LOAD over everything before the section headers, then PT_NOTE.
        let phdr = |p_type: u32, offset: usize, size: usize, align: u64| {
            let mut phdr = Vec::new();
            phdr.extend_from_slice(&p_type.to_le_bytes());
            phdr.extend_from_slice(&5u32.to_le_bytes());
            phdr.extend_from_slice(&(offset as u64).to_le_bytes());
            for addr in [ENTRY, ENTRY] {
                phdr.extend_from_slice(&(u64::from(addr) + offset as u64).to_le_bytes());
            }
            phdr.extend_from_slice(&(size as u64).to_le_bytes());
            phdr.extend_from_slice(&(size as u64).to_le_bytes());
            phdr.extend_from_slice(&align.to_le_bytes());
            phdr
        };
        put(&mut elf, EHDR, &phdr(elf::PT_LOAD, 0, shdrs_at, 0x1000));
        put(
            &mut elf,
            EHDR + PHDR,
            &phdr(elf::PT_NOTE, notes_at, notes.len(), 4),
        );
        put(&mut elf, notes_at, notes);
        put(&mut elf, body_at, &body);
        put(&mut elf, strtab_at, strtab);
        // Section headers: null, .notes, .shstrtab.
        let shdr = |name: u32, sh_type: u32, offset: usize, size: usize| {
            let mut shdr = Vec::new();
            shdr.extend_from_slice(&name.to_le_bytes());
            shdr.extend_from_slice(&sh_type.to_le_bytes());
            shdr.extend_from_slice(&[0; 16]);
            shdr.extend_from_slice(&(offset as u64).to_le_bytes());
            shdr.extend_from_slice(&(size as u64).to_le_bytes());
            shdr.extend_from_slice(&[0; 8]);
            shdr.extend_from_slice(&1u64.to_le_bytes());
            shdr.extend_from_slice(&[0; 8]);
            shdr
        };
        elf.extend(shdr(0, elf::SHT_NULL, 0, 0));
        elf.extend(shdr(1, elf::SHT_NOTE, notes_at, notes.len()));
        elf.extend(shdr(8, elf::SHT_STRTAB, strtab_at, strtab.len()));
        elf
    }

    /// A vmlinux as the tests want it: x86-64, with the PVH note among others.
    fn pvh_elf() -> Vec<u8> {
        let mut notes = note(b"GNU", 3, 0x1234_5678);
        notes.extend(note(XEN_NOTE_NAME, XEN_ELFNOTE_PHYS32_ENTRY, ENTRY));
        tiny_elf(elf::EM_X86_64, &notes)
    }

    /// `data` compressed as the kernel's build does for `format`, with its
    /// size appended (`size_append` in the kernel's Makefiles).
    fn compress(format: Format, data: &[u8]) -> Vec<u8> {
        let mut out = match format {
            Format::Gzip => {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                gz.write_all(data).unwrap();
                gz.finish().unwrap()
            }
            Format::Xz => {
                let mut filters = liblzma::stream::Filters::new();
                filters.x86();
                filters.lzma2(&liblzma::stream::LzmaOptions::new_preset(6).unwrap());
                let stream = liblzma::stream::Stream::new_stream_encoder(
                    &filters,
                    liblzma::stream::Check::Crc32,
                )
                .unwrap();
                let mut xz = liblzma::write::XzEncoder::new_stream(Vec::new(), stream);
                xz.write_all(data).unwrap();
                xz.finish().unwrap()
            }
            Format::Lzma => {
                let options = liblzma::stream::LzmaOptions::new_preset(6).unwrap();
                let stream = liblzma::stream::Stream::new_lzma_encoder(&options).unwrap();
                let mut lzma = liblzma::write::XzEncoder::new_stream(Vec::new(), stream);
                lzma.write_all(data).unwrap();
                lzma.finish().unwrap()
            }
            Format::Zstd => zstd::stream::encode_all(data, 19).unwrap(),
            Format::Bzip2 => {
                let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
                bz.write_all(data).unwrap();
                bz.finish().unwrap()
            }
            Format::Lz4 => {
                // Small blocks, so that the reader crosses block boundaries.
                let mut lz4 = LZ4_LEGACY_MAGIC.to_le_bytes().to_vec();
                for chunk in data.chunks(20_000) {
                    let block = lz4_flex::block::compress(chunk);
                    lz4.extend_from_slice(&(block.len() as u32).to_le_bytes());
                    lz4.extend(block);
                }
                lz4
            }
            Format::Lzo => {
                let mut lzo = b"\x89LZO\x00\x0d\x0a\x1a\x0a".to_vec();
                lzo.extend_from_slice(&data[..64]);
                lzo
            }
        };
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out
    }

    /// A bzImage whose setup header points at `payload`, with made-up code
    /// around it.
    fn bzimage_with(setup_sects: u8, payload: &[u8]) -> Vec<u8> {
        let sects = if setup_sects == 0 {
            4
        } else {
            usize::from(setup_sects)
        };
        let code = (sects + 1) * SECTOR;
        let mut image: Vec<u8> = (0..code + PAYLOAD_OFFSET)
            .map(|i| (i % 251) as u8)
            .collect();
        image[SETUP_SECTS_OFFSET] = setup_sects;
        image[0x1FE..0x200].copy_from_slice(&[0x55, 0xAA]);
        image[HEADER_MAGIC_OFFSET..HEADER_MAGIC_OFFSET + 4].copy_from_slice(HEADER_MAGIC);
        image[PROTOCOL_OFFSET..PROTOCOL_OFFSET + 2].copy_from_slice(&0x020Fu16.to_le_bytes());
        image[PAYLOAD_OFFSET_OFFSET..PAYLOAD_OFFSET_OFFSET + 4]
            .copy_from_slice(&(PAYLOAD_OFFSET as u32).to_le_bytes());
        image[PAYLOAD_LENGTH_OFFSET..PAYLOAD_LENGTH_OFFSET + 4]
            .copy_from_slice(&(payload.len() as u32).to_le_bytes());
        image.extend_from_slice(payload);
        // The rest of the decompressor, as in a real bzImage.
        image.extend((0..3000).map(|i| (i % 7) as u8 | 0x90));
        image
    }

    fn bzimage(format: Format, vmlinux: &[u8]) -> Vec<u8> {
        bzimage_with(SETUP_SECTS, &compress(format, vmlinux))
    }

    /// The formats that can be extracted: all but lzo.
    fn decodable() -> impl Iterator<Item = Format> {
        Format::ALL
            .into_iter()
            .filter(|&format| format != Format::Lzo)
    }

    /// Writes `image` into `dir` and extracts it into `dir/cache`.
    fn run(dir: &Path, name: &str, image: &[u8]) -> Result<Option<PathBuf>, VmlinuxError> {
        let path = dir.join(name);
        fs::write(&path, image).unwrap();
        uncompressed_kernel(&path, &dir.join("cache"))
    }

    /// The names in `dir` that look like unfinished temporary files.
    fn leftovers(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".tmp"))
            .collect()
    }

    #[test]
    fn every_supported_format_is_extracted() {
        let dir = tempfile::tempdir().unwrap();
        let vmlinux = pvh_elf();
        for format in decodable() {
            let image = bzimage(format, &vmlinux);
            let path = run(dir.path(), &format!("vmlinuz-{format}"), &image)
                .unwrap_or_else(|err| panic!("{format}: {err}"))
                .unwrap_or_else(|| panic!("{format}: no vmlinux"));
            assert_eq!(fs::read(&path).unwrap(), vmlinux, "{format}");
            let name = path.file_name().unwrap().to_str().unwrap();
            assert_eq!(name, format!("vmlinux-{}", short_hash(&image)), "{format}");
            assert_eq!(name.len(), "vmlinux-".len() + 32);
            assert_eq!(path.parent(), Some(dir.path().join("cache").as_path()));
        }
        assert_eq!(leftovers(&dir.path().join("cache")), Vec::<String>::new());
    }

    #[test]
    fn zero_setup_sects_means_four() {
        let dir = tempfile::tempdir().unwrap();
        let vmlinux = pvh_elf();
        let image = bzimage_with(0, &compress(Format::Xz, &vmlinux));
        assert_eq!(payload_from_header(&image).unwrap().1, Format::Xz);
        let path = run(dir.path(), "vmlinuz", &image).unwrap().unwrap();
        assert_eq!(fs::read(path).unwrap(), vmlinux);
    }

    #[test]
    fn the_cached_vmlinux_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let image_path = dir.path().join("vmlinuz");
        fs::write(&image_path, bzimage(Format::Zstd, &pvh_elf())).unwrap();
        let cache = dir.path().join("deep/cache/dir");
        let first = uncompressed_kernel(&image_path, &cache).unwrap().unwrap();
        fs::write(&first, b"sentinel").unwrap();
        let second = uncompressed_kernel(&image_path, &cache).unwrap().unwrap();
        assert_eq!(first, second);
        assert_eq!(fs::read(&second).unwrap(), b"sentinel");
        // Another image gets another entry.
        fs::write(&image_path, bzimage(Format::Gzip, &pvh_elf())).unwrap();
        let third = uncompressed_kernel(&image_path, &cache).unwrap().unwrap();
        assert_ne!(third, first);
        assert_eq!(fs::read(&third).unwrap(), pvh_elf());
    }

    #[test]
    fn a_kernel_without_the_pvh_note_is_booted_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("none", tiny_elf(elf::EM_X86_64, &note(b"GNU", 3, 1))),
            (
                "other-name",
                tiny_elf(
                    elf::EM_X86_64,
                    &note(b"Linux", XEN_ELFNOTE_PHYS32_ENTRY, ENTRY),
                ),
            ),
            (
                "other-type",
                tiny_elf(elf::EM_X86_64, &note(XEN_NOTE_NAME, 17, ENTRY)),
            ),
            (
                "zero-entry",
                tiny_elf(
                    elf::EM_X86_64,
                    &note(XEN_NOTE_NAME, XEN_ELFNOTE_PHYS32_ENTRY, 0),
                ),
            ),
        ];
        for (name, vmlinux) in cases {
            let image = bzimage(Format::Xz, &vmlinux);
            assert!(run(dir.path(), name, &image).unwrap().is_none(), "{name}");
            let marker = dir.path().join(format!(
                "cache/vmlinux-{}{NO_PVH_SUFFIX}",
                short_hash(&image)
            ));
            assert!(marker.is_file(), "{name}");
            // The marker answers the second time, without decompressing.
            assert!(run(dir.path(), name, &image).unwrap().is_none(), "{name}");
        }
    }

    #[test]
    fn lzo_and_elf_images_are_booted_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let lzo = bzimage(Format::Lzo, &pvh_elf());
        assert!(run(dir.path(), "lzo", &lzo).unwrap().is_none());
        assert!(run(dir.path(), "vmlinux", &pvh_elf()).unwrap().is_none());
        // Nothing was cached for either.
        assert!(!dir.path().join("cache").exists());
    }

    #[test]
    fn a_payload_that_is_no_x86_vmlinux_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let notes = note(XEN_NOTE_NAME, XEN_ELFNOTE_PHYS32_ENTRY, ENTRY);
        let arm = bzimage(Format::Gzip, &tiny_elf(elf::EM_AARCH64, &notes));
        let err = run(dir.path(), "arm", &arm).unwrap_err();
        assert!(matches!(err, VmlinuxError::NotVmlinux { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains("arm") && message.contains("machine 183"),
            "{message}"
        );

        let text = bzimage(Format::Zstd, &[b'x'; 5000]);
        let err = run(dir.path(), "text", &text).unwrap_err();
        assert!(matches!(err, VmlinuxError::NotVmlinux { .. }), "{err:?}");
        assert!(err.to_string().contains("ELF magic"), "{err}");

        // A vmlinux cut short: its section headers are missing.
        let vmlinux = pvh_elf();
        let short = bzimage(Format::Lz4, &vmlinux[..vmlinux.len() - 100]);
        let err = run(dir.path(), "short", &short).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn a_corrupt_payload_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let vmlinux = pvh_elf();
        for format in decodable() {
            // The header still points at the whole (cut) stream.
            let mut payload = compress(format, &vmlinux);
            payload.truncate(payload.len() * 2 / 3);
            let image = bzimage_with(SETUP_SECTS, &payload);
            let err = run(dir.path(), &format!("cut-{format}"), &image).unwrap_err();
            let message = err.to_string();
            assert!(message.contains(&format!("cut-{format}")), "{message}");
            assert!(
                matches!(
                    err,
                    VmlinuxError::Decompress { .. } | VmlinuxError::NotVmlinux { .. }
                ),
                "{format}: {err:?}"
            );
        }
    }

    #[test]
    fn a_broken_header_falls_back_to_scanning() {
        let dir = tempfile::tempdir().unwrap();
        let vmlinux = pvh_elf();
        for format in decodable() {
            let image = bzimage(format, &vmlinux);
            let mut no_length = image.clone();
            no_length[PAYLOAD_LENGTH_OFFSET..PAYLOAD_LENGTH_OFFSET + 4].fill(0xff);
            let mut no_magic = image.clone();
            no_magic[HEADER_MAGIC_OFFSET] = b'X';
            let mut old = image.clone();
            old[PROTOCOL_OFFSET..PROTOCOL_OFFSET + 2].copy_from_slice(&0x0206u16.to_le_bytes());
            for (name, image) in [
                ("no-length", no_length),
                ("no-magic", no_magic),
                ("old", old),
            ] {
                let name = format!("{name}-{format}");
                assert!(payload_from_header(&image).is_err(), "{name}");
                let path = run(dir.path(), &name, &image)
                    .unwrap_or_else(|err| panic!("{name}: {err}"))
                    .unwrap_or_else(|| panic!("{name}: no vmlinux"));
                assert_eq!(fs::read(path).unwrap(), vmlinux, "{name}");
            }
        }
    }

    #[test]
    fn bad_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let err = uncompressed_kernel(&missing, dir.path()).unwrap_err();
        assert!(matches!(err, VmlinuxError::Read { .. }), "{err:?}");
        assert!(err.to_string().contains("missing"), "{err}");

        let mut rng = Rng(3);
        let noise: Vec<u8> = (0..100_000).map(|_| rng.next() as u8).collect();
        for (name, bytes) in [("empty", &[][..]), ("noise", &noise[..])] {
            let err = run(dir.path(), name, bytes).unwrap_err();
            assert!(matches!(err, VmlinuxError::NoPayload { .. }), "{err:?}");
            let message = err.to_string();
            assert!(
                message.contains(name) && message.contains("HdrS"),
                "{message}"
            );
        }

        let not_a_dir = dir.path().join("file");
        fs::write(&not_a_dir, b"").unwrap();
        let image = dir.path().join("vmlinuz");
        fs::write(&image, bzimage(Format::Gzip, &pvh_elf())).unwrap();
        let err = uncompressed_kernel(&image, &not_a_dir).unwrap_err();
        assert!(matches!(err, VmlinuxError::Cache { .. }), "{err:?}");
        assert!(err.to_string().contains("file"), "{err}");
    }

    /// Truncations and corruptions of every format's image: no panic, no
    /// hang, and whatever is returned as a vmlinux is a valid one.
    #[test]
    fn damaged_images_never_panic() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let image_path = dir.path().join("vmlinuz");
        let vmlinux = pvh_elf();
        let mut rng = Rng(0x5eed);
        let mut outcomes = [0usize; 3];
        for format in Format::ALL {
            let image = bzimage(format, &vmlinux);
            let mut variants = Vec::new();
            for _ in 0..40 {
                variants.push(image[..rng.below(image.len())].to_vec());
            }
            for end in [0x1F1, 0x206, 0x24C, 0x250, SECTOR * 4] {
                variants.push(image[..end].to_vec());
            }
            for _ in 0..120 {
                let mut damaged = image.clone();
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(damaged.len());
                    damaged[at] ^= 1 << rng.below(8);
                }
                variants.push(damaged);
            }
            for field in [
                SETUP_SECTS_OFFSET,
                PAYLOAD_OFFSET_OFFSET,
                PAYLOAD_LENGTH_OFFSET,
            ] {
                for value in [0u8, 0x7f, 0xff] {
                    let mut damaged = image.clone();
                    damaged[field..field + 4].fill(value);
                    variants.push(damaged);
                }
            }
            for damaged in variants {
                fs::write(&image_path, &damaged).unwrap();
                match uncompressed_kernel(&image_path, &cache) {
                    Ok(Some(path)) => {
                        assert_eq!(check_vmlinux(&fs::read(path).unwrap()), Ok(true));
                        outcomes[0] += 1;
                    }
                    Ok(None) => outcomes[1] += 1,
                    Err(err) => {
                        assert!(err.to_string().contains("vmlinuz"), "{err}");
                        outcomes[2] += 1;
                    }
                }
            }
        }
        eprintln!("extracted / none / error: {outcomes:?}");
        assert!(outcomes[0] > 0 && outcomes[2] > 0, "{outcomes:?}");
    }

    #[test]
    fn concurrent_extractions_agree() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("vmlinuz");
        fs::write(&image, bzimage(Format::Xz, &pvh_elf())).unwrap();
        let cache = dir.path().join("cache");
        let paths: Vec<PathBuf> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| uncompressed_kernel(&image, &cache).unwrap().unwrap()))
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        assert!(paths.iter().all(|path| path == &paths[0]), "{paths:?}");
        assert_eq!(fs::read(&paths[0]).unwrap(), pvh_elf());
        assert_eq!(leftovers(&cache), Vec::<String>::new());
    }

    /// Debian's 6.1 (xz) and 6.12 (zstd): both have the PVH note.
    #[test]
    fn real_kernels_are_extracted() {
        let kernels = test_kernels::dir();
        let cache = tempfile::tempdir().unwrap();
        for (kernel, format) in test_kernels::KERNELS
            .into_iter()
            .zip([Format::Xz, Format::Zstd])
        {
            let image = test_kernels::vmlinuz(&kernels.join(kernel).join("boot"));
            let bytes = fs::read(&image).unwrap();
            let (payload, found) = payload_from_header(&bytes).unwrap();
            assert_eq!(found, format, "{kernel}");
            let started = Instant::now();
            let path = uncompressed_kernel(&image, cache.path())
                .unwrap_or_else(|err| panic!("{kernel}: {err}"))
                .unwrap_or_else(|| panic!("{kernel}: no PVH note"));
            let first = started.elapsed();
            let vmlinux = fs::read(&path).unwrap();
            assert_eq!(check_vmlinux(&vmlinux), Ok(true), "{kernel}");
            // The build's size trailer agrees with what came out.
            let trailer = read_u32(payload, payload.len() - 4).unwrap();
            assert_eq!(vmlinux.len(), trailer as usize, "{kernel}");
            let started = Instant::now();
            let again = uncompressed_kernel(&image, cache.path()).unwrap();
            let cached = started.elapsed();
            assert_eq!(again, Some(path), "{kernel}");
            eprintln!(
                "{kernel} ({format}): {} -> {} bytes, first {first:?}, cached {cached:?}",
                bytes.len(),
                vmlinux.len()
            );
        }
    }
}
