//! The guest side of the engine: the test server.
//!
//! The guest init starts the front door's own binary (the test binary, or the
//! `vmtest` command) with [`SERVER_VAR`](crate::contract::boot::SERVER_VAR)
//! set; its `main` calls [`serve_if_requested`] first, which turns the
//! process into the server: it reads requests on the control port, runs each
//! job in a child of its own (forked without exec for a test, exec'd for a
//! command), streams the job's output, watches the kernel's log, and reports
//! how each job ended.

mod cgroup;
mod fd;
mod job;
mod kmsg;
mod server;

use crate::contract::boot::SERVER_VAR;
use crate::contract::messages::Verdict;

/// Runs the test with the given path in the current process (a child forked
/// from the server) and says how it went.
pub type TestRunner = fn(&str) -> Verdict;

/// If the guest init started this process as the test server, serves jobs
/// until the host hangs up, then exits; otherwise returns at once.
///
/// `tests` runs the `#[vmtest]`s the host asks for by name; without it,
/// such requests fail (the `vmtest` command runs only programs).
pub fn serve_if_requested(tests: Option<TestRunner>) {
    if std::env::var_os(SERVER_VAR).is_some() {
        // The server is single-threaded here (nothing has started a thread
        // before `main` called us), so changing the environment is sound.
        std::env::remove_var(SERVER_VAR);
        server::serve(tests)
    }
}
