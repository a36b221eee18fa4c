//! A QMP peer for unit tests: greets, answers each command as told, and
//! returns the commands it was sent once the client hangs up.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::thread::JoinHandle;

/// Listens on `socket`; `answer` gives the JSON line answering each
/// command, by name.
pub(crate) fn serve(
    socket: &Path,
    mut answer: impl FnMut(&str) -> String + Send + 'static,
) -> JoinHandle<Vec<String>> {
    let listener = UnixListener::bind(socket).unwrap();
    std::thread::spawn(move || {
        let (peer, _) = listener.accept().unwrap();
        let mut writer = peer.try_clone().unwrap();
        writer
            .write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n")
            .unwrap();
        let mut commands = Vec::new();
        for line in BufReader::new(peer).lines() {
            let Ok(line) = line else { break };
            let request: serde_json::Value = serde_json::from_str(&line).unwrap();
            let command = request["execute"].as_str().unwrap().to_string();
            let reply = answer(&command);
            commands.push(command);
            writer.write_all(format!("{reply}\n").as_bytes()).unwrap();
        }
        commands
    })
}

/// The answer to a command that worked.
pub(crate) const DONE: &str = r#"{"return": {}}"#;
