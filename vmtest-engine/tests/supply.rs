//! Kernels by URL, against a local HTTP server serving real kernel files
//! (the Debian packages `scripts/setup.sh` keeps in `kernels/debs/`, and the
//! 9p-built-in bzImage): packages unpacked with their modules, bare images
//! as they are, checksums, offline reuse, and every way a download goes
//! wrong leaving nothing behind.

#[path = "support/http.rs"]
mod http;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vmtest_engine::{FetchError, Supply, SupplyError};

fn kernels() -> PathBuf {
    let dir = std::env::var_os("VMTEST_KERNELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernels"));
    assert!(
        dir.join("debs/linux-image-6.12.deb").is_file(),
        "run scripts/setup.sh"
    );
    dir
}

/// A server with the kernel files (the built-in kernel under two names),
/// the directory it serves, and a fresh cache.
fn setup() -> (http::Server, tempfile::TempDir, tempfile::TempDir) {
    let files = tempfile::tempdir().unwrap();
    let kernels = kernels();
    for series in ["6.1", "6.12"] {
        let name = format!("linux-image-{series}.deb");
        std::os::unix::fs::symlink(kernels.join("debs").join(&name), files.path().join(&name))
            .unwrap();
    }
    for name in ["bzImage", "vmlinuz-builtin"] {
        std::os::unix::fs::symlink(kernels.join("builtin-6.1/bzImage"), files.path().join(name))
            .unwrap();
    }
    let server = http::Server::start(files.path().to_path_buf());
    (server, files, tempfile::tempdir().unwrap())
}

fn supply(cache: &Path) -> Supply {
    Supply::at(cache, Duration::from_secs(3))
}

fn quiet(_: &vmtest_engine::Event) {}

/// Everything in the cache that is not a finished entry.
fn debris(cache: &Path) -> Vec<String> {
    let mut left = Vec::new();
    for dir in ["blobs", "urls", "unpacked"] {
        for entry in std::fs::read_dir(cache.join(dir))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                left.push(format!("{dir}/{name}"));
            }
        }
    }
    left
}

#[test]
fn a_package_is_unpacked_with_its_modules_and_reused_offline() {
    let (server, _files, cache) = setup();
    let url = format!("{}/files/linux-image-6.12.deb", server.base);
    // What runs killed with SIGKILL left (nobody holds their locks).
    for (dir, is_dir) in [("blobs", false), ("unpacked", true)] {
        let path = cache.path().join(dir).join(".vmtest-tmp-999999999-1.tmp");
        match is_dir {
            true => std::fs::create_dir_all(path.join("boot")).unwrap(),
            false => {
                std::fs::create_dir_all(cache.path().join(dir)).unwrap();
                std::fs::write(path, "half a download").unwrap();
            }
        }
    }
    let started = Instant::now();
    let kernel = supply(cache.path()).kernel(&url, &quiet).unwrap();
    let cold = started.elapsed();
    let name = kernel.file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.starts_with("vmlinuz-6.12."), "{}", kernel.display());
    let release = name.trim_start_matches("vmlinuz-");
    let root = kernel.parent().unwrap().parent().unwrap();
    assert!(root
        .join("lib/modules")
        .join(release)
        .join("kernel/fs/9p")
        .is_dir());
    assert_eq!(
        vmtest_engine::image_kernel_version(&kernel).unwrap(),
        release
    );
    // The package and Ubuntu's modules package beside it (a 404 here).
    assert_eq!(server.requests(), 2);
    drop(server);
    let started = Instant::now();
    let again = supply(cache.path()).kernel(&url, &quiet).unwrap();
    let warm = started.elapsed();
    assert_eq!(again, kernel);
    eprintln!(
        "linux-image-6.12.deb ({} MB): cold {cold:.2?}, warm {warm:.2?}",
        std::fs::metadata(kernels().join("debs/linux-image-6.12.deb"))
            .unwrap()
            .len()
            >> 20
    );
    assert!(
        debris(cache.path()).is_empty(),
        "{:?}",
        debris(cache.path())
    );
}

#[test]
fn ubuntus_separate_modules_package_is_unpacked_into_the_same_tree() {
    let (server, files, cache) = setup();
    // Ubuntu's layout: the image package, and `linux-modules-*` beside it
    // (made here with dpkg-deb, as Ubuntu builds it).
    let release = "6.12.0-vmtest";
    let tree = tempfile::tempdir().unwrap();
    let module = tree
        .path()
        .join(format!("lib/modules/{release}/kernel/extra/marker.ko"));
    std::fs::create_dir_all(module.parent().unwrap()).unwrap();
    std::fs::write(&module, "not really a module").unwrap();
    std::fs::create_dir(tree.path().join("DEBIAN")).unwrap();
    std::fs::write(
        tree.path().join("DEBIAN/control"),
        "Package: linux-modules-test\nVersion: 1\nArchitecture: amd64\n\
         Maintainer: vmtest\nDescription: a stand-in modules package\n",
    )
    .unwrap();
    let status = std::process::Command::new("dpkg-deb")
        .args(["--build", "--root-owner-group"])
        .arg(tree.path())
        .arg(files.path().join("linux-modules-6.12.deb"))
        .stdout(std::process::Stdio::null())
        .status()
        .expect("dpkg-deb runs");
    assert!(status.success());
    let url = format!("{}/files/linux-image-6.12.deb", server.base);
    let kernel = supply(cache.path()).kernel(&url, &quiet).unwrap();
    let root = kernel.parent().unwrap().parent().unwrap();
    assert!(
        root.join(format!("lib/modules/{release}/kernel/extra/marker.ko"))
            .is_file(),
        "the modules package is not in {}",
        root.display()
    );
    assert!(kernel.is_file(), "{}", kernel.display());
    assert!(debris(cache.path()).is_empty());

    // Pinned, the image's digest alone leaves its modules unchecked: refused,
    // naming the modules package and its digest; pinned both, it is used.
    use sha2::Digest;
    let digest = |name: &str| {
        let bytes = std::fs::read(files.path().join(name)).unwrap();
        format!("{:x}", sha2::Sha256::digest(bytes))
    };
    let (image, modules) = (
        digest("linux-image-6.12.deb"),
        digest("linux-modules-6.12.deb"),
    );
    let fresh = tempfile::tempdir().unwrap();
    let error = supply(fresh.path())
        .kernel(&format!("{url}#sha256={image}"), &quiet)
        .unwrap_err();
    let SupplyError::UnpinnedModules { digest: said, .. } = &error else {
        panic!("{error}")
    };
    assert_eq!(said, &modules);
    assert!(
        error.to_string().contains("linux-modules-6.12.deb"),
        "{error}"
    );
    let pinned = format!("{url}#sha256={image}&modules-sha256={modules}");
    assert_eq!(
        supply(fresh.path())
            .kernel(&pinned, &quiet)
            .unwrap()
            .file_name(),
        kernel.file_name()
    );
    let wrong = format!("{url}#sha256={image}&modules-sha256={}", "0".repeat(64));
    let other = tempfile::tempdir().unwrap();
    let error = supply(other.path()).kernel(&wrong, &quiet).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("does not have the expected sha256"),
        "{error}"
    );
    assert!(debris(fresh.path()).is_empty() && debris(other.path()).is_empty());
}

#[test]
fn a_bare_image_is_used_as_it_is_and_checked_when_asked() {
    let (server, _files, cache) = setup();
    let bytes = std::fs::read(kernels().join("builtin-6.1/bzImage")).unwrap();
    let digest: String = {
        use sha2::Digest;
        sha2::Sha256::digest(&bytes)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    };
    let url = format!("{}/files/bzImage#sha256={digest}", server.base);
    let kernel = supply(cache.path()).kernel(&url, &quiet).unwrap();
    assert_eq!(kernel.file_name().unwrap(), "bzImage");
    assert_eq!(std::fs::read(&kernel).unwrap(), bytes);
    // The same bytes under another name are there under that name.
    let renamed = format!("{}/files/vmlinuz-builtin", server.base);
    let kernel = supply(cache.path()).kernel(&renamed, &quiet).unwrap();
    assert_eq!(kernel.file_name().unwrap(), "vmlinuz-builtin");
    assert_eq!(std::fs::read(&kernel).unwrap(), bytes);

    let wrong = format!("{}/files/bzImage#sha256={}", server.base, "0".repeat(64));
    let error = supply(tempfile::tempdir().unwrap().path())
        .kernel(&wrong, &quiet)
        .unwrap_err();
    assert!(
        matches!(error, SupplyError::Fetch(FetchError::Checksum { .. })),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("does not have the expected sha256"),
        "{error}"
    );
    // The cache does not vouch for a file under another digest either.
    let error = supply(cache.path()).kernel(&wrong, &quiet).unwrap_err();
    assert!(
        matches!(error, SupplyError::Fetch(FetchError::Checksum { .. })),
        "{error}"
    );
    assert!(debris(cache.path()).is_empty());
}

#[test]
fn broken_downloads_are_errors_that_leave_nothing() {
    let (server, _files, cache) = setup();
    let cut = supply(cache.path())
        .kernel(&format!("{}/cut/linux-image-6.1.deb", server.base), &quiet)
        .unwrap_err();
    assert!(
        matches!(
            cut,
            SupplyError::Fetch(FetchError::Truncated { .. })
                | SupplyError::Fetch(FetchError::Http { .. })
        ),
        "{cut}"
    );
    assert!(cut.to_string().contains("linux-image-6.1.deb"), "{cut}");

    let started = Instant::now();
    let stalled = supply(cache.path())
        .kernel(
            &format!("{}/stall/linux-image-6.1.deb", server.base),
            &quiet,
        )
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(stalled.to_string().contains("cannot fetch"), "{stalled}");

    let missing = supply(cache.path())
        .kernel(&format!("{}/files/no-such-kernel", server.base), &quiet)
        .unwrap_err();
    assert!(missing.to_string().contains("404"), "{missing}");

    let refused = supply(cache.path())
        .kernel("http://127.0.0.1:9/vmlinuz", &quiet)
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("cannot fetch http://127.0.0.1:9/vmlinuz"),
        "{refused}"
    );

    assert!(
        debris(cache.path()).is_empty(),
        "{:?}",
        debris(cache.path())
    );
    let blobs = std::fs::read_dir(cache.path().join("blobs"))
        .map(Iterator::count)
        .unwrap_or(0);
    assert_eq!(blobs, 0, "a broken download left a blob");
}

#[test]
fn runs_fetching_at_once_agree() {
    let (server, _files, cache) = setup();
    let url = format!("{}/files/linux-image-6.1.deb", server.base);
    let kernels: Vec<PathBuf> = std::thread::scope(|scope| {
        let fetches: Vec<_> = (0..3)
            .map(|_| scope.spawn(|| supply(cache.path()).kernel(&url, &quiet).unwrap()))
            .collect();
        fetches
            .into_iter()
            .map(|fetch| fetch.join().unwrap())
            .collect()
    });
    assert!(
        kernels.windows(2).all(|pair| pair[0] == pair[1]),
        "{kernels:?}"
    );
    assert!(kernels[0].is_file());
    assert!(
        debris(cache.path()).is_empty(),
        "{:?}",
        debris(cache.path())
    );
}
