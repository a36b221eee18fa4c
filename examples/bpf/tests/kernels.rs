//! The BPF programs of this crate, run with `BPF_PROG_RUN` by each kernel
//! they support: Linux 6.1, whose verifier knows no open-coded iterators, and
//! Linux 6.12, whose does. Each test with two kernels becomes two tests,
//! `name[vmlinuz-6.1]` and `name[vmlinuz-6.12]`, sharing one VM per kernel.

use std::fs;
use std::mem::MaybeUninit;
use std::net::Ipv4Addr;

use vmtest_example_bpf::packet::{self, Endpoint, UdpFrame, ETH_HEADER_LEN};
use vmtest_example_bpf::probe;
use vmtest_example_bpf::udp_check::{Loop, Outcome, UdpCheck};
use vmtest_example_bpf::udp_echo::{UdpEcho, XdpAction};
use vmtest_harness::vmtest;

/// The guest's kernel release, and whether that kernel is known to have the
/// open-coded iterators (Linux 6.4+): what the probe must find.
fn kernel() -> (String, bool) {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let release = release.trim().to_owned();
    let has_iterators = if release.starts_with("6.1.") {
        false
    } else if release.starts_with("6.12.") {
        true
    } else {
        panic!("no expectation for kernel {release}")
    };
    (release, has_iterators)
}

#[vmtest(kernels = ["../../kernels/vmlinuz-6.1", "../../kernels/vmlinuz-6.12"])]
fn the_probe_knows_which_kernels_have_iterators() {
    let (release, expected) = kernel();
    let found = probe::has_open_coded_iterators().unwrap();
    assert_eq!(
        found,
        expected,
        "the probe says open-coded iterators are {}, but Linux {release} {} them",
        if found { "there" } else { "missing" },
        if expected { "has" } else { "lacks" },
    );
    let best = Loop::best_supported().unwrap();
    assert_eq!(best == Loop::OpenCodedIterator, expected, "{best:?}");
}

/// The probe reads BTF; here the verifier itself has the last word.
#[vmtest(kernels = ["../../kernels/vmlinuz-6.1", "../../kernels/vmlinuz-6.12"])]
fn the_iterator_version_loads_exactly_where_the_probe_allows() {
    let (release, _) = kernel();
    let supported = probe::has_open_coded_iterators().unwrap();
    let mut object = MaybeUninit::uninit();
    let loaded = UdpCheck::load(&mut object, Loop::OpenCodedIterator);
    assert_eq!(
        loaded.is_ok(),
        supported,
        "Linux {release}: probe says {supported}, loading gave {:?}",
        loaded.err()
    );
}

fn endpoints() -> (Endpoint, Endpoint) {
    let client = Endpoint {
        mac: [0x02, 0, 0, 0, 0, 0x01],
        ip: Ipv4Addr::new(192, 0, 2, 1),
        port: 40000,
    };
    let server = Endpoint {
        mac: [0x02, 0, 0, 0, 0, 0x02],
        ip: Ipv4Addr::new(192, 0, 2, 2),
        port: 7,
    };
    (client, server)
}

fn datagram(payload_len: usize, dst_port: u16) -> UdpFrame {
    let (src, mut dst) = endpoints();
    dst.port = dst_port;
    UdpFrame {
        src,
        dst,
        ttl: 17,
        // Varied bytes, so that misplaced or swapped words change the sum.
        payload: (0..payload_len).map(|i| (i * 7 + i / 256) as u8).collect(),
    }
}

/// A frame for the checksum filter, and what the filter must make of it.
struct Case {
    name: String,
    frame: Vec<u8>,
    expected: Outcome,
}

/// Valid datagrams of many lengths (odd lengths end in a padded byte), the
/// same corrupted, and frames the filter must keep without checking or drop.
fn checksum_cases() -> Vec<Case> {
    let keep_all = |frame: &[u8]| (frame.len() - ETH_HEADER_LEN) as u32;
    let mut cases = Vec::new();
    for len in [0, 1, 2, 3, 17, 64, 255, 1000, 1471, 1472] {
        let frame = datagram(len, 9).to_bytes();
        cases.push(Case {
            name: format!("valid, {len}-byte payload"),
            expected: Outcome {
                kept: keep_all(&frame),
                sum: 0xffff,
            },
            frame,
        });
        if len > 0 {
            let mut frame = datagram(len, 9).to_bytes();
            *frame.last_mut().unwrap() ^= 0x5a;
            cases.push(Case {
                name: format!("corrupted, {len}-byte payload"),
                expected: Outcome {
                    kept: 0,
                    sum: packet::udp_sum(&frame).unwrap(),
                },
                frame,
            });
        }
    }
    let mut unchecked = datagram(100, 9).to_bytes();
    packet::clear_udp_checksum(&mut unchecked);
    let mut tcp = datagram(100, 9).to_bytes();
    packet::set_ip_protocol(&mut tcp, packet::IPPROTO_TCP);
    let mut arp = datagram(28, 9).to_bytes();
    packet::set_ethertype(&mut arp, packet::ETHERTYPE_ARP);
    for (name, frame) in [("no UDP checksum", unchecked), ("TCP", tcp), ("ARP", arp)] {
        cases.push(Case {
            name: name.into(),
            expected: Outcome {
                kept: keep_all(&frame),
                sum: 0,
            },
            frame,
        });
    }
    // The UDP header claims 4 more bytes than the frame has.
    let mut truncated = datagram(100, 9).to_bytes();
    truncated.truncate(truncated.len() - 4);
    cases.push(Case {
        name: "truncated".into(),
        expected: Outcome { kept: 0, sum: 0 },
        frame: truncated,
    });
    cases
}

fn assert_checks_udp(with: Loop) {
    let mut object = MaybeUninit::uninit();
    let check = UdpCheck::load(&mut object, with).unwrap();
    for case in checksum_cases() {
        let outcome = check.run(&case.frame).unwrap();
        assert_eq!(outcome, case.expected, "{with:?}: {}", case.name);
    }
}

#[vmtest(kernels = ["../../kernels/vmlinuz-6.1", "../../kernels/vmlinuz-6.12"])]
fn the_best_supported_loop_checks_udp_checksums() {
    assert_checks_udp(Loop::best_supported().unwrap());
}

#[vmtest(kernels = ["../../kernels/vmlinuz-6.1", "../../kernels/vmlinuz-6.12"])]
fn the_bpf_loop_fallback_checks_udp_checksums() {
    assert_checks_udp(Loop::BpfLoop);
}

/// Where both versions load, they must agree on every frame, including
/// corrupted ones, whose sums tell any two different computations apart.
#[vmtest(kernel = "../../kernels/vmlinuz-6.12")]
fn iterator_and_fallback_agree() {
    let (mut iter_object, mut loop_object) = (MaybeUninit::uninit(), MaybeUninit::uninit());
    let iter = UdpCheck::load(&mut iter_object, Loop::OpenCodedIterator).unwrap();
    let fallback = UdpCheck::load(&mut loop_object, Loop::BpfLoop).unwrap();
    let (mut kept, mut dropped) = (0, 0);
    for len in 1..=300 {
        let mut frame = datagram(len, 9).to_bytes();
        if len % 3 == 0 {
            // Corrupt a third, in mid-payload (past 20 + 8 bytes of IPv4 and
            // UDP headers): any change to one byte changes the sum.
            frame[ETH_HEADER_LEN + 28 + len / 2] ^= len as u8 | 1;
        }
        let by_iter = iter.run(&frame).unwrap();
        assert_eq!(by_iter, fallback.run(&frame).unwrap(), "{len}-byte payload");
        if by_iter.kept > 0 {
            kept += 1;
        } else {
            dropped += 1;
        }
    }
    assert_eq!((kept, dropped), (200, 100));
}

const ECHO_PORT: u16 = 7;

#[vmtest(kernels = ["../../kernels/vmlinuz-6.1", "../../kernels/vmlinuz-6.12"])]
fn xdp_echoes_datagrams_to_the_echo_port() {
    let mut object = MaybeUninit::uninit();
    let echo = UdpEcho::load(&mut object, ECHO_PORT).unwrap();
    for len in [0, 1, 64, 1472] {
        let request = datagram(len, ECHO_PORT);
        let (action, frame_out) = echo.run(&request.to_bytes()).unwrap();
        assert_eq!(action, XdpAction::Tx, "{len}-byte payload");
        // Parsing checks both checksums, which the program had to keep right.
        let expected = UdpFrame {
            src: request.dst,
            dst: request.src,
            ttl: 64,
            payload: request.payload.clone(),
        };
        assert_eq!(
            UdpFrame::parse(&frame_out),
            Ok(expected),
            "{len}-byte payload"
        );
    }
}

#[vmtest(kernels = ["../../kernels/vmlinuz-6.1", "../../kernels/vmlinuz-6.12"])]
fn xdp_verdicts_follow_the_rules() {
    let mut object = MaybeUninit::uninit();
    let echo = UdpEcho::load(&mut object, ECHO_PORT).unwrap();
    echo.block(53).unwrap();

    let other_port = datagram(10, 9).to_bytes();
    let blocked = datagram(10, 53).to_bytes();
    let mut tcp = datagram(10, ECHO_PORT).to_bytes();
    packet::set_ip_protocol(&mut tcp, packet::IPPROTO_TCP);
    let mut arp = datagram(28, ECHO_PORT).to_bytes();
    packet::set_ethertype(&mut arp, packet::ETHERTYPE_ARP);
    let mut short_ip = datagram(10, ECHO_PORT).to_bytes();
    short_ip.truncate(ETH_HEADER_LEN + 19);
    let mut short_udp = datagram(10, ECHO_PORT).to_bytes();
    short_udp.truncate(ETH_HEADER_LEN + 20 + 7);

    for (name, frame, expected) in [
        ("UDP to another port", other_port, XdpAction::Pass),
        ("UDP to a blocked port", blocked, XdpAction::Drop),
        ("TCP", tcp, XdpAction::Pass),
        ("ARP", arp, XdpAction::Pass),
        ("short IPv4 header", short_ip, XdpAction::Drop),
        ("short UDP header", short_udp, XdpAction::Drop),
    ] {
        let (action, frame_out) = echo.run(&frame).unwrap();
        assert_eq!(action, expected, "{name}");
        assert_eq!(frame_out, frame, "{name}: only echoes are rewritten");
    }
}

#[vmtest(kernels = ["../../kernels/vmlinuz-6.1", "../../kernels/vmlinuz-6.12"])]
fn xdp_counts_datagrams_per_port_in_a_map() {
    let mut object = MaybeUninit::uninit();
    let echo = UdpEcho::load(&mut object, ECHO_PORT).unwrap();
    echo.block(53).unwrap();
    let sent = [(ECHO_PORT, 3), (53, 2), (9, 5), (443, 1)];
    for (port, count) in sent {
        for _ in 0..count {
            echo.run(&datagram(20, port).to_bytes()).unwrap();
        }
    }
    // Not UDP: not counted.
    let mut tcp = datagram(20, 9).to_bytes();
    packet::set_ip_protocol(&mut tcp, packet::IPPROTO_TCP);
    echo.run(&tcp).unwrap();

    for (port, count) in sent {
        assert_eq!(echo.packets_to(port).unwrap(), count, "port {port}");
    }
    assert_eq!(echo.packets_to(80).unwrap(), 0, "port 80");
}

fn main() {
    vmtest_harness::main()
}
