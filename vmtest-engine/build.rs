//! Compiles the guest init (`guest/init.rs`) into `$OUT_DIR/vmtest-init`,
//! which the harness embeds with `include_bytes!`.
//!
//! The init runs from the initramfs before the host root is mounted, where
//! there is no dynamic loader: it must be static. A std-only source built with
//! `+crt-static` against glibc's `libc.a` (package `libc6-dev`) is a
//! static-pie binary; no musl target is needed.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const SOURCE: &str = "guest/init.rs";
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
    let out =
        PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("vmtest-init");
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = env::var("TARGET").expect("cargo sets TARGET");

    let output = Command::new(&rustc)
        .args(FLAGS)
        .arg(format!("--target={target}"))
        .arg(SOURCE)
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
    let elf =
        std::fs::read(&out).unwrap_or_else(|err| fail(&format!("read {}: {err}", out.display())));
    if has_interpreter(&elf) {
        fail(&format!(
            "{} is dynamically linked; the guest init must be static",
            out.display()
        ));
    }
}

/// Fails the build with `message` (cargo shows the build script's stderr).
fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}

/// Whether a 64-bit little-endian ELF has a PT_INTERP program header (needs a
/// dynamic loader). Other formats are left to the boot to reject.
fn has_interpreter(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |at: usize| {
        elf.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u32_at = |at: usize| {
        elf.get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    };
    let u64_at = |at: usize| {
        elf.get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    if elf.get(..6) != Some(b"\x7fELF\x02\x01") {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    (0..phnum).any(|i| u32_at(phoff as usize + i * phentsize) == Some(PT_INTERP))
}
