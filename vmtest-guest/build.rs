//! Compiles the guest init (`init/init.rs`) into `$OUT_DIR/vmtest-init`,
//! which the crate embeds with `include_bytes!` ([`INIT`]).
//!
//! The init runs from the initramfs before the host root is mounted, where
//! there is no dynamic loader: it must be static. A std-only source built with
//! `+crt-static` against glibc's `libc.a` (package `libc6-dev`) is a
//! static-pie binary; no musl target is needed. The boot contract it shares
//! with the host (`vmtest_contract::boot`) is written beside it, as the
//! contract crate gives its source.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const SOURCE: &str = "init/init.rs";
/// `+crt-static` makes a static-pie binary; `panic=abort` because nothing
/// could unwind usefully in PID 1 (its panic hook powers off).
const FLAGS: &[&str] = &[
    "--edition=2021",
    "--crate-name=vmtest_init",
    "--crate-type=bin",
    "-O",
    "-Cpanic=abort",
    "-Cstrip=symbols",
    "-Ctarget-feature=+crt-static",
];

fn main() {
    println!("cargo:rerun-if-changed={SOURCE}");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let source = out_dir.join("init.rs");
    let init = std::fs::read_to_string(SOURCE)
        .unwrap_or_else(|err| fail(&format!("read {SOURCE}: {err}")));
    let contract = out_dir.join("boot_contract.rs");
    for (path, text) in [
        (&source, init.as_str()),
        (&contract, vmtest_contract::BOOT_SOURCE),
    ] {
        std::fs::write(path, text)
            .unwrap_or_else(|err| fail(&format!("write {}: {err}", path.display())));
    }
    let out = out_dir.join("vmtest-init");
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = env::var("TARGET").expect("cargo sets TARGET");

    let mut command = Command::new(&rustc);
    command.args(FLAGS).arg(format!("--target={target}"));
    // Cross builds: the linker cargo was told of for the target.
    if let Some(linker) = env::var_os("RUSTC_LINKER") {
        let mut flag = std::ffi::OsString::from("-Clinker=");
        flag.push(linker);
        command.arg(flag);
    }
    let output = command
        .arg(&source)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap_or_else(|err| {
            fail(&format!(
                "cannot run {}: {err}",
                Path::new(&rustc).display()
            ))
        });
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint = if stderr.contains("-lc") || stderr.contains("libc.a") {
            "\nhint: the guest init links statically against glibc's libc.a: \
             install libc6-dev (Debian, Ubuntu) or glibc-static (Fedora)"
        } else {
            ""
        };
        fail(&format!(
            "compiling the guest init ({SOURCE}) failed:\n{stderr}{hint}"
        ));
    }
}

/// Fails the build with `message` (cargo shows the build script's stderr).
fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}
