//! A run: the pool of VMs by shape, disk-image jobs, and the [`Engine`]
//! that front doors drive.

pub(crate) mod engine;
pub(crate) mod error;
pub(crate) mod image;
pub(crate) mod pool;
