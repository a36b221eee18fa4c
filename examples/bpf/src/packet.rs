//! Ethernet II / IPv4 / UDP frames: built as the programs' input, parsed from
//! their output.

use std::net::Ipv4Addr;

use crate::checksum;

pub const ETH_HEADER_LEN: usize = 14;
const IPV4_HEADER_LEN: usize = 20;
const UDP_HEADER_LEN: usize = 8;

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// One end of a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    pub port: u16,
}

/// A UDP datagram in an IPv4 packet (no options) in an Ethernet frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpFrame {
    pub src: Endpoint,
    pub dst: Endpoint,
    pub ttl: u8,
    pub payload: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    Truncated,
    NotUdpOverIpv4,
    BadIpChecksum,
    BadUdpChecksum,
}

impl UdpFrame {
    /// The frame's bytes, both checksums filled in.
    pub fn to_bytes(&self) -> Vec<u8> {
        let udp_len = UDP_HEADER_LEN + self.payload.len();
        let ip_len = IPV4_HEADER_LEN + udp_len;
        let mut frame = Vec::with_capacity(ETH_HEADER_LEN + ip_len);
        frame.extend_from_slice(&self.dst.mac);
        frame.extend_from_slice(&self.src.mac);
        frame.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        // Version 4, 5 words of header; DSCP/ECN 0; total length.
        frame.extend_from_slice(&[0x45, 0]);
        frame.extend_from_slice(&(ip_len as u16).to_be_bytes());
        // Identification 0; Don't Fragment; TTL; protocol; checksum, set below.
        frame.extend_from_slice(&[0, 0, 0x40, 0, self.ttl, IPPROTO_UDP, 0, 0]);
        frame.extend_from_slice(&self.src.ip.octets());
        frame.extend_from_slice(&self.dst.ip.octets());
        frame.extend_from_slice(&self.src.port.to_be_bytes());
        frame.extend_from_slice(&self.dst.port.to_be_bytes());
        frame.extend_from_slice(&(udp_len as u16).to_be_bytes());
        frame.extend_from_slice(&[0, 0]); // checksum, set below
        frame.extend_from_slice(&self.payload);

        let ip = ETH_HEADER_LEN..ETH_HEADER_LEN + IPV4_HEADER_LEN;
        let ip_checksum = checksum::checksum(&frame[ip.clone()]);
        frame[ip.start + 10..ip.start + 12].copy_from_slice(&ip_checksum.to_be_bytes());
        // 0 means "no checksum" in UDP: a computed 0 is sent as ffff, its other form.
        let udp_checksum = match !udp_sum(&frame).expect("a frame just built") {
            0 => 0xffff,
            sum => sum,
        };
        frame[ip.end + 6..ip.end + 8].copy_from_slice(&udp_checksum.to_be_bytes());
        frame
    }

    /// Parses a frame, checking both checksums (a UDP checksum of 0 means none).
    pub fn parse(frame: &[u8]) -> Result<Self, ParseError> {
        let (ip, udp) = locate(frame)?;
        if checksum::fold(checksum::add(0, ip)) != 0xffff {
            return Err(ParseError::BadIpChecksum);
        }
        if udp[6..8] != [0, 0] && udp_sum(frame)? != 0xffff {
            return Err(ParseError::BadUdpChecksum);
        }
        let endpoint = |mac: &[u8], ip: &[u8], port: &[u8]| Endpoint {
            mac: mac.try_into().expect("6 bytes"),
            ip: Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]),
            port: u16::from_be_bytes([port[0], port[1]]),
        };
        Ok(Self {
            src: endpoint(&frame[6..12], &ip[12..16], &udp[0..2]),
            dst: endpoint(&frame[0..6], &ip[16..20], &udp[2..4]),
            ttl: ip[8],
            payload: udp[UDP_HEADER_LEN..].to_vec(),
        })
    }
}

/// The folded ones' complement sum over a UDP frame's pseudo-header and
/// datagram, checksum field included: ffff if the checksum is right.
pub fn udp_sum(frame: &[u8]) -> Result<u16, ParseError> {
    let (ip, udp) = locate(frame)?;
    let mut pseudo_header = [0; 12];
    pseudo_header[..8].copy_from_slice(&ip[12..20]); // source and destination
    pseudo_header[9] = IPPROTO_UDP;
    pseudo_header[10..].copy_from_slice(&(udp.len() as u16).to_be_bytes());
    Ok(checksum::fold(checksum::add(
        checksum::add(0, &pseudo_header),
        udp,
    )))
}

/// The IPv4 header and the UDP datagram (as long as its header says) of a frame.
fn locate(frame: &[u8]) -> Result<(&[u8], &[u8]), ParseError> {
    let packet = frame.get(ETH_HEADER_LEN..).ok_or(ParseError::Truncated)?;
    if frame[12..14] != ETHERTYPE_IPV4.to_be_bytes() {
        return Err(ParseError::NotUdpOverIpv4);
    }
    let (ip, rest) = packet
        .split_at_checked(IPV4_HEADER_LEN)
        .ok_or(ParseError::Truncated)?;
    // Version 4 and no options (5 words of header), UDP.
    if ip[0] != 0x45 || ip[9] != IPPROTO_UDP {
        return Err(ParseError::NotUdpOverIpv4);
    }
    let udp_len = match rest {
        [_, _, _, _, high, low, ..] => usize::from(u16::from_be_bytes([*high, *low])),
        _ => return Err(ParseError::Truncated),
    };
    match rest.get(..udp_len) {
        Some(udp) if udp_len >= UDP_HEADER_LEN => Ok((ip, udp)),
        _ => Err(ParseError::Truncated),
    }
}

/// Makes the frame claim another ethertype (ARP, say).
pub fn set_ethertype(frame: &mut [u8], ethertype: u16) {
    frame[12..14].copy_from_slice(&ethertype.to_be_bytes());
}

/// Makes the IPv4 packet claim another protocol (TCP, say); keeps its header
/// checksum right.
pub fn set_ip_protocol(frame: &mut [u8], protocol: u8) {
    let ip = &mut frame[ETH_HEADER_LEN..ETH_HEADER_LEN + IPV4_HEADER_LEN];
    ip[9] = protocol;
    ip[10..12].fill(0);
    let header_checksum = checksum::checksum(ip);
    ip[10..12].copy_from_slice(&header_checksum.to_be_bytes());
}

/// Zeroes the UDP checksum: "the sender computed none", allowed over IPv4.
pub fn clear_udp_checksum(frame: &mut [u8]) {
    let check = ETH_HEADER_LEN + IPV4_HEADER_LEN + 6;
    frame[check..check + 2].fill(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> UdpFrame {
        UdpFrame {
            src: Endpoint {
                mac: [2, 0, 0, 0, 0, 1],
                ip: Ipv4Addr::new(10, 0, 0, 1),
                port: 1234,
            },
            dst: Endpoint {
                mac: [2, 0, 0, 0, 0, 2],
                ip: Ipv4Addr::new(10, 0, 0, 2),
                port: 7,
            },
            ttl: 5,
            payload: payload.to_vec(),
        }
    }

    #[test]
    fn builds_the_expected_bytes() {
        let bytes = frame(b"hi").to_bytes();
        assert_eq!(bytes.len(), 14 + 20 + 8 + 2);
        assert_eq!(bytes[12..14], [0x08, 0x00]);
        assert_eq!(bytes[16..18], 30u16.to_be_bytes(), "IPv4 total length");
        assert_eq!(bytes[38..40], 10u16.to_be_bytes(), "UDP length");
        // Worked out by hand: pseudo-header 0a00+0001+0a00+0002+0011+000a,
        // header 04d2+0007+000a, payload 6869: sum 816a, checksum 7e95.
        assert_eq!(bytes[40..42], [0x7e, 0x95]);
        assert_eq!(udp_sum(&bytes), Ok(0xffff));
    }

    #[test]
    fn parses_what_it_builds() {
        for len in [0, 1, 2, 7, 100, 1472] {
            let sent = frame(&vec![0xa5; len]);
            assert_eq!(UdpFrame::parse(&sent.to_bytes()), Ok(sent));
        }
    }

    #[test]
    fn a_flipped_payload_byte_breaks_the_udp_checksum() {
        let mut bytes = frame(b"hello").to_bytes();
        *bytes.last_mut().unwrap() ^= 0x20;
        assert_ne!(udp_sum(&bytes), Ok(0xffff));
        assert_eq!(UdpFrame::parse(&bytes), Err(ParseError::BadUdpChecksum));
    }

    #[test]
    fn a_changed_ttl_breaks_the_ip_checksum() {
        let mut bytes = frame(b"hello").to_bytes();
        bytes[22] = 64;
        assert_eq!(UdpFrame::parse(&bytes), Err(ParseError::BadIpChecksum));
    }

    #[test]
    fn a_cleared_udp_checksum_is_accepted() {
        let sent = frame(b"hello");
        let mut bytes = sent.to_bytes();
        clear_udp_checksum(&mut bytes);
        assert_eq!(UdpFrame::parse(&bytes), Ok(sent));
    }

    #[test]
    fn other_protocols_are_not_udp() {
        let mut arp = frame(b"").to_bytes();
        set_ethertype(&mut arp, ETHERTYPE_ARP);
        assert_eq!(UdpFrame::parse(&arp), Err(ParseError::NotUdpOverIpv4));

        let mut tcp = frame(b"").to_bytes();
        set_ip_protocol(&mut tcp, IPPROTO_TCP);
        assert_eq!(tcp[23], IPPROTO_TCP);
        assert_eq!(checksum::fold(checksum::add(0, &tcp[14..34])), 0xffff);
        assert_eq!(UdpFrame::parse(&tcp), Err(ParseError::NotUdpOverIpv4));
    }

    #[test]
    fn short_frames_are_truncated() {
        let bytes = frame(b"hello").to_bytes();
        for len in [0, 10, 14, 30, 38, bytes.len() - 1] {
            assert_eq!(
                UdpFrame::parse(&bytes[..len]),
                Err(ParseError::Truncated),
                "{len}"
            );
        }
    }
}
