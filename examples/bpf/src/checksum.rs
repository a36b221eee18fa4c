//! The Internet checksum (RFC 1071), as IPv4 and UDP use it.

/// Adds `data` to `sum` as big-endian 16-bit words, an odd last byte padded
/// with a zero byte. Start from 0; fold with [`fold`].
pub fn add(sum: u64, data: &[u8]) -> u64 {
    let mut words = data.chunks_exact(2);
    let mut sum = words.by_ref().fold(sum, |sum, word| {
        sum + u64::from(u16::from_be_bytes([word[0], word[1]]))
    });
    if let [last] = words.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

/// Folds the carries back in: the 16-bit ones' complement sum.
pub fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The checksum of `data` with its checksum field zeroed: what goes in that field.
pub fn checksum(data: &[u8]) -> u16 {
    !fold(add(0, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_1071_example() {
        // RFC 1071, section 3: the sum of these bytes is ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(add(0, &data)), 0xddf2);
        assert_eq!(checksum(&data), 0x220d);
    }

    #[test]
    fn ipv4_header_checksum() {
        let mut header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&header), 0xb861);
        // With the checksum in place, the header sums to all ones.
        header[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(fold(add(0, &header)), 0xffff);
    }

    #[test]
    fn odd_length_pads_the_last_byte() {
        assert_eq!(add(0, &[0xab]), 0xab00);
        assert_eq!(add(0, &[0x12, 0x34, 0xab]), 0x1234 + 0xab00);
    }

    #[test]
    fn carries_wrap_around() {
        assert_eq!(fold(add(0, &[0xff, 0xff, 0x00, 0x02])), 0x0002);
        assert_eq!(fold(0xffff_ffff), 0xffff);
    }

    #[test]
    fn sums_chain_over_even_length_pieces() {
        let data: Vec<u8> = (0..=255).collect();
        assert_eq!(add(add(0, &data[..100]), &data[100..]), add(0, &data));
    }
}
