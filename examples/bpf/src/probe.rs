//! What the running kernel's BPF supports, found out at run time.

use libbpf_rs::btf::types::Func;
use libbpf_rs::btf::Btf;

/// The kfuncs behind open-coded numeric iterators (`bpf_for`), Linux 6.4+.
const ITER_NUM_KFUNCS: [&str; 3] = [
    "bpf_iter_num_new",
    "bpf_iter_num_next",
    "bpf_iter_num_destroy",
];

/// Whether the kernel has the open-coded numeric iterator kfuncs.
///
/// A kfunc exists exactly when the kernel's BTF (`/sys/kernel/btf/vmlinux`)
/// describes it, so reading the BTF answers without loading any program,
/// and without mistaking a bug in the fast path for a missing feature.
pub fn has_open_coded_iterators() -> libbpf_rs::Result<bool> {
    let vmlinux = Btf::from_vmlinux()?;
    Ok(ITER_NUM_KFUNCS
        .iter()
        .all(|name| vmlinux.type_by_name::<Func<'_>>(name).is_some()))
}
