//! What each choice costs, so that the scenario's stated times come out exactly.
//!
//! A replay states two numbers: the optimal resolution time (every round answered with the
//! recommended choice) and the time if every wrong choice was made. The exercise picks one
//! choice per decision round, so "the path that makes every wrong choice" is defined as: in
//! every decision round, a choice that is not the recommended one; when choices cost
//! different amounts, the costliest choice of each round. Checklist rounds cost nothing.
//!
//! The rule, with `n` decision rounds, optimal time `O` and worst time `W` (minutes):
//!
//! * **Default (no per-choice minutes):** `O` is split over the decision rounds as evenly as
//!   whole minutes allow (the first `O mod n` rounds get one minute more), and so is the extra
//!   `W - O`. In round `i` the recommended choice costs `base_i`; every wrong choice costs
//!   `base_i + extra_i`. All-recommended totals `O` and any all-wrong path totals `W`; a path
//!   in between costs `O` plus `extra_i` for each round `i` answered wrongly.
//!   Example (the first seed: 3 rounds, 12 and 60 min): recommended 4 min, wrong 20 min, so
//!   B,B,D = 12, A,A,A = 60 and A,B,D = 28.
//! * **Explicit (TOML `minutes` on every choice):** each choice costs what it says. `O` must
//!   equal the sum of the recommended choices and `W` the sum of each round's costliest
//!   choice; a file that gives both and disagrees is rejected. Minutes are all-or-none so a
//!   half-specified file cannot silently break the stated totals.

use super::model::{Round, RoundKind, Scenario};

/// Why the costs cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScoringError {
    /// Some choices of a round give minutes and others do not.
    #[error(
        "choice minutes must be given for every choice or for none; round {round} choice {letter} has {}",
        if *has { "minutes while others do not" } else { "none while others do" }
    )]
    PartialMinutes {
        /// The round's number.
        round: u32,
        /// The choice's letter.
        letter: char,
        /// Whether that choice has minutes.
        has: bool,
    },
    /// The stated optimal time is not the sum of the recommended choices.
    #[error("optimal time is {stated} min but the recommended choices add up to {computed} min")]
    OptimalMismatch {
        /// The scenario's optimal time, minutes.
        stated: u32,
        /// The recommended choices' sum, minutes.
        computed: u32,
    },
    /// The stated worst time is not the sum of each round's costliest choice.
    #[error(
        "worst time is {stated} min but the costliest choices of each round add up to {computed} min"
    )]
    WorstMismatch {
        /// The scenario's worst time, minutes.
        stated: u32,
        /// The costliest choices' sum, minutes.
        computed: u32,
    },
    /// The optimal time exceeds the worst time.
    #[error("optimal time ({optimal} min) is longer than the worst time ({worst} min)")]
    OptimalAboveWorst {
        /// Optimal time, minutes.
        optimal: u32,
        /// Worst time, minutes.
        worst: u32,
    },
    /// A wrong choice costs fewer minutes than the recommended one of its round.
    #[error(
        "round {round}: a wrong choice ({letter}, {wrong} min) costs less than the recommended one ({recommended} min)"
    )]
    WrongCheaper {
        /// The round's number.
        round: u32,
        /// Letter of the wrong choice.
        letter: char,
        /// Its cost, minutes.
        wrong: u32,
        /// The recommended choice's cost, minutes.
        recommended: u32,
    },
}

/// Minutes per choice, indexed like `scenario.rounds[i].choices()[j]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Costs {
    per_round: Vec<Vec<u32>>,
}

impl Costs {
    /// The cost table of a scenario under the rule in the module doc.
    pub(crate) fn compute(s: &Scenario) -> Result<Costs, ScoringError> {
        if let Some(explicit) = explicit_minutes(&s.rounds)? {
            return Ok(Costs {
                per_round: explicit,
            });
        }
        if s.optimal_minutes > s.worst_minutes {
            return Err(ScoringError::OptimalAboveWorst {
                optimal: s.optimal_minutes,
                worst: s.worst_minutes,
            });
        }
        let n = s.rounds.iter().filter(|r| r.is_decision()).count() as u32;
        let extra_total = s.worst_minutes - s.optimal_minutes;
        let mut k = 0u32;
        let per_round = s
            .rounds
            .iter()
            .map(|r| match &r.kind {
                RoundKind::Checklist { .. } => Vec::new(),
                RoundKind::Decision { choices } => {
                    let base = share(s.optimal_minutes, n, k);
                    let extra = share(extra_total, n, k);
                    k += 1;
                    choices
                        .iter()
                        .map(|c| if c.recommended { base } else { base + extra })
                        .collect()
                }
            })
            .collect();
        Ok(Costs { per_round })
    }

    /// Cost of choice `choice` of round `round` (indices), 0 when out of range.
    pub fn minutes(&self, round: usize, choice: usize) -> u32 {
        self.per_round
            .get(round)
            .and_then(|r| r.get(choice))
            .copied()
            .unwrap_or(0)
    }

    /// Total of the all-recommended path.
    pub(crate) fn optimal_total(&self, s: &Scenario) -> u32 {
        self.path_total(s, |r| r.choices().iter().position(|c| c.recommended))
    }

    /// Total of the worst path: the costliest choice of every decision round.
    pub(crate) fn worst_total(&self) -> u32 {
        self.per_round
            .iter()
            .map(|r| r.iter().copied().max().unwrap_or(0))
            .sum()
    }

    fn path_total(&self, s: &Scenario, pick: impl Fn(&Round) -> Option<usize>) -> u32 {
        s.rounds
            .iter()
            .enumerate()
            .filter_map(|(i, r)| pick(r).map(|j| self.minutes(i, j)))
            .sum()
    }

    /// Check the stated times against the table (used for explicit minutes).
    pub(crate) fn check_against(&self, s: &Scenario) -> Result<(), ScoringError> {
        let optimal = self.optimal_total(s);
        if optimal != s.optimal_minutes {
            return Err(ScoringError::OptimalMismatch {
                stated: s.optimal_minutes,
                computed: optimal,
            });
        }
        let worst = self.worst_total();
        if worst != s.worst_minutes {
            return Err(ScoringError::WorstMismatch {
                stated: s.worst_minutes,
                computed: worst,
            });
        }
        for (i, r) in s.rounds.iter().enumerate() {
            let Some(rec) = r.choices().iter().position(|c| c.recommended) else {
                continue;
            };
            let rec_min = self.minutes(i, rec);
            for (j, c) in r.choices().iter().enumerate() {
                if self.minutes(i, j) < rec_min {
                    return Err(ScoringError::WrongCheaper {
                        round: r.number,
                        letter: c.letter,
                        wrong: self.minutes(i, j),
                        recommended: rec_min,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Share `k` (0-based) of `total` split over `n` parts in whole minutes.
fn share(total: u32, n: u32, k: u32) -> u32 {
    if n == 0 {
        return 0;
    }
    total / n + u32::from(k < total % n)
}

/// The explicit table when every choice has minutes, `None` when none has.
fn explicit_minutes(rounds: &[Round]) -> Result<Option<Vec<Vec<u32>>>, ScoringError> {
    let all: Vec<_> = rounds
        .iter()
        .flat_map(|r| r.choices().iter().map(move |c| (r, c)))
        .collect();
    let with = all.iter().filter(|(_, c)| c.minutes.is_some()).count();
    if with == 0 {
        return Ok(None);
    }
    if let Some((r, c)) = all.iter().find(|(_, c)| c.minutes.is_none()) {
        return Err(ScoringError::PartialMinutes {
            round: r.number,
            letter: c.letter,
            has: false,
        });
    }
    Ok(Some(
        rounds
            .iter()
            .map(|r| r.choices().iter().map(|c| c.minutes.unwrap_or(0)).collect())
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::replay::model::{Action, Choice};

    fn round(number: u32, letters: &str, rec: char, minutes: Option<&[u32]>) -> Round {
        let choices = letters
            .chars()
            .enumerate()
            .map(|(i, l)| Choice {
                letter: l,
                text: format!("choice {l}"),
                recommended: l == rec,
                result: String::new(),
                minutes: minutes.map(|m| m[i]),
                action: Action::None,
                covers: vec![],
                evidence: None,
                caveat: None,
            })
            .collect();
        Round {
            number,
            title: format!("r{number}"),
            cue: None,
            see: None,
            kind: RoundKind::Decision { choices },
            line: 0,
        }
    }

    fn scenario(rounds: Vec<Round>, o: u32, w: u32) -> Scenario {
        Scenario {
            id: "t".into(),
            title: "t".into(),
            summary: String::new(),
            setup: vec![],
            rounds,
            optimal_minutes: o,
            worst_minutes: w,
            worst_note: None,
            damage_notes: vec![],
            checklist: vec![],
            references: vec![],
            evidence: vec![],
            origin: "test".into(),
        }
    }

    #[test]
    fn uneven_totals_still_come_out_exact() {
        // 13 over 3 rounds and an extra of 50 over 3: remainders go to the first rounds.
        let s = scenario(
            vec![
                round(1, "ABC", 'B', None),
                round(2, "ABCD", 'D', None),
                round(3, "AB", 'A', None),
            ],
            13,
            63,
        );
        let c = Costs::compute(&s).unwrap();
        assert_eq!(c.optimal_total(&s), 13);
        assert_eq!(c.worst_total(), 63);
        assert_eq!(c.minutes(0, 1), 5);
        assert_eq!(c.minutes(0, 0), 5 + 17);
        assert_eq!(c.minutes(2, 1), 4 + 16);
        // every wrong path costs the worst time, not only the costliest one
        assert_eq!(c.minutes(0, 0) + c.minutes(1, 2) + c.minutes(2, 1), 63);
    }

    #[test]
    fn explicit_minutes_are_checked() {
        let s = scenario(
            vec![
                round(1, "AB", 'A', Some(&[3, 10])),
                round(2, "AB", 'B', Some(&[7, 2])),
            ],
            5,
            17,
        );
        let c = Costs::compute(&s).unwrap();
        assert_eq!(c.check_against(&s), Ok(()));
        let bad = scenario(s.rounds.clone(), 6, 17);
        assert!(matches!(
            c.check_against(&bad),
            Err(ScoringError::OptimalMismatch {
                stated: 6,
                computed: 5
            })
        ));
        let mut partial = s.clone();
        if let RoundKind::Decision { choices } = &mut partial.rounds[1].kind {
            choices[0].minutes = None;
        }
        assert!(matches!(
            Costs::compute(&partial),
            Err(ScoringError::PartialMinutes {
                round: 2,
                letter: 'A',
                ..
            })
        ));
    }

    #[test]
    fn optimal_above_worst_is_an_error() {
        let s = scenario(vec![round(1, "AB", 'A', None)], 30, 10);
        assert!(Costs::compute(&s).is_err());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// For any stated times and round shapes: all-recommended = O, any all-wrong path
            /// = W, and every path lies in [O, W], growing with each wrong round.
            #[test]
            fn stated_times_come_out_exactly(
                o in 0u32..500,
                extra in 0u32..5000,
                shapes in proptest::collection::vec((2usize..6, 0usize..6, 0usize..6), 1..8),
            ) {
                let letters = "ABCDEF";
                let rounds: Vec<Round> = shapes
                    .iter()
                    .enumerate()
                    .map(|(i, (n, rec, _))| {
                        let ls = &letters[..*n];
                        let rec = ls.chars().nth(rec % n).unwrap();
                        round(u32::try_from(i + 1).unwrap(), ls, rec, None)
                    })
                    .collect();
                let s = scenario(rounds, o, o + extra);
                let c = Costs::compute(&s).unwrap();
                prop_assert_eq!(c.optimal_total(&s), o);
                prop_assert_eq!(c.worst_total(), o + extra);
                let mut total = 0;
                let mut wrong = 0;
                for (i, (r, (_, _, pick))) in s.rounds.iter().zip(&shapes).enumerate() {
                    let j = pick % r.choices().len();
                    total += c.minutes(i, j);
                    wrong += usize::from(!r.choices()[j].recommended);
                }
                prop_assert!((o..=o + extra).contains(&total));
                if wrong == s.rounds.len() {
                    prop_assert_eq!(total, o + extra);
                }
                if wrong == 0 {
                    prop_assert_eq!(total, o);
                }
            }
        }
    }
}
