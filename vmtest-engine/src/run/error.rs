//! Why a job could not run. Each failure site has its own error type; this
//! one gathers them, at the layer that can fail in all those ways, for
//! [`Outcome::SetupFailed`](crate::Outcome), keeping every cause for the
//! reporter.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::host::cache::CacheError;
use crate::host::settings::SettingsError;
use crate::media::guest::GuestBuildError;
use crate::media::prepare::PrepareError;
use crate::model::arch::Arch;
use crate::model::death::VmLogs;
use crate::model::shape::VmShape;
use crate::model::splat::SplatPatternError;
use crate::qemu::process::SpawnError;
use crate::qemu::wire::WireError;
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
        "no UEFI firmware for {} found: install it (Debian/Ubuntu: apt-get install {}) or \
         give `bios` in the target's [target.vm]",
        arch.name(),
        arch.uefi_package()
    )]
    NoFirmware { arch: Arch },
    #[error("cannot tell which binary serves the guest, or the working directory")]
    Server(#[source] std::io::Error),
    #[error("the run was cancelled")]
    Cancelled,
    #[error(transparent)]
    GuestBuild(#[from] GuestBuildError),
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

/// Why an image did not come up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiskImageError {
    #[error("cannot create the VM's directory")]
    Workdir(#[source] std::io::Error),
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    #[error("cannot connect to QEMU's sockets")]
    Connect(#[source] std::io::Error),
    #[error(
        "the image's guest agent did not answer within {timeout:?} of QEMU starting: does the \
         image run qemu-guest-agent at boot? (a slow image may need a longer \
         VMTEST_BOOT_TIMEOUT){logs}"
    )]
    AgentSilent { timeout: Duration, logs: VmLogs },
    #[error("QEMU exited ({status}) before the image's guest agent answered{logs}")]
    Exited { status: String, logs: VmLogs },
    #[error("talking to the image's guest agent failed: {error}{logs}")]
    Agent { error: WireError, logs: VmLogs },
    #[error("{what} is not UTF-8, which the guest agent's JSON cannot carry")]
    NotText { what: String },
}
