//! Runner mode, end to end: `vmtest --exec PROGRAM ARGS...` runs one argv,
//! untouched by any shell, in the current directory, with the caller's
//! environment, and exits as the program did; as cargo's target runner it
//! runs a crate's plain `#[test]`s in a guest.

mod support;

use std::path::Path;

use support::*;

#[test]
fn a_program_gets_its_arguments_environment_and_directory_as_they_are() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    for series in ["6.1", "6.12"] {
        let kernel = kernel(series);
        let run = vmtest_with(
            dir.path(),
            &[
                "-k",
                kernel.to_str().unwrap(),
                "--exec",
                "/bin/sh",
                "-c",
                r#"printf '[%s]' "$@"; echo; pwd; echo "$RUNNER_VAR"; exit 7"#,
                "sh",
                "two words",
                "--leading-dashes",
                "",
                "$HOME;*",
            ],
            &[("RUNNER_VAR", Path::new("from the host"))],
        );
        assert_eq!(run.code(), Some(7), "the program's exit code");
        assert_eq!(
            run.stdout,
            format!(
                "[two words][--leading-dashes][][$HOME;*]\n{}\nfrom the host\n",
                dir.path().display()
            )
        );
        run.assert_nothing_left();
    }
}

#[test]
fn a_program_killed_by_a_signal_exits_128_plus_it() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let kernel = kernel("6.12");
    let run = vmtest(
        dir.path(),
        &[
            "-k",
            kernel.to_str().unwrap(),
            "--exec",
            "/bin/sh",
            "-c",
            "kill -TERM $$",
        ],
    );
    assert_eq!(run.code(), Some(128 + 15));
    let run = vmtest(dir.path(), &["-k", kernel.to_str().unwrap(), "--exec"]);
    assert_eq!(run.code(), Some(64));
    assert!(
        run.stderr.contains("--exec needs a program"),
        "{}",
        run.stderr
    );
}

#[test]
fn as_cargos_runner_a_crates_plain_tests_run_in_the_guest() {
    let runner = format!(
        "{} -k {} --exec",
        env!("CARGO_BIN_EXE_vmtest"),
        kernel("6.12").display()
    );
    let stdout = cargo_test_with_runner("plain", PLAIN_TESTS, &host_triple(), &runner, &[], &[]);
    assert!(stdout.contains("test result: ok. 2 passed"), "{stdout}");
}

/// A crate's plain tests, asserting they run in a vmtest guest that sees
/// the crate at its host path.
const PLAIN_TESTS: &str = r#"
#[cfg(test)]
mod tests {
    /// Only vmtest's guests boot with this on the kernel's command line.
    #[test]
    fn runs_in_a_vmtest_guest() {
        let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap();
        assert!(cmdline.contains("rdinit=/init"), "{cmdline}");
    }

    #[test]
    fn sees_its_crate_at_its_host_path() {
        assert!(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml").is_file());
        assert_eq!(std::env::current_dir().unwrap(), std::path::Path::new(env!("CARGO_MANIFEST_DIR")));
    }
}
"#;
