//! The wire protocol between `idlereset probe --reverse` (the client) and `idlereset listen`
//! (the responder), as pure functions: what each line means, how it is written, and how an
//! untrusted line is rendered into a log message.
//!
//! The listener faces the network, so every line it reads comes from a stranger until proven
//! otherwise. Lines are ASCII, at most [`MAX_LINE`] bytes including the newline, and parsed by
//! [`parse_hello`] without allocation proportional to the input. The exchange:
//!
//! 1. Client: `IDLERESET CTRL` on a control connection. Listener: `SESSION <token>`, a 128-bit
//!    token (32 hex digits) it drew from the OS CSPRNG. Only the listener chooses tokens, so a
//!    third party cannot name (and take over) somebody else's session.
//! 2. Client: `IDLERESET TEST <token> <rung> <idle_s>` on one new connection per idle duration.
//!    The listener accepts it only from the control connection's source address.
//! 3. Listener, on the control connection: `RESULT <rung> <survived|reset|blackhole|fin> <idle_s>`
//!    once the test connection's fate is known.
//!
//! A listener may refuse a line with `ERR <reason>` before closing.

use std::fmt;

use crate::probe::{Failure, RungResult};

/// Longest line either side accepts, newline included. A TEST line is under 80 bytes.
pub const MAX_LINE: usize = 128;

/// Longest idle duration a TEST line may ask for (TCP_KEEPIDLE's maximum).
pub(crate) const MAX_IDLE_S: u32 = 32767;

/// A session token: 128 bits from the listener's CSPRNG.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token(pub [u8; 16]);

impl Token {
    /// Parse 32 lower- or upper-case hex digits.
    pub(crate) fn parse_hex(s: &str) -> Option<Token> {
        let b = s.as_bytes();
        if b.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, pair) in b.chunks_exact(2).enumerate() {
            let hi = hex_digit(pair[0])?;
            let lo = hex_digit(pair[1])?;
            out[i] = hi << 4 | lo;
        }
        Some(Token(out))
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The full token, as it goes on the wire.
impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// Only a prefix: logs and debug output must not hand out a live token.
impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({:02x}{:02x}..)", self.0[0], self.0[1])
    }
}

impl Token {
    /// A short, non-secret name for logs (the first 4 hex digits).
    pub fn short(&self) -> String {
        format!("{:02x}{:02x}", self.0[0], self.0[1])
    }
}

/// The first line of a connection to the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hello {
    /// `IDLERESET CTRL`: open a session.
    Control,
    /// `IDLERESET TEST <token> <rung> <idle_s>`: one idle test in a session.
    Test {
        /// The session the test belongs to.
        token: Token,
        /// Number of the test in the session; the `RESULT` line repeats it.
        rung: u32,
        /// Idle duration the connection is tested with, seconds.
        idle_s: u32,
    },
}

/// Why a line was refused. Never carries the line itself (see [`describe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The line exceeds [`MAX_LINE`] bytes.
    #[error("line longer than {MAX_LINE} bytes")]
    TooLong,
    /// The line has a byte outside printable ASCII.
    #[error("line has a non-printable byte at offset {offset}")]
    NotText {
        /// Byte offset of the first bad byte.
        offset: usize,
    },
    /// The line does not start with `IDLERESET`.
    #[error("not an idlereset probe line")]
    NotIdlereset,
    /// The verb is neither `CTRL` nor `TEST`.
    #[error("unknown verb")]
    UnknownVerb,
    /// The verb has the wrong number of fields.
    #[error("wrong number of fields")]
    Fields,
    /// A field does not parse.
    #[error("bad {field}")]
    BadField {
        /// Name of the field.
        field: &'static str,
    },
}

/// Split a line (with or without its newline) into printable ASCII fields.
fn fields(line: &[u8]) -> Result<impl Iterator<Item = &str>, WireError> {
    if line.len() > MAX_LINE {
        return Err(WireError::TooLong);
    }
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if let Some(offset) = line
        .iter()
        .position(|&c| !(c == b' ' || c.is_ascii_graphic()))
    {
        return Err(WireError::NotText { offset });
    }
    // Printable ASCII is valid UTF-8.
    let text = std::str::from_utf8(line).map_err(|e| WireError::NotText {
        offset: e.valid_up_to(),
    })?;
    Ok(text.split(' ').filter(|f| !f.is_empty()))
}

/// Parse the first line a connection sends to the listener.
pub fn parse_hello(line: &[u8]) -> Result<Hello, WireError> {
    let mut f = fields(line)?;
    if f.next() != Some("IDLERESET") {
        return Err(WireError::NotIdlereset);
    }
    let hello = match f.next() {
        Some("CTRL") => Hello::Control,
        Some("TEST") => {
            let (Some(token), Some(rung), Some(idle)) = (f.next(), f.next(), f.next()) else {
                return Err(WireError::Fields);
            };
            let token = Token::parse_hex(token).ok_or(WireError::BadField { field: "token" })?;
            let rung = rung
                .parse()
                .map_err(|_| WireError::BadField { field: "rung" })?;
            let idle_s = idle
                .parse()
                .ok()
                .filter(|i| (1..=MAX_IDLE_S).contains(i))
                .ok_or(WireError::BadField { field: "idle" })?;
            Hello::Test {
                token,
                rung,
                idle_s,
            }
        }
        _ => return Err(WireError::UnknownVerb),
    };
    match f.next() {
        Some(_) => Err(WireError::Fields),
        None => Ok(hello),
    }
}

/// Parse the listener's `SESSION <token>` answer.
pub fn parse_session(line: &[u8]) -> Result<Token, WireError> {
    let mut f = fields(line)?;
    match (f.next(), f.next(), f.next()) {
        (Some("SESSION"), Some(t), None) => {
            Token::parse_hex(t).ok_or(WireError::BadField { field: "token" })
        }
        (Some("ERR"), _, _) => Err(WireError::UnknownVerb),
        _ => Err(WireError::Fields),
    }
}

/// Parse a `RESULT` line into (rung, result).
pub fn parse_result(line: &str) -> Option<(u32, RungResult)> {
    let mut f = fields(line.as_bytes()).ok()?;
    let (Some("RESULT"), Some(rung), Some(word), Some(idle), None) =
        (f.next(), f.next(), f.next(), f.next(), f.next())
    else {
        return None;
    };
    let rung = rung.parse().ok()?;
    let idle_s: f64 = idle.parse().ok().filter(|i: &f64| i.is_finite())?;
    let failure = match word {
        "survived" => return Some((rung, RungResult::Survived { idle_s })),
        "reset" => Failure::Reset,
        "blackhole" => Failure::Blackhole,
        "fin" => Failure::Fin,
        _ => return None,
    };
    Some((rung, RungResult::Failed { failure, idle_s }))
}

/// The word a result travels as.
pub fn result_word(r: &RungResult) -> &'static str {
    match r {
        RungResult::Survived { .. } => "survived",
        RungResult::Failed { failure, .. } => match failure {
            Failure::Reset => "reset",
            Failure::Blackhole => "blackhole",
            Failure::Fin => "fin",
            Failure::None => "survived",
        },
    }
}

/// `RESULT <rung> <word> <idle_s>\n`.
pub fn result_line(rung: u32, r: &RungResult) -> String {
    let idle = match r {
        RungResult::Survived { idle_s } | RungResult::Failed { idle_s, .. } => *idle_s,
    };
    format!("RESULT {rung} {} {idle:.3}\n", result_word(r))
}

/// The client's first line on a control connection.
pub const CONTROL_HELLO: &str = "IDLERESET CTRL\n";

/// The client's first line on a test connection.
pub fn test_hello(token: &Token, rung: u32, idle_s: u32) -> String {
    format!("IDLERESET TEST {token} {rung} {idle_s}\n")
}

/// The listener's answer to a control hello.
pub fn session_line(token: &Token) -> String {
    format!("SESSION {token}\n")
}

/// Untrusted bytes for a log line: at most 32 of them, non-printables escaped, and the total
/// length, so a hostile peer can neither flood the log nor inject control characters.
pub fn describe(bytes: &[u8]) -> String {
    let shown: String = bytes
        .iter()
        .take(32)
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect();
    let more = if bytes.len() > 32 { "..." } else { "" };
    format!("\"{shown}{more}\" ({} bytes)", bytes.len())
}

/// Whether `--allow` lets `peer` connect: an empty list allows everyone; IPv4 peers seen on a
/// dual-stack socket (`::ffff:a.b.c.d`) match IPv4 networks.
pub fn allowed(allow: &[ipnet::IpNet], peer: std::net::IpAddr) -> bool {
    let peer = peer.to_canonical();
    allow.is_empty() || allow.iter().any(|n| n.contains(&peer))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "00112233445566778899aabbccddeeff";

    #[test]
    fn hellos_parse() {
        assert_eq!(parse_hello(b"IDLERESET CTRL\n"), Ok(Hello::Control));
        let Ok(Hello::Test {
            token,
            rung,
            idle_s,
        }) = parse_hello(format!("IDLERESET TEST {T} 7 30\r\n").as_bytes())
        else {
            panic!("TEST line refused");
        };
        assert_eq!((token.to_string().as_str(), rung, idle_s), (T, 7, 30));
    }

    #[test]
    fn bad_hellos_are_refused_with_a_reason() {
        let cases: &[(&[u8], WireError)] = &[
            (b"GET / HTTP/1.1\n", WireError::NotIdlereset),
            (b"IDLERESET CTRL 1234\n", WireError::Fields),
            (b"IDLERESET HELLO\n", WireError::UnknownVerb),
            (
                b"IDLERESET TEST abc 1 1\n",
                WireError::BadField { field: "token" },
            ),
            (b"IDLERESET\tCTRL\n", WireError::NotText { offset: 9 }),
            (b"\xff\n", WireError::NotText { offset: 0 }),
            (&[b'A'; MAX_LINE + 1], WireError::TooLong),
        ];
        for (line, want) in cases {
            assert_eq!(parse_hello(line), Err(*want), "{}", describe(line));
        }
        for idle in ["0", "32768", "-1", "1e3"] {
            let l = format!("IDLERESET TEST {T} 1 {idle}\n");
            assert_eq!(
                parse_hello(l.as_bytes()),
                Err(WireError::BadField { field: "idle" })
            );
        }
        let l = format!("IDLERESET TEST {T} 99999999999 1\n");
        assert_eq!(
            parse_hello(l.as_bytes()),
            Err(WireError::BadField { field: "rung" })
        );
    }

    #[test]
    fn result_lines_round_trip() {
        let r = RungResult::Failed {
            failure: Failure::Reset,
            idle_s: 8.0,
        };
        assert_eq!(result_line(8, &r), "RESULT 8 reset 8.000\n");
        assert_eq!(parse_result(&result_line(8, &r)), Some((8, r)));
        assert_eq!(
            parse_result("RESULT 7 survived 7.000"),
            Some((7, RungResult::Survived { idle_s: 7.0 }))
        );
        assert_eq!(parse_result("RESULT x reset 1"), None);
        assert_eq!(parse_result("RESULT 1 reset NaN"), None);
        assert_eq!(parse_result("RESULT 1 reset 1 extra"), None);
        assert_eq!(parse_result("garbage"), None);
    }

    #[test]
    fn session_lines_round_trip_and_debug_hides_the_token() {
        let t = Token([0xab; 16]);
        assert_eq!(parse_session(session_line(&t).as_bytes()), Ok(t));
        assert!(parse_session(b"ERR too many sessions\n").is_err());
        assert_eq!(format!("{t:?}"), "Token(abab..)");
        assert_eq!(t.short(), "abab");
    }

    #[test]
    fn allow_list_matches_mapped_ipv4() {
        let nets: Vec<ipnet::IpNet> = ["198.18.0.0/15", "2001:db8::/32"]
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect();
        let ip = |s: &str| s.parse::<std::net::IpAddr>().ok();
        let ok = |s: &str| ip(s).is_some_and(|a| allowed(&nets, a));
        assert!(ok("198.19.1.1"));
        assert!(ok("::ffff:198.18.0.9"));
        assert!(ok("2001:db8::1"));
        assert!(!ok("10.0.0.1"));
        assert!(!ok("::ffff:10.0.0.1"));
        assert!(ip("10.0.0.1").is_some_and(|a| allowed(&[], a)));
    }

    #[test]
    fn describe_is_bounded_and_escaped() {
        let d = describe(&[0x1b; 10_000]);
        assert!(d.len() < 200, "{d}");
        assert!(d.ends_with("(10000 bytes)"));
        assert!(!d.contains('\x1b'));
        assert_eq!(describe(b"hi\n"), "\"hi\\n\" (3 bytes)");
    }
}
