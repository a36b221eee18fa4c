//! A VM's death: why it died ([`DeathCause`], told once from what QEMU and
//! the console show), and what explains it ([`VmLogs`]: QEMU's own messages
//! and the part of the guest console that tells the story), attached to
//! every failure caused by the VM.

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use vmtest_contract::boot::SERVER_EXITED;

/// Why a VM died.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeathCause {
    #[error("the guest kernel panicked")]
    KernelPanic,
    #[error("the test server in the guest exited ({how})")]
    ServerExited { how: String },
    #[error("the VM stopped: QEMU exited ({status})")]
    QemuExited { status: String },
    #[error(
        "the guest stopped answering for {silent:.1?} (a hung kernel, or a job that keeps the \
         test server from running)"
    )]
    Unresponsive { silent: Duration },
    #[error("lost the control connection to the guest: {0}")]
    Connection(#[source] io::Error),
}

impl DeathCause {
    /// Why a VM died, told from how its QEMU ended (`exit`, if it has) and
    /// its console: a kernel panic, the test server's exit, QEMU's; else
    /// `seen`, what the host noticed.
    pub(crate) fn told(exit: Option<String>, console: &str, seen: DeathCause) -> DeathCause {
        match exit {
            Some(_) if console.contains("Kernel panic - not syncing") => DeathCause::KernelPanic,
            Some(status) => match server_exit(console) {
                Some(how) => DeathCause::ServerExited { how },
                None => DeathCause::QemuExited { status },
            },
            None => seen,
        }
    }
}

/// A VM's death: why, and what its console showed.
#[derive(Debug, thiserror::Error)]
#[error("{cause}{logs}")]
pub struct VmDeath {
    pub cause: DeathCause,
    pub logs: VmLogs,
}

/// How the test server exited, as the init logged it on the console.
fn server_exit(console: &str) -> Option<String> {
    let line = console.lines().find(|line| line.contains(SERVER_EXITED))?;
    let after = &line[line.find(SERVER_EXITED)? + SERVER_EXITED.len()..];
    let after = after.trim();
    let inner = after
        .strip_prefix('(')
        .and_then(|rest| rest.strip_suffix(')'));
    Some(inner.unwrap_or(after).to_string())
}

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
pub struct VmLogs {
    pub qemu_said: String,
    pub console: String,
}

impl VmLogs {
    /// QEMU's messages and the telling part of `console`.
    pub(crate) fn new(qemu_said: String, console: &str) -> VmLogs {
        VmLogs {
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

impl fmt::Display for VmLogs {
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
    fn the_server_exit_is_read_from_the_console() {
        let console = "[    2.1] vmtest-init: started /t/bin\n\
                       [    3.5] vmtest-init: the test server exited (signal: 9 (SIGKILL))\n\
                       [    3.6] vmtest-init: powering off";
        assert_eq!(server_exit(console).as_deref(), Some("signal: 9 (SIGKILL)"));
        assert_eq!(server_exit("nothing here"), None);
        let seen = || DeathCause::Unresponsive {
            silent: Duration::from_secs(1),
        };
        let exited = || Some("signal: 9".to_string());
        assert!(matches!(
            DeathCause::told(exited(), "Kernel panic - not syncing: x", seen()),
            DeathCause::KernelPanic
        ));
        assert!(matches!(
            DeathCause::told(exited(), console, seen()),
            DeathCause::ServerExited { .. }
        ));
        assert!(matches!(
            DeathCause::told(exited(), "", seen()),
            DeathCause::QemuExited { .. }
        ));
        assert!(matches!(
            DeathCause::told(None, "", seen()),
            DeathCause::Unresponsive { .. }
        ));
    }

    #[test]
    fn an_empty_console_says_so() {
        assert_eq!(
            VmLogs::default().to_string(),
            "\n(the guest console is empty)"
        );
    }
}
