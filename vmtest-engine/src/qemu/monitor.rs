//! QMP, QEMU's control socket: used to ask QEMU to quit.

use std::path::Path;
use std::time::{Duration, Instant};

use qapi::qmp;

use super::wire::{Channel, WireError};

const PEER: &str = "QMP";
const TIMEOUT: Duration = Duration::from_secs(5);

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
}
