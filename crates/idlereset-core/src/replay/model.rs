//! The scenario model shared by every source (built-in TOML, user TOML, the seed's markdown).
//!
//! One loaded scenario is one [`Scenario`]: setup lines, rounds, the optimal and worst
//! resolution times, an optional coverage checklist and cross-references. A round is either a
//! decision (a pressure cue, what you see, lettered choices with outcomes, exactly one
//! recommended) or a checklist round (the seed's final "Actions: 1. … 2. …" round: read, not
//! chosen, costs nothing).
//!
//! Choices may carry a machine-readable [`Action`]: the seam for live mode, where the lab
//! applies the system change a choice makes (keepalive on the socket, a sysctl, a firewall
//! timeout, a heartbeat) and verifies it. The engine never applies anything itself.

use serde::{Deserialize, Serialize};

/// A playable incident-replay exercise.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scenario {
    /// Short id (`firewall-900`, or the file stem for files).
    pub id: String,
    /// Title shown at the start.
    pub title: String,
    /// One-line description for `replay --list`.
    pub summary: String,
    /// Setup lines ("System context: …", "Time: …", "Your role: …").
    pub setup: Vec<String>,
    /// The rounds in play order.
    pub rounds: Vec<Round>,
    /// Resolution time of the all-recommended path, in minutes.
    pub optimal_minutes: u32,
    /// Resolution time of the path that makes every wrong choice, in minutes.
    pub worst_minutes: u32,
    /// What the scenario adds after the worst time ("+ additional damage").
    pub worst_note: Option<String>,
    /// Other damage-report lines of the source (blast radius, …).
    pub damage_notes: Vec<String>,
    /// What a strong response covers; empty means "derive one item per decision round".
    pub checklist: Vec<ChecklistItem>,
    /// The source's cross-references.
    pub references: Vec<String>,
    /// Lab runs the scenario's answers rest on (the command to repeat it and what it measured).
    pub evidence: Vec<String>,
    /// Where the scenario came from (`built-in`, a file path).
    pub origin: String,
}

/// One round of the exercise.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Round {
    /// The number the source gives the round (1-based).
    pub number: u32,
    /// Heading of the round.
    pub title: String,
    /// The pressure cue, without its brackets and quotes.
    pub cue: Option<String>,
    /// "What you see" text.
    pub see: Option<String>,
    /// Whether the round asks for a choice or shows a checklist.
    pub kind: RoundKind,
    /// 1-based line of the round's heading in its source (0 for built-ins without one).
    pub line: usize,
}

/// What the player does in a round.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum RoundKind {
    /// Pick one lettered choice.
    Decision {
        /// The choices, in letter order.
        choices: Vec<Choice>,
    },
    /// Read a list of closing actions; nothing to choose, no cost.
    Checklist {
        /// The actions, as written.
        actions: Vec<String>,
    },
}

/// One lettered choice of a decision round.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Choice {
    /// Upper-case letter (`A`, `B`, …).
    pub letter: char,
    /// The choice as offered.
    pub text: String,
    /// Whether it is the recommended choice.
    pub recommended: bool,
    /// The outcome shown after choosing ("[Result: …]" without the brackets).
    pub result: String,
    /// Explicit cost in minutes (TOML `minutes`); `None` uses the default rule of `scoring`.
    pub minutes: Option<u32>,
    /// System change this choice makes, for live mode.
    pub action: Action,
    /// Checklist item ids this choice covers.
    pub covers: Vec<String>,
    /// What a lab run measured about this choice (shown beside the result).
    pub evidence: Option<String>,
    /// A warning shown beside the result: the choice as written is one of the runbook's traps
    /// (set by the scenario, or derived by [`super::caveat`]).
    pub caveat: Option<String>,
}

/// One item of "what a strong response covers".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChecklistItem {
    /// Stable id, referenced by [`Choice::covers`].
    pub id: String,
    /// The item as shown.
    pub text: String,
}

/// A machine-readable system change made by a choice (the live-mode seam).
///
/// In TOML: `action = { kind = "keepalive-on-socket", idle_s = 300 }`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", deny_unknown_fields)]
pub enum Action {
    /// Changes nothing on the system (investigation, escalation, documentation).
    #[default]
    None,
    /// The application sets SO_KEEPALIVE with per-socket TCP_KEEPIDLE (and optionally
    /// TCP_KEEPINTVL / TCP_KEEPCNT).
    KeepaliveOnSocket {
        /// TCP_KEEPIDLE, seconds.
        idle_s: u32,
        /// TCP_KEEPINTVL, seconds; `None` = the host's sysctl.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        intvl_s: Option<u32>,
        /// TCP_KEEPCNT; `None` = the host's sysctl.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        probes: Option<u32>,
    },
    /// `net.ipv4.tcp_keepalive_*` sysctls on the hosts (only sockets that opt in use them).
    SysctlKeepalive {
        /// `net.ipv4.tcp_keepalive_time`, seconds.
        time_s: u32,
        /// `net.ipv4.tcp_keepalive_intvl`, seconds; `None` = unchanged.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        intvl_s: Option<u32>,
        /// `net.ipv4.tcp_keepalive_probes`; `None` = unchanged.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        probes: Option<u32>,
    },
    /// The middlebox's established idle timeout (`nf_conntrack_tcp_timeout_established`).
    FirewallTimeout {
        /// Seconds.
        timeout_s: u32,
    },
    /// `nf_conntrack_tcp_loose` on the middlebox.
    ConntrackLoose {
        /// On (1) or off (0).
        enabled: bool,
    },
    /// `nf_conntrack_tcp_be_liberal` on the middlebox (out-of-window packets are not INVALID).
    ConntrackBeLiberal {
        /// On (1) or off (0).
        enabled: bool,
    },
    /// An application-level heartbeat on idle connections (validation query, HTTP/2 PING).
    Heartbeat {
        /// Seconds between heartbeats.
        interval_s: u32,
    },
}

impl Action {
    /// True when the choice changes the system (live mode has something to apply).
    pub fn changes_system(&self) -> bool {
        !matches!(self, Action::None)
    }

    /// A short human description (`keepalive on the socket: idle 300 s`).
    pub fn describe(&self) -> String {
        let opt =
            |label: &str, v: &Option<u32>| v.map(|v| format!(", {label} {v}")).unwrap_or_default();
        match self {
            Action::None => "no system change".to_string(),
            Action::KeepaliveOnSocket {
                idle_s,
                intvl_s,
                probes,
            } => format!(
                "SO_KEEPALIVE on the socket: idle {idle_s} s{}{}",
                opt("interval", intvl_s),
                opt("probes", probes)
            ),
            Action::SysctlKeepalive {
                time_s,
                intvl_s,
                probes,
            } => format!(
                "sysctl net.ipv4.tcp_keepalive_time={time_s}{}{}",
                opt("intvl", intvl_s),
                opt("probes", probes)
            ),
            Action::FirewallTimeout { timeout_s } => {
                format!("firewall established timeout {timeout_s} s")
            }
            Action::ConntrackLoose { enabled } => {
                format!("nf_conntrack_tcp_loose={}", u8::from(*enabled))
            }
            Action::ConntrackBeLiberal { enabled } => {
                format!("nf_conntrack_tcp_be_liberal={}", u8::from(*enabled))
            }
            Action::Heartbeat { interval_s } => {
                format!("application heartbeat every {interval_s} s")
            }
        }
    }
}

impl Round {
    /// The choices of a decision round (empty for a checklist round).
    pub fn choices(&self) -> &[Choice] {
        match &self.kind {
            RoundKind::Decision { choices } => choices,
            RoundKind::Checklist { .. } => &[],
        }
    }

    /// Whether the round asks for a choice.
    pub fn is_decision(&self) -> bool {
        matches!(self.kind, RoundKind::Decision { .. })
    }

    /// The recommended choice, if the round is a decision.
    pub fn recommended(&self) -> Option<&Choice> {
        self.choices().iter().find(|c| c.recommended)
    }

    /// The choice with this letter (case-insensitive).
    pub fn choice(&self, letter: char) -> Option<&Choice> {
        let l = letter.to_ascii_uppercase();
        self.choices().iter().find(|c| c.letter == l)
    }
}

impl Scenario {
    /// The decision rounds, in order.
    pub fn decision_rounds(&self) -> impl Iterator<Item = &Round> {
        self.rounds.iter().filter(|r| r.is_decision())
    }

    /// The checklist a strong response covers: the scenario's own, or one item per decision
    /// round ("Round 1: `<recommended choice>`") covered by choosing the recommended answer.
    pub(crate) fn effective_checklist(&self) -> Vec<ChecklistItem> {
        if !self.checklist.is_empty() {
            return self.checklist.clone();
        }
        self.decision_rounds()
            .filter_map(|r| {
                r.recommended().map(|c| ChecklistItem {
                    id: format!("round-{}", r.number),
                    text: format!("Round {} ({}): {}", r.number, r.title, c.text),
                })
            })
            .collect()
    }

    /// The checklist ids a choice covers, including the implicit per-round item.
    pub(crate) fn covered_by(&self, round: &Round, choice: &Choice) -> Vec<String> {
        let mut ids = choice.covers.clone();
        if self.checklist.is_empty() && choice.recommended {
            ids.push(format!("round-{}", round.number));
        }
        ids
    }
}

/// Why a scenario is not playable (shared by the loaders' final check).
///
/// Returns the message and the 1-based source line of the offending round (0 if unknown).
pub fn check(s: &Scenario) -> Result<(), (String, usize)> {
    if s.decision_rounds().next().is_none() {
        return Err(("the scenario has no round with choices".to_string(), 0));
    }
    if s.optimal_minutes > s.worst_minutes {
        return Err((
            format!(
                "optimal time ({} min) is longer than the worst time ({} min)",
                s.optimal_minutes, s.worst_minutes
            ),
            0,
        ));
    }
    let ids: Vec<&str> = s.checklist.iter().map(|c| c.id.as_str()).collect();
    for r in &s.rounds {
        let RoundKind::Decision { choices } = &r.kind else {
            continue;
        };
        let at = |msg: String| Err((format!("round {} ({}): {msg}", r.number, r.title), r.line));
        if choices.len() < 2 {
            return at(format!("needs at least two choices, has {}", choices.len()));
        }
        let recommended = choices.iter().filter(|c| c.recommended).count();
        if recommended != 1 {
            return at(format!(
                "needs exactly one recommended choice, has {recommended}"
            ));
        }
        for (i, c) in choices.iter().enumerate() {
            if !c.letter.is_ascii_uppercase() {
                return at(format!("choice letter {:?} is not A-Z", c.letter));
            }
            if choices[..i].iter().any(|o| o.letter == c.letter) {
                return at(format!("choice {} appears twice", c.letter));
            }
            if let Some(bad) = c.covers.iter().find(|id| !ids.contains(&id.as_str())) {
                return at(format!(
                    "choice {} covers {bad:?}, which is not a checklist id",
                    c.letter
                ));
            }
        }
    }
    Ok(())
}
