//! The timeout catalog: documented idle timeouts and defaults, each with its source.
//!
//! The data lives in `data/catalog.toml` (not scattered constants) so that a reviewer can check
//! every number against the document it came from. Analysis commands use it to say which
//! component's timeout matches what they measured.

use serde::{Deserialize, Serialize};

const CATALOG_TOML: &str = include_str!("../data/catalog.toml");

/// What the peer sees when an idle timeout fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Failure {
    /// The peer gets a RST (the hop answers for the forgotten flow).
    Reset,
    /// Packets are silently dropped; the sender retransmits until it gives up.
    Drop,
    /// The hop closes the flow with a FIN.
    Fin,
    /// Nothing fails (the timeout only frees state).
    None,
    /// Not documented by the source.
    Unknown,
}

/// One documented timeout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Stable identifier (`linux-conntrack-established`, ...).
    pub id: String,
    /// Human-readable product name.
    pub name: String,
    /// Kind of box (`load-balancer`, `firewall`, `nat`, `proxy`, `os`, ...).
    pub kind: String,
    /// Default idle timeout, seconds.
    pub idle_timeout_s: f64,
    /// Smallest configurable timeout, seconds, when the product documents one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_s: Option<f64>,
    /// Largest configurable timeout, seconds, when the product documents one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_s: Option<f64>,
    /// What the endpoints see when the timeout fires.
    pub failure: Failure,
    /// Whether a TCP keepalive probe refreshes the idle timer.
    pub honours_keepalive: bool,
    /// The document the figures come from (URL or manual section).
    pub source: String,
    /// Free-text caveat shown with the entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A catalog entry close to an observed value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate<'a> {
    /// The catalog entry.
    pub entry: &'a Entry,
    /// Relative distance between the observed value and the entry's timeout (0 = exact).
    pub distance: f64,
}

/// `data/catalog.toml` did not parse or has unknown fields (a build-time defect, caught by tests).
#[derive(Debug, thiserror::Error)]
#[error("timeout catalog data/catalog.toml is invalid: {0}")]
pub struct CatalogError(#[from] toml::de::Error);

#[derive(Debug, Deserialize)]
struct File {
    entry: Vec<Entry>,
}

/// The built-in catalog.
#[derive(Debug, Clone)]
pub struct Catalog {
    entries: Vec<Entry>,
}

impl Catalog {
    /// The catalog shipped in the binary.
    pub fn builtin() -> Result<Catalog, CatalogError> {
        let file: File = toml::from_str(CATALOG_TOML)?;
        Ok(Catalog {
            entries: file.entry,
        })
    }

    /// Every entry, in file order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry with this id.
    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.id == id)
    }

    /// Middlebox / proxy entries whose default timeout lies within `tolerance` (relative) of
    /// `observed_s`, or whose configurable range contains it; closest first.
    pub fn near(&self, observed_s: f64, tolerance: f64) -> Vec<Candidate<'_>> {
        let mut out: Vec<Candidate<'_>> = self
            .entries
            .iter()
            .filter(|e| e.kind != "os" && e.kind != "client")
            .filter_map(|e| {
                let distance = (observed_s - e.idle_timeout_s).abs() / e.idle_timeout_s.max(1.0);
                (distance <= tolerance).then_some(Candidate { entry: e, distance })
            })
            .collect();
        out.sort_by(|a, b| a.distance.total_cmp(&b.distance));
        out
    }

    /// Middlebox / proxy entries whose default timeout lies in the bracket `(low, high]` widened
    /// by `tolerance` (relative) on both sides: what an observed "survived `low`, failed after
    /// `high`" allows. `distance` is relative to the bracket's middle; closest first.
    pub fn within(&self, low: f64, high: f64, tolerance: f64) -> Vec<Candidate<'_>> {
        let (lo, hi) = (low * (1.0 - tolerance), high * (1.0 + tolerance));
        let mid = ((low + high) / 2.0).max(1.0);
        let mut out: Vec<Candidate<'_>> = self
            .entries
            .iter()
            .filter(|e| e.kind != "os" && e.kind != "client")
            .filter(|e| e.idle_timeout_s > lo && e.idle_timeout_s <= hi)
            .map(|e| Candidate {
                entry: e,
                distance: (e.idle_timeout_s - mid).abs() / mid,
            })
            .collect();
        out.sort_by(|a, b| a.distance.total_cmp(&b.distance));
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn builtin_parses_and_every_entry_has_a_source() {
        let c = Catalog::builtin().expect("catalog parses");
        assert!(c.entries().len() >= 15);
        for e in c.entries() {
            assert!(!e.source.is_empty(), "{} lacks a source", e.id);
            assert!(e.idle_timeout_s > 0.0, "{}", e.id);
        }
        let mut ids: Vec<_> = c.entries().iter().map(|e| e.id.as_str()).collect();
        ids.sort_unstable();
        let n = ids.len();
        ids.dedup();
        assert_eq!(n, ids.len(), "ids are unique");
    }

    #[test]
    fn design_facts() {
        let c = Catalog::builtin().unwrap();
        assert_eq!(c.get("aws-nat-gateway").unwrap().idle_timeout_s, 350.0);
        assert_eq!(c.get("gcp-cloud-nat").unwrap().idle_timeout_s, 1200.0);
        assert_eq!(c.get("azure-load-balancer").unwrap().idle_timeout_s, 240.0);
        assert_eq!(
            c.get("linux-conntrack-established").unwrap().idle_timeout_s,
            432000.0
        );
    }

    #[test]
    fn near_finds_the_closest() {
        let c = Catalog::builtin().unwrap();
        let near = c.near(352.0, 0.05);
        assert!(!near.is_empty());
        assert!(near.iter().all(|cand| cand.entry.idle_timeout_s == 350.0));
        assert!(c.near(12345.0, 0.01).is_empty());
    }

    #[test]
    fn within_uses_the_bracket() {
        let c = Catalog::builtin().unwrap();
        let ids: Vec<_> = c
            .within(880.0, 905.0, 0.0)
            .iter()
            .map(|x| x.entry.id.clone())
            .collect();
        assert_eq!(ids, vec!["docker-swarm-ipvs".to_string()]);
        // Survived 900 s: a 900 s timeout is ruled out unless the tolerance allows it.
        assert!(c.within(900.0, 1000.0, 0.0).is_empty());
        assert!(!c.within(900.0, 1000.0, 0.02).is_empty());
        // Clients and OS defaults are never middlebox candidates.
        assert!(c.within(1700.0, 1900.0, 0.0).is_empty());
    }
}
