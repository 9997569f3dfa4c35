//! Client-library behaviour, measured or cited: the one place that knows what a library does to
//! an idle TCP connection.
//!
//! The data lives in `data/libraries.toml` (one `[[library]]` per identity, one
//! `[[library.behaviour]]` per version range, each fact with its source: a lab run with the
//! library version and kernel, or a documentation link). `plan` writes settings from it,
//! `verify` builds its "current" runs and picks the real driver from it, and `logs` / `audit`
//! find a library by its error texts and detection hints ([`Libraries::by_error_text`],
//! [`Libraries::detect`]). Nothing about a library's defaults is written anywhere else.

pub mod version;

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::inventory::Library;
pub use version::{Version, VersionError};

const LIBRARIES_TOML: &str = include_str!("../../data/libraries.toml");

/// Who decides a socket's keepalive timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SetBy {
    /// The library sets TCP_KEEPIDLE / INTVL / CNT itself.
    Library,
    /// The language runtime does (Go's net package, Node's libuv).
    Runtime,
    /// Nobody: the host's `net.ipv4.tcp_keepalive_*` apply.
    Os,
}

/// What a library does with a ping period below its minimum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BelowMin {
    /// Ignores it: no ping at all.
    Off,
    /// Pings at the minimum instead.
    Raised,
}

/// Where one fact comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Which field(s) this source backs.
    pub fact: String,
    /// A lab run: library version, kernel, how it was observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured: Option<String>,
    /// A documentation link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc: Option<String>,
}

/// What one version range of a library does by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Behaviour {
    /// First version of the range (inclusive).
    pub from: Version,
    /// End of the range (exclusive); `None` = up to the newest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Version>,
    /// Sets SO_KEEPALIVE without being asked.
    pub so_keepalive: bool,
    /// TCP_KEEPIDLE the library sets, seconds; `None` = the host sysctl applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepidle_s: Option<f64>,
    /// TCP_KEEPINTVL the library sets, seconds; `None` = the host sysctl applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepintvl_s: Option<f64>,
    /// TCP_KEEPCNT the library sets; `None` = the host sysctl applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepcnt: Option<u32>,
    /// Which setting, if any, turns keepalive on and tunes it.
    pub set_by: SetBy,
    /// Interval the runtime forces whenever keepalive is on (the host sysctl never applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_keepintvl_s: Option<f64>,
    /// Probe count the runtime forces whenever keepalive is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_keepcnt: Option<u32>,
    /// Default pool idle timeout, seconds; `None` = the pool never closes idle connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_idle_s: Option<f64>,
    /// Default maximum connection age, seconds; `None` = unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lifetime_s: Option<f64>,
    /// What the library does with a ping period below [`Behaviour::min_ping_s`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping_below_min: Option<BelowMin>,
    /// Smallest pool idle timeout the library accepts, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_pool_idle_s: Option<f64>,
    /// Smallest maximum lifetime the library accepts, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_max_lifetime_s: Option<f64>,
    /// Application-level ping of idle connections by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping_s: Option<f64>,
    /// Smallest keepalive / ping period the library accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ping_s: Option<f64>,
    /// How much longer than the configured ping period the gap between two pings on the wire
    /// of an idle connection is (measured: grpcio waits that long before it counts a ping as
    /// answered and restarts its timer). Fixed in the library's code: it cannot be time-scaled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping_wire_extra_s: Option<f64>,
    /// Retry / validation that keeps a reset from reaching the application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hides_resets: Option<String>,
    /// Setting keys (as `plan` writes them) this version has.
    pub supports: Vec<String>,
    /// Free-text caveats shown with the advice.
    #[serde(default)]
    pub notes: Vec<String>,
    /// Documents and source lines the row is taken from.
    pub source: Vec<Source>,
}

impl Behaviour {
    /// Whether `v` falls in this row's range.
    pub fn covers(&self, v: Version) -> bool {
        self.from <= v && self.until.is_none_or(|u| v < u)
    }

    /// Whether this version has the setting `key` (an entry `a.b` also covers `a.b.c`).
    pub(crate) fn supports(&self, key: &str) -> bool {
        self.supports
            .iter()
            .any(|k| key == k || (key.starts_with(k.as_str()) && key[k.len()..].starts_with('.')))
    }

    /// The ping period the library really uses when configured with `s`.
    pub fn effective_ping(&self, s: f64) -> Option<f64> {
        match (self.min_ping_s, self.ping_below_min) {
            (Some(min), Some(BelowMin::Off)) if s < min => None,
            (Some(min), _) if s < min => Some(min),
            _ => Some(s),
        }
    }

    /// A pool limit as the library applies it: below its minimum it falls back to the default.
    pub fn effective_pool(
        &self,
        idle_s: Option<f64>,
        life_s: Option<f64>,
    ) -> (Option<f64>, Option<f64>) {
        let fix = |v: Option<f64>, min: Option<f64>, default: Option<f64>| match (v, min) {
            (Some(x), Some(m)) if x < m => default,
            _ => v,
        };
        (
            fix(idle_s, self.min_pool_idle_s, self.pool_idle_s),
            fix(life_s, self.min_max_lifetime_s, self.max_lifetime_s),
        )
    }

    /// Keepalive (idle, interval, count) on the wire by default, the host's values (7200 / 75 /
    /// 9 unless `host` says otherwise) filling what neither library nor runtime sets; `None` when
    /// the library does not set SO_KEEPALIVE.
    pub fn wire_keepalive(&self, host: (f64, f64, u32)) -> Option<(f64, f64, u32)> {
        self.so_keepalive.then(|| {
            (
                self.keepidle_s.unwrap_or(host.0),
                self.keepintvl_s
                    .or(self.runtime_keepintvl_s)
                    .unwrap_or(host.1),
                self.keepcnt.or(self.runtime_keepcnt).unwrap_or(host.2),
            )
        })
    }
}

/// Hints that a process uses the library.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Detect {
    /// Substrings of the process command line.
    #[serde(default)]
    pub cmdline: Vec<String>,
    /// Substrings of loaded jar / module / shared-object paths (`/proc/PID/maps`, class path).
    #[serde(default)]
    pub loaded: Vec<String>,
}

/// How the connection failed, when an error text says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureText {
    /// The text names a reset (`Connection reset`, `ECONNRESET`).
    Reset,
    /// The text names a timeout (`ETIMEDOUT`, `Connection timed out`): data after the idle
    /// vanished until the sender gave up.
    Timeout,
}

/// A text `logs` reports under a stable id (its JSON `signatures` keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSignature {
    /// Stable id (`libpq-server-closed`).
    pub id: String,
    /// The text as the library writes it (matched ASCII-case-insensitively).
    pub text: String,
    /// How the connection failed, when the text alone says it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureText>,
}

/// A reset text of the OS, a language runtime or a stack that is no inventory library
/// (`connection reset`, Node's `socket hang up`, MySQL clients).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericSignature {
    /// Stable id (`connection-reset`).
    pub id: String,
    /// The text (matched ASCII-case-insensitively).
    pub text: String,
    /// Who writes it: `os`, `go`, `node`, `mysql-client`, ...
    pub source: String,
    /// Where it comes from, for people.
    pub stack: String,
    /// How the connection failed, when the text alone says it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureText>,
}

/// One library identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LibraryData {
    /// Identity used in inventories.
    pub name: String,
    /// Human-readable name ("HikariCP (over PgJDBC)").
    pub display: String,
    /// Implementation language (`c`, `java`, `go`, ...).
    pub language: String,
    /// `postgres`, `redis`, `grpc` or `any`.
    pub protocol: String,
    /// Other names inventories may use for it.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// The version advice assumes when the inventory gives none.
    pub assumed_version: Version,
    /// Texts the library raises or logs when a middlebox cut the flow.
    pub errors: Vec<String>,
    /// How `logs` and `triage` recognise the library in logs.
    pub detect: Detect,
    /// How `verify` runs the real library (`python:psycopg2`, `node:pg`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// Error texts specific enough to name this library in a log (`logs` matches them before
    /// the generic OS texts); each `text` is one of [`LibraryData::errors`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<LogSignature>,
    /// Behaviour per version range, oldest first.
    pub behaviour: Vec<Behaviour>,
}

impl LibraryData {
    /// The row for `v`: the range containing it, else the nearest row below (or the first).
    pub(crate) fn behaviour_for(&self, v: Version) -> Option<&Behaviour> {
        self.behaviour
            .iter()
            .filter(|b| b.covers(v))
            .max_by_key(|b| b.from)
            .or_else(|| {
                self.behaviour
                    .iter()
                    .filter(|b| b.from <= v)
                    .max_by_key(|b| b.from)
            })
            .or_else(|| self.behaviour.first())
    }
}

/// A library at a version: what plan and verify ask for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile<'a> {
    /// The library's data.
    pub library: &'a LibraryData,
    /// The behaviour row of `version`.
    pub behaviour: &'a Behaviour,
    /// The version asked for (or the assumed one).
    pub version: Version,
    /// `true` when the inventory named no version, [`LibraryData::assumed_version`] is used and
    /// the library's behaviour differs between versions.
    pub assumed: bool,
}

impl Profile<'_> {
    /// "HikariCP (over PgJDBC) 2.7.9" or "... 5.1.0 (assumed: no version in the inventory)".
    pub fn describe(&self) -> String {
        if self.assumed {
            format!(
                "{} {} (assumed: no `version` in the inventory)",
                self.library.display, self.version
            )
        } else {
            format!("{} {}", self.library.display, self.version)
        }
    }
}

/// The data file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LibrariesError {
    /// The file does not parse or has unknown fields.
    #[error("library data data/libraries.toml is invalid: {0}")]
    Toml(#[from] toml::de::Error),
    /// The file parses but is inconsistent (the text says what).
    #[error("library data data/libraries.toml: {0}")]
    Invalid(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    ambiguous: std::collections::BTreeMap<String, Vec<String>>,
    library: Vec<LibraryData>,
    #[serde(default)]
    signature: Vec<GenericSignature>,
}

/// All library identities.
#[derive(Debug, Clone)]
pub struct Libraries {
    libs: Vec<LibraryData>,
    ambiguous: std::collections::BTreeMap<String, Vec<String>>,
    generic: Vec<GenericSignature>,
}

impl Libraries {
    /// Parse a data file (the built-in one or a regenerated one) and check its invariants.
    pub fn parse(text: &str) -> Result<Libraries, LibrariesError> {
        let f: File = toml::from_str(text)?;
        for l in &f.library {
            if l.behaviour.is_empty() {
                return Err(LibrariesError::Invalid(format!(
                    "library {:?} has no behaviour row",
                    l.name
                )));
            }
            if let Some(b) = l.behaviour.iter().find(|b| b.source.is_empty()) {
                return Err(LibrariesError::Invalid(format!(
                    "library {:?} from {}: a behaviour row without a source",
                    l.name, b.from
                )));
            }
        }
        let mut ids = std::collections::BTreeSet::new();
        for l in &f.library {
            for sig in &l.signatures {
                if !l.errors.iter().any(|e| e.eq_ignore_ascii_case(&sig.text)) {
                    return Err(LibrariesError::Invalid(format!(
                        "library {:?}: signature {:?} is not one of its errors",
                        l.name, sig.id
                    )));
                }
            }
        }
        let all_ids = f
            .library
            .iter()
            .flat_map(|l| l.signatures.iter().map(|s| &s.id))
            .chain(f.signature.iter().map(|s| &s.id));
        for id in all_ids {
            if !ids.insert(id.clone()) {
                return Err(LibrariesError::Invalid(format!(
                    "signature id {id:?} is used twice"
                )));
            }
        }
        Ok(Libraries {
            libs: f.library,
            ambiguous: f.ambiguous,
            generic: f.signature,
        })
    }

    /// The data shipped in the binary (checked by this module's tests).
    pub fn builtin() -> &'static Libraries {
        static B: OnceLock<Libraries> = OnceLock::new();
        B.get_or_init(|| {
            #[allow(clippy::expect_used)]
            Libraries::parse(LIBRARIES_TOML).expect("data/libraries.toml is checked by tests")
        })
    }

    /// Every library, in file order.
    pub fn all(&self) -> &[LibraryData] {
        &self.libs
    }

    /// Reset texts of the OS, runtimes and stacks that are no inventory library.
    pub fn generic_signatures(&self) -> &[GenericSignature] {
        &self.generic
    }

    /// A library by identity name.
    pub fn get(&self, name: &str) -> Option<&LibraryData> {
        self.libs.iter().find(|l| l.name == name)
    }

    /// A library by identity name or alias; the flag says an alias was used.
    pub fn resolve(&self, name: &str) -> Option<(&LibraryData, bool)> {
        self.get(name).map(|l| (l, false)).or_else(|| {
            self.libs
                .iter()
                .find(|l| l.aliases.iter().any(|a| a == name))
                .map(|l| (l, true))
        })
    }

    /// The identities an ambiguous name (`grpc`, `redis`) could mean; empty otherwise.
    pub fn candidates(&self, name: &str) -> &[String] {
        self.ambiguous.get(name).map_or(&[], Vec::as_slice)
    }

    /// The profile of `lib` at `version` (the assumed version when `None`).
    pub fn profile(&self, lib: Library, version: Option<Version>) -> Profile<'_> {
        let data = self.get(lib.as_str()).unwrap_or_else(|| self.fallback());
        // A version is only "assumed" when the behaviour depends on it: a library with one
        // behaviour row (raw sockets, a runtime's defaults) gives the same advice for all.
        let (v, assumed) = match version {
            Some(v) => (v, false),
            None => (data.assumed_version, data.behaviour.len() > 1),
        };
        let behaviour = data.behaviour_for(v).unwrap_or_else(|| self.fallback_b());
        Profile {
            library: data,
            behaviour,
            version: v,
            assumed,
        }
    }

    /// Libraries whose error texts occur in `line` (for `logs`).
    pub fn by_error_text<'a>(&'a self, line: &'a str) -> impl Iterator<Item = &'a LibraryData> {
        self.libs
            .iter()
            .filter(move |l| l.errors.iter().any(|e| line.contains(e.as_str())))
    }

    /// Libraries a process uses, judged from its loaded paths (jars, modules, shared objects)
    /// and, when none of those matched, its command line (for `audit`).
    pub fn detect<'a>(&'a self, cmdline: &str, loaded: &[&str]) -> Vec<&'a LibraryData> {
        let hit = |hints: &[String], hay: &mut dyn Iterator<Item = &str>| {
            let hay: Vec<&str> = hay.collect();
            hints
                .iter()
                .any(|h| hay.iter().any(|p| p.contains(h.as_str())))
        };
        let by_loaded: Vec<&LibraryData> = self
            .libs
            .iter()
            .filter(|l| hit(&l.detect.loaded, &mut loaded.iter().copied()))
            .collect();
        if !by_loaded.is_empty() {
            return by_loaded;
        }
        self.libs
            .iter()
            .filter(|l| hit(&l.detect.cmdline, &mut std::iter::once(cmdline)))
            .collect()
    }

    fn fallback(&self) -> &LibraryData {
        // `raw` is in the data (tests check every Library has a row); the first row otherwise.
        self.get("raw").unwrap_or(&self.libs[0])
    }

    fn fallback_b(&self) -> &Behaviour {
        &self.fallback().behaviour[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).expect("v")
    }

    #[test]
    fn every_library_identity_has_data_with_sources() {
        let libs = Libraries::builtin();
        for (name, lib) in Library::ALL {
            let d = libs.get(name).unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(lib.as_str(), d.name);
            assert!(!d.errors.is_empty(), "{name}: no error texts");
            for b in &d.behaviour {
                for s in &b.source {
                    assert!(
                        s.measured.is_some() ^ s.doc.is_some(),
                        "{name}: a source is either measured or a doc: {s:?}"
                    );
                }
            }
        }
        assert_eq!(libs.all().len(), Library::ALL.len());
    }

    #[test]
    fn aliases_are_unique_and_not_identities() {
        let libs = Libraries::builtin();
        let mut seen = std::collections::HashSet::new();
        for l in libs.all() {
            for a in &l.aliases {
                assert!(libs.get(a).is_none(), "alias {a} shadows an identity");
                assert!(seen.insert(a.clone()), "alias {a} twice");
            }
        }
        assert_eq!(
            libs.resolve("psycopg2").map(|(l, a)| (l.name.as_str(), a)),
            Some(("libpq", true))
        );
        assert!(libs.resolve("grpc").is_none());
        assert_eq!(libs.candidates("grpc").len(), 4);
        for names in libs.ambiguous.values() {
            for n in names {
                assert!(libs.get(n).is_some(), "ambiguous name lists unknown {n}");
            }
        }
    }

    #[test]
    fn version_picks_the_row() {
        let libs = Libraries::builtin();
        let h27 = libs.profile(Library::Hikaricp, Some(v("2.7.9")));
        assert!(!h27.behaviour.supports("keepaliveTime"));
        let h5 = libs.profile(Library::Hikaricp, Some(v("5.1.0")));
        assert!(h5.behaviour.supports("keepaliveTime"));
        let r7 = libs.profile(Library::RedisPy, Some(v("7.4")));
        assert!(!r7.behaviour.so_keepalive);
        let r8 = libs.profile(Library::RedisPy, None);
        assert!(r8.assumed && r8.behaviour.so_keepalive);
        assert_eq!(
            r8.behaviour.wire_keepalive((7200.0, 75.0, 9)),
            Some((30.0, 5.0, 3))
        );
        // Below every range: the first row.
        let old = libs.profile(Library::Hikaricp, Some(v("1.0")));
        assert_eq!(old.behaviour.from, v("2.0"));
    }

    #[test]
    fn node_runtime_forces_interval_and_count() {
        let io = Libraries::builtin().profile(Library::Ioredis, Some(v("6.0.0")));
        assert_eq!(
            io.behaviour.wire_keepalive((7200.0, 75.0, 9)),
            Some((30.0, 1.0, 10))
        );
    }

    #[test]
    fn error_texts_and_detection_find_libraries() {
        let libs = Libraries::builtin();
        let names = |it: Vec<&LibraryData>| it.iter().map(|l| l.name.clone()).collect::<Vec<_>>();
        let hits: Vec<&LibraryData> = libs
            .by_error_text("WARN com.zaxxer.hikari.pool.PoolBase - HikariPool-1 - Failed to validate connection org.postgresql.jdbc.PgConnection@5a2e4553 (This connection has been closed.)")
            .collect();
        assert!(names(hits).contains(&"hikaricp".to_string()));
        let d = libs.detect("java -jar app.jar", &["/usr/share/java/HikariCP-2.7.9.jar"]);
        assert_eq!(names(d), ["hikaricp"]);
        let d = libs.detect("/usr/bin/psql -h db", &[]);
        assert_eq!(names(d), ["libpq"]);
    }

    #[test]
    fn parse_refuses_rows_without_sources() {
        let t = "[[library]]\nname='x'\ndisplay='x'\nlanguage='c'\nprotocol='any'\nassumed_version='1'\nerrors=[]\ndetect={}\n[[library.behaviour]]\nfrom='1'\nso_keepalive=false\nset_by='os'\nsupports=[]\nsource=[]\n";
        assert!(matches!(
            Libraries::parse(t),
            Err(LibrariesError::Invalid(_))
        ));
    }
}
