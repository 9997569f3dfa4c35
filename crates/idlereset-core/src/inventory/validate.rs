//! TOML inventory -> validated [`Inventory`], with errors that point at a line and column.
//!
//! The file is first deserialized into "raw" structs whose fields are [`toml::Spanned`], so every
//! value keeps the byte range it came from; the semantic checks (unknown catalog id, bad CIDR,
//! missing `kind`, duplicate names, out-of-range numbers) then report `file:line:column` with a
//! "did you mean" hint where a close name exists. All problems are reported at once, so a user
//! fixes an inventory in one round trip.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::catalog::{Catalog, Failure};
use crate::inventory::matches::Match;
use crate::inventory::model::{
    Client, Current, Hop, HopKind, Inventory, IpVersion, Library, MAX_CONNECTIONS, Options,
    OtherPath,
};
use crate::libraries::Version;

/// Shortest idle timeout a hop may have: keepalive options are whole seconds >= 1, and a plan
/// needs room for a probe below the timeout.
pub(crate) const MIN_IDLE_TIMEOUT_S: f64 = 2.0;
/// Longest accepted idle timeout (30 days); anything longer is almost certainly a unit mistake.
pub(crate) const MAX_IDLE_TIMEOUT_S: f64 = 30.0 * 86400.0;
/// Linux caps TCP_KEEPCNT at 127.
pub(crate) const MAX_PROBES: i64 = 127;

/// One problem in an inventory, at a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// Byte offset into the file.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
    /// "did you mean ..." or an example of the expected form.
    pub hint: Option<String>,
}

/// An inventory that did not validate: every problem found, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InventoryError {
    /// The inventory file, as named on the command line.
    pub file: String,
    /// Every problem found, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for InventoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.diagnostics.len();
        write!(
            f,
            "invalid inventory {} ({n} problem{})",
            self.file,
            if n == 1 { "" } else { "s" }
        )?;
        for d in &self.diagnostics {
            write!(
                f,
                "\n  {}:{}:{}: {}",
                self.file, d.line, d.column, d.message
            )?;
            if let Some(h) = &d.hint {
                write!(f, " ({h})")?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    name: Option<String>,
    server: Option<String>,
    #[serde(default)]
    hop: Vec<Spanned<RawHop>>,
    #[serde(default)]
    client: Vec<Spanned<RawClient>>,
    plan: Option<RawPlan>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHop {
    name: Option<Spanned<String>>,
    kind: Option<Spanned<String>>,
    idle_timeout_s: Option<Spanned<f64>>,
    catalog: Option<Spanned<String>>,
    honours_keepalive: Option<bool>,
    failure: Option<Spanned<String>>,
    #[serde(default)]
    matches: Vec<Spanned<String>>,
    asymmetric: Option<bool>,
    failover: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    name: Option<Spanned<String>>,
    library: Option<Spanned<String>>,
    version: Option<Spanned<String>>,
    connections: Option<Spanned<i64>>,
    current: Option<RawCurrent>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCurrent {
    keepalive: Option<bool>,
    keepalive_time_s: Option<Spanned<f64>>,
    keepalive_intvl_s: Option<Spanned<f64>>,
    keepalive_probes: Option<Spanned<i64>>,
    pool_idle_timeout_s: Option<Spanned<f64>>,
    max_lifetime_s: Option<Spanned<f64>>,
    heartbeat_s: Option<Spanned<f64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    probes: Option<Spanned<i64>>,
    ip_version: Option<Spanned<i64>>,
}

/// Collects diagnostics against one source text.
struct Checker<'a> {
    text: &'a str,
    lines: LineIndex,
    diags: Vec<Diagnostic>,
}

impl Checker<'_> {
    /// 1-based line of a byte offset (binary search: every hop asks for its line).
    fn line(&self, offset: usize) -> usize {
        self.lines.line_col(self.text, offset).0
    }

    fn at(&mut self, span: Range<usize>, message: impl Into<String>, hint: Option<String>) {
        let offset = span.start.min(self.text.len());
        let (line, column) = self.lines.line_col(self.text, offset);
        self.diags.push(Diagnostic {
            line,
            column,
            offset,
            message: message.into(),
            hint,
        });
    }

    fn positive(&mut self, v: &Option<Spanned<f64>>, what: &str) -> Option<f64> {
        let s = v.as_ref()?;
        let x = *s.get_ref();
        if x.is_finite() && x > 0.0 {
            Some(x)
        } else {
            self.at(
                s.span(),
                format!("{what} must be a positive number of seconds, got {x}"),
                None,
            );
            None
        }
    }
}

/// Byte offsets where each line starts, so a position costs a binary search instead of a scan
/// from the start of the file (which made validation quadratic in the number of hops).
#[derive(Debug, Clone)]
pub struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    /// Index the line starts of `text` (one pass).
    pub fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(memchr::memchr_iter(b'\n', text.as_bytes()).map(|i| i + 1));
        LineIndex { starts }
    }

    /// 1-based line and character column of a byte offset of the `text` this index was built
    /// from; the same answer as [`line_col`].
    pub(crate) fn line_col(&self, text: &str, offset: usize) -> (usize, usize) {
        let mut end = offset.min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let line = self.starts.partition_point(|&s| s <= end);
        let start = self
            .starts
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or(0);
        let column = text.get(start..end).map_or(0, |s| s.chars().count()) + 1;
        (line, column)
    }
}

/// 1-based line and character column of a byte offset (the reference [`LineIndex`] is tested
/// against).
#[cfg(test)]
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// "did you mean X?" for the closest known name, if it is close enough to be a typo.
pub(crate) fn did_you_mean<'a>(
    input: &str,
    known: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    known
        .into_iter()
        .map(|k| (strsim::jaro_winkler(input, k), k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| format!("did you mean {k:?}?"))
}

fn one_of<T: Copy>(
    c: &mut Checker<'_>,
    v: &Spanned<String>,
    what: &str,
    table: &[(&str, T)],
) -> Option<T> {
    let s = v.get_ref().as_str();
    if let Some((_, t)) = table.iter().find(|(n, _)| *n == s) {
        return Some(*t);
    }
    let names: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
    let hint = did_you_mean(s, names.iter().copied())
        .or_else(|| Some(format!("expected one of: {}", names.join(", "))));
    c.at(v.span(), format!("unknown {what} {s:?}"), hint);
    None
}

const FAILURES: [(&str, Failure); 4] = [
    ("reset", Failure::Reset),
    ("drop", Failure::Drop),
    ("fin", Failure::Fin),
    ("unknown", Failure::Unknown),
];

impl Inventory {
    /// Parse and validate an inventory. `file` names the source in error messages; `catalog`
    /// resolves `catalog = "..."` hops.
    pub fn parse(text: &str, file: &str, catalog: &Catalog) -> Result<Inventory, InventoryError> {
        let mut c = Checker {
            text,
            lines: LineIndex::new(text),
            diags: Vec::new(),
        };
        let raw: RawFile = match toml::from_str(text) {
            Ok(r) => r,
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                c.at(span, e.message().trim().to_string(), None);
                return Err(InventoryError {
                    file: file.to_string(),
                    diagnostics: c.diags,
                });
            }
        };
        if raw.hop.is_empty() {
            c.at(
                0..0,
                "the inventory has no [[hop]]: a path needs at least one middlebox",
                Some(example_hop()),
            );
        }
        let mut hops: Vec<Hop> = Vec::new();
        // name -> line of its first hop: duplicate checks stay linear in the number of hops
        let mut hop_lines: HashMap<String, usize> = HashMap::new();
        for h in &raw.hop {
            if let Some(hop) = check_hop(&mut c, h, catalog) {
                if let Some(prev) = hop_lines.get(&hop.name) {
                    let span = h.get_ref().name.as_ref().map_or(h.span(), |n| n.span());
                    c.at(
                        span,
                        format!("hop name {:?} is already used on line {prev}", hop.name),
                        None,
                    );
                } else {
                    hop_lines.insert(hop.name.clone(), hop.line);
                }
                hops.push(hop);
            }
        }
        let mut clients: Vec<Client> = Vec::new();
        let mut client_names: HashSet<String> = HashSet::new();
        for cl in &raw.client {
            if let Some(client) = check_client(&mut c, cl) {
                if !client_names.insert(client.name.clone()) {
                    let span = cl.get_ref().name.as_ref().map_or(cl.span(), |n| n.span());
                    c.at(
                        span,
                        format!("client name {:?} is used twice", client.name),
                        None,
                    );
                }
                clients.push(client);
            }
        }
        let options = check_plan(&mut c, raw.plan.unwrap_or_default());
        if !c.diags.is_empty() {
            c.diags.sort_by_key(|d| d.offset);
            return Err(InventoryError {
                file: file.to_string(),
                diagnostics: c.diags,
            });
        }
        Ok(Inventory {
            name: raw.name,
            server: raw.server,
            hops,
            clients,
            options,
        })
    }
}

fn example_hop() -> String {
    "e.g. [[hop]] name = \"fw\", kind = \"firewall\", idle_timeout_s = 900, failure = \"reset\"; or catalog = \"aws-nat-gateway\"".into()
}

fn check_hop(c: &mut Checker<'_>, h: &Spanned<RawHop>, catalog: &Catalog) -> Option<Hop> {
    let raw = h.get_ref();
    let line = c.line(h.span().start);
    let before = c.diags.len();
    let entry = raw.catalog.as_ref().and_then(|id| {
        let found = catalog.get(id.get_ref());
        match found {
            None => {
                let hint = did_you_mean(
                    id.get_ref(),
                    catalog.entries().iter().map(|e| e.id.as_str()),
                )
                .or_else(|| Some("`idlereset catalog` lists the ids".into()));
                c.at(
                    id.span(),
                    format!("unknown catalog id {:?}", id.get_ref()),
                    hint,
                );
                None
            }
            Some(e) if e.kind == "os" || e.kind == "client" => {
                c.at(
                    id.span(),
                    format!(
                        "catalog entry {:?} is a {} default, not a middlebox on a path",
                        e.id, e.kind
                    ),
                    None,
                );
                None
            }
            Some(e) => Some(e),
        }
    });
    let name = match (&raw.name, &raw.catalog) {
        (Some(n), _) if n.get_ref().trim().is_empty() => {
            c.at(n.span(), "hop name is empty", None);
            None
        }
        (Some(n), _) => Some(n.get_ref().clone()),
        (None, Some(id)) => Some(id.get_ref().clone()),
        (None, None) => {
            c.at(h.span(), "hop has no `name`", Some(example_hop()));
            None
        }
    };
    let kind = match (&raw.kind, entry) {
        (Some(k), _) => one_of(c, k, "hop kind", &HopKind::ALL),
        (None, Some(e)) => Some(HopKind::from_catalog_kind(&e.kind)),
        (None, None) if raw.catalog.is_some() => None, // the unknown id was reported
        (None, None) => {
            c.at(
                h.span(),
                "hop has neither `kind` nor `catalog`",
                Some(example_hop()),
            );
            None
        }
    };
    let idle = match (&raw.idle_timeout_s, entry) {
        (Some(t), e) => {
            let x = *t.get_ref();
            if !(x.is_finite() && (MIN_IDLE_TIMEOUT_S..=MAX_IDLE_TIMEOUT_S).contains(&x)) {
                c.at(
                    t.span(),
                    format!("idle_timeout_s must be between {MIN_IDLE_TIMEOUT_S} and {MAX_IDLE_TIMEOUT_S} seconds, got {x}"),
                    None,
                );
                None
            } else if let Some(e) =
                e.filter(|e| e.min_s.is_some_and(|m| x < m) || e.max_s.is_some_and(|m| x > m))
            {
                c.at(
                    t.span(),
                    format!(
                        "{} allows idle timeouts of {}-{} s, not {x}",
                        e.name,
                        e.min_s.unwrap_or(0.0),
                        e.max_s.unwrap_or(f64::INFINITY)
                    ),
                    Some(format!("source: {}", e.source)),
                );
                None
            } else {
                Some(x)
            }
        }
        (None, Some(e)) => Some(e.idle_timeout_s),
        (None, None) if raw.catalog.is_some() => None,
        (None, None) => {
            c.at(
                h.span(),
                "hop has neither `idle_timeout_s` nor `catalog`",
                Some(example_hop()),
            );
            None
        }
    };
    let failure = match (&raw.failure, entry) {
        (Some(f), _) => one_of(c, f, "failure", &FAILURES),
        (None, Some(e)) => Some(e.failure),
        (None, None) => Some(Failure::Unknown),
    };
    let matches: Vec<Match> = raw
        .matches
        .iter()
        .filter_map(|m| match m.get_ref().parse::<Match>() {
            Ok(x) => Some(x),
            Err(e) => {
                c.at(
                    m.span(),
                    e.why.clone(),
                    Some("e.g. 198.18.2.0/24:5432, [2001:db8:2::]/64:5432, 2001:db8:2::/64".into()),
                );
                None
            }
        })
        .collect();
    let other_path = check_other_path(c, raw, kind);
    if c.diags.len() > before {
        return None;
    }
    let kind = kind?;
    let honours_keepalive = raw
        .honours_keepalive
        .or(entry.map(|e| e.honours_keepalive))
        .unwrap_or(kind != HopKind::Proxy);
    Some(Hop {
        name: name?,
        kind,
        idle_timeout_s: idle?,
        failure: failure?,
        honours_keepalive,
        catalog: entry.map(|e| e.id.clone()),
        matches,
        line,
        other_path,
    })
}

/// `asymmetric = true` / `failover = "..."`: a second path around a conntrack hop.
fn check_other_path(c: &mut Checker<'_>, raw: &RawHop, kind: Option<HopKind>) -> Option<OtherPath> {
    let failover = match &raw.failover {
        Some(f) if f.get_ref().trim().is_empty() => {
            c.at(
                f.span(),
                "failover is empty: name the path the flow moves to",
                Some("e.g. failover = \"nat-b\"".into()),
            );
            None
        }
        Some(f)
            if raw
                .name
                .as_ref()
                .is_some_and(|n| n.get_ref() == f.get_ref()) =>
        {
            c.at(f.span(), "failover names the hop itself", None);
            None
        }
        Some(f) => Some(f.get_ref().trim().to_string()),
        None => None,
    };
    let asymmetric = raw.asymmetric.unwrap_or(false);
    if !asymmetric && failover.is_none() {
        return None;
    }
    if kind == Some(HopKind::Proxy) {
        let span = raw.failover.as_ref().map_or(0..0, |f| f.span());
        let span = raw.kind.as_ref().map_or(span, |k| k.span());
        c.at(
            span,
            "asymmetric / failover apply to conntrack hops (firewall, nat, load-balancer): a proxy terminates TCP and sees both directions",
            None,
        );
        return None;
    }
    Some(OtherPath {
        asymmetric,
        failover,
    })
}

fn check_client(c: &mut Checker<'_>, cl: &Spanned<RawClient>) -> Option<Client> {
    let raw = cl.get_ref();
    let before = c.diags.len();
    let name = match &raw.name {
        Some(n) if !n.get_ref().trim().is_empty() => Some(n.get_ref().clone()),
        Some(n) => {
            c.at(n.span(), "client name is empty", None);
            None
        }
        None => {
            c.at(cl.span(), "client has no `name`", None);
            None
        }
    };
    let library = match &raw.library {
        Some(l) => library(c, l),
        None => {
            let names: Vec<&str> = Library::ALL.iter().map(|(n, _)| *n).collect();
            c.at(
                cl.span(),
                "client has no `library`",
                Some(format!("one of: {}", names.join(", "))),
            );
            None
        }
    };
    let version = raw
        .version
        .as_ref()
        .and_then(|v| match Version::parse(v.get_ref()) {
            Ok(x) => Some(x),
            Err(e) => {
                c.at(v.span(), e.to_string(), None);
                None
            }
        });
    let connections = match &raw.connections {
        None => 1,
        Some(n) if (1..=MAX_CONNECTIONS as i64).contains(n.get_ref()) => n.get_ref().unsigned_abs(),
        Some(n) => {
            c.at(
                n.span(),
                format!(
                    "connections must be 1-{MAX_CONNECTIONS} (all instances together), got {}",
                    n.get_ref()
                ),
                None,
            );
            0
        }
    };
    let cur = raw.current.as_ref();
    let current = match cur {
        None => Current::default(),
        Some(r) => Current {
            keepalive: r.keepalive,
            keepalive_time_s: c.positive(&r.keepalive_time_s, "keepalive_time_s"),
            keepalive_intvl_s: c.positive(&r.keepalive_intvl_s, "keepalive_intvl_s"),
            keepalive_probes: r.keepalive_probes.as_ref().and_then(|p| probes(c, p)),
            pool_idle_timeout_s: c.positive(&r.pool_idle_timeout_s, "pool_idle_timeout_s"),
            max_lifetime_s: c.positive(&r.max_lifetime_s, "max_lifetime_s"),
            heartbeat_s: c.positive(&r.heartbeat_s, "heartbeat_s"),
        },
    };
    if c.diags.len() > before {
        return None;
    }
    let (library, alias) = library?;
    Some(Client {
        name: name?,
        library,
        version,
        library_alias: alias
            .then(|| raw.library.as_ref().map(|l| l.get_ref().clone()))
            .flatten(),
        connections,
        current,
    })
}

/// A library identity or alias (`redis` -> redis-py); unknown names get a "did you mean".
fn library(c: &mut Checker<'_>, l: &Spanned<String>) -> Option<(Library, bool)> {
    if let Some(r) = Library::resolve(l.get_ref()) {
        return Some(r);
    }
    let cands = crate::libraries::Libraries::builtin().candidates(l.get_ref());
    if !cands.is_empty() {
        c.at(
            l.span(),
            format!("client library {:?} names several libraries", l.get_ref()),
            Some(format!("did you mean one of: {}?", cands.join(", "))),
        );
        return None;
    }
    one_of(c, l, "client library", &Library::ALL).map(|lib| (lib, false))
}

fn probes(c: &mut Checker<'_>, p: &Spanned<i64>) -> Option<u32> {
    let n = *p.get_ref();
    if (1..=MAX_PROBES).contains(&n) {
        u32::try_from(n).ok()
    } else {
        c.at(
            p.span(),
            format!("probe count must be 1-{MAX_PROBES} (Linux TCP_KEEPCNT), got {n}"),
            None,
        );
        None
    }
}

fn check_plan(c: &mut Checker<'_>, raw: RawPlan) -> Options {
    let mut o = Options::default();
    if let Some(p) = raw.probes.as_ref().and_then(|p| probes(c, p)) {
        o.probes = p;
    }
    if let Some(v) = raw.ip_version {
        match *v.get_ref() {
            4 => o.ip_version = IpVersion::V4,
            6 => o.ip_version = IpVersion::V6,
            n => c.at(
                v.span(),
                format!("ip_version must be 4 or 6, got {n}"),
                None,
            ),
        }
    }
    o
}

#[cfg(test)]
mod tests;
