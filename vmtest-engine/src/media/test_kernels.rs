//! Real Debian kernels for tests, extracted by the setup script.

use std::path::{Path, PathBuf};

/// The variable naming the directory of extracted kernels.
pub(crate) const ENV: &str = "VMTEST_TEST_KERNELS_DIR";
/// The extracted roots (`dpkg-deb -x` of a `linux-image-*` package) under [`ENV`].
pub(crate) const KERNELS: [&str; 2] = ["debian-6.1", "debian-6.12"];

/// The directory holding `debian-6.1/` and `debian-6.12/`: [`ENV`], else
/// the repository's `kernels/`, where scripts/setup.sh puts them.
///
/// Panics when they are missing: a test that needs real kernels must
/// fail, not pass without having looked at one.
pub(crate) fn dir() -> PathBuf {
    let dir = std::env::var_os(ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernels"));
    for kernel in KERNELS {
        assert!(
            dir.join(kernel).join("boot").is_dir(),
            "{} has no {kernel}/boot: run scripts/setup.sh (or set {ENV})",
            dir.display()
        );
    }
    dir
}

/// The one `vmlinuz-*` in an extracted root's `boot/`.
pub(crate) fn vmlinuz(boot: &Path) -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir(boot)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", boot.display()))
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("vmlinuz-"))
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one vmlinuz-* in {}",
        boot.display()
    );
    found.remove(0)
}
