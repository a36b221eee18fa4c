//! The boot contract: the names and encodings the host and the guest init
//! share, from QEMU's command line to the moment the init starts the test
//! server.
//!
//! This file is std-only and self-contained: the guest init
//! (`guest/init.rs`, which `build.rs` compiles alone into a static binary)
//! includes it with `#[path]`, and the engine uses it as a module. Every name
//! and encoding the two sides must agree on before the server runs lives
//! here, once.
//!
//! The handshake, on the control port:
//!
//! 1. The init loads the kernel modules, opens [`CONTROL_PORT`] and writes
//!    [`INIT_READY`] on a line of its own. Nothing of the run is in the guest
//!    yet: the host root is not mounted, so a guest stopped here can be saved
//!    and restored by any later run.
//! 2. The host answers with one line, [`BootParams::encode`]: what to mount
//!    and which server to start.
//! 3. The init mounts the host root and the shares, switches root, and
//!    starts the server with the port as descriptor [`CONTROL_FD`]. From
//!    then on the port speaks the JSON protocol of `contract::messages`.
//!
//! If the init fails, it writes [`INIT_FAILED`] and the reason (hex) before
//! it powers off.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// The virtio-serial port the host and the guest talk over: first the
/// init, then the test server it starts.
pub const CONTROL_PORT: &str = "org.vmtest.control.0";
/// The 9p tag of the host's root, shared read-only.
pub const ROOT_TAG: &str = "vmtest_root";
/// The 9p tags of shared directories are this prefix and an index.
pub const SHARE_TAG_PREFIX: &str = "vmtest_share";
/// The descriptor on which the test server finds the control port, open
/// (the init hands over its own).
pub const CONTROL_FD: i32 = 3;
/// Set in the test server's environment: run as the server. The server
/// removes it before any job starts.
pub const SERVER_VAR: &str = "VMTEST_GUEST_SERVER";
/// The guest's temporary directory, a tmpfs private to the VM.
pub const GUEST_TMP: &str = "/tmp";
/// Where the init keeps a view of the host's `/tmp` while it binds paths
/// from it into the guest's own `/tmp`.
pub const HOST_TMP_VIEW: &str = "/run/vmtest/host-tmp";
/// Kernel command-line key: `vmtest.debug=1` makes the init log each step.
pub const DEBUG_PARAM: &str = "vmtest.debug";

/// What the init logs (on the console) when the test server exits, then
/// the exit status in parentheses.
pub const SERVER_EXITED: &str = "the test server exited";

/// The init's line once it is ready for its [`BootParams`].
pub const INIT_READY: &str = "vmtest-init ready";
/// Starts the init's line when it fails; the reason follows, in hex.
pub const INIT_FAILED: &str = "vmtest-init failed ";
/// Starts the host's [`BootParams`] line.
pub const BOOT: &str = "vmtest-boot";

/// A host directory the guest mounts over 9p (QEMU exports it under the tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// The 9p tag ([`SHARE_TAG_PREFIX`] and an index).
    pub tag: String,
    /// Where the guest mounts it, absolute.
    pub guest_path: PathBuf,
    /// Whether the guest may write to it.
    pub writable: bool,
}

/// The program the init starts once the root is mounted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerCommand {
    /// An absolute path on the host's root.
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Its whole environment, as `KEY=value`.
    pub env: Vec<OsString>,
    /// Its working directory.
    pub cwd: PathBuf,
}

/// What the host tells the init after [`INIT_READY`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootParams {
    /// Host paths under `/tmp` to make visible, read-only, at the same place
    /// in the guest's private `/tmp`.
    pub tmp_binds: Vec<PathBuf>,
    /// Directories mounted over 9p, after the binds.
    pub shares: Vec<Share>,
    /// The guest's root is an overlay of the shared root and a tmpfs, so
    /// that mount points missing from a read-only root can be made (what
    /// the guest writes there stays in it).
    pub overlay: bool,
    pub server: ServerCommand,
    /// The host's time when it sent the line (`CLOCK_REALTIME`, in
    /// nanoseconds since the epoch): the guest's clock is set to it, as a
    /// guest restored from a snapshot would run on from the snapshot's time.
    pub clock_ns: u64,
    /// Fresh entropy from the host: mixed into the guest kernel's random
    /// pool, which is then reseeded, as guests restored from one snapshot
    /// would otherwise share one pool.
    pub seed: Vec<u8>,
}

impl BootParams {
    /// One line, without its newline: [`BOOT`], then `key=value` words whose
    /// values are hex, so that any byte survives.
    pub fn encode(&self) -> String {
        let mut line = String::from(BOOT);
        let mut word = |key: &str, value: &[u8]| {
            let _ = write!(line, " {key}={}", hex(value));
        };
        for bind in &self.tmp_binds {
            word("bind", bind.as_os_str().as_bytes());
        }
        for share in &self.shares {
            let mode: &[u8] = if share.writable { b"rw" } else { b"ro" };
            word("share-tag", share.tag.as_bytes());
            word("share-guest", share.guest_path.as_os_str().as_bytes());
            word("share-mode", mode);
        }
        if self.overlay {
            word("overlay", b"1");
        }
        word("program", self.server.program.as_os_str().as_bytes());
        for arg in &self.server.args {
            word("arg", arg.as_bytes());
        }
        for var in &self.server.env {
            word("env", var.as_bytes());
        }
        word("cwd", self.server.cwd.as_os_str().as_bytes());
        word("clock", self.clock_ns.to_string().as_bytes());
        word("seed", &self.seed);
        line
    }

    /// Reads a line written by [`BootParams::encode`].
    pub fn decode(line: &str) -> Result<BootParams, String> {
        let words = line
            .trim_end()
            .strip_prefix(BOOT)
            .ok_or_else(|| format!("not a boot line: {:?}", truncated(line)))?;
        let mut params = BootParams::default();
        let mut share: (Option<String>, Option<PathBuf>) = (None, None);
        for word in words.split_whitespace() {
            let (key, value) = word
                .split_once('=')
                .ok_or_else(|| format!("boot line word {word:?} has no '='"))?;
            let bytes = unhex(value).ok_or_else(|| format!("boot line key {key}: bad hex"))?;
            match key {
                "bind" => params.tmp_binds.push(absolute(key, bytes)?),
                "share-tag" => share.0 = Some(String::from_utf8_lossy(&bytes).into_owned()),
                "share-guest" => share.1 = Some(absolute(key, bytes)?),
                "share-mode" => {
                    let (Some(tag), Some(guest_path)) = (share.0.take(), share.1.take()) else {
                        return Err("boot line: share-mode before its tag and path".into());
                    };
                    let writable = match bytes.as_slice() {
                        b"rw" => true,
                        b"ro" => false,
                        _ => return Err("boot line: share-mode is neither rw nor ro".into()),
                    };
                    params.shares.push(Share {
                        tag,
                        guest_path,
                        writable,
                    });
                }
                "overlay" => params.overlay = true,
                "program" => params.server.program = absolute(key, bytes)?,
                "arg" => params.server.args.push(OsString::from_vec(bytes)),
                "env" => params.server.env.push(OsString::from_vec(bytes)),
                "cwd" => params.server.cwd = absolute(key, bytes)?,
                "clock" => {
                    params.clock_ns = std::str::from_utf8(&bytes)
                        .ok()
                        .and_then(|text| text.parse().ok())
                        .ok_or("boot line: clock is not a number")?
                }
                "seed" => params.seed = bytes,
                _ => return Err(format!("boot line: unknown key {key}")),
            }
        }
        if params.server.program.as_os_str().is_empty() {
            return Err("boot line: no program".into());
        }
        Ok(params)
    }
}

/// The init's failure line, without its newline.
pub fn init_failed_line(reason: &str) -> String {
    format!("{INIT_FAILED}{}", hex(reason.as_bytes()))
}

/// The reason in a line written by [`init_failed_line`], if it is one.
pub fn parse_init_failed(line: &str) -> Option<String> {
    let reason = unhex(line.trim_end().strip_prefix(INIT_FAILED)?)?;
    Some(String::from_utf8_lossy(&reason).into_owned())
}

/// Lowercase hex, two digits per byte.
pub fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// The bytes of [`hex`] text; `None` if it is not.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| char::from(c).to_digit(16);
    text.as_bytes()
        .chunks(2)
        .map(|pair| match *pair {
            // At most 0xff: the cast is lossless.
            [high, low] => Some((digit(high)? * 16 + digit(low)?) as u8),
            _ => None,
        })
        .collect()
}

/// A path from a boot line, which must be absolute and free of NUL bytes.
fn absolute(key: &str, bytes: Vec<u8>) -> Result<PathBuf, String> {
    let path = PathBuf::from(OsString::from_vec(bytes));
    if !path.is_absolute() || path.as_os_str().as_bytes().contains(&0) {
        return Err(format!(
            "boot line {key}: {} is not an absolute path",
            path.display()
        ));
    }
    Ok(path)
}

fn truncated(line: &str) -> &str {
    let mut end = line.len().min(60);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    &line[..end]
}

/// The path of `path`, a host path under `/tmp`, inside `root`: where the
/// init mounts and binds it.
pub fn under(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}
