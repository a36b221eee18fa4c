//! Tests that run inside VMs booted from the two Debian kernels that
//! `scripts/setup.sh` fetches, or from the kernels a CI matrix gives in
//! `VMTEST_KERNELS` (paths, URLs or directories). Each test with two kernels
//! becomes two tests, `name[vmlinuz-6.1]` and `name[vmlinuz-6.12]`, sharing
//! one VM per kernel.

use std::fs;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use vmtest_harness::vmtest;

#[vmtest(kernels = "${VMTEST_KERNELS:-../../kernels}")]
fn runs_on_the_requested_kernel() {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    println!("running on {}", release.trim());
    assert!(
        release.starts_with("6.1.") || release.starts_with("6.12."),
        "{release}"
    );
}

/// A BPF array map, created and used through the raw `bpf(2)` system call:
/// the kernel's answer, not a mock, on each kernel.
#[vmtest(kernels = "${VMTEST_KERNELS:-../../kernels}")]
fn a_bpf_array_map_stores_what_is_written() -> io::Result<()> {
    let map = create_array_map(4, 8, 16)?;
    for index in 0..16u32 {
        update(&map, index, u64::from(index) * 1000)?;
    }
    for index in 0..16u32 {
        assert_eq!(lookup(&map, index)?, u64::from(index) * 1000);
    }
    Ok(())
}

#[vmtest(kernel = "../../kernels/vmlinuz-6.12")]
fn the_guest_cannot_write_the_host_root() {
    let error = fs::write("/etc/vmtest-was-here", "x").unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::ReadOnlyFilesystem);
}

/// `union bpf_attr` is at most this large for the commands used here.
type BpfAttr = [u64; 16];

fn bpf(command: libc::c_long, attr: &mut BpfAttr) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, zero-padded `union bpf_attr` for `command`.
    let result = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            command,
            attr.as_mut_ptr(),
            std::mem::size_of::<BpfAttr>(),
        )
    };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_TYPE_ARRAY: u64 = 2;

fn create_array_map(key_size: u64, value_size: u64, max_entries: u64) -> io::Result<OwnedFd> {
    let mut attr: BpfAttr = [0; 16];
    // map_type, key_size | value_size, max_entries: u32 fields, packed.
    attr[0] = BPF_MAP_TYPE_ARRAY | key_size << 32;
    attr[1] = value_size | max_entries << 32;
    let fd = bpf(BPF_MAP_CREATE, &mut attr)?;
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The attribute for element commands; `value` is the address the kernel
/// reads the value from (update) or writes it to (lookup).
fn element_attr(map: &OwnedFd, key: &u32, value: u64) -> BpfAttr {
    use std::os::fd::AsRawFd;
    let mut attr: BpfAttr = [0; 16];
    attr[0] = map.as_raw_fd() as u64;
    attr[1] = key as *const u32 as u64;
    attr[2] = value;
    attr
}

fn update(map: &OwnedFd, key: u32, value: u64) -> io::Result<()> {
    let value_address = &value as *const u64 as u64;
    bpf(
        BPF_MAP_UPDATE_ELEM,
        &mut element_attr(map, &key, value_address),
    )
    .map(drop)
}

fn lookup(map: &OwnedFd, key: u32) -> io::Result<u64> {
    let mut value = 0u64;
    bpf(
        BPF_MAP_LOOKUP_ELEM,
        &mut element_attr(map, &key, &mut value as *mut u64 as u64),
    )?;
    Ok(value)
}

fn main() {
    vmtest_harness::main()
}
