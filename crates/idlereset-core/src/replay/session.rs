//! A play-through as a state machine: answers go in one by one, a transcript comes out.
//!
//! Every front end (terminal UI, line mode, `--answers`, and later live mode) drives the same
//! [`Session`], so scoring and the transcript cannot differ between them. The session does no
//! I/O and reads no clock: the terminal UI keeps its own wall clock, the incident clock is the
//! sum of the minutes charged so far.
//!
//! Live-mode seam: [`Session::answer`] returns a [`Step`] naming the [`Action`] the choice
//! applies; a lab can apply it and hand its verdict back with [`Session::verify_last`], which
//! lands in the transcript.

use serde::Serialize;

use super::model::{Action, RoundKind, Scenario};
use super::scoring::{Costs, ScoringError};

/// Why an answer was refused (the session is unchanged).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The round has no choice with that letter.
    #[error("round {round} has no choice {letter:?} (choices: {valid})")]
    NoSuchChoice {
        /// The round's number.
        round: u32,
        /// The letter given.
        letter: char,
        /// The letters it has, comma-separated.
        valid: String,
    },
    /// An answer was given to a checklist round.
    #[error("round {round} is a checklist round: nothing to choose, acknowledge it")]
    NotADecision {
        /// The round's number.
        round: u32,
    },
    /// An acknowledgement was given to a decision round.
    #[error("round {round} asks for a choice, not an acknowledgement")]
    NotAChecklist {
        /// The round's number.
        round: u32,
    },
    /// No round is left to answer.
    #[error("the exercise is over: no round left")]
    Finished,
    /// A script's answers do not match the decision rounds in number.
    #[error("{given} answers given for {needed} decision rounds")]
    AnswerCount {
        /// Answers given.
        given: usize,
        /// Decision rounds.
        needed: usize,
    },
}

/// Where the session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Current {
    /// Waiting for a choice in `scenario.rounds[index]`.
    Decision(usize),
    /// Waiting for the checklist round `scenario.rounds[index]` to be acknowledged.
    Checklist(usize),
    /// Every round is answered.
    Finished,
}

/// What one answer did.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Index of the round in `scenario.rounds`.
    pub round_index: usize,
    /// The letter chosen.
    pub letter: char,
    /// Whether it was the recommended choice.
    pub recommended: bool,
    /// Minutes the choice cost.
    pub minutes: u32,
    /// The outcome shown ("[Result: …]" without the brackets).
    pub result: String,
    /// The system change this choice applies (live mode applies and verifies it).
    pub action: Action,
    /// What a lab run measured about this choice.
    pub evidence: Option<String>,
    /// The trap this choice falls into as written, shown beside the result.
    pub caveat: Option<String>,
}

/// One played round in the transcript.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoundRecord {
    /// The round's number in the source.
    pub number: u32,
    /// Heading of the round.
    pub title: String,
    /// `"decision"` or `"checklist"`.
    pub kind: &'static str,
    /// The letter chosen (`null` for checklist rounds).
    pub choice: Option<char>,
    /// Text of the choice made.
    pub choice_text: Option<String>,
    /// Letter of the recommended choice (`null` for checklist rounds).
    pub recommended_choice: Option<char>,
    /// Whether the recommended choice was made.
    pub recommended: bool,
    /// Minutes the round cost.
    pub minutes: u32,
    /// The outcome shown.
    pub result: Option<String>,
    /// The system change the choice makes (live mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// What live mode measured after applying the action.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<String>,
    /// What a lab run measured about the chosen answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
    /// The trap the chosen answer falls into as written (offline, not only `--live`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caveat: Option<String>,
}

/// One line of the coverage checklist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChecklistStatus {
    /// Checklist item id.
    pub id: String,
    /// The item as shown.
    pub text: String,
    /// Whether a choice made covers it.
    pub covered: bool,
}

/// The scored play-through (`replay --json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transcript {
    /// Scenario id.
    pub scenario: String,
    /// Scenario title.
    pub title: String,
    /// The letters chosen, comma-separated (`B,B,D`).
    pub path: String,
    /// Minutes the choices made cost together.
    pub total_minutes: u32,
    /// Minutes of the all-recommended path.
    pub optimal_minutes: u32,
    /// Minutes of the path making every wrong choice.
    pub worst_minutes: u32,
    /// Every round answered (false when input ended early).
    pub complete: bool,
    /// Every round played, in order.
    pub rounds: Vec<RoundRecord>,
    /// Coverage of the checklist.
    pub checklist: Vec<ChecklistStatus>,
    /// The source's other damage-report lines ("Blast radius: …").
    pub damage_notes: Vec<String>,
    /// The source's cross-references.
    pub references: Vec<String>,
    /// Lab runs the scenario's answers rest on.
    pub evidence: Vec<String>,
}

impl Transcript {
    /// The source's damage lines worth printing beside the computed totals ("Blast radius: …";
    /// the source's own "Total downtime" line is replaced by the computed total).
    pub fn shown_damage_notes(&self) -> impl Iterator<Item = &str> {
        self.damage_notes
            .iter()
            .map(String::as_str)
            .filter(|n| !n.to_ascii_lowercase().starts_with("total downtime"))
    }
}

/// A play-through of one scenario.
#[derive(Debug, Clone)]
pub struct Session<'a> {
    scenario: &'a Scenario,
    costs: Costs,
    next: usize,
    records: Vec<RoundRecord>,
    covered: Vec<String>,
}

impl<'a> Session<'a> {
    /// A session at the first round; fails when the scenario's costs do not add up.
    pub fn new(scenario: &'a Scenario) -> Result<Session<'a>, ScoringError> {
        let costs = Costs::compute(scenario)?;
        Ok(Session {
            scenario,
            costs,
            next: 0,
            records: Vec::new(),
            covered: Vec::new(),
        })
    }

    /// The scenario played.
    pub fn scenario(&self) -> &'a Scenario {
        self.scenario
    }

    /// Minutes per choice.
    pub fn costs(&self) -> &Costs {
        &self.costs
    }

    /// Where the session stands.
    pub fn current(&self) -> Current {
        match self.scenario.rounds.get(self.next) {
            None => Current::Finished,
            Some(r) if r.is_decision() => Current::Decision(self.next),
            Some(_) => Current::Checklist(self.next),
        }
    }

    /// Index of the round being played (== rounds.len() when finished).
    pub fn position(&self) -> usize {
        self.next
    }

    /// Rounds played so far.
    pub fn records(&self) -> &[RoundRecord] {
        &self.records
    }

    /// Minutes on the incident clock so far.
    pub fn elapsed_minutes(&self) -> u32 {
        self.records.iter().map(|r| r.minutes).sum()
    }

    /// Answer the current decision round with `letter` (case-insensitive).
    pub fn answer(&mut self, letter: char) -> Result<Step, SessionError> {
        let index = self.next;
        let round = self
            .scenario
            .rounds
            .get(index)
            .ok_or(SessionError::Finished)?;
        let RoundKind::Decision { choices } = &round.kind else {
            return Err(SessionError::NotADecision {
                round: round.number,
            });
        };
        let upper = letter.to_ascii_uppercase();
        let (j, choice) = choices
            .iter()
            .enumerate()
            .find(|(_, c)| c.letter == upper)
            .ok_or_else(|| SessionError::NoSuchChoice {
                round: round.number,
                letter,
                valid: choices
                    .iter()
                    .map(|c| c.letter.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let minutes = self.costs.minutes(index, j);
        self.covered.extend(self.scenario.covered_by(round, choice));
        self.records.push(RoundRecord {
            number: round.number,
            title: round.title.clone(),
            kind: "decision",
            choice: Some(choice.letter),
            choice_text: Some(choice.text.clone()),
            recommended_choice: round.recommended().map(|c| c.letter),
            recommended: choice.recommended,
            minutes,
            result: Some(choice.result.clone()),
            action: choice
                .action
                .changes_system()
                .then(|| choice.action.clone()),
            verification: None,
            evidence: choice.evidence.clone(),
            caveat: choice.caveat.clone(),
        });
        self.next += 1;
        Ok(Step {
            round_index: index,
            letter: choice.letter,
            recommended: choice.recommended,
            minutes,
            result: choice.result.clone(),
            action: choice.action.clone(),
            evidence: choice.evidence.clone(),
            caveat: choice.caveat.clone(),
        })
    }

    /// Acknowledge the current checklist round (costs nothing).
    pub fn acknowledge(&mut self) -> Result<(), SessionError> {
        let round = self
            .scenario
            .rounds
            .get(self.next)
            .ok_or(SessionError::Finished)?;
        if round.is_decision() {
            return Err(SessionError::NotAChecklist {
                round: round.number,
            });
        }
        self.records.push(RoundRecord {
            number: round.number,
            title: round.title.clone(),
            kind: "checklist",
            choice: None,
            choice_text: None,
            recommended_choice: None,
            recommended: true,
            minutes: 0,
            result: None,
            action: None,
            verification: None,
            evidence: None,
            caveat: None,
        });
        self.next += 1;
        Ok(())
    }

    /// Attach a verdict (from live mode) to the last answered round.
    pub fn verify_last(&mut self, verdict: impl Into<String>) {
        if let Some(last) = self.records.last_mut() {
            last.verification = Some(verdict.into());
        }
    }

    /// Whether every round is answered.
    pub fn is_finished(&self) -> bool {
        self.current() == Current::Finished
    }

    /// The transcript of what was played so far.
    pub fn transcript(&self) -> Transcript {
        let path = self
            .records
            .iter()
            .filter_map(|r| r.choice)
            .map(String::from)
            .collect::<Vec<_>>()
            .join(",");
        Transcript {
            scenario: self.scenario.id.clone(),
            title: self.scenario.title.clone(),
            path,
            total_minutes: self.elapsed_minutes(),
            optimal_minutes: self.scenario.optimal_minutes,
            worst_minutes: self.scenario.worst_minutes,
            complete: self.is_finished(),
            rounds: self.records.clone(),
            checklist: self
                .scenario
                .effective_checklist()
                .into_iter()
                .map(|item| ChecklistStatus {
                    covered: self.covered.contains(&item.id),
                    id: item.id,
                    text: item.text,
                })
                .collect(),
            damage_notes: self.scenario.damage_notes.clone(),
            references: self.scenario.references.clone(),
            evidence: self.scenario.evidence.clone(),
        }
    }
}

/// Play a whole scenario from a list of letters, one per decision round (checklist rounds are
/// acknowledged on the way). The number of answers must match the decision rounds.
pub fn play_scripted(scenario: &Scenario, answers: &[char]) -> Result<Transcript, ScriptError> {
    let needed = scenario.decision_rounds().count();
    if answers.len() != needed {
        return Err(SessionError::AnswerCount {
            given: answers.len(),
            needed,
        }
        .into());
    }
    let mut session = Session::new(scenario)?;
    let mut answers = answers.iter();
    loop {
        match session.current() {
            Current::Finished => break,
            Current::Checklist(_) => session.acknowledge()?,
            Current::Decision(_) => {
                let letter = answers.next().copied().ok_or(SessionError::Finished)?;
                session.answer(letter)?;
            }
        }
    }
    Ok(session.transcript())
}

/// Why a scripted play failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    /// An answer was refused.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The scenario's costs do not add up.
    #[error(transparent)]
    Scoring(#[from] ScoringError),
}

/// Parse `B,B,D` (also `b b d`, `BBD`) into letters.
pub fn parse_answers(text: &str) -> Result<Vec<char>, String> {
    let letters: Vec<char> = text
        .chars()
        .filter(|c| !matches!(c, ',' | ' ' | ';'))
        .collect();
    if letters.is_empty() {
        return Err(format!(
            "no answers in {text:?} (expected letters like B,B,D)"
        ));
    }
    if let Some(bad) = letters.iter().find(|c| !c.is_ascii_alphabetic()) {
        return Err(format!(
            "{bad:?} in {text:?} is not a choice letter (expected letters like B,B,D)"
        ));
    }
    Ok(letters
        .into_iter()
        .map(|c| c.to_ascii_uppercase())
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::replay::builtin;

    #[test]
    fn answers_parse_in_several_spellings() {
        assert_eq!(parse_answers("B,B,D").unwrap(), vec!['B', 'B', 'D']);
        assert_eq!(parse_answers("b b d").unwrap(), vec!['B', 'B', 'D']);
        assert!(parse_answers("B,1").is_err());
        assert!(parse_answers(" , ").is_err());
    }

    #[test]
    fn wrong_letter_is_refused_and_session_unchanged() {
        let s = builtin::get("firewall-900").unwrap();
        let mut session = Session::new(&s).unwrap();
        let err = session.answer('Z').unwrap_err();
        assert!(
            matches!(err, SessionError::NoSuchChoice { letter: 'Z', .. }),
            "{err}"
        );
        assert_eq!(session.position(), 0);
        assert!(session.acknowledge().is_err());
    }

    #[test]
    fn step_exposes_the_action_to_apply() {
        let s = builtin::get("firewall-900").unwrap();
        let mut session = Session::new(&s).unwrap();
        let first_rec = s.rounds[0].recommended().unwrap().letter;
        session.answer(first_rec).unwrap();
        // somewhere in the built-in a recommended choice changes the system
        let mut saw_action = false;
        while let Current::Decision(i) = session.current() {
            let rec = s.rounds[i].recommended().unwrap().letter;
            let step = session.answer(rec).unwrap();
            if step.action.changes_system() {
                saw_action = true;
                session.verify_last("verified in test");
            }
        }
        assert!(saw_action);
        let t = session.transcript();
        assert!(
            t.rounds
                .iter()
                .any(|r| r.verification.as_deref() == Some("verified in test"))
        );
    }

    #[test]
    fn answer_count_must_match() {
        let s = builtin::get("firewall-900").unwrap();
        let err = play_scripted(&s, &['B']).unwrap_err();
        assert!(err.to_string().contains("1 answers given"), "{err}");
    }
}
