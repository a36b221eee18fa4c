//! Loads the UDP checksum filter (src/bpf/udp_check.bpf.c) with the loop the
//! kernel supports, and runs it on frames with `BPF_PROG_RUN`.

use std::mem::MaybeUninit;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{OpenObject, ProgramInput};

use crate::probe;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/udp_check.skel.rs"));
}
use skel::{UdpCheckSkel, UdpCheckSkelBuilder};

/// How the program loops over the datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loop {
    /// `bpf_for`: open-coded iterator kfuncs, Linux 6.4+ (`check_iter`).
    OpenCodedIterator,
    /// The `bpf_loop` helper, Linux 5.17+ (`check_loop`).
    BpfLoop,
}

impl Loop {
    /// The loop to use on the running kernel: the iterator where there is one.
    pub fn best_supported() -> libbpf_rs::Result<Self> {
        Ok(if probe::has_open_coded_iterators()? {
            Self::OpenCodedIterator
        } else {
            Self::BpfLoop
        })
    }
}

/// What one run of the filter gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The program's return value: the bytes of the packet to keep, from the
    /// IP header on (a socket filter sees no Ethernet header); 0 drops it.
    pub kept: u32,
    /// The folded sum over pseudo-header and datagram (ffff: checksum right),
    /// or 0 where the program computed none.
    pub sum: u16,
}

/// The filter, loaded with one of its two loops.
pub struct UdpCheck<'obj> {
    skel: UdpCheckSkel<'obj>,
    with: Loop,
}

impl<'obj> UdpCheck<'obj> {
    /// Loads the program that uses `with`: fails if the kernel's verifier
    /// rejects it. `object` holds libbpf's object while the filter lives.
    pub fn load(object: &'obj mut MaybeUninit<OpenObject>, with: Loop) -> libbpf_rs::Result<Self> {
        let mut open = UdpCheckSkelBuilder::default().open(object)?;
        // Both programs are in the object; the kernel only sees the one loaded.
        open.progs
            .check_iter
            .set_autoload(with == Loop::OpenCodedIterator);
        open.progs.check_loop.set_autoload(with == Loop::BpfLoop);
        Ok(Self {
            skel: open.load()?,
            with,
        })
    }

    /// Runs the filter once on an Ethernet frame.
    pub fn run(&self, frame: &[u8]) -> libbpf_rs::Result<Outcome> {
        let program = match self.with {
            Loop::OpenCodedIterator => &self.skel.progs.check_iter,
            Loop::BpfLoop => &self.skel.progs.check_loop,
        };
        let input = ProgramInput {
            data_in: Some(frame),
            ..Default::default()
        };
        let output = program.test_run(input)?;
        let globals = self.skel.maps.bss_data.as_deref();
        Ok(Outcome {
            kept: output.return_value,
            sum: globals.expect("udp_check.bpf.c has globals").last_sum,
        })
    }
}
