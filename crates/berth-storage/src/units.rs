//! LXD's size and bit-rate units: `10MB`, `1MiB`, `100Mbit`, `512` (bytes).
//!
//! The same grammar as LXD's `ParseByteSizeString` and `ParseBitSizeString`: an unsigned
//! integer, then optionally one of the case-sensitive suffixes below, nothing else.

/// Byte suffixes and their multipliers.
const BYTE_UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("B", 1),
    ("kB", 1000),
    ("MB", 1000_u64.pow(2)),
    ("GB", 1000_u64.pow(3)),
    ("TB", 1000_u64.pow(4)),
    ("PB", 1000_u64.pow(5)),
    ("EB", 1000_u64.pow(6)),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("PiB", 1 << 50),
    ("EiB", 1 << 60),
];

/// Bit suffixes and their multipliers (in bits).
const BIT_UNITS: &[(&str, u64)] = &[
    ("bit", 1),
    ("kbit", 1000),
    ("Mbit", 1000_u64.pow(2)),
    ("Gbit", 1000_u64.pow(3)),
    ("Tbit", 1000_u64.pow(4)),
    ("Pbit", 1000_u64.pow(5)),
    ("Ebit", 1000_u64.pow(6)),
    ("Kibit", 1 << 10),
    ("Mibit", 1 << 20),
    ("Gibit", 1 << 30),
    ("Tibit", 1 << 40),
    ("Pibit", 1 << 50),
    ("Eibit", 1 << 60),
];

/// Parses a size (`10MB`) or a bit rate (`100Mbit`) into bytes, rounding bits down.
///
/// The error is a reason fit for [`crate::StorageError::InvalidValue`].
pub(crate) fn parse_bytes_or_bits(input: &str) -> Result<u64, &'static str> {
    let split = input
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(input.len());
    let (digits, suffix) = input.split_at(split);
    if digits.is_empty() {
        return Err("Expected a size or bit rate such as 10MB, 1MiB or 100Mbit");
    }
    let (multiplier, per_byte) = if let Some(&(_, m)) = BYTE_UNITS.iter().find(|u| u.0 == suffix) {
        (m, 1)
    } else if let Some(&(_, m)) = BIT_UNITS.iter().find(|u| u.0 == suffix) {
        (m, 8)
    } else {
        return Err("Unknown unit (use B, kB, MB, GB, KiB, MiB, GiB, kbit, Mbit, … )");
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .map(|n| n / per_byte)
        .ok_or("Too large")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_rates() {
        assert_eq!(parse_bytes_or_bits("0"), Ok(0));
        assert_eq!(parse_bytes_or_bits("512"), Ok(512));
        assert_eq!(parse_bytes_or_bits("512B"), Ok(512));
        assert_eq!(parse_bytes_or_bits("10MB"), Ok(10_000_000));
        assert_eq!(parse_bytes_or_bits("1MiB"), Ok(1 << 20));
        assert_eq!(parse_bytes_or_bits("2kB"), Ok(2000));
        assert_eq!(parse_bytes_or_bits("100Mbit"), Ok(12_500_000));
        assert_eq!(parse_bytes_or_bits("8Kibit"), Ok(1024));
        assert_eq!(parse_bytes_or_bits("15EiB"), Ok(15 << 60));
    }

    #[test]
    fn refusals() {
        for bad in [
            "", "abc", "MB", "-1", "+1", "1.5MB", "10mb", "10 MB", "10M", "10MBs", " 1",
        ] {
            assert!(parse_bytes_or_bits(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_bytes_or_bits("16EiB"), Err("Too large"));
        assert_eq!(
            parse_bytes_or_bits("99999999999999999999999"),
            Err("Too large")
        );
    }
}
