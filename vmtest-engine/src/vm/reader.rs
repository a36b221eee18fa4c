//! The reader thread of a VM: it reads everything the guest sends, files
//! it with the [`Link`](super::link::Link), sends the heartbeat
//! ([`Liveness`]), and declares the VM dead when QEMU exits, the
//! connection drops or the guest stops answering. Every waiting job wakes
//! then: those that had started fail with the reason and the console, the
//! others are handed back to be run on a fresh VM.

use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vmtest_contract::messages::{ReplyReader, Request};

use crate::host::cancel;
use crate::model::death::{read_console, DeathCause, VmDeath, VmLogs};
use crate::model::events::Event;

use super::guest::{Guest, EXIT_GRACE};
use super::link::Phase;
use super::liveness::{Liveness, DEAD_AFTER};

/// How often the reader thread wakes without messages, to keep the heartbeat.
const TICK: Duration = Duration::from_millis(100);
/// The longest line read from the guest: longer ones are dropped (the
/// server's own lines are far shorter).
const MAX_LINE: usize = 1 << 20;
/// How much one read from the control port takes.
const READ_BUFFER: usize = 1 << 16;

impl Guest {
    /// The reader thread: everything the guest sends, and the heartbeat.
    pub(super) fn read(&self, mut stream: UnixStream) {
        if let Err(error) = stream.set_read_timeout(Some(TICK)) {
            return self.die(DeathCause::Connection(error));
        }
        let pid = self.qemu().id();
        let mut reader = ReplyReader::new(MAX_LINE);
        let mut buffer = vec![0u8; READ_BUFFER];
        let mut liveness = Liveness::new(pid);
        let mut checked = Instant::now();
        loop {
            match stream.read(&mut buffer) {
                Ok(0) => {
                    let closed = io::Error::new(io::ErrorKind::UnexpectedEof, "QEMU closed it");
                    return self.die(DeathCause::Connection(closed));
                }
                Ok(read) => {
                    reader.push(&buffer[..read]);
                    loop {
                        let incoming = match reader.next_message() {
                            Ok(Some(incoming)) => incoming,
                            Ok(None) => break,
                            Err(error) => {
                                return self.die(DeathCause::Connection(io::Error::other(error)))
                            }
                        };
                        liveness.heard();
                        for event in &self.link.receive(incoming) {
                            self.reporter.report(event);
                        }
                    }
                }
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(error) => return self.die(DeathCause::Connection(error)),
            }
            if self.link.state().phase != Phase::Ready {
                continue;
            }
            if liveness.ping_due() {
                if let Err(error) = self.link.send(&Request::Ping) {
                    return self.die(DeathCause::Connection(error));
                }
            }
            if checked.elapsed() >= TICK {
                checked = Instant::now();
                let silent = liveness.silence();
                if silent >= DEAD_AFTER {
                    return self.die(DeathCause::Unresponsive { silent });
                }
            }
        }
    }

    /// Records the VM's death (the first reason wins), stops QEMU, and wakes
    /// every waiter.
    fn die(&self, seen: DeathCause) {
        let phase = self.link.state().phase.clone();
        if phase == Phase::Stopping || self.link.state().death.is_some() {
            return;
        }
        let exit = {
            let mut qemu = self.qemu();
            // A closed connection means QEMU is exiting: give it a moment, so
            // that the cause names the exit.
            let grace = match seen {
                DeathCause::Connection(_) => EXIT_GRACE,
                _ => Duration::ZERO,
            };
            let exit = qemu.wait_for_exit(grace);
            // A hung guest would burn a CPU for nothing.
            qemu.kill();
            exit
        };
        let console = read_console(&self.console_log);
        let logs = VmLogs::new(self.qemu().stderr(), &console);
        let cause = DeathCause::told(exit.map(|status| status.to_string()), &console, seen);
        let death = Arc::new(VmDeath { cause, logs });
        let was_ready = self.link.update(|state| {
            state.death = Some(Arc::clone(&death));
            state.phase == Phase::Ready
        });
        // A cancelled run's VMs die by design: nothing to tell.
        if was_ready && !cancel::cancelled() {
            self.reporter.report(&Event::VmDied {
                vm: self.vm,
                shape: Arc::clone(&self.shape),
                death,
            });
        }
    }
}
