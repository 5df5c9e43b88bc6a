//! Fixed-point decimals: prices and sizes as `i64` counts of 10⁻⁸.
//!
//! Venue messages carry prices as decimal strings (`"64231.57"`). Going through `f64`
//! would turn `0.1` into `0.1000000000000000055…` and lose digits on large values, so
//! parsing and formatting work on the digits themselves. Eight decimal places cover
//! every crypto venue's tick size and every equity venue's; `i64` then holds values up
//! to ±92,233,720,368.

use thiserror::Error;

/// Number of decimal places in a fixed-point value.
pub const DECIMALS: u32 = 8;
/// `1.0` in fixed point.
pub const SCALE: i64 = 10i64.pow(DECIMALS);

/// Why a decimal string could not become a fixed-point value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FixedError {
    /// The string was empty, or only a sign or a point.
    #[error("empty decimal")]
    Empty,
    /// A character other than digits, one leading `-`/`+` and one `.`.
    #[error("invalid character in decimal")]
    InvalidChar,
    /// More than [`DECIMALS`] significant decimal places (trailing zeros are fine).
    #[error("more than {DECIMALS} decimal places")]
    TooPrecise,
    /// The value does not fit an `i64` of 10⁻⁸ units.
    #[error("decimal out of range")]
    Overflow,
}

/// Parses a decimal string such as `"-12.3400"` into units of 10⁻⁸.
///
/// Exponents are not accepted: no venue we normalize sends them for prices or sizes.
pub fn parse(s: &[u8]) -> Result<i64, FixedError> {
    let (negative, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mut int: i64 = 0;
    let mut frac: i64 = 0;
    let mut frac_digits = 0u32;
    let mut seen_point = false;
    let mut seen_digit = false;
    for &c in digits {
        match c {
            b'0'..=b'9' => {
                seen_digit = true;
                let d = i64::from(c - b'0');
                if seen_point {
                    if frac_digits == DECIMALS {
                        if d != 0 {
                            return Err(FixedError::TooPrecise);
                        }
                        continue;
                    }
                    frac = frac * 10 + d;
                    frac_digits += 1;
                } else {
                    int = int
                        .checked_mul(10)
                        .and_then(|v| v.checked_add(d))
                        .ok_or(FixedError::Overflow)?;
                }
            }
            b'.' if !seen_point => seen_point = true,
            _ => return Err(FixedError::InvalidChar),
        }
    }
    if !seen_digit {
        return Err(FixedError::Empty);
    }
    let frac = frac * 10i64.pow(DECIMALS - frac_digits);
    let value = int
        .checked_mul(SCALE)
        .and_then(|v| v.checked_add(frac))
        .ok_or(FixedError::Overflow)?;
    Ok(if negative { -value } else { value })
}

/// Appends the shortest exact decimal form of `value` (`150000000` → `"1.5"`).
pub fn write(value: i64, out: &mut Vec<u8>) {
    let mut buf = itoa::Buffer::new();
    if value < 0 {
        out.push(b'-');
    }
    let abs = value.unsigned_abs();
    let scale = SCALE as u64;
    out.extend_from_slice(buf.format(abs / scale).as_bytes());
    let mut frac = abs % scale;
    if frac != 0 {
        let mut digits = [b'0'; DECIMALS as usize];
        for slot in digits.iter_mut().rev() {
            *slot = b'0' + (frac % 10) as u8;
            frac /= 10;
        }
        let len = digits.iter().rposition(|&d| d != b'0').map_or(0, |i| i + 1);
        out.push(b'.');
        out.extend_from_slice(&digits[..len]);
    }
}

/// The decimal form of `value` as a `String`; for cold paths and tests.
pub fn to_string(value: i64) -> String {
    let mut out = Vec::with_capacity(24);
    write(value, &mut out);
    String::from_utf8(out).expect("fixed::write emits ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_table() {
        let cases: &[(&str, Result<i64, FixedError>)] = &[
            ("0", Ok(0)),
            ("1", Ok(SCALE)),
            ("1.5", Ok(150_000_000)),
            ("-1.5", Ok(-150_000_000)),
            ("+2", Ok(2 * SCALE)),
            ("64231.57000000", Ok(6_423_157_000_000)),
            ("0.00000001", Ok(1)),
            (".5", Ok(50_000_000)),
            ("5.", Ok(5 * SCALE)),
            ("0.123456789", Err(FixedError::TooPrecise)),
            ("0.123456780", Ok(12_345_678)),
            ("", Err(FixedError::Empty)),
            ("-", Err(FixedError::Empty)),
            (".", Err(FixedError::Empty)),
            ("1e5", Err(FixedError::InvalidChar)),
            ("1.2.3", Err(FixedError::InvalidChar)),
            (" 1", Err(FixedError::InvalidChar)),
            ("92233720368", Ok(92_233_720_368 * SCALE)),
            ("92233720369", Err(FixedError::Overflow)),
            ("99999999999999999999999", Err(FixedError::Overflow)),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input.as_bytes()), *want, "input {input:?}");
        }
    }

    #[test]
    fn formats_shortest_exact() {
        let cases = [
            (0, "0"),
            (SCALE, "1"),
            (150_000_000, "1.5"),
            (-150_000_000, "-1.5"),
            (1, "0.00000001"),
            (-1, "-0.00000001"),
            (6_423_157_000_000, "64231.57"),
            (i64::MIN, "-92233720368.54775808"),
        ];
        for (value, want) in cases {
            assert_eq!(to_string(value), want);
        }
    }

    #[test]
    fn round_trips() {
        for v in [
            0,
            1,
            7,
            99_999_999,
            100_000_001,
            -42,
            123_456_789_012_345,
            i64::MAX,
        ] {
            assert_eq!(parse(to_string(v).as_bytes()), Ok(v));
        }
    }
}
