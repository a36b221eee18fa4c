//! What Ctrl-C, SIGTERM and SIGHUP do to a test run (see
//! [`vmtest_frontdoor::signals`]): the first stops every VM at once
//! ([`vmtest_engine::cancel`]), so the running tests fail as cancelled and
//! the others do not start; a second one ends the process at once.

use vmtest_frontdoor::signals::{self, Interrupted};

/// Starts watching for the signals.
pub(crate) fn watch() -> Interrupted {
    signals::watch(
        |_| {
            let vms = vmtest_engine::cancel();
            eprintln!("vmtest: interrupted; {vms} VM(s) stopped (once more to exit at once)");
        },
        || {},
    )
}
