//! Finding and parsing the timestamp of a log line, whatever stack wrote it.
//!
//! Supported forms (the first one found in the first [`SEARCH_WINDOW`] bytes wins):
//! - RFC 3339 / ISO 8601: `2024-05-10T03:14:22Z`, `2024-05-10 03:14:22,123`,
//!   `2024-05-10T03:14:22.123456+02:00`, `...+0200`, `...+02`; `T` or space, `.` or `,` fraction,
//!   zone or none;
//! - Go / nginx error log: `2006/01/02 15:04:05[.000000]`;
//! - Apache / nginx access log: `[10/Oct/2000:13:55:36 -0700]`;
//! - syslog without year: `May 10 03:14:22`, `May  1 03:14:22` (year from the caller, bumped when
//!   the month wraps from December to January);
//! - epoch seconds (10 digits, optional fraction) or milliseconds (13 digits), at the start of the
//!   line or after a `ts` / `time` / `timestamp` key, between 2001 and 2286.
//!
//! Zone-less forms are read in the caller's time zone (`--tz`, UTC by default).
//!
//! Hand-rolled rather than `jiff::fmt::strtime`: the format and its position in the line are
//! unknown, so we probe several formats at every plausible offset; fixed-width digit parsing does
//! that in nanoseconds without allocating, and rejects garbage without panicking. `jiff` does the
//! calendar and time-zone arithmetic.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::{Offset, TimeZone};

/// How far into a line the timestamp is looked for.
pub const SEARCH_WINDOW: usize = 200;

/// What zone-less and year-less timestamps mean.
#[derive(Debug, Clone)]
pub struct TimeContext {
    /// Zone for timestamps without an offset.
    pub tz: TimeZone,
    /// Year for syslog timestamps (which have none) at the start of the file.
    pub year: i16,
}

impl Default for TimeContext {
    fn default() -> Self {
        TimeContext {
            tz: TimeZone::UTC,
            year: 2024,
        }
    }
}

/// Year tracking for syslog timestamps within one file.
#[derive(Debug, Clone, Copy, Default)]
pub struct SyslogYear {
    bump: i16,
    last_month: i8,
}

/// A parsed timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    /// The instant, in UTC.
    pub time: Timestamp,
    /// Digits after the seconds (0 = whole seconds): the timestamp's resolution.
    pub frac_digits: u8,
}

/// Find and parse the timestamp of one line.
pub fn find_timestamp(line: &[u8], ctx: &TimeContext, syslog: &mut SyslogYear) -> Option<Parsed> {
    let window = &line[..line.len().min(SEARCH_WINDOW)];
    for i in 0..window.len() {
        let c = window[i];
        let at_boundary = i == 0 || !window[i - 1].is_ascii_alphanumeric();
        if !at_boundary {
            continue;
        }
        // Parsers look past the window so a timestamp straddling its end still parses.
        let rest = &line[i..];
        let found = if c.is_ascii_digit() {
            iso(rest, ctx)
                .or_else(|| go_slash(rest, ctx))
                .or_else(|| apache(rest, ctx))
                .or_else(|| epoch(rest, &window[..i]))
        } else if c.is_ascii_uppercase() {
            syslog_ts(rest, ctx, syslog)
        } else {
            None
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

/// `n` ASCII digits at the start of `b` as a number.
fn digits(b: &[u8], n: usize) -> Option<i64> {
    let d = b.get(..n)?;
    d.iter().try_fold(0i64, |acc, &c| {
        if !c.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(i64::from(c - b'0'))
    })
}

/// A fraction `[.,]ddd…` at the start of `b`: (nanoseconds, digits, bytes consumed).
fn fraction(b: &[u8]) -> (i32, u8, usize) {
    if !matches!(b.first(), Some(b'.' | b',')) {
        return (0, 0, 0);
    }
    let n = b[1..].iter().take_while(|c| c.is_ascii_digit()).count();
    if n == 0 {
        return (0, 0, 0);
    }
    let mut nanos = 0i64;
    for (k, &c) in b[1..1 + n.min(9)].iter().enumerate() {
        nanos += i64::from(c - b'0') * 10i64.pow(8 - k as u32);
    }
    (nanos as i32, n.min(9) as u8, 1 + n)
}

fn hms(b: &[u8]) -> Option<(i8, i8, i8)> {
    if b.get(2) != Some(&b':') || b.get(5) != Some(&b':') {
        return None;
    }
    Some((
        digits(b, 2)? as i8,
        digits(&b[3..], 2)? as i8,
        digits(&b[6..], 2)? as i8,
    ))
}

#[allow(clippy::too_many_arguments)]
fn civil(y: i64, mo: i64, d: i64, h: i8, mi: i8, s: i8, ns: i32) -> Option<DateTime> {
    // A leap second (:60) is read as :59.999999999 rather than rejected.
    let (s, ns) = if s == 60 { (59, 999_999_999) } else { (s, ns) };
    DateTime::new(
        i16::try_from(y).ok()?,
        i8::try_from(mo).ok()?,
        i8::try_from(d).ok()?,
        h,
        mi,
        s,
        ns,
    )
    .ok()
}

fn in_zone(dt: DateTime, tz: &TimeZone) -> Option<Timestamp> {
    tz.to_ambiguous_timestamp(dt).compatible().ok()
}

fn with_offset(dt: DateTime, offset_s: i32) -> Option<Timestamp> {
    Offset::from_seconds(offset_s).ok()?.to_timestamp(dt).ok()
}

/// `Z`, `+HH:MM`, `+HHMM`, `+HH` (and `-`): offset in seconds.
fn zone(b: &[u8]) -> Option<i32> {
    match b.first()? {
        b'Z' | b'z' => Some(0),
        sign @ (b'+' | b'-') => {
            let h = digits(&b[1..], 2)?;
            let m = if b.get(3) == Some(&b':') {
                digits(&b[4..], 2)?
            } else {
                digits(&b[3..], 2).unwrap_or(0)
            };
            if h > 23 || m > 59 {
                return None;
            }
            let secs = (h * 3600 + m * 60) as i32;
            Some(if *sign == b'-' { -secs } else { secs })
        }
        _ => None,
    }
}

/// `YYYY-MM-DD[T ]HH:MM:SS[.frac][zone]`
fn iso(b: &[u8], ctx: &TimeContext) -> Option<Parsed> {
    if b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || !matches!(b.get(10), Some(b'T' | b't' | b' '))
    {
        return None;
    }
    let (y, mo, d) = (digits(b, 4)?, digits(&b[5..], 2)?, digits(&b[8..], 2)?);
    let (h, mi, s) = hms(b.get(11..)?)?;
    let (ns, frac_digits, used) = fraction(b.get(19..).unwrap_or_default());
    let dt = civil(y, mo, d, h, mi, s, ns)?;
    let time = match zone(b.get(19 + used..).unwrap_or_default()) {
        Some(off) => with_offset(dt, off)?,
        None => in_zone(dt, &ctx.tz)?,
    };
    Some(Parsed { time, frac_digits })
}

/// `YYYY/MM/DD HH:MM:SS[.frac]` (Go's log package, nginx error log): local time.
fn go_slash(b: &[u8], ctx: &TimeContext) -> Option<Parsed> {
    if b.get(4) != Some(&b'/') || b.get(7) != Some(&b'/') || b.get(10) != Some(&b' ') {
        return None;
    }
    let (y, mo, d) = (digits(b, 4)?, digits(&b[5..], 2)?, digits(&b[8..], 2)?);
    let (h, mi, s) = hms(b.get(11..)?)?;
    let (ns, frac_digits, _) = fraction(b.get(19..).unwrap_or_default());
    let time = in_zone(civil(y, mo, d, h, mi, s, ns)?, &ctx.tz)?;
    Some(Parsed { time, frac_digits })
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

fn month(b: &[u8]) -> Option<i64> {
    let m = b.get(..3)?;
    MONTHS
        .iter()
        .position(|name| name.as_slice() == m)
        .map(|i| i as i64 + 1)
}

/// `DD/Mon/YYYY:HH:MM:SS ±HHMM` (Apache / nginx access log).
fn apache(b: &[u8], ctx: &TimeContext) -> Option<Parsed> {
    if b.get(2) != Some(&b'/') || b.get(6) != Some(&b'/') || b.get(11) != Some(&b':') {
        return None;
    }
    let d = digits(b, 2)?;
    let mo = month(&b[3..])?;
    let y = digits(&b[7..], 4)?;
    let (h, mi, s) = hms(b.get(12..)?)?;
    let dt = civil(y, mo, d, h, mi, s, 0)?;
    let time = match b
        .get(20..)
        .filter(|r| r.first() == Some(&b' '))
        .and_then(|r| zone(&r[1..]))
    {
        Some(off) => with_offset(dt, off)?,
        None => in_zone(dt, &ctx.tz)?,
    };
    Some(Parsed {
        time,
        frac_digits: 0,
    })
}

/// `Mon DD HH:MM:SS` / `Mon  D HH:MM:SS` (classic syslog, no year).
fn syslog_ts(b: &[u8], ctx: &TimeContext, state: &mut SyslogYear) -> Option<Parsed> {
    let mo = month(b)?;
    if b.get(3) != Some(&b' ') {
        return None;
    }
    let d = match (b.get(4)?, b.get(5)?) {
        (b' ', c) if c.is_ascii_digit() => i64::from(c - b'0'),
        _ => digits(&b[4..], 2)?,
    };
    if b.get(6) != Some(&b' ') {
        return None;
    }
    let (h, mi, s) = hms(b.get(7..)?)?;
    let (ns, frac_digits, _) = fraction(b.get(15..).unwrap_or_default());
    let mo8 = mo as i8;
    let bump = if state.last_month == 12 && mo8 == 1 {
        state.bump + 1
    } else {
        state.bump
    };
    let dt = civil(i64::from(ctx.year) + i64::from(bump), mo, d, h, mi, s, ns)?;
    let time = in_zone(dt, &ctx.tz)?;
    state.bump = bump;
    state.last_month = mo8;
    Some(Parsed { time, frac_digits })
}

/// Keys after which a bare epoch number is accepted.
const EPOCH_KEYS: [&[u8]; 6] = [
    b"ts=",
    b"\"ts\":",
    b"time=",
    b"\"time\":",
    b"timestamp=",
    b"\"timestamp\":",
];

/// Epoch seconds (10 digits, optional fraction) or milliseconds (13 digits).
fn epoch(b: &[u8], before: &[u8]) -> Option<Parsed> {
    let trimmed = before.strip_suffix(b" ").unwrap_or(before);
    let keyed = EPOCH_KEYS.iter().any(|k| trimmed.ends_with(k));
    if !(before.is_empty() || before == b"[" || keyed) {
        return None;
    }
    let n = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if b.get(n).is_some_and(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    if n != 10 && n != 13 {
        return None;
    }
    let value = digits(b, n)?;
    let (time, frac_digits) = match n {
        10 => {
            let (ns, fd, _) = fraction(&b[n..]);
            (Timestamp::new(value, ns).ok()?, fd)
        }
        13 => (Timestamp::from_millisecond(value).ok()?, 3),
        _ => return None,
    };
    // 10-digit seconds and 13-digit milliseconds both start in 2001.
    Some(Parsed { time, frac_digits })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(line: &str) -> Option<String> {
        parse_in(line, TimeZone::UTC)
    }

    fn parse_in(line: &str, tz: TimeZone) -> Option<String> {
        let ctx = TimeContext { tz, year: 2024 };
        find_timestamp(line.as_bytes(), &ctx, &mut SyslogYear::default())
            .map(|p| p.time.to_string())
    }

    #[test]
    fn rfc3339_and_iso_variants() {
        assert_eq!(
            parse("2024-05-10T03:14:22Z INFO x").unwrap(),
            "2024-05-10T03:14:22Z"
        );
        assert_eq!(
            parse("2024-05-10 03:14:22,123 INFO x").unwrap(),
            "2024-05-10T03:14:22.123Z"
        );
        assert_eq!(
            parse("2024-05-10T05:14:22.5+02:00 x").unwrap(),
            "2024-05-10T03:14:22.5Z"
        );
        assert_eq!(
            parse("2024-05-10T05:14:22+0200 x").unwrap(),
            "2024-05-10T03:14:22Z"
        );
        assert_eq!(
            parse("2024-05-09T22:14:22-05 x").unwrap(),
            "2024-05-10T03:14:22Z"
        );
        assert_eq!(
            parse("level=error time=\"2026-11-21T05:01:12.456Z\" msg=x").unwrap(),
            "2026-11-21T05:01:12.456Z"
        );
        assert_eq!(
            parse("2026-11-21T05:01:02.123456Z conn=3 event=query").unwrap(),
            "2026-11-21T05:01:02.123456Z"
        );
    }

    #[test]
    fn zone_less_uses_the_context_zone() {
        let ny = TimeZone::get("America/New_York").unwrap();
        assert_eq!(
            parse_in("2024-05-10 03:14:22 x", ny.clone()).unwrap(),
            "2024-05-10T07:14:22Z"
        );
        // An explicit offset wins over the context zone.
        assert_eq!(
            parse_in("2024-05-10 03:14:22Z x", ny).unwrap(),
            "2024-05-10T03:14:22Z"
        );
    }

    #[test]
    fn go_apache_syslog_epoch() {
        assert_eq!(
            parse("2024/05/10 03:14:22 read: connection reset").unwrap(),
            "2024-05-10T03:14:22Z"
        );
        assert_eq!(
            parse("2024/05/10 03:14:22.250000 x").unwrap(),
            "2024-05-10T03:14:22.25Z"
        );
        assert_eq!(
            parse("10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.1\" 502").unwrap(),
            "2000-10-10T20:55:36Z"
        );
        assert_eq!(
            parse("May 10 03:14:22 host app[1]: x").unwrap(),
            "2024-05-10T03:14:22Z"
        );
        assert_eq!(
            parse("May  1 03:14:22 host app[1]: x").unwrap(),
            "2024-05-01T03:14:22Z"
        );
        assert_eq!(parse("1715310862 reset").unwrap(), "2024-05-10T03:14:22Z");
        assert_eq!(
            parse("1715310862.25 reset").unwrap(),
            "2024-05-10T03:14:22.25Z"
        );
        assert_eq!(
            parse("1715310862250 reset").unwrap(),
            "2024-05-10T03:14:22.25Z"
        );
        assert_eq!(
            parse("{\"ts\":1715310862,\"msg\":\"x\"}").unwrap(),
            "2024-05-10T03:14:22Z"
        );
    }

    #[test]
    fn syslog_year_wraps_in_january() {
        let ctx = TimeContext {
            tz: TimeZone::UTC,
            year: 2024,
        };
        let mut st = SyslogYear::default();
        let a = find_timestamp(b"Dec 31 23:59:59 h x", &ctx, &mut st).unwrap();
        let b = find_timestamp(b"Jan  1 00:00:01 h x", &ctx, &mut st).unwrap();
        assert_eq!(a.time.to_string(), "2024-12-31T23:59:59Z");
        assert_eq!(b.time.to_string(), "2025-01-01T00:00:01Z");
    }

    #[test]
    fn rejects_what_is_not_a_timestamp() {
        assert_eq!(parse("no time here: connection reset"), None);
        assert_eq!(parse("2024-13-10T03:14:22Z bad month"), None);
        assert_eq!(parse("2024-05-10T25:14:22Z bad hour"), None);
        assert_eq!(parse("id 1715310862 is not a time"), None);
        assert_eq!(parse("12345 short number"), None);
        assert_eq!(parse("Mayday 10 03:14:22"), None);
        // Found by cargo fuzz: a long digit run at the line start overflowed the epoch parser.
        assert_eq!(
            parse("99999999999999999999999999999 connection reset"),
            None
        );
        assert_eq!(digits(b"99999999999999999999", 20), None);
    }

    #[test]
    fn resolution_is_reported() {
        let ctx = TimeContext::default();
        let p = find_timestamp(
            b"2024-05-10T03:14:22.123Z x",
            &ctx,
            &mut SyslogYear::default(),
        )
        .unwrap();
        assert_eq!(p.frac_digits, 3);
        let p =
            find_timestamp(b"2024-05-10T03:14:22Z x", &ctx, &mut SyslogYear::default()).unwrap();
        assert_eq!(p.frac_digits, 0);
    }
}
