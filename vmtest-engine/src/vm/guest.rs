//! A running guest, as the VM's threads share it: the control link, the
//! QEMU process, the console log; and the boot's conversation with the
//! guest init, from its handshake to a ready test server.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};
use vmtest_contract::boot::BootParams;

use crate::model::death::{read_console, VmLogs};
use crate::model::events::{Event, Reporter, VmId};
use crate::model::shape::VmShape;
use crate::qemu::monitor::Monitor;
use crate::qemu::process::QemuProcess;
use crate::snapshot::{Draft, SavedMemory, Snapshot};

use super::error::BootError;
use super::fresh::boot_line;
use super::link::{Link, Phase, State};

/// How long QEMU may take to exit after its guest went away.
pub(super) const EXIT_GRACE: Duration = Duration::from_secs(2);
/// How long saving a snapshot may take.
const SAVE_TIMEOUT: Duration = Duration::from_secs(60);

/// A running guest.
pub(super) struct Guest {
    pub vm: VmId,
    pub shape: Arc<VmShape>,
    pub link: Link,
    pub qemu: Mutex<QemuProcess>,
    pub console_log: PathBuf,
    pub reporter: Arc<dyn Reporter>,
}

impl Guest {
    pub(super) fn qemu(&self) -> MutexGuard<'_, QemuProcess> {
        self.qemu.lock()
    }

    /// Waits until the init says it waits for its parameters; `false` if
    /// it never does (the VM died, or the deadline passed: [`Guest::start`]
    /// says which).
    pub(super) fn init_waits(&self, deadline: Instant) -> bool {
        let spoke = |state: &State| state.phase != Phase::Starting || state.death.is_some();
        self.link.wait_until(Some(deadline), spoke).phase == Phase::InitReady
    }

    /// Sends the init, which waits for them, its parameters, and waits for
    /// the server.
    pub(super) fn start(
        &self,
        params: &BootParams,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(), BootError> {
        let waiting = self.link.update(|state| {
            let waiting = matches!(state.phase, Phase::Starting | Phase::InitReady);
            if waiting {
                state.phase = Phase::Booting;
            }
            waiting
        });
        if waiting {
            // A failed send means QEMU is gone: the reader says why.
            let _ = self.link.write(&boot_line(params));
        }
        let ready = |state: &State| {
            matches!(state.phase, Phase::Ready | Phase::InitFailed(_)) || state.death.is_some()
        };
        let state = self.link.wait_until(Some(deadline), ready);
        if let Some(death) = &state.death {
            return Err(BootError::Died(Arc::clone(death)));
        }
        let phase = state.phase.clone();
        drop(state);
        match phase {
            Phase::Ready => Ok(()),
            Phase::InitFailed(message) => Err(BootError::Init {
                message,
                logs: self.logs(),
            }),
            _ => Err(BootError::Hung {
                timeout,
                logs: self.logs(),
            }),
        }
    }

    /// Saves the guest, waiting at the init's handshake, through `draft`
    /// into `snapshot`. A guest whose memory stays in the snapshot's file
    /// stays stopped, to be ended ([`Guest::end`]); any other goes on. A
    /// snapshot that cannot be saved is said, and the boot goes on without it.
    pub(super) fn save(
        &self,
        draft: Draft,
        monitor: &mut Monitor,
        snapshot: &Snapshot,
    ) -> Option<SavedMemory> {
        let deadline = Instant::now() + SAVE_TIMEOUT;
        let saved = draft.save(monitor, snapshot, &self.console_log, deadline);
        if let Ok(SavedMemory::InFile) = saved {
            return saved.ok();
        }
        let resumed = monitor.resume();
        let trouble = match (saved, resumed) {
            (Ok(memory), Ok(())) => return Some(memory),
            (Err(error), _) => error.to_string(),
            (Ok(_), Err(error)) => error.to_string(),
        };
        self.cannot_save(&trouble);
        None
    }

    /// Says that this VM's snapshot cannot be saved, and why.
    pub(super) fn cannot_save(&self, trouble: &str) {
        self.reporter.report(&Event::SnapshotUnusable {
            shape: Arc::clone(&self.shape),
            reason: format!("cannot save it: {trouble}"),
        });
    }

    /// Ends QEMU without a word: the guest is not dying, it is done with.
    pub(super) fn end(&self) {
        self.link.update(|state| state.phase = Phase::Stopping);
        let mut qemu = self.qemu();
        qemu.kill();
    }

    /// The last line QEMU printed, once it has exited (if it does at once).
    pub(super) fn last_words(&self) -> String {
        let mut qemu = self.qemu();
        qemu.wait_for_exit(EXIT_GRACE);
        let said = qemu.stderr();
        said.lines().last().unwrap_or_default().to_string()
    }

    /// What QEMU said and the telling part of the console.
    pub(super) fn logs(&self) -> VmLogs {
        let qemu_said = self.qemu().stderr();
        VmLogs::new(qemu_said, &read_console(&self.console_log))
    }
}
