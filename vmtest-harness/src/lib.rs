//! Run Rust tests inside QEMU guests booted from precisely chosen Linux kernels.
//!
//! Give the test target to vmtest in `Cargo.toml`:
//!
//! ```toml
//! [dev-dependencies]
//! vmtest-harness = "0.1"
//!
//! [[test]]
//! name = "kernels"
//! harness = false
//! ```
//!
//! and write tests as usual, with `#[vmtest]` instead of `#[test]`:
//!
//! ```no_run
//! use vmtest_harness::vmtest;
//!
//! #[vmtest(kernels = ["kernels/vmlinuz-6.1", "kernels/vmlinuz-6.12"])]
//! fn bpf_map_works() {
//!     // runs as root inside a guest booted from each kernel
//! }
//!
//! fn main() {
//!     vmtest_harness::main()
//! }
//! ```
//!
//! `cargo test` then lists, filters and reports the tests as libtest does,
//! boots one VM per distinct kernel, memory, vCPU count and kernel command
//! line, and runs each test inside its VM. The guest sees the host's `/`
//! read-only over 9p, so nothing is installed in it; [`SHARED_DIR_VAR`] names
//! the one host directory it may write to. See the README for the attribute's
//! arguments, the environment variables, and how kernels and their modules
//! are found.
//!
//! # Known limitations
//!
//! - Guests of the host's architecture (x86-64 or aarch64), QEMU installed on
//!   the host.
//! - The guest has its own `/tmp` and `/run`; of the host's `/tmp`, only the
//!   directories holding the test binary, the working directory and the
//!   shared directory are visible in it (read-only).
//! - [`main`] exits the process; it shuts every VM down first.
#![warn(missing_docs)]

mod guest;
mod harness;
mod registry;
mod reporter;
mod resolve;
mod run_pool;
mod runner;
mod signals;
mod trials;
mod vars;
mod version;

pub use harness::main;
pub use version::{kernel_version, KernelVersion};
pub use vmtest_engine::SHARED_DIR_VAR;
pub use vmtest_macros::vmtest;

/// Used by the code `#[vmtest]` expands to. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::registry::{ShouldPanic, TestReturn, VmTest};
    pub use inventory;
}
