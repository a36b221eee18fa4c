//! Kernels from anywhere: wherever a kernel is named, an `https://` or
//! `http://` URL works as well as a path.
//!
//! - A download lands in a content-addressed cache (`$XDG_CACHE_HOME/vmtest`,
//!   else `~/.cache/vmtest`): `blobs/sha256-<digest>`, and `urls/<hash of
//!   the URL>` naming the blob a URL gave. A URL seen before is used from
//!   the cache without the network.
//! - `#sha256=<hex>` after a URL checks what arrives (and what the cache
//!   holds) against that digest. A pinned package whose modules come in a
//!   package of their own needs that one pinned too:
//!   `#sha256=<hex>&modules-sha256=<hex>`.
//! - A Debian or Ubuntu kernel package (`linux-image-*.deb`) is unpacked to
//!   `unpacked/<digest>/`, kernel and modules (which the boot finds beside
//!   the kernel). Where the distribution puts the modules in a package of
//!   their own (Ubuntu's `linux-modules-*.deb`, beside the image package),
//!   it is fetched and unpacked with it.
//! - A bare kernel image is used as it is.
//!
//! Everything is written atomically, so runs fetching at once, or a
//! download cut short, never leave a broken kernel in the cache; nothing
//! grows without bound (downloads and packages are capped in size, and the
//! cache is pruned: [`cache::DOWNLOADS`], [`cache::RECORDS`]).

pub mod deb;
pub mod fetch;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::host::cache::{self, CacheError};
use crate::host::cancel::{self, Resource};
use crate::host::settings::{self, SettingsError};
use crate::model::events::Event;
use vmtest_contract::boot::hex;

use self::deb::DebError;
use self::fetch::FetchError;

/// How long a server may take to answer, by default.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The URL fragment's keys: the digest of what the URL names, and of its
/// separate modules package.
const IMAGE_PIN: &str = "sha256";
const MODULES_PIN: &str = "modules-sha256";

/// Why a kernel could not be supplied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SupplyError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Deb(#[from] DebError),
    #[error("the package {url} holds no kernel image (boot/vmlinuz-*)")]
    NoKernel { url: String },
    #[error(
        "{url} does not name a file (its path must end in a file name, such as \
         .../linux-image-6.12.deb or .../bzImage)"
    )]
    NoFileName { url: String },
    #[error(
        "{url}: the fragment `{fragment}` is not understood: give `#sha256=HEX`, and \
         `&modules-sha256=HEX` for a separate modules package"
    )]
    BadFragment { url: String, fragment: String },
    #[error(
        "{url} is pinned by its sha256, but its modules come from {modules}, which is not: \
         check that package, then add `&modules-sha256={digest}` to the URL"
    )]
    UnpinnedModules {
        url: String,
        modules: String,
        digest: String,
    },
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("no cache directory for downloaded kernels: set XDG_CACHE_HOME or HOME")]
    NoCacheDir,
}

impl SupplyError {
    /// Whether the URL itself is wrong (not the network, the server or the
    /// cache): a mistake to fix where the URL is written.
    pub fn is_bad_url(&self) -> bool {
        matches!(
            self,
            SupplyError::NoFileName { .. } | SupplyError::BadFragment { .. }
        )
    }
}

/// The download cache.
#[derive(Debug, Clone)]
pub struct Supply {
    root: PathBuf,
    timeout: Duration,
}

/// Whether `kernel` names a download rather than a file.
pub fn is_url(kernel: &str) -> bool {
    kernel.starts_with("https://") || kernel.starts_with("http://")
}

impl Supply {
    /// The cache in `$XDG_CACHE_HOME/vmtest` (else `~/.cache/vmtest`), and
    /// `VMTEST_DOWNLOAD_TIMEOUT` (seconds a server may take to answer).
    pub fn from_env() -> Result<Supply, SupplyError> {
        let var = |name: &str| std::env::var(name).ok();
        let root = settings::user_cache_dir(var)
            .ok_or(SupplyError::NoCacheDir)?
            .join("vmtest");
        let timeout = match var("VMTEST_DOWNLOAD_TIMEOUT").filter(|value| !value.is_empty()) {
            None => DEFAULT_TIMEOUT,
            Some(value) => settings::seconds(&value).ok_or_else(|| {
                settings::invalid(
                    "VMTEST_DOWNLOAD_TIMEOUT",
                    &value,
                    "give a number of seconds greater than 0",
                )
            })?,
        };
        Ok(Supply { root, timeout })
    }

    /// A supply with its cache in `root`.
    pub fn at(root: impl Into<PathBuf>, timeout: Duration) -> Supply {
        Supply {
            root: root.into(),
            timeout,
        }
    }

    /// The kernel image `url` names, fetched (or found in the cache) and
    /// unpacked; `report` hears of the download's progress.
    pub fn kernel(&self, url: &str, report: &dyn Fn(&Event)) -> Result<PathBuf, SupplyError> {
        let (address, pins) = pins(url)?;
        let name = url_file_name(address);
        if matches!(name.as_str(), "" | "." | "..") {
            return Err(SupplyError::NoFileName {
                url: address.to_string(),
            });
        }
        // What the cache holds is trusted: it must be this user's alone.
        cache::ensure_dir(&self.root)?;
        self.prune_once();
        let (blob, digest) = self.blob(address, pins.image, report)?;
        let unpacked = self.root.join("unpacked").join(&digest);
        if !name.ends_with(".deb") {
            // Under the name of this URL, which another URL of the same
            // bytes may not share.
            let image = unpacked.join(&name);
            if !image.is_file() {
                place_image(&blob, &image)?;
            }
            cache::mark_used(&unpacked);
            return Ok(image);
        }
        if !unpacked.exists() {
            self.unpack(address, &pins, &blob, &unpacked, report)?;
        }
        cache::mark_used(&unpacked);
        newest_image(&unpacked.join("boot")).ok_or_else(|| SupplyError::NoKernel {
            url: address.to_string(),
        })
    }

    /// Prunes the cache, once per process: downloads long unused, and the
    /// least recently used past the limits.
    fn prune_once(&self) {
        static PRUNED: std::sync::Once = std::sync::Once::new();
        PRUNED.call_once(|| {
            for dir in ["blobs", "unpacked"] {
                cache::prune(&self.root.join(dir), |_| true, cache::DOWNLOADS);
            }
            cache::prune(&self.root.join("urls"), |_| true, cache::RECORDS);
        });
    }

    /// The blob `url` gave, from the cache or the network, and its digest.
    fn blob(
        &self,
        url: &str,
        expected: Option<&str>,
        report: &dyn Fn(&Event),
    ) -> Result<(PathBuf, String), SupplyError> {
        let blobs = self.root.join("blobs");
        let index = self.root.join("urls");
        let key = hex(&Sha256::digest(url.as_bytes()));
        let known = std::fs::read_to_string(index.join(&key))
            .ok()
            .map(|digest| digest.trim().to_string())
            .filter(|digest| expected.is_none_or(|expected| expected.eq_ignore_ascii_case(digest)));
        if let Some(digest) = known {
            let blob = blobs.join(format!("sha256-{digest}"));
            if blob.is_file() {
                cache::mark_used(&index.join(&key));
                cache::mark_used(&blob);
                return Ok((blob, digest));
            }
        }
        self.remove_stale();
        let (blob, digest) = fetch::fetch(url, expected, &blobs, self.timeout, report)?;
        cache::store(&index, &key, |file| {
            std::io::Write::write_all(file, digest.as_bytes())
        })?;
        Ok((blob, digest))
    }

    /// Removes what downloads and unpackings killed with SIGKILL left.
    fn remove_stale(&self) {
        for dir in ["blobs", "urls", "unpacked"] {
            cache::remove_stale(&self.root.join(dir));
        }
    }

    /// Makes `unpacked`: the package's tree, with its modules package if
    /// the distribution has one.
    fn unpack(
        &self,
        url: &str,
        pins: &Pins,
        blob: &Path,
        unpacked: &Path,
        report: &dyn Fn(&Event),
    ) -> Result<(), SupplyError> {
        let parent = unpacked.parent().expect("under the cache's root");
        let (temp, _lease) = cache::temp_dir(parent)?;
        let _registration = cancel::register(Resource::Path(temp.clone()));
        let io = |source| {
            SupplyError::Cache(CacheError {
                path: temp.clone(),
                source,
            })
        };
        let made = (|| {
            deb::unpack(blob, &temp)?;
            if let Some(modules) = modules_package(url) {
                match self.blob(&modules, pins.modules, report) {
                    // A pinned package's modules must be pinned too.
                    Ok((_, digest)) if pins.image.is_some() && pins.modules.is_none() => {
                        return Err(SupplyError::UnpinnedModules {
                            url: url.to_string(),
                            modules,
                            digest,
                        })
                    }
                    Ok((modules, _)) => deb::unpack(&modules, &temp)?,
                    // Debian's image package holds its modules itself.
                    Err(SupplyError::Fetch(error)) if error.not_found() => {}
                    Err(error) => return Err(error),
                }
            }
            Ok(())
        })();
        let placed = made.and_then(|()| match std::fs::rename(&temp, unpacked) {
            Ok(()) => Ok(()),
            // Another run unpacked it first: theirs is the same.
            Err(_) if unpacked.exists() => Ok(()),
            Err(error) => Err(io(error)),
        });
        let _ = std::fs::remove_dir_all(&temp);
        placed
    }
}

/// The digests a URL's fragment pins.
#[derive(Debug, Default, PartialEq, Eq)]
struct Pins<'a> {
    image: Option<&'a str>,
    modules: Option<&'a str>,
}

/// A URL without its fragment, and the digests the fragment gives
/// (`#sha256=HEX&modules-sha256=HEX`).
fn pins(url: &str) -> Result<(&str, Pins<'_>), SupplyError> {
    let Some((address, fragment)) = url.split_once('#') else {
        return Ok((url, Pins::default()));
    };
    let mut pins = Pins::default();
    for part in fragment.split('&') {
        let bad = || SupplyError::BadFragment {
            url: address.to_string(),
            fragment: fragment.to_string(),
        };
        let (key, digest) = part.split_once('=').ok_or_else(bad)?;
        let well_formed = digest.len() == 64 && digest.bytes().all(|byte| byte.is_ascii_hexdigit());
        let slot = match key {
            IMAGE_PIN => &mut pins.image,
            MODULES_PIN => &mut pins.modules,
            _ => return Err(bad()),
        };
        if !well_formed || slot.replace(digest).is_some() {
            return Err(bad());
        }
    }
    Ok((address, pins))
}

/// Puts the bare image `blob` at `image`: a hard link (made whole at once),
/// else an atomic copy.
fn place_image(blob: &Path, image: &Path) -> Result<(), SupplyError> {
    let dir = image.parent().expect("under its digest's directory");
    let name = image.file_name().expect("named after its URL");
    cache::ensure_dir(dir)?;
    match std::fs::hard_link(blob, image) {
        Ok(()) => Ok(()),
        // Another run placed it first: theirs is the same.
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(_) => {
            cache::store(dir, &name.to_string_lossy(), |file| {
                std::io::copy(&mut std::fs::File::open(blob)?, file).map(drop)
            })?;
            Ok(())
        }
    }
}

/// The last part of a URL's path: the name of what it names.
pub fn url_file_name(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.rsplit('/').next().unwrap_or("kernel").to_string()
}

/// Ubuntu splits a kernel's modules into a package of their own beside the
/// image's: `linux-image-[unsigned-]VERSION_…` goes with
/// `linux-modules-VERSION_…`.
fn modules_package(url: &str) -> Option<String> {
    let name = url_file_name(url);
    let rest = name
        .strip_prefix("linux-image-unsigned-")
        .or_else(|| name.strip_prefix("linux-image-"))?;
    let directory = &url[..url.len() - name.len()];
    Some(format!("{directory}linux-modules-{rest}"))
}

/// The last `vmlinuz-*` in `boot` by name (a package holds one).
fn newest_image(boot: &Path) -> Option<PathBuf> {
    let mut images: Vec<PathBuf> = std::fs::read_dir(boot)
        .ok()?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("vmlinuz-"))
        })
        .collect();
    images.sort();
    images.pop()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_pin_the_image_and_its_modules() {
        let (image, modules) = ("a".repeat(64), "B".repeat(64));
        assert_eq!(
            pins("http://h/k.deb").unwrap(),
            ("http://h/k.deb", Pins::default())
        );
        let url = format!("http://h/k.deb#sha256={image}&modules-sha256={modules}");
        assert_eq!(
            pins(&url).unwrap(),
            (
                "http://h/k.deb",
                Pins {
                    image: Some(&image),
                    modules: Some(&modules)
                }
            )
        );
        for bad in [
            "#sha256=abc".to_string(),
            format!("#md5={image}"),
            format!("#sha256={image}&sha256={image}"),
            format!("#sha256={image}&"),
            "#".to_string(),
        ] {
            let error = pins(&format!("http://h/k.deb{bad}")).unwrap_err();
            assert!(
                matches!(error, SupplyError::BadFragment { .. }),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn a_url_that_names_no_file_is_refused_before_anything_is_fetched() {
        let cache = tempfile::tempdir().unwrap();
        let supply = Supply::at(cache.path(), Duration::from_secs(1));
        for url in [
            "http://127.0.0.1:9/kernels/..",
            "http://127.0.0.1:9/",
            "http://h/a/.",
        ] {
            let error = supply.kernel(url, &|_| {}).unwrap_err();
            assert!(
                matches!(error, SupplyError::NoFileName { .. }),
                "{url}: {error}"
            );
        }
    }

    #[test]
    fn names_and_module_packages_come_from_the_url() {
        assert_eq!(
            url_file_name("https://h/a/linux-image-6.1.deb?x=1"),
            "linux-image-6.1.deb"
        );
        assert_eq!(
            modules_package(
                "https://h/p/linux-image-unsigned-6.8.0-40-generic_6.8.0-40.40_amd64.deb"
            ),
            Some("https://h/p/linux-modules-6.8.0-40-generic_6.8.0-40.40_amd64.deb".into())
        );
        assert_eq!(
            modules_package("http://h/linux-image-6.1.0-57-amd64_6.1.192-3_amd64.deb"),
            Some("http://h/linux-modules-6.1.0-57-amd64_6.1.192-3_amd64.deb".into())
        );
        assert_eq!(modules_package("http://h/bzImage"), None);
        assert!(is_url("https://x") && is_url("http://x") && !is_url("/boot/vmlinuz"));
    }
}
