//! What a saved guest depends on beyond its command line and its files,
//! for the snapshot's name: a cache that travels (CI systems keep `target/`
//! from one runner to the next) must never restore a guest on a host that
//! differs where the guest would notice.
//!
//! - QEMU's version, and the machine type `pc` stands for in it: a newer
//!   QEMU may lay the same machine out differently.
//! - Under KVM, the host CPU: its vendor, model and feature flags. A guest
//!   kernel reads them once, at boot, and goes on using what it found; a
//!   guest restored on a CPU without them would crash or worse. (Under TCG
//!   the guest's CPU is QEMU's `max` model, the same on every host.)
//!
//! Asking QEMU costs two processes (about 40 ms); the answer is kept in
//! the cache under the binary's identity, so only a new QEMU pays again.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::host::cache;
use crate::model::accel::Accel;
use crate::model::arch::Arch;

/// The host's part of a snapshot's name: QEMU `binary` (resolved), run
/// with `accel`, with what it says kept in `cache_dir`.
pub(crate) fn identity(binary: &Path, arch: Arch, accel: Accel, cache_dir: &Path) -> String {
    let mut identity = qemu_identity(binary, arch, cache_dir);
    if accel == Accel::Kvm {
        identity.push_str(&cpu_identity(
            &std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default(),
        ));
    }
    identity
}

/// QEMU's version line and the machine `arch`'s machine type is an alias of.
fn qemu_identity(binary: &Path, arch: Arch, cache_dir: &Path) -> String {
    let Ok(metadata) = std::fs::metadata(binary) else {
        return "qemu: missing\n".into();
    };
    let mut digest = Sha256::new();
    digest.update(binary.as_os_str().as_encoded_bytes());
    digest.update(cache::file_identity(&metadata));
    let name = cache::entry_name(&digest.finalize());
    let dir = cache_dir.join("qemu");
    if let Ok(known) = std::fs::read_to_string(dir.join(&name)) {
        cache::mark_used(&dir.join(&name));
        return known;
    }
    // A new QEMU: what older ones said goes in time.
    cache::prune(&dir, |_| true, cache::RECORDS);
    let said = |args: &[&str]| {
        Command::new(binary)
            .args(args)
            .output()
            .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
            .unwrap_or_default()
    };
    let identity = describe(arch, &said(&["--version"]), &said(&["-machine", "help"]));
    // Unkept, it is only asked again.
    let _ = cache::store(&dir, &name, |file| file.write_all(identity.as_bytes()));
    identity
}

/// `version: …` and `machine: …` lines from what QEMU printed: the
/// versioned machine that `arch`'s machine type is an alias of.
fn describe(arch: Arch, version: &str, machines: &str) -> String {
    let version = version.lines().next().unwrap_or("unknown").trim();
    let name = arch.machine_name();
    let machine = machines
        .lines()
        .find(|line| line.split_whitespace().next() == Some(name))
        .and_then(|line| line.split("alias of ").nth(1))
        .map_or(name, |alias| alias.trim_end_matches(')').trim());
    format!("version: {version}\nmachine: {machine}\n")
}

/// The first CPU's vendor, family, model, stepping, model name and flags,
/// as `/proc/cpuinfo` gives them.
fn cpu_identity(cpuinfo: &str) -> String {
    const FIELDS: [&str; 6] = [
        "vendor_id",
        "cpu family",
        "model",
        "model name",
        "stepping",
        "flags",
    ];
    let mut identity = String::new();
    for line in cpuinfo.lines().take_while(|line| !line.trim().is_empty()) {
        if let Some((key, value)) = line.split_once(':') {
            if FIELDS.contains(&key.trim()) {
                identity.push_str(&format!("cpu {}: {}\n", key.trim(), value.trim()));
            }
        }
    }
    identity
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::process;

    const CPUINFO: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\n\
        model\t\t: 85\nmodel name\t: Intel(R) Xeon(R) Gold 6148\nstepping\t: 4\n\
        microcode\t: 0x2006e05\ncpu MHz\t\t: 2394.374\nflags\t\t: fpu vme avx512f vmx\n\n\
        processor\t: 1\nvendor_id\t: GenuineIntel\n";

    #[test]
    fn the_cpu_is_its_model_and_features_not_its_speed() {
        let identity = cpu_identity(CPUINFO);
        assert_eq!(
            identity,
            "cpu vendor_id: GenuineIntel\ncpu cpu family: 6\ncpu model: 85\n\
             cpu model name: Intel(R) Xeon(R) Gold 6148\ncpu stepping: 4\n\
             cpu flags: fpu vme avx512f vmx\n"
        );
        let slower = CPUINFO.replace("2394.374", "1200.000");
        assert_eq!(cpu_identity(&slower), identity);
        let fewer = CPUINFO.replace(" avx512f", "");
        assert_ne!(cpu_identity(&fewer), identity);
        let other = CPUINFO.replace("model\t\t: 85", "model\t\t: 106");
        assert_ne!(cpu_identity(&other), identity);
    }

    #[test]
    fn qemu_is_its_version_and_machine_type() {
        let version = "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7)\nCopyright\n";
        let machines = "Supported machines are:\nmicrovm  microvm (i386)\n\
            pc  Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-7.2)\n\
            pc-i440fx-7.2  Standard PC (i440FX + PIIX, 1996) (default)\n";
        assert_eq!(
            describe(Arch::X86_64, version, machines),
            "version: QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7)\n\
             machine: pc-i440fx-7.2\n"
        );
        let machines = "Supported machines are:\n\
            virt-7.2  QEMU 7.2 ARM Virtual Machine\n\
            virt  QEMU 7.2 ARM Virtual Machine (alias of virt-7.2)\n";
        assert!(describe(Arch::Aarch64, version, machines).ends_with("machine: virt-7.2\n"));
    }

    #[test]
    fn the_real_qemu_is_asked_once() {
        let cache = tempfile::tempdir().unwrap();
        let qemu = process::resolve(Path::new(Arch::HOST.qemu_binary()));
        assert!(
            qemu.is_file(),
            "QEMU is not installed: run scripts/setup.sh"
        );
        let first = identity(&qemu, Arch::HOST, Accel::Tcg, cache.path());
        assert!(first.contains("machine: pc-"), "{first}");
        assert_eq!(
            std::fs::read_dir(cache.path().join("qemu"))
                .unwrap()
                .count(),
            1
        );
        assert_eq!(identity(&qemu, Arch::HOST, Accel::Tcg, cache.path()), first);
        let kvm = identity(&qemu, Arch::HOST, Accel::Kvm, cache.path());
        assert!(
            kvm.starts_with(&first) && kvm.contains("cpu flags: "),
            "{kvm}"
        );
    }
}
