//! QEMU's command line: one function per feature, each returning its
//! arguments, chained in [`arguments`].

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::accel::Accel;
use crate::contract::boot::{Share, CONTROL_PORT, ROOT_TAG};

/// Everything that decides one VM's command line.
#[derive(Debug, Clone)]
pub(crate) struct QemuConfig<'a> {
    pub kernel: &'a Path,
    pub initramfs: &'a Path,
    pub kernel_cmdline: &'a str,
    pub memory_mib: u32,
    pub cpus: u32,
    pub accel: Accel,
    pub console_log: &'a Path,
    pub control_socket: &'a Path,
    pub monitor_socket: &'a Path,
    pub shares: &'a [Share],
}

/// The full argument list, without the binary.
pub(crate) fn arguments(config: &QemuConfig) -> Vec<OsString> {
    [
        base(),
        machine(config.accel, config.cpus, config.memory_mib),
        kernel(config.kernel, config.initramfs, config.kernel_cmdline),
        console(config.console_log),
        host_root(),
        shares(config.shares),
        control_port(config.control_socket),
        monitor(config.monitor_socket),
    ]
    .concat()
}

fn os(parts: &[&str]) -> Vec<OsString> {
    parts.iter().map(OsString::from).collect()
}

/// No default devices, no config files, no display; `-no-reboot` together
/// with the guest's `panic=-1` makes QEMU exit when the guest kernel panics.
fn base() -> Vec<OsString> {
    os(&[
        "-nodefaults",
        "-no-user-config",
        "-nographic",
        "-display",
        "none",
        "-no-reboot",
    ])
}

fn machine(accel: Accel, cpus: u32, memory_mib: u32) -> Vec<OsString> {
    os(&[
        "-machine",
        "pc",
        "-accel",
        accel.qemu_accel(),
        "-cpu",
        accel.cpu_model(),
        "-smp",
        &cpus.to_string(),
        "-m",
        &format!("{memory_mib}M"),
    ])
}

fn kernel(image: &Path, initramfs: &Path, cmdline: &str) -> Vec<OsString> {
    vec![
        "-kernel".into(),
        image.into(),
        "-initrd".into(),
        initramfs.into(),
        "-append".into(),
        cmdline.into(),
    ]
}

/// The guest's serial console goes to a file, whose tail explains crashes.
fn console(log: &Path) -> Vec<OsString> {
    vec![
        "-chardev".into(),
        option_list("file,id=console,path=", log),
        "-serial".into(),
        "chardev:console".into(),
    ]
}

/// The host's `/`, read-only: a guest can never damage the host.
/// `multidevs=remap` keeps inode numbers unique across host mounts.
fn host_root() -> Vec<OsString> {
    vec![
        "-virtfs".into(),
        format!(
            "local,id=root,path=/,mount_tag={ROOT_TAG},security_model=none,readonly=on,multidevs=remap"
        )
        .into(),
    ]
}

/// Host directories the guest mounts at the same paths, each with its tag.
fn shares(shares: &[Share]) -> Vec<OsString> {
    shares
        .iter()
        .flat_map(|share| {
            let mut spec = option_list(&format!("local,id={},path=", share.tag), &share.path);
            spec.push(format!(
                ",mount_tag={},security_model=none,multidevs=remap",
                share.tag
            ));
            if !share.writable {
                spec.push(",readonly=on");
            }
            ["-virtfs".into(), spec]
        })
        .collect()
}

/// The control port: the init's handshake, then the test server's protocol.
fn control_port(socket: &Path) -> Vec<OsString> {
    vec![
        "-device".into(),
        "virtio-serial-pci".into(),
        "-chardev".into(),
        socket_chardev("control", socket),
        "-device".into(),
        format!("virtserialport,chardev=control,name={CONTROL_PORT}").into(),
    ]
}

fn monitor(socket: &Path) -> Vec<OsString> {
    vec![
        "-chardev".into(),
        socket_chardev("monitor", socket),
        "-mon".into(),
        "chardev=monitor,mode=control".into(),
    ]
}

/// A unix socket QEMU listens on without waiting for us to connect.
fn socket_chardev(id: &str, path: &Path) -> OsString {
    let mut spec = option_list(&format!("socket,id={id},path="), path);
    spec.push(",server=on,wait=off");
    spec
}

/// `prefix` followed by `path` as a QEMU option value: QEMU splits options on
/// commas, and a literal comma is written as two.
fn option_list(prefix: &str, path: &Path) -> OsString {
    let mut escaped = Vec::with_capacity(path.as_os_str().len());
    for &byte in path.as_os_str().as_bytes() {
        escaped.push(byte);
        if byte == b',' {
            escaped.push(b',');
        }
    }
    let mut value = OsString::from(prefix);
    value.push(OsStr::from_bytes(&escaped));
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(path: &str, writable: bool) -> Share {
        Share {
            tag: "vmtest_share0".into(),
            path: path.into(),
            writable,
        }
    }

    fn config<'a>(shares: &'a [Share]) -> QemuConfig<'a> {
        QemuConfig {
            kernel: Path::new("/k/vmlinuz"),
            initramfs: Path::new("/cache/initramfs.cpio"),
            kernel_cmdline: "console=ttyS0 panic=-1",
            memory_mib: 512,
            cpus: 2,
            accel: Accel::Tcg,
            console_log: Path::new("/run/vm/console.log"),
            control_socket: Path::new("/run/vm/control.sock"),
            monitor_socket: Path::new("/run/vm/qmp.sock"),
            shares,
        }
    }

    fn after<'a>(args: &'a [OsString], flag: &str) -> Vec<&'a str> {
        args.windows(2)
            .filter(|pair| pair[0] == flag)
            .map(|pair| pair[1].to_str().unwrap())
            .collect()
    }

    #[test]
    fn the_command_line_has_each_part_once() {
        let shares = [share("/t/vmtest/shared", true)];
        let args = arguments(&config(&shares));
        assert_eq!(args[0], "-nodefaults");
        assert!(args.iter().any(|arg| arg == "-no-reboot"));
        assert_eq!(after(&args, "-accel"), ["tcg,thread=single"]);
        assert_eq!(after(&args, "-smp"), ["2"]);
        assert_eq!(after(&args, "-m"), ["512M"]);
        assert_eq!(after(&args, "-kernel"), ["/k/vmlinuz"]);
        assert_eq!(after(&args, "-initrd"), ["/cache/initramfs.cpio"]);
        assert_eq!(after(&args, "-append"), ["console=ttyS0 panic=-1"]);
        assert_eq!(
            after(&args, "-virtfs"),
            [
                "local,id=root,path=/,mount_tag=vmtest_root,security_model=none,readonly=on,multidevs=remap",
                "local,id=vmtest_share0,path=/t/vmtest/shared,mount_tag=vmtest_share0,security_model=none,multidevs=remap",
            ]
        );
        assert_eq!(
            after(&args, "-chardev"),
            [
                "file,id=console,path=/run/vm/console.log",
                "socket,id=control,path=/run/vm/control.sock,server=on,wait=off",
                "socket,id=monitor,path=/run/vm/qmp.sock,server=on,wait=off",
            ]
        );
        assert_eq!(
            after(&args, "-device"),
            [
                "virtio-serial-pci",
                "virtserialport,chardev=control,name=org.vmtest.control.0",
            ]
        );
    }

    #[test]
    fn commas_in_paths_are_doubled_and_read_only_shares_say_so() {
        let shares = [share("/odd,dir/shared", false)];
        let args = arguments(&config(&shares));
        assert_eq!(
            after(&args, "-virtfs")[1],
            "local,id=vmtest_share0,path=/odd,,dir/shared,mount_tag=vmtest_share0,security_model=none,multidevs=remap,readonly=on"
        );
    }
}
