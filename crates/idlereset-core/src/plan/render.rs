//! Renderers for a [`Plan`]: human text, the `/etc/sysctl.d/` file, the nftables ct timeout
//! policy, and the path as a Mermaid or Graphviz DOT diagram with each hop's expiry.
//!
//! All are pure `Plan -> String` functions so they can be snapshot-tested and reused by the
//! lab's `verify` (it applies the sysctl and nft texts to lab namespaces).

use std::fmt::Write;
use std::net::IpAddr;

use crate::catalog::Failure;
use crate::duration::Human;
use crate::inventory::Hop;
use crate::plan::Plan;

/// `fmt::Write` into a `String` cannot fail; this keeps the renderers free of `unwrap`.
macro_rules! w {
    ($out:expr) => {{
        $out.push('\n');
    }};
    ($out:expr, $($arg:tt)*) => {{
        let _ = writeln!($out, $($arg)*);
    }};
}

fn failure(f: Failure) -> &'static str {
    match f {
        Failure::Reset => "reset",
        Failure::Drop => "drop",
        Failure::Fin => "fin",
        Failure::None => "none",
        Failure::Unknown => "unknown",
    }
}

fn path_title(p: &Plan) -> String {
    match (&p.path, &p.server) {
        (Some(n), Some(s)) => format!("{n} (server: {s})"),
        (Some(n), None) => n.clone(),
        (None, Some(s)) => format!("to {s}"),
        (None, None) => "path".into(),
    }
}

fn kib(bytes: f64) -> String {
    if bytes >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", bytes / 1024.0 / 1024.0)
    } else if bytes >= 1024.0 {
        format!("{:.1} KiB", bytes / 1024.0)
    } else {
        format!("{bytes:.0} B")
    }
}

/// The human report.
pub fn text(p: &Plan) -> String {
    let mut o = String::new();
    w!(o, "Path: {}", path_title(p));
    for h in &p.hops {
        let mark = if h.name == p.limiting_hop {
            "  <- limiting"
        } else {
            ""
        };
        let ka = if h.honours_keepalive {
            "keepalives refresh it"
        } else {
            "IGNORES keepalives"
        };
        w!(
            o,
            "  {:<18} {:<13} {:<20} {:<7} {ka}{mark}",
            h.name,
            h.kind.as_str(),
            Human(h.idle_timeout_s).to_string(),
            failure(h.failure)
        );
    }
    w!(
        o,
        "Path timeout: {}, set by hop {:?}",
        Human(p.path_timeout_s),
        p.limiting_hop
    );
    w!(o);
    let k = &p.keepalive;
    w!(o, "TCP keepalive (every socket that crosses the path)");
    w!(
        o,
        "  time {} s, intvl {} s, probes {}",
        k.time_s,
        k.intvl_s,
        k.probes
    );
    w!(
        o,
        "  first probe {} s before {:?} forgets an idle flow; both time and intvl stay below {} s",
        k.margin_s,
        p.limiting_hop,
        p.path_timeout_s
    );
    w!(
        o,
        "  a dead peer is detected after {} s (time + intvl x probes; TCP_USER_TIMEOUT {} ms)",
        k.detect_dead_peer_s,
        k.tcp_user_timeout_ms
    );
    w!(
        o,
        "  one side's probes and the peer's ACKs refresh every hop; enable it on the server too, so it drops dead clients"
    );
    w!(
        o,
        "Pool: idle timeout {} s, max lifetime {} s (both below the path timeout)",
        p.pool.idle_timeout_s,
        p.pool.max_lifetime_s
    );
    if let Some(h) = &p.heartbeat {
        w!(
            o,
            "Heartbeat: hop {:?} ignores TCP keepalives; send application traffic every {} s (below its {} s)",
            h.hop,
            h.interval_s,
            h.hop_timeout_s
        );
    }
    for c in &p.clients {
        w!(o);
        w!(
            o,
            "Client {} ({} {}{}, {} connections)",
            c.name,
            c.library.as_str(),
            c.version,
            if c.version_assumed { " assumed" } else { "" },
            c.connections
        );
        for pr in &c.problems {
            w!(o, "  ! {}: {}", pr.kind, pr.detail);
        }
        w!(o, "  settings:");
        for (key, v) in &c.settings.0 {
            w!(o, "    {key} = {v}");
        }
        w!(o, "  snippet:");
        for line in c.snippet.lines() {
            w!(o, "    | {line}");
        }
        for n in &c.notes {
            w!(o, "  - {n}");
        }
    }
    w!(o);
    w!(
        o,
        "OS defaults for sockets that set SO_KEEPALIVE ({}; `--format sysctl`):",
        p.sysctl_file
    );
    for (name, v) in &p.sysctl {
        w!(o, "  {name} = {v}");
    }
    w!(o);
    let f = &p.firewall;
    w!(
        o,
        "Firewall-side alternative: conntrack established timeout {}",
        Human(f.established_timeout_s as f64)
    );
    match (f.longest_client_idle_s, f.unbounded_clients.is_empty()) {
        (Some(l), _) => w!(
            o,
            "  outlasts the longest idle a client allows today ({}) and the Linux default keepalive (7200 s)",
            Human(l)
        ),
        (None, false) => w!(
            o,
            "  clients {:?} can idle forever (no keepalive, no pool idle timeout): no timeout covers them",
            f.unbounded_clients
        ),
        (None, true) => w!(o, "  outlasts the Linux default keepalive (7200 s)"),
    }
    if f.hops.is_empty() {
        w!(
            o,
            "  no hop needs a change: every hop already keeps idle flows at least that long"
        );
    }
    for h in &f.hops {
        w!(
            o,
            "  hop {}: {} s -> {} s: {}{}",
            h.hop,
            h.from_s,
            f.established_timeout_s,
            if h.possible { "" } else { "NOT POSSIBLE: " },
            h.note
        );
    }
    w!(
        o,
        "  every flow on a Linux box: sysctl -w net.netfilter.nf_conntrack_tcp_timeout_established={}",
        f.established_timeout_s
    );
    w!(
        o,
        "  just this flow (nftables >= 0.9.1 ct timeout policy; applies to new flows only):"
    );
    for line in nft(p).lines() {
        w!(o, "    | {line}");
    }
    let ct = &f.conntrack;
    w!(
        o,
        "  conntrack memory ({} B/entry, /proc/slabinfo nf_conntrack): {} entries = {}; each flow per second that ends silently holds {:.0} entries ({}) instead of {:.0} ({})",
        ct.entry_bytes,
        ct.entries,
        kib(ct.bytes as f64),
        ct.orphan_entries_per_flow_per_s.worst,
        kib(ct.orphan_bytes_per_flow_per_s.worst),
        ct.orphan_entries_per_flow_per_s.best,
        kib(ct.orphan_bytes_per_flow_per_s.best)
    );
    o.push_str(&multipath(p));
    w!(o);
    let c = &p.cost;
    w!(
        o,
        "Keepalive cost ({} connections, all idle, {}-byte probe + {}-byte ACK): {:.2}-{:.2} packets/s, {}/s-{}/s",
        c.connections,
        c.frame_bytes,
        c.frame_bytes,
        c.packets_per_s.best,
        c.packets_per_s.worst,
        kib(c.bytes_per_s.best),
        kib(c.bytes_per_s.worst)
    );
    w!(
        o,
        "  (low: one probe per idle period; high: one per interval after the first probe)"
    );
    for warn in &p.warnings {
        w!(o, "warning: {warn}");
    }
    o
}

/// The text section for hops with a second path (empty when there are none).
pub(crate) fn multipath(p: &Plan) -> String {
    let mut o = String::new();
    for m in &p.multipath {
        w!(o);
        w!(
            o,
            "Hop {} has a second path ({})",
            m.hop,
            m.other_path.label()
        );
        w!(o, "  ! {}", m.risk);
        w!(
            o,
            "  on that box: sysctl -w {}={}, persisted in {} (`{} = {}`)",
            m.sysctl,
            m.value,
            m.sysctl_file,
            m.sysctl,
            m.value
        );
        w!(o, "  trade-off: {}", m.trade_off);
        w!(
            o,
            "  alert on INVALID counters and frozen timers: {} (deploy/prometheus/alerts.yml, `idlereset exporter` on that box)",
            m.alerts.join(", ")
        );
        w!(
            o,
            "  watch it happen: idlereset conntrack --watch on that box; reproduce: idlereset lab reproduce --preset nat-43200-invalid"
        );
    }
    o
}

/// The `/etc/sysctl.d/` file.
pub fn sysctl(p: &Plan) -> String {
    let mut o = String::new();
    w!(
        o,
        "# {} -- written by `idlereset plan` for {}",
        p.sysctl_file,
        path_title(p)
    );
    w!(
        o,
        "# Path timeout {} s at hop {:?}: keepalive time and interval stay below it.",
        p.path_timeout_s,
        p.limiting_hop
    );
    w!(
        o,
        "# Only sockets that set SO_KEEPALIVE use these values (the application must opt in)."
    );
    w!(
        o,
        "# Per network namespace: apply inside each container's namespace. Load with `sysctl --system`."
    );
    w!(o, "# The net.ipv4 names also apply to IPv6 TCP sockets.");
    for name in [
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    ] {
        if let Some(v) = p.sysctl.get(name) {
            w!(o, "{name} = {v}");
        }
    }
    o
}

/// nftables rules giving only this path's flows a longer established timeout.
pub fn nft(p: &Plan) -> String {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for m in p.hops.iter().flat_map(|h| h.matches.iter()) {
        let port = m
            .port
            .map(|p| format!(" tcp dport {p}"))
            .unwrap_or_default();
        match m.net {
            Some((IpAddr::V4(a), n)) => v4.push(format!("ip daddr {a}/{n}{port}")),
            Some((IpAddr::V6(a), n)) => v6.push(format!("ip6 daddr {a}/{n}{port}")),
            None => v4.push(format!("meta l4proto tcp{port}")),
        }
    }
    v4.dedup();
    v6.dedup();
    let t = p.firewall.established_timeout_s;
    let mut o = String::new();
    w!(o, "table inet idlereset_plan {{");
    w!(o, "\tct timeout established-{t} {{");
    w!(o, "\t\tprotocol tcp;");
    w!(o, "\t\tl3proto ip;");
    w!(o, "\t\tpolicy = {{ established: {t} }}");
    w!(o, "\t}}");
    if !v6.is_empty() {
        w!(o, "\tct timeout established-{t}-v6 {{");
        w!(o, "\t\tprotocol tcp;");
        w!(o, "\t\tl3proto ip6;");
        w!(o, "\t\tpolicy = {{ established: {t} }}");
        w!(o, "\t}}");
    }
    w!(o, "\tchain prerouting {{");
    w!(
        o,
        "\t\ttype filter hook prerouting priority filter; policy accept;"
    );
    if v4.is_empty() && v6.is_empty() {
        w!(
            o,
            "\t\t# no `matches` in the inventory: put the server's address and port here"
        );
        w!(
            o,
            "\t\tip daddr 192.0.2.10 tcp dport 5432 ct timeout set \"established-{t}\""
        );
    }
    for sel in &v4 {
        w!(o, "\t\t{sel} ct timeout set \"established-{t}\"");
    }
    for sel in &v6 {
        w!(o, "\t\t{sel} ct timeout set \"established-{t}-v6\"");
    }
    w!(o, "\t}}");
    w!(o, "}}");
    o
}

fn hop_label(h: &Hop) -> String {
    let ka = if h.honours_keepalive {
        ""
    } else {
        ", ignores keepalives"
    };
    let second = if h.other_path.is_some() {
        "\\nsecond path: INVALID risk"
    } else {
        ""
    };
    format!(
        "{} ({})\\nexpires after {} idle\\nthen: {}{ka}{second}",
        h.name,
        h.kind.as_str(),
        Human(h.idle_timeout_s),
        failure(h.failure)
    )
}

fn esc_mermaid(s: &str) -> String {
    s.replace('"', "#quot;").replace("\\n", "<br/>")
}

fn esc_dot(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace("\\\\n", "\\n")
}

fn server_label(p: &Plan) -> String {
    p.server.clone().unwrap_or_else(|| "server".into())
}

/// Mermaid flowchart: clients -> hops -> server, the limiting hop highlighted.
pub fn mermaid(p: &Plan) -> String {
    let mut o = String::new();
    w!(o, "flowchart LR");
    for (i, c) in p.clients.iter().enumerate() {
        w!(
            o,
            "    c{i}[\"{}\"]",
            esc_mermaid(&format!(
                "{} ({}, {} conns)",
                c.name,
                c.library.as_str(),
                c.connections
            ))
        );
    }
    for (i, h) in p.hops.iter().enumerate() {
        w!(o, "    h{i}[\"{}\"]", esc_mermaid(&hop_label(h)));
    }
    w!(o, "    srv[(\"{}\")]", esc_mermaid(&server_label(p)));
    let first = if p.hops.is_empty() {
        "srv".to_string()
    } else {
        "h0".to_string()
    };
    for i in 0..p.clients.len() {
        w!(o, "    c{i} --> {first}");
    }
    for i in 1..p.hops.len() {
        w!(o, "    h{} --> h{i}", i - 1);
    }
    if !p.hops.is_empty() {
        w!(o, "    h{} --> srv", p.hops.len() - 1);
    }
    for (i, h) in p.hops.iter().enumerate() {
        if let Some(other) = &h.other_path {
            let (from, to) = neighbours(p, i);
            w!(
                o,
                "    alt{i}[\"{}\"]",
                esc_mermaid(&second_path_label(h, other))
            );
            for f in from {
                w!(o, "    {f} -.->|second path| alt{i}");
            }
            w!(o, "    alt{i} -.-> {to}");
        }
    }
    if let Some(i) = p.hops.iter().position(|h| h.name == p.limiting_hop) {
        w!(o, "    classDef limiting stroke:#c00,stroke-width:3px");
        w!(o, "    class h{i} limiting");
    }
    let alts: Vec<String> = (0..p.hops.len())
        .filter(|i| p.hops[*i].other_path.is_some())
        .map(|i| format!("alt{i}"))
        .collect();
    if !alts.is_empty() {
        w!(o, "    classDef secondpath stroke-dasharray:5 5");
        w!(o, "    class {} secondpath", alts.join(","));
    }
    o
}

/// Label of the second path around hop `h`.
fn second_path_label(h: &Hop, other: &crate::inventory::OtherPath) -> String {
    format!(
        "{}\\naround {}: no conntrack state there\\nINVALID on {}: timer freezes",
        other.label(),
        h.name,
        h.name
    )
}

/// The nodes before hop `i` (the clients, or the previous hop) and the node after it.
fn neighbours(p: &Plan, i: usize) -> (Vec<String>, String) {
    let from = if i == 0 {
        (0..p.clients.len()).map(|c| format!("c{c}")).collect()
    } else {
        vec![format!("h{}", i - 1)]
    };
    let to = if i + 1 < p.hops.len() {
        format!("h{}", i + 1)
    } else {
        "srv".to_string()
    };
    (from, to)
}

/// Graphviz DOT: the same graph, the limiting hop in red.
pub fn dot(p: &Plan) -> String {
    let mut o = String::new();
    w!(o, "digraph path {{");
    w!(o, "    rankdir=LR;");
    w!(o, "    node [shape=box, fontname=\"sans-serif\"];");
    w!(
        o,
        "    label=\"{}\";",
        esc_dot(&format!(
            "{}: path timeout {} at {}",
            path_title(p),
            Human(p.path_timeout_s),
            p.limiting_hop
        ))
    );
    for (i, c) in p.clients.iter().enumerate() {
        w!(
            o,
            "    c{i} [label=\"{}\", shape=ellipse];",
            esc_dot(&format!(
                "{}\\n{}, {} conns",
                c.name,
                c.library.as_str(),
                c.connections
            ))
        );
    }
    for (i, h) in p.hops.iter().enumerate() {
        let style = if h.name == p.limiting_hop {
            ", color=red, penwidth=2"
        } else {
            ""
        };
        w!(o, "    h{i} [label=\"{}\"{style}];", esc_dot(&hop_label(h)));
    }
    w!(
        o,
        "    srv [label=\"{}\", shape=cylinder];",
        esc_dot(&server_label(p))
    );
    let first = if p.hops.is_empty() {
        "srv".to_string()
    } else {
        "h0".to_string()
    };
    for i in 0..p.clients.len() {
        w!(o, "    c{i} -> {first};");
    }
    for i in 1..p.hops.len() {
        w!(o, "    h{} -> h{i};", i - 1);
    }
    if !p.hops.is_empty() {
        w!(o, "    h{} -> srv;", p.hops.len() - 1);
    }
    for (i, h) in p.hops.iter().enumerate() {
        if let Some(other) = &h.other_path {
            let (from, to) = neighbours(p, i);
            w!(
                o,
                "    alt{i} [label=\"{}\", style=dashed];",
                esc_dot(&second_path_label(h, other))
            );
            for f in from {
                w!(
                    o,
                    "    {f} -> alt{i} [style=dashed, label=\"second path\"];"
                );
            }
            w!(o, "    alt{i} -> {to} [style=dashed];");
        }
    }
    w!(o, "}}");
    o
}
