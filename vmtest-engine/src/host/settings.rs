//! Run-wide settings, read once from `VMTEST_*` variables. A value that
//! cannot be understood is an error naming the variable, the value and what
//! is accepted, never a panic or a silent default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::host::private::{self, PrivateDirError};
use crate::model::accel::{self, Accel, AccelChoice};
use crate::model::arch::Arch;

/// How long a VM may take to boot before it counts as hung.
const DEFAULT_BOOT_TIMEOUT: Duration = Duration::from_secs(90);
/// The longest boot timeout accepted: a day.
const MAX_BOOT_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// What every VM of a run shares.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `VMTEST_QEMU`.
    pub qemu_binary: PathBuf,
    /// `VMTEST_ACCEL`, or the probe's choice.
    pub accel: AccelChoice,
    /// `VMTEST_BOOT_TIMEOUT`.
    pub boot_timeout: Duration,
    /// `VMTEST_CACHE_DIR`: extracted kernels, initramfs images, shared
    /// directories.
    pub cache_dir: PathBuf,
    /// `VMTEST_BOOT_IMAGE_AS_IS`: boot the kernel image as given, not its
    /// extracted vmlinux.
    pub boot_image_as_is: bool,
    /// `VMTEST_VERBOSE`: the guest init logs its steps, reporters show timings.
    pub verbose: bool,
    /// `VMTEST_ALLOWED_SPLATS`: a regular expression for kernel splats that
    /// fail no job in this run.
    pub allowed_splats: Option<String>,
    /// `VMTEST_KERNEL_ARGS`: added to every VM's kernel command line, after
    /// the VM's own.
    pub kernel_args: String,
    /// `VMTEST_SNAPSHOT` (default on): VMs after the first of their kind
    /// are restored from a snapshot of it rather than booted.
    pub snapshots: bool,
    /// `VMTEST_GUEST_AARCH64` (on x86-64 hosts) and the like: static builds
    /// of the `vmtest` command for guests of other architectures.
    pub guest_builds: Vec<(Arch, PathBuf)>,
}

/// A setting that makes every VM impossible.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    #[error("{var}={value:?} is not understood: {expected}")]
    Invalid {
        var: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error(transparent)]
    Directory(#[from] PrivateDirError),
    #[error(
        "no place for vmtest's cache: set VMTEST_CACHE_DIR, XDG_CACHE_HOME or HOME (a shared \
         temporary directory is never used)"
    )]
    NoCacheDir,
}

impl Settings {
    /// Reads the settings from the environment.
    pub fn from_env() -> Result<Settings, SettingsError> {
        Settings::from_vars(|var| std::env::var(var).ok())
    }

    /// Reads the settings from `var` (tests pass their own variables).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Settings, SettingsError> {
        let accel = match var("VMTEST_ACCEL").as_deref() {
            None | Some("") => accel::probe_host(),
            Some("kvm") => accel::forced(accel::Accel::Kvm),
            Some("tcg") => accel::forced(accel::Accel::Tcg),
            Some(other) => return Err(invalid("VMTEST_ACCEL", other, "use \"kvm\" or \"tcg\"")),
        };
        let boot_timeout = match var("VMTEST_BOOT_TIMEOUT") {
            None => DEFAULT_BOOT_TIMEOUT,
            Some(value) => seconds(&value).ok_or_else(|| {
                invalid(
                    "VMTEST_BOOT_TIMEOUT",
                    &value,
                    "give a number of seconds greater than 0 and at most 86400",
                )
            })?,
        };
        let (cache_dir, setting) = match var("VMTEST_CACHE_DIR").filter(|dir| !dir.is_empty()) {
            Some(dir) => (PathBuf::from(dir), "VMTEST_CACHE_DIR"),
            None => default_cache_dir(&var)?,
        };
        // Snapshots and boot media are trusted from there: this user's alone.
        private::ensure(&cache_dir, setting)?;
        // Canonical: shared directories under it appear at the same path in the guest.
        let cache_dir = cache_dir.canonicalize().unwrap_or(cache_dir);
        Ok(Settings {
            qemu_binary: var("VMTEST_QEMU")
                .filter(|binary| !binary.is_empty())
                .unwrap_or_else(|| Arch::HOST.qemu_binary().into())
                .into(),
            accel,
            boot_timeout,
            cache_dir,
            boot_image_as_is: flag(&var, "VMTEST_BOOT_IMAGE_AS_IS")?,
            verbose: flag(&var, "VMTEST_VERBOSE")?,
            allowed_splats: var("VMTEST_ALLOWED_SPLATS").filter(|pattern| !pattern.is_empty()),
            kernel_args: var("VMTEST_KERNEL_ARGS").unwrap_or_default(),
            snapshots: flag_or(&var, "VMTEST_SNAPSHOT", true)?,
            guest_builds: Arch::ALL
                .into_iter()
                .filter(|&arch| arch != Arch::HOST)
                .filter_map(|arch| {
                    let path = var(arch.guest_build_var()).filter(|path| !path.is_empty())?;
                    Some((arch, PathBuf::from(path)))
                })
                .collect(),
        })
    }

    /// The QEMU for a VM of `arch`: the one it names (`named`), else
    /// `VMTEST_QEMU`'s for the host's architecture, else the architecture's
    /// own QEMU.
    pub fn qemu_binary_for<'a>(&'a self, arch: Arch, named: Option<&'a Path>) -> &'a Path {
        match (named, arch == Arch::HOST) {
            (Some(binary), _) => binary,
            (None, true) => &self.qemu_binary,
            (None, false) => Path::new(arch.qemu_binary()),
        }
    }

    /// The accelerator for guests of `arch`: another architecture's guests
    /// are emulated.
    pub fn accel_for(&self, arch: Arch) -> Accel {
        match arch == Arch::HOST {
            true => self.accel.accel,
            false => Accel::Tcg,
        }
    }
}

pub(crate) fn invalid(var: &'static str, value: &str, expected: &'static str) -> SettingsError {
    SettingsError::Invalid {
        var,
        value: value.to_string(),
        expected,
    }
}

/// A boolean variable: unset or empty is false.
fn flag(var: &impl Fn(&str) -> Option<String>, name: &'static str) -> Result<bool, SettingsError> {
    flag_or(var, name, false)
}

/// A boolean variable: unset or empty is `default`.
fn flag_or(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: bool,
) -> Result<bool, SettingsError> {
    match var(name).as_deref() {
        None | Some("") => Ok(default),
        Some("0" | "false" | "no" | "off") => Ok(false),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some(other) => Err(invalid(name, other, "use 1 or 0")),
    }
}

/// A positive, finite number of seconds, at most [`MAX_BOOT_TIMEOUT`].
pub(crate) fn seconds(value: &str) -> Option<Duration> {
    let seconds: f64 = value.trim().parse().ok()?;
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|duration| !duration.is_zero() && *duration <= MAX_BOOT_TIMEOUT)
}

/// `vmtest/` in the cargo target directory holding this binary, else the
/// user's (`$XDG_CACHE_HOME/vmtest`, else `~/.cache/vmtest`); and what
/// chose it. Never a shared temporary directory, where anyone could make
/// it first.
fn default_cache_dir(
    var: &impl Fn(&str) -> Option<String>,
) -> Result<(PathBuf, &'static str), SettingsError> {
    if let Some(target) = std::env::current_exe()
        .ok()
        .and_then(|exe| target_dir(&exe))
    {
        return Ok((target.join("vmtest"), "VMTEST_CACHE_DIR"));
    }
    let user = user_cache_dir(var).ok_or(SettingsError::NoCacheDir)?;
    Ok((user.join("vmtest"), "VMTEST_CACHE_DIR or XDG_CACHE_HOME"))
}

/// The user's cache directory, from `var` (the environment):
/// `$XDG_CACHE_HOME`, else `$HOME/.cache`.
pub fn user_cache_dir(var: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let var = |name: &str| var(name).filter(|value| !value.is_empty());
    var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|home| Path::new(&home).join(".cache")))
}

/// The nearest ancestor that cargo marked as its target directory.
fn target_dir(exe: &Path) -> Option<PathBuf> {
    exe.ancestors()
        .skip(1)
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let cache = tempfile::tempdir().unwrap();
        let cache_dir = cache.path().to_str().unwrap().to_string();
        Settings::from_vars(|name| {
            if name == "VMTEST_CACHE_DIR" {
                return Some(cache_dir.clone());
            }
            vars.iter()
                .find(|(var, _)| *var == name)
                .map(|(_, value)| value.to_string())
        })
    }

    #[test]
    fn defaults_need_no_variables() {
        let settings = settings(&[]).unwrap();
        assert_eq!(settings.boot_timeout, DEFAULT_BOOT_TIMEOUT);
        assert_eq!(
            settings.qemu_binary,
            PathBuf::from(Arch::HOST.qemu_binary())
        );
        assert!(!settings.verbose && !settings.boot_image_as_is);
    }

    #[test]
    fn other_architectures_get_their_own_qemu_emulated() {
        let settings = settings(&[("VMTEST_QEMU", "/opt/qemu"), ("VMTEST_ACCEL", "kvm")]).unwrap();
        assert_eq!(
            settings.qemu_binary_for(Arch::HOST, None),
            Path::new("/opt/qemu")
        );
        assert_eq!(settings.accel_for(Arch::HOST), Accel::Kvm);
        for other in Arch::ALL.into_iter().filter(|&arch| arch != Arch::HOST) {
            assert_eq!(
                settings.qemu_binary_for(other, None),
                Path::new(other.qemu_binary())
            );
            assert_eq!(settings.accel_for(other), Accel::Tcg);
        }
    }

    #[test]
    fn bad_values_are_errors_that_name_the_variable() {
        for (var, value) in [
            ("VMTEST_BOOT_TIMEOUT", "inf"),
            ("VMTEST_BOOT_TIMEOUT", "NaN"),
            ("VMTEST_BOOT_TIMEOUT", "-1"),
            ("VMTEST_BOOT_TIMEOUT", "0"),
            ("VMTEST_BOOT_TIMEOUT", "1e300"),
            ("VMTEST_BOOT_TIMEOUT", "ten"),
            ("VMTEST_ACCEL", "hvf"),
            ("VMTEST_VERBOSE", "maybe"),
            ("VMTEST_BOOT_IMAGE_AS_IS", "2"),
        ] {
            let error = settings(&[(var, value)]).unwrap_err().to_string();
            assert!(
                error.starts_with(&format!("{var}={value:?} is not understood")),
                "{error}"
            );
        }
    }

    #[test]
    fn good_values_are_taken() {
        let settings = settings(&[
            ("VMTEST_BOOT_TIMEOUT", "2.5"),
            ("VMTEST_ACCEL", "tcg"),
            ("VMTEST_VERBOSE", "1"),
        ])
        .unwrap();
        assert_eq!(settings.boot_timeout, Duration::from_millis(2500));
        assert_eq!(settings.accel.accel, accel::Accel::Tcg);
        assert!(settings.verbose);
    }

    #[test]
    fn the_target_dir_is_found_from_a_test_binary() {
        let root = tempfile::tempdir().unwrap();
        let deps = root.path().join("target/debug/deps");
        std::fs::create_dir_all(&deps).unwrap();
        std::fs::write(root.path().join("target/CACHEDIR.TAG"), "").unwrap();
        assert_eq!(
            target_dir(&deps.join("kernels-0123")),
            Some(root.path().join("target"))
        );
        assert_eq!(target_dir(Path::new("/usr/bin/true")), None);
    }
}
