//! vmtest-init: PID 1 of a guest booted through vmtest's initramfs.
//!
//! The contract with the host:
//!
//! - The initramfs (newc cpio) holds this binary as `/init` and the kernel
//!   modules to load as `/modules/NN-name.ko` or `/modules/NN-name.ko.xz`
//!   (`.zst` and `.gz` too), where `NN` is the two-digit load order
//!   (dependencies first). Nothing else: no shell, no loader, no libraries
//!   (the binary is static). The kernel's built-in initramfs supplies
//!   `/dev/console`, which becomes the init's stdin, stdout and stderr.
//! - The host's `/` is the read-only 9p tag `vmtest_root`; the agent's
//!   virtio-serial port is named `org.qemu.guest_agent.0`.
//! - Kernel command line keys (read from `/proc/cmdline`):
//!   - `vmtest.shared=<hex>`: an absolute path, hex-encoded byte by byte so
//!     that spaces and commas survive the command line. The 9p tag
//!     `vmtest_shared` is mounted read-write there.
//!   - `vmtest.debug=1`: log each step's duration and more.
//! - Log lines go to `/dev/kmsg` prefixed `vmtest-init: `, so they interleave
//!   with the kernel's on the console; the host passes `printk.devkmsg=on`,
//!   otherwise the kernel rate-limits (drops) them.
//!
//! The boot: mount `/dev`, `/proc`, `/sys`; load the modules; mount the host
//! root; mount tmpfs, bpffs, tracefs, debugfs, cgroup2 inside it and move
//! `/dev`, `/proc`, `/sys` over; mount the shared directory; switch root;
//! bring up `lo`; start
//! the host's `qemu-ga` on the agent's port; reap children until the agent
//! exits; power off. Every path ends in a power-off: PID 1 must never exit
//! (that is a kernel panic) nor hang silently.
//!
//! `build.rs` compiles this file alone with `rustc -C target-feature=+crt-static`
//! (std only, no crates; the few libc functions std lacks are declared in
//! [`sys`] and come from glibc's static `libc.a`).

use std::ffi::{c_int, c_ulong, CString, OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::chroot;
use std::os::unix::io::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use std::{env, panic, thread};

/// The libc functions and constants std does not wrap.
mod sys {
    use std::ffi::{c_char, c_int, c_long, c_ulong, c_void};

    extern "C" {
        pub fn mount(
            source: *const c_char,
            target: *const c_char,
            fstype: *const c_char,
            flags: c_ulong,
            data: *const c_void,
        ) -> c_int;
        pub fn syscall(number: c_long, ...) -> c_long;
        pub fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
        pub fn reboot(cmd: c_int) -> c_int;
        pub fn sync();
        pub fn tcdrain(fd: c_int) -> c_int;
        pub fn socket(domain: c_int, kind: c_int, protocol: c_int) -> c_int;
        pub fn ioctl(fd: c_int, request: c_ulong, ...) -> c_int;
        pub fn close(fd: c_int) -> c_int;
    }

    /// `struct ifreq` as the interface-flags ioctls use it.
    #[repr(C)]
    pub struct IfreqFlags {
        pub name: [u8; 16],
        pub flags: i16,
        pub _pad: [u8; 22],
    }

    pub const AF_INET: c_int = 2;
    pub const SOCK_DGRAM: c_int = 2;
    pub const SOCK_CLOEXEC: c_int = 0o2000000;
    pub const SIOCGIFFLAGS: c_ulong = 0x8913;
    pub const SIOCSIFFLAGS: c_ulong = 0x8914;
    pub const IFF_UP: i16 = 1;

    pub const MS_RDONLY: c_ulong = 1;
    pub const MS_NOSUID: c_ulong = 2;
    pub const MS_NODEV: c_ulong = 4;
    pub const MS_NOEXEC: c_ulong = 8;
    pub const MS_MOVE: c_ulong = 8192;

    pub const RB_POWER_OFF: c_int = 0x4321_fedc;
    pub const MODULE_INIT_COMPRESSED_FILE: c_int = 4;
    #[cfg(target_arch = "x86_64")]
    pub const SYS_FINIT_MODULE: c_long = 313;
    #[cfg(any(target_arch = "aarch64", target_arch = "riscv64"))]
    pub const SYS_FINIT_MODULE: c_long = 273;

    pub const ENOENT: i32 = 2;
    pub const ENODEV: i32 = 19;
    pub const EEXIST: i32 = 17;
}

use sys::{MS_MOVE, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY};

/// Where the host root is mounted before the switch.
const NEWROOT: &str = "/newroot";
/// The 9p options of both shares; the root caches (it is read-only and lives
/// for one run), the shared directory does not (the host may write to it).
const ROOT_9P_OPTIONS: &str = "trans=virtio,version=9p2000.L,msize=512000,cache=loose";
const SHARED_9P_OPTIONS: &str = "trans=virtio,version=9p2000.L,msize=512000,cache=none";
/// How long devices that appear asynchronously may take (bounded: a boot
/// must fail clearly, never hang).
const DEVICE_TIMEOUT: Duration = Duration::from_secs(10);
const AGENT_PORT_NAME: &str = "org.qemu.guest_agent.0";
const AGENT_PATHS: [&str; 2] = ["/usr/sbin/qemu-ga", "/usr/bin/qemu-ga"];
const AGENT_PATH_ENV: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// Logging macros come first: macro_rules! names are in scope only after their
// definition. The functions are in the "Logging" section below.

/// `/dev/kmsg`, once `/dev` is mounted; the fd survives the switch root.
static KMSG: OnceLock<File> = OnceLock::new();
/// `vmtest.debug=1`.
static DEBUG: AtomicBool = AtomicBool::new(false);

/// `/dev/kmsg` record levels.
#[derive(Clone, Copy)]
enum Level {
    Err = 3,
    Warn = 4,
    Info = 6,
}

macro_rules! error { ($($arg:tt)*) => { log(Level::Err, &format!($($arg)*)) } }
macro_rules! warn { ($($arg:tt)*) => { log(Level::Warn, &format!($($arg)*)) } }
macro_rules! info { ($($arg:tt)*) => { log(Level::Info, &format!($($arg)*)) } }
macro_rules! debug {
    ($($arg:tt)*) => {
        if DEBUG.load(Ordering::Relaxed) {
            log(Level::Info, &format!($($arg)*))
        }
    };
}

type Result<T, E = String> = std::result::Result<T, E>;

fn main() {
    // Nobody can report a panic of PID 1: with `panic=abort` it would kill
    // init, a kernel panic that hides our message. Log it and power off.
    panic::set_hook(Box::new(|info| {
        error!("panic: {info}");
        power_off()
    }));
    if let Err(err) = boot() {
        error!("{err}");
    }
    power_off()
}

/// The boot checklist, one call per step.
fn boot() -> Result<()> {
    let params = step(
        "mount /dev, /proc, /sys; read the command line",
        mount_early,
    )?;
    step("load modules", load_modules)?;
    step("mount the host root", mount_root)?;
    step("mount inside the new root", || mount_all(NEWROOT_MOUNTS))?;
    if let Some(dir) = &params.shared {
        step("mount the shared directory", || mount_shared(dir))?;
    }
    step("switch root", switch_root)?;
    if let Err(err) = loopback_up() {
        // Best effort: a kernel without networking has no `lo`.
        warn!("cannot bring up lo: {err}");
    }
    let port = step("find the agent's port", find_agent_port)?;
    let agent = step("start qemu-ga", || start_agent(&port))?;
    let status = reap_until_exit(agent)?;
    Err(format!("qemu-ga exited ({status})"))
}

/// Brings up the loopback interface (the kernel creates it down), so tests
/// can use 127.0.0.1.
fn loopback_up() -> io::Result<()> {
    // SAFETY: plain syscalls on a socket we own and close, with a correctly
    // sized `struct ifreq`.
    unsafe {
        let fd = sys::socket(sys::AF_INET, sys::SOCK_DGRAM | sys::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut request = sys::IfreqFlags {
            name: [0; 16],
            flags: 0,
            _pad: [0; 22],
        };
        request.name[..2].copy_from_slice(b"lo");
        let mut result = sys::ioctl(fd, sys::SIOCGIFFLAGS, &mut request);
        if result == 0 {
            request.flags |= sys::IFF_UP;
            result = sys::ioctl(fd, sys::SIOCSIFFLAGS, &request);
        }
        let error = io::Error::last_os_error();
        sys::close(fd);
        if result == 0 {
            Ok(())
        } else {
            Err(error)
        }
    }
}

/// Runs one boot step, logging its duration in debug mode.
fn step<T>(name: &str, run: impl FnOnce() -> Result<T>) -> Result<T> {
    let started = Instant::now();
    let result = run();
    debug!("{name}: {} ms", started.elapsed().as_millis());
    result
}

// ---- Logging ----

/// Writes one record per line to `/dev/kmsg`, or to stderr (the console the
/// kernel opened for PID 1) before `/dev` is mounted or if kmsg fails.
fn log(level: Level, message: &str) {
    for line in message.lines() {
        // The kernel refuses (EINVAL) records over 1024 bytes.
        let line = truncate(line, 900);
        let record = format!("<{}>vmtest-init: {line}\n", level as u8);
        let logged = KMSG
            .get()
            .is_some_and(|mut kmsg| kmsg.write_all(record.as_bytes()).is_ok());
        if !logged {
            let _ = writeln!(io::stderr(), "vmtest-init: {line}");
        }
    }
}

fn truncate(line: &str, max: usize) -> &str {
    let mut end = line.len().min(max);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    &line[..end]
}

/// Syncs, drains the console and powers the machine off: PID 1's only exit.
fn power_off() -> ! {
    info!("powering off");
    // SAFETY: plain system calls without pointers.
    unsafe {
        sys::sync();
        sys::tcdrain(2);
        sys::reboot(sys::RB_POWER_OFF);
    }
    // reboot(2) returns only on failure. Exiting PID 1 panics the kernel,
    // which `panic=-1` and QEMU's `-no-reboot` turn into QEMU exiting too.
    error!("reboot(RB_POWER_OFF): {}", io::Error::last_os_error());
    std::process::exit(1)
}

// ---- Parameters ----

/// What the host asked for on the kernel command line (`vmtest.*` keys).
#[derive(Debug, Default)]
struct Params {
    shared: Option<PathBuf>,
    debug: bool,
}

impl Params {
    fn parse(cmdline: &str) -> Result<Params> {
        let mut params = Params::default();
        for arg in cmdline.split_whitespace() {
            let Some(arg) = arg.strip_prefix("vmtest.") else {
                continue;
            };
            let (key, value) = arg.split_once('=').unwrap_or((arg, ""));
            match key {
                "shared" => params.shared = Some(decode_path(value)?),
                "debug" => params.debug = value == "1",
                _ => warn!("ignoring unknown parameter vmtest.{key}"),
            }
        }
        Ok(params)
    }
}

/// Decodes `vmtest.shared`: the bytes of an absolute path, in hex.
fn decode_path(hex: &str) -> Result<PathBuf> {
    let digit = |c: u8| char::from(c).to_digit(16);
    let bytes = hex
        .as_bytes()
        .chunks(2)
        .map(|pair| match *pair {
            // At most 0xff: the cast is lossless.
            [high, low] => Some((digit(high)? * 16 + digit(low)?) as u8),
            _ => None,
        })
        .collect::<Option<Vec<u8>>>();
    match bytes {
        Some(bytes) if bytes.first() == Some(&b'/') && !bytes.contains(&0) => {
            Ok(PathBuf::from(OsString::from_vec(bytes)))
        }
        _ => Err(format!("vmtest.shared={hex}: not an absolute path in hex")),
    }
}

// ---- Mounts ----

/// How a failed mount affects the boot.
#[derive(Clone, Copy, PartialEq)]
enum Need {
    /// The boot stops without it.
    Required,
    /// Log the failure and go on (a kernel may lack the file system).
    BestEffort,
    /// Mount only over an existing directory (it cannot be created in the
    /// read-only root), best effort.
    IfPresent,
}
use Need::{BestEffort, IfPresent, Required};

/// One mount: target, source, file system type, flags, data, need.
/// Missing targets are created (except for [`IfPresent`]).
struct Mount(
    &'static str,
    &'static str,
    &'static str,
    c_ulong,
    &'static str,
    Need,
);

const PSEUDO: c_ulong = MS_NOSUID | MS_NODEV | MS_NOEXEC;
const TMP: c_ulong = MS_NOSUID | MS_NODEV;
const PTS: c_ulong = MS_NOSUID | MS_NOEXEC;

/// Step 1, in the initramfs.
#[rustfmt::skip]
const EARLY_MOUNTS: &[Mount] = &[
    Mount("/dev",  "devtmpfs", "devtmpfs", MS_NOSUID, "mode=0755", Required),
    Mount("/proc", "proc",     "proc",     PSEUDO,    "",          Required),
    Mount("/sys",  "sysfs",    "sysfs",    PSEUDO,    "",          Required),
];

/// Step 4, inside the host root (read-only, so writable places are tmpfs;
/// a 9p `/tmp` would also break open-unlink-fstat, see danobi/vmtest).
#[rustfmt::skip]
const NEWROOT_MOUNTS: &[Mount] = &[
    Mount("/newroot/tmp",                "tmpfs",   "tmpfs",   TMP,     "mode=1777", Required),
    Mount("/newroot/run",                "tmpfs",   "tmpfs",   TMP,     "mode=0755", Required),
    Mount("/newroot/var/tmp",            "tmpfs",   "tmpfs",   TMP,     "mode=1777", IfPresent),
    Mount("/newroot/dev",                "/dev",    "",        MS_MOVE, "",          Required),
    Mount("/newroot/proc",               "/proc",   "",        MS_MOVE, "",          Required),
    Mount("/newroot/sys",                "/sys",    "",        MS_MOVE, "",          Required),
    Mount("/newroot/sys/fs/bpf",         "bpf",     "bpf",     PSEUDO,  "mode=0700", BestEffort),
    Mount("/newroot/sys/kernel/tracing", "tracefs", "tracefs", PSEUDO,  "",          BestEffort),
    Mount("/newroot/sys/kernel/debug",   "debugfs", "debugfs", PSEUDO,  "",          BestEffort),
    Mount("/newroot/sys/fs/cgroup",      "cgroup2", "cgroup2", PSEUDO,  "",          BestEffort),
    Mount("/newroot/dev/pts",            "devpts",  "devpts",  PTS,     "mode=0620", BestEffort),
    Mount("/newroot/dev/shm",            "tmpfs",   "tmpfs",   TMP,     "mode=1777", BestEffort),
];

/// Step 1: the pseudo file systems, then the command line (needs `/proc`).
fn mount_early() -> Result<Params> {
    mount_all(EARLY_MOUNTS)?;
    match OpenOptions::new().write(true).open("/dev/kmsg") {
        Ok(kmsg) => _ = KMSG.set(kmsg),
        Err(err) => warn!("open /dev/kmsg: {err}; logging to the console"),
    }
    let cmdline = fs::read("/proc/cmdline").map_err(|err| format!("read /proc/cmdline: {err}"))?;
    let params = Params::parse(&String::from_utf8_lossy(&cmdline))?;
    DEBUG.store(params.debug, Ordering::Relaxed);
    debug!("{params:?}");
    Ok(params)
}

/// Walks a mount table in order; see [`Need`].
fn mount_all(table: &[Mount]) -> Result<()> {
    for &Mount(target, source, fstype, flags, data, need) in table {
        let target = Path::new(target);
        if need == IfPresent && !target.is_dir() {
            debug!("skipped {}: no such directory", target.display());
            continue;
        }
        let what = if flags & MS_MOVE != 0 {
            format!("move {source} to {}", target.display())
        } else {
            format!("mount {fstype} on {}", target.display())
        };
        let result = fs::create_dir_all(target)
            .and_then(|()| mount(source, target, fstype, flags, data))
            .map_err(|err| format!("{what}: {err}"));
        match (result, need) {
            (Ok(()), _) => debug!("{what}"),
            (Err(err), Required) => return Err(err),
            (Err(err), _) => warn!("{err} (going on without it)"),
        }
    }
    Ok(())
}

/// Step 3: the host root, read-only.
fn mount_root() -> Result<()> {
    let target = Path::new(NEWROOT);
    fs::create_dir_all(target).map_err(|err| format!("create {NEWROOT}: {err}"))?;
    // The 9p file system (ENODEV) or the virtio channel with our tag
    // (ENOENT) may register a moment after the module load returns.
    let transient = |err: &io::Error| matches!(err.raw_os_error(), Some(sys::ENOENT | sys::ENODEV));
    retry(transient, || {
        mount("vmtest_root", target, "9p", MS_RDONLY, ROOT_9P_OPTIONS)
    })
    .map_err(|err| nine_p_error("vmtest_root", target, &err))
}

/// Step 5: the host directory shared read-write, at its own path.
fn mount_shared(dir: &Path) -> Result<()> {
    let target = Path::new(NEWROOT).join(dir.strip_prefix("/").unwrap_or(dir));
    if !target.is_dir() {
        return Err(format!(
            "vmtest.shared: {} is not a directory on the host",
            dir.display()
        ));
    }
    mount("vmtest_shared", &target, "9p", 0, SHARED_9P_OPTIONS)
        .map_err(|err| nine_p_error("vmtest_shared", dir, &err))
}

/// Explains the two usual ways a 9p mount fails.
fn nine_p_error(tag: &str, target: &Path, err: &io::Error) -> String {
    let hint = match err.raw_os_error() {
        Some(sys::ENODEV) => {
            " (the kernel has no 9p file system: CONFIG_9P_FS, built in or as a module)"
        }
        Some(sys::ENOENT) => {
            " (no virtio 9p device with this tag: CONFIG_NET_9P_VIRTIO and QEMU's -virtfs)"
        }
        _ => "",
    };
    format!("mount 9p {tag} on {}: {err}{hint}", target.display())
}

/// Step 6: makes the host root `/`, as switch_root(8) does. pivot_root(2)
/// cannot be used: the initramfs is the rootfs, which can never be unmounted.
fn switch_root() -> Result<()> {
    env::set_current_dir(NEWROOT)
        .and_then(|()| mount(".", Path::new("/"), "", MS_MOVE, ""))
        .and_then(|()| chroot("."))
        .and_then(|()| env::set_current_dir("/"))
        .map_err(|err| format!("switch root to {NEWROOT}: {err}"))
}

fn mount(
    source: impl AsRef<OsStr>,
    target: &Path,
    fstype: &str,
    flags: c_ulong,
    data: &str,
) -> io::Result<()> {
    let (source, target) = (c_string(source)?, c_string(target)?);
    let (fstype, data) = (c_string(fstype)?, c_string(data)?);
    // SAFETY: NUL-terminated strings that outlive the call.
    let rc = unsafe {
        sys::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn c_string(s: impl AsRef<OsStr>) -> io::Result<CString> {
    CString::new(s.as_ref().as_bytes())
        .map_err(|_| io::Error::new(ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// Calls `attempt` until it succeeds, fails for good, or [`DEVICE_TIMEOUT`]
/// passes; returns its last result.
fn retry<T>(
    transient: impl Fn(&io::Error) -> bool,
    mut attempt: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    let deadline = Instant::now() + DEVICE_TIMEOUT;
    loop {
        match attempt() {
            Err(err) if transient(&err) && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(10))
            }
            result => return result,
        }
    }
}

// ---- Modules ----

/// Step 2: loads `/modules/*` in name order (the `NN-` prefixes). No
/// `/modules` means a kernel with everything needed built in.
fn load_modules() -> Result<()> {
    let mut paths = match fs::read_dir("/modules") {
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(()),
        dir => dir
            .and_then(|entries| {
                entries
                    .map(|entry| Ok(entry?.path()))
                    .collect::<io::Result<Vec<_>>>()
            })
            .map_err(|err| format!("list /modules: {err}"))?,
    };
    paths.sort();
    paths.iter().try_for_each(|path| load_module(path))
}

/// Loads one module with finit_module(2). A kernel built with
/// `CONFIG_MODULE_DECOMPRESS` (Debian 6.12 is) decompresses `.ko.xz` (or
/// `.zst`, `.gz`, whichever its packaging uses) itself.
fn load_module(path: &Path) -> Result<()> {
    let name = path
        .file_name()
        .unwrap_or(path.as_os_str())
        .to_string_lossy();
    let flags = match path.extension() {
        Some(ext) if ext == "xz" || ext == "zst" || ext == "gz" => sys::MODULE_INIT_COMPRESSED_FILE,
        _ => 0,
    };
    let file = File::open(path).map_err(|err| format!("open module {name}: {err}"))?;
    let started = Instant::now();
    // SAFETY: finit_module(fd, param_values, flags) with an open fd and a
    // NUL-terminated (empty) parameter string.
    let rc = unsafe { sys::syscall(sys::SYS_FINIT_MODULE, file.as_raw_fd(), c"".as_ptr(), flags) };
    let err = io::Error::last_os_error();
    match rc {
        0 => debug!("loaded {name} in {} ms", started.elapsed().as_millis()),
        _ if err.raw_os_error() == Some(sys::EEXIST) => debug!("{name} was already loaded"),
        _ => return Err(format!("load module {name}: {err}")),
    }
    Ok(())
}

// ---- The agent ----

/// Step 7: the `/dev` node of the virtio-serial port named
/// [`AGENT_PORT_NAME`]. Ports and their names (sent by QEMU over the
/// control queue) appear asynchronously, so this waits, bounded.
fn find_agent_port() -> Result<PathBuf> {
    retry(|err| err.kind() == ErrorKind::NotFound, agent_port).map_err(|err| {
        format!(
            "find the virtio-serial port {AGENT_PORT_NAME}: {err} \
             (needs CONFIG_VIRTIO_CONSOLE and QEMU's virtserialport)"
        )
    })
}

fn agent_port() -> io::Result<PathBuf> {
    for entry in fs::read_dir("/sys/class/virtio-ports")? {
        let entry = entry?;
        let name = fs::read(entry.path().join("name")).unwrap_or_default();
        let dev = Path::new("/dev").join(entry.file_name());
        if name.trim_ascii_end() == AGENT_PORT_NAME.as_bytes() && dev.exists() {
            return Ok(dev);
        }
    }
    Err(io::Error::new(ErrorKind::NotFound, "no such port yet"))
}

/// Step 8: starts the host's qemu-ga on `port`; returns its pid.
fn start_agent(port: &Path) -> Result<c_int> {
    let Some(agent) = AGENT_PATHS.iter().map(Path::new).find(|path| path.exists()) else {
        return Err(format!(
            "qemu-ga not found ({}): install qemu-guest-agent on the host",
            AGENT_PATHS.join(", ")
        ));
    };
    let mut path_arg = OsString::from("--path=");
    path_arg.push(port);
    let child = Command::new(agent)
        .arg("--method=virtio-serial")
        .arg(path_arg)
        // Its state file must be writable: /run is a tmpfs.
        .arg("--statedir=/run")
        // guest-exec children inherit the agent's environment: a clean one,
        // not the kernel's (HOME=/, TERM=linux and unused boot arguments).
        .env_clear()
        .env("PATH", AGENT_PATH_ENV)
        .env("HOME", "/root")
        // stdout and stderr stay on the console, to show the agent's errors.
        .stdin(Stdio::null())
        .spawn()
        .map_err(|err| format!("start {}: {err}", agent.display()))?;
    info!("started {} on {}", agent.display(), port.display());
    // Dropping `child` neither kills nor waits: the loop below reaps it.
    // Pids fit in pid_t (c_int).
    Ok(child.id() as c_int)
}

/// Step 9: reaps every child until the agent exits; returns its status.
/// Orphans are re-parented to PID 1 and stay zombies until it waits for them.
/// SIGCHLD keeps its default disposition (not SIG_IGN), so exit statuses are
/// kept for waitpid. The kernel sends PID 1 no signal it has no handler for,
/// so EINTR is not expected, but is retried like anywhere else.
fn reap_until_exit(agent: c_int) -> Result<ExitStatus> {
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid out-pointer.
        let pid = unsafe { sys::waitpid(-1, &mut status, 0) };
        let err = io::Error::last_os_error();
        match pid {
            _ if pid == agent => return Ok(ExitStatus::from_raw(status)),
            -1 if err.kind() == ErrorKind::Interrupted => continue,
            -1 => return Err(format!("waitpid: {err}")),
            _ => debug!("reaped {pid} ({})", ExitStatus::from_raw(status)),
        }
    }
}
