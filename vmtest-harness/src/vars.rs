//! `${VAR}` in paths written in `#[vmtest]`, expanded when the tests run.

/// Why a written path cannot be expanded.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub(crate) enum VarError {
    #[error("{what} {written:?} uses ${{{var}}}, which is not set")]
    Unset {
        what: &'static str,
        written: String,
        var: String,
    },
    #[error("{what} {written:?} has an unterminated ${{")]
    Unterminated { what: &'static str, written: String },
}

/// Replaces each `${VAR}` in `written` with its value from `env`; `what`
/// names the path in errors.
pub(crate) fn expand(
    what: &'static str,
    written: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<String, VarError> {
    let mut expanded = String::new();
    let mut rest = written;
    while let Some(start) = rest.find("${") {
        expanded.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| VarError::Unterminated {
            what,
            written: written.to_string(),
        })?;
        let var = &after[..end];
        let value = env(var).ok_or_else(|| VarError::Unset {
            what,
            written: written.to_string(),
            var: var.to_string(),
        })?;
        expanded.push_str(&value);
        rest = &after[end + 1..];
    }
    expanded.push_str(rest);
    Ok(expanded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(var: &str) -> Option<String> {
        (var == "KERNELS").then(|| "/opt/kernels".into())
    }

    #[test]
    fn variables_expand_and_unset_ones_are_named() {
        assert_eq!(
            expand("kernel image", "${KERNELS}/vmlinuz-6.1", &env).unwrap(),
            "/opt/kernels/vmlinuz-6.1"
        );
        assert_eq!(
            expand("kernel image", "${NOPE}/k", &env)
                .unwrap_err()
                .to_string(),
            "kernel image \"${NOPE}/k\" uses ${NOPE}, which is not set"
        );
        assert!(matches!(
            expand("kernel image", "${KERNELS", &env),
            Err(VarError::Unterminated { .. })
        ));
    }
}
