//! The host's own infrastructure, which every layer above uses: settings,
//! private directories and caches, leases on what a run makes, and
//! cancellation.

pub(crate) mod cache;
pub(crate) mod cancel;
pub(crate) mod lease;
pub(crate) mod private;
pub(crate) mod run_dir;
pub(crate) mod settings;
