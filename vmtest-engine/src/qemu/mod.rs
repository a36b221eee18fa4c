//! QEMU: its command line, its process, QMP (the socket that controls it),
//! and the guest agent of disk images. (Jobs reach a guest we booted over
//! the control port, `crate::vm::link`.)

pub(crate) mod agent;
pub(crate) mod command;
pub(crate) mod monitor;
pub(crate) mod process;
mod wire;

pub(crate) use wire::WireError;
