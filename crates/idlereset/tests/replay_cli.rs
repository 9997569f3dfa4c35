//! `idlereset replay` end to end: the seed file and a second replay in the same format played
//! from markdown, JSON contract fields, line mode on a pipe, reports and error exits.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_idlereset");
const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../idlereset-core/tests/fixtures/replay"
);

fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn seed() -> String {
    format!("{FIXTURES}/seed-000.txt")
}

#[test]
fn seed_markdown_scores_optimal_and_worst() {
    let v = json(&run(
        &["replay", &seed(), "--answers", "B,B,D", "--json"],
        "",
    ));
    assert_eq!(v["scenario"], "seed-000");
    assert_eq!(v["total_minutes"], 12);
    assert_eq!(v["optimal_minutes"], 12);
    assert_eq!(v["worst_minutes"], 60);
    assert_eq!(v["rounds"].as_array().unwrap().len(), 4);
    assert_eq!(v["rounds"][3]["kind"], "checklist");
    // the seed's round-2 trap is caveated offline; blast radius and cross-references travel
    let caveat = v["rounds"][1]["caveat"].as_str().unwrap();
    assert!(caveat.contains("SO_KEEPALIVE"), "{caveat}");
    assert!(v["rounds"][0].get("caveat").is_none());
    assert!(
        v["damage_notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().starts_with("Blast radius:")),
        "{v}"
    );
    assert_eq!(v["references"][2], "Footguns: Networking");
    let out = run(&["replay", &seed(), "--answers", "B,B,D"], "");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("   Caveat: as written"), "{text}");
    assert!(text.contains("Caveat (round 2): as written"), "{text}");
    assert!(text.contains("  Blast radius: Affected services"), "{text}");
    assert!(
        text.contains("Cross-references:\n  - Primer: Networking"),
        "{text}"
    );
    let v = json(&run(
        &["replay", &seed(), "--answers", "a,c,a", "--json"],
        "",
    ));
    assert_eq!(v["total_minutes"], 60);
}

#[test]
fn other_replay_in_the_same_format() {
    let file = format!("{FIXTURES}/other-letters.md");
    let v = json(&run(&["replay", &file, "--answers", "E,A,C", "--json"], ""));
    assert_eq!(
        (v["total_minutes"].as_u64(), v["worst_minutes"].as_u64()),
        (Some(25), Some(120))
    );
    let v = json(&run(&["replay", &file, "--answers", "A,C,B", "--json"], ""));
    assert_eq!(v["total_minutes"], 120);
}

#[test]
fn line_mode_on_a_pipe_keeps_stdout_for_json() {
    let out = run(&["replay", &seed(), "--json"], "B\nX\nB\nD\n");
    let v = json(&out);
    assert_eq!(v["path"], "B,B,D");
    assert_eq!(v["complete"], true);
    let narrative = String::from_utf8_lossy(&out.stderr);
    assert!(narrative.contains("Pressure cue:"), "{narrative}");
    assert!(
        narrative.contains("round 2 has no choice 'X'"),
        "{narrative}"
    );
    // plain text mode prints the damage report on stdout
    let out = run(&["replay", "keepalive-7200"], "B\nD\nA\nB\n");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Total downtime: 16 min"), "{text}");
    assert!(text.contains("[x] SO_KEEPALIVE opt-in"), "{text}");
}

#[test]
fn list_report_and_errors() {
    let v = json(&run(&["replay", "--list", "--json"], ""));
    let ids: Vec<&str> = v["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["firewall-900", "keepalive-7200", "nat-frozen-timer"]);

    let dir = std::env::temp_dir().join(format!("idlereset-replay-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let report = dir.join("aar.md");
    let out = run(
        &[
            "replay",
            "nat-frozen-timer",
            "--answers",
            "B,A,B,B,A",
            "--report",
            report.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(0));
    let md = std::fs::read_to_string(&report).unwrap();
    assert!(md.contains("- Total downtime: 40 min"), "{md}");
    assert!(md.contains("## Lab evidence"), "{md}");
    assert!(
        md.contains("Lab run: `idlereset lab reproduce --preset nat-43200-invalid` (Linux 6.18;"),
        "{md}"
    );
    assert!(
        md.contains("System change: nf_conntrack_tcp_be_liberal=1"),
        "{md}"
    );

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "title = \"x\"\noptimal_minutes = 1\nworst_minutes = 2\n[[round]]\ntitle = \"y\"\nseee = \"typo\"\n").unwrap();
    let out = run(&["replay", bad.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:6:1: unknown field `seee`"), "{err}");

    let out = run(&["replay", &seed(), "--answers", "B,B"], "");
    assert_eq!(out.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).unwrap();
}
