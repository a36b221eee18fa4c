//! Why a job could not run. Each failure site has its own error type; this
//! one gathers them, at the layer that can fail in all those ways, for
//! [`Outcome::SetupFailed`](crate::Outcome), keeping every cause for the
//! reporter.

use std::path::PathBuf;
use std::sync::Arc;

use super::image::DiskImageError;
use crate::host::cache::CacheError;
use crate::host::settings::SettingsError;
use crate::media::prepare::PrepareError;
use crate::model::shape::VmShape;
use crate::model::splat::SplatPatternError;
use crate::qemu::process::SpawnError;
use crate::vm::error::BootError;

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
        source: Box<DiskImageError>,
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
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("cannot create the run's directory {path}")]
    RunDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    SplatPattern(#[from] SplatPatternError),
}
