//! BPF programs written in C, built by clang through `libbpf-cargo`, loaded
//! with `libbpf-rs`, and tested with `BPF_PROG_RUN` inside VMs booted from each
//! kernel they support (tests/kernels.rs).
//!
//! - [`udp_check`]: a socket filter that drops UDP datagrams with a wrong
//!   checksum, in two versions: one for kernels whose verifier accepts
//!   open-coded iterators (Linux 6.4+), one for older kernels. [`probe`] picks.
//! - [`udp_echo`]: an XDP program that counts datagrams per port in a map,
//!   drops those to blocked ports and echoes those to the echo port.
//! - [`checksum`], [`packet`]: plain user-space code to build the frames the
//!   programs get and to check what they give back, unit-tested on the host.

pub mod checksum;
pub mod packet;
pub mod probe;
pub mod udp_check;
pub mod udp_echo;
