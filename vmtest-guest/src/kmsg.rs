//! The guest kernel's log, read as it is written, from `/dev/kmsg`: one
//! record per read (`prio,seq,usec,flags;text\n` then optional ` KEY=value`
//! lines, see `Documentation/ABI/testing/dev-kmsg`).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;

use rustix::fs::OFlags;
use rustix::io::Errno;

/// The kernel refuses reads into a buffer smaller than the record.
const RECORD_BUFFER: usize = 8192;

/// A reader positioned after the records logged before it was opened.
pub(super) struct KernelLog {
    file: File,
}

impl KernelLog {
    pub(super) fn open() -> io::Result<KernelLog> {
        let mut file = OpenOptions::new()
            .read(true)
            .custom_flags((OFlags::NONBLOCK | OFlags::CLOEXEC).bits() as i32)
            .open("/dev/kmsg")?;
        file.seek(SeekFrom::End(0))?;
        Ok(KernelLog { file })
    }

    /// The text of every record logged since the last call.
    pub(super) fn read_new(&mut self) -> Vec<String> {
        let mut records = Vec::new();
        let mut buffer = vec![0u8; RECORD_BUFFER];
        loop {
            match self.file.read(&mut buffer) {
                Ok(0) => return records,
                Ok(read) => {
                    if let Some(text) = record_text(&buffer[..read]) {
                        records.push(text);
                    }
                }
                Err(error) => match error.raw_os_error() {
                    Some(code) if code == Errno::INTR.raw_os_error() => continue,
                    // Records were overwritten before we read them: go on
                    // with the next.
                    Some(code) if code == Errno::PIPE.raw_os_error() => continue,
                    // EAGAIN: nothing more; anything else: give up for now.
                    _ => return records,
                },
            }
        }
    }
}

impl AsFd for KernelLog {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// The message of one `/dev/kmsg` record, without its prefix and its
/// dictionary lines; the kernel escapes unprintable bytes as `\xNN`.
fn record_text(record: &[u8]) -> Option<String> {
    let record = String::from_utf8_lossy(record);
    let (_prefix, rest) = record.split_once(';')?;
    Some(rest.lines().next().unwrap_or_default().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_is_the_part_after_the_prefix() {
        assert_eq!(
            record_text(
                b"4,1234,5678,-;WARNING: CPU: 0 PID: 1 at x.c:1 f+0x1/0x2\n SUBSYSTEM=cpu\n"
            )
            .as_deref(),
            Some("WARNING: CPU: 0 PID: 1 at x.c:1 f+0x1/0x2")
        );
        assert_eq!(record_text(b"garbage"), None);
    }
}
