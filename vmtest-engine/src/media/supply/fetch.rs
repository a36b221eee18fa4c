//! Downloading a file into the content-addressed cache: streamed to a
//! temporary file while its SHA-256 is computed, checked against its
//! `Content-Length` (a cut connection is an error, never a short file) and
//! against the expected digest if one is given, then renamed into place
//! under its digest ([`crate::cache`]), so that two runs fetching at once
//! or an interrupted download never leave a broken file.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::host::cache::{self, CacheError};
use crate::host::cancel;
use crate::model::events::Event;
use vmtest_contract::boot::hex;

/// How often progress is reported.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);
/// The largest download taken: a kernel package is about 100 MB, a kernel
/// image about 10; a server sending more is not sending a kernel.
pub(crate) const MAX_DOWNLOAD: u64 = 1 << 30;

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot fetch {url}: {message}")]
    Http {
        url: String,
        message: String,
        /// The server's status code, if it answered with an error.
        status: Option<u16>,
    },
    #[error("{url} was cut short: {received} of {expected} bytes arrived")]
    Truncated {
        url: String,
        received: u64,
        expected: u64,
    },
    #[error("{url} does not have the expected sha256 {expected} (it has {actual}): fix the checksum or the URL")]
    Checksum {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("{url} is larger than {} MiB, more than any kernel package", MAX_DOWNLOAD >> 20)]
    TooLarge { url: String },
    #[error(
        "{url} cannot be fetched: this build of vmtest has no downloads (the `download` feature \
         of vmtest-engine, vmtest-harness or vmtest-cli, on by default, is off); give a path \
         to the kernel instead"
    )]
    NoDownloads { url: String },
    #[error("the download of {url} was cancelled")]
    Cancelled { url: String },
    #[error(transparent)]
    Cache(#[from] CacheError),
}

impl FetchError {
    /// A 404: the file is not there (which a derived URL may well be).
    pub fn not_found(&self) -> bool {
        matches!(
            self,
            FetchError::Http {
                status: Some(404),
                ..
            }
        )
    }
}

/// Asks for `url`: the length the server announces, and the body.
#[cfg(feature = "download")]
fn get(url: &str, timeout: Duration) -> Result<(Option<u64>, Box<dyn Read>), FetchError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(timeout))
        // Silence: the read that waits this long fails the download.
        .timeout_per_read(Some(timeout))
        .http_status_as_error(true)
        .build()
        .into();
    let response = agent.get(url).call().map_err(|error| FetchError::Http {
        url: url.to_string(),
        status: match error {
            ureq::Error::StatusCode(status) => Some(status),
            _ => None,
        },
        message: error.to_string(),
    })?;
    let total = response.body().content_length();
    Ok((total, Box::new(response.into_body().into_reader())))
}

/// Without the `download` feature, no kernel is fetched.
#[cfg(not(feature = "download"))]
fn get(url: &str, _timeout: Duration) -> Result<(Option<u64>, Box<dyn Read>), FetchError> {
    Err(FetchError::NoDownloads {
        url: url.to_string(),
    })
}

/// Downloads `url` into `blobs` as `sha256-<hex>`; returns its path and digest.
pub(super) fn fetch(
    url: &str,
    expected: Option<&str>,
    blobs: &Path,
    timeout: Duration,
    report: &dyn Fn(&Event),
) -> Result<(PathBuf, String), FetchError> {
    let http = |message: String| FetchError::Http {
        url: url.to_string(),
        message,
        status: None,
    };
    let (total, mut body) = get(url, timeout)?;
    let started = Instant::now();
    let mut failure = None;
    let mut digest = String::new();
    let stored = cache::store_as(blobs, |file| {
        let mut hasher = Sha256::new();
        let mut received = 0u64;
        let mut buffer = vec![0u8; 1 << 16];
        let mut reported = Instant::now();
        loop {
            if cancel::cancelled() {
                failure = Some(FetchError::Cancelled {
                    url: url.to_string(),
                });
                return Err(io::Error::other("cancelled"));
            }
            let read = match body.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    failure = Some(http(format!("after {received} bytes: {error}")));
                    return Err(io::Error::other("download failed"));
                }
            };
            hasher.update(&buffer[..read]);
            file.write_all(&buffer[..read])?;
            received += read as u64;
            if received > MAX_DOWNLOAD {
                failure = Some(FetchError::TooLarge {
                    url: url.to_string(),
                });
                return Err(io::Error::other("too large"));
            }
            if reported.elapsed() >= PROGRESS_EVERY {
                reported = Instant::now();
                report(&Event::Downloading {
                    url: url.to_string(),
                    received,
                    total,
                });
            }
        }
        if let Some(expected) = total.filter(|&total| total != received) {
            failure = Some(FetchError::Truncated {
                url: url.to_string(),
                received,
                expected,
            });
            return Err(io::Error::other("download cut short"));
        }
        digest = hex(&hasher.finalize());
        if let Some(expected) = expected.filter(|expected| !expected.eq_ignore_ascii_case(&digest))
        {
            failure = Some(FetchError::Checksum {
                url: url.to_string(),
                expected: expected.to_string(),
                actual: digest.clone(),
            });
            return Err(io::Error::other("checksum mismatch"));
        }
        report(&Event::Downloaded {
            url: url.to_string(),
            bytes: received,
            took: started.elapsed(),
        });
        Ok(format!("sha256-{digest}"))
    });
    match (stored, failure) {
        (_, Some(failure)) => Err(failure),
        (Ok(path), None) => Ok((path, digest)),
        (Err(error), None) => Err(error.into()),
    }
}

/// Built by CI with `--no-default-features`.
#[cfg(all(test, not(feature = "download")))]
mod tests {
    use super::*;

    #[test]
    fn without_the_download_feature_a_url_names_the_feature() {
        let blobs = tempfile::tempdir().unwrap();
        let error = fetch(
            "https://example.invalid/vmlinuz",
            None,
            blobs.path(),
            Duration::from_secs(1),
            &|_| {},
        )
        .unwrap_err();
        assert!(matches!(error, FetchError::NoDownloads { .. }), "{error:?}");
        let message = error.to_string();
        assert!(
            message.contains("https://example.invalid/vmlinuz")
                && message.contains("`download` feature"),
            "{message}"
        );
    }
}
