//! What a reset looks like in a log line: built-in signatures for common stacks, plus the
//! user's own `--match REGEX` patterns.
//!
//! The built-ins are plain literals matched ASCII-case-insensitively by one Aho-Corasick
//! automaton, which uses a SIMD prefilter; this is what lets `idlereset logs` scan a gigabyte
//! at grep speed. User patterns are regular expressions and run through the `regex` crate in
//! multi-line mode (`^` and `$` match at line boundaries, as in grep); the two searchers are
//! merged by position so every line is reported once.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::bytes::{Regex, RegexSet};

/// One built-in signature: a stable id, the literal it matches and which stack writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Builtin {
    pub id: &'static str,
    pub literal: &'static str,
    pub stack: &'static str,
}

/// Built-in reset-like signatures (matched case-insensitively). Order matters only for the id
/// reported when two overlap at the same position: the more specific text comes first.
pub const BUILTINS: &[Builtin] = &[
    Builtin {
        id: "libpq-server-closed",
        literal: "server closed the connection unexpectedly",
        stack: "PostgreSQL libpq",
    },
    Builtin {
        id: "mysql-link-failure",
        literal: "communications link failure",
        stack: "MySQL Connector/J",
    },
    Builtin {
        id: "mysql-gone-away",
        literal: "server has gone away",
        stack: "MySQL client",
    },
    Builtin {
        id: "mysql-lost-connection",
        literal: "lost connection to mysql server",
        stack: "MySQL client",
    },
    Builtin {
        id: "grpc-transport-closing",
        literal: "transport is closing",
        stack: "gRPC",
    },
    Builtin {
        id: "connection-reset",
        literal: "connection reset",
        stack: "OS errno ECONNRESET (Go, Java, Python, Rust, ...)",
    },
    Builtin {
        id: "econnreset",
        literal: "econnreset",
        stack: "OS errno name (Node.js, C)",
    },
    Builtin {
        id: "forcibly-closed",
        literal: "forcibly closed by the remote host",
        stack: "Windows WSAECONNRESET",
    },
    Builtin {
        id: "socket-hang-up",
        literal: "socket hang up",
        stack: "Node.js",
    },
    Builtin {
        id: "broken-pipe",
        literal: "broken pipe",
        stack: "OS errno EPIPE",
    },
    Builtin {
        id: "epipe",
        literal: "epipe",
        stack: "OS errno name",
    },
    Builtin {
        id: "unexpected-eof",
        literal: "unexpected eof",
        stack: "Go io.ErrUnexpectedEOF, TLS libraries",
    },
    Builtin {
        id: "connection-abort",
        literal: "connection abort",
        stack: "OS errno ECONNABORTED",
    },
    Builtin {
        id: "etimedout",
        literal: "etimedout",
        stack: "OS errno name",
    },
    Builtin {
        id: "connection-timed-out",
        literal: "connection timed out",
        stack: "OS errno ETIMEDOUT text",
    },
];

/// Why a signature set could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("invalid --match pattern {pattern:?}: {source}")]
    Regex {
        pattern: String,
        #[source]
        source: Box<regex::Error>,
    },
    #[error("building the signature automaton failed: {0}")]
    Automaton(#[from] aho_corasick::BuildError),
    #[error("no signatures: built-ins disabled and no --match pattern given")]
    Empty,
}

/// A match of some signature in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigMatch {
    pub start: usize,
    pub end: usize,
    /// Index into [`SignatureSet::names`].
    pub signature: usize,
}

/// The compiled signatures used by a scan.
#[derive(Debug, Clone)]
pub struct SignatureSet {
    names: Vec<String>,
    builtin: Option<AhoCorasick>,
    user: Option<(Regex, RegexSet)>,
    builtin_count: usize,
}

impl SignatureSet {
    /// Built-in signatures (unless `builtins` is false) plus the user's regular expressions.
    pub fn new(builtins: bool, user_patterns: &[String]) -> Result<SignatureSet, SignatureError> {
        let mut names = Vec::new();
        let builtin = if builtins {
            names.extend(BUILTINS.iter().map(|b| b.id.to_string()));
            Some(
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::LeftmostFirst)
                    .build(BUILTINS.iter().map(|b| b.literal))?,
            )
        } else {
            None
        };
        let builtin_count = names.len();
        let user =
            if user_patterns.is_empty() {
                None
            } else {
                for p in user_patterns {
                    Regex::new(p).map_err(|e| SignatureError::Regex {
                        pattern: p.clone(),
                        source: Box::new(e),
                    })?;
                    names.push(format!("match:{p}"));
                }
                let joined = user_patterns
                    .iter()
                    .map(|p| format!("(?m:{p})"))
                    .collect::<Vec<_>>()
                    .join("|");
                let regex = Regex::new(&joined).map_err(|e| SignatureError::Regex {
                    pattern: joined.clone(),
                    source: Box::new(e),
                })?;
                let set = RegexSet::new(user_patterns.iter().map(|p| format!("(?m:{p})")))
                    .map_err(|e| SignatureError::Regex {
                        pattern: joined,
                        source: Box::new(e),
                    })?;
                Some((regex, set))
            };
        if builtin.is_none() && user.is_none() {
            return Err(SignatureError::Empty);
        }
        Ok(SignatureSet {
            names,
            builtin,
            user,
            builtin_count,
        })
    }

    /// The built-ins only.
    pub fn builtin() -> SignatureSet {
        // The literals are constants; building them cannot fail for any input.
        #[allow(clippy::expect_used)]
        SignatureSet::new(true, &[]).expect("built-in signatures compile")
    }

    /// Signature names, indexed by [`SigMatch::signature`].
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The first match starting at or after `from`.
    pub fn find(&self, hay: &[u8], from: usize) -> Option<SigMatch> {
        if from > hay.len() {
            return None;
        }
        let b = self.builtin.as_ref().and_then(|ac| {
            ac.find(aho_corasick::Input::new(hay).span(from..hay.len()))
                .map(|m| SigMatch {
                    start: m.start(),
                    end: m.end(),
                    signature: m.pattern().as_usize(),
                })
        });
        let u = self.user.as_ref().and_then(|(re, set)| {
            re.find_at(hay, from).map(|m| {
                let which = set.matches(m.as_bytes()).into_iter().next().unwrap_or(0);
                SigMatch {
                    start: m.start(),
                    end: m.end(),
                    signature: self.builtin_count + which,
                }
            })
        });
        match (b, u) {
            (Some(b), Some(u)) => Some(if u.start < b.start { u } else { b }),
            (b, u) => b.or(u),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn first_id(set: &SignatureSet, line: &str) -> Option<String> {
        set.find(line.as_bytes(), 0)
            .map(|m| set.names()[m.signature].clone())
    }

    #[test]
    fn builtins_recognise_common_stacks() {
        let s = SignatureSet::builtin();
        let cases = [
            (
                "java.net.SocketException: Connection reset",
                "connection-reset",
            ),
            (
                "read tcp 10.0.0.1:5->10.0.0.2:443: read: connection reset by peer",
                "connection-reset",
            ),
            (
                "FATAL: server closed the connection unexpectedly",
                "libpq-server-closed",
            ),
            (
                "rpc error: code = Unavailable desc = transport is closing",
                "grpc-transport-closing",
            ),
            (
                "com.mysql.cj.jdbc.exceptions.CommunicationsException: Communications link failure",
                "mysql-link-failure",
            ),
            ("reconnecting upstream: unexpected EOF", "unexpected-eof"),
            ("write: Broken pipe", "broken-pipe"),
            ("Error: connect ETIMEDOUT 10.0.0.1:443", "etimedout"),
        ];
        for (line, want) in cases {
            assert_eq!(first_id(&s, line).as_deref(), Some(want), "{line}");
        }
        assert_eq!(first_id(&s, "query ok conn=3 idle_s=0.1"), None);
    }

    #[test]
    fn user_patterns_merge_with_builtins_by_position() {
        let s = SignatureSet::new(true, &["GOAWAY".to_string()]).unwrap();
        let hay = b"x GOAWAY y connection reset z";
        let m = s.find(hay, 0).unwrap();
        assert_eq!(s.names()[m.signature], "match:GOAWAY");
        let m2 = s.find(hay, m.end).unwrap();
        assert_eq!(s.names()[m2.signature], "connection-reset");
        assert!(s.find(hay, m2.end).is_none());
    }

    #[test]
    fn user_anchors_match_at_line_starts() {
        let s = SignatureSet::new(false, &["^ERR".to_string(), "GOAWAY$".to_string()]).unwrap();
        let hay = b"ok line\nERR one\nx GOAWAY\n";
        let m = s.find(hay, 0).unwrap();
        assert_eq!(
            (m.start, s.names()[m.signature].as_str()),
            (8, "match:^ERR")
        );
        let m = s.find(hay, m.end).unwrap();
        assert_eq!(s.names()[m.signature], "match:GOAWAY$");
    }

    #[test]
    fn bad_regex_names_the_pattern() {
        let err = SignatureSet::new(true, &["(unclosed".to_string()]).unwrap_err();
        assert!(err.to_string().contains("(unclosed"), "{err}");
        assert!(matches!(
            SignatureSet::new(false, &[]),
            Err(SignatureError::Empty)
        ));
    }
}
