//! What differs between the architectures vmtest runs guests of: QEMU's
//! binary and machine, the console, what the guest kernel is told, where
//! the host's libraries live. A guest is of the host's architecture
//! ([`Arch::HOST`]); each choice is a function of the architecture, so that
//! every one is tested whatever the host.

/// A guest architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    /// The host's, which guests are.
    pub const HOST: Arch = if cfg!(target_arch = "aarch64") {
        Arch::Aarch64
    } else {
        Arch::X86_64
    };

    /// Every architecture vmtest knows.
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    /// The architecture named `name` (`uname -m`'s or Debian's name).
    pub fn from_name(name: &str) -> Option<Arch> {
        match name {
            "x86_64" | "amd64" => Some(Arch::X86_64),
            "aarch64" | "arm64" => Some(Arch::Aarch64),
            _ => None,
        }
    }

    /// As Rust (`std::env::consts::ARCH`) and `uname -m` name it.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// The QEMU that emulates or virtualizes it.
    pub fn qemu_binary(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86_64",
            Arch::Aarch64 => "qemu-system-aarch64",
        }
    }

    /// The Debian and Ubuntu package of its QEMU.
    pub fn qemu_package(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86",
            Arch::Aarch64 => "qemu-system-arm",
        }
    }

    /// The variable naming a static build of the `vmtest` command for
    /// guests of this architecture, when it is not the host's.
    pub fn guest_build_var(self) -> &'static str {
        match self {
            Arch::X86_64 => "VMTEST_GUEST_X86_64",
            Arch::Aarch64 => "VMTEST_GUEST_AARCH64",
        }
    }

    /// The ELF `e_machine` of its binaries.
    pub(crate) fn elf_machine(self) -> u16 {
        match self {
            Arch::X86_64 => object::elf::EM_X86_64,
            Arch::Aarch64 => object::elf::EM_AARCH64,
        }
    }

    /// QEMU's machine type: the PC, or the generic `virt` board (PCIe,
    /// so the same virtio-pci devices), whose interrupt controller is the
    /// best the host or emulation has.
    pub(crate) fn machine(self) -> &'static str {
        match self {
            Arch::X86_64 => "pc",
            Arch::Aarch64 => "virt,gic-version=max",
        }
    }

    /// The machine type's name, as `-machine help` lists it.
    pub(crate) fn machine_name(self) -> &'static str {
        self.machine().split(',').next().unwrap_or_default()
    }

    /// The serial console QEMU's `-serial` is, as the guest kernel names it.
    pub(crate) fn console(self) -> &'static str {
        match self {
            Arch::X86_64 => "ttyS0",
            Arch::Aarch64 => "ttyAMA0",
        }
    }

    /// What the guest kernel is told for this architecture only.
    pub(crate) fn kernel_args(self) -> &'static [&'static str] {
        match self {
            // On QEMU's `pc` machine the kernel runs the ACPI `_PRT` method,
            // an emulated loop, once per PCI device: about 150 ms each under
            // TCG. Our devices use MSI-X and the serial port a fixed ISA IRQ,
            // so ACPI interrupt routing is not needed. And the kernel checks
            // that the IO-APIC timer ticks within a few milliseconds; a QEMU
            // waiting for a CPU on a loaded host (eight test runs on two
            // cores) misses that window and the kernel panics.
            Arch::X86_64 => &["acpi=noirq", "no_timer_check"],
            Arch::Aarch64 => &[],
        }
    }

    /// Whether its machine boots disk images with a BIOS (else through UEFI).
    pub(crate) fn has_bios(self) -> bool {
        self == Arch::X86_64
    }

    /// Where Debian's `ovmf` (`qemu-efi-aarch64`) and other distributions
    /// put its UEFI firmware.
    pub(crate) fn uefi_firmware(self) -> &'static [&'static str] {
        match self {
            Arch::X86_64 => &[
                "/usr/share/ovmf/OVMF.fd",
                "/usr/share/OVMF/OVMF.fd",
                "/usr/share/qemu/OVMF.fd",
                "/usr/share/OVMF/OVMF_CODE.fd",
                "/usr/share/edk2/ovmf/OVMF_CODE.fd",
            ],
            Arch::Aarch64 => &[
                "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd",
                "/usr/share/AAVMF/AAVMF_CODE.fd",
                "/usr/share/edk2/aarch64/QEMU_EFI.fd",
            ],
        }
    }

    /// The Debian and Ubuntu package of its UEFI firmware.
    pub fn uefi_package(self) -> &'static str {
        match self {
            Arch::X86_64 => "ovmf",
            Arch::Aarch64 => "qemu-efi-aarch64",
        }
    }

    /// Where the host's dynamic libraries may be, for the host's loader in
    /// a guest whose root is not the host's.
    pub(crate) fn library_dirs(self) -> [&'static str; 6] {
        let (lib, usr_lib) = match self {
            Arch::X86_64 => ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"),
            Arch::Aarch64 => ("/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu"),
        };
        [lib, usr_lib, "/lib64", "/usr/lib64", "/lib", "/usr/lib"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_is_what_rust_was_built_for() {
        assert_eq!(Arch::HOST.name(), std::env::consts::ARCH);
    }

    #[test]
    fn each_architecture_has_its_qemu_machine_and_console() {
        assert_eq!(Arch::X86_64.qemu_binary(), "qemu-system-x86_64");
        assert_eq!(Arch::Aarch64.qemu_binary(), "qemu-system-aarch64");
        assert_eq!(Arch::X86_64.qemu_package(), "qemu-system-x86");
        assert_eq!(Arch::Aarch64.qemu_package(), "qemu-system-arm");
        assert_eq!(Arch::X86_64.machine(), "pc");
        assert_eq!(Arch::X86_64.machine_name(), "pc");
        assert_eq!(Arch::Aarch64.machine_name(), "virt");
        assert_eq!(Arch::X86_64.console(), "ttyS0");
        assert_eq!(Arch::Aarch64.console(), "ttyAMA0");
        // ACPI interrupt routing and the IO-APIC timer check are the PC's.
        assert!(Arch::X86_64.kernel_args().contains(&"acpi=noirq"));
        assert!(Arch::Aarch64.kernel_args().is_empty());
        assert_eq!(Arch::Aarch64.library_dirs()[0], "/lib/aarch64-linux-gnu");
        assert!(Arch::X86_64.has_bios() && !Arch::Aarch64.has_bios());
        assert!(Arch::X86_64.uefi_firmware()[0].contains("OVMF"));
        assert!(Arch::Aarch64.uefi_firmware()[0].contains("aarch64"));
        assert_eq!(Arch::X86_64.uefi_package(), "ovmf");
        assert_eq!(Arch::Aarch64.uefi_package(), "qemu-efi-aarch64");
        for arch in Arch::ALL {
            assert_eq!(Arch::from_name(arch.name()), Some(arch));
        }
        assert_eq!(Arch::from_name("arm64"), Some(Arch::Aarch64));
        assert_eq!(Arch::from_name("riscv64"), None);
    }
}
