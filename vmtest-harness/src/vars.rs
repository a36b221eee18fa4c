//! `${VAR}` in paths written in `#[vmtest]`, expanded when the tests run;
//! `${VAR:-default}` when the variable is unset or empty, as in the shell.

/// Why a written path cannot be expanded.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub(crate) enum VarError {
    #[error("{what} {written:?} uses ${{{var}}}, which is not set or is empty")]
    Unset {
        what: &'static str,
        written: String,
        var: String,
    },
    #[error("{what} {written:?} has an unterminated ${{")]
    Unterminated { what: &'static str, written: String },
}

/// Replaces each `${VAR}` in `written` with its value from `env`, and each
/// `${VAR:-default}` with its value or, unset or empty, with `default`;
/// `what` names the path in errors.
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
        let (var, default) = match after[..end].split_once(":-") {
            Some((var, default)) => (var, Some(default)),
            None => (&after[..end], None),
        };
        let value = match (env(var).filter(|value| !value.is_empty()), default) {
            (Some(value), _) => value,
            (None, Some(default)) => default.to_string(),
            (None, None) => {
                return Err(VarError::Unset {
                    what,
                    written: written.to_string(),
                    var: var.to_string(),
                })
            }
        };
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
            "kernel image \"${NOPE}/k\" uses ${NOPE}, which is not set or is empty"
        );
        assert_eq!(
            expand("kernels", "${NOPE:-../k} ${KERNELS:-x}/a", &env).unwrap(),
            "../k /opt/kernels/a"
        );
        assert!(matches!(
            expand("kernel image", "${KERNELS", &env),
            Err(VarError::Unterminated { .. })
        ));
    }
}
