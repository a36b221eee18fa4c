//! The vocabulary every layer passes around: jobs and the VM shapes they
//! need, outcomes, events, deaths and their logs, kernel splats, the
//! accelerator, the architecture. It imports nothing of the engine.

pub mod accel;
pub mod arch;
pub mod death;
pub mod events;
pub mod job;
pub mod outcome;
pub mod shape;
pub mod splat;
