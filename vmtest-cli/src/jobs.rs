//! From targets to the engine's jobs: the VM each boots and the command it
//! runs, as danobi/vmtest runs it (`bash -c`, in the configuration's
//! directory, with the host's environment), and the directory shared
//! read-write at `/mnt/vmtest`.

use std::path::{Path, PathBuf};

use vmtest_engine::{ImageJob, Job, Mount, Program, VmShape, Work};

use crate::config::{Boot, Command, Target};

/// Where the guest sees the configuration's directory (the working
/// directory for a one-liner), read-write.
pub const SHARED_MOUNT: &str = "/mnt/vmtest";

/// What one target runs.
#[derive(Debug, Clone)]
pub enum TargetJob {
    /// A kernel booted on the host's root (or a rootfs): an engine job.
    Kernel(Job),
    /// A disk image that runs qemu-guest-agent itself.
    Image(ImageJob),
}

/// The job for `target`, whose configuration is in `dir`.
pub fn job_for(target: &Target, dir: &Path) -> TargetJob {
    let shared = dir.to_path_buf();
    match &target.boot {
        Boot::Kernel {
            kernel,
            kernel_args,
            rootfs,
        } => {
            let mut shape = VmShape::new(kernel);
            shape.arch = target.arch;
            shape.memory_mib = target.memory_mib;
            shape.cpus = target.cpus;
            shape.kernel_args = kernel_args.clone();
            shape.root = rootfs.clone();
            shape.mounts = std::iter::once((PathBuf::from(SHARED_MOUNT), shared.clone(), true))
                .chain(target.mounts.iter().cloned())
                .map(|(guest_path, host_path, writable)| Mount {
                    guest_path,
                    host_path,
                    writable,
                })
                .collect();
            shape.qemu_binary = target.qemu_command.clone();
            shape.qemu_args = target.extra_args.clone();
            shape.kvm_cpu = target.kvm_cpu_args.clone();
            // As danobi/vmtest: the command starts in the configuration's
            // directory when the guest sees the host's root, else in `/`.
            let on_host_root = rootfs == Path::new("/");
            TargetJob::Kernel(Job {
                name: target.name.clone(),
                shape,
                work: Work::Program(Program {
                    cwd: on_host_root.then_some(shared),
                    ..program(&target.command)
                }),
                timeout: target.timeout,
                allowed_splats: Vec::new(),
            })
        }
        Boot::Image { image, uefi, bios } => TargetJob::Image(ImageJob {
            name: target.name.clone(),
            image: image.clone(),
            uefi: *uefi,
            firmware: bios.clone(),
            cpus: target.cpus,
            memory_mib: target.memory_mib,
            qemu_binary: target.qemu_command.clone(),
            qemu_args: target.extra_args.clone(),
            shared: Some((shared, SHARED_MOUNT.into())),
            program: program(&target.command),
            timeout: target.timeout,
        }),
    }
}

/// What runs `command`: shell code by `bash -c`, as danobi/vmtest runs a
/// target's command; a program with its arguments as they are.
pub fn program(command: &Command) -> Program {
    let (program, args) = match command {
        Command::Shell(code) => ("bash".into(), vec!["-c".into(), code.into()]),
        Command::Exec { program, args } => (program.clone(), args.clone()),
    };
    Program {
        program,
        args,
        ..Program::default()
    }
}
