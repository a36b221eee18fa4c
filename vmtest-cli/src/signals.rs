//! What Ctrl-C, SIGTERM and SIGHUP do to `vmtest` (see
//! [`vmtest_frontdoor::signals`]): the first gives the terminal back if a
//! shell had it and stops every VM at once ([`vmtest_engine::cancel`]), so
//! the targets still running fail as cancelled and the others do not start;
//! a second one ends vmtest at once.

use vmtest_frontdoor::signals::{self, Interrupted};

use crate::shell;

/// Starts watching for the signals.
pub fn watch() -> Interrupted {
    signals::watch(
        |_| {
            shell::restore_terminal();
            let vms = vmtest_engine::cancel();
            eprintln!("vmtest: interrupted; {vms} VM(s) stopped");
        },
        shell::restore_terminal,
    )
}
