//! Compiles each BPF program in src/bpf/ with clang and generates its Rust
//! skeleton (`$OUT_DIR/<name>.skel.rs`), which embeds the object file.

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const PROGRAMS: [&str; 2] = ["udp_check", "udp_echo"];

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // `-target bpf` drops the multiarch include directory, where Debian and
    // Ubuntu keep <asm/types.h>, which the uapi headers include.
    let multiarch = format!(
        "-I/usr/include/{}-linux-gnu",
        env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets CARGO_CFG_TARGET_ARCH")
    );
    for name in PROGRAMS {
        let source = format!("src/bpf/{name}.bpf.c");
        SkeletonBuilder::new()
            .source(&source)
            .clang_args([multiarch.as_str(), "-Wall", "-Werror"])
            .build_and_generate(out_dir.join(format!("{name}.skel.rs")))
            .unwrap_or_else(|error| panic!("building {source}: {error:#}"));
    }
    println!("cargo:rerun-if-changed=src/bpf");
}
