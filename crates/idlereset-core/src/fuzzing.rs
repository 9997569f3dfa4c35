//! Entry points of the fuzz targets in `fuzz/` for the parsers this crate owns.
//!
//! Each function feeds arbitrary bytes through one parser (and what consumes its output) and
//! ignores the result: the fuzz target calls it, and `tests/fuzz_seeds.rs` calls the same
//! function on every committed seed input (`fuzz/corpus-seeds/TARGET/`), so a crash found once
//! stays a failing test. Non-UTF-8 input is dropped where the parser takes text, since the
//! commands read those files as UTF-8 first.

use std::net::SocketAddr;
use std::sync::OnceLock;

use crate::catalog::Catalog;
use crate::inventory::{Inventory, Match};
use crate::replay::{self, session};

fn catalog() -> Option<&'static Catalog> {
    static C: OnceLock<Option<Catalog>> = OnceLock::new();
    C.get_or_init(|| Catalog::builtin().ok()).as_ref()
}

/// An inventory: TOML, validation, every `matches` entry, then the plan and its renderers.
pub fn inventory(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let remotes: [SocketAddr; 2] = [
        SocketAddr::from(([198, 18, 2, 10], 5432)),
        SocketAddr::from(([0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x10], 5432)),
    ];
    for line in text.lines() {
        if let Ok(m) = line.trim().parse::<Match>() {
            for r in remotes {
                let _ = m.matches(r);
            }
        }
    }
    let Some(catalog) = catalog() else { return };
    let Ok(inv) = Inventory::parse(text, "fuzz.toml", catalog) else {
        return;
    };
    let _ = inv.for_remote(remotes[0]);
    let p = crate::plan::plan(&inv);
    let _ = crate::plan::render::text(&p);
    let _ = crate::plan::render::mermaid(&p);
    let _ = crate::plan::render::dot(&p);
    let _ = crate::plan::render::nft(&p);
}

/// A replay in both formats (the seed's markdown, TOML); a loaded one is played on its
/// recommended path and reported.
pub fn replay(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for file in ["fuzz.md", "fuzz.toml"] {
        if let Ok(s) = replay::load_text(text, file) {
            let best: Vec<char> = s
                .decision_rounds()
                .filter_map(|r| r.recommended().map(|c| c.letter))
                .collect();
            if let Ok(t) = session::play_scripted(&s, &best) {
                let _ = replay::report::markdown(&s, &t);
            }
        }
    }
}

/// Durations as the command line takes them (`90s`, `1h30m`, `0.5`).
pub fn duration(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::duration::parse_duration(text);
    }
}

/// tracefs `trace_pipe` lines of the TCP reset tracepoints.
pub fn trace_line(data: &[u8]) {
    for line in String::from_utf8_lossy(data).lines() {
        let _ = crate::resets::parse_trace_line(line);
    }
}

/// `/proc/net/snmp` and `/proc/net/netstat` (header line + value line per section).
pub fn netstat(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(c) = crate::netstat::Counters::parse(&text, "snmp") {
        let _ = c.counter("Tcp", "EstabResets");
    }
}

/// The `listen` protocol as the listener and the reverse prober read it: a connection's first
/// line, the session line, a result line, and the printable description of untrusted bytes.
pub fn listen_line(data: &[u8]) {
    let _ = crate::reverse::parse_hello(data);
    let _ = crate::reverse::parse_session(data);
    let _ = crate::reverse::describe(data);
    for line in String::from_utf8_lossy(data).lines() {
        let _ = crate::reverse::parse_result(line);
    }
}

/// The exporter's request routing: method and target as hyper hands them over.
pub fn exporter_route(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (method, target) = text.split_once(' ').unwrap_or((&text, "/"));
    let _ = crate::exporter_http::route(method, target);
}
