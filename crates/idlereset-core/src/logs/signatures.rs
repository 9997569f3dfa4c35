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
    /// The built-in texts that name a failure, alone (leftmost-first, ASCII-case-insensitive),
    /// with the failure of each: what [`SignatureSet::failure_in_line`] searches a line with.
    named: Option<(AhoCorasick, Vec<FailureText>)>,
    user: Option<(Regex, RegexSet)>,
    builtin_count: usize,
}

#[cfg(test)]
thread_local! {
    /// Automaton and regex searches run by this thread (tests count work with it, not time).
    pub(crate) static SEARCHES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Counts one automaton or regex search (tests only).
#[inline]
fn count_search() {
    #[cfg(test)]
    SEARCHES.with(|c| c.set(c.get() + 1));
}

impl SignatureSet {
    /// Built-in signatures (unless `builtins` is false) plus the user's regular expressions.
    pub fn new(builtins: bool, user_patterns: &[String]) -> Result<SignatureSet, SignatureError> {
        SignatureSet::with_builtins(builtins.then(self::builtins), user_patterns)
    }

    /// The given built-in signatures (none: `None`) plus the user's regular expressions.
    fn with_builtins(
        builtins: Option<&[Builtin]>,
        user_patterns: &[String],
    ) -> Result<SignatureSet, SignatureError> {
        let mut names = Vec::new();
        let mut failures = Vec::new();
        let automaton = |texts: &mut dyn Iterator<Item = &str>| {
            AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::LeftmostFirst)
                .build(texts)
        };
        let (builtin, named) = match builtins {
            Some(list) => {
                names.extend(list.iter().map(|b| b.id.clone()));
                failures.extend(list.iter().map(|b| b.failure));
                let builtin = automaton(&mut list.iter().map(|b| b.literal.as_str()))?;
                let with_failure = || {
                    list.iter()
                        .filter_map(|b| Some((b.literal.as_str(), b.failure?)))
                };
                let named = automaton(&mut with_failure().map(|(t, _)| t))?;
                (
                    Some(builtin),
                    Some((named, with_failure().map(|(_, f)| f).collect())),
                )
            }
            None => (None, None),
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
            named,
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
    /// is `first`: the failure named by the built-in text that starts first in
    /// `hay[first.start..line_end]` among those that name one (at one start, the first such
    /// signature in [`builtins`] order), whatever other matches precede or overlap it.
    ///
    /// This is one pass over the line by an automaton of the failure-naming texts alone (user
    /// patterns name none), so a long line with many matches costs no more than one search.
    pub fn failure_in_line(
        &self,
        hay: &[u8],
        first: SigMatch,
        line_end: usize,
    ) -> Option<FailureText> {
        if let Some(f) = self.failures.get(first.signature).copied().flatten() {
            return Some(f);
        }
        let (ac, failures) = self.named.as_ref()?;
        let line = hay.get(first.start..line_end)?;
        count_search();
        let m = ac.find(line)?;
        failures.get(m.pattern().as_usize()).copied()
    }

    /// The first match starting at or after `from`.
    pub fn find(&self, hay: &[u8], from: usize) -> Option<SigMatch> {
        self.find_cached(hay, from, &mut FindCache::default())
    }

    /// [`SignatureSet::find`] for successive, increasing `from`s in one `hay`, remembering
    /// each searcher's last answer in `cache`: a searcher whose next match still lies at or
    /// after `from` (or that found none to the end) is not run again. Without it a block
    /// whose lines each match a built-in, under a `--match` pattern found nowhere, ran the
    /// pattern to the block's end once per line.
    pub fn find_cached(&self, hay: &[u8], from: usize, cache: &mut FindCache) -> Option<SigMatch> {
        if from > hay.len() {
            return None;
        }
        if !FindCache::still_next(cache.builtin, from) {
            cache.builtin = Some(self.builtin.as_ref().and_then(|ac| {
                count_search();
                ac.find(aho_corasick::Input::new(hay).span(from..hay.len()))
                    .map(|m| SigMatch {
                        start: m.start(),
                        end: m.end(),
                        signature: m.pattern().as_usize(),
                    })
            }));
        }
        if !FindCache::still_next(cache.user, from) {
            cache.user = Some(self.user.as_ref().and_then(|(re, set)| {
                count_search();
                re.find_at(hay, from).map(|m| {
                    let which = set.matches(m.as_bytes()).into_iter().next().unwrap_or(0);
                    SigMatch {
                        start: m.start(),
                        end: m.end(),
                        signature: self.builtin_count + which,
                    }
                })
            }));
        }
        let (b, u) = (cache.builtin.flatten(), cache.user.flatten());
        match (b, u) {
            (Some(b), Some(u)) => Some(if u.start < b.start { u } else { b }),
            (b, u) => b.or(u),
        }
    }
}

/// Each searcher's last answer in one haystack, for [`SignatureSet::find_cached`]. Both
/// searchers find the leftmost match, which depends on the haystack and where it starts, not
/// on where the search began: so a match at or after the next `from` is still the next one,
/// and none to the end stays none. A new haystack needs a new cache.
#[derive(Debug, Default, Clone, Copy)]
pub struct FindCache {
    builtin: Option<Option<SigMatch>>,
    user: Option<Option<SigMatch>>,
}

impl FindCache {
    /// Is a searcher's last answer still its answer from `from`?
    fn still_next(last: Option<Option<SigMatch>>, from: usize) -> bool {
        last.is_some_and(|m| m.is_none_or(|m| m.start >= from))
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

    /// The failure of a line, by [`SignatureSet::failure_in_line`] from its first match.
    fn line_failure(set: &SignatureSet, line: &str) -> Option<FailureText> {
        let hay = line.as_bytes();
        set.failure_in_line(hay, set.find(hay, 0)?, hay.len())
    }

    #[test]
    fn failure_of_a_line_is_its_first_failure_text_whatever_precedes_it() {
        let s = SignatureSet::new(true, &["[0-9]{3}x[0-9]{3}".to_string()]).unwrap();
        let named: Vec<&Builtin> = builtins().iter().filter(|b| b.failure.is_some()).collect();
        let silent: Vec<&Builtin> = builtins().iter().filter(|b| b.failure.is_none()).collect();
        assert!(!named.is_empty() && !silent.is_empty());
        for f in &named {
            for n in &silent {
                // Texts without a failure (and user matches) before it, in any case.
                let line = format!(
                    "ERROR {} 123x456 {} {} then {}",
                    n.literal,
                    n.literal.to_ascii_uppercase(),
                    n.literal,
                    f.literal.to_ascii_uppercase()
                );
                assert_eq!(line_failure(&s, &line), f.failure, "{line}");
                // The first failure-naming text wins over a later one (of the other kind too).
                for g in &named {
                    let line = format!("{} {} {}", n.literal, f.literal, g.literal);
                    assert_eq!(line_failure(&s, &line), f.failure, "{line}");
                }
            }
            assert_eq!(line_failure(&s, &f.literal), f.failure);
        }
        for n in &silent {
            assert_eq!(line_failure(&s, &format!("{} 123x456", n.literal)), None);
        }
        // A text without a failure listed before one that names a failure and starting at the
        // same offset (the real list has no such pair; this one extends a real failure text):
        // the failure text still names the line's failure.
        for f in &named {
            let n = silent[0];
            let longer = Builtin {
                id: "longer".into(),
                literal: format!("{} {}", f.literal, n.literal),
                failure: None,
                ..n.clone()
            };
            let mut list = vec![longer];
            list.extend(builtins().iter().cloned());
            let s = SignatureSet::with_builtins(Some(&list), &[]).unwrap();
            let line = format!("x {} {} y", f.literal, n.literal);
            let first = s.find(line.as_bytes(), 0).unwrap();
            assert_eq!(s.names()[first.signature], "longer");
            assert_eq!(line_failure(&s, &line), f.failure, "{line}");
        }
        // Built-ins off: user patterns name no failure.
        let s = SignatureSet::new(false, &["reset".to_string()]).unwrap();
        assert_eq!(line_failure(&s, "connection reset"), None);
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

    proptest::proptest! {
        /// Remembered answers give what a fresh search gives, for any increasing `from`s.
        #[test]
        fn cached_searches_find_what_fresh_ones_do(
            parts in proptest::collection::vec(0usize..6, 0..40),
            steps in proptest::collection::vec(0usize..30, 1..20),
        ) {
            let words = ["connection reset", "123x456", "ok ", "\n", "econnreset", "unexpected eof"];
            let hay: String = parts.iter().map(|&i| words[i]).collect();
            let set = SignatureSet::new(true, &["[0-9]{3}x[0-9]{3}".into()]).unwrap();
            let mut cache = FindCache::default();
            let mut from = 0;
            for step in steps {
                from = (from + step).min(hay.len() + 1);
                proptest::prop_assert_eq!(
                    set.find_cached(hay.as_bytes(), from, &mut cache),
                    set.find(hay.as_bytes(), from)
                );
            }
        }
    }
}
