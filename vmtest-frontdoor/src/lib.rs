//! What vmtest's two front doors share, and the engine must not do: the
//! process's signals ([`signals`]). The engine offers `cancel()`; a front
//! door decides when to call it.

pub mod signals;
