#![allow(clippy::unwrap_used)]
//! Markdown loader tests: the first seed verbatim, a second replay in the same format with
//! other letters and times, malformed input with line numbers, and a no-panic property.

use super::*;
use crate::replay::session::play_scripted;

const SEED: &str = include_str!("../../../tests/fixtures/replay/seed-000.txt");
const OTHER: &str = include_str!("../../../tests/fixtures/replay/other-letters.md");

fn seed() -> Scenario {
    parse(SEED, "seed-000.txt", "seed-000").unwrap()
}

#[test]
fn seed_structure_is_read() {
    let s = seed();
    assert_eq!(s.title, "TCP RST After Idle");
    assert_eq!(s.setup.len(), 3);
    assert!(s.setup[1].starts_with("Time: Wednesday 07:00 UTC"));
    assert_eq!(s.rounds.len(), 4);
    assert_eq!(s.decision_rounds().count(), 3);
    let r1 = &s.rounds[0];
    assert_eq!(r1.title, "Alert Fires");
    assert!(
        r1.cue
            .as_deref()
            .unwrap()
            .starts_with("Application logs show")
    );
    assert!(!r1.cue.as_deref().unwrap().ends_with('"'));
    let letters: String = r1.choices().iter().map(|c| c.letter).collect();
    assert_eq!(letters, "ABCD");
    assert_eq!(
        r1.choices()[0].text,
        "Apply a quick workaround to restore service"
    );
    assert_eq!(r1.recommended().unwrap().letter, 'B');
    // the round 2 result spans two lines up to its closing bracket
    let r2b = s.rounds[1].choice('B').unwrap();
    assert!(
        r2b.result.contains("tcp_keepalive_time=300"),
        "{}",
        r2b.result
    );
    assert!(r2b.result.ends_with("Proceed to Round 3."));
    assert_eq!(s.rounds[2].recommended().unwrap().letter, 'D');
    match &s.rounds[3].kind {
        RoundKind::Checklist { actions } => {
            assert_eq!(actions.len(), 5);
            assert_eq!(
                actions[0],
                "Verify service is functioning correctly end-to-end"
            );
            assert_eq!(
                actions[4],
                "Check for similar issues across the infrastructure"
            );
        }
        other => panic!("round 4 should be a checklist, got {other:?}"),
    }
    assert_eq!((s.optimal_minutes, s.worst_minutes), (12, 60));
    assert_eq!(s.worst_note.as_deref(), Some("+ additional damage"));
    assert_eq!(s.references.len(), 3);
    assert_eq!(s.damage_notes.len(), 2);
}

#[test]
fn seed_recommended_path_totals_optimal_and_every_wrong_totals_worst() {
    let s = seed();
    let best = play_scripted(&s, &['B', 'B', 'D']).unwrap();
    assert_eq!(best.total_minutes, 12);
    assert_eq!(best.path, "B,B,D");
    assert!(best.checklist.iter().all(|c| c.covered));
    // every combination of wrong choices totals the stated worst time
    for a in ['A', 'C', 'D'] {
        for b in ['A', 'C', 'D'] {
            for c in ['A', 'B', 'C'] {
                let t = play_scripted(&s, &[a, b, c]).unwrap();
                assert_eq!(t.total_minutes, 60, "path {a},{b},{c}");
                assert!(t.checklist.iter().all(|c| !c.covered));
            }
        }
    }
    // in between: one wrong round adds that round's extra (48 / 3 = 16)
    assert_eq!(
        play_scripted(&s, &['A', 'B', 'D']).unwrap().total_minutes,
        28
    );
}

/// Round 2's recommended answer spells out the keepalive sysctl alone: the caveat goes beside
/// the result offline (transcript, report), and the seed's blast radius and cross-references
/// reach every output.
#[test]
fn seed_round_two_trap_is_caveated_and_damage_lines_reach_the_outputs() {
    let s = seed();
    let r2b = s.rounds[1].choice('B').unwrap();
    let caveat = r2b.caveat.as_deref().unwrap();
    assert!(
        caveat.contains("SO_KEEPALIVE") && caveat.contains("tcp_keepalive_time=300"),
        "{caveat}"
    );
    // only the choice that spells out the sysctl
    let caveated: Vec<(u32, char)> = s
        .rounds
        .iter()
        .flat_map(|r| r.choices().iter().map(move |c| (r.number, c)))
        .filter(|(_, c)| c.caveat.is_some())
        .map(|(n, c)| (n, c.letter))
        .collect();
    assert_eq!(caveated, [(2, 'B')]);

    let t = play_scripted(&s, &['B', 'B', 'D']).unwrap();
    assert_eq!(t.rounds[1].caveat.as_deref(), Some(caveat));
    assert_eq!(t.rounds[0].caveat, None);
    assert!(
        t.damage_notes
            .iter()
            .any(|n| n.starts_with("Blast radius: Affected services")),
        "{:?}",
        t.damage_notes
    );
    assert_eq!(
        t.references,
        [
            "Primer: Networking",
            "Primer: Networking Troubleshooting",
            "Footguns: Networking"
        ]
    );
    let md = crate::replay::report::markdown(&s, &t);
    assert!(md.contains("> **Caveat:** as written"), "{md}");
    assert!(md.contains("- Blast radius: Affected services"), "{md}");
    assert!(
        md.contains("## Cross-references\n\n- Primer: Networking"),
        "{md}"
    );
    // a path that avoids round 2's B carries no caveat
    let t = play_scripted(&s, &['B', 'A', 'D']).unwrap();
    assert!(t.rounds.iter().all(|r| r.caveat.is_none()));
}

/// The JSON transcript of the seed's optimal path (the `replay --json` contract).
#[test]
fn seed_transcript_json_snapshot() {
    let t = play_scripted(&seed(), &['B', 'B', 'D']).unwrap();
    insta::assert_snapshot!(serde_json::to_string_pretty(&t).unwrap());
}

#[test]
fn another_replay_in_the_same_format_plays() {
    let s = parse(OTHER, "other-letters.md", "other").unwrap();
    assert_eq!(s.title, "Event Stream Reconnects Every 12 Hours");
    assert_eq!((s.optimal_minutes, s.worst_minutes), (25, 120));
    assert_eq!(s.rounds[0].choices().len(), 5);
    assert_eq!(s.rounds[0].recommended().unwrap().letter, 'E');
    assert!(
        s.rounds[0]
            .see
            .as_deref()
            .unwrap()
            .contains("roughly every 12 hours")
    );
    assert_eq!(s.rounds[1].choices().len(), 3, "choices one per line");
    assert_eq!(s.rounds[1].recommended().unwrap().letter, 'A');
    assert_eq!(s.rounds[2].recommended().unwrap().letter, 'C');
    assert!(matches!(&s.rounds[3].kind, RoundKind::Checklist { actions } if actions.len() == 3));
    assert_eq!(
        play_scripted(&s, &['E', 'A', 'C']).unwrap().total_minutes,
        25
    );
    assert_eq!(
        play_scripted(&s, &['A', 'B', 'D']).unwrap().total_minutes,
        120
    );
    assert_eq!(
        play_scripted(&s, &['D', 'C', 'A']).unwrap().total_minutes,
        120
    );
    // 25 over 3 rounds = 9, 8, 8; extra 95 = 32, 32, 31: A,A,C = 9+32 + 8 + 8
    assert_eq!(
        play_scripted(&s, &['A', 'A', 'C']).unwrap().total_minutes,
        57
    );
    // round 2 has no D
    let e = play_scripted(&s, &['B', 'D', 'D']).unwrap_err();
    assert!(
        e.to_string()
            .contains("round 2 has no choice 'D' (choices: A, B, C)"),
        "{e}"
    );
}

fn err_line(text: &str) -> (Option<usize>, String) {
    let e = parse(text, "bad.md", "bad").unwrap_err();
    (e.line(), e.to_string())
}

#[test]
fn malformed_replays_name_the_line() {
    // unclosed result
    let bad = SEED.replacen("[Result: Vendor/upstream confirms the issue is on your side. Time wasted on external coordination.]", "[Result: Vendor/upstream confirms", 1);
    let (line, msg) = err_line(&bad);
    assert_eq!(line, Some(15), "{msg}");
    assert!(msg.starts_with("bad.md:15:1:"), "{msg}");
    // outcome for a letter the round does not offer
    let bad = SEED.replacen(
        "If you chose C:\u{b6}\n[Result: Vendor",
        "If you chose F:\u{b6}\n[Result: Vendor",
        1,
    );
    let (line, msg) = err_line(&bad);
    assert_eq!(line, Some(14), "{msg}");
    // no recommended choice in round 2
    let bad = SEED.replacen(
        "If you chose B (recommended):\u{b6}\n[Result: Either",
        "If you chose B:\u{b6}\n[Result: Either",
        1,
    );
    let (line, msg) = err_line(&bad);
    assert_eq!(line, Some(18), "{msg}");
    assert!(msg.contains("recommended"), "{msg}");
    // worst time that is not a time
    let bad = SEED.replace("60 minutes + additional damage", "a lot");
    let (line, msg) = err_line(&bad);
    assert_eq!(line, Some(50), "{msg}");
    // missing damage report entirely
    let cut = SEED.split("Damage Report").next().unwrap();
    let (_, msg) = err_line(cut);
    assert!(msg.contains("Optimal resolution time"), "{msg}");
    // rounds out of order
    let bad = SEED.replacen("Round 3: Root Cause", "Round 2: Root Cause", 1);
    let (line, _) = err_line(&bad);
    assert_eq!(line, Some(31));
    // duplicate outcome
    let bad = SEED.replacen(
        "If you chose D:\u{b6}\n[Result: Change",
        "If you chose A:\u{b6}\n[Result: Change",
        1,
    );
    let (line, _) = err_line(&bad);
    assert_eq!(line, Some(16));
    // empty input
    assert!(parse("", "empty.md", "empty").is_err());
}

#[test]
fn choice_splitting() {
    let c = split_choices("- A) one - B) two words - C) three");
    assert_eq!(
        c,
        vec![
            ('A', "one".into()),
            ('B', "two words".into()),
            ('C', "three".into())
        ]
    );
    // a stray "B)" without the dash style is text, not a new choice
    let c = split_choices("- A) use plan B) instead - B) other");
    assert_eq!(c.len(), 2);
    assert_eq!(c[0].1, "use plan B) instead");
    assert!(split_choices("prose with A) inside").is_empty());
    assert_eq!(
        split_numbered("1. a 2. b 2. c 3. d"),
        vec!["a", "b 2. c", "d"]
    );
}

#[test]
fn minutes_parse() {
    assert_eq!(parse_minutes("12 minutes"), Some((12, None)));
    assert_eq!(
        parse_minutes("60 minutes + additional damage"),
        Some((60, Some("+ additional damage".into())))
    );
    assert_eq!(parse_minutes("1 hour 30 min"), Some((90, None)));
    assert_eq!(parse_minutes("2h"), Some((120, None)));
    assert_eq!(parse_minutes("soon"), None);
    assert_eq!(parse_minutes("12 parsecs"), None);
    assert_eq!(parse_minutes("99999999999999999999 minutes"), None);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    const PIECES: &[&str] = &[
        "Round 1: x",
        "Round 2: y",
        "Round 99999999999: z",
        "Setup\u{b6}",
        "[Pressure cue: \"a",
        "\"]",
        "What you see: é",
        "Choose your action: - A) a - B) b",
        "- C) c",
        "If you chose A (recommended):",
        "If you chose B:",
        "If you chose :",
        "[Result: r]",
        "[Result: open",
        "]",
        "Actions: 1. a 2. b",
        "Damage Report",
        "- Optimal resolution time: 1 minutes",
        "- If every wrong choice was made: 3 minutes",
        "Cross-References",
        "- ref",
        "",
        "\u{b6}",
        "— é ✓",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn never_panics_on_arbitrary_text(text in "\\PC{0,400}") {
            let _ = parse(&text, "p.md", "p");
        }

        #[test]
        fn never_panics_on_shuffled_format_pieces(idx in proptest::collection::vec(0..PIECES.len(), 0..40)) {
            let text: Vec<&str> = idx.iter().map(|&i| PIECES[i]).collect();
            let _ = parse(&text.join("\n"), "p.md", "p");
        }

        #[test]
        fn never_panics_on_mangled_seed(cut in 0usize..4000, insert in "\\PC{0,8}") {
            let mut s = SEED.to_string();
            let mut at = cut.min(s.len());
            while !s.is_char_boundary(at) { at -= 1; }
            s.insert_str(at, &insert);
            let _ = parse(&s, "p.md", "p");
        }
    }
}
