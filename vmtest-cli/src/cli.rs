//! The command line, and what it asks for: a one-liner, an interactive
//! shell, or the targets of a `vmtest.toml`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use regex::Regex;

use crate::config::{self, Boot, Command, Target, DEFAULT_CPUS, DEFAULT_MEMORY_MIB};
use crate::kernel::default_kernel;
use vmtest_contract::units;
use vmtest_engine::{is_url, url_file_name, Arch};

const AFTER_HELP: &str = "\
With a COMMAND (or `-` for an interactive shell), runs it in a guest booted from
KERNEL; without one, runs every [[target]] of ./vmtest.toml (or -c FILE).

Exit codes: the command's for one target (128 + N if signal N killed it, 124 if
it outlived --timeout, 69 if the VM could not be brought up); the number of
failed targets for several; 64 for a bad command line or configuration.

Environment:
  VMTEST_KERNEL   the kernel when -k is not given
  VMTEST_NO_UI    plain lines even on a terminal
  VMTEST_ACCEL, VMTEST_QEMU, VMTEST_BOOT_TIMEOUT, VMTEST_CACHE_DIR: see the README";

/// Run a command, or every target of a vmtest.toml, under a chosen Linux kernel.
#[derive(Parser, Debug)]
#[command(name = "vmtest", version, after_help = AFTER_HELP)]
pub struct Args {
    /// The configuration file (default: ./vmtest.toml)
    #[arg(short, long, conflicts_with_all = ["kernel", "image", "kargs", "rootfs", "arch", "qemu_command", "kvm_cpu_args"])]
    pub config: Option<PathBuf>,
    /// Run only the targets whose name matches this regular expression
    #[arg(short, long, default_value = ".*")]
    pub filter: String,
    /// The kernel to boot (default: VMTEST_KERNEL, the newest kernel
    /// scripts/setup.sh fetched, or the host's /boot/vmlinuz-$(uname -r))
    #[arg(short, long)]
    pub kernel: Option<PathBuf>,
    /// A disk image to boot instead of a kernel: it runs qemu-guest-agent
    /// itself (see the README)
    #[arg(short, long, conflicts_with_all = ["kernel", "kargs", "rootfs"])]
    pub image: Option<PathBuf>,
    /// Boot the image through UEFI
    #[arg(long)]
    pub uefi: bool,
    /// More kernel command-line arguments
    #[arg(long)]
    pub kargs: Option<String>,
    /// The guest's root directory (default: the host's /, read-only)
    #[arg(short, long)]
    pub rootfs: Option<PathBuf>,
    /// The guest's architecture: the host's, or aarch64 on x86_64 (emulated;
    /// needs -r ROOT and a static aarch64 build of vmtest, see the README)
    #[arg(short, long)]
    pub arch: Option<String>,
    /// The QEMU binary
    #[arg(short, long)]
    pub qemu_command: Option<PathBuf>,
    /// QEMU's -cpu under KVM (default: host)
    #[arg(long)]
    pub kvm_cpu_args: Option<String>,
    /// Fail the command, and stop its VM, after this long (90s, 2m, 1h;
    /// a plain number is seconds); for a configuration, the targets without
    /// a `timeout` of their own. Default: none
    #[arg(long, value_parser = |text: &str| units::duration(text))]
    pub timeout: Option<Duration>,
    /// Run COMMAND as a program and its arguments, as they are, without a
    /// shell: for cargo's runner (CARGO_TARGET_<TRIPLE>_RUNNER="vmtest -k
    /// KERNEL --exec")
    #[arg(long)]
    pub exec: bool,
    /// The command, run by `bash -c` in the current directory (with
    /// --exec, a program and its arguments); `-` for an interactive shell
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<OsString>,
}

/// What to run.
#[derive(Debug)]
pub enum Mode {
    /// One target, from the command line; `note` says which kernel was
    /// chosen, when it was not given.
    OneLiner {
        target: Target,
        note: Option<String>,
    },
    /// An interactive shell in a guest.
    Shell {
        target: Target,
        note: Option<String>,
    },
    /// The targets of a configuration file, and its directory.
    Config { targets: Vec<Target>, dir: PathBuf },
}

/// A mistake on the command line or in the configuration.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("{0}")]
    Other(String),
}

impl Args {
    /// What the arguments ask for, checked.
    pub fn mode(&self, cwd: &Path) -> Result<Mode, UsageError> {
        if self.uefi && self.image.is_none() {
            return Err(UsageError::Other(
                "--uefi boots an image: give one with -i".into(),
            ));
        }
        let one_liner = !self.command.is_empty() || self.kernel.is_some() || self.image.is_some();
        if !one_liner {
            let file = self
                .config
                .clone()
                .unwrap_or_else(|| cwd.join("vmtest.toml"));
            let file = cwd.join(file);
            let filter = Regex::new(&self.filter).map_err(|error| {
                UsageError::Other(format!(
                    "-f {:?} is not a regular expression: {error}",
                    self.filter
                ))
            })?;
            let targets: Vec<Target> = config::load(&file)?
                .into_iter()
                .filter(|target| filter.is_match(&target.name))
                .map(|target| Target {
                    timeout: target.timeout.or(self.timeout),
                    ..target
                })
                .collect();
            if targets.is_empty() {
                return Err(UsageError::Other(format!(
                    "no target of {} matches -f {:?}",
                    file.display(),
                    self.filter
                )));
            }
            let dir = file
                .parent()
                .map_or_else(|| cwd.to_path_buf(), Path::to_path_buf);
            return Ok(Mode::Config { targets, dir });
        }
        if self.command.is_empty() {
            return Err(UsageError::Other(match self.exec {
                true => "--exec needs a program to run, after the options".into(),
                false => "no command: give one after the options (`vmtest -k KERNEL uname -r`), or `-` for a shell".into(),
            }));
        }
        let shell = !self.exec && self.command == ["-"];
        let command = match self.command.split_first() {
            Some((program, args)) if self.exec => Command::Exec {
                program: program.clone(),
                args: args.to_vec(),
            },
            _ => {
                let words: Option<Vec<&str>> =
                    self.command.iter().map(|word| word.to_str()).collect();
                // As danobi/vmtest: the words, joined, are shell code for bash.
                Command::Shell(
                    words
                        .ok_or_else(|| {
                            UsageError::Other(
                                "the command is not UTF-8, which bash -c takes: give --exec to run \
                                 a program with its arguments as they are"
                                    .into(),
                            )
                        })?
                        .join(" "),
                )
            }
        };
        let (boot, note) = match &self.image {
            Some(_) if shell => {
                return Err(UsageError::Other(
                    "an interactive shell needs a kernel (-k), not an image".into(),
                ))
            }
            Some(image) => (
                Boot::Image {
                    image: existing_file("image", &cwd.join(image))?,
                    uefi: self.uefi,
                    bios: None,
                },
                None,
            ),
            None => self.kernel_boot(cwd)?,
        };
        let arch = match &self.arch {
            Some(name) => config::guest_arch(name, &boot, "-r ROOT")
                .map_err(|problem| UsageError::Other(problem.replace("`arch`", "--arch")))?,
            None => Arch::HOST,
        };
        let path = match &boot {
            Boot::Kernel { kernel, .. } => kernel,
            Boot::Image { image, .. } => image,
        };
        let name = match path.to_str().filter(|path| is_url(path)) {
            Some(url) => url_file_name(url),
            None => path.file_name().map_or_else(
                || "vmtest".into(),
                |name| name.to_string_lossy().into_owned(),
            ),
        };
        let target = Target {
            name,
            line: 0,
            arch,
            boot,
            command,
            cpus: DEFAULT_CPUS,
            memory_mib: DEFAULT_MEMORY_MIB,
            mounts: Vec::new(),
            qemu_command: self.qemu_command.clone(),
            extra_args: Vec::new(),
            kvm_cpu_args: self.kvm_cpu_args.clone(),
            timeout: self.timeout,
        };
        Ok(match shell {
            true => Mode::Shell { target, note },
            false => Mode::OneLiner { target, note },
        })
    }

    /// The kernel boot the arguments ask for, and a note saying which
    /// kernel was chosen when none was given.
    fn kernel_boot(&self, cwd: &Path) -> Result<(Boot, Option<String>), UsageError> {
        let (kernel, note) = match &self.kernel {
            Some(kernel) => (kernel.clone(), None),
            None => {
                let chosen =
                    default_kernel(|var| std::env::var(var).ok()).map_err(UsageError::Other)?;
                let note = format!("kernel {} ({})", chosen.kernel.display(), chosen.because);
                (chosen.kernel, Some(note))
            }
        };
        // A URL is fetched before anything boots; a path must be a file.
        let kernel = match kernel.to_str().is_some_and(is_url) {
            true => kernel,
            false => existing_file("kernel", &cwd.join(kernel))?,
        };
        let rootfs = self
            .rootfs
            .as_ref()
            .map_or_else(|| PathBuf::from("/"), |rootfs| cwd.join(rootfs));
        if !rootfs.is_dir() {
            return Err(UsageError::Other(format!(
                "rootfs {} is not a directory",
                rootfs.display()
            )));
        }
        let boot = Boot::Kernel {
            kernel,
            kernel_args: self.kargs.clone().unwrap_or_default(),
            rootfs,
        };
        Ok((boot, note))
    }
}

/// `path`, the `what` to boot, if it is a file.
fn existing_file(what: &str, path: &Path) -> Result<PathBuf, UsageError> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    let why = match path.is_dir() {
        true => "is a directory",
        false => "does not exist",
    };
    Err(UsageError::Other(format!(
        "{what} {} {why}",
        path.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("vmtest").chain(words.iter().copied())).unwrap()
    }

    #[test]
    fn words_after_the_options_are_the_command() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bzImage"), "").unwrap();
        let mode = args(&["-k", "bzImage", "uname", "-r"])
            .mode(dir.path())
            .unwrap();
        let Mode::OneLiner { target, note } = mode else {
            panic!("{mode:?}")
        };
        assert_eq!(target.command, Command::Shell("uname -r".into()));
        assert_eq!(note, None);
        assert!(matches!(
            args(&["-k", "bzImage", "-"]).mode(dir.path()).unwrap(),
            Mode::Shell { .. }
        ));
        let error = args(&["-k", "missing", "true"])
            .mode(dir.path())
            .unwrap_err();
        assert!(
            error.to_string().ends_with("missing does not exist"),
            "{error}"
        );
        let error = args(&["-k", "bzImage"]).mode(dir.path()).unwrap_err();
        assert!(error.to_string().starts_with("no command"), "{error}");
    }

    #[test]
    fn an_image_boots_instead_of_a_kernel() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("disk.qcow2"), "").unwrap();
        let mode = args(&["-i", "disk.qcow2", "--uefi", "true"])
            .mode(dir.path())
            .unwrap();
        let Mode::OneLiner { target, .. } = mode else {
            panic!("{mode:?}")
        };
        assert_eq!(target.name, "disk.qcow2");
        assert_eq!(
            target.boot,
            Boot::Image {
                image: dir.path().join("disk.qcow2"),
                uefi: true,
                bios: None
            }
        );
        let error = args(&["-i", "disk.qcow2", "-"])
            .mode(dir.path())
            .unwrap_err();
        assert!(error.to_string().contains("needs a kernel"), "{error}");
        let error = args(&["-i", "nope.qcow2", "true"])
            .mode(dir.path())
            .unwrap_err();
        assert!(
            error.to_string().ends_with("nope.qcow2 does not exist"),
            "{error}"
        );
        assert!(Args::try_parse_from(["vmtest", "-i", "d", "-k", "k", "true"]).is_err());
        std::fs::write(dir.path().join("k"), "").unwrap();
        let error = args(&["--uefi", "-k", "k", "true"])
            .mode(dir.path())
            .unwrap_err();
        assert!(
            error.to_string().contains("--uefi boots an image"),
            "{error}"
        );
    }

    #[test]
    fn without_a_command_the_configuration_is_read_and_filtered() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k"), "").unwrap();
        std::fs::write(
            dir.path().join("vmtest.toml"),
            "[[target]]\nname = \"one\"\nkernel = \"k\"\ncommand = \"true\"\n\
             [[target]]\nname = \"two\"\nkernel = \"k\"\ncommand = \"true\"\n",
        )
        .unwrap();
        let Mode::Config { targets, dir: base } = args(&["-f", "^t"]).mode(dir.path()).unwrap()
        else {
            panic!("not config mode");
        };
        assert_eq!(targets.len(), 1);
        assert_eq!(targets[0].name, "two");
        assert_eq!(base, dir.path());
        let error = args(&["-f", "zzz"]).mode(dir.path()).unwrap_err();
        assert!(error.to_string().contains("no target of"), "{error}");
        assert!(Args::try_parse_from(["vmtest", "-c", "x.toml", "-k", "k", "true"]).is_err());
    }
}
