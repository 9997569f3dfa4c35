//! The idle bracket: when log lines can be tied to one connection, the longest idle a connection
//! survived and the shortest idle after which it failed bound the path's idle timeout.
//!
//! A connection is recognised by `conn=ID`, `conn_id=ID`, `connection_id=ID`, `connection N` /
//! `connection #N`, or a 4-tuple `198.18.1.10:40000->198.18.2.10:5432` (IPv6 as `[::1]:5->...`).
//! The idle before a line is the line's own `idle_s=SECONDS` / `idle_ms=MILLIS` field when it
//! has one (the application knows best), otherwise the gap since the previous line of the same
//! connection. A success after idle `g` means the timeout is above `g`; a failure after idle `g`
//! means it is at most `g`. After a failure the connection is gone: the next line with the same
//! id belongs to a new connection and the gap across the failure is not an idle.

use std::collections::HashMap;

use serde::Serialize;

/// Literal text present in every line whose key [`keyed`] finds, per kind of key: a second
/// pass only needs to look at lines containing the markers the failures used.
pub const MARKERS: [&[u8]; 5] = [
    b"conn=",
    b"conn_id=",
    b"connection_id=",
    b"->",
    b"onnection ",
];

/// Extract a connection key from a line.
pub fn connection_key(line: &[u8]) -> Option<&[u8]> {
    keyed(line).map(|(_, k)| k)
}

/// Extract a connection key and the index in [`MARKERS`] of the form it was found in.
pub fn keyed(line: &[u8]) -> Option<(usize, &[u8])> {
    for (i, key) in MARKERS[..3].iter().enumerate() {
        if let Some(pos) = find_word(line, key) {
            let v = &line[pos + key.len()..];
            let v = v.strip_prefix(b"\"").unwrap_or(v);
            let n = v
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b':'))
                .count();
            if n > 0 {
                return Some((i, &v[..n]));
            }
        }
    }
    if let Some(t) = four_tuple(line) {
        return Some((3, t));
    }
    let mut from = 0;
    while let Some(p) = memchr::memmem::find(&line[from..], b"onnection ") {
        let at = from + p;
        let start = at + b"onnection ".len();
        let first_ok = at >= 1
            && matches!(line[at - 1], b'c' | b'C')
            && (at < 2 || !line[at - 2].is_ascii_alphanumeric());
        let v = &line[start..];
        let v = v.strip_prefix(b"#").unwrap_or(v);
        let n = v.iter().take_while(|c| c.is_ascii_digit()).count();
        if first_ok && n > 0 && !v.get(n).is_some_and(|c| c.is_ascii_alphanumeric()) {
            return Some((4, &v[..n]));
        }
        from = start;
    }
    None
}

/// `key` at `line` start or after a non-identifier byte.
fn find_word(line: &[u8], key: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(p) = memchr::memmem::find(&line[from..], key) {
        let at = from + p;
        if at == 0 || !(line[at - 1].is_ascii_alphanumeric() || line[at - 1] == b'_') {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// `addr:port->addr:port` (spaces around the arrow allowed).
fn four_tuple(line: &[u8]) -> Option<&[u8]> {
    let arrow = memchr::memmem::find(line, b"->")?;
    let is_addr = |c: &u8| c.is_ascii_hexdigit() || matches!(c, b'.' | b':' | b'[' | b']');
    let mut l = arrow;
    while l > 0 && line[l - 1] == b' ' {
        l -= 1;
    }
    let start = l - line[..l].iter().rev().take_while(|c| is_addr(c)).count();
    let mut r = arrow + 2;
    while line.get(r) == Some(&b' ') {
        r += 1;
    }
    let mut end = r + line[r..].iter().take_while(|c| is_addr(c)).count();
    // `...:5432: read: ...` (Go): the colon after the port is punctuation.
    while end > r && line[end - 1] == b':' {
        end -= 1;
    }
    let has_port = |s: &[u8]| {
        let colon = s.iter().rposition(|&c| c == b':');
        colon.is_some_and(|i| i + 1 < s.len() && s[i + 1..].iter().all(u8::is_ascii_digit))
            && s.iter().any(|&c| c == b'.' || c == b']')
    };
    (start < l && r < end && has_port(&line[start..l]) && has_port(&line[r..end]))
        .then(|| &line[start..end])
}

/// The `idle_s=` / `idle_ms=` field of a line, in seconds.
pub fn idle_field(line: &[u8]) -> Option<f64> {
    for (key, scale) in [(&b"idle_s="[..], 1.0), (b"idle_ms=", 0.001)] {
        if let Some(pos) = find_word(line, key) {
            let v = &line[pos + key.len()..];
            let n = v
                .iter()
                .take_while(|c| c.is_ascii_digit() || **c == b'.')
                .count();
            let x: f64 = std::str::from_utf8(&v[..n]).ok()?.parse().ok()?;
            return (x.is_finite() && x >= 0.0).then_some(x * scale);
        }
    }
    None
}

/// One line tied to a connection.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnLine {
    /// Seconds since the epoch.
    pub t: f64,
    pub key: String,
    pub failed: bool,
    pub idle_s: Option<f64>,
}

/// What the lines tied to connections say about the idle timeout.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bracket {
    /// Longest idle a connection survived (the timeout is above it).
    pub low: Option<f64>,
    /// Shortest idle after which a connection failed (the timeout is at most this).
    pub high: Option<f64>,
    pub survived: usize,
    pub failed: usize,
    pub connections: usize,
}

impl Bracket {
    /// Both sides known and `low < high`: the failures are explained by an idle timeout.
    pub fn consistent(&self) -> bool {
        matches!((self.low, self.high), (Some(l), Some(h)) if l < h)
    }
}

/// One idle period: how long a connection was idle before a line, and whether it survived.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct IdleSample {
    /// Time of the line, seconds since the epoch.
    pub t: f64,
    pub idle_s: f64,
    pub failed: bool,
}

/// The idle before every line whose idle is known (explicit field, or a previous line of the
/// same live connection), sorted by time. `lines` may come in any order.
pub fn samples(lines: &[ConnLine]) -> Vec<IdleSample> {
    let mut by_conn: HashMap<&str, Vec<&ConnLine>> = HashMap::new();
    for l in lines {
        by_conn.entry(&l.key).or_default().push(l);
    }
    let mut out = Vec::new();
    for list in by_conn.values_mut() {
        list.sort_by(|a, b| a.t.total_cmp(&b.t));
        let mut prev: Option<f64> = None;
        for l in list.iter() {
            if let Some(g) = l.idle_s.or_else(|| prev.map(|p| (l.t - p).max(0.0))) {
                out.push(IdleSample {
                    t: l.t,
                    idle_s: g,
                    failed: l.failed,
                });
            }
            prev = (!l.failed).then_some(l.t);
        }
    }
    out.sort_by(|a, b| a.t.total_cmp(&b.t));
    out
}

/// Compute the bracket. `lines` may come in any order.
pub fn bracket(lines: &[ConnLine]) -> Bracket {
    let connections = lines
        .iter()
        .map(|l| l.key.as_str())
        .collect::<std::collections::HashSet<_>>()
        .len();
    let mut b = Bracket {
        low: None,
        high: None,
        survived: 0,
        failed: 0,
        connections,
    };
    for s in samples(lines) {
        if s.failed {
            b.failed += 1;
            b.high = Some(b.high.map_or(s.idle_s, |h| h.min(s.idle_s)));
        } else {
            b.survived += 1;
            b.low = Some(b.low.map_or(s.idle_s, |lo| lo.max(s.idle_s)));
        }
    }
    b
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key(s: &str) -> Option<&str> {
        connection_key(s.as_bytes()).map(|k| std::str::from_utf8(k).unwrap())
    }

    #[test]
    fn keys() {
        assert_eq!(key("2026-11-21T05:01:02Z conn=3 event=query ok"), Some("3"));
        assert_eq!(key("x conn_id=\"ab-12\" y"), Some("ab-12"));
        assert_eq!(key("x myconn=4 y"), None);
        assert_eq!(key("closing connection 17 after error"), Some("17"));
        assert_eq!(key("Connection #5 reset"), Some("5"));
        assert_eq!(key("connection reset by peer"), None);
        assert_eq!(
            key("read tcp 198.18.1.10:40000->198.18.2.10:5432: read: connection reset"),
            Some("198.18.1.10:40000->198.18.2.10:5432")
        );
        assert_eq!(
            key("flow [2001:db8::1]:5 -> [2001:db8::2]:443 reset"),
            Some("[2001:db8::1]:5 -> [2001:db8::2]:443")
        );
        assert_eq!(key("a -> b"), None);
    }

    #[test]
    fn idle_fields() {
        assert_eq!(idle_field(b"conn=3 idle_s=9.1 x"), Some(9.1));
        assert_eq!(idle_field(b"idle_ms=250"), Some(0.25));
        assert_eq!(idle_field(b"max_idle_s=5"), None);
        assert_eq!(idle_field(b"idle_s=abc"), None);
    }

    fn line(t: f64, key: &str, failed: bool, idle: Option<f64>) -> ConnLine {
        ConnLine {
            t,
            key: key.into(),
            failed,
            idle_s: idle,
        }
    }

    #[test]
    fn bracket_from_gaps() {
        // conn a: gaps 5, 8 survive, then fails after 12; conn b survives 9, fails after 15.
        let lines = vec![
            line(0.0, "a", false, None),
            line(5.0, "a", false, None),
            line(13.0, "a", false, None),
            line(25.0, "a", true, None),
            line(26.0, "a", false, None), // new connection: no idle sample across the failure
            line(1.0, "b", false, None),
            line(10.0, "b", false, None),
            line(25.0, "b", true, None),
        ];
        let b = bracket(&lines);
        assert_eq!((b.low, b.high), (Some(9.0), Some(12.0)));
        assert_eq!((b.survived, b.failed, b.connections), (3, 2, 2));
        assert!(b.consistent());
    }

    #[test]
    fn explicit_idle_wins_and_inconsistency_is_visible() {
        let lines = vec![
            line(0.0, "a", false, Some(0.0)),
            line(100.0, "a", false, Some(60.0)),
            line(101.0, "a", true, Some(1.0)),
        ];
        let b = bracket(&lines);
        assert_eq!((b.low, b.high), (Some(60.0), Some(1.0)));
        assert!(!b.consistent());
    }
}
