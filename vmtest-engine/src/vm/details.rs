//! What explains a VM's failure: QEMU's own messages and the part of the
//! guest console that tells the story, attached to every failure caused by
//! the VM.

use std::fmt;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// How many lines of the guest console a failure shows.
const CONSOLE_LINES: usize = 40;
/// Console lines that start the story of a crash, the most telling first.
const CRASH_MARKERS: [&str; 6] = [
    "sysrq: Trigger a crash",
    "kernel BUG at",
    "BUG:",
    "Oops:",
    "general protection fault",
    "Kernel panic",
];
/// Lines shown before the first marker: a panic's cause comes before its
/// long stack trace.
const BEFORE_MARKER: usize = 5;

/// QEMU's messages and the telling part of the guest console.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Details {
    pub qemu_said: String,
    pub console: String,
}

impl Details {
    /// QEMU's messages and the telling part of `console`.
    pub(crate) fn new(qemu_said: String, console: &str) -> Details {
        Details {
            qemu_said,
            console: excerpt(console, CONSOLE_LINES),
        }
    }
}

/// How much of the end of the guest console is read: a guest that floods
/// its console must not flood the host's memory.
const CONSOLE_TAIL: u64 = 1 << 20;

/// The guest console so far, or its last [`CONSOLE_TAIL`] bytes.
pub(crate) fn read_console(console_log: &Path) -> String {
    let tail = || -> std::io::Result<Vec<u8>> {
        let mut file = std::fs::File::open(console_log)?;
        let length = file.metadata()?.len();
        file.seek(SeekFrom::Start(length.saturating_sub(CONSOLE_TAIL)))?;
        let mut bytes = Vec::new();
        file.take(CONSOLE_TAIL).read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    String::from_utf8_lossy(&tail().unwrap_or_default()).replace('\r', "")
}

impl fmt::Display for Details {
    /// Starts with a newline: it follows a sentence.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.qemu_said.is_empty() {
            write!(f, "\nQEMU said:\n{}", self.qemu_said)?;
        }
        if self.console.is_empty() {
            f.write_str("\n(the guest console is empty)")
        } else {
            write!(f, "\nguest console:\n{}", self.console)
        }
    }
}

/// The part of the console that explains a failure: from a little before
/// the first crash marker, else the last lines; `lines` lines at most.
fn excerpt(console: &str, lines: usize) -> String {
    let all: Vec<&str> = console.lines().collect();
    let start = CRASH_MARKERS
        .iter()
        .find_map(|marker| all.iter().position(|line| line.contains(marker)))
        .map(|first| first.saturating_sub(BEFORE_MARKER))
        .unwrap_or(all.len().saturating_sub(lines));
    let end = all.len().min(start + lines);
    all[start..end].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_excerpt_starts_just_before_a_crash() {
        let mut console: Vec<String> = (0..100).map(|n| format!("boot line {n}")).collect();
        console.insert(50, "sysrq: Trigger a crash".into());
        let excerpt = excerpt(&console.join("\n"), 10);
        let lines: Vec<&str> = excerpt.lines().collect();
        assert_eq!(lines.len(), 10);
        assert_eq!(lines[0], "boot line 45");
        assert_eq!(lines[5], "sysrq: Trigger a crash");
    }

    #[test]
    fn without_a_crash_the_excerpt_is_the_tail() {
        let console: Vec<String> = (0..100).map(|n| format!("line {n}")).collect();
        assert_eq!(excerpt(&console.join("\n"), 3), "line 97\nline 98\nline 99");
    }

    #[test]
    fn a_long_console_is_read_from_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("console.log");
        let mut text = "x".repeat(3 << 20);
        text.push_str("\r\nthe end\r\n");
        std::fs::write(&log, text).unwrap();
        let console = read_console(&log);
        assert_eq!(console.len() as u64, CONSOLE_TAIL - 2);
        assert!(console.ends_with("x\nthe end\n"));
        assert_eq!(read_console(&dir.path().join("none")), "");
    }

    #[test]
    fn an_empty_console_says_so() {
        let details = Details::default();
        assert_eq!(details.to_string(), "\n(the guest console is empty)");
    }
}
