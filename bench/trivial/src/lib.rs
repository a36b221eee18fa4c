//! Nothing here: see tests/trivial.rs.
