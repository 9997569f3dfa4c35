#![allow(clippy::unwrap_used)]
//! `lab reproduce --preset nat-43200-invalid` on the real kernel: the whole story and the
//! report's fixes, each in its own lab (about a minute; the runs are concurrent).

use std::process::Command;

use idlereset_linux::privilege::require_or_skip;

#[test]
fn frozen_timer_story_and_fixes() {
    if !require_or_skip("frozen_timer_story_and_fixes") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("idlereset-frozen-cap-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_idlereset"))
        .args([
            "lab",
            "reproduce",
            "--preset",
            "nat-43200-invalid",
            "--json",
            "--capture-dir",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    // the contract fields (docs/json.md).
    assert_eq!(v["preset"], "nat-43200-invalid");
    assert_eq!(v["outcome"], "reset", "{v}");
    // --capture-dir: the story run's two capture points, with the busy flow's packets.
    for f in ["app.pcap", "fw-db.pcap"] {
        let bytes = std::fs::read(dir.join(f)).unwrap();
        assert_eq!(&bytes[..4], &0xa1b2_3c4du32.to_le_bytes(), "{f}");
        assert!(
            bytes.len() > 100_000,
            "{f} has the busy flow: {} bytes",
            bytes.len()
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(v["idle_s"].as_f64().is_some());
    assert!(
        v["error"].as_str().is_some_and(|e| !e.is_empty()),
        "the app's error text: {v}"
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "a reproduced failure is a finding"
    );
    // The story: the timer froze before the entry expired.
    let story = &v["story"];
    let (frozen, expired) = (
        story["frozen_at_s"].as_f64().unwrap(),
        story["expired_at_s"].as_f64().unwrap(),
    );
    assert!(
        frozen < expired,
        "frozen at {frozen} s, expired at {expired} s"
    );
    assert!(story["invalid_packets"].as_u64().unwrap() > 0);
    // Every fix ran on the kernel and got a verdict; at least one helps (be_liberal / loose=0).
    let fixes = v["fixes"].as_array().unwrap();
    assert!(fixes.len() >= 4, "{fixes:?}");
    assert!(
        fixes
            .iter()
            .all(|f| f["outcome"].as_str().is_some_and(|o| o != "error")),
        "{fixes:?}"
    );
    assert!(
        fixes
            .iter()
            .any(|f| f["outcome"] == "helps" || f["outcome"] == "survives-untracked"),
        "{fixes:?}"
    );
    replay_agrees_with_the_lab(fixes);
}

/// The built-in `nat-frozen-timer` replay cites this preset: every choice whose evidence names a
/// fix outcome must get that outcome from this run, and its recommended fix must be one that
/// helps.
fn replay_agrees_with_the_lab(fixes: &[serde_json::Value]) {
    use idlereset_core::replay::{Action, builtin};
    let s = builtin::get("nat-frozen-timer").unwrap();
    let lab = |prefix: &str| -> String {
        fixes
            .iter()
            .find(|f| f["fix"].as_str().is_some_and(|n| n.starts_with(prefix)))
            .and_then(|f| f["outcome"].as_str())
            .unwrap_or_else(|| panic!("no fix {prefix:?} in {fixes:?}"))
            .to_string()
    };
    let mut checked = 0;
    for c in s.rounds.iter().flat_map(|r| r.choices()) {
        let Some(claim) = c
            .evidence
            .as_deref()
            .and_then(|e| e.split("fix outcome `").nth(1)?.split('`').next())
        else {
            continue;
        };
        let prefix = match c.action {
            Action::ConntrackBeLiberal { enabled: true } => "be_liberal=1",
            Action::ConntrackLoose { enabled: true } => "loose=1",
            Action::FirewallTimeout { .. } => "longer established timeout",
            Action::Heartbeat { .. } => "application pings",
            _ => panic!(
                "choice {:?} cites a fix outcome without a lab action",
                c.text
            ),
        };
        assert_eq!(lab(prefix), claim, "replay choice {:?}", c.text);
        if c.recommended {
            assert_eq!(claim, "helps", "{:?}", c.text);
        }
        checked += 1;
    }
    assert!(
        checked >= 4,
        "the replay cites the lab for its fixes ({checked})"
    );
}
