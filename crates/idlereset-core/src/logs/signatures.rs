//! What a reset looks like in a log line: built-in signatures for common stacks (read from the
//! library data file, `data/libraries.toml`: nothing about a library is written here), plus the
//! user's own `--match REGEX` patterns.
//!
//! The built-ins are plain literals matched ASCII-case-insensitively by one Aho-Corasick
//! automaton, which uses a SIMD prefilter; this is what lets `idlereset logs` scan a gigabyte
//! at grep speed. User patterns are regular expressions and run through the `regex` crate in
//! multi-line mode (`^` and `$` match at line boundaries, as in grep); the two searchers are
//! merged by position so every line is reported once.

use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::bytes::{Regex, RegexSet};

use crate::libraries::{FailureText, Libraries};

/// One built-in signature: a stable id, the literal it matches (lower case), the client library
/// (an inventory identity, or `os` / a runtime / another stack) that writes it, and where it
/// comes from. All of them are read from the library data file (`data/libraries.toml`): each
/// library's `signatures`, then the generic `[[signature]]` texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Builtin {
    /// Stable id, reported per event (`pgjdbc-io-error`).
    pub id: String,
    /// The text matched, lower case (matching ignores case).
    pub literal: String,
    /// The client library id, `os` or a language runtime, that writes the text.
    pub library: String,
    /// When and by whom the text is written.
    pub stack: String,
    /// How the connection failed, when the text alone says it.
    pub failure: Option<FailureText>,
}

/// Built-in reset-like signatures (matched case-insensitively). Order matters only for the id
/// reported when two overlap at the same position: libraries' own texts come first, then the
/// generic ones.
pub fn builtins() -> &'static [Builtin] {
    static B: OnceLock<Vec<Builtin>> = OnceLock::new();
    B.get_or_init(|| {
        let data = Libraries::builtin();
        // A trailing full stop is how the library ends its sentence, not part of what to find.
        let literal = |t: &str| t.trim_end_matches('.').to_ascii_lowercase();
        let own = data.all().iter().flat_map(|l| {
            l.signatures.iter().map(move |s| Builtin {
                id: s.id.clone(),
                literal: literal(&s.text),
                library: l.name.clone(),
                stack: l.display.clone(),
                failure: s.failure,
            })
        });
        let generic = data.generic_signatures().iter().map(|s| Builtin {
            id: s.id.clone(),
            literal: literal(&s.text),
            library: s.source.clone(),
            stack: s.stack.clone(),
            failure: s.failure,
        });
        own.chain(generic).collect()
    })
}

/// The library (or `os`, a runtime, another stack) a built-in signature id belongs to.
pub fn library_of(id: &str) -> Option<&'static str> {
    builtins()
        .iter()
        .find(|b| b.id == id)
        .map(|b| b.library.as_str())
}

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
    /// How the connection failed, per signature (`None`: the text does not say).
    failures: Vec<Option<FailureText>>,
    builtin: Option<AhoCorasick>,
    user: Option<(Regex, RegexSet)>,
    builtin_count: usize,
}

impl SignatureSet {
    /// Built-in signatures (unless `builtins` is false) plus the user's regular expressions.
    pub fn new(builtins: bool, user_patterns: &[String]) -> Result<SignatureSet, SignatureError> {
        let mut names = Vec::new();
        let mut failures = Vec::new();
        let builtin = if builtins {
            names.extend(self::builtins().iter().map(|b| b.id.clone()));
            failures.extend(self::builtins().iter().map(|b| b.failure));
            Some(
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::LeftmostFirst)
                    .build(self::builtins().iter().map(|b| b.literal.as_str()))?,
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
                    failures.push(None);
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
            failures,
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

    /// How the connection failed by the texts of the line `hay[..line_end]` whose first match
    /// is `first`: the failure of the first match in it whose text says one.
    pub fn failure_in_line(
        &self,
        hay: &[u8],
        first: SigMatch,
        line_end: usize,
    ) -> Option<FailureText> {
        let hay = hay.get(..line_end)?;
        let mut m = Some(first);
        while let Some(cur) = m {
            if let Some(f) = self.failures.get(cur.signature).copied().flatten() {
                return Some(f);
            }
            m = self.find(hay, cur.start + 1);
        }
        None
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
        for b in builtins() {
            assert_eq!(b.literal, b.literal.to_ascii_lowercase(), "{}", b.id);
        }
        assert_eq!(library_of("hikaricp-validation-failed"), Some("hikaricp"));
        assert_eq!(library_of("connection-reset"), Some("os"));
        assert_eq!(
            first_id(
                &s,
                "status = StatusCode.UNAVAILABLE details = \"recvmsg:Connection reset by peer\""
            )
            .as_deref(),
            Some("grpcio-recvmsg-reset")
        );
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
