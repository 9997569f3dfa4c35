//! The idle bracket: when log lines can be tied to one connection, the longest idle a connection
//! survived and the shortest idle after which it failed bound the path's idle timeout.
//!
//! A connection is recognised by the identities real logs print (see [`keyed`]): `conn=ID`,
//! `conn_id=ID`, `connection_id=ID`, Netty channels `[id: 0x1a2b3c4d, L:/.. - R:/..]`, JDBC
//! objects `PgConnection@5a2e4553`, 4-tuples `198.18.1.10:40000->198.18.2.10:5432` (IPv6 as
//! `[::1]:5->...`), `connection N` / `connection #N`, `conn3`, and backend pids (`pid=12345`,
//! `backend 12345`). The idle before a line is the line's own idle phrase when it has one
//! (`idle_s=8.0`, `idle_ms=250`, `idle=8s`, `idle for 8s`, `after 8.0s idle`: the application
//! knows best), otherwise the gap since the previous line of the same connection. A success after
//! idle `g` means the timeout is above `g`; a failure after idle `g` means it is at most `g`.
//! After a failure the connection is gone: the next line with the same id belongs to a new
//! connection and the gap across the failure is not an idle.
//!
//! [`BracketState`] keeps this as running maxima and minima with one timestamp per live
//! connection (at most [`MAX_TRACKED`], oldest forgotten first) and a bounded sample of idles
//! for the plot, so memory does not grow with the number of lines.

use std::collections::HashMap;

use serde::Serialize;

use super::reservoir::Reservoir;

/// Literal text present in every line whose key [`keyed`] can find (matched
/// ASCII-case-insensitively): a scan only parses lines containing one of them.
pub(crate) const MARKERS: [&str; 5] = ["conn", "->", "pid=", "backend ", "[id: 0x"];

/// Kinds of connection identity, indexed by what [`keyed`] returns.
pub const KINDS: [&str; 10] = [
    "conn=",
    "conn_id=",
    "connection_id=",
    "netty-channel",
    "object@hash",
    "4-tuple",
    "connection N",
    "connN",
    "pid=",
    "backend N",
];

/// Live connections tracked at once for the bracket.
pub const MAX_TRACKED: usize = 65_536;
/// Idle samples kept for the plot.
pub const MAX_SAMPLES: usize = 20_000;

/// Extract a connection key from a line.
#[cfg(test)]
pub(crate) fn connection_key(line: &[u8]) -> Option<&[u8]> {
    keyed(line).map(|(_, k)| k)
}

fn ident_len(v: &[u8]) -> usize {
    v.iter()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b':'))
        .count()
}

/// Extract a connection key and the index in [`KINDS`] of the form it was found in.
pub fn keyed(line: &[u8]) -> Option<(usize, &[u8])> {
    for (i, key) in [&b"conn="[..], b"conn_id=", b"connection_id="]
        .iter()
        .enumerate()
    {
        if let Some(pos) = find_word(line, key) {
            let v = &line[pos + key.len()..];
            let v = v.strip_prefix(b"\"").unwrap_or(v);
            let n = ident_len(v);
            if n > 0 {
                return Some((i, &v[..n]));
            }
        }
    }
    if let Some(k) = netty_channel(line) {
        return Some((3, k));
    }
    if let Some(k) = object_hash(line) {
        return Some((4, k));
    }
    if let Some(t) = four_tuple(line) {
        return Some((5, t));
    }
    if let Some(k) = connection_number(line) {
        return Some((6, k));
    }
    if let Some(k) = conn_digits(line) {
        return Some((7, k));
    }
    if let Some(pos) = find_word(line, b"pid=") {
        let v = &line[pos + 4..];
        let n = v.iter().take_while(|c| c.is_ascii_digit()).count();
        if n > 0 {
            return Some((8, &v[..n]));
        }
    }
    let mut from = 0;
    while let Some(p) = find_word(&line[from..], b"backend ") {
        let v = &line[from + p + 8..];
        let n = v.iter().take_while(|c| c.is_ascii_digit()).count();
        if n > 0 && !v.get(n).is_some_and(u8::is_ascii_alphanumeric) {
            return Some((9, &v[..n]));
        }
        from += p + 8;
    }
    None
}

/// Netty's channel id: `[id: 0x1a2b3c4d, L:/10.0.0.1:5000 - R:/10.0.0.2:6000]` gives `0x1a2b3c4d`.
fn netty_channel(line: &[u8]) -> Option<&[u8]> {
    let p = memchr::memmem::find(line, b"[id: 0x")?;
    let v = &line[p + 5..];
    let n = 2 + v[2..].iter().take_while(|c| c.is_ascii_hexdigit()).count();
    (n > 2).then(|| &v[..n])
}

/// A JDBC-style object identity `PgConnection@5a2e4553`: the class name ending in `Connection`
/// and its identity hash. With a pool's proxy wrapping the physical connection
/// (`HikariProxyConnection@1 wrapping org.postgresql.jdbc.PgConnection@5a2e4553`), the last one
/// (the physical connection) is the key.
fn object_hash(line: &[u8]) -> Option<&[u8]> {
    let mut found = None;
    let mut from = 0;
    while let Some(p) = memchr::memmem::find(&line[from..], b"onnection@") {
        let at = from + p;
        let hash_start = at + b"onnection@".len();
        let hex = line[hash_start..]
            .iter()
            .take_while(|c| c.is_ascii_hexdigit())
            .count();
        let start = at.saturating_sub(1);
        let class_start = start
            - line[..start]
                .iter()
                .rev()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                .count();
        if hex >= 4 && matches!(line.get(start), Some(b'c' | b'C')) {
            found = Some(&line[class_start..hash_start + hex]);
        }
        from = hash_start;
    }
    found
}

/// `connection 17`, `Connection #5`.
fn connection_number(line: &[u8]) -> Option<&[u8]> {
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
            return Some(&v[..n]);
        }
        from = start;
    }
    None
}

/// `conn3` (a word: `conn` directly followed by digits).
fn conn_digits(line: &[u8]) -> Option<&[u8]> {
    let mut from = 0;
    while let Some(p) = find_word(&line[from..], b"conn") {
        let at = from + p;
        let v = &line[at + 4..];
        let n = v.iter().take_while(|c| c.is_ascii_digit()).count();
        if n > 0
            && !v
                .get(n)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        {
            return Some(&line[at..at + 4 + n]);
        }
        from = at + 4;
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
    let mut from = 0;
    while let Some(p) = memchr::memmem::find(&line[from..], b"->") {
        let arrow = from + p;
        if let Some(t) = tuple_at(line, arrow) {
            return Some(t);
        }
        from = arrow + 2;
    }
    None
}

fn tuple_at(line: &[u8], arrow: usize) -> Option<&[u8]> {
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

/// A duration at the start of `b`: `8`, `8.0s`, `250ms`, `8 seconds`, `2m`, `1h`. Returns seconds
/// and whether a unit was given.
fn duration_at(b: &[u8]) -> Option<(f64, bool)> {
    let n = b
        .iter()
        .take_while(|c| c.is_ascii_digit() || **c == b'.')
        .count();
    let x: f64 = std::str::from_utf8(&b[..n]).ok()?.parse().ok()?;
    let rest = &b[n..];
    let spaced = rest.first() == Some(&b' ');
    let word = if spaced { &rest[1..] } else { rest };
    let unit_len = word.iter().take_while(|c| c.is_ascii_alphabetic()).count();
    let scale = match &word[..unit_len] {
        b"ms" | b"msec" | b"millis" | b"milliseconds" => Some(0.001),
        b"s" | b"sec" | b"secs" | b"second" | b"seconds" => Some(1.0),
        b"m" | b"min" | b"mins" | b"minute" | b"minutes" => Some(60.0),
        b"h" | b"hour" | b"hours" => Some(3600.0),
        // `8s` with an unknown unit glued on is not a duration; `8 apples` is a bare number.
        _ if unit_len > 0 && !spaced => return None,
        _ => None,
    };
    let s = x * scale.unwrap_or(1.0);
    (s.is_finite() && s >= 0.0).then_some((s, scale.is_some()))
}

/// The idle the line states, in seconds: `idle_s=8.0`, `idle_ms=250`, `idle=8s`, `idle for 8s`,
/// `after 8.0s idle`.
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
    if let Some(pos) = find_word(line, b"idle=") {
        return duration_at(&line[pos + 5..]).map(|(x, _)| x);
    }
    if let Some(pos) = find_word(line, b"idle for ")
        && let Some((x, true)) = duration_at(&line[pos + 9..])
    {
        return Some(x);
    }
    let mut from = 0;
    while let Some(p) = find_word(&line[from..], b"after ") {
        let v = &line[from + p + 6..];
        let n = v
            .iter()
            .take_while(|c| !matches!(c, b'\n' | b',' | b';' | b')'))
            .take(24)
            .count();
        let phrase = &v[..n];
        if let Some(idle_at) = memchr::memmem::find(phrase, b" idle")
            && let Some((x, true)) = duration_at(&phrase[..idle_at])
        {
            return Some(x);
        }
        from += p + 6;
    }
    None
}

/// What the lines tied to connections say about the idle timeout.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bracket {
    /// Longest idle a connection survived (the timeout is above it).
    pub low: Option<f64>,
    /// Shortest idle after which a connection failed (the timeout is at most this).
    pub high: Option<f64>,
    /// Idle periods a connection survived.
    pub survived: usize,
    /// Idle periods that ended in a failure.
    pub failed: usize,
    /// Distinct connections seen.
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
    /// How long the connection had been idle before the line, seconds.
    pub idle_s: f64,
    /// Whether the line reports a failure (else the connection was used successfully).
    pub failed: bool,
}

/// One line tied to a connection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnObservation<'a> {
    /// Seconds since the epoch.
    pub t: f64,
    /// Index in [`KINDS`].
    pub kind: usize,
    /// The connection's identity as written in the line.
    pub key: &'a [u8],
    /// Whether the line reports a failure.
    pub failed: bool,
    /// The idle the line states, if it does.
    pub idle_s: Option<f64>,
}

/// The bracket of one kind of identity, accumulated.
#[derive(Debug, Clone, Copy, Default)]
struct KindAcc {
    low: Option<f64>,
    high: Option<f64>,
    survived: usize,
    failed: usize,
    connections: usize,
    failure_lines: usize,
    lines: usize,
}

/// The bracket, accumulated line by line in time order with bounded memory.
#[derive(Debug, Clone)]
pub struct BracketState {
    last_ok: HashMap<(u8, Box<[u8]>), f64>,
    seen_keys: HashMap<(u8, Box<[u8]>), ()>,
    kinds: [KindAcc; KINDS.len()],
    samples: Reservoir<(u8, IdleSample)>,
    /// Connections forgotten because more than [`MAX_TRACKED`] were live.
    pub evicted: u64,
}

impl Default for BracketState {
    fn default() -> Self {
        BracketState {
            last_ok: HashMap::new(),
            seen_keys: HashMap::new(),
            kinds: [KindAcc::default(); KINDS.len()],
            samples: Reservoir::new(MAX_SAMPLES),
            evicted: 0,
        }
    }
}

/// The idle between a connection's previous line at `prev` and its line at `t`, when it is one.
///
/// A line dated before the previous one (files given newest first, a clock stepped back, an
/// absurd date such as `0000-01-01`) measured nothing, and neither did a gap longer than
/// [`MIN_MARGIN_S`](super::outliers::MIN_MARGIN_S), the distance at which a timestamp counts as
/// absurd: such a gap crosses an absurd date, not an idle. Neither is a sample.
fn gap_sample(prev: f64, t: f64) -> Option<f64> {
    let g = t - prev;
    (0.0..=super::outliers::MIN_MARGIN_S)
        .contains(&g)
        .then_some(g)
}

impl BracketState {
    /// Take one line. Lines of one connection should come in time order; a line dated before
    /// the connection's previous one gives no idle sample (see `gap_sample`).
    pub fn observe(&mut self, o: ConnObservation<'_>) {
        let Some(acc) = self.kinds.get_mut(o.kind) else {
            return;
        };
        let kind = o.kind as u8;
        acc.lines += 1;
        if o.failed {
            acc.failure_lines += 1;
        }
        let id = (kind, Box::<[u8]>::from(o.key));
        if self.seen_keys.len() < MAX_TRACKED && !self.seen_keys.contains_key(&id) {
            self.seen_keys.insert(id.clone(), ());
            acc.connections += 1;
        }
        let prev = self.last_ok.get(&id).copied();
        if let Some(g) = o.idle_s.or_else(|| prev.and_then(|p| gap_sample(p, o.t))) {
            if o.failed {
                acc.failed += 1;
                acc.high = Some(acc.high.map_or(g, |h| h.min(g)));
            } else {
                acc.survived += 1;
                acc.low = Some(acc.low.map_or(g, |lo| lo.max(g)));
            }
            self.samples.offer((
                kind,
                IdleSample {
                    t: o.t,
                    idle_s: g,
                    failed: o.failed,
                },
            ));
        }
        if o.failed {
            self.last_ok.remove(&id);
        } else {
            if self.last_ok.len() >= MAX_TRACKED && !self.last_ok.contains_key(&id) {
                self.forget_oldest();
            }
            self.last_ok.insert(id, o.t);
        }
    }

    /// Forget the older half of the live connections (by last activity).
    fn forget_oldest(&mut self) {
        let before = self.last_ok.len();
        let (lo, hi) = self
            .last_ok
            .values()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &t| {
                (l.min(t), h.max(t))
            });
        let mid = (lo + hi) / 2.0;
        self.last_ok.retain(|_, t| *t >= mid);
        if self.last_ok.len() * 4 > before * 3 {
            self.last_ok.clear();
        }
        self.evicted += (before - self.last_ok.len()) as u64;
    }

    fn used(&self) -> impl Iterator<Item = (usize, &KindAcc)> {
        self.kinds
            .iter()
            .enumerate()
            .filter(|(_, k)| k.failure_lines > 0)
    }

    /// The bracket over the kinds of identity the failures carried; `None` when no failure
    /// carried one.
    pub fn bracket(&self) -> Option<Bracket> {
        let mut b: Option<Bracket> = None;
        for (_, k) in self.used() {
            let acc = b.get_or_insert(Bracket {
                low: None,
                high: None,
                survived: 0,
                failed: 0,
                connections: 0,
            });
            acc.low = max_opt(acc.low, k.low);
            acc.high = min_opt(acc.high, k.high);
            acc.survived += k.survived;
            acc.failed += k.failed;
            acc.connections += k.connections;
        }
        b
    }

    /// Activity lines (not failures) of the kinds the failures carried.
    pub(crate) fn activity_lines(&self) -> usize {
        self.used().map(|(_, k)| k.lines - k.failure_lines).sum()
    }

    /// Names of the kinds of identity the failures carried.
    pub(crate) fn kinds_used(&self) -> Vec<&'static str> {
        self.used().map(|(i, _)| KINDS[i]).collect()
    }

    /// A sample (all of them when fewer than [`MAX_SAMPLES`]) of the idles of the kinds the
    /// failures carried, sorted by time.
    pub fn samples(&self) -> Vec<IdleSample> {
        let used: Vec<usize> = self.used().map(|(i, _)| i).collect();
        let mut out: Vec<IdleSample> = self
            .samples
            .items()
            .iter()
            .filter(|(k, _)| used.contains(&usize::from(*k)))
            .map(|(_, s)| *s)
            .collect();
        out.sort_by(|a, b| a.t.total_cmp(&b.t));
        out
    }
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

fn min_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
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
    fn identities_of_real_logs() {
        assert_eq!(
            key(
                "HikariPool-1 - Failed to validate connection org.postgresql.jdbc.PgConnection@5a2e4553 (This connection has been closed.)"
            ),
            Some("PgConnection@5a2e4553")
        );
        assert_eq!(
            key("HikariProxyConnection@1234567 wrapping org.postgresql.jdbc.PgConnection@5a2e4553"),
            Some("PgConnection@5a2e4553")
        );
        assert_eq!(
            key("[id: 0x1a2b3c4d, L:/10.0.0.1:5000 - R:/10.0.0.2:6000] READ COMPLETE"),
            Some("0x1a2b3c4d")
        );
        assert_eq!(key("pool: conn3 returned"), Some("conn3"));
        assert_eq!(key("conn3x returned"), None);
        assert_eq!(key("query ok pid=12345"), Some("12345"));
        assert_eq!(key("terminating backend 4242 due to idle"), Some("4242"));
        assert_eq!(key("ppid=4"), None);
    }

    #[test]
    fn idle_fields() {
        assert_eq!(idle_field(b"conn=3 idle_s=9.1 x"), Some(9.1));
        assert_eq!(idle_field(b"idle_ms=250"), Some(0.25));
        assert_eq!(idle_field(b"max_idle_s=5"), None);
        assert_eq!(idle_field(b"idle_s=abc"), None);
        assert_eq!(idle_field(b"query failed after 8.0s idle"), Some(8.0));
        assert_eq!(
            idle_field(b"reset after 2 minutes idle, retrying"),
            Some(120.0)
        );
        assert_eq!(idle_field(b"conn was idle for 8s"), Some(8.0));
        assert_eq!(idle_field(b"idle for 250ms"), Some(0.25));
        assert_eq!(idle_field(b"idle=8s"), Some(8.0));
        assert_eq!(idle_field(b"retry after 3 attempts, idle"), None);
        assert_eq!(idle_field(b"idle for a while"), None);
    }

    fn obs(s: &mut BracketState, t: f64, key: &str, failed: bool, idle: Option<f64>) {
        s.observe(ConnObservation {
            t,
            kind: 0,
            key: key.as_bytes(),
            failed,
            idle_s: idle,
        });
    }

    #[test]
    fn bracket_from_gaps() {
        // conn a: gaps 5, 8 survive, then fails after 12; conn b survives 9, fails after 15.
        let mut s = BracketState::default();
        for (t, k, f) in [
            (0.0, "a", false),
            (1.0, "b", false),
            (5.0, "a", false),
            (10.0, "b", false),
            (13.0, "a", false),
            (25.0, "a", true),
            (25.0, "b", true),
            (26.0, "a", false), // new connection: no idle sample across the failure
        ] {
            obs(&mut s, t, k, f, None);
        }
        let b = s.bracket().unwrap();
        assert_eq!((b.low, b.high), (Some(9.0), Some(12.0)));
        assert_eq!((b.survived, b.failed, b.connections), (3, 2, 2));
        assert!(b.consistent());
        assert_eq!(s.samples().len(), 5);
    }

    #[test]
    fn explicit_idle_wins_and_inconsistency_is_visible() {
        let mut s = BracketState::default();
        obs(&mut s, 0.0, "a", false, Some(0.0));
        obs(&mut s, 100.0, "a", false, Some(60.0));
        obs(&mut s, 101.0, "a", true, Some(1.0));
        let b = s.bracket().unwrap();
        assert_eq!((b.low, b.high), (Some(60.0), Some(1.0)));
        assert!(!b.consistent());
    }

    #[test]
    fn memory_is_bounded_by_live_connections() {
        let mut s = BracketState::default();
        for i in 0..(MAX_TRACKED as u64 * 3) {
            let k = i.to_string();
            obs(&mut s, i as f64, &k, false, None);
        }
        assert!(s.last_ok.len() <= MAX_TRACKED);
        assert!(s.evicted > 0);
        assert!(s.bracket().is_none(), "no failure: no bracket");
    }
}
