//! resource.Quantity parsing, enough to validate quantities and compare them
//! (requests vs limits, QoS class, PVC growth). Values are held in
//! nano-units (rounded up, saturating), which covers every real quantity.

use std::cmp::Ordering;

/// Upstream's format error for a malformed quantity.
pub const FORMAT_ERROR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// A parsed quantity, in nano-units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(pub i128);

impl Quantity {
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
    pub fn is_negative(self) -> bool {
        self.0 < 0
    }
    pub fn cmp_to(self, other: Quantity) -> Ordering {
        self.0.cmp(&other.0)
    }
    pub fn saturating_add(self, other: Quantity) -> Quantity {
        Quantity(self.0.saturating_add(other.0))
    }
}

fn pow10(e: u32) -> Option<i128> {
    10i128.checked_pow(e)
}

/// Parse a quantity string (`100m`, `1.5Gi`, `2e3`). Errors carry
/// upstream's messages.
pub fn parse(s: &str) -> Result<Quantity, &'static str> {
    let s = s.trim();
    if s.is_empty() {
        return Err(
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        );
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    let negative = match bytes[0] {
        b'-' => {
            i = 1;
            true
        }
        b'+' => {
            i = 1;
            false
        }
        _ => false,
    };
    let num_start = i;
    while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
        i += 1;
    }
    let num = &s[num_start..i];
    let suffix = &s[i..];
    if num.is_empty() || !num.bytes().any(|c| c.is_ascii_digit()) {
        return Err(FORMAT_ERROR);
    }
    if num.matches('.').count() > 1 {
        return Err("unable to parse numeric part of quantity");
    }
    let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
    // (binary multiplier, decimal exponent)
    let (bin, exp): (i128, i32) = match suffix {
        "" => (1, 0),
        "Ki" => (1 << 10, 0),
        "Mi" => (1 << 20, 0),
        "Gi" => (1 << 30, 0),
        "Ti" => (1 << 40, 0),
        "Pi" => (1 << 50, 0),
        "Ei" => (1 << 60, 0),
        "n" => (1, -9),
        "u" => (1, -6),
        "m" => (1, -3),
        "k" => (1, 3),
        "M" => (1, 6),
        "G" => (1, 9),
        "T" => (1, 12),
        "P" => (1, 15),
        "E" => (1, 18),
        other => {
            let rest = other.strip_prefix('e').or_else(|| other.strip_prefix('E'));
            match rest.and_then(|r| r.parse::<i32>().ok()) {
                Some(e) if e.abs() <= 40 => (1, e),
                _ => {
                    let ok_chars = other
                        .bytes()
                        .all(|c| b"eEinumkKMGTP+-0123456789".contains(&c));
                    return Err(if ok_chars {
                        "unable to parse quantity's suffix"
                    } else {
                        FORMAT_ERROR
                    });
                }
            }
        }
    };
    // mantissa = digits as integer, scaled by 10^-frac_len
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    let mantissa: i128 = if digits.is_empty() {
        0
    } else if digits.len() > 36 {
        i128::MAX
    } else {
        digits
            .parse()
            .map_err(|_| "unable to parse numeric part of quantity")?
    };
    let scale = exp + 9 - frac_part.len() as i32;
    let mut v = mantissa.saturating_mul(bin);
    if scale >= 0 {
        v = match pow10(scale as u32) {
            Some(p) => v.saturating_mul(p),
            None => i128::MAX,
        };
    } else {
        let p = pow10((-scale) as u32).unwrap_or(i128::MAX);
        // round up, as upstream does when reducing precision
        v = if v % p == 0 { v / p } else { v / p + 1 };
    }
    Ok(Quantity(if negative { -v } else { v }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse("1").map(|q| q.0), Ok(1_000_000_000));
        assert_eq!(parse("100m").map(|q| q.0), Ok(100_000_000));
        assert_eq!(parse("0.1"), parse("100m"));
        assert_eq!(parse("1Ki").map(|q| q.0), Ok(1024 * 1_000_000_000));
        assert_eq!(parse("1k"), parse("1000"));
        assert_eq!(parse("2e3"), parse("2k"));
        assert_eq!(parse("1n").map(|q| q.0), Ok(1));
        assert!(parse("-1").is_ok_and(|q| q.is_negative()));
        assert!(parse("1Gi").unwrap_or(Quantity(0)) > parse("1G").unwrap_or(Quantity(i128::MAX)));
    }

    #[test]
    fn rejects_garbage_with_upstream_messages() {
        assert_eq!(parse("abc"), Err(FORMAT_ERROR));
        assert_eq!(parse(""), Err(FORMAT_ERROR));
        assert_eq!(
            parse("1.2.3"),
            Err("unable to parse numeric part of quantity")
        );
        assert_eq!(parse("1Kb"), Err(FORMAT_ERROR));
        assert_eq!(parse("1kk"), Err("unable to parse quantity's suffix"));
    }
}
