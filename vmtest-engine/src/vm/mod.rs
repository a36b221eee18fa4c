//! One VM's life: boot to a ready test server ([`machine`]), run jobs in it
//! ([`jobs`]), notice at once when it dies ([`reader`]), shut it down.

pub(crate) mod coverage;
pub(crate) mod error;
mod fresh;
mod guest;
pub(crate) mod jobs;
pub(crate) mod layout;
mod link;
mod liveness;
pub(crate) mod machine;
mod reader;
pub(crate) mod spec;
