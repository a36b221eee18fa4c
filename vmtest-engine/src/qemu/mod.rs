//! QEMU: its command line, its process, QMP (the socket that controls it),
//! and the guest agent of disk images. (Jobs reach a guest we booted over
//! its control port: `crate::vm`.)

pub(crate) mod agent;
pub(crate) mod command;
#[cfg(test)]
pub(crate) mod fake_qmp;
pub(crate) mod monitor;
pub(crate) mod process;
pub(crate) mod shell;
pub(crate) mod wire;
