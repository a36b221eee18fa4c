//! One pool of VMs per nextest run. nextest runs every test in a process of
//! its own; without this, each would start (restore) a VM of its own. The
//! first test process of a run to need VMs starts the pool (this binary
//! again, in the background), and every test process of the run asks it to
//! run its test in one of its ready VMs, as `cargo test` runs tests in
//! shared VMs. The pool ends a few seconds after nextest does, or after it
//! has had nothing to do for [`daemon::IDLE_EXIT`]; its socket is in the
//! user's private cache, named after the run and this binary.

mod client;
mod daemon;
mod place;
mod wire;

pub(crate) use client::RunPool;
pub(crate) use daemon::serve_if_requested;
