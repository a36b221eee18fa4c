//! Why a VM did not come up.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::model::death::{VmDeath, VmLogs};
use crate::qemu::process::SpawnError;
use crate::qemu::wire::WireError;

/// Why a VM did not come up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BootError {
    #[error("cannot create the VM's directory")]
    Workdir(#[source] io::Error),
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    #[error("cannot connect to QEMU's control socket")]
    Connect(#[source] io::Error),
    #[error("the VM died while booting: {0}")]
    Died(Arc<VmDeath>),
    #[error("the guest init failed: {message}{logs}")]
    Init { message: String, logs: VmLogs },
    /// The guest never got ready: worth one more try (a boot in about twenty
    /// has been seen to hang under TCG).
    #[error("the guest was not ready within {timeout:?} of QEMU starting{logs}")]
    Hung { timeout: Duration, logs: VmLogs },
    #[error("loading the saved guest failed: {source}{}", qemu_said(.last_words))]
    Restore {
        source: WireError,
        /// The last line QEMU printed.
        last_words: String,
    },
    #[error("QEMU's monitor did not answer, so the saved guest cannot be loaded")]
    RestoreWithoutMonitor,
}

/// `" (QEMU: …)"`, or nothing if QEMU said nothing.
fn qemu_said(last_words: &str) -> String {
    match last_words {
        "" => String::new(),
        said => format!(" (QEMU: {said})"),
    }
}

/// The guest could not start a job (no process was created).
#[derive(Debug, thiserror::Error)]
#[error("the guest could not start the job: {0}")]
pub struct JobRefused(pub String);
