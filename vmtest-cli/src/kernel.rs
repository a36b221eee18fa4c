//! Which kernel a one-liner boots when `-k` is not given: `VMTEST_KERNEL`,
//! else the newest kernel `scripts/setup.sh` fetched, else the host's own.

use std::path::{Path, PathBuf};

use vmtest_engine::user_cache_dir;

/// Where `scripts/setup.sh` records the directory it put kernels in:
/// `$XDG_CACHE_HOME/vmtest/setup-kernels`, else `~/.cache/vmtest/...`.
pub const SETUP_RECORD: &str = "vmtest/setup-kernels";

/// A kernel chosen without `-k`, and why it was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    pub kernel: PathBuf,
    pub because: String,
}

/// The kernel to boot, from `var` (the environment), the setup record and
/// the host's `/boot`.
pub fn default_kernel(var: impl Fn(&str) -> Option<String>) -> Result<Chosen, String> {
    if let Some(kernel) = var("VMTEST_KERNEL").filter(|kernel| !kernel.is_empty()) {
        return Ok(Chosen {
            kernel: kernel.into(),
            because: "VMTEST_KERNEL".into(),
        });
    }
    if let Some(record) = user_cache_dir(&var).map(|cache| cache.join(SETUP_RECORD)) {
        if let Some(kernel) = std::fs::read_to_string(&record)
            .ok()
            .and_then(|dir| newest_in(Path::new(dir.trim())))
        {
            return Ok(Chosen {
                kernel,
                because: format!(
                    "the newest kernel scripts/setup.sh fetched ({})",
                    record.display()
                ),
            });
        }
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let host = Path::new("/boot").join(format!("vmlinuz-{}", release.trim()));
    if host.is_file() {
        return Ok(Chosen {
            kernel: host,
            because: "the host's own".into(),
        });
    }
    Err(format!(
        "no kernel given: use -k KERNEL, set VMTEST_KERNEL, or run scripts/setup.sh \
         (the host's {} does not exist)",
        host.display()
    ))
}

/// The `vmlinuz-<version>` in `dir` with the highest version.
fn newest_in(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version = name.strip_prefix("vmlinuz-")?.to_string();
            entry
                .path()
                .exists()
                .then(|| (version_key(&version), entry.path()))
        })
        .max()
        .map(|(_, path)| path)
}

/// `6.12` sorts after `6.1`, and `6.1.10` after `6.1.9`: numbers compare as
/// numbers.
fn version_key(version: &str) -> Vec<u64> {
    version
        .split(|c: char| !c.is_ascii_digit())
        .filter(|part| !part.is_empty())
        .map(|part| part.parse().unwrap_or(0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmtest_kernel_comes_first() {
        let chosen = default_kernel(|var| (var == "VMTEST_KERNEL").then(|| "/k".into())).unwrap();
        assert_eq!(chosen.kernel, PathBuf::from("/k"));
        assert_eq!(chosen.because, "VMTEST_KERNEL");
    }

    #[test]
    fn then_the_newest_kernel_setup_fetched() {
        let cache = tempfile::tempdir().unwrap();
        let kernels = cache.path().join("kernels");
        std::fs::create_dir(&kernels).unwrap();
        for name in ["vmlinuz-6.1", "vmlinuz-6.12", "vmlinuz-6.9", "README"] {
            std::fs::write(kernels.join(name), "").unwrap();
        }
        std::fs::create_dir(cache.path().join("vmtest")).unwrap();
        std::fs::write(
            cache.path().join(SETUP_RECORD),
            format!("{}\n", kernels.display()),
        )
        .unwrap();
        let xdg = cache.path().to_str().unwrap().to_string();
        let chosen = default_kernel(|var| (var == "XDG_CACHE_HOME").then(|| xdg.clone())).unwrap();
        assert_eq!(chosen.kernel, kernels.join("vmlinuz-6.12"));
        assert!(
            chosen.because.contains("scripts/setup.sh"),
            "{}",
            chosen.because
        );
    }
}
