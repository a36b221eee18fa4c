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
            let on_host_root = rootfs == Path::new("/");
            shape.mounts = std::iter::once((PathBuf::from(SHARED_MOUNT), shared.clone(), true))
                .chain(target.mounts.iter().cloned())
                .chain(match on_host_root {
                    true => Vec::new(),
                    false => reachable_at_host_paths(&target.command, &shared),
                })
                .map(|(guest_path, host_path, writable)| Mount {
                    guest_path,
                    host_path,
                    writable,
                })
                .collect();
            shape.qemu_binary = target.qemu_command.clone();
            shape.qemu_args = target.extra_args.clone();
            shape.kvm_cpu = target.kvm_cpu_args.clone();
            // As danobi/vmtest: a command starts in the configuration's
            // directory when the guest sees the host's root, else in `/`; a
            // program (`--exec`) in the current directory, whatever the root.
            let exec = matches!(target.command, Command::Exec { .. });
            TargetJob::Kernel(Job {
                name: target.name.clone(),
                shape,
                work: Work::Program(Program {
                    cwd: (on_host_root || exec).then_some(shared),
                    ..program(&target.command)
                }),
                timeout: target.timeout,
                allowed_splats: Vec::new(),
            })
        }
        Boot::Image { image, uefi, bios } => TargetJob::Image(ImageJob {
            name: target.name.clone(),
            image: image.clone(),
            arch: target.arch,
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

/// In a guest whose root is not the host's, where a program (`--exec`) and
/// the current directory `cwd` are mounted at their host paths: the
/// program's directory read-only, the directory read-write (as it is at
/// /mnt/vmtest).
fn reachable_at_host_paths(command: &Command, cwd: &Path) -> Vec<(PathBuf, PathBuf, bool)> {
    let Command::Exec { program, .. } = command else {
        return Vec::new();
    };
    let program_dir = Path::new(program)
        .parent()
        .filter(|dir| dir.is_absolute() && !dir.starts_with(cwd));
    program_dir
        .map(|dir| (dir.to_path_buf(), dir.to_path_buf(), false))
        .into_iter()
        .chain(std::iter::once((
            cwd.to_path_buf(),
            cwd.to_path_buf(),
            true,
        )))
        .collect()
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
