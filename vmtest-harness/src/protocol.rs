//! The contract between the host side and the guest side: how the host
//! starts the test server in a guest, the messages they exchange over the
//! control port, and the verdict line each test's output ends with.

use serde::{Deserialize, Serialize};

/// Set by the host when it starts this binary in a guest: serve tests.
pub(crate) const GUEST_SERVER_VAR: &str = "VMTEST_GUEST_SERVER";
/// Set by the host: the directory the guest process must work in (the host's
/// working directory, seen through the read-only root).
pub(crate) const GUEST_CWD_VAR: &str = "VMTEST_GUEST_CWD";
/// The virtio-serial port the host and the test server talk over.
pub(crate) const CONTROL_PORT: &str = "org.vmtest.control.0";

/// From the host to the test server, one JSON object per line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub(crate) enum Request {
    /// Run the test with this path in a fresh child process.
    Run { id: u64, test: String },
    /// Kill the run's process group (its timeout has passed).
    Kill { id: u64 },
}

/// From the test server to the host, one JSON object per line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub(crate) enum Reply {
    /// The server is listening.
    Ready,
    /// A run ended: its exit code or the signal that killed it, and all it
    /// printed (stdout and stderr in one stream, as libtest captures them).
    Done {
        id: u64,
        code: Option<i32>,
        signal: Option<i32>,
        output: String,
    },
}
/// Given to tests: the host directory the guest may write to, at the same
/// path on both sides.
pub const SHARED_DIR_VAR: &str = "VMTEST_SHARED_DIR";

/// Starts the guest process's last stdout line. The character before the
/// text is an ASCII record separator, which test output is unlikely to hold.
const VERDICT_PREFIX: &str = "\u{1e}vmtest-verdict:";

/// What the guest process concluded about its test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Passed,
    Failed(String),
}

impl Verdict {
    /// The line the guest prints after the test's own output.
    pub(crate) fn to_line(&self) -> String {
        let json = match self {
            Verdict::Passed => serde_json::json!({ "passed": true }),
            Verdict::Failed(message) => serde_json::json!({ "passed": false, "message": message }),
        };
        format!("\n{VERDICT_PREFIX}{json}\n")
    }

    /// Splits the guest's stdout into the test's own output and the verdict,
    /// if the guest got as far as printing one.
    pub(crate) fn split_from(stdout: &str) -> (String, Option<Verdict>) {
        let Some(at) = stdout.rfind(VERDICT_PREFIX) else {
            return (stdout.to_string(), None);
        };
        let output = stdout[..at].strip_suffix('\n').unwrap_or(&stdout[..at]);
        let verdict =
            serde_json::from_str::<serde_json::Value>(stdout[at + VERDICT_PREFIX.len()..].trim())
                .ok()
                .and_then(|json| match json.get("passed")?.as_bool()? {
                    true => Some(Verdict::Passed),
                    false => Some(Verdict::Failed(json.get("message")?.as_str()?.to_string())),
                });
        (output.to_string(), verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_json_object_each() {
        let run = Request::Run {
            id: 7,
            test: "bpf::maps".into(),
        };
        let line = serde_json::to_string(&run).unwrap();
        assert_eq!(line, r#"{"request":"run","id":7,"test":"bpf::maps"}"#);
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), run);
        let done: Reply =
            serde_json::from_str(r#"{"reply":"done","id":7,"code":null,"signal":9,"output":"x"}"#)
                .unwrap();
        assert_eq!(
            done,
            Reply::Done {
                id: 7,
                code: None,
                signal: Some(9),
                output: "x".into()
            }
        );
    }

    #[test]
    fn verdicts_survive_the_round_trip_after_test_output() {
        for verdict in [
            Verdict::Passed,
            Verdict::Failed("assertion failed: `left == right`\n \"quoted\"".into()),
        ] {
            let stdout = format!("line one\nno newline at end{}", verdict.to_line());
            let (output, parsed) = Verdict::split_from(&stdout);
            assert_eq!(output, "line one\nno newline at end");
            assert_eq!(parsed, Some(verdict));
        }
    }

    #[test]
    fn output_without_a_verdict_is_kept_whole() {
        assert_eq!(
            Verdict::split_from("partial output"),
            ("partial output".to_string(), None)
        );
    }
}
