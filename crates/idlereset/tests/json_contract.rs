//! docs/json.md's promise, checked: every field path documented in a `## `CMD --json`` section's
//! table appears in real JSON output of that command. Commands that run without root (`plan`,
//! `logs`, `pcap`, `replay`, `catalog`) are run through the built binary on the committed
//! fixtures; commands that need root or a lab are read from the committed insta snapshots of
//! their JSON, which tests produce from real or fake-host output. A path is satisfied when one of
//! the section's outputs has it (optional fields appear only in some outputs); a documented path
//! that no output has fails the test, naming the section and the field.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_idlereset");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Sections, or fields of a section, that no test output here can show, each with the reason.
/// Everything else documented must be found. These were compared by hand with their serde
/// types when listed (`conntrack.rs` `ConntrackJson` / `EntryJson`, idlereset-lab's verify
/// `Report` / `RunReport`, replay's `LiveSummary`); a root test or a committed snapshot of them
/// should replace an entry here.
const NOT_CHECKABLE: &[(&str, &str, &str)] = &[
    (
        "verify --json",
        "",
        "verify runs every client against a lab namespace (root, minutes of idle) and has no \
         committed snapshot of its JSON",
    ),
    (
        "conntrack --json",
        "count",
        "the table dump needs root and ctnetlink (conntrack_cli.rs plants entries in a \
         throw-away namespace); only the `stats` object has a committed snapshot",
    ),
    ("conntrack --json", "max", "as `count`: needs root"),
    ("conntrack --json", "accounting", "as `count`: needs root"),
    ("conntrack --json", "entries[]", "as `count`: needs root"),
    (
        "replay --json",
        "live",
        "only with `--live`, which builds the lab (root)",
    ),
];

/// The reason `path` of `section` cannot be checked here, if it is listed.
fn not_checkable(section: &str, path: &str) -> Option<&'static str> {
    NOT_CHECKABLE.iter().find_map(|&(s, p, why)| {
        let hit = s == section
            && (p.is_empty()
                || path == p
                || path.starts_with(&format!("{p}."))
                || (p.ends_with("[]") && path.starts_with(p)));
        hit.then_some(why)
    })
}

/// `## `CMD --json`` sections of docs/json.md and the field paths in the first column of their
/// tables (a cell may list several: `` `a`, `b` ``).
fn documented() -> BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(root().join("docs/json.md")).unwrap();
    let mut sections: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            let name = h.trim().trim_matches('`').to_string();
            current = name.ends_with("--json").then_some(name.clone());
            if let Some(name) = &current {
                sections.entry(name.clone()).or_default();
            }
            continue;
        }
        let (Some(section), Some(row)) = (&current, line.strip_prefix('|')) else {
            continue;
        };
        let cell = row.split('|').next().unwrap_or("");
        // header (`field`) and separator rows carry no backticks
        let paths: Vec<String> = cell
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect();
        sections.get_mut(section).unwrap().extend(paths);
    }
    sections
}

/// Does `v` have the path? `a.b`: key `b` of object `a`; `a[].b`: some element of array `a`
/// has key `b`; a path ending in `[]` needs only the array. A value may be null.
fn has_path(v: &Value, segs: &[&str]) -> bool {
    let Some((first, rest)) = segs.split_first() else {
        return true;
    };
    let (key, array) = match first.strip_suffix("[]") {
        Some(k) => (k, true),
        None => (*first, false),
    };
    let Some(child) = v.as_object().and_then(|o| o.get(key)) else {
        return false;
    };
    if !array {
        return rest.is_empty() || has_path(child, rest);
    }
    let Some(items) = child.as_array() else {
        return false;
    };
    rest.is_empty() || items.iter().any(|item| has_path(item, rest))
}

/// Run the binary; 0 (nothing found) and 1 (findings) print the JSON contract, and so does 2
/// for a capture whose damage makes the verdict unsafe.
fn run_json(args: &[&str]) -> Value {
    let out = Command::new(BIN).args(args).output().unwrap();
    let unsafe_capture = args.first() == Some(&"pcap") && out.status.code() == Some(2);
    assert!(
        matches!(out.status.code(), Some(0 | 1)) || unsafe_capture,
        "idlereset {args:?} exited {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("idlereset {args:?}: stdout is not one JSON object: {e}"))
}

/// The JSON body of a committed insta snapshot: what follows the `---` header block.
fn snapshot(rel: &str) -> Value {
    let path = root().join(rel);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading snapshot {}: {e}", path.display()));
    let mut parts = text.splitn(3, "---\n");
    let (Some(""), Some(_header), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
        panic!("{}: no insta header block", path.display());
    };
    serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{}: body is not JSON: {e}", path.display()))
}

fn files_in(dir: &Path, ext: &str) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .map(|p| p.to_str().unwrap().to_string())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.{ext} in {}", dir.display());
    files
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("idlereset-json-contract-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A log of a pool of four connections, each reset 3602 s after it (re)connected, started at
/// unrelated times: `logs` reads it per connection (`per_connection`), which none of the
/// committed log fixtures shows.
fn pool_log() -> String {
    let mut lines = Vec::new();
    for (i, start) in [0u32, 1234, 2011, 2950].into_iter().enumerate() {
        for k in 0..6 {
            let t = start + k * 3602;
            let (h, m, s) = (t / 3600, t / 60 % 60, t % 60);
            lines.push(format!(
                "2026/11/20 {h:02}:{m:02}:{s:02} query failed: read tcp 198.18.1.10:{}->198.18.2.10:5432: read: connection reset by peer",
                40000 + i
            ));
        }
    }
    lines.sort();
    let path = scratch().join("pool.log");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path.to_str().unwrap().to_string()
}

#[path = "support/packets.rs"]
mod packets_support;
use packets_support::{ACK, PSH, RST, SYN, packet};

/// Handshake and one exchange (server TTL 62, client 64).
fn opening() -> Vec<(f64, Vec<u8>)> {
    vec![
        (0.0, packet(true, 64, 1, SYN, 100, 0, 0)),
        (0.01, packet(false, 62, 50, SYN | ACK, 900, 101, 0)),
        (0.02, packet(true, 64, 2, ACK, 101, 901, 0)),
        (0.03, packet(true, 64, 3, ACK | PSH, 101, 901, 20)),
        (0.04, packet(false, 62, 51, ACK | PSH, 901, 121, 200)),
        (0.05, packet(true, 64, 4, ACK, 121, 1101, 0)),
    ]
}

/// Write the packets; `garbage` bytes go before record `at` (damage).
fn write_pcap(name: &str, pkts: &[(f64, Vec<u8>)], garbage: Option<(usize, usize)>) -> String {
    let mut bytes = packets_support::pcap_bytes(pkts);
    if let Some((at, n)) = garbage {
        // 24-byte file header, then a 16-byte header per record
        let off = 24 + pkts[..at].iter().map(|(_, p)| 16 + p.len()).sum::<usize>();
        let junk: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8 | 0x80).collect();
        bytes.splice(off..off, junk);
    }
    let path = scratch().join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_string()
}

/// A busy flow whose client packets change TTL 64 -> 63 halfway and keep flowing, then a RST
/// with the server's address but the wrong TTL: an `active-reset` with `route_change`.
fn route_change_capture() -> String {
    let mut pkts = opening();
    let (mut cseq, mut sseq, mut t) = (121u32, 1101u32, 0.05);
    for i in 0..1000u16 {
        let ttl = if i < 500 { 64 } else { 63 };
        t += 0.2;
        pkts.push((t, packet(true, ttl, 10 + i, ACK | PSH, cseq, sseq, 20)));
        cseq += 20;
        pkts.push((
            t + 0.001,
            packet(false, 62, 60 + i, ACK | PSH, sseq, cseq, 100),
        ));
        sseq += 100;
        pkts.push((t + 0.002, packet(true, ttl, 2000 + i, ACK, cseq, sseq, 0)));
    }
    t += 0.2;
    pkts.push((t, packet(true, 63, 5000, ACK | PSH, cseq, sseq, 20)));
    pkts.push((
        t + 0.001,
        packet(false, 64, 0, RST | ACK, sseq, cseq + 20, 0),
    ));
    write_pcap("route-change.pcap", &pkts, None)
}

/// 950 s idle, a query, a forged RST, with garbage inside the idle gap: the event carries
/// `damage` (exit 2, verdict unsafe).
fn gap_damage_capture() -> String {
    let mut pkts = opening();
    pkts.push((950.05, packet(true, 64, 5, ACK | PSH, 121, 1101, 20)));
    pkts.push((950.06, packet(false, 64, 0, RST | ACK, 1101, 141, 0)));
    write_pcap("gap-damage.pcap", &pkts, Some((6, 64)))
}

/// Real outputs per section, labelled for the failure message.
fn outputs(section: &str) -> Vec<(String, Value)> {
    let r = root();
    let fixtures = r.join("crates/idlereset-core/tests/fixtures");
    let snap = |rel: &str| vec![(format!("snapshot {rel}"), snapshot(rel))];
    let runs = |argv: Vec<Vec<String>>| -> Vec<(String, Value)> {
        argv.into_iter()
            .map(|a| {
                let a: Vec<&str> = a.iter().map(String::as_str).collect();
                let label = a.join(" ").replace(&format!("{}/", r.display()), "");
                (format!("idlereset {label}"), run_json(&a))
            })
            .collect()
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    match section {
        "plan --json" => runs(
            files_in(&r.join("examples/inventories"), "toml")
                .iter()
                .map(|f| s(&["plan", f, "--json"]))
                .collect(),
        ),
        "logs --json" => {
            let mut logs = files_in(&fixtures.join("logs"), "log");
            logs.push(pool_log());
            runs(logs.iter().map(|f| s(&["logs", f, "--json"])).collect())
        }
        "pcap --json" => {
            let mut caps = files_in(&fixtures.join("lab"), "pcap");
            caps.extend(files_in(&fixtures.join("lab"), "pcapng"));
            caps.extend(files_in(&fixtures, "pcap"));
            caps.push(route_change_capture());
            caps.push(gap_damage_capture());
            runs(
                caps.iter()
                    .map(|f| s(&["pcap", f, "--json", "--min-idle", "1s", "--all"]))
                    .collect(),
            )
        }
        "replay --json" => {
            let seed = fixtures.join("replay/seed-000.txt");
            runs(vec![
                s(&["replay", "keepalive-7200", "--answers", "B,D,A,B", "--json"]),
                s(&["replay", "firewall-900", "--answers", "B,C,B,C", "--json"]),
                s(&[
                    "replay",
                    seed.to_str().unwrap(),
                    "--answers",
                    "B,B,D",
                    "--json",
                ]),
            ])
        }
        "catalog --json" => runs(vec![s(&["catalog", "--json"])]),
        // root or a lab: the committed snapshots of their JSON
        "probe --json" => {
            snap("crates/idlereset/src/cmd/snapshots/idlereset__cmd__probe__tests__probe_json.snap")
        }
        "audit --json" => snap(
            "crates/idlereset/src/cmd/audit/snapshots/idlereset__cmd__audit__render__tests__audit_json.snap",
        ),
        "conntrack --json" => {
            // the snapshot is the `stats` object alone
            let rel = "crates/idlereset/src/cmd/snapshots/idlereset__cmd__conntrack__tests__conntrack_stats_json.snap";
            vec![(
                format!("snapshot {rel} (as `stats`)"),
                serde_json::json!({ "stats": snapshot(rel) }),
            )]
        }
        "lab reproduce --json" => {
            snap("crates/idlereset/tests/snapshots/lab_cli__reproduce_json_firewall_900.snap")
        }
        "watch --json" => {
            snap("crates/idlereset/src/cmd/snapshots/idlereset__cmd__watch__tests__watch_json.snap")
        }
        "triage --json" => {
            snap("crates/idlereset/tests/snapshots/triage_cli__triage_json_log_only.snap")
        }
        "verify --json" => Vec::new(),
        other => panic!(
            "docs/json.md has a section `{other}` that json_contract.rs does not know: add its \
             real output (a run of the binary or a committed snapshot) to outputs()"
        ),
    }
}

#[test]
fn every_documented_field_appears_in_real_output() {
    let sections = documented();
    for expected in ["plan --json", "pcap --json", "logs --json", "probe --json"] {
        assert!(
            sections.contains_key(expected),
            "docs/json.md lost its `{expected}` section (the parser may be wrong)"
        );
    }
    let mut missing = Vec::new();
    for (section, paths) in &sections {
        let outs = outputs(section);
        for path in paths {
            if let Some(_why) = not_checkable(section, path) {
                continue;
            }
            let segs: Vec<&str> = path.split('.').collect();
            if !outs.iter().any(|(_, v)| has_path(v, &segs)) {
                let from: Vec<&str> = outs.iter().map(|(l, _)| l.as_str()).collect();
                missing.push(format!("`{section}`: `{path}` not in any of {from:?}"));
            }
        }
    }
    let _ = std::fs::remove_dir_all(scratch());
    assert!(
        missing.is_empty(),
        "documented in docs/json.md but missing from real output:\n{}",
        missing.join("\n")
    );
}

#[test]
fn not_checkable_entries_name_documented_fields() {
    // the skip list may not drift from the document: each entry names a documented section
    // and, unless it skips the whole section, a documented path
    let sections = documented();
    for &(section, path, _) in NOT_CHECKABLE {
        let paths = sections
            .get(section)
            .unwrap_or_else(|| panic!("NOT_CHECKABLE names `{section}`, not in docs/json.md"));
        assert!(
            path.is_empty() || paths.iter().any(|p| p == path || p.starts_with(path)),
            "NOT_CHECKABLE names `{section}`: `{path}`, not documented"
        );
    }
}

#[test]
fn path_lookup() {
    let v = serde_json::json!({
        "timeout_s": {"low": null, "high": 3.0},
        "events": [{"kind": "reset"}, {"kind": "fin", "damage": "x"}],
        "rungs": [],
    });
    let has = |p: &str| has_path(&v, &p.split('.').collect::<Vec<_>>());
    assert!(has("timeout_s.low"));
    assert!(has("events[].damage"));
    assert!(has("rungs[]"));
    assert!(!has("rungs[].idle_s"));
    assert!(!has("timeout_s.mid"));
    assert!(!has("events.kind"));
}
