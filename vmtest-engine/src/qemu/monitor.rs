//! QMP, QEMU's control socket: used to save a guest's state to a file, to
//! load it into a new QEMU (its memory left in a file of its own, if
//! asked), and to ask QEMU to quit.

use std::path::Path;
use std::time::{Duration, Instant};

use qapi::qmp;

use super::wire::{Channel, WireError};

const PEER: &str = "QMP";
const TIMEOUT: Duration = Duration::from_secs(5);
/// How often a migration's progress is asked for.
const MIGRATION_POLL: Duration = Duration::from_millis(10);
/// No limit worth the name on how fast a saved state is written (QEMU's
/// default, 32 MiB/s, would make a snapshot take seconds).
const UNLIMITED_BANDWIDTH: u64 = 1 << 40;

/// A QMP connection past its capabilities handshake.
pub(crate) struct Monitor {
    channel: Channel,
}

impl Monitor {
    /// Connects and negotiates. QEMU listens before it starts the guest, so
    /// the socket is there as soon as QEMU has parsed its command line.
    pub(crate) fn connect(socket: &Path) -> Result<Self, WireError> {
        let mut channel = Channel::connect(socket, PEER)?;
        // The greeting: {"QMP": {...}}.
        channel.receive(Instant::now() + TIMEOUT)?;
        channel.execute(&qmp::qmp_capabilities { enable: None }, TIMEOUT)?;
        Ok(Self { channel })
    }

    /// Asks QEMU to exit now. The guest's root is read-only and its shared
    /// directory is written through, so nothing is lost by not shutting the
    /// guest down first.
    pub(crate) fn quit(&mut self) -> Result<(), WireError> {
        match self.channel.execute(&qmp::quit {}, TIMEOUT) {
            // QEMU may close the socket before its answer arrives.
            Ok(_) | Err(WireError::Closed { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Leaves memory mapped shared from a file (`memory-backend-file` with
    /// `share=on`) out of what a save writes, and what a load reads: that
    /// memory is in the file already. Call it before [`Monitor::save`] or
    /// [`Monitor::load`].
    pub(crate) fn ignore_shared_memory(&mut self) -> Result<(), WireError> {
        self.channel
            .execute(
                &qmp::migrate_set_capabilities {
                    capabilities: vec![qmp::MigrationCapabilityStatus {
                        capability: qmp::MigrationCapability::x_ignore_shared,
                        state: true,
                    }],
                },
                TIMEOUT,
            )
            .map(drop)
    }

    /// Stops the guest and writes its whole state through `shell_command`
    /// (`exec:` runs it by `/bin/sh -c`, the state on its stdin); the
    /// guest stays stopped: [`Monitor::resume`] goes on. A save that misses
    /// its deadline is cancelled, and over, before this returns: a guest
    /// must never run on while its state is still being written.
    pub(crate) fn save(&mut self, shell_command: &str, deadline: Instant) -> Result<(), WireError> {
        self.channel.execute(&qmp::stop {}, TIMEOUT)?;
        self.channel.execute(
            &qmp::migrate_set_parameters(qmp::MigrateSetParameters {
                max_bandwidth: Some(UNLIMITED_BANDWIDTH),
                ..Default::default()
            }),
            TIMEOUT,
        )?;
        self.channel.execute(
            &qmp::migrate {
                uri: Some(format!("exec:{shell_command}")),
                channels: None,
                detach: None,
                resume: None,
            },
            TIMEOUT,
        )?;
        let saved = self.wait_for_migration("migrate", deadline);
        if let Err(WireError::Timeout { .. }) = &saved {
            self.channel.execute(&qmp::migrate_cancel {}, TIMEOUT)?;
            // Cancelled (or failed) from QEMU's side too, within moments.
            match self.wait_for_migration("migrate", Instant::now() + TIMEOUT) {
                Err(WireError::Refused { .. }) => {}
                Ok(()) => return Ok(()),
                Err(error) => return Err(error),
            }
        }
        saved
    }

    /// Loads a guest's state from what `shell_command` writes to its
    /// stdout, into a QEMU started with `-incoming defer`; the guest stays
    /// stopped (`-S`): [`Monitor::resume`] starts it.
    pub(crate) fn load(&mut self, shell_command: &str, deadline: Instant) -> Result<(), WireError> {
        self.channel.execute(
            &qmp::migrate_incoming {
                uri: Some(format!("exec:{shell_command}")),
                channels: None,
                exit_on_error: None,
            },
            TIMEOUT,
        )?;
        self.wait_for_migration("migrate-incoming", deadline)
    }

    /// Runs the guest.
    pub(crate) fn resume(&mut self) -> Result<(), WireError> {
        self.channel.execute(&qmp::cont {}, TIMEOUT).map(drop)
    }

    fn wait_for_migration(
        &mut self,
        command: &'static str,
        deadline: Instant,
    ) -> Result<(), WireError> {
        let started = Instant::now();
        loop {
            let info = self.channel.execute(&qmp::query_migrate {}, TIMEOUT)?;
            match info.status {
                Some(qmp::MigrationStatus::completed) => return Ok(()),
                Some(qmp::MigrationStatus::failed | qmp::MigrationStatus::cancelled) => {
                    return Err(WireError::Refused {
                        peer: PEER,
                        command,
                        message: info
                            .error_desc
                            .unwrap_or_else(|| "the migration failed".into()),
                    })
                }
                _ if Instant::now() >= deadline => {
                    return Err(WireError::Timeout {
                        peer: PEER,
                        waited: started.elapsed(),
                    })
                }
                _ => std::thread::sleep(MIGRATION_POLL),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::fake_qmp::{self, DONE};

    #[test]
    fn a_save_past_its_deadline_is_cancelled_before_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("qmp.sock");
        // Migrations never end until cancelled.
        let mut cancelled = false;
        let peer = fake_qmp::serve(&socket, move |command| {
            cancelled |= command == "migrate_cancel";
            match command {
                "query-migrate" if cancelled => r#"{"return": {"status": "cancelled"}}"#,
                "query-migrate" => r#"{"return": {"status": "active"}}"#,
                _ => DONE,
            }
            .to_string()
        });
        let mut monitor = Monitor::connect(&socket).unwrap();
        let error = monitor
            .save(
                "cat > /dev/null",
                Instant::now() + Duration::from_millis(200),
            )
            .unwrap_err();
        assert!(matches!(error, WireError::Timeout { .. }), "{error}");
        drop(monitor);
        let commands = peer.join().unwrap();
        let cancel = commands
            .iter()
            .position(|command| command == "migrate_cancel");
        assert!(cancel.is_some(), "{commands:?}");
        // QEMU's own word that it is over came before the save returned.
        assert_eq!(commands.last().map(String::as_str), Some("query-migrate"));
        assert!(!commands.contains(&"cont".to_string()), "{commands:?}");
    }
}
