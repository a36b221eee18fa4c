//! What users compile: kernels by URL are behind the default `download`
//! feature, which the harness and the command forward to the engine; without
//! it no HTTP client or TLS stack is built. (That a URL kernel then names the
//! feature is a unit test of the engine's fetch, run by CI with
//! `--no-default-features`.)

use std::process::Command;

/// The packages `package` depends on when built as a dependency, with or
/// without its default features.
fn normal_dependencies(package: &str, default_features: bool) -> Vec<String> {
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .args([
            "tree",
            "--edges",
            "normal",
            "--prefix",
            "none",
            "--package",
            package,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if !default_features {
        cargo.arg("--no-default-features");
    }
    let output = cargo.output().expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("cargo tree prints UTF-8")
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

const DOWNLOAD_STACK: &[&str] = &["ureq", "rustls", "rustls-webpki", "webpki-roots"];

fn download_stack_in(dependencies: &[String]) -> Vec<&'static str> {
    DOWNLOAD_STACK
        .iter()
        .copied()
        .filter(|name| dependencies.iter().any(|dependency| dependency == name))
        .collect()
}

#[test]
fn default_features_download_kernels() {
    for package in ["vmtest-harness", "vmtest-cli"] {
        let found = download_stack_in(&normal_dependencies(package, true));
        assert_eq!(found, DOWNLOAD_STACK, "{package} with its default features");
    }
}

#[test]
fn without_default_features_no_tls_stack_is_built() {
    for package in ["vmtest-harness", "vmtest-cli"] {
        let found = download_stack_in(&normal_dependencies(package, false));
        assert!(
            found.is_empty(),
            "{package} without default features still builds {found:?}"
        );
    }
}
