//! Run Rust tests inside QEMU guests booted from precisely chosen Linux kernels.
#![warn(missing_docs)]

mod accel;
mod boot;
mod cleanup;
mod control;
mod guest;
mod harness;
mod initramfs;
mod kernel;
mod plan;
mod pool;
mod protocol;
mod qemu;
mod registry;
mod runner;
mod settings;
mod shape;
mod vm;

pub use harness::main;
pub use protocol::SHARED_DIR_VAR;
pub use vmtest_macros::vmtest;

/// Used by the code `#[vmtest]` expands to. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::registry::{ShouldPanic, TestReturn, VmTest};
    pub use inventory;
}
