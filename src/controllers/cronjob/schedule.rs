//! Cron schedules as upstream's CronJob controller reads them (robfig/cron
//! v3's standard parser): five fields `minute hour day-of-month month
//! day-of-week` with lists, ranges, steps, month and weekday names, `*`/`?`,
//! the descriptors @yearly, @annually, @monthly, @weekly, @daily, @midnight,
//! @hourly and `@every <duration>`; next activation times in a time zone,
//! stepping hours and minutes in absolute time across DST changes as robfig
//! does.
//!
//! Hand-written rather than a crate: the `cron`/`croner` crates differ from
//! robfig in the day-of-month/day-of-week rule and DST stepping, and would
//! pull in chrono and a second time zone database; jiff is already here.

use std::time::Duration;

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan, Zoned};

/// Set on a field written `*` or `?` (with no step above 1): robfig then
/// requires both day fields to match instead of either.
const STAR: u64 = 1 << 63;

/// A parsed schedule.
#[derive(Clone, Debug)]
pub enum Schedule {
    Spec(Spec),
    /// `@every <duration>`: activations a fixed delay apart.
    Every(Duration),
}

/// The five fields as bit sets (bit n = value n), in a time zone.
#[derive(Clone, Debug)]
pub struct Spec {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    tz: TimeZone,
}

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// The value of the first name.
    name_base: u32,
}

const MINUTES: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
    name_base: 0,
};
const HOURS: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
    name_base: 0,
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
    name_base: 0,
};
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
    name_base: 1,
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    name_base: 0,
};

fn parse_int(s: &str) -> Result<u32, String> {
    s.parse::<u32>().map_err(|_| {
        format!("failed to parse int from {s}: strconv.Atoi: parsing \"{s}\": invalid syntax")
    })
}

fn value(s: &str, b: &Bounds) -> Result<u32, String> {
    let lower = s.to_ascii_lowercase();
    match b.names.iter().position(|n| *n == lower) {
        Some(i) => Ok(i as u32 + b.name_base),
        None => parse_int(s),
    }
}

/// One comma-separated piece: `*`, `a`, `a-b`, each optionally `/step`.
fn range(expr: &str, b: &Bounds) -> Result<u64, String> {
    let parts: Vec<&str> = expr.split('/').collect();
    if parts.len() > 2 {
        return Err(format!("too many slashes: {expr}"));
    }
    let low_high: Vec<&str> = parts[0].split('-').collect();
    if low_high.len() > 2 {
        return Err(format!("too many hyphens: {expr}"));
    }
    let single = low_high.len() == 1;
    let (mut start, mut end, mut extra) = if parts[0] == "*" || parts[0] == "?" {
        (b.min, b.max, STAR)
    } else {
        let start = value(low_high[0], b)?;
        let end = if single {
            start
        } else {
            value(low_high[1], b)?
        };
        (start, end, 0)
    };
    let step = match parts.get(1) {
        None => 1,
        Some(st) => {
            let step = parse_int(st)?;
            // "N/step" means "N-max/step".
            if single && extra == 0 {
                end = b.max;
            }
            if step > 1 {
                extra = 0;
            }
            step
        }
    };
    if start < b.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            b.min
        ));
    }
    if end > b.max {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            b.max
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    let mut bits = extra;
    while start <= end {
        bits |= 1 << start;
        start += step;
    }
    Ok(bits)
}

fn field(expr: &str, b: &Bounds) -> Result<u64, String> {
    expr.split(',')
        .try_fold(0u64, |acc, r| Ok(acc | range(r, b)?))
}

/// Go's time.ParseDuration, for `@every` ("1h30m", "90s", "1.5h").
fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let err = || format!("time: invalid duration \"{s}\"");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(err());
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(err());
        }
        let n: f64 = rest[..num_len].parse().map_err(|_| err())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(format!("time: missing unit in duration \"{s}\"")),
            u => return Err(format!("time: unknown unit \"{u}\" in duration \"{s}\"")),
        };
        total += n * scale;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| err())
}

/// Parse a standard spec, evaluated in `tz`.
pub fn parse(spec: &str, tz: TimeZone) -> Result<Schedule, String> {
    if spec.is_empty() {
        return Err("empty spec string".into());
    }
    if let Some(d) = spec.strip_prefix('@') {
        let five = match d {
            "yearly" | "annually" => "0 0 1 1 *",
            "monthly" => "0 0 1 * *",
            "weekly" => "0 0 * * 0",
            "daily" | "midnight" => "0 0 * * *",
            "hourly" => "0 * * * *",
            _ => {
                if let Some(dur) = d.strip_prefix("every ") {
                    let dur = parse_go_duration(dur)
                        .map_err(|e| format!("failed to parse duration {spec}: {e}"))?;
                    return Ok(Schedule::Every(dur));
                }
                return Err(format!("unrecognized descriptor: {spec}"));
            }
        };
        return parse(five, tz);
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    Ok(Schedule::Spec(Spec {
        minute: field(fields[0], &MINUTES)?,
        hour: field(fields[1], &HOURS)?,
        dom: field(fields[2], &DOM)?,
        month: field(fields[3], &MONTHS)?,
        dow: field(fields[4], &DOW)?,
        tz,
    }))
}

fn has(bits: u64, v: i8) -> bool {
    v >= 0 && bits & (1 << v) != 0
}

impl Spec {
    fn day_matches(&self, z: &Zoned) -> bool {
        let dom = has(self.dom, z.day());
        let dow = has(self.dow, z.weekday().to_sunday_zero_offset());
        if self.dom & STAR != 0 || self.dow & STAR != 0 {
            dom && dow
        } else {
            dom || dow
        }
    }

    fn at(&self, d: Date, hour: i8, minute: i8) -> Option<Zoned> {
        DateTime::from_parts(d, jiff::civil::time(hour, minute, 0, 0))
            .to_zoned(self.tz.clone())
            .ok()
    }

    /// The first activation strictly after `t` (None within five years:
    /// the fields can never match, like "0 0 30 2 *").
    fn next(&self, t: Timestamp) -> Option<Timestamp> {
        // Start at the next whole second.
        let t = t.checked_add(SignedDuration::from_secs(1)).ok()?;
        let t = Timestamp::from_second(t.as_second()).ok()?;
        let mut z = t.to_zoned(self.tz.clone());
        let year_limit = z.year() + 5;
        let mut added = false;
        'wrap: loop {
            if z.year() > year_limit {
                return None;
            }
            while !has(self.month, z.month()) {
                if !added {
                    added = true;
                    z = self.at(z.date().first_of_month(), 0, 0)?;
                }
                z = z.checked_add(1.month()).ok()?;
                if z.month() == 1 {
                    continue 'wrap;
                }
            }
            while !self.day_matches(&z) {
                if !added {
                    added = true;
                    z = self.at(z.date(), 0, 0)?;
                }
                z = z.checked_add(1.day()).ok()?;
                // Midnight may have moved with DST; go back to it.
                let h = i64::from(z.hour());
                if h != 0 {
                    let shift = if h > 12 { 24 - h } else { -h };
                    z = z.checked_add(SignedDuration::from_hours(shift)).ok()?;
                }
                if z.day() == 1 {
                    continue 'wrap;
                }
            }
            while !has(self.hour, z.hour()) {
                if !added {
                    added = true;
                    z = self.at(z.date(), z.hour(), 0)?;
                }
                z = z.checked_add(SignedDuration::from_hours(1)).ok()?;
                if z.hour() == 0 {
                    continue 'wrap;
                }
            }
            while !has(self.minute, z.minute()) {
                if !added {
                    added = true;
                    // Whole seconds since the start: truncating is subtracting them.
                    z = z
                        .checked_sub(SignedDuration::from_secs(i64::from(z.second())))
                        .ok()?;
                }
                z = z.checked_add(SignedDuration::from_mins(1)).ok()?;
                if z.minute() == 0 {
                    continue 'wrap;
                }
            }
            // Seconds are always 0 in standard specs: on to the next minute
            // and check everything again.
            if z.second() != 0 {
                added = true;
                z = z
                    .checked_add(SignedDuration::from_secs(i64::from(60 - z.second())))
                    .ok()?;
                continue 'wrap;
            }
            return Some(z.timestamp());
        }
    }
}

impl Schedule {
    /// The first activation strictly after `t`.
    pub fn next(&self, t: Timestamp) -> Option<Timestamp> {
        match self {
            Schedule::Spec(s) => s.next(t),
            Schedule::Every(d) => {
                // Whole seconds, at least one; counted from t less its fraction.
                let secs = d.as_secs().max(1) as i64;
                let base = Timestamp::from_second(t.as_second()).ok()?;
                base.checked_add(SignedDuration::from_secs(secs)).ok()
            }
        }
    }
}

/// How many activations were missed, roughly: none, a few, or more than 100.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missed {
    None,
    Few,
    Many,
}

/// Upstream's mostRecentScheduleTime: from the last schedule time (or the
/// creation time), the most recent activation not after `now`, and how many
/// were missed. `deadline` (startingDeadlineSeconds) moves the start forward.
/// Err when two consecutive activations are less than a second apart (a
/// schedule that never fires).
pub fn most_recent(
    schedule: &Schedule,
    earliest: Timestamp,
    now: Timestamp,
    deadline: Option<i64>,
) -> Result<(Timestamp, Option<Timestamp>, Missed), String> {
    let mut earliest = earliest;
    if let Some(d) = deadline
        && let Ok(limit) = now.checked_sub(SignedDuration::from_secs(d))
        && limit > earliest
    {
        earliest = limit;
    }
    let t1 = schedule.next(earliest);
    let t2 = t1.and_then(|t| schedule.next(t));
    match t1 {
        Some(t1) if now < t1 => return Ok((earliest, None, Missed::None)),
        _ => {}
    }
    match (t1, t2) {
        (Some(t1), Some(t2)) if now < t2 => return Ok((earliest, Some(t1), Missed::None)),
        _ => {}
    }
    let (Some(t1), Some(t2)) = (t1, t2) else {
        return Err("time difference between two schedules is less than 1 second".into());
    };
    let between = (t2.as_millisecond() - t1.as_millisecond() + 500) / 1000;
    if between < 1 {
        return Err("time difference between two schedules is less than 1 second".into());
    }
    // Jump close to now by whole intervals, then let the schedule find the
    // exact latest activation (irregular schedules need the extra step back).
    let elapsed = now.as_second() - t1.as_second();
    let missed_count = elapsed / between + 1;
    let potential = t1
        .checked_add(SignedDuration::from_secs((missed_count - 2) * between))
        .map_err(|e| e.to_string())?;
    let mut most_recent = None;
    let mut t = schedule.next(potential);
    while let Some(x) = t {
        if x > now {
            break;
        }
        most_recent = Some(x);
        t = schedule.next(x);
    }
    let missed = if missed_count > 100 {
        Missed::Many
    } else {
        Missed::Few
    };
    Ok((earliest, most_recent, missed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn next(spec: &str, tz: &str, after: &str) -> String {
        let tz = if tz == "UTC" {
            TimeZone::UTC
        } else {
            TimeZone::get(tz).expect("tz")
        };
        let s = parse(spec, tz).expect("parse");
        s.next(utc(after))
            .map(|t| t.to_string())
            .unwrap_or_else(|| "never".into())
    }

    #[test]
    fn parses_like_robfig() {
        assert!(parse("*/5 * * * *", TimeZone::UTC).is_ok());
        assert!(parse("0 9 * jan-MAR Mon-fri", TimeZone::UTC).is_ok());
        assert_eq!(
            parse("61 * * * *", TimeZone::UTC).err().as_deref(),
            Some("end of range (61) above maximum (59): 61")
        );
        assert_eq!(
            parse("0 0 * * 7", TimeZone::UTC).err().as_deref(),
            Some("end of range (7) above maximum (6): 7")
        );
        assert_eq!(
            parse("* * *", TimeZone::UTC).err().as_deref(),
            Some("expected exactly 5 fields, found 3: [* * *]")
        );
        assert_eq!(
            parse("@fortnightly", TimeZone::UTC).err().as_deref(),
            Some("unrecognized descriptor: @fortnightly")
        );
        assert_eq!(
            parse("*/0 * * * *", TimeZone::UTC).err().as_deref(),
            Some("step of range should be a positive number: */0")
        );
        assert!(
            matches!(parse("@every 1h30m", TimeZone::UTC), Ok(Schedule::Every(d)) if d == Duration::from_secs(5400))
        );
        assert!(parse("@every 5", TimeZone::UTC).is_err());
    }

    #[test]
    fn next_times() {
        assert_eq!(
            next("*/1 * * * *", "UTC", "2024-01-01T10:00:00Z"),
            "2024-01-01T10:01:00Z"
        );
        assert_eq!(
            next("*/1 * * * *", "UTC", "2024-01-01T10:00:59.5Z"),
            "2024-01-01T10:01:00Z"
        );
        assert_eq!(
            next("*/15 * * * *", "UTC", "2024-01-01T10:07:00Z"),
            "2024-01-01T10:15:00Z"
        );
        assert_eq!(
            next("30 6-16/4 * * 1-5", "UTC", "2024-01-05T15:00:00Z"),
            "2024-01-08T06:30:00Z"
        );
        assert_eq!(
            next("@hourly", "UTC", "2024-01-01T10:00:00Z"),
            "2024-01-01T11:00:00Z"
        );
        assert_eq!(
            next("@daily", "UTC", "2024-02-28T10:00:00Z"),
            "2024-02-29T00:00:00Z"
        );
        assert_eq!(
            next("@weekly", "UTC", "2024-01-01T00:00:00Z"),
            "2024-01-07T00:00:00Z"
        );
        assert_eq!(
            next("@monthly", "UTC", "2024-12-15T00:00:00Z"),
            "2025-01-01T00:00:00Z"
        );
        assert_eq!(
            next("@yearly", "UTC", "2024-01-01T00:00:00Z"),
            "2025-01-01T00:00:00Z"
        );
        assert_eq!(
            next("0 0 29 2 *", "UTC", "2024-03-01T00:00:00Z"),
            "2028-02-29T00:00:00Z"
        );
        assert_eq!(next("0 0 30 2 *", "UTC", "2024-03-01T00:00:00Z"), "never");
        // Both day fields restricted: either matches (the 13th or a Friday).
        assert_eq!(
            next("0 0 13 * 5", "UTC", "2024-01-01T00:00:00Z"),
            "2024-01-05T00:00:00Z"
        );
        assert_eq!(
            next("0 0 13 * 5", "UTC", "2024-01-06T00:00:00Z"),
            "2024-01-12T00:00:00Z"
        );
        assert_eq!(
            next("0 0 13 * 5", "UTC", "2024-01-12T00:00:00Z"),
            "2024-01-13T00:00:00Z"
        );
        // A star in one day field: both must match.
        assert_eq!(
            next("0 0 * * 5", "UTC", "2024-01-01T00:00:00Z"),
            "2024-01-05T00:00:00Z"
        );
        assert_eq!(
            next("@every 90s", "UTC", "2024-01-01T00:00:00.7Z"),
            "2024-01-01T00:01:30Z"
        );
    }

    #[test]
    fn time_zones_and_dst() {
        // 09:00 in New York is 14:00 UTC in winter, 13:00 in summer.
        assert_eq!(
            next("0 9 * * *", "America/New_York", "2024-01-01T00:00:00Z"),
            "2024-01-01T14:00:00Z"
        );
        assert_eq!(
            next("0 9 * * *", "America/New_York", "2024-07-01T00:00:00Z"),
            "2024-07-01T13:00:00Z"
        );
        // 02:30 does not exist on 2024-03-10 in New York: that day is skipped.
        assert_eq!(
            next("30 2 * * *", "America/New_York", "2024-03-09T12:00:00Z"),
            "2024-03-11T06:30:00Z"
        );
        // 01:30 happens twice on 2024-11-03: robfig fires at both.
        let first = next("30 1 * * *", "America/New_York", "2024-11-03T04:00:00Z");
        assert_eq!(first, "2024-11-03T05:30:00Z");
        assert_eq!(
            next("30 1 * * *", "America/New_York", &first),
            "2024-11-03T06:30:00Z"
        );
        assert_eq!(
            next("0 0 * * *", "Asia/Kolkata", "2024-01-01T00:00:00Z"),
            "2024-01-01T18:30:00Z"
        );
    }

    #[test]
    fn missed_schedules() {
        let s = parse("*/1 * * * *", TimeZone::UTC).expect("parse");
        let created = utc("2024-01-01T10:00:30Z");
        // Nothing due yet.
        assert_eq!(
            most_recent(&s, created, utc("2024-01-01T10:00:50Z"), None),
            Ok((created, None, Missed::None))
        );
        // One due.
        assert_eq!(
            most_recent(&s, created, utc("2024-01-01T10:01:10Z"), None),
            Ok((created, Some(utc("2024-01-01T10:01:00Z")), Missed::None))
        );
        // Several missed: the latest one.
        assert_eq!(
            most_recent(&s, created, utc("2024-01-01T10:05:10Z"), None),
            Ok((created, Some(utc("2024-01-01T10:05:00Z")), Missed::Few))
        );
        // Over a hundred missed.
        let (_, latest, missed) =
            most_recent(&s, created, utc("2024-01-01T13:00:10Z"), None).expect("ok");
        assert_eq!(
            (latest, missed),
            (Some(utc("2024-01-01T13:00:00Z")), Missed::Many)
        );
        // startingDeadlineSeconds narrows the window (and so the count).
        let (earliest, latest, missed) =
            most_recent(&s, created, utc("2024-01-01T13:00:10Z"), Some(200)).expect("ok");
        assert_eq!(earliest, utc("2024-01-01T12:56:50Z"));
        assert_eq!(
            (latest, missed),
            (Some(utc("2024-01-01T13:00:00Z")), Missed::Few)
        );
        // An irregular schedule still lands on its real latest activation.
        let irregular = parse("30 6-16/4 * * 1-5", TimeZone::UTC).expect("parse");
        let (_, latest, _) = most_recent(
            &irregular,
            utc("2024-01-01T00:00:00Z"),
            utc("2024-01-10T12:00:00Z"),
            None,
        )
        .expect("ok");
        assert_eq!(latest, Some(utc("2024-01-10T10:30:00Z")));
        let never = parse("0 0 30 2 *", TimeZone::UTC).expect("parse");
        assert!(most_recent(&never, created, utc("2024-06-01T00:00:00Z"), None).is_err());
    }
}
