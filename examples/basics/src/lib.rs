//! Example crate: see tests/kernels.rs.
