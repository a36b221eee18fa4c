//! What vmtest's two front doors share, and the engine must not do: the
//! process's signals ([`signals`]: the engine offers `cancel()`, a front
//! door decides when to call it), and how its events read on a terminal
//! ([`notes`]: the engine never prints).

pub mod notes;
pub mod signals;
