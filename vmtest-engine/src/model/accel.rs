//! Choosing between KVM and TCG.
//!
//! `/dev/kvm` existing is no proof that KVM works: some hosts serve it with
//! `kvm_pvm` on a CPU without `vmx`/`svm`, where a normal guest kernel is
//! emulated one instruction at a time and never comes up (danobi/vmtest
//! assumed working KVM whenever `/dev/kvm` existed). We ask for hardware
//! virtualization flags as well as an openable `/dev/kvm`.

use std::fs::OpenOptions;

/// The accelerator QEMU runs the guest with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Accel {
    Kvm,
    Tcg,
}

/// The choice and the reason for it, said once per run.
#[derive(Debug, Clone)]
pub struct AccelChoice {
    pub accel: Accel,
    pub reason: String,
}

impl Accel {
    /// `kvm` or `tcg`.
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    /// The `-accel` argument. TCG runs all vCPUs on one host thread: with
    /// multi-threaded TCG, a guest kernel patching its own text (static keys,
    /// alternatives) on one vCPU while another runs it now and then oopses on
    /// a stale `int3` during boot (seen with Debian 6.12 and two vCPUs).
    pub(crate) fn qemu_accel(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg,thread=single",
        }
    }

    /// `host` passes the real CPU through; under TCG `max` emulates every
    /// feature QEMU knows, so kernels find what they look for.
    pub(crate) fn cpu_model(self) -> &'static str {
        match self {
            Accel::Kvm => "host",
            Accel::Tcg => "max",
        }
    }
}

/// The user's choice (`VMTEST_ACCEL`).
pub(crate) fn forced(accel: Accel) -> AccelChoice {
    AccelChoice {
        accel,
        reason: format!("forced by VMTEST_ACCEL={}", accel.name()),
    }
}

/// The probe's choice for this host.
pub(crate) fn probe_host() -> AccelChoice {
    probe(
        &std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default(),
        kvm_openable(),
    )
}

fn kvm_openable() -> bool {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

fn probe(cpuinfo: &str, kvm_openable: bool) -> AccelChoice {
    let hardware_virtualization = cpuinfo
        .lines()
        .filter(|line| line.starts_with("flags"))
        .flat_map(|line| line.split_whitespace())
        .any(|flag| flag == "vmx" || flag == "svm");
    let (accel, reason) = match (hardware_virtualization, kvm_openable) {
        (true, true) => (
            Accel::Kvm,
            "hardware virtualization and /dev/kvm are available",
        ),
        (true, false) => (Accel::Tcg, "/dev/kvm cannot be opened"),
        (false, true) => (
            Accel::Tcg,
            "/dev/kvm exists but the CPU has no vmx/svm flag, so guests would crawl",
        ),
        (false, false) => (Accel::Tcg, "no hardware virtualization"),
    };
    AccelChoice {
        accel,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WITH_VMX: &str = "processor\t: 0\nflags\t\t: fpu vme vmx sse2\n";
    const WITHOUT: &str = "processor\t: 0\nflags\t\t: fpu vme hypervisor sse2\n";

    #[test]
    fn kvm_needs_both_the_cpu_flag_and_the_device() {
        assert_eq!(probe(WITH_VMX, true).accel, Accel::Kvm);
        assert_eq!(probe(WITH_VMX, false).accel, Accel::Tcg);
        assert_eq!(probe(WITHOUT, false).accel, Accel::Tcg);
    }

    #[test]
    fn a_kvm_device_without_hardware_support_is_not_trusted() {
        let choice = probe(WITHOUT, true);
        assert_eq!(choice.accel, Accel::Tcg);
        assert!(choice.reason.contains("no vmx/svm"), "{}", choice.reason);
    }

    #[test]
    fn svm_counts_like_vmx() {
        assert_eq!(probe("flags : svm\n", true).accel, Accel::Kvm);
    }
}
