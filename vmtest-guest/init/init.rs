//! vmtest-init: PID 1 of a guest booted through vmtest's initramfs.
//!
//! The contract with the host (names and encodings in `vmtest-contract`'s
//! `boot.rs`, included below, which the host uses too):
//!
//! - The initramfs (newc cpio) holds this binary as `/init` and the kernel
//!   modules to load as `/modules/NN-name.ko`, decompressed, `NN` being the
//!   load order (dependencies first). Nothing else: no shell, no loader, no
//!   libraries (the binary is static). The kernel's built-in initramfs
//!   supplies `/dev/console`, which becomes the init's stdin, stdout and
//!   stderr.
//! - The host's `/` is the read-only 9p tag `vmtest_root`; shared
//!   directories are further 9p tags. The control port is a virtio-serial
//!   port named `org.vmtest.control.0`.
//! - `vmtest.debug=1` on the kernel command line logs each step's duration.
//! - Log lines go to `/dev/kmsg` prefixed `vmtest-init: `, so they interleave
//!   with the kernel's on the console; the host passes `printk.devkmsg=on`,
//!   otherwise the kernel rate-limits (drops) them.
//!
//! The boot: mount `/dev`, `/proc`, `/sys` and the kernel's file systems
//! under them (bpffs, tracefs, debugfs, cgroup2, devpts, `/dev/shm`); load
//! the modules; say "ready" on the control port and read the host's boot
//! parameters (the guest can be saved and restored at this point: nothing of
//! a particular run is in it yet); set the clock and reseed the random pool
//! from them; mount the host root; mount tmpfs inside it and move `/dev`,
//! `/proc`, `/sys` over; bind the host paths under
//! `/tmp` the run needs into the guest's private `/tmp`; mount the shared
//! directories; switch root; bring up `lo`; start the test server with the
//! control port as descriptor 3; reap children until the server exits;
//! power off. Every path ends in a power-off: PID 1 must never exit (that is
//! a kernel panic) nor hang silently.
//!
//! `build.rs` compiles this file alone with `rustc -C target-feature=+crt-static`
//! (std only, no crates; the few libc functions std lacks are declared in
//! [`sys`] and come from glibc's static `libc.a`).

use std::ffi::{c_int, c_ulong, CString, OsStr};
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::chroot;
use std::os::unix::io::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use std::{env, panic, thread};

// Written beside this file by the build script.
#[path = "boot_contract.rs"]
#[allow(dead_code)]
mod contract;

use contract::{BootParams, Share};

/// The libc functions and constants std does not wrap. The numbers are the
/// kernel's UAPI values (`include/uapi/linux/mount.h`, `reboot.h`,
/// `sockios.h`, `if.h`, `fcntl.h`), the same on every Linux architecture
/// except where a `cfg` says otherwise.
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
        pub fn umount2(target: *const c_char, flags: c_int) -> c_int;
        pub fn syscall(number: c_long, ...) -> c_long;
        pub fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
        pub fn reboot(cmd: c_int) -> c_int;
        pub fn sync();
        pub fn tcdrain(fd: c_int) -> c_int;
        pub fn socket(domain: c_int, kind: c_int, protocol: c_int) -> c_int;
        pub fn ioctl(fd: c_int, request: c_ulong, ...) -> c_int;
        pub fn close(fd: c_int) -> c_int;
        pub fn dup2(old: c_int, new: c_int) -> c_int;
        pub fn fcntl(fd: c_int, command: c_int, ...) -> c_int;
        pub fn clock_settime(clock: c_int, time: *const Timespec) -> c_int;
    }

    /// `struct timespec` on a 64-bit Linux.
    #[repr(C)]
    pub struct Timespec {
        pub seconds: i64,
        pub nanoseconds: i64,
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
    pub const MS_BIND: c_ulong = 4096;
    pub const MS_MOVE: c_ulong = 8192;
    pub const MNT_DETACH: c_int = 2;

    pub const F_SETFD: c_int = 2;

    pub const CLOCK_REALTIME: c_int = 0;
    /// `include/uapi/linux/random.h`: `_IOW('R', 0x03, int[2])`, and
    /// `_IO('R', 0x07)`.
    pub const RNDADDENTROPY: c_ulong = 0x4008_5203;
    pub const RNDRESEEDCRNG: c_ulong = 0x5207;

    pub const RB_POWER_OFF: c_int = 0x4321_fedc;
    #[cfg(target_arch = "x86_64")]
    pub const SYS_FINIT_MODULE: c_long = 313;
    #[cfg(any(target_arch = "aarch64", target_arch = "riscv64"))]
    pub const SYS_FINIT_MODULE: c_long = 273;

    pub const ENOENT: i32 = 2;
    pub const ENODEV: i32 = 19;
    pub const EEXIST: i32 = 17;
}

use sys::{MS_BIND, MS_MOVE, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY};

/// Where the host root is mounted before the switch.
const NEWROOT: &str = "/newroot";
/// With an overlay root: where the shared root is, and the tmpfs on it.
const OVERLAY_LOWER: &str = "/overlay/lower";
const OVERLAY_UPPER: &str = "/overlay/rw";
/// The 9p options of the root and the shares. The root caches (it is
/// read-only and lives for one run: `cache=loose` makes a second exec of a
/// library-heavy program 4-5x faster); shares do not (the host may write).
const ROOT_9P_OPTIONS: &str = "trans=virtio,version=9p2000.L,msize=512000,cache=loose";
const SHARE_9P_OPTIONS: &str = "trans=virtio,version=9p2000.L,msize=512000,cache=none";
/// How long devices that appear asynchronously may take (bounded: a boot
/// must fail clearly, never hang).
const DEVICE_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest boot line accepted (the host's environment, in hex).
const MAX_BOOT_LINE: usize = 16 << 20;

// Logging macros come first: macro_rules! names are in scope only after their
// definition. The functions are in the "Logging" section below.

/// `/dev/kmsg`, once `/dev` is mounted; the fd survives the switch root.
static KMSG: OnceLock<File> = OnceLock::new();
/// The control port while the init holds it: a failure is reported there
/// too. The init lets go of it once the test server has it, so that the
/// port closes when the server exits.
static PORT: Mutex<Option<File>> = Mutex::new(None);
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
        fail(&format!("panic: {info}"));
        power_off()
    }));
    if let Err(err) = boot() {
        fail(&err);
    }
    power_off()
}

/// The boot checklist, one call per step.
fn boot() -> Result<()> {
    step("mount the kernel's file systems; read the command line", mount_early)?;
    step("load modules", load_modules)?;
    let params = step("handshake on the control port", handshake)?;
    // Best effort: an old kernel (before 4.17) cannot reseed at once, and a
    // fresh boot has its own pool anyway.
    if let Err(err) = set_clock(params.clock_ns).and_then(|()| seed_random(&params.seed)) {
        warn!("{err}");
    }
    step("mount the host root", || mount_root(params.overlay))?;
    step("mount /run", || mount_all(RUN_MOUNTS))?;
    step("bind host paths under /tmp", || bind_host_tmp(&params.tmp_binds))?;
    step("mount inside the new root", || mount_all(NEWROOT_MOUNTS))?;
    for share in &params.shares {
        step("mount a shared directory", || mount_share(share))?;
    }
    step("switch root", switch_root)?;
    if let Err(err) = loopback_up() {
        // Best effort: a kernel without networking has no `lo`.
        warn!("cannot bring up lo: {err}");
    }
    let server = step("start the test server", || start_server(&params))?;
    let status = reap_until_exit(server)?;
    info!("{} ({status})", contract::SERVER_EXITED);
    Ok(())
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

/// In the initramfs, first of all; everything but the host's files, so that
/// a guest restored from a snapshot has it already. The file systems under
/// `/dev` and `/sys` move with them into the new root.
#[rustfmt::skip]
const EARLY_MOUNTS: &[Mount] = &[
    Mount("/dev",                "devtmpfs", "devtmpfs", MS_NOSUID, "mode=0755", Required),
    Mount("/proc",               "proc",     "proc",     PSEUDO,    "",          Required),
    Mount("/sys",                "sysfs",    "sysfs",    PSEUDO,    "",          Required),
    Mount("/sys/fs/bpf",         "bpf",      "bpf",      PSEUDO,    "mode=0700", BestEffort),
    Mount("/sys/kernel/tracing", "tracefs",  "tracefs",  PSEUDO,    "",          BestEffort),
    Mount("/sys/kernel/debug",   "debugfs",  "debugfs",  PSEUDO,    "",          BestEffort),
    Mount("/dev/pts",            "devpts",   "devpts",   PTS,       "mode=0620,ptmxmode=0666", BestEffort),
    Mount("/dev/shm",            "tmpfs",    "tmpfs",    TMP,       "mode=1777", BestEffort),
];

/// Inside the host root, which is read-only: writable places are tmpfs.
/// `/run` comes first: it holds the view of the host's `/tmp` that paths
/// are bound from before the guest's own `/tmp` covers it.
#[rustfmt::skip]
const RUN_MOUNTS: &[Mount] = &[
    Mount("/newroot/run", "tmpfs", "tmpfs", TMP, "mode=0755", Required),
];

/// The rest, once `/tmp` is in place.
#[rustfmt::skip]
const NEWROOT_MOUNTS: &[Mount] = &[
    Mount("/newroot/var/tmp",            "tmpfs",   "tmpfs",   TMP,     "mode=1777", IfPresent),
    Mount("/newroot/dev",                "/dev",    "",        MS_MOVE, "",          Required),
    Mount("/newroot/proc",               "/proc",   "",        MS_MOVE, "",          Required),
    Mount("/newroot/sys",                "/sys",    "",        MS_MOVE, "",          Required),
];

/// The links udev would make in `/dev`, which programs expect (bash's
/// process substitution, `cat /dev/stdin`): `/dev/fd` and the standard
/// streams.
const DEV_LINKS: [(&str, &str); 4] = [
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
];

/// The pseudo file systems, then the command line (needs `/proc`).
fn mount_early() -> Result<()> {
    mount_all(EARLY_MOUNTS)?;
    for (link, target) in DEV_LINKS {
        match std::os::unix::fs::symlink(target, link) {
            Err(err) if err.kind() != ErrorKind::AlreadyExists => warn!("link {link}: {err}"),
            _ => {}
        }
    }
    match OpenOptions::new().write(true).open("/dev/kmsg") {
        Ok(kmsg) => _ = KMSG.set(kmsg),
        Err(err) => warn!("open /dev/kmsg: {err}; logging to the console"),
    }
    let cmdline = fs::read("/proc/cmdline").map_err(|err| format!("read /proc/cmdline: {err}"))?;
    let debug_on = format!("{}=1", contract::DEBUG_PARAM);
    let debug = String::from_utf8_lossy(&cmdline)
        .split_whitespace()
        .any(|arg| arg == debug_on);
    DEBUG.store(debug, Ordering::Relaxed);
    mount_cgroup2();
    Ok(())
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

/// The host root (or the root the host gave), read-only; with `overlay`,
/// under an overlay whose upper layer is a tmpfs, so that mount points the
/// root lacks can be made (writes stay in the guest).
fn mount_root(overlay: bool) -> Result<()> {
    let target = Path::new(NEWROOT);
    let shared = if overlay { Path::new(OVERLAY_LOWER) } else { target };
    fs::create_dir_all(shared).map_err(|err| format!("create {}: {err}", shared.display()))?;
    // The 9p file system (ENODEV) or the virtio channel with our tag
    // (ENOENT) may register a moment after the module load returns.
    let transient = |err: &io::Error| matches!(err.raw_os_error(), Some(sys::ENOENT | sys::ENODEV));
    retry(transient, || {
        mount(contract::ROOT_TAG, shared, "9p", MS_RDONLY, ROOT_9P_OPTIONS)
    })
    .map_err(|err| nine_p_error(contract::ROOT_TAG, shared, &err))?;
    if !overlay {
        return Ok(());
    }
    let upper = Path::new(OVERLAY_UPPER);
    fs::create_dir_all(upper)
        .and_then(|()| mount("tmpfs", upper, "tmpfs", TMP, "mode=0755"))
        .and_then(|()| fs::create_dir_all(upper.join("upper")))
        .and_then(|()| fs::create_dir_all(upper.join("work")))
        .and_then(|()| fs::create_dir_all(target))
        .and_then(|()| {
            let layers = format!(
                "lowerdir={OVERLAY_LOWER},upperdir={OVERLAY_UPPER}/upper,workdir={OVERLAY_UPPER}/work"
            );
            mount("overlay", target, "overlay", 0, &layers)
        })
        .map_err(|err| {
            format!(
                "make the root an overlay, for mount points it lacks: {err} (the kernel needs \
                 overlayfs: CONFIG_OVERLAY_FS, built in or as a module)"
            )
        })
}

/// Gives the guest a private tmpfs `/tmp` (a 9p `/tmp` would break
/// open-unlink-fstat, as danobi/vmtest found) in which the host paths
/// `binds` (under the host's `/tmp`: a crate, a target directory, a working
/// directory) appear read-only where they are on the host. They are bound
/// from a second view of the host root's `/tmp`, kept under `/run` until the
/// tmpfs covers the first, then detached.
fn bind_host_tmp(binds: &[PathBuf]) -> Result<()> {
    let root = Path::new(NEWROOT);
    let view = contract::under(root, Path::new(contract::HOST_TMP_VIEW));
    let tmp = contract::under(root, Path::new(contract::GUEST_TMP));
    if !binds.is_empty() {
        fs::create_dir_all(&view)
            .and_then(|()| mount(&tmp, &view, "", MS_BIND, ""))
            .map_err(|err| format!("bind the host's /tmp to {}: {err}", view.display()))?;
    }
    fs::create_dir_all(&tmp)
        .and_then(|()| mount("tmpfs", &tmp, "tmpfs", TMP, "mode=1777"))
        .map_err(|err| format!("mount tmpfs on {}: {err}", tmp.display()))?;
    for bind in binds {
        let relative = bind
            .strip_prefix(contract::GUEST_TMP)
            .map_err(|_| format!("{} is not under {}", bind.display(), contract::GUEST_TMP))?;
        let (source, target) = (view.join(relative), tmp.join(relative));
        let made = if source.is_dir() {
            fs::create_dir_all(&target)
        } else {
            // A file is bound over an empty file.
            target
                .parent()
                .map_or(Ok(()), fs::create_dir_all)
                .and_then(|()| File::create(&target).map(drop))
        };
        made.and_then(|()| mount(&source, &target, "", MS_BIND, ""))
            .map_err(|err| {
                format!("bind the host's {} into the guest's /tmp: {err}", bind.display())
            })?;
        debug!("bound the host's {}", bind.display());
    }
    if !binds.is_empty() {
        let view = c_string(&view).map_err(|err| err.to_string())?;
        // SAFETY: a NUL-terminated path that outlives the call.
        if unsafe { sys::umount2(view.as_ptr(), sys::MNT_DETACH) } != 0 {
            warn!("detach the view of the host's /tmp: {}", io::Error::last_os_error());
        }
    }
    Ok(())
}

/// cgroup2, where the test server gives every job a cgroup of its own.
/// `favordynmods` (Linux 6.0) makes moving a process into a cgroup cheap:
/// without it each move waits for an RCU grace period, about 11 ms of every
/// test under emulation. Older kernels refuse the option: mount without it.
/// Best effort: a kernel without cgroups still runs tests.
fn mount_cgroup2() {
    let target = Path::new("/sys/fs/cgroup");
    let result = fs::create_dir_all(target)
        .and_then(|()| mount("cgroup2", target, "cgroup2", PSEUDO, "favordynmods"))
        .or_else(|_| mount("cgroup2", target, "cgroup2", PSEUDO, ""));
    if let Err(err) = result {
        warn!("mount cgroup2 on {}: {err} (going on without it)", target.display());
    }
}

/// A host directory shared over 9p, where the host asked.
fn mount_share(share: &Share) -> Result<()> {
    let target = contract::under(Path::new(NEWROOT), &share.guest_path);
    make_mount_point(&target).map_err(|err| {
        format!("cannot mount a shared directory at {}: {err}", share.guest_path.display())
    })?;
    let flags = if share.writable { 0 } else { MS_RDONLY };
    mount(&share.tag, &target, "9p", flags, SHARE_9P_OPTIONS)
        .map_err(|err| nine_p_error(&share.tag, &share.guest_path, &err))
}

/// Makes `target` a directory to mount on. The root is read-only: a missing
/// directory can be made in a tmpfs (`/tmp`, `/run`), or under `/mnt`,
/// which then becomes a tmpfs of the guest's own (as danobi/vmtest makes
/// it), and nowhere else.
fn make_mount_point(target: &Path) -> Result<()> {
    if target.is_dir() {
        return Ok(());
    }
    let mnt = Path::new(NEWROOT).join("mnt");
    match fs::create_dir_all(target) {
        Ok(()) => Ok(()),
        Err(_) if target.starts_with(&mnt) => mount("tmpfs", &mnt, "tmpfs", TMP, "mode=0755")
            .and_then(|()| fs::create_dir_all(target))
            .map_err(|err| format!("make {} a tmpfs: {err}", mnt.display())),
        Err(err) => Err(format!(
            "{err} (the guest's root is read-only: use a path that exists on the host, or one \
             under /mnt, /tmp or /run)"
        )),
    }
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

/// Makes the host root `/`, as switch_root(8) does. pivot_root(2) cannot be
/// used: the initramfs is the rootfs, which can never be unmounted.
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

/// Loads `/modules/*` in name order (the `NN-` prefixes). No `/modules`
/// means a kernel with everything needed built in.
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

/// Loads one (decompressed) module with finit_module(2).
fn load_module(path: &Path) -> Result<()> {
    let name = path
        .file_name()
        .unwrap_or(path.as_os_str())
        .to_string_lossy();
    let file = File::open(path).map_err(|err| format!("open module {name}: {err}"))?;
    let started = Instant::now();
    // SAFETY: finit_module(fd, param_values, flags) with an open fd and a
    // NUL-terminated (empty) parameter string.
    let rc = unsafe { sys::syscall(sys::SYS_FINIT_MODULE, file.as_raw_fd(), c"".as_ptr(), 0) };
    let err = io::Error::last_os_error();
    match rc {
        0 => debug!("loaded {name} in {} ms", started.elapsed().as_millis()),
        _ if err.raw_os_error() == Some(sys::EEXIST) => debug!("{name} was already loaded"),
        _ => return Err(format!("load module {name}: {err}")),
    }
    Ok(())
}

// ---- A fresh guest, even when restored from a snapshot ----

/// Sets the clock to the host's.
fn set_clock(clock_ns: u64) -> Result<()> {
    let time = sys::Timespec {
        seconds: (clock_ns / 1_000_000_000) as i64,
        nanoseconds: (clock_ns % 1_000_000_000) as i64,
    };
    // SAFETY: a valid timespec, read by the call.
    if unsafe { sys::clock_settime(sys::CLOCK_REALTIME, &time) } != 0 {
        return Err(format!("clock_settime: {}", io::Error::last_os_error()));
    }
    Ok(())
}

/// Mixes the host's `seed` into the kernel's random pool, credited, and
/// reseeds the kernel's generator from it at once: no two guests restored
/// from one snapshot draw the same numbers.
fn seed_random(seed: &[u8]) -> Result<()> {
    let random = OpenOptions::new()
        .write(true)
        .open("/dev/urandom")
        .map_err(|err| format!("open /dev/urandom: {err}"))?;
    // `struct rand_pool_info`: bits credited, byte count, the bytes.
    let bits = c_int::try_from(seed.len() * 8).map_err(|_| "the seed is too long")?;
    let mut info = Vec::with_capacity(8 + seed.len());
    info.extend_from_slice(&bits.to_ne_bytes());
    info.extend_from_slice(&(bits / 8).to_ne_bytes());
    info.extend_from_slice(seed);
    // SAFETY: an open descriptor and a rand_pool_info of the size it says.
    if unsafe { sys::ioctl(random.as_raw_fd(), sys::RNDADDENTROPY, info.as_ptr()) } != 0 {
        return Err(format!("RNDADDENTROPY: {}", io::Error::last_os_error()));
    }
    // SAFETY: an open descriptor; the request takes no argument.
    if unsafe { sys::ioctl(random.as_raw_fd(), sys::RNDRESEEDCRNG) } != 0 {
        return Err(format!("RNDRESEEDCRNG: {}", io::Error::last_os_error()));
    }
    Ok(())
}

// ---- The control port ----

/// Opens the control port, says the init is ready, and reads the host's
/// boot parameters.
fn handshake() -> Result<BootParams> {
    let path = retry(|err| err.kind() == ErrorKind::NotFound, control_port).map_err(|err| {
        format!(
            "find the virtio-serial port {}: {err} (needs CONFIG_VIRTIO_CONSOLE and \
             QEMU's virtserialport)",
            contract::CONTROL_PORT
        )
    })?;
    let mut port = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|err| format!("open {}: {err}", path.display()))?;
    writeln!(port, "{}", contract::INIT_READY)
        .map_err(|err| format!("write to {}: {err}", path.display()))?;
    let line = read_line(&mut port).map_err(|err| format!("read the boot parameters: {err}"))?;
    *port_guard() = Some(port);
    BootParams::decode(&line)
}

/// The `/dev` node of the virtio-serial port named [`contract::CONTROL_PORT`].
/// Ports and their names (sent by QEMU over the control queue) appear
/// asynchronously, so the caller retries; there is no udev to make links.
fn control_port() -> io::Result<PathBuf> {
    for entry in fs::read_dir("/sys/class/virtio-ports")? {
        let entry = entry?;
        let name = fs::read(entry.path().join("name")).unwrap_or_default();
        let dev = Path::new("/dev").join(entry.file_name());
        if name.trim_ascii_end() == contract::CONTROL_PORT.as_bytes() && dev.exists() {
            return Ok(dev);
        }
    }
    Err(io::Error::new(ErrorKind::NotFound, "no such port yet"))
}

/// Reads one line. The host sends nothing after it until the server says
/// it is ready, so reading in chunks consumes nothing of what follows.
fn read_line(port: &mut File) -> io::Result<String> {
    let mut line = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let read = match port.read(&mut chunk) {
            Ok(0) => return Err(io::Error::new(ErrorKind::UnexpectedEof, "the host hung up")),
            Ok(read) => read,
            Err(err) if err.kind() == ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        line.extend_from_slice(&chunk[..read]);
        if line.last() == Some(&b'\n') {
            line.pop();
            return String::from_utf8(line)
                .map_err(|_| io::Error::new(ErrorKind::InvalidData, "not UTF-8"));
        }
        if line.contains(&b'\n') || line.len() > MAX_BOOT_LINE {
            return Err(io::Error::new(ErrorKind::InvalidData, "not a single line"));
        }
    }
}

/// Logs a failure and tells the host, if the port is open. (`try_lock`:
/// this runs in the panic hook too, which must never wait.)
fn fail(reason: &str) {
    error!("{reason}");
    if let Ok(mut port) = PORT.try_lock() {
        if let Some(port) = port.as_mut() {
            let _ = writeln!(port, "{}", contract::init_failed_line(reason));
        }
    }
}

fn port_guard() -> std::sync::MutexGuard<'static, Option<File>> {
    PORT.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---- The test server ----

/// Starts the host's test server with exactly the environment and working
/// directory the host asked for, the control port as descriptor
/// [`contract::CONTROL_FD`], and the console as stdout and stderr; returns
/// its pid.
fn start_server(params: &BootParams) -> Result<c_int> {
    let server = &params.server;
    let port = port_guard()
        .as_ref()
        .ok_or("the control port is not open")?
        .as_raw_fd();
    let mut command = Command::new(&server.program);
    command
        .args(&server.args)
        .env_clear()
        .current_dir(&server.cwd)
        .stdin(Stdio::null());
    for var in &server.env {
        let bytes = var.as_bytes();
        let at = bytes.iter().position(|&byte| byte == b'=').unwrap_or(bytes.len());
        let value = bytes.get(at + 1..).unwrap_or_default();
        command.env(OsStr::from_bytes(&bytes[..at]), OsStr::from_bytes(value));
    }
    // SAFETY: dup2 and fcntl are async-signal-safe and touch no memory.
    unsafe {
        command.pre_exec(move || {
            let target = contract::CONTROL_FD;
            // dup2 onto itself would keep the close-on-exec flag: clear it.
            let rc = if port == target {
                sys::fcntl(target, sys::F_SETFD, 0)
            } else {
                sys::dup2(port, target)
            };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().map_err(|err| {
        format!(
            "start the test server {} in {}: {err}",
            server.program.display(),
            server.cwd.display()
        )
    })?;
    info!("started {}", server.program.display());
    // The server has its own copy now.
    port_guard().take();
    // Dropping `child` neither kills nor waits: the loop below reaps it.
    // Pids fit in pid_t (c_int).
    Ok(child.id() as c_int)
}

/// Reaps every child until the server exits; returns its status. Orphans
/// are re-parented to PID 1 and stay zombies until it waits for them.
/// SIGCHLD keeps its default disposition (not SIG_IGN), so exit statuses
/// are kept for waitpid. The kernel sends PID 1 no signal it has no handler
/// for, so EINTR is not expected, but is retried like anywhere else.
fn reap_until_exit(server: c_int) -> Result<ExitStatus> {
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid out-pointer.
        let pid = unsafe { sys::waitpid(-1, &mut status, 0) };
        let err = io::Error::last_os_error();
        match pid {
            _ if pid == server => return Ok(ExitStatus::from_raw(status)),
            -1 if err.kind() == ErrorKind::Interrupted => continue,
            -1 => return Err(format!("waitpid: {err}")),
            _ => debug!("reaped {pid} ({})", ExitStatus::from_raw(status)),
        }
    }
}
