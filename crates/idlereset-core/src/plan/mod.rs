//! The fix planner: from a path [`Inventory`] to settings that keep its connections alive.
//!
//! [`plan`] is a pure function; its [`Plan`] is what `idlereset plan --json` prints and what the
//! lab's `verify` consumes (it derives `Deserialize`, so a saved plan can be read back). The
//! margin rules live in [`keepalive`], per-library settings in [`clients`], costs in [`cost`],
//! advice for hops with a second path in [`multipath`] and the text / sysctl / Mermaid / DOT
//! renderers in [`render`].

pub mod clients;
pub mod cost;
pub mod keepalive;
pub mod multipath;
pub mod render;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::inventory::{Hop, HopKind, Inventory};
use clients::ClientPlan;
use cost::{ConntrackCost, KeepaliveCost};
use keepalive::{Keepalive, Pool};

/// Where the OS keepalive defaults go.
pub const SYSCTL_FILE: &str = "/etc/sysctl.d/90-idlereset-keepalive.conf";

/// Settings for a whole path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Free-text name of the path, from the inventory.
    pub path: Option<String>,
    /// Free-text description of the server end, from the inventory.
    pub server: Option<String>,
    /// Smallest idle timeout over all hops.
    pub path_timeout_s: f64,
    /// Name of the hop with that timeout.
    pub limiting_hop: String,
    /// The inventory's hops, in order from the clients.
    pub hops: Vec<Hop>,
    /// Keepalive settings for the path.
    pub keepalive: Keepalive,
    /// Connection-pool limits for the path.
    pub pool: Pool,
    /// Needed when a hop ignores TCP keepalives.
    pub heartbeat: Option<Heartbeat>,
    /// One plan per client, in inventory order.
    pub clients: Vec<ClientPlan>,
    /// OS defaults for sockets that set SO_KEEPALIVE (`sysctl` name -> value).
    pub sysctl: BTreeMap<String, u64>,
    /// File the `sysctl` values go to ([`SYSCTL_FILE`]).
    pub sysctl_file: String,
    /// The other way round: make the firewalls remember longer.
    pub firewall: FirewallPlan,
    /// Keepalive traffic of all clients together.
    pub cost: KeepaliveCost,
    /// Problems with the path itself (too short for a library's minimums, ...).
    pub warnings: Vec<String>,
    /// Hops with a second path (asymmetric, failover): INVALID packets and frozen timers.
    #[serde(default)]
    pub multipath: Vec<multipath::MultiPathHop>,
}

/// Application-level heartbeat for hops that ignore TCP keepalives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Heartbeat period, seconds (half the hop's timeout).
    pub interval_s: u64,
    /// Name of the keepalive-ignoring hop with the smallest timeout.
    pub hop: String,
    /// That hop's idle timeout, seconds.
    pub hop_timeout_s: f64,
}

/// The firewall-side alternative: a longer conntrack established timeout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FirewallPlan {
    /// `net.netfilter.nf_conntrack_tcp_timeout_established` (or the ct timeout policy) value.
    pub established_timeout_s: u64,
    /// Longest idle a client allows (pool idle timeout or keepalive time), when all are bounded.
    pub longest_client_idle_s: Option<f64>,
    /// Clients whose idle is unbounded (no keepalive, no pool idle timeout): no timeout covers them.
    pub unbounded_clients: Vec<String>,
    /// Per hop shorter than the planned value: whether it can be raised.
    pub hops: Vec<FirewallHop>,
    /// Memory the longer timeout costs.
    pub conntrack: ConntrackCost,
}

/// One hop of the firewall-side alternative.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FirewallHop {
    /// Name of the hop.
    pub hop: String,
    /// Its idle timeout now, seconds.
    pub from_s: f64,
    /// Whether the hop can be configured to the planned value.
    pub possible: bool,
    /// How to raise it, or why it cannot be.
    pub note: String,
}

/// Compute the plan. The inventory is validated, so it has at least one hop.
pub fn plan(inv: &Inventory) -> Plan {
    let (t, limiting) = match inv.path_timeout() {
        Some((t, h)) => (t, h.name.clone()),
        None => (keepalive::LINUX_KEEPALIVE_TIME_S as f64, String::new()),
    };
    let k = keepalive::keepalive(t, inv.options.probes);
    let pool = keepalive::pool(t);
    let heartbeat = inv.keepalive_blind_timeout().map(|(b, h)| Heartbeat {
        interval_s: keepalive::heartbeat(b),
        hop: h.name.clone(),
        hop_timeout_s: b,
    });
    let ctx = clients::Ctx {
        path_timeout_s: t,
        limiting_hop: &limiting,
        keepalive: k,
        pool,
        heartbeat: heartbeat.as_ref(),
    };
    let clients: Vec<ClientPlan> = inv
        .clients
        .iter()
        .map(|c| clients::plan_client(c, &ctx, inv.options.ip_version))
        .collect();
    let sysctl = BTreeMap::from([
        ("net.ipv4.tcp_keepalive_time".to_string(), k.time_s),
        ("net.ipv4.tcp_keepalive_intvl".to_string(), k.intvl_s),
        (
            "net.ipv4.tcp_keepalive_probes".to_string(),
            u64::from(k.probes),
        ),
    ]);
    let mut warnings = Vec::new();
    if t < 60.0 {
        warnings.push(format!(
            "path timeout {t} s is shorter than many libraries' minimum ping or pool limits (settings below a library's minimum are raised to it or left out: see each client's notes and below-library-minimum problems); prefer raising the hop's timeout"
        ));
    }
    if let Some(h) = &heartbeat {
        warnings.push(format!(
            "hop {:?} ignores TCP keepalives: idle connections need application traffic every {} s (or a max lifetime below {} s)",
            h.hop, h.interval_s, h.hop_timeout_s
        ));
    }
    let multipath = multipath::advise(&inv.hops);
    for m in &multipath {
        warnings.push(format!(
            "hop {:?} has a second path ({}): packets that go around it make the flow INVALID there and freeze its conntrack timer (keepalives and pings do not help); set {}={} on that box and alert on {}",
            m.hop,
            m.other_path.label(),
            m.sysctl,
            m.value,
            m.alerts.join(" / ")
        ));
    }
    let firewall = firewall_plan(inv, &clients, t);
    let cost = cost::keepalive_cost(&k, inv.total_connections(), inv.options.ip_version);
    Plan {
        path: inv.name.clone(),
        server: inv.server.clone(),
        path_timeout_s: t,
        limiting_hop: limiting,
        hops: inv.hops.clone(),
        keepalive: k,
        pool,
        heartbeat,
        clients,
        sysctl,
        sysctl_file: SYSCTL_FILE.to_string(),
        firewall,
        cost,
        warnings,
        multipath,
    }
}

fn firewall_plan(inv: &Inventory, clients: &[ClientPlan], t: f64) -> FirewallPlan {
    let unbounded: Vec<String> = clients
        .iter()
        .filter(|c| c.current_idle_bound_s.is_none())
        .map(|c| c.name.clone())
        .collect();
    let longest = clients
        .iter()
        .filter_map(|c| c.current_idle_bound_s)
        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
    // Never plan a firewall timeout shorter than what the path already has.
    let target = keepalive::firewall_timeout(longest.unwrap_or(0.0)).max(keepalive::nice_ceil(t));
    let hops = inv
        .hops
        .iter()
        .filter(|h| h.idle_timeout_s < target as f64)
        .map(|h| firewall_hop(h, target))
        .collect();
    FirewallPlan {
        established_timeout_s: target,
        longest_client_idle_s: if unbounded.is_empty() { longest } else { None },
        unbounded_clients: unbounded,
        hops,
        conntrack: cost::conntrack_cost(inv.total_connections(), t, target),
    }
}

fn firewall_hop(h: &Hop, target: u64) -> FirewallHop {
    let catalog = h
        .catalog
        .as_deref()
        .and_then(|id| crate::catalog::Catalog::builtin().ok()?.get(id).cloned());
    let (possible, note) = match (&catalog, h.kind) {
        (Some(e), _) if e.max_s.is_some_and(|m| m >= target as f64) => (
            true,
            format!(
                "{} is configurable up to {} s ({})",
                e.name,
                e.max_s.unwrap_or(0.0),
                e.source
            ),
        ),
        (Some(e), _) if e.max_s.is_some() => (
            false,
            format!(
                "{} allows at most {} s ({})",
                e.name,
                e.max_s.unwrap_or(0.0),
                e.source
            ),
        ),
        (Some(e), _)
            if e.note
                .as_deref()
                .is_some_and(|n| n.to_lowercase().contains("fixed")) =>
        {
            (
                false,
                format!("{} has a fixed timeout ({})", e.name, e.source),
            )
        }
        (_, HopKind::Proxy) => (
            false,
            "a proxy's idle timeout is an application setting; keepalives do not reach it".into(),
        ),
        (Some(e), _) => (
            true,
            format!(
                "raise the {} timeout in its configuration ({})",
                e.name, e.source
            ),
        ),
        (None, _) => (
            true,
            "Linux conntrack: the sysctl or the nftables ct timeout policy below".into(),
        ),
    };
    FirewallHop {
        hop: h.name.clone(),
        from_s: h.idle_timeout_s,
        possible,
        note,
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_libraries;
#[cfg(test)]
mod tests_support;
