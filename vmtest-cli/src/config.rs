//! `vmtest.toml`, in danobi/vmtest's format, unchanged: `[[target]]`s with
//! `name`, `kernel` or `image`, `uefi`, `kernel_args`, `rootfs`, `arch`,
//! `qemu_command`, `kvm_cpu_args`, `command`, and `[target.vm]` with
//! `num_cpus`, `memory`, `mounts` (`host_path`, `writable`), `bios`,
//! `extra_args`; and one field of ours, `timeout` (`"90s"`, `"2m"`, or a
//! number of seconds).
//!
//! Every mistake is found before anything boots, and each is reported with
//! the file, the line, the target and the field: unknown fields, a target
//! with both or neither of `kernel` and `image`, an empty command, an `arch`
//! other than x86_64, paths that do not exist, values out of range. A
//! kernel that does not exist is no mistake in the file: it fails its
//! target alone, as in danobi/vmtest.
//! Relative paths are relative to the file's directory.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use vmtest_contract::units;
use vmtest_engine::{is_url, Arch};

/// danobi/vmtest's defaults, kept so that a `vmtest.toml` means what it did.
pub const DEFAULT_CPUS: u32 = 2;
pub const DEFAULT_MEMORY_MIB: u32 = 4096;

/// A target, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    /// Where it is in its file (1-based), for messages.
    pub line: usize,
    /// The guest's architecture.
    pub arch: Arch,
    pub boot: Boot,
    pub command: Command,
    pub cpus: u32,
    pub memory_mib: u32,
    /// `(guest path, host path, writable)`.
    pub mounts: Vec<(PathBuf, PathBuf, bool)>,
    pub qemu_command: Option<PathBuf>,
    pub extra_args: Vec<String>,
    pub kvm_cpu_args: Option<String>,
    /// The command fails, and its VM is stopped, after this long.
    pub timeout: Option<Duration>,
}

/// The guest architecture `name` asks for, if `boot` can be of it
/// (`rootfs` names the setting that gives a guest its root): a kernel of
/// another architecture than the host's needs a root of its own; a disk
/// image brings its own.
pub fn guest_arch(name: &str, boot: &Boot, rootfs: &str) -> Result<Arch, String> {
    let arch = Arch::from_name(name)
        .ok_or_else(|| format!("`arch` {name:?} is not one vmtest knows: use x86_64 or aarch64"))?;
    match boot {
        Boot::Kernel { rootfs: root, .. } if arch != Arch::HOST && root == Path::new("/") => {
            Err(format!(
                "an {} guest cannot run this host's {} root: give {rootfs} with an {} userland \
                 (scripts/setup.sh --arm64 makes one)",
                arch.name(),
                Arch::HOST.name(),
                arch.name()
            ))
        }
        _ => Ok(arch),
    }
}

/// What a target runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Shell code, run by `bash -c` (a `vmtest.toml`'s `command`, a
    /// one-liner's words).
    Shell(String),
    /// A program and its arguments, as they are (`vmtest --exec`).
    Exec {
        program: std::ffi::OsString,
        args: Vec<std::ffi::OsString>,
    },
}

/// What a target boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    Kernel {
        kernel: PathBuf,
        kernel_args: String,
        /// The guest's root directory, `/` for the host's.
        rootfs: PathBuf,
    },
    Image {
        image: PathBuf,
        uefi: bool,
        /// The UEFI firmware, when not the default OVMF.
        bios: Option<PathBuf>,
    },
}

/// Everything wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

/// One mistake, and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: usize,
    /// The target it is in, when it is in one.
    pub target: Option<String>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file.display(), self.line)?;
        if let Some(target) = &self.target {
            write!(f, "target {target:?}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.problems.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    target: Vec<Spanned<RawTarget>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: Spanned<String>,
    image: Option<Spanned<PathBuf>>,
    uefi: Option<Spanned<bool>>,
    kernel: Option<Spanned<PathBuf>>,
    kernel_args: Option<Spanned<String>>,
    kvm_cpu_args: Option<String>,
    rootfs: Option<Spanned<PathBuf>>,
    arch: Option<Spanned<String>>,
    qemu_command: Option<PathBuf>,
    command: Option<Spanned<String>>,
    timeout: Option<Spanned<RawDuration>>,
    #[serde(default)]
    vm: RawVm,
}

/// A duration as written: a number of seconds, or text with a unit.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawDuration {
    Seconds(i64),
    Text(String),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawVm {
    num_cpus: Option<Spanned<i64>>,
    memory: Option<Spanned<String>>,
    #[serde(default)]
    mounts: BTreeMap<String, Spanned<RawMount>>,
    bios: Option<Spanned<PathBuf>>,
    #[serde(default)]
    extra_args: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMount {
    host_path: PathBuf,
    #[serde(default)]
    writable: bool,
}

/// Any target's name, and where it is, for errors in a file that does not
/// read as a configuration.
#[derive(Deserialize)]
struct Names {
    #[serde(default)]
    target: Vec<Spanned<Named>>,
}

#[derive(Deserialize)]
struct Named {
    name: Option<String>,
}

/// The name of the target whose table holds `offset`, if the file reads as
/// TOML at all.
fn target_around(text: &str, offset: usize) -> Option<String> {
    let names: Names = toml::from_str(text).ok()?;
    names
        .target
        .into_iter()
        .find(|target| target.span().contains(&offset))
        .and_then(|target| target.into_inner().name)
}

/// Reads and checks the configuration in `file`.
pub fn load(file: &Path) -> Result<Vec<Target>, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|error| ConfigError {
        problems: vec![Problem {
            file: file.to_path_buf(),
            line: 0,
            target: None,
            message: format!("cannot read it: {error}"),
        }],
    })?;
    parse(file, &text)
}

/// Checks the configuration `text`, read from `file` (relative paths are
/// relative to its directory).
pub fn parse(file: &Path, text: &str) -> Result<Vec<Target>, ConfigError> {
    let mut checker = Checker {
        file,
        text,
        base: file.parent().unwrap_or(Path::new(".")),
        problems: Vec::new(),
        target: None,
    };
    let raw: RawConfig = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(error) => {
            let span = error.span().unwrap_or(0..0);
            checker.target = target_around(text, span.start);
            checker.problem(span, error.message().to_string());
            return Err(checker.finish());
        }
    };
    if raw.target.is_empty() {
        checker.problem(
            0..0,
            "no [[target]]: add one with a `name`, a `kernel` (or `image`) and a `command`".into(),
        );
    }
    let mut targets: Vec<Target> = Vec::new();
    for raw in raw.target {
        let span = raw.span();
        if let Some(target) = checker.target(raw.into_inner(), span) {
            if targets.iter().any(|other| other.name == target.name) {
                checker.problem_in(
                    &target.name,
                    target.line,
                    "another target has this name: names tell targets apart".into(),
                );
            }
            targets.push(target);
        }
    }
    match checker.problems.is_empty() {
        true => Ok(targets),
        false => Err(checker.finish()),
    }
}

struct Checker<'a> {
    file: &'a Path,
    text: &'a str,
    base: &'a Path,
    problems: Vec<Problem>,
    /// The target being checked.
    target: Option<String>,
}

impl Checker<'_> {
    fn line(&self, span: &Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text[..end].matches('\n').count() + 1
    }

    fn problem(&mut self, span: Range<usize>, message: String) {
        let line = self.line(&span);
        self.problems.push(Problem {
            file: self.file.to_path_buf(),
            line,
            target: self.target.clone(),
            message,
        });
    }

    fn problem_in(&mut self, target: &str, line: usize, message: String) {
        self.problems.push(Problem {
            file: self.file.to_path_buf(),
            line,
            target: Some(target.to_string()),
            message,
        });
    }

    fn finish(self) -> ConfigError {
        ConfigError {
            problems: self.problems,
        }
    }

    /// A path relative to the file's directory.
    fn resolve(&self, path: &Path) -> PathBuf {
        self.base.join(path)
    }

    /// `field`'s path must exist (as a directory if `dir`).
    fn existing(&mut self, field: &str, path: &Spanned<PathBuf>, dir: bool) -> PathBuf {
        let resolved = self.resolve(path.get_ref());
        let problem = match (resolved.exists(), resolved.is_dir()) {
            (false, _) => Some("does not exist"),
            (true, false) if dir => Some("is not a directory"),
            (true, true) if !dir => Some("is a directory"),
            _ => None,
        };
        if let Some(problem) = problem {
            self.problem(
                path.span(),
                format!("`{field}` {} {problem}", resolved.display()),
            );
        }
        resolved
    }

    fn target(&mut self, raw: RawTarget, span: Range<usize>) -> Option<Target> {
        let name = raw.name.get_ref().trim().to_string();
        self.target = Some(name.clone());
        let line = self.line(&span);
        let before = self.problems.len();
        if name.is_empty() {
            self.problem(raw.name.span(), "`name` is empty".into());
        }
        let command = match &raw.command {
            Some(command) if !command.get_ref().trim().is_empty() => command.get_ref().clone(),
            Some(command) => {
                self.problem(
                    command.span(),
                    "`command` is empty: give the shell command to run".into(),
                );
                String::new()
            }
            None => {
                self.problem(
                    span.clone(),
                    "no `command`: give the shell command to run".into(),
                );
                String::new()
            }
        };
        let boot = self.boot(&raw, &span);
        let arch = match (&raw.arch, &boot) {
            (Some(arch), Some(boot)) => match guest_arch(arch.get_ref(), boot, "rootfs") {
                Ok(arch) => arch,
                Err(problem) => {
                    self.problem(arch.span(), problem);
                    Arch::HOST
                }
            },
            _ => Arch::HOST,
        };
        let cpus = match &raw.vm.num_cpus {
            None => DEFAULT_CPUS,
            Some(cpus) if (1..=i64::from(units::MAX_CPUS)).contains(cpus.get_ref()) => {
                *cpus.get_ref() as u32
            }
            Some(cpus) => {
                self.problem(
                    cpus.span(),
                    format!(
                        "`num_cpus` {} is not between 1 and {}",
                        cpus.get_ref(),
                        units::MAX_CPUS
                    ),
                );
                DEFAULT_CPUS
            }
        };
        let memory_mib = match &raw.vm.memory {
            None => DEFAULT_MEMORY_MIB,
            Some(memory) => units::memory_mib(memory.get_ref()).unwrap_or_else(|error| {
                self.problem(memory.span(), error.to_string());
                DEFAULT_MEMORY_MIB
            }),
        };
        let timeout = raw.timeout.as_ref().and_then(|timeout| {
            let parsed = match timeout.get_ref() {
                RawDuration::Seconds(seconds) => units::duration(&seconds.to_string()),
                RawDuration::Text(text) => units::duration(text),
            };
            parsed
                .map_err(|message| self.problem(timeout.span(), format!("`timeout`: {message}")))
                .ok()
        });
        let mut mounts = Vec::new();
        for (guest, mount) in &raw.vm.mounts {
            let guest_path = PathBuf::from(guest);
            if !guest_path.is_absolute() {
                self.problem(
                    mount.span(),
                    format!("mount point {guest:?} is not an absolute path in the guest"),
                );
            }
            let host = Spanned::new(mount.span(), mount.get_ref().host_path.clone());
            let host_path = self.existing("host_path", &host, true);
            mounts.push((guest_path, host_path, mount.get_ref().writable));
        }
        if self.problems.len() > before {
            return None;
        }
        Some(Target {
            name,
            line,
            arch,
            boot: boot?,
            command: Command::Shell(command),
            cpus,
            memory_mib,
            mounts,
            qemu_command: raw.qemu_command,
            extra_args: raw.vm.extra_args,
            kvm_cpu_args: raw.kvm_cpu_args,
            timeout,
        })
    }

    /// `kernel` or `image`, and the fields that go with each.
    fn boot(&mut self, raw: &RawTarget, span: &Range<usize>) -> Option<Boot> {
        let kernel_only = [
            ("kernel_args", raw.kernel_args.as_ref().map(Spanned::span)),
            ("rootfs", raw.rootfs.as_ref().map(Spanned::span)),
        ];
        let image_only = [
            ("uefi", raw.uefi.as_ref().map(Spanned::span)),
            ("bios", raw.vm.bios.as_ref().map(Spanned::span)),
        ];
        match (&raw.kernel, &raw.image) {
            (Some(kernel), None) => {
                self.misplaced(&image_only, "image");
                // A URL is fetched before anything boots. A kernel that is
                // missing fails its own target when it runs, as in
                // danobi/vmtest, and the other targets run.
                let kernel = match kernel.get_ref().to_str().filter(|kernel| is_url(kernel)) {
                    Some(url) => PathBuf::from(url),
                    None => self.resolve(kernel.get_ref()),
                };
                let rootfs = match &raw.rootfs {
                    Some(rootfs) => self.existing("rootfs", rootfs, true),
                    None => PathBuf::from("/"),
                };
                Some(Boot::Kernel {
                    kernel,
                    kernel_args: raw
                        .kernel_args
                        .as_ref()
                        .map_or(String::new(), |args| args.get_ref().clone()),
                    rootfs,
                })
            }
            (None, Some(image)) => {
                self.misplaced(&kernel_only, "kernel");
                let image_path = self.existing("image", image, false);
                let uefi = raw.uefi.as_ref().is_some_and(|uefi| *uefi.get_ref());
                if let (Some(bios), false) = (&raw.vm.bios, uefi) {
                    self.problem(bios.span(), "`bios` is used only with `uefi = true`".into());
                }
                let bios = raw
                    .vm
                    .bios
                    .as_ref()
                    .map(|bios| self.existing("bios", bios, false));
                Some(Boot::Image {
                    image: image_path,
                    uefi,
                    bios,
                })
            }
            (Some(kernel), Some(_)) => {
                self.problem(
                    kernel.span(),
                    "both `kernel` and `image` are given: keep one".into(),
                );
                None
            }
            (None, None) => {
                self.problem(
                    span.clone(),
                    "neither `kernel` nor `image` is given: add one".into(),
                );
                None
            }
        }
    }

    /// Fields that belong to the other kind of target.
    fn misplaced(&mut self, fields: &[(&str, Option<Range<usize>>)], kind: &str) {
        for (field, span) in fields {
            if let Some(span) = span {
                self.problem(
                    span.clone(),
                    format!("`{field}` applies to `{kind}` targets only"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory with a kernel file, a rootfs directory and an image.
    fn fixture() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("kernels")).unwrap();
        std::fs::write(dir.path().join("kernels/vmlinuz-6.12"), "k").unwrap();
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        std::fs::write(dir.path().join("disk.qcow2"), "i").unwrap();
        dir
    }

    fn check(dir: &Path, text: &str) -> Result<Vec<Target>, ConfigError> {
        parse(&dir.join("vmtest.toml"), text)
    }

    fn errors(dir: &Path, text: &str) -> Vec<String> {
        check(dir, text)
            .unwrap_err()
            .problems
            .iter()
            .map(ToString::to_string)
            .map(|line| line.replace(&dir.display().to_string(), "D"))
            .collect()
    }

    #[test]
    fn the_original_multi_target_example_is_accepted() {
        let dir = fixture();
        let targets = check(
            dir.path(),
            r#"
[[target]]
name = "check if kernel is 6.12"
kernel = "kernels/vmlinuz-6.12"
command = "/bin/bash -c 'uname -r | grep -e ^6.12'"

[[target]]
name = "check if kernel is 6.1"
kernel = "kernels/vmlinuz-6.12"
command = "/bin/bash -c 'uname -r; uname -r | grep -e ^6.1\\.'"
"#,
        )
        .unwrap();
        assert_eq!(targets.len(), 2);
        assert_eq!(targets[0].line, 2);
        assert_eq!(targets[1].line, 7);
        assert_eq!(
            targets[1].command,
            Command::Shell(r"/bin/bash -c 'uname -r; uname -r | grep -e ^6.1\.'".into())
        );
        assert_eq!(
            targets[0].boot,
            Boot::Kernel {
                kernel: dir.path().join("kernels/vmlinuz-6.12"),
                kernel_args: String::new(),
                rootfs: "/".into()
            }
        );
        assert_eq!(
            (targets[0].cpus, targets[0].memory_mib),
            (DEFAULT_CPUS, DEFAULT_MEMORY_MIB)
        );
    }

    #[test]
    fn every_field_of_the_original_format_is_read() {
        let dir = fixture();
        let targets = check(
            dir.path(),
            r#"
[[target]]
name = "all"
kernel = "kernels/vmlinuz-6.12"
kernel_args = "nokaslr"
rootfs = "rootfs"
arch = "x86_64"
qemu_command = "/opt/qemu/bin/qemu-system-x86_64"
kvm_cpu_args = "host,+avx"
command = "true"
[target.vm]
num_cpus = 4
memory = "1G"
extra_args = ["-device", "virtio-rng-pci"]
[target.vm.mounts]
"/mnt/data" = { host_path = "rootfs", writable = true }

[[target]]
name = "image"
image = "disk.qcow2"
uefi = true
command = "true"
[target.vm]
bios = "disk.qcow2"
"#,
        )
        .unwrap();
        let all = &targets[0];
        assert_eq!((all.cpus, all.memory_mib), (4, 1024));
        assert_eq!(all.timeout, None);
        assert_eq!(all.extra_args, ["-device", "virtio-rng-pci"]);
        assert_eq!(all.kvm_cpu_args.as_deref(), Some("host,+avx"));
        assert_eq!(
            all.mounts,
            [("/mnt/data".into(), dir.path().join("rootfs"), true)]
        );
        assert_eq!(
            targets[1].boot,
            Boot::Image {
                image: dir.path().join("disk.qcow2"),
                uefi: true,
                bios: Some(dir.path().join("disk.qcow2"))
            }
        );
    }

    #[test]
    fn a_disk_image_of_another_architecture_brings_its_own_root() {
        let dir = fixture();
        for arch in Arch::ALL {
            let text = format!(
                "[[target]]\nname = \"a\"\nimage = \"disk.qcow2\"\narch = \"{}\"\ncommand = \"true\"\n",
                arch.name()
            );
            assert_eq!(check(dir.path(), &text).unwrap()[0].arch, arch);
        }
    }

    #[test]
    fn a_missing_kernel_is_no_mistake_in_the_file_and_timeouts_are_read() {
        let dir = fixture();
        let targets = check(
            dir.path(),
            "[[target]]\nname = \"gone\"\nkernel = \"missing\"\ncommand = \"true\"\ntimeout = 90\n\
             [[target]]\nname = \"here\"\nkernel = \"kernels/vmlinuz-6.12\"\ncommand = \"true\"\ntimeout = \"1.5m\"\n",
        )
        .unwrap();
        let Boot::Kernel { kernel, .. } = &targets[0].boot else {
            panic!("a kernel target")
        };
        assert_eq!(kernel, &dir.path().join("missing"));
        assert_eq!(targets[0].timeout, Some(Duration::from_secs(90)));
        assert_eq!(targets[1].timeout, Some(Duration::from_secs(90)));
    }

    #[test]
    fn mistakes_name_the_file_line_target_and_field() {
        let dir = fixture();
        let d = dir.path();
        assert_eq!(
            errors(d, "[[target]]\nname = \"a\"\nkernl = \"k\"\ncommand = \"true\"\n"),
            ["D/vmtest.toml:3: target \"a\": unknown field `kernl`, expected one of `name`, `image`, `uefi`, `kernel`, `kernel_args`, `kvm_cpu_args`, `rootfs`, `arch`, `qemu_command`, `command`, `timeout`, `vm`"]
        );
        assert_eq!(
            errors(d, "[[target]]\nname = \"a\"\nkernel = \"kernels/vmlinuz-6.12\"\nimage = \"disk.qcow2\"\ncommand = \"true\"\n"),
            ["D/vmtest.toml:3: target \"a\": both `kernel` and `image` are given: keep one"]
        );
        assert_eq!(
            errors(d, "[[target]]\nname = \"a\"\ncommand = \"true\"\n"),
            ["D/vmtest.toml:1: target \"a\": neither `kernel` nor `image` is given: add one"]
        );
        assert_eq!(
            errors(
                d,
                "[[target]]\nname = \"a\"\nkernel = \"kernels/vmlinuz-6.12\"\ncommand = \"  \"\n"
            ),
            ["D/vmtest.toml:4: target \"a\": `command` is empty: give the shell command to run"]
        );
        assert_eq!(
            errors(d, "[[target]]\nname = \"a\"\nkernel = \"kernels/vmlinuz-6.12\"\narch = \"riscv64\"\ncommand = \"true\"\n"),
            ["D/vmtest.toml:4: target \"a\": `arch` \"riscv64\" is not one vmtest knows: use x86_64 or aarch64"]
        );
        let other = Arch::ALL
            .into_iter()
            .find(|&arch| arch != Arch::HOST)
            .unwrap()
            .name();
        assert_eq!(
            errors(d, &format!("[[target]]\nname = \"a\"\nkernel = \"kernels/vmlinuz-6.12\"\narch = \"{other}\"\ncommand = \"true\"\n")),
            [format!("D/vmtest.toml:4: target \"a\": an {other} guest cannot run this host's {} root: give rootfs with an {other} userland (scripts/setup.sh --arm64 makes one)", Arch::HOST.name())]
        );
        assert_eq!(
            errors(
                d,
                "[[target]]\nname = \"a\"\nkernel = \"kernels/vmlinuz-6.12\"\ncommand = \"true\"\ntimeout = \"soon\"\n"
            ),
            ["D/vmtest.toml:5: target \"a\": `timeout`: \"soon\" is not a duration such as \"500ms\", \"90s\", \"2m\" or \"1h\""]
        );
        assert_eq!(
            errors(d, "[[target]]\nname = \"a\"\nkernel = \"kernels/vmlinuz-6.12\"\ncommand = \"true\"\n[target.vm]\nmemory = \"lots\"\nnum_cpus = 0\n"),
            [
                "D/vmtest.toml:7: target \"a\": `num_cpus` 0 is not between 1 and 255",
                "D/vmtest.toml:6: target \"a\": memory \"lots\" is not a size such as \"512M\", \"1G\" or \"4096\"",
            ]
        );
        assert_eq!(
            errors(d, "[[target]]\nname = \"a\"\nimage = \"disk.qcow2\"\nkernel_args = \"x\"\ncommand = \"true\"\n"),
            ["D/vmtest.toml:4: target \"a\": `kernel_args` applies to `kernel` targets only"]
        );
        assert_eq!(
            errors(d, "name = 1\n"),
            ["D/vmtest.toml:1: unknown field `name`, expected `target`"]
        );
        assert_eq!(
            errors(d, "[[target]]\nname = \"a\"\nkernel = \"kernels/vmlinuz-6.12\"\ncommand = \"true\"\n[[target]]\nname = \"a\"\nkernel = \"kernels/vmlinuz-6.12\"\ncommand = \"true\"\n"),
            ["D/vmtest.toml:5: target \"a\": another target has this name: names tell targets apart"]
        );
        assert_eq!(errors(d, ""), ["D/vmtest.toml:1: no [[target]]: add one with a `name`, a `kernel` (or `image`) and a `command`"]);
        assert_eq!(errors(d, "[[target]\n").len(), 1);
    }
}
