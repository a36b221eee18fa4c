//! What the engine tells its front door, as it happens. The engine never
//! prints: a [`Reporter`] (the libtest printer, the command's plain log or
//! terminal UI) receives every [`Event`] and decides what the user sees, as
//! nextest's runner and reporter meet only through events.

use std::sync::Arc;
use std::time::Duration;

use super::death::VmDeath;
use crate::model::accel::Accel;
use crate::model::outcome::Finished;
use crate::model::shape::VmShape;
use vmtest_contract::messages::{JobId, Stream};

/// Identifies a VM within a run.
pub type VmId = u64;

/// Something the engine did or saw.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// Which accelerator QEMU runs guests with, and why. Once per run.
    Accelerator { accel: Accel, reason: String },
    /// A VM is booting; `attempt` counts from 1 for its shape.
    VmBooting {
        vm: VmId,
        shape: Arc<VmShape>,
        attempt: u32,
    },
    /// A VM is ready for jobs.
    VmReady {
        vm: VmId,
        shape: Arc<VmShape>,
        boot_time: Duration,
        /// Restored from a snapshot rather than booted.
        restored: bool,
    },
    /// A snapshot of this shape cannot be saved or restored (the VM boots
    /// instead); said once per shape and run.
    SnapshotUnusable { shape: Arc<VmShape>, reason: String },
    /// A boot hung or died and is tried once more.
    VmRetrying {
        vm: VmId,
        shape: Arc<VmShape>,
        reason: String,
    },
    /// A VM died: the jobs running in it fail with this, queued ones go to
    /// a fresh VM of the same shape.
    VmDied {
        vm: VmId,
        shape: Arc<VmShape>,
        death: Arc<VmDeath>,
    },
    /// VMs of this shape died too often: no more are booted in this run.
    GaveUp { shape: Arc<VmShape>, deaths: u32 },
    /// A job's process started in a VM.
    JobStarted {
        job: JobId,
        name: Arc<str>,
        vm: VmId,
    },
    /// A job wrote this, just now.
    Output {
        job: JobId,
        stream: Stream,
        data: Vec<u8>,
    },
    /// A job ended.
    JobFinished {
        job: JobId,
        name: Arc<str>,
        finished: Arc<Finished>,
    },
    /// A guest's coverage profiles could not be copied where
    /// `LLVM_PROFILE_FILE` says.
    ProfilesLost {
        destination: std::path::PathBuf,
        reason: String,
    },
    /// A kernel is being downloaded: `received` bytes of `total` so far.
    Downloading {
        url: String,
        received: u64,
        total: Option<u64>,
    },
    /// A kernel was downloaded.
    Downloaded {
        url: String,
        bytes: u64,
        took: Duration,
    },
}

/// Receives the engine's events, from any thread; the only code that prints.
pub trait Reporter: Send + Sync {
    fn report(&self, event: &Event);
}
