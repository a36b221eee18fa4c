//! QEMU: its command line, its process, and the two sockets that drive it
//! (QMP for control, the guest agent for running processes in the guest).

pub(crate) mod agent;
pub(crate) mod command;
pub(crate) mod monitor;
pub(crate) mod process;
mod wire;

pub(crate) use wire::WireError;
