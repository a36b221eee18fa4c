//! Run-wide settings, read once from the environment and the host.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::accel::{self, Choice};

/// How long a VM may take to boot before it counts as hung.
const DEFAULT_BOOT_TIMEOUT: Duration = Duration::from_secs(90);
/// Where the guest init looks for the agent, which it runs from the host's
/// root: the host must have it installed.
const AGENT_PATHS: [&str; 2] = ["/usr/sbin/qemu-ga", "/usr/bin/qemu-ga"];

/// What every VM of a run shares.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub qemu_binary: String,
    pub accel: Choice,
    pub boot_timeout: Duration,
    /// Initramfs images, cached by content hash.
    pub cache_dir: PathBuf,
    /// The host directory guests may write to.
    pub shared_dir: PathBuf,
    /// `VMTEST_VERBOSE`: say how long each boot and each test took.
    pub verbose: bool,
}

/// A setting that makes every VM impossible.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SettingsError {
    #[error(transparent)]
    Accel(#[from] accel::BadAccelSetting),
    #[error("VMTEST_BOOT_TIMEOUT={0:?} is not a number of seconds")]
    BootTimeout(String),
    #[error(
        "qemu-ga (the QEMU guest agent) is not installed on the host; guests run the host's copy: \
         install it (Debian/Ubuntu: apt-get install qemu-guest-agent)"
    )]
    NoAgent,
    #[error("cannot create {path}: {source}")]
    Directory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Settings {
    pub(crate) fn from_env() -> Result<Settings, SettingsError> {
        if !AGENT_PATHS.iter().any(|path| Path::new(path).exists()) {
            return Err(SettingsError::NoAgent);
        }
        let boot_timeout = match std::env::var("VMTEST_BOOT_TIMEOUT") {
            Ok(seconds) => seconds
                .parse::<f64>()
                .ok()
                .filter(|seconds| *seconds > 0.0)
                .map(Duration::from_secs_f64)
                .ok_or(SettingsError::BootTimeout(seconds))?,
            Err(_) => DEFAULT_BOOT_TIMEOUT,
        };
        let cache_dir = cache_dir();
        let shared_dir = cache_dir.join("shared");
        for dir in [&cache_dir, &shared_dir] {
            std::fs::create_dir_all(dir).map_err(|source| SettingsError::Directory {
                path: dir.clone(),
                source,
            })?;
        }
        Ok(Settings {
            qemu_binary: std::env::var("VMTEST_QEMU")
                .unwrap_or_else(|_| "qemu-system-x86_64".into()),
            accel: accel::choose()?,
            boot_timeout,
            // Canonical, because the guest mounts it at this same path.
            shared_dir: shared_dir.canonicalize().unwrap_or(shared_dir),
            cache_dir,
            verbose: verbose(),
        })
    }
}

/// Whether `VMTEST_VERBOSE` asks for timings.
pub(crate) fn verbose() -> bool {
    std::env::var("VMTEST_VERBOSE").is_ok_and(|value| !value.is_empty() && value != "0")
}

/// `VMTEST_CACHE_DIR`, else `vmtest/` in the cargo target directory holding
/// this test binary, else a directory under the system's temporary one.
fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("VMTEST_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| target_dir(&exe))
        .map(|target| target.join("vmtest"))
        .unwrap_or_else(|| {
            // SAFETY: getuid cannot fail.
            let uid = unsafe { libc::getuid() };
            std::env::temp_dir().join(format!("vmtest-{uid}"))
        })
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
