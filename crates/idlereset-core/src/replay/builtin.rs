//! The built-in scenarios, compiled into the binary from `data/scenarios/*.toml`.
//!
//! They are written in the same TOML format users write (so the format is exercised by every
//! test run) and fill in coverage checklists and live-mode actions the markdown format cannot
//! express.

use super::error::LoadError;
use super::model::Scenario;
use super::toml_format;

/// `(id, file name, TOML text)` of every built-in, in `--list` order.
const BUILTINS: &[(&str, &str, &str)] = &[
    (
        "firewall-900",
        "firewall-900.toml",
        include_str!("../../data/scenarios/firewall-900.toml"),
    ),
    (
        "keepalive-7200",
        "keepalive-7200.toml",
        include_str!("../../data/scenarios/keepalive-7200.toml"),
    ),
    (
        "nat-frozen-timer",
        "nat-frozen-timer.toml",
        include_str!("../../data/scenarios/nat-frozen-timer.toml"),
    ),
];

/// Ids of the built-ins.
pub fn ids() -> Vec<&'static str> {
    BUILTINS.iter().map(|b| b.0).collect()
}

/// The built-in with this id.
pub fn get(id: &str) -> Result<Scenario, LoadError> {
    let (_, file, text) =
        BUILTINS
            .iter()
            .find(|b| b.0 == id)
            .ok_or_else(|| LoadError::UnknownBuiltin {
                id: id.to_string(),
                known: ids().join(", "),
            })?;
    let mut s = toml_format::parse(text, &format!("built-in {file}"), id)?;
    s.origin = "built-in".to_string();
    Ok(s)
}

/// All built-ins, in `--list` order.
pub fn all() -> Result<Vec<Scenario>, LoadError> {
    BUILTINS.iter().map(|b| get(b.0)).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::replay::model::{Action, Choice};
    use crate::replay::session::play_scripted;

    #[test]
    fn every_builtin_loads_and_its_extremes_total_the_stated_times() {
        for s in all().unwrap() {
            let best: Vec<char> = s
                .decision_rounds()
                .map(|r| r.recommended().unwrap().letter)
                .collect();
            let t = play_scripted(&s, &best).unwrap();
            assert_eq!(t.total_minutes, s.optimal_minutes, "{}", s.id);
            assert!(
                t.checklist.iter().all(|c| c.covered),
                "{}: recommended path covers the checklist: {:?}",
                s.id,
                t.checklist
            );
            // the first wrong choice of every round
            let worst: Vec<char> = s
                .decision_rounds()
                .map(|r| r.choices().iter().find(|c| !c.recommended).unwrap().letter)
                .collect();
            let t = play_scripted(&s, &worst).unwrap();
            assert_eq!(t.total_minutes, s.worst_minutes, "{}", s.id);
            assert!(t.checklist.iter().all(|c| !c.covered), "{}", s.id);
            assert!(s.optimal_minutes < s.worst_minutes);
            assert!(
                s.rounds.last().is_some_and(|r| !r.is_decision()),
                "{} ends with a checklist round",
                s.id
            );
        }
    }

    #[test]
    fn builtins_cover_the_six_checklist_items_and_carry_actions() {
        let want = [
            "rst-origin",
            "timeout-vs-keepalive",
            "so-keepalive",
            "both-sides",
            "persisted",
            "monitoring",
        ];
        for s in all().unwrap() {
            let ids: Vec<&str> = s.checklist.iter().map(|c| c.id.as_str()).collect();
            assert_eq!(ids, want, "{}", s.id);
            let actions = s
                .rounds
                .iter()
                .flat_map(|r| r.choices())
                .filter(|c| c.action.changes_system())
                .count();
            assert!(actions >= 2, "{} has live-mode actions", s.id);
        }
    }

    /// The frozen-timer built-in rewards what `lab reproduce --preset nat-43200-invalid`
    /// measured: be_liberal=1 is the fix; loose=1, a longer timeout and pings are not.
    #[test]
    fn frozen_timer_rewards_what_the_lab_measured() {
        let s = get("nat-frozen-timer").unwrap();
        let choices: Vec<&Choice> = s.rounds.iter().flat_map(|r| r.choices()).collect();
        let recommended_actions: Vec<&Action> = choices
            .iter()
            .filter(|c| c.recommended && c.action.changes_system())
            .map(|c| &c.action)
            .collect();
        assert_eq!(
            recommended_actions,
            [&Action::ConntrackBeLiberal { enabled: true }]
        );
        for c in &choices {
            let not_a_fix = matches!(
                c.action,
                Action::ConntrackLoose { .. }
                    | Action::FirewallTimeout { .. }
                    | Action::Heartbeat { .. }
            );
            assert!(!(not_a_fix && c.recommended), "{c:?} is not a fix");
            if not_a_fix {
                assert!(c.evidence.as_deref().is_some_and(|e| e.starts_with("lab:")));
            }
        }
        let fix = choices
            .iter()
            .find(|c| c.action == Action::ConntrackBeLiberal { enabled: true })
            .unwrap();
        assert!(
            fix.result.contains("out-of-window"),
            "the trade-off is said"
        );
        assert!(
            fix.evidence.as_deref().unwrap().contains("helps"),
            "{:?}",
            fix.evidence
        );
        let pings = choices
            .iter()
            .find(|c| matches!(c.action, Action::Heartbeat { .. }))
            .unwrap();
        assert!(pings.result.contains("INVALID"), "{}", pings.result);
        assert!(
            s.evidence
                .iter()
                .any(|e| e.contains("lab reproduce --preset nat-43200-invalid")),
            "cites the lab run: {:?}",
            s.evidence
        );
        let t = play_scripted(&s, &['B', 'A', 'B', 'B', 'A']).unwrap();
        assert_eq!(t.evidence, s.evidence);
        assert!(t.rounds[3].evidence.as_deref().unwrap().contains("helps"));
    }

    #[test]
    fn unknown_id_lists_the_known_ones() {
        let e = get("nope").unwrap_err().to_string();
        assert!(
            e.contains("firewall-900") && e.contains("nat-frozen-timer"),
            "{e}"
        );
    }
}
