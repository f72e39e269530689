//! CEL's `duration` and `timestamp` types (google.protobuf.Duration and
//! Timestamp) on jiff. cel-rust has them behind its `chrono` feature,
//! which needs chrono-tz; this module gives the same surface: the
//! `duration()` and `timestamp()` conversions, ordering, equality and
//! arithmetic (`timestamp - timestamp`, `timestamp + duration`...), the
//! getters with an optional time zone, and `string()`. Schema fields of
//! format `duration`, `date` and `date-time` are bound to rules as these
//! values (see [`Duration::from_schema`], [`Timestamp::from_schema`]).

use std::any::Any;
use std::cmp::Ordering;
use std::sync::LazyLock;

use cel::common::traits::{Adder, Comparer, Subtractor};
use cel::common::types::{CelInt, CelString, STRING_TYPE, Type};
use cel::common::value::{CowVal, Val};
use cel::{DeclarationError, Env, ExecutionError};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp as Instant};

const DURATION: &str = "google.protobuf.Duration";
const TIMESTAMP: &str = "google.protobuf.Timestamp";

static DURATION_TYPE: LazyLock<Type> = LazyLock::new(|| Type::new_opaque_type(DURATION));
static TIMESTAMP_TYPE: LazyLock<Type> = LazyLock::new(|| Type::new_opaque_type(TIMESTAMP));

/// A CEL duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub SignedDuration);

/// A CEL timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub Instant);

fn no_overload(op: &str, a: &dyn Val, b: &dyn Val) -> ExecutionError {
    ExecutionError::no_such_overload(
        op,
        vec![
            a.get_type().name().to_owned(),
            b.get_type().name().to_owned(),
        ],
    )
}

fn overflow(op: &str) -> ExecutionError {
    ExecutionError::function_error(op, "integer overflow")
}

/// cel-go's range of timestamps: years 1 to 9999.
fn in_range(t: Instant) -> bool {
    (-62_135_596_800..=253_402_300_799).contains(&t.as_second())
}

/// Both time values are comparable, support + and -, and compare equal
/// only to their own kind.
macro_rules! time_val {
    ($t:ty, $cel:expr) => {
        impl Val for $t {
            fn get_type(&self) -> &Type {
                &$cel
            }
            fn cel_type() -> &'static Type {
                &$cel
            }
            fn as_adder<'b, 'v>(&'b self) -> Option<&'b (dyn Adder + 'v)>
            where
                Self: 'v,
            {
                Some(self)
            }
            fn as_subtractor<'b, 'v>(&'b self) -> Option<&'b (dyn Subtractor + 'v)>
            where
                Self: 'v,
            {
                Some(self)
            }
            fn as_comparer(&self) -> Option<&dyn Comparer> {
                Some(self)
            }
            fn equals(&self, other: &dyn Val) -> bool {
                other.as_any().and_then(|a| a.downcast_ref::<$t>()) == Some(self)
            }
            fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v>
            where
                Self: 'v,
            {
                Box::new(*self)
            }
            fn as_any(&self) -> Option<&dyn Any> {
                Some(self)
            }
        }
    };
}

time_val!(Duration, DURATION_TYPE);
time_val!(Timestamp, TIMESTAMP_TYPE);

fn duration_of(v: &dyn Val) -> Option<Duration> {
    v.as_any()
        .and_then(|a| a.downcast_ref::<Duration>())
        .copied()
}

fn timestamp_of(v: &dyn Val) -> Option<Timestamp> {
    v.as_any()
        .and_then(|a| a.downcast_ref::<Timestamp>())
        .copied()
}

fn timestamp_result<'b, 'v>(
    op: &str,
    t: Option<Instant>,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    match t {
        Some(t) if in_range(t) => Ok(CowVal::owned(Timestamp(t))),
        _ => Err(ExecutionError::function_error(op, "timestamp out of range")),
    }
}

impl Adder for Duration {
    fn add<'b, 'v>(&'b self, rhs: &(dyn Val + 'v)) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        if let Some(d) = duration_of(rhs) {
            let sum = self.0.checked_add(d.0).ok_or_else(|| overflow("_+_"))?;
            return Ok(CowVal::owned(Duration(sum)));
        }
        if let Some(t) = timestamp_of(rhs) {
            return timestamp_result("_+_", t.0.checked_add(self.0).ok());
        }
        Err(no_overload("_+_", self, rhs))
    }
}

impl Subtractor for Duration {
    fn sub<'b, 'v>(&'b self, rhs: &(dyn Val + 'v)) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        match duration_of(rhs) {
            Some(d) => {
                let diff = self.0.checked_sub(d.0).ok_or_else(|| overflow("_-_"))?;
                Ok(CowVal::owned(Duration(diff)))
            }
            None => Err(no_overload("_-_", self, rhs)),
        }
    }
}

impl Comparer for Duration {
    fn compare(&self, rhs: &dyn Val) -> Result<Ordering, ExecutionError> {
        duration_of(rhs)
            .map(|d| self.cmp(&d))
            .ok_or_else(|| no_overload("compare", self, rhs))
    }
}

impl Adder for Timestamp {
    fn add<'b, 'v>(&'b self, rhs: &(dyn Val + 'v)) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        match duration_of(rhs) {
            Some(d) => timestamp_result("_+_", self.0.checked_add(d.0).ok()),
            None => Err(no_overload("_+_", self, rhs)),
        }
    }
}

impl Subtractor for Timestamp {
    fn sub<'b, 'v>(&'b self, rhs: &(dyn Val + 'v)) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        if let Some(d) = duration_of(rhs) {
            return timestamp_result("_-_", self.0.checked_sub(d.0).ok());
        }
        if let Some(t) = timestamp_of(rhs) {
            let d = self.0.duration_since(t.0);
            // cel-go durations are int64 nanoseconds.
            if i64::try_from(d.as_nanos()).is_err() {
                return Err(overflow("_-_"));
            }
            return Ok(CowVal::owned(Duration(d)));
        }
        Err(no_overload("_-_", self, rhs))
    }
}

impl Comparer for Timestamp {
    fn compare(&self, rhs: &dyn Val) -> Result<Ordering, ExecutionError> {
        timestamp_of(rhs)
            .map(|t| self.cmp(&t))
            .ok_or_else(|| no_overload("compare", self, rhs))
    }
}

/// Parses Go's duration syntax (`1h30m`, `1.5s`, `-300ms`), as cel-go's
/// `duration()` does.
pub fn parse_go_duration(s: &str) -> Option<SignedDuration> {
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(SignedDuration::ZERO);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_end];
        if num.is_empty() || num == "." {
            return None;
        }
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        total = total.checked_add(scaled(num, scale)?)?;
    }
    let nanos = i64::try_from(if neg { -total } else { total }).ok()?;
    Some(SignedDuration::from_nanos(nanos))
}

/// `num` (digits, maybe a fraction) times `scale` nanoseconds.
fn scaled(num: &str, scale: i128) -> Option<i128> {
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let whole: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut out = whole.checked_mul(scale)?;
    let mut unit = scale;
    for d in frac.chars() {
        unit /= 10;
        out += i128::from(d.to_digit(10)?) * unit;
    }
    Some(out)
}

/// The units the OpenAPI `duration` format accepts beyond Go's.
fn long_unit(u: &str) -> Option<i128> {
    const S: i128 = 1_000_000_000;
    Some(match u {
        "ns" | "nanosecond" | "nanoseconds" => 1,
        "us" | "µs" | "microsecond" | "microseconds" => 1_000,
        "ms" | "millisecond" | "milliseconds" => 1_000_000,
        "s" | "sec" | "secs" | "second" | "seconds" => S,
        "m" | "min" | "mins" | "minute" | "minutes" => 60 * S,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600 * S,
        "d" | "day" | "days" => 86400 * S,
        "w" | "wk" | "wks" | "week" | "weeks" => 7 * 86400 * S,
        _ => return None,
    })
}

impl Duration {
    /// A `format: duration` field's value: Go's syntax, or the OpenAPI
    /// format's `3 days` / `1w2d` forms.
    pub fn from_schema(s: &str) -> Option<Duration> {
        if let Some(d) = parse_go_duration(s) {
            return Some(Duration(d));
        }
        let mut total: i128 = 0;
        let mut rest = s.trim();
        if rest.is_empty() {
            return None;
        }
        while !rest.is_empty() {
            let n_end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            let n: i128 = rest[..n_end].parse().ok()?;
            rest = rest[n_end..].trim_start();
            let u_end = rest
                .find(|c: char| c.is_ascii_digit() || c.is_whitespace())
                .unwrap_or(rest.len());
            total = total.checked_add(n.checked_mul(long_unit(&rest[..u_end])?)?)?;
            rest = rest[u_end..].trim_start();
        }
        Some(Duration(SignedDuration::from_nanos(
            i64::try_from(total).ok()?,
        )))
    }
}

impl Timestamp {
    /// A `format: date-time` (RFC 3339) or `format: date` (`2006-01-02`,
    /// midnight UTC) field's value.
    pub fn from_schema(s: &str, date_only: bool) -> Option<Timestamp> {
        if date_only {
            let d: jiff::civil::Date = s.parse().ok()?;
            return d
                .to_zoned(TimeZone::UTC)
                .ok()
                .map(|z| Timestamp(z.timestamp()));
        }
        s.parse::<Instant>().ok().map(Timestamp)
    }
}

type Args<'b, 'v> = Vec<CowVal<'b, 'v>>;
type Ret<'b, 'v> = Result<CowVal<'b, 'v>, ExecutionError>;

/// Argument `i` as a string (strings borrow the expression: read them
/// through `Value`).
fn str_at(f: &str, args: &Args, i: usize) -> Result<String, ExecutionError> {
    match args
        .get(i)
        .map(|a| cel::Value::try_from(a.as_ref() as &dyn Val))
    {
        Some(Ok(cel::Value::String(s))) => Ok(s.to_string()),
        _ => Err(ExecutionError::function_error(f, "expected a string")),
    }
}

fn int<'b, 'v>(i: i64) -> Ret<'b, 'v> {
    Ok(CowVal::owned(CelInt::from(i)))
}

fn string<'b, 'v>(s: String) -> Ret<'b, 'v> {
    Ok(CowVal::owned(CelString::from(s)))
}

fn duration<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    let s = str_at("duration", &args, 0)?;
    match parse_go_duration(&s) {
        Some(d) => Ok(CowVal::owned(Duration(d))),
        None => Err(ExecutionError::function_error(
            "duration",
            format!("time: invalid duration \"{s}\""),
        )),
    }
}

fn timestamp<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    let s = str_at("timestamp", &args, 0)?;
    match s.parse::<Instant>() {
        Ok(t) => timestamp_result("timestamp", Some(t)),
        Err(_) => Err(ExecutionError::function_error(
            "timestamp",
            format!("cannot parse \"{s}\" as RFC 3339 timestamp"),
        )),
    }
}

fn dur_arg(f: &str, args: &Args) -> Result<SignedDuration, ExecutionError> {
    args.first()
        .and_then(|a| duration_of(a.as_ref()))
        .map(|d| d.0)
        .ok_or_else(|| ExecutionError::function_error(f, "expected a duration"))
}

fn ts_arg(f: &str, args: &Args) -> Result<jiff::Zoned, ExecutionError> {
    let t = args
        .first()
        .and_then(|a| timestamp_of(a.as_ref()))
        .ok_or_else(|| ExecutionError::function_error(f, "expected a timestamp"))?;
    let tz = match args.get(1) {
        None => TimeZone::UTC,
        Some(_) => {
            let name = str_at(f, args, 1)?;
            zone(&name).ok_or_else(|| {
                ExecutionError::function_error(f, format!("unknown time zone: {name}"))
            })?
        }
    };
    Ok(t.0.to_zoned(tz))
}

/// A time zone argument: an IANA name or a fixed `[+-]hh:mm` offset.
fn zone(name: &str) -> Option<TimeZone> {
    if let Some(sign) = name.chars().next().filter(|c| *c == '+' || *c == '-') {
        let (h, m) = name[1..].split_once(':')?;
        let secs = h.parse::<i32>().ok()? * 3600 + m.parse::<i32>().ok()? * 60;
        let secs = if sign == '-' { -secs } else { secs };
        return jiff::tz::Offset::from_seconds(secs)
            .ok()
            .map(TimeZone::fixed);
    }
    TimeZone::get(name).ok()
}

macro_rules! getter {
    ($name:ident, $f:literal, $arg:ident, $body:expr) => {
        fn $name<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
            let $arg = ts_arg($f, &args)?;
            int(i64::from($body))
        }
    };
}

getter!(ts_year, "getFullYear", z, z.year());
getter!(ts_month, "getMonth", z, z.month() - 1);
getter!(ts_day_of_year, "getDayOfYear", z, z.day_of_year() - 1);
getter!(ts_day_of_month, "getDayOfMonth", z, z.day() - 1);
getter!(ts_date, "getDate", z, z.day());
getter!(
    ts_day_of_week,
    "getDayOfWeek",
    z,
    z.weekday().to_sunday_zero_offset()
);
getter!(ts_hours, "getHours", z, z.hour());
getter!(ts_minutes, "getMinutes", z, z.minute());
getter!(ts_seconds, "getSeconds", z, z.second());
getter!(ts_millis, "getMilliseconds", z, z.millisecond());

fn d_hours<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    int(dur_arg("getHours", &args)?.as_secs() / 3600)
}
fn d_minutes<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    int(dur_arg("getMinutes", &args)?.as_secs() / 60)
}
fn d_seconds<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    int(dur_arg("getSeconds", &args)?.as_secs())
}
fn d_millis<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    let ms = dur_arg("getMilliseconds", &args)?.as_millis();
    int(i64::try_from(ms).map_err(|_| overflow("getMilliseconds"))?)
}

/// cel-go prints a duration as seconds: `3600s`, `1.5s`.
fn duration_string<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    let d = dur_arg("string", &args)?;
    let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
    if nanos == 0 {
        return string(format!("{secs}s"));
    }
    let sign = if secs < 0 || nanos < 0 { "-" } else { "" };
    let frac = format!("{:09}", nanos.unsigned_abs());
    string(format!(
        "{sign}{}.{}s",
        secs.unsigned_abs(),
        frac.trim_end_matches('0')
    ))
}

fn timestamp_string<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    let z = ts_arg("string", &args)?;
    string(z.timestamp().to_string())
}

fn timestamp_int<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    int(ts_arg("int", &args)?.timestamp().as_second())
}

fn identity<'b, 'v>(mut args: Args<'b, 'v>) -> Ret<'b, 'v> {
    args.pop()
        .ok_or_else(|| ExecutionError::function_error("timestamp", "expected an argument"))
}

/// Adds the types and their functions to `env`.
pub fn register(env: &mut Env) -> Result<(), DeclarationError> {
    let dt = || Type::new_opaque_type(DURATION);
    let tt = || Type::new_opaque_type(TIMESTAMP);
    env.add_type(dt())?;
    env.add_type(tt())?;
    env.add_overload(
        "duration",
        "string_to_duration",
        vec![STRING_TYPE],
        duration,
    )?;
    env.add_overload(
        "timestamp",
        "string_to_timestamp",
        vec![STRING_TYPE],
        timestamp,
    )?;
    env.add_overload("duration", "duration_to_duration", vec![dt()], identity)?;
    env.add_overload("timestamp", "timestamp_to_timestamp", vec![tt()], identity)?;
    env.add_overload("string", "duration_to_string", vec![dt()], duration_string)?;
    env.add_overload(
        "string",
        "timestamp_to_string",
        vec![tt()],
        timestamp_string,
    )?;
    env.add_overload("int", "timestamp_to_int64", vec![tt()], timestamp_int)?;
    type F = cel::common::functions::Function;
    let ts_getters: [(&str, &str, F); 10] = [
        ("getFullYear", "timestamp_to_year", ts_year),
        ("getMonth", "timestamp_to_month", ts_month),
        ("getDayOfYear", "timestamp_to_day_of_year", ts_day_of_year),
        (
            "getDayOfMonth",
            "timestamp_to_day_of_month",
            ts_day_of_month,
        ),
        ("getDate", "timestamp_to_day_of_month_1_based", ts_date),
        ("getDayOfWeek", "timestamp_to_day_of_week", ts_day_of_week),
        ("getHours", "timestamp_to_hours", ts_hours),
        ("getMinutes", "timestamp_to_minutes", ts_minutes),
        ("getSeconds", "timestamp_to_seconds", ts_seconds),
        ("getMilliseconds", "timestamp_to_milliseconds", ts_millis),
    ];
    for (name, id, f) in ts_getters {
        env.add_member_overload(name, id, tt(), vec![], f)?;
        env.add_member_overload(name, &format!("{id}_with_tz"), tt(), vec![STRING_TYPE], f)?;
    }
    let d_getters: [(&str, &str, F); 4] = [
        ("getHours", "duration_to_hours", d_hours),
        ("getMinutes", "duration_to_minutes", d_minutes),
        ("getSeconds", "duration_to_seconds", d_seconds),
        ("getMilliseconds", "duration_to_milliseconds", d_millis),
    ];
    for (name, id, f) in d_getters {
        env.add_member_overload(name, id, dt(), vec![], f)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_go_and_openapi_do() {
        let go = |s| parse_go_duration(s).map(|d| d.as_nanos());
        assert_eq!(go("1h30m"), Some(5_400_000_000_000));
        assert_eq!(go("1.5s"), Some(1_500_000_000));
        assert_eq!(go("-300ms"), Some(-300_000_000));
        assert_eq!(go("0"), Some(0));
        assert_eq!(go("1d"), None);
        assert_eq!(go("h"), None);
        let api = |s| Duration::from_schema(s).map(|d| d.0.as_secs());
        assert_eq!(api("2d"), Some(172_800));
        assert_eq!(api("1 week"), Some(604_800));
        assert_eq!(api("1w2d"), Some(777_600));
        assert_eq!(api("soon"), None);
    }
}
