//! Why a job could not run. Each failure site has its own error type; this
//! one gathers them for [`Outcome::SetupFailed`](crate::Outcome), keeping
//! every cause for the reporter.

use std::error::Error;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use crate::boot::PrepareError;
use crate::qemu::process::SpawnError;
use crate::settings::SettingsError;
use crate::shape::VmShape;
use crate::vm::BootError;

/// Why a job could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    #[error("bad vmtest setting")]
    Settings(#[from] SettingsError),
    #[error("cannot prepare kernel {kernel} for booting")]
    Prepare {
        kernel: PathBuf,
        #[source]
        source: Box<PrepareError>,
    },
    #[error("cannot start QEMU")]
    Spawn(#[from] SpawnError),
    #[error("the VM for {shape} did not come up")]
    Boot {
        shape: Arc<VmShape>,
        #[source]
        source: Box<BootError>,
    },
    #[error(
        "VMs for {shape} died {deaths} times in this run; no more are booted for it \
         (the deaths are reported above)"
    )]
    GaveUp { shape: Arc<VmShape>, deaths: u32 },
    #[error("the image {image} did not come up")]
    ImageBoot {
        image: PathBuf,
        #[source]
        source: Box<BootError>,
    },
    #[error(
        "no UEFI firmware found: install OVMF (Debian/Ubuntu: apt-get install ovmf) or give \
         `bios` in the target's [target.vm]"
    )]
    NoFirmware,
    #[error("cannot tell which binary serves the guest, or the working directory")]
    Server(#[source] std::io::Error),
    #[error("the run was cancelled")]
    Cancelled,
    #[error(
        "the guest agent of {image} says the command ended, but gives neither its exit code \
         nor the signal that killed it"
    )]
    NoExitStatus { image: PathBuf },
    #[error("the guest could not start the job: {0}")]
    Refused(String),
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
    #[error("cannot create the run's directory {path}")]
    RunDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("allowed-splat pattern {pattern:?} is not a valid regular expression")]
    SplatPattern {
        pattern: String,
        #[source]
        source: regex::Error,
    },
}

/// An error and its causes, one per line after the first, as reporters
/// show them.
pub fn chain(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // `#[error(transparent)]` and wrappers repeat their source's text.
        if !text.ends_with(&cause_text) {
            let _ = write!(text, "\n  caused by: {cause_text}");
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_names_every_cause_once() {
        let error = SetupError::RunDir {
            path: PathBuf::from("/x"),
            source: std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied"),
        };
        assert_eq!(
            chain(&error),
            "cannot create the run's directory /x\n  caused by: denied"
        );
    }
}
