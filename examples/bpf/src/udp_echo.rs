//! Loads the XDP program (src/bpf/udp_echo.bpf.c), fills and reads its maps,
//! and runs it on frames with `BPF_PROG_RUN`.

use std::io;
use std::mem::MaybeUninit;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, OpenObject, ProgramInput};

mod skel {
    include!(concat!(env!("OUT_DIR"), "/udp_echo.skel.rs"));
}
use skel::{UdpEchoSkel, UdpEchoSkelBuilder};

/// An XDP program's verdict (`enum xdp_action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpAction {
    Aborted,
    Drop,
    Pass,
    Tx,
    Redirect,
}

impl XdpAction {
    pub fn from_raw(value: u32) -> Option<Self> {
        Some(match value {
            0 => Self::Aborted,
            1 => Self::Drop,
            2 => Self::Pass,
            3 => Self::Tx,
            4 => Self::Redirect,
            _ => return None,
        })
    }
}

/// The program, loaded.
pub struct UdpEcho<'obj> {
    skel: UdpEchoSkel<'obj>,
}

impl<'obj> UdpEcho<'obj> {
    /// Loads the program, echoing datagrams to `echo_port` (0: none).
    /// `object` holds libbpf's object while the program lives.
    pub fn load(
        object: &'obj mut MaybeUninit<OpenObject>,
        echo_port: u16,
    ) -> libbpf_rs::Result<Self> {
        let mut open = UdpEchoSkelBuilder::default().open(object)?;
        // A `const volatile` global: fixed at load time, so the verifier
        // knows its value.
        open.maps
            .rodata_data
            .as_deref_mut()
            .expect("udp_echo.bpf.c has read-only globals")
            .echo_port = echo_port;
        Ok(Self { skel: open.load()? })
    }

    /// Drops datagrams to `port` from now on.
    pub fn block(&self, port: u16) -> libbpf_rs::Result<()> {
        self.skel
            .maps
            .blocked_ports
            .update(&port.to_ne_bytes(), &[1], MapFlags::ANY)
    }

    /// How many datagrams to `port` the program has seen.
    pub fn packets_to(&self, port: u16) -> libbpf_rs::Result<u64> {
        let value = self
            .skel
            .maps
            .packets_per_port
            .lookup(&port.to_ne_bytes(), MapFlags::ANY)?;
        Ok(value.map_or(0, |bytes| {
            u64::from_ne_bytes(bytes.try_into().expect("8-byte values"))
        }))
    }

    /// Runs the program once on an Ethernet frame: its verdict and the frame
    /// as it left it.
    pub fn run(&self, frame: &[u8]) -> libbpf_rs::Result<(XdpAction, Vec<u8>)> {
        let mut frame_out = vec![0; frame.len()];
        let input = ProgramInput {
            data_in: Some(frame),
            data_out: Some(&mut frame_out),
            ..Default::default()
        };
        let output = self.skel.progs.udp_echo.test_run(input)?;
        let action = XdpAction::from_raw(output.return_value).ok_or_else(|| {
            let message = format!("XDP action {}", output.return_value);
            libbpf_rs::Error::from(io::Error::new(io::ErrorKind::InvalidData, message))
        })?;
        let len = output.data.map_or(0, |data| data.len());
        frame_out.truncate(len);
        Ok((action, frame_out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xdp_actions_match_the_kernel_uapi() {
        let actions = [
            XdpAction::Aborted,
            XdpAction::Drop,
            XdpAction::Pass,
            XdpAction::Tx,
            XdpAction::Redirect,
        ];
        for (value, action) in (0..).zip(actions) {
            assert_eq!(XdpAction::from_raw(value), Some(action));
        }
        assert_eq!(XdpAction::from_raw(5), None);
    }
}
