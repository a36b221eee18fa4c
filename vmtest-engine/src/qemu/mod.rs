//! QEMU: its command line, its process, and QMP, the socket that controls
//! it. (Jobs reach the guest over the control port, `crate::vm::link`.)

pub(crate) mod command;
pub(crate) mod monitor;
pub(crate) mod process;
mod wire;
