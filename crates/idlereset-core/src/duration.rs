//! Human durations on the command line and in files: `900`, `900s`, `15m`, `2h`, `1h30m`,
//! `1.5s`, `250ms`, `5d`.
//!
//! Hand-rolled rather than `humantime`: the grammar is ten lines, and errors must name the
//! offending text in our own words.

use std::fmt;
use std::time::Duration;

/// Why a duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The text was empty or only blanks.
    #[error("empty duration")]
    Empty,
    /// The text is not a number with an optional unit.
    #[error("invalid duration {text:?}: {why} (examples: 900, 900s, 15m, 2h, 1h30m, 250ms)")]
    Invalid {
        /// The text as given.
        text: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// Parse a duration; a bare number means seconds.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(DurationError::Empty);
    }
    let invalid = |why| DurationError::Invalid {
        text: text.to_string(),
        why,
    };
    if let Ok(secs) = t.parse::<f64>() {
        return secs_to_duration(secs)
            .ok_or_else(|| invalid("must be a finite, non-negative number"));
    }
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| invalid("a number needs a unit after it when units are used"))?;
        if num_len == 0 {
            return Err(invalid("expected a number"));
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| invalid("bad number"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let factor = match unit.trim() {
            "ms" => 0.001,
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" | "hr" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86400.0,
            _ => return Err(invalid("unknown unit (use ms, s, m, h or d)")),
        };
        total += value * factor;
    }
    secs_to_duration(total).ok_or_else(|| invalid("out of range"))
}

fn secs_to_duration(secs: f64) -> Option<Duration> {
    (secs.is_finite() && (0.0..1e12).contains(&secs)).then(|| Duration::from_secs_f64(secs))
}

/// A duration printed the way an engineer writes it: `900 s (15 min)`, `43200 s (12 h)`.
#[derive(Debug, Clone, Copy)]
pub struct Human(pub f64);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        if s < 10.0 {
            write!(f, "{s:.1} s")
        } else if s < 120.0 {
            write!(f, "{s:.0} s")
        } else if s < 7200.0 {
            write!(f, "{s:.0} s ({:.1} min)", s / 60.0)
        } else if s < 172_800.0 {
            write!(f, "{s:.0} s ({:.1} h)", s / 3600.0)
        } else {
            write!(f, "{s:.0} s ({:.1} d)", s / 86400.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse_duration("900").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("900s").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
    }

    #[test]
    fn rejects_garbage_with_the_text() {
        let e = parse_duration("12q").unwrap_err();
        assert!(e.to_string().contains("12q"), "{e}");
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-5").is_err());
        assert!(parse_duration("h").is_err());
    }

    #[test]
    fn human_output() {
        assert_eq!(Human(900.0).to_string(), "900 s (15.0 min)");
        assert_eq!(Human(43200.0).to_string(), "43200 s (12.0 h)");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in ".{0,20}") {
            let _ = parse_duration(&s);
        }
    }
}
