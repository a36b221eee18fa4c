//! The contract between the host side and the guest side of one test run:
//! the environment the host sets for the guest process, and the verdict line
//! the guest process prints last.

/// Set by the host: the path of the test the guest process must run.
pub(crate) const GUEST_TEST_VAR: &str = "VMTEST_GUEST_TEST";
/// Set by the host: the directory the guest process must work in (the host's
/// working directory, seen through the read-only root).
pub(crate) const GUEST_CWD_VAR: &str = "VMTEST_GUEST_CWD";
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
