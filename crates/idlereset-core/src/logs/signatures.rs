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

/// One built-in signature: a stable id, the literal it matches, the client library (or `os` /
/// language runtime) that writes it, and where it comes from. The library ids are those of the
/// inventory's clients, so this table can later be read from the library data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Builtin {
    /// Stable id, reported per event (`pgjdbc-io-error`).
    pub id: &'static str,
    /// The text matched, lower case (matching ignores case).
    pub literal: &'static str,
    /// The client library id, `os` or a language runtime, that writes the text.
    pub library: &'static str,
    /// When and by whom the text is written.
    pub stack: &'static str,
}

/// Built-in reset-like signatures (matched case-insensitively). Order matters only for the id
/// reported when two overlap at the same position: the more specific text comes first.
pub const BUILTINS: &[Builtin] = &[
    Builtin {
        id: "pgjdbc-io-error",
        literal: "an i/o error occurred while sending to the backend",
        library: "pgjdbc",
        stack: "PostgreSQL JDBC driver: PSQLException when the socket fails mid-query",
    },
    Builtin {
        id: "pgjdbc-connection-closed",
        literal: "this connection has been closed",
        library: "pgjdbc",
        stack: "PostgreSQL JDBC driver: use of a connection already found dead (HikariCP validation WARN carries it)",
    },
    Builtin {
        id: "hikaricp-validation-failed",
        literal: "failed to validate connection",
        library: "hikaricp",
        stack: "HikariCP: validation on borrow found the connection dead (WARN; the app sees no error)",
    },
    Builtin {
        id: "libpq-server-closed",
        literal: "server closed the connection unexpectedly",
        library: "libpq",
        stack: "PostgreSQL libpq (psql, psycopg2, psycopg 3)",
    },
    Builtin {
        id: "node-pg-terminated",
        literal: "connection terminated unexpectedly",
        library: "node-pg",
        stack: "node-postgres (pg)",
    },
    Builtin {
        id: "redis-py-socket-read",
        literal: "error while reading from socket",
        library: "redis-py",
        stack: "redis-py ConnectionError",
    },
    Builtin {
        id: "grpc-stream-removed",
        literal: "stream removed",
        library: "grpcio",
        stack: "gRPC C-core (grpcio): UNAVAILABLE",
    },
    Builtin {
        id: "mysql-link-failure",
        literal: "communications link failure",
        library: "mysql-connector-j",
        stack: "MySQL Connector/J",
    },
    Builtin {
        id: "mysql-gone-away",
        literal: "server has gone away",
        library: "mysql-client",
        stack: "MySQL client",
    },
    Builtin {
        id: "mysql-lost-connection",
        literal: "lost connection to mysql server",
        library: "mysql-client",
        stack: "MySQL client",
    },
    Builtin {
        id: "grpc-transport-closing",
        literal: "transport is closing",
        library: "grpc-go",
        stack: "gRPC (grpc-go UNAVAILABLE)",
    },
    Builtin {
        id: "connection-reset",
        literal: "connection reset",
        library: "os",
        stack: "OS errno ECONNRESET (Go `read: connection reset by peer`, Java, Python, redis-py, Rust)",
    },
    Builtin {
        id: "econnreset",
        literal: "econnreset",
        library: "os",
        stack: "OS errno name (Node.js `read ECONNRESET`, ioredis, C)",
    },
    Builtin {
        id: "forcibly-closed",
        literal: "forcibly closed by the remote host",
        library: "os",
        stack: "Windows WSAECONNRESET",
    },
    Builtin {
        id: "socket-hang-up",
        literal: "socket hang up",
        library: "node",
        stack: "Node.js http",
    },
    Builtin {
        id: "broken-pipe",
        literal: "broken pipe",
        library: "os",
        stack: "OS errno EPIPE (Go `write: broken pipe`)",
    },
    Builtin {
        id: "epipe",
        literal: "epipe",
        library: "os",
        stack: "OS errno name",
    },
    Builtin {
        id: "unexpected-eof",
        literal: "unexpected eof",
        library: "go",
        stack: "Go io.ErrUnexpectedEOF (pgx, HTTP clients), TLS libraries",
    },
    Builtin {
        id: "pgx-conn-closed",
        literal: "conn closed",
        library: "pgx",
        stack: "pgx: use of a connection closed after an error",
    },
    Builtin {
        id: "connection-abort",
        literal: "connection abort",
        library: "os",
        stack: "OS errno ECONNABORTED",
    },
    Builtin {
        id: "etimedout",
        literal: "etimedout",
        library: "os",
        stack: "OS errno name",
    },
    Builtin {
        id: "connection-timed-out",
        literal: "connection timed out",
        library: "os",
        stack: "OS errno ETIMEDOUT text",
    },
];

/// Why a signature set could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// A `--match` pattern is not a valid regular expression.
    #[error("invalid --match pattern {pattern:?}: {source}")]
    Regex {
        /// The pattern as given.
        pattern: String,
        /// The regex crate's error.
        #[source]
        source: Box<regex::Error>,
    },
    /// The built-in literals could not be compiled into an automaton.
    #[error("building the signature automaton failed: {0}")]
    Automaton(#[from] aho_corasick::BuildError),
    /// Built-ins were disabled and no `--match` pattern was given.
    #[error("no signatures: built-ins disabled and no --match pattern given")]
    Empty,
}

/// A match of some signature in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigMatch {
    /// Byte offset of the match's start in the buffer.
    pub start: usize,
    /// Byte offset just past the match's end.
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
        let libraries = [
            (
                "org.postgresql.util.PSQLException: An I/O error occurred while sending to the backend.",
                "pgjdbc-io-error",
            ),
            (
                "HikariPool-1 - Failed to validate connection org.postgresql.jdbc.PgConnection@5a2e4553 (This connection has been closed.). Possibly consider using a shorter maxLifetime value.",
                "hikaricp-validation-failed",
            ),
            (
                "psycopg2.OperationalError: server closed the connection unexpectedly",
                "libpq-server-closed",
            ),
            (
                "grpc._channel._InactiveRpcError: status = StatusCode.UNAVAILABLE details = \"Stream removed\"",
                "grpc-stream-removed",
            ),
            (
                "redis.exceptions.ConnectionError: Error while reading from socket: (104, 'Connection reset by peer')",
                "redis-py-socket-read",
            ),
            (
                "[ioredis] Unhandled error event: Error: read ECONNRESET",
                "econnreset",
            ),
            (
                "Error: Connection terminated unexpectedly",
                "node-pg-terminated",
            ),
            (
                "failed to deallocate cached statement(s): conn closed",
                "pgx-conn-closed",
            ),
        ];
        for (line, want) in libraries {
            assert_eq!(first_id(&s, line).as_deref(), Some(want), "{line}");
        }
        for b in BUILTINS {
            assert_eq!(b.literal, b.literal.to_ascii_lowercase(), "{}", b.id);
        }
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
