//! How sizes and durations are written wherever vmtest reads them: the
//! `#[vmtest]` attribute, `vmtest.toml` and the command line. One syntax,
//! read one way (exactly: `1.5G` is 1536 MiB, never a rounded float).
//!
//! - Memory: a number and a binary unit, `K`/`KiB`, `M`/`MiB`, `G`/`GiB` or
//!   `T`/`TiB` (`512M`, `1.5G`, `2GiB`); a number alone is MiB, as QEMU's
//!   `-m` reads it (`4096`). A whole number of MiB, at least
//!   [`MIN_MEMORY_MIB`].
//! - Durations: a number and `ms`, `s`, `m` or `h` (`500ms`, `90s`, `1.5m`);
//!   a number alone is seconds. More than zero, at most [`MAX_DURATION`].
//! - vCPUs: from 1 to [`MAX_CPUS`].

use std::time::Duration;

/// Guests smaller than this do not boot a stock distribution kernel.
pub const MIN_MEMORY_MIB: u32 = 64;
/// The most vCPUs a VM may have (QEMU's `pc` machine without x2APIC;
/// danobi/vmtest reads `num_cpus` as a byte).
pub const MAX_CPUS: u32 = 255;
/// The longest duration taken: a week.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// A size or duration that cannot be read, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnitError(String);

/// Guest memory as written (see the module's doc), in MiB.
pub fn memory_mib(text: &str) -> Result<u32, UnitError> {
    const MIB: u128 = 1 << 20;
    let fail = |why: String| Err(UnitError(why));
    let (number, unit) = split_unit(text);
    let factor = match unit {
        "K" | "KiB" => 1 << 10,
        "" | "M" | "MiB" => MIB,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        _ if number.is_empty() => {
            return fail(format!(
                r#"memory {text:?} is not a size such as "512M", "1G" or "4096""#
            ))
        }
        _ => {
            return fail(format!(
                "unknown memory unit `{unit}` in {text:?}: use M, G (or MiB, GiB, K, T), or none for MiB"
            ))
        }
    };
    let bytes = match scale(number, factor) {
        Ok(bytes) if bytes % MIB == 0 => bytes,
        Ok(_) | Err(ScaleError::NotWhole) => {
            return fail(format!("memory {text:?} is not a whole number of MiB"))
        }
        Err(ScaleError::Malformed) => {
            return fail(format!(
                r#"memory {text:?} is not a size such as "512M", "1G" or "4096""#
            ))
        }
        Err(ScaleError::TooLarge) => return fail(format!("memory {text:?} is too large")),
    };
    let mib = u32::try_from(bytes / MIB)
        .map_err(|_| UnitError(format!("memory {text:?} is too large")))?;
    if mib < MIN_MEMORY_MIB {
        return fail(format!(
            r#"memory {text:?} is too small: give at least "{MIN_MEMORY_MIB}M""#
        ));
    }
    Ok(mib)
}

/// A duration as written (see the module's doc).
pub fn duration(text: &str) -> Result<Duration, UnitError> {
    let fail = |why: String| Err(UnitError(why));
    let (number, unit) = split_unit(text);
    let factor: u128 = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ if number.is_empty() => {
            return fail(format!(
                r#"{text:?} is not a duration such as "500ms", "90s", "2m" or "1h""#
            ))
        }
        _ => {
            return fail(format!(
                "unknown unit `{unit}` in {text:?}: use ms, s, m or h"
            ))
        }
    };
    let ms = match scale(number, factor) {
        Ok(ms) => ms,
        Err(ScaleError::Malformed) => {
            return fail(format!(
                r#"{text:?} is not a duration such as "500ms", "90s", "2m" or "1h""#
            ))
        }
        Err(ScaleError::NotWhole) => {
            return fail(format!("{text:?} is not a whole number of milliseconds"))
        }
        Err(ScaleError::TooLarge) => return fail(format!("{text:?} is longer than a week")),
    };
    let duration = Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX));
    if duration.is_zero() {
        return fail(format!(
            r#"{text:?} is zero: give a positive duration such as "30s""#
        ));
    }
    if duration > MAX_DURATION {
        return fail(format!("{text:?} is longer than a week"));
    }
    Ok(duration)
}

/// Why a decimal number times a unit is not usable.
#[derive(Debug, PartialEq)]
enum ScaleError {
    /// Not digits with at most one `.` between digits.
    Malformed,
    /// The product has a fractional part.
    NotWhole,
    /// The product does not fit.
    TooLarge,
}

/// `number * factor` for a decimal `number` such as `"2"` or `"1.5"`,
/// computed exactly.
fn scale(number: &str, factor: u128) -> Result<u128, ScaleError> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let is_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !is_digits(whole) || (number.contains('.') && !is_digits(fraction)) {
        return Err(ScaleError::Malformed);
    }
    let mut mantissa: u128 = 0;
    let mut divisor: u128 = 1;
    for (index, digit) in whole.bytes().chain(fraction.bytes()).enumerate() {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(u128::from(digit - b'0')))
            .ok_or(ScaleError::TooLarge)?;
        if index >= whole.len() {
            divisor = divisor.checked_mul(10).ok_or(ScaleError::TooLarge)?;
        }
    }
    let product = mantissa.checked_mul(factor).ok_or(ScaleError::TooLarge)?;
    if product % divisor != 0 {
        return Err(ScaleError::NotWhole);
    }
    Ok(product / divisor)
}

/// Splits `"512M"` into `("512", "M")`.
fn split_unit(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    text.split_at(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_read_exactly_in_binary_units() {
        for (text, mib) in [
            ("512M", 512),
            ("1G", 1024),
            ("2048M", 2048),
            ("1536MiB", 1536),
            ("2GiB", 2048),
            ("1.5G", 1536),
            ("64M", 64),
            ("4096", 4096),
            ("65536K", 64),
            ("1T", 1 << 20),
            ("4096G", 4 << 20),
        ] {
            assert_eq!(memory_mib(text), Ok(mib), "{text}");
        }
    }

    #[test]
    fn bad_memory_says_why() {
        let error = |text: &str| memory_mib(text).unwrap_err().to_string();
        assert!(error("63M").contains("too small"), "{}", error("63M"));
        assert!(error("0G").contains("too small"));
        assert!(error("1GB").contains("unknown memory unit `GB`"));
        assert!(error("512 M").contains("unknown memory unit ` M`"));
        assert!(error("1.0001G").contains("whole number of MiB"));
        assert!(error("100.5M").contains("whole number of MiB"));
        assert!(error("1K").contains("whole number of MiB"));
        for malformed in ["", "M", "1.G", ".5G", "1.2.3G", "-1G", "lots"] {
            assert!(
                error(malformed).contains("is not a size"),
                "{malformed}: {}",
                error(malformed)
            );
        }
        assert!(error("4294967296M").contains("too large"));
        assert!(error("99999999999999999999999999999999999999999G").contains("too large"));
    }

    #[test]
    fn durations_are_read_exactly() {
        for (text, ms) in [
            ("500ms", 500),
            ("30s", 30_000),
            ("30", 30_000),
            ("2m", 120_000),
            ("1.5m", 90_000),
            ("1h", 3_600_000),
            ("1.5s", 1_500),
            ("0.001s", 1),
        ] {
            assert_eq!(duration(text), Ok(Duration::from_millis(ms)), "{text}");
        }
    }

    #[test]
    fn bad_durations_say_why() {
        let error = |text: &str| duration(text).unwrap_err().to_string();
        assert!(error("0s").contains("zero"));
        assert!(error("0ms").contains("zero"));
        assert!(
            error("30sec").contains("unknown unit `sec`"),
            "{}",
            error("30sec")
        );
        assert!(error("0.5ms").contains("whole number of milliseconds"));
        assert!(error("169h").contains("longer than a week"));
        assert!(error("99999999999999999999999999999999999999h").contains("longer than a week"));
        for malformed in ["", "s", "-1s", "soon", "1.s"] {
            assert!(
                error(malformed).contains("is not a duration"),
                "{malformed}: {}",
                error(malformed)
            );
        }
    }
}
