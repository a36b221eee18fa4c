//! QEMU's command line: one function per feature, each returning its
//! arguments, chained in [`arguments`].

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::model::accel::Accel;
use crate::model::arch::Arch;
use vmtest_contract::boot::ROOT_TAG;

/// A host directory QEMU exports to the guest under a 9p tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Export {
    pub tag: String,
    pub host_path: PathBuf,
    pub writable: bool,
}

/// Everything that decides one VM's command line.
#[derive(Debug, Clone)]
pub(crate) struct QemuConfig<'a> {
    pub machine: Machine<'a>,
    pub boot: Boot<'a>,
    pub exports: &'a [Export],
    /// Virtio-serial ports: name in the guest, socket on the host.
    pub ports: &'a [(&'a str, &'a Path)],
    pub console_log: &'a Path,
    pub monitor_socket: &'a Path,
    /// Added last, as given (a target's `extra_args`).
    pub extra: &'a [String],
}

/// The virtual machine itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Machine<'a> {
    pub arch: Arch,
    pub accel: Accel,
    /// `-cpu` under KVM, instead of `host`.
    pub kvm_cpu: Option<&'a str>,
    pub cpus: u32,
    pub memory_mib: u32,
}

/// What the VM boots.
#[derive(Debug, Clone)]
pub(crate) enum Boot<'a> {
    /// A kernel and our initramfs, on a 9p root.
    Kernel {
        kernel: &'a Path,
        initramfs: &'a Path,
        cmdline: &'a str,
        /// The directory the guest sees as `/`.
        root: &'a Path,
    },
    /// A whole disk image, never written to (`snapshot=on`).
    Image {
        image: &'a Path,
        /// `qcow2` or `raw`.
        format: &'a str,
        firmware: Option<Firmware<'a>>,
    },
}

/// UEFI firmware.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Firmware<'a> {
    /// A whole firmware image (`OVMF.fd`), given as `-bios`.
    Bios(&'a Path),
    /// Firmware code alone (`OVMF_CODE.fd`), as read-only flash.
    Flash(&'a Path),
}

/// The full argument list, without the binary.
pub(crate) fn arguments(config: &QemuConfig) -> Vec<OsString> {
    [
        base(),
        machine(&config.machine),
        boot(&config.boot),
        console(config.console_log),
        exports(config.exports),
        ports(config.ports),
        monitor(config.monitor_socket),
        config.extra.iter().map(OsString::from).collect(),
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

fn machine(machine: &Machine) -> Vec<OsString> {
    let accel = machine.accel;
    let cpu = match (accel, machine.kvm_cpu) {
        (Accel::Kvm, Some(cpu)) => cpu,
        _ => accel.cpu_model(),
    };
    os(&[
        "-machine",
        machine.arch.machine(),
        "-accel",
        accel.qemu_accel(),
        "-cpu",
        cpu,
        "-smp",
        &machine.cpus.to_string(),
        "-m",
        &format!("{}M", machine.memory_mib),
    ])
}

fn boot(boot: &Boot) -> Vec<OsString> {
    match boot {
        Boot::Kernel {
            kernel,
            initramfs,
            cmdline,
            root,
        } => {
            let mut args: Vec<OsString> = vec![
                "-kernel".into(),
                kernel.into(),
                "-initrd".into(),
                initramfs.into(),
                "-append".into(),
                cmdline.into(),
            ];
            args.extend(host_root(root));
            args
        }
        Boot::Image {
            image,
            format,
            firmware,
        } => {
            let mut drive = option_list("file=", image);
            drive.push(format!(",format={format},if=virtio,snapshot=on"));
            let mut args: Vec<OsString> = vec!["-drive".into(), drive];
            match firmware {
                Some(Firmware::Bios(path)) => args.extend(["-bios".into(), path.into()]),
                Some(Firmware::Flash(path)) => {
                    let flash = option_list("if=pflash,format=raw,readonly=on,file=", path);
                    args.extend(["-drive".into(), flash]);
                }
                None => {}
            }
            args
        }
    }
}

/// The guest's memory (`memory_mib`) in the file `path` instead of
/// anonymous memory: mapped shared, so that what the guest writes reaches
/// the file, or private, so that the file is the guest's starting memory
/// and its writes are its own (copy-on-write).
pub(crate) fn memory_file(path: &Path, memory_mib: u32, shared: bool) -> Vec<OsString> {
    let mut backend = OsString::from(format!(
        "memory-backend-file,id=vmtest-ram,size={memory_mib}M,share={},",
        if shared { "on" } else { "off" }
    ));
    backend.push(option_list("mem-path=", path));
    vec![
        "-object".into(),
        backend,
        "-machine".into(),
        "memory-backend=vmtest-ram".into(),
    ]
}

/// What makes QEMU wait, stopped, for a saved guest (`migrate-incoming`
/// over QMP) instead of booting one.
pub(crate) fn incoming() -> Vec<OsString> {
    os(&["-S", "-incoming", "defer"])
}

/// The guest's serial console goes to a file, whose tail explains crashes;
/// appended to, after what a restored guest's snapshot showed.
fn console(log: &Path) -> Vec<OsString> {
    let mut spec = option_list("file,id=console,path=", log);
    spec.push(",append=on");
    vec![
        "-chardev".into(),
        spec,
        "-serial".into(),
        "chardev:console".into(),
    ]
}

/// The guest's root (the host's `/` by default), read-only: a guest can
/// never damage the host. `multidevs=remap` keeps inode numbers unique
/// across host mounts.
fn host_root(path: &Path) -> Vec<OsString> {
    let mut spec = option_list("local,id=root,path=", path);
    spec.push(format!(
        ",mount_tag={ROOT_TAG},security_model=none,readonly=on,multidevs=remap"
    ));
    vec!["-virtfs".into(), spec]
}

/// Host directories the guest mounts, each under its tag.
fn exports(exports: &[Export]) -> Vec<OsString> {
    exports
        .iter()
        .flat_map(|export| {
            let mut spec =
                option_list(&format!("local,id={},path=", export.tag), &export.host_path);
            spec.push(format!(
                ",mount_tag={},security_model=none,multidevs=remap",
                export.tag
            ));
            if !export.writable {
                spec.push(",readonly=on");
            }
            ["-virtfs".into(), spec]
        })
        .collect()
}

/// Virtio-serial ports, each to a unix socket QEMU listens on.
fn ports(ports: &[(&str, &Path)]) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["-device".into(), "virtio-serial-pci".into()];
    for (index, (name, socket)) in ports.iter().enumerate() {
        let id = format!("port{index}");
        args.extend([
            "-chardev".into(),
            socket_chardev(&id, socket),
            "-device".into(),
            format!("virtserialport,chardev={id},name={name}").into(),
        ]);
    }
    args
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

    fn export(path: &str, writable: bool) -> Export {
        Export {
            tag: "vmtest_share0".into(),
            host_path: path.into(),
            writable,
        }
    }

    fn config<'a>(exports: &'a [Export]) -> QemuConfig<'a> {
        let ports: &'static [(&str, &Path)] = Box::leak(Box::new([(
            "org.vmtest.control.0",
            Path::new("/run/vm/control.sock"),
        )]));
        QemuConfig {
            machine: Machine {
                arch: Arch::X86_64,
                accel: Accel::Tcg,
                kvm_cpu: Some("host,-avx512f"),
                cpus: 2,
                memory_mib: 512,
            },
            boot: Boot::Kernel {
                kernel: Path::new("/k/vmlinuz"),
                initramfs: Path::new("/cache/initramfs.cpio"),
                cmdline: "console=ttyS0 panic=-1",
                root: Path::new("/"),
            },
            exports,
            ports,
            console_log: Path::new("/run/vm/console.log"),
            monitor_socket: Path::new("/run/vm/qmp.sock"),
            extra: &[],
        }
    }

    fn after<'a>(args: &'a [OsString], flag: &str) -> Vec<&'a str> {
        args.windows(2)
            .filter(|pair| pair[0] == flag)
            .map(|pair| pair[1].to_str().unwrap())
            .collect()
    }

    #[test]
    fn memory_in_a_file_is_shared_or_copied_on_write() {
        let shared = memory_file(Path::new("/c/snap,1/memory"), 512, true);
        assert_eq!(
            shared,
            [
                "-object",
                "memory-backend-file,id=vmtest-ram,size=512M,share=on,mem-path=/c/snap,,1/memory",
                "-machine",
                "memory-backend=vmtest-ram",
            ]
        );
        let private = memory_file(Path::new("/m"), 4096, false);
        assert_eq!(
            private[1],
            "memory-backend-file,id=vmtest-ram,size=4096M,share=off,mem-path=/m"
        );
    }

    #[test]
    fn the_command_line_has_each_part_once() {
        let exports = [export("/t/vmtest/shared", true)];
        let args = arguments(&config(&exports));
        assert_eq!(args[0], "-nodefaults");
        assert!(args.iter().any(|arg| arg == "-no-reboot"));
        assert_eq!(after(&args, "-accel"), ["tcg,thread=single"]);
        assert_eq!(after(&args, "-cpu"), ["max"]);
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
                "file,id=console,path=/run/vm/console.log,append=on",
                "socket,id=port0,path=/run/vm/control.sock,server=on,wait=off",
                "socket,id=monitor,path=/run/vm/qmp.sock,server=on,wait=off",
            ]
        );
        assert_eq!(
            after(&args, "-device"),
            [
                "virtio-serial-pci",
                "virtserialport,chardev=port0,name=org.vmtest.control.0",
            ]
        );
    }

    #[test]
    fn a_target_may_change_the_root_the_kvm_cpu_and_add_arguments() {
        let extra = ["-device".to_string(), "virtio-rng-pci".to_string()];
        let config = QemuConfig {
            machine: Machine {
                accel: Accel::Kvm,
                ..config(&[]).machine
            },
            boot: Boot::Kernel {
                kernel: Path::new("/k"),
                initramfs: Path::new("/i"),
                cmdline: "",
                root: Path::new("/srv/rootfs"),
            },
            extra: &extra,
            ..config(&[])
        };
        let args = arguments(&config);
        assert_eq!(after(&args, "-cpu"), ["host,-avx512f"]);
        assert!(after(&args, "-virtfs")[0].starts_with("local,id=root,path=/srv/rootfs,"));
        assert_eq!(&args[args.len() - 2..], ["-device", "virtio-rng-pci"]);
    }

    #[test]
    fn an_image_is_a_drive_never_written_and_uefi_its_firmware() {
        let boot = Boot::Image {
            image: Path::new("/images/disk,1.qcow2"),
            format: "qcow2",
            firmware: Some(Firmware::Flash(Path::new("/usr/share/OVMF/OVMF_CODE.fd"))),
        };
        let args = arguments(&QemuConfig {
            boot,
            ..config(&[])
        });
        assert_eq!(
            after(&args, "-drive"),
            [
                "file=/images/disk,,1.qcow2,format=qcow2,if=virtio,snapshot=on",
                "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd",
            ]
        );
        assert!(after(&args, "-kernel").is_empty() && after(&args, "-virtfs").is_empty());
        let bios = Boot::Image {
            image: Path::new("/d.img"),
            format: "raw",
            firmware: Some(Firmware::Bios(Path::new("/usr/share/ovmf/OVMF.fd"))),
        };
        assert_eq!(
            after(
                &arguments(&QemuConfig {
                    boot: bios,
                    ..config(&[])
                }),
                "-bios"
            ),
            ["/usr/share/ovmf/OVMF.fd"]
        );
    }

    #[test]
    fn commas_in_paths_are_doubled_and_read_only_shares_say_so() {
        let exports = [export("/odd,dir/shared", false)];
        let args = arguments(&config(&exports));
        assert_eq!(
            after(&args, "-virtfs")[1],
            "local,id=vmtest_share0,path=/odd,,dir/shared,mount_tag=vmtest_share0,security_model=none,multidevs=remap,readonly=on"
        );
    }
}
