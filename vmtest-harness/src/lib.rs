//! Run Rust tests inside QEMU guests booted from precisely chosen Linux kernels.
#![warn(missing_docs)]

mod registry;

pub use vmtest_macros::vmtest;

/// Used by the code `#[vmtest]` expands to. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::registry::{ShouldPanic, TestReturn, VmTest};
    pub use inventory;
}
