//! JSON forms of the apimachinery types with custom serialisation: times,
//! durations (Go's `time.Duration.String`).

/// Go's time.Time range that RFC 3339 can carry: years 0000 through 9999.
const MIN_SECONDS: i64 = -62_167_219_200;
const MAX_SECONDS: i64 = 253_402_300_799;

/// (seconds, nanos) normalised the way Go's time.Unix does, with the
/// nanoseconds in [0, 1e9); None outside years 0000-9999 (Go's MarshalJSON
/// fails there too).
fn timestamp(seconds: i64, nanos: i64) -> Option<(jiff::Timestamp, i32)> {
    let total = i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
    let secs = i64::try_from(total.div_euclid(1_000_000_000)).ok()?;
    let ns = i32::try_from(total.rem_euclid(1_000_000_000)).ok()?;
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&secs) {
        return None;
    }
    // Whole seconds: jiff keeps the fraction's sign with the seconds'.
    Some((jiff::Timestamp::from_second(secs).ok()?, ns))
}

/// metav1.Time: RFC 3339 in UTC, whole seconds (`2006-01-02T15:04:05Z`).
pub fn rfc3339(seconds: i64, nanos: i64) -> Option<String> {
    let (ts, _) = timestamp(seconds, nanos)?;
    Some(ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// metav1.MicroTime: RFC 3339 in UTC with six fractional digits (truncated,
/// as Go formats).
pub fn rfc3339_micro(seconds: i64, nanos: i64) -> Option<String> {
    let (ts, ns) = timestamp(seconds, nanos)?;
    Some(format!(
        "{}.{:06}Z",
        ts.strftime("%Y-%m-%dT%H:%M:%S"),
        ns / 1000
    ))
}

/// Go's `time.Duration.String()` of `ns` nanoseconds: `1h0m0s`, `1.5s`,
/// `300ms`, `2µs`, `0s`.
pub fn go_duration(ns: i64) -> String {
    let u = ns.unsigned_abs();
    let sign = if ns < 0 { "-" } else { "" };
    if u == 0 {
        return "0s".into();
    }
    if u < 1_000_000_000 {
        let (unit, prec) = match u {
            0..1_000 => ("ns", 0),
            1_000..1_000_000 => ("µs", 3),
            _ => ("ms", 6),
        };
        let scale = 10u64.pow(prec);
        return format!("{sign}{}{}{unit}", u / scale, fraction(u % scale, prec));
    }
    let frac = fraction(u % 1_000_000_000, 9);
    let secs = u / 1_000_000_000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{sign}{h}h{m}m{s}{frac}s")
    } else if secs >= 60 {
        format!("{sign}{m}m{s}{frac}s")
    } else {
        format!("{sign}{s}{frac}s")
    }
}

/// `.ddd` of `value` with `prec` digits, trailing zeros dropped; empty for 0.
fn fraction(value: u64, prec: u32) -> String {
    if value == 0 {
        return String::new();
    }
    let digits = format!("{value:0width$}", width = prec as usize);
    format!(".{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_go() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(1), "1ns");
        assert_eq!(go_duration(1_500), "1.5µs");
        assert_eq!(go_duration(300_000_000), "300ms");
        assert_eq!(go_duration(1_234_567), "1.234567ms");
        assert_eq!(go_duration(30_000_000_000), "30s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(3_661_000_000_001), "1h1m1.000000001s");
        assert_eq!(go_duration(-5_000_000_000), "-5s");
        assert_eq!(go_duration(i64::MIN), "-2562047h47m16.854775808s");
    }

    #[test]
    fn times_print_like_go() {
        assert_eq!(
            rfc3339(1_136_214_245, 999).as_deref(),
            Some("2006-01-02T15:04:05Z")
        );
        assert_eq!(
            rfc3339_micro(1_136_214_245, 123_456_789).as_deref(),
            Some("2006-01-02T15:04:05.123456Z")
        );
        assert_eq!(rfc3339(0, 0).as_deref(), Some("1970-01-01T00:00:00Z"));
        // nanos outside [0, 1e9) carry into seconds, as time.Unix does
        assert_eq!(
            rfc3339(1, -1_000_000_000).as_deref(),
            Some("1970-01-01T00:00:00Z")
        );
        assert_eq!(
            rfc3339_micro(-1, 500_000_000).as_deref(),
            Some("1969-12-31T23:59:59.500000Z")
        );
        assert_eq!(
            rfc3339(MIN_SECONDS, 0).as_deref(),
            Some("0000-01-01T00:00:00Z")
        );
        assert_eq!(rfc3339(MAX_SECONDS + 1, 0), None);
        assert_eq!(rfc3339(i64::MIN, i64::MIN), None);
    }
}
