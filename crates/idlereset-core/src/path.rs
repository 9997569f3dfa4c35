//! One path policy for every command that judges a connection against the path it crosses
//! (`audit`, `exporter`, `watch`, `triage`): a fixed timeout, a path inventory, the catalog's
//! default, or nothing known. Before this module each command wrote its own lookup and the
//! answers drifted; now a remote resolves to its path timeout in one place.

use std::net::SocketAddr;

use crate::catalog::Catalog;
use crate::inventory::Inventory;

/// The idle timeout of the path a socket crosses and where that number came from.
#[derive(Debug, Clone, PartialEq)]
pub struct PathTimeout {
    /// Idle seconds after which the path forgets the flow.
    pub seconds: f64,
    /// "--path-timeout", "paths.toml: hop fw (firewall, line 3)", "assumed: ...".
    pub source: String,
    /// The inventory hop with the smallest timeout, when the number came from an inventory.
    pub hop: Option<HopRef>,
}

/// The inventory hop a [`PathTimeout`] came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HopRef {
    /// The hop's `name`.
    pub name: String,
    /// The hop's kind as the inventory spells it (`firewall`, `nat`, ...).
    pub kind: &'static str,
}

/// What a policy knows about one remote.
#[derive(Debug, Clone, PartialEq)]
pub enum PathLookup {
    /// The remote is not on the described path (no inventory hop applies): not judged.
    OffPath,
    /// On the path, timeout unknown (no `--path-timeout`, no inventory, no assumed default).
    Unknown,
    /// On the path with this timeout.
    Known(PathTimeout),
}

impl PathLookup {
    /// The timeout when known.
    pub fn timeout(&self) -> Option<&PathTimeout> {
        match self {
            PathLookup::Known(t) => Some(t),
            _ => None,
        }
    }
}

/// How remotes resolve to path timeouts.
#[derive(Debug, Clone)]
pub enum PathPolicy {
    /// Nothing known: every remote is on the path, its timeout unknown.
    Unknown,
    /// One timeout for every remote (`--path-timeout`, or the catalog's assumed default).
    Fixed(PathTimeout),
    /// Per remote from an inventory's hop `matches`; `file` names it in `source` strings.
    Inventory {
        /// The parsed inventory.
        inventory: Box<Inventory>,
        /// How to name the inventory in messages (`paths.toml`, `<stdin>`).
        file: String,
    },
}

impl PathPolicy {
    /// One timeout for every remote, named `source` (`--path-timeout`).
    pub fn fixed(seconds: f64, source: impl Into<String>) -> PathPolicy {
        PathPolicy::Fixed(PathTimeout {
            seconds,
            source: source.into(),
            hop: None,
        })
    }

    /// Per-remote timeouts from an inventory read from `file`.
    pub fn inventory(inventory: Inventory, file: impl Into<String>) -> PathPolicy {
        PathPolicy::Inventory {
            inventory: Box::new(inventory),
            file: file.into(),
        }
    }

    /// The timeout assumed when nothing is given: the shortest NAT idle timeout documented in
    /// the catalog (NAT gateways are the middlebox most hosts cross without knowing). `None`
    /// only if the catalog has no NAT entry.
    pub fn catalog_default(catalog: &Catalog) -> Option<PathPolicy> {
        default_path_timeout(catalog).map(PathPolicy::Fixed)
    }

    /// The path timeout for `remote`.
    pub fn resolve(&self, remote: SocketAddr) -> PathLookup {
        match self {
            PathPolicy::Unknown => PathLookup::Unknown,
            PathPolicy::Fixed(t) => PathLookup::Known(t.clone()),
            PathPolicy::Inventory { inventory, file } => match inventory.path_timeout_for(remote) {
                Some((seconds, hop)) => PathLookup::Known(PathTimeout {
                    seconds,
                    source: format!(
                        "{file}: hop {} ({}, line {})",
                        hop.name,
                        hop.kind.as_str(),
                        hop.line
                    ),
                    hop: Some(HopRef {
                        name: hop.name.clone(),
                        kind: hop.kind.as_str(),
                    }),
                }),
                None => PathLookup::OffPath,
            },
        }
    }
}

/// The catalog default of [`PathPolicy::catalog_default`] as a bare [`PathTimeout`].
pub fn default_path_timeout(catalog: &Catalog) -> Option<PathTimeout> {
    let e = catalog
        .entries()
        .iter()
        .filter(|e| e.kind == "nat")
        .min_by(|a, b| a.idle_timeout_s.total_cmp(&b.idle_timeout_s))?;
    Some(PathTimeout {
        seconds: e.idle_timeout_s,
        source: format!(
            "assumed: {} {} s, the shortest NAT idle timeout in the catalog (pass --path-timeout or --inventory)",
            e.name, e.idle_timeout_s
        ),
        hop: None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const INV: &str = r#"
[[hop]]
name = "dc-fw"
kind = "firewall"
idle_timeout_s = 900
matches = ["198.18.2.0/24"]
"#;

    #[test]
    fn fixed_inventory_and_unknown() {
        let cat = Catalog::builtin().unwrap();
        let inv = Inventory::parse(INV, "paths.toml", &cat).unwrap();
        let p = PathPolicy::inventory(inv, "paths.toml");
        let on = p.resolve("198.18.2.10:5432".parse().unwrap());
        let t = on.timeout().unwrap();
        assert_eq!(t.seconds, 900.0);
        assert_eq!(t.source, "paths.toml: hop dc-fw (firewall, line 2)");
        assert_eq!(t.hop.as_ref().unwrap().kind, "firewall");
        assert_eq!(
            p.resolve("203.0.113.1:443".parse().unwrap()),
            PathLookup::OffPath
        );
        let f = PathPolicy::fixed(350.0, "--path-timeout");
        assert_eq!(
            f.resolve("203.0.113.1:443".parse().unwrap())
                .timeout()
                .unwrap()
                .seconds,
            350.0
        );
        assert_eq!(
            PathPolicy::Unknown.resolve("203.0.113.1:443".parse().unwrap()),
            PathLookup::Unknown
        );
        let d = PathPolicy::catalog_default(&cat).unwrap();
        let PathPolicy::Fixed(t) = d else {
            panic!("default is fixed")
        };
        assert!(t.source.starts_with("assumed: "), "{}", t.source);
    }
}
