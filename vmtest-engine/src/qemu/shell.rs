//! Shell words, for the commands QEMU runs by `/bin/sh -c` (a migration's
//! `exec:`) and the scripts a disk image's guest agent runs. Both travel
//! in JSON, which carries text only: bytes that are not UTF-8 cannot be
//! sent, and the callers say so.

/// `text` as one shell word: single-quoted, its quotes escaped.
pub(crate) fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_survive_a_real_shell() {
        for word in ["plain", "it's here", "a 'b' $c `d` \\e", ""] {
            let output = std::process::Command::new("sh")
                .args(["-c", &format!("printf %s {}", quoted(word))])
                .output()
                .unwrap();
            assert_eq!(output.stdout, word.as_bytes());
        }
        assert_eq!(quoted("/c/it's here"), r"'/c/it'\''s here'");
    }
}
