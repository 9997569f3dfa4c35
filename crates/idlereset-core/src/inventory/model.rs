//! The validated inventory: typed hops and clients, nothing left as free text.
//!
//! `validate.rs` turns TOML into these types (with line/column errors); `plan`, `audit`,
//! `exporter` and the lab's `verify` consume them. Everything here is plain data plus the
//! queries those consumers share (smallest timeout, which hops apply to a remote).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::catalog::Failure;
use crate::inventory::matches::Match;
use crate::libraries::Version;

/// A path: the middleboxes between clients and a server, and the clients that cross them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    /// Free-text name of the path ("app to orders-db").
    pub name: Option<String>,
    /// Free-text description of the server end ("postgres 198.18.2.10:5432").
    pub server: Option<String>,
    /// Hops in order from the clients towards the server; never empty.
    pub hops: Vec<Hop>,
    /// The applications whose connections cross the path; never empty.
    pub clients: Vec<Client>,
    /// Planning options (`[plan]` table).
    pub options: Options,
}

/// One stateful middlebox (or proxy) on the path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hop {
    /// Name of the hop, unique in the inventory.
    pub name: String,
    /// What kind of box it is.
    pub kind: HopKind,
    /// Idle time after which the hop forgets the flow.
    pub idle_timeout_s: f64,
    /// What the endpoints see when the hop has forgotten the flow.
    pub failure: Failure,
    /// Whether TCP keepalive probes refresh the hop's idle timer (L7 proxies: no).
    pub honours_keepalive: bool,
    /// The catalog entry the values came from, when `catalog = "..."` was used.
    pub catalog: Option<String>,
    /// Remotes this hop applies to; empty = every remote.
    pub matches: Vec<Match>,
    /// 1-based line of the `[[hop]]` header in the inventory (for messages).
    pub line: usize,
    /// A second path some of the flow's packets can take around this hop (`asymmetric = true`
    /// or `failover = "..."`); `None`: every packet of a flow crosses this hop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other_path: Option<OtherPath>,
}

/// How packets of one flow can go around a hop: its conntrack then sees only part of the flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtherPath {
    /// The two directions of a flow can take different paths (`asymmetric = true`).
    pub asymmetric: bool,
    /// The path (box, route) the flow moves to on a failover (`failover = "nat-b"`).
    pub failover: Option<String>,
}

impl OtherPath {
    /// A short label for the second path (`failover via nat-b`, `asymmetric return path`).
    pub fn label(&self) -> String {
        match (&self.failover, self.asymmetric) {
            (Some(f), true) => format!("failover via {f}, asymmetric"),
            (Some(f), false) => format!("failover via {f}"),
            (None, _) => "asymmetric return path".to_string(),
        }
    }
}

/// Kind of stateful hop on a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HopKind {
    /// A stateful firewall (conntrack).
    Firewall,
    /// A NAT gateway.
    Nat,
    /// A load balancer.
    LoadBalancer,
    /// A proxy terminating TCP.
    Proxy,
}

impl HopKind {
    /// Each kind with its inventory spelling.
    pub const ALL: [(&'static str, HopKind); 4] = [
        ("firewall", HopKind::Firewall),
        ("nat", HopKind::Nat),
        ("load-balancer", HopKind::LoadBalancer),
        ("proxy", HopKind::Proxy),
    ];

    /// The inventory spelling (`firewall`, `nat`, `load-balancer`, `proxy`).
    pub fn as_str(self) -> &'static str {
        match self {
            HopKind::Firewall => "firewall",
            HopKind::Nat => "nat",
            HopKind::LoadBalancer => "load-balancer",
            HopKind::Proxy => "proxy",
        }
    }

    /// A hop kind for a catalog entry kind (`conntrack`, `orchestrator`, ... map to the closest).
    pub(crate) fn from_catalog_kind(kind: &str) -> HopKind {
        match kind {
            "nat" => HopKind::Nat,
            "load-balancer" | "orchestrator" => HopKind::LoadBalancer,
            "proxy" | "client" => HopKind::Proxy,
            _ => HopKind::Firewall,
        }
    }
}

/// One application (or group of identical instances) whose connections cross the path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Client {
    /// Name of the application, unique in the inventory.
    pub name: String,
    /// The client library its connections go through.
    pub library: Library,
    /// The library version (`version = "2.7.9"`); `None` = the data file's assumed version.
    pub version: Option<Version>,
    /// The older or informal name the inventory used for `library` (`redis`, `grpc`, ...).
    pub library_alias: Option<String>,
    /// Connections held open across the path (all instances together), at most
    /// [`MAX_CONNECTIONS`].
    pub connections: u64,
    /// What it runs with today.
    pub current: Current,
}

/// Upper bound on a client's `connections`: far above any conntrack table (a few million
/// entries), low enough that cost arithmetic cannot overflow.
pub const MAX_CONNECTIONS: u64 = 100_000_000;

/// The client library identity, which decides in whose terms the settings are written. Its
/// behaviour lives in `data/libraries.toml` ([`crate::libraries`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Library {
    /// libpq (C; also psycopg2, psycopg).
    Libpq,
    /// PgJDBC (Java).
    Pgjdbc,
    /// HikariCP over PgJDBC (Java).
    Hikaricp,
    /// node-postgres (`pg`, Node.js).
    NodePg,
    /// pgx (Go).
    Pgx,
    /// lib/pq (Go).
    LibPq,
    /// redis-py (Python).
    RedisPy,
    /// ioredis (Node.js).
    Ioredis,
    /// go-redis (Go).
    GoRedis,
    /// grpcio (Python).
    Grpcio,
    /// grpc-go (Go).
    GrpcGo,
    /// grpc-java (Java).
    GrpcJava,
    /// @grpc/grpc-js (Node.js).
    GrpcJs,
    /// Go's standard `net` package.
    Go,
    /// Java's standard sockets.
    Java,
    /// Python's standard `socket` module.
    Python,
    /// Plain sockets, no library defaults (every setting explicit).
    Raw,
}

impl Library {
    /// Each library with its inventory spelling.
    pub const ALL: [(&'static str, Library); 17] = [
        ("libpq", Library::Libpq),
        ("pgjdbc", Library::Pgjdbc),
        ("hikaricp", Library::Hikaricp),
        ("node-pg", Library::NodePg),
        ("pgx", Library::Pgx),
        ("lib-pq", Library::LibPq),
        ("redis-py", Library::RedisPy),
        ("ioredis", Library::Ioredis),
        ("go-redis", Library::GoRedis),
        ("grpcio", Library::Grpcio),
        ("grpc-go", Library::GrpcGo),
        ("grpc-java", Library::GrpcJava),
        ("grpc-js", Library::GrpcJs),
        ("go", Library::Go),
        ("java", Library::Java),
        ("python", Library::Python),
        ("raw", Library::Raw),
    ];

    /// The inventory spelling (`libpq`, `node-pg`, ...).
    pub fn as_str(self) -> &'static str {
        Library::ALL
            .iter()
            .find(|(_, l)| *l == self)
            .map_or("raw", |(s, _)| s)
    }

    /// The identity for a name or one of its aliases in the data file; the flag says an alias
    /// was used.
    pub fn resolve(name: &str) -> Option<(Library, bool)> {
        let (data, alias) = crate::libraries::Libraries::builtin().resolve(name)?;
        let lib = Library::ALL.iter().find(|(n, _)| *n == data.name)?.1;
        Some((lib, alias))
    }
}

/// What a client runs with today (all optional: unknown = the library's default).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Current {
    /// Whether the sockets set SO_KEEPALIVE.
    pub keepalive: Option<bool>,
    /// TCP_KEEPIDLE, seconds.
    pub keepalive_time_s: Option<f64>,
    /// TCP_KEEPINTVL, seconds.
    pub keepalive_intvl_s: Option<f64>,
    /// TCP_KEEPCNT, a count of probes.
    pub keepalive_probes: Option<u32>,
    /// Pool: idle connections are closed after this long.
    pub pool_idle_timeout_s: Option<f64>,
    /// Pool: connections are retired after this age.
    pub max_lifetime_s: Option<f64>,
    /// Application-level heartbeat / validation query period.
    pub heartbeat_s: Option<f64>,
}

/// Inventory-wide planning options (`[plan]` table).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Options {
    /// Keepalive probe count (TCP_KEEPCNT); default 5, as in the runbook.
    pub probes: u32,
    /// IP version on the wire, for packet-size costs.
    pub ip_version: IpVersion,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            probes: 5,
            ip_version: IpVersion::V4,
        }
    }
}

/// IP version on the wire, for packet-size costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpVersion {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Hop {
    /// Whether this hop sits on the way to `remote` (a hop without `matches` is on every path).
    pub(crate) fn applies_to(&self, remote: SocketAddr) -> bool {
        self.matches.is_empty() || self.matches.iter().any(|m| m.matches(remote))
    }
}

impl Inventory {
    /// The smallest idle timeout over all hops, and that hop.
    pub fn path_timeout(&self) -> Option<(f64, &Hop)> {
        smallest(self.hops.iter())
    }

    /// The smallest idle timeout over the hops on the way to `remote`, and that hop; `None` when
    /// no hop applies to it (it does not cross this inventory's path).
    pub fn path_timeout_for(&self, remote: SocketAddr) -> Option<(f64, &Hop)> {
        smallest(self.hops.iter().filter(|h| h.applies_to(remote)))
    }

    /// The same inventory restricted to the hops on the way to `remote`; `None` when no hop
    /// applies. Lets `plan --remote` plan one path of a host that talks to several.
    pub fn for_remote(&self, remote: SocketAddr) -> Option<Inventory> {
        let hops: Vec<Hop> = self
            .hops
            .iter()
            .filter(|h| h.applies_to(remote))
            .cloned()
            .collect();
        (!hops.is_empty()).then(|| Inventory {
            hops,
            ..self.clone()
        })
    }

    /// The smallest idle timeout over hops that ignore TCP keepalives (need app heartbeats).
    pub(crate) fn keepalive_blind_timeout(&self) -> Option<(f64, &Hop)> {
        smallest(self.hops.iter().filter(|h| !h.honours_keepalive))
    }

    /// Connections over all clients.
    pub(crate) fn total_connections(&self) -> u64 {
        self.clients.iter().map(|c| c.connections).sum()
    }
}

/// First hop with the smallest timeout (ties keep the earlier hop: it is met first).
fn smallest<'a>(hops: impl Iterator<Item = &'a Hop>) -> Option<(f64, &'a Hop)> {
    hops.fold(None, |best: Option<&Hop>, h| match best {
        Some(b) if b.idle_timeout_s <= h.idle_timeout_s => Some(b),
        _ => Some(h),
    })
    .map(|h| (h.idle_timeout_s, h))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn hop(name: &str, t: f64, matches: &[&str], honours: bool) -> Hop {
        Hop {
            name: name.into(),
            kind: HopKind::Firewall,
            idle_timeout_s: t,
            failure: Failure::Reset,
            honours_keepalive: honours,
            catalog: None,
            matches: matches.iter().map(|m| m.parse().unwrap()).collect(),
            line: 1,
            other_path: None,
        }
    }

    fn inv(hops: Vec<Hop>) -> Inventory {
        Inventory {
            name: None,
            server: None,
            hops,
            clients: vec![],
            options: Options::default(),
        }
    }

    #[test]
    fn path_timeout_is_the_smallest_hop() {
        let i = inv(vec![
            hop("a", 3600.0, &[], true),
            hop("b", 350.0, &[], true),
            hop("c", 900.0, &[], true),
        ]);
        let (t, h) = i.path_timeout().unwrap();
        assert_eq!((t, h.name.as_str()), (350.0, "b"));
        assert!(inv(vec![]).path_timeout().is_none());
    }

    #[test]
    fn path_timeout_for_picks_hops_by_remote() {
        let i = inv(vec![
            hop("edge", 3600.0, &[], true),
            hop(
                "db-fw",
                900.0,
                &["198.18.2.0/24:5432", "[2001:db8:2::]/64:5432"],
                true,
            ),
            hop("api-nat", 350.0, &["198.18.3.0/24"], true),
        ]);
        let db = i
            .path_timeout_for("198.18.2.10:5432".parse().unwrap())
            .unwrap();
        assert_eq!((db.0, db.1.name.as_str()), (900.0, "db-fw"));
        let db6 = i
            .path_timeout_for("[2001:db8:2::10]:5432".parse().unwrap())
            .unwrap();
        assert_eq!(db6.1.name, "db-fw");
        let api = i
            .path_timeout_for("198.18.3.7:443".parse().unwrap())
            .unwrap();
        assert_eq!((api.0, api.1.name.as_str()), (350.0, "api-nat"));
        let other = i
            .path_timeout_for("198.18.9.9:22".parse().unwrap())
            .unwrap();
        assert_eq!(other.1.name, "edge");
        let only_matched = inv(vec![hop("db-fw", 900.0, &["198.18.2.0/24"], true)]);
        assert!(
            only_matched
                .path_timeout_for("198.18.9.9:22".parse().unwrap())
                .is_none()
        );
    }

    #[test]
    fn for_remote_keeps_only_the_hops_on_that_path() {
        let i = inv(vec![
            hop("edge", 3600.0, &[], true),
            hop("db-fw", 900.0, &["198.18.2.0/24:5432"], true),
            hop("api-nat", 350.0, &["198.18.3.0/24"], true),
        ]);
        let db = i.for_remote("198.18.2.10:5432".parse().unwrap()).unwrap();
        let names: Vec<&str> = db.hops.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["edge", "db-fw"]);
        assert_eq!(db.path_timeout().unwrap().0, 900.0);
        let only = inv(vec![hop("db-fw", 900.0, &["198.18.2.0/24"], true)]);
        assert!(only.for_remote("10.0.0.1:1".parse().unwrap()).is_none());
    }

    #[test]
    fn keepalive_blind_hops() {
        let i = inv(vec![
            hop("nat", 350.0, &[], true),
            hop("alb", 60.0, &[], false),
        ]);
        assert_eq!(i.keepalive_blind_timeout().unwrap().1.name, "alb");
        assert!(
            inv(vec![hop("nat", 350.0, &[], true)])
                .keepalive_blind_timeout()
                .is_none()
        );
    }

    #[test]
    fn library_names_round_trip() {
        for (s, l) in Library::ALL {
            assert_eq!(l.as_str(), s);
        }
    }
}
