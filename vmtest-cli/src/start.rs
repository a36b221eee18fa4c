//! Starting the engine for the command, with what a failure to start
//! exits with.

use std::sync::Arc;

use vmtest_engine::{chain, Engine, GuestServer, Reporter, SetupError};

use crate::exit_codes;

/// Starts the engine, with `reporter` hearing its events.
pub fn engine(reporter: Arc<dyn Reporter>) -> Result<Engine, (i32, String)> {
    let server = GuestServer::this_process().map_err(|error| {
        (
            exit_codes::UNAVAILABLE,
            format!("cannot tell which binary this is: {error}"),
        )
    })?;
    Engine::new(server, reporter).map_err(|error| {
        let code = match error {
            SetupError::Settings(_) => exit_codes::USAGE,
            _ => exit_codes::UNAVAILABLE,
        };
        (code, chain(&error))
    })
}
