//! What makes every guest fresh, restored or booted: the boot line carries
//! the host's clock and new entropy, which the init sets and reseeds the
//! kernel's random pool with.

use vmtest_contract::boot::BootParams;

/// Bytes of the host's entropy each guest's random pool gets.
const SEED_BYTES: usize = 32;

/// The line that starts the guest: `params`, with the host's time and
/// fresh entropy, and its newline.
pub(super) fn boot_line(params: &BootParams) -> Vec<u8> {
    let clock_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        });
    let mut seed = vec![0u8; SEED_BYTES];
    // getrandom(2) never returns less than 256 bytes once the host's pool
    // is ready; the guest gets what the host has.
    let filled =
        rustix::rand::getrandom(&mut seed, rustix::rand::GetRandomFlags::empty()).unwrap_or(0);
    seed.truncate(filled);
    let params = BootParams {
        clock_ns,
        seed,
        ..params.clone()
    };
    let mut line = params.encode().into_bytes();
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_has_the_clock_and_its_own_seed() {
        let params = BootParams {
            server: vmtest_contract::boot::ServerCommand {
                program: "/bin/true".into(),
                cwd: "/".into(),
                ..Default::default()
            },
            ..Default::default()
        };
        let lines = [boot_line(&params), boot_line(&params)];
        let decoded: Vec<BootParams> = lines
            .iter()
            .map(|line| BootParams::decode(std::str::from_utf8(line).unwrap()).unwrap())
            .collect();
        assert!(lines.iter().all(|line| line.ends_with(b"\n")));
        assert_eq!(decoded[0].seed.len(), SEED_BYTES);
        assert_ne!(decoded[0].seed, decoded[1].seed);
        assert!(decoded[0].clock_ns > 1_700_000_000_000_000_000);
    }
}
