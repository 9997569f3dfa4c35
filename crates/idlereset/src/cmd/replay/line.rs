//! Plain line mode: the exercise as text, one answer per input line. Used when stdin or stdout
//! is not a terminal (pipes, CI, screen readers) and, without prompts, for `--answers`.

use std::io::{self, BufRead, Write};

use idlereset_core::replay::session::{Current, Session, Step};

use idlereset_core::replay::caveat::effective_action;

use super::live::Live;

/// Play from `input` lines (a letter per decision round; `q` stops). Input that ends early
/// leaves the session unfinished (the transcript says `complete: false`).
pub fn play(
    session: &mut Session<'_>,
    mut input: impl BufRead,
    out: &mut dyn Write,
    mut live: Option<&mut Live>,
) -> anyhow::Result<()> {
    intro(session, out)?;
    loop {
        match session.current() {
            Current::Finished => return Ok(()),
            Current::Checklist(i) => {
                round(session, i, out)?;
                acknowledge(session);
            }
            Current::Decision(i) => {
                round(session, i, out)?;
                let letters: String = session.scenario().rounds[i]
                    .choices()
                    .iter()
                    .map(|c| c.letter)
                    .collect();
                loop {
                    write!(out, "Your choice ({letters}, q to stop): ")?;
                    out.flush()?;
                    let mut buf = String::new();
                    if input.read_line(&mut buf)? == 0 {
                        writeln!(
                            out,
                            "\n(input ended before round {} was answered)",
                            session.scenario().rounds[i].number
                        )?;
                        return Ok(());
                    }
                    let answer = buf.trim();
                    if answer.eq_ignore_ascii_case("q") {
                        writeln!(out, "(stopped)")?;
                        return Ok(());
                    }
                    let mut chars = answer.chars();
                    let letter = match (chars.next(), chars.next()) {
                        (Some(c), None) => c,
                        _ => {
                            writeln!(out, "Type one letter: {letters}.")?;
                            continue;
                        }
                    };
                    match session.answer(letter) {
                        Ok(step) => {
                            outcome(session, &step, out)?;
                            live_step(session, &step, live.as_deref_mut(), out)?;
                            break;
                        }
                        Err(e) => writeln!(out, "{e}")?,
                    }
                }
            }
        }
    }
}

/// Play with the given letters (already checked to be one per decision round), narrating.
pub fn play_scripted(
    session: &mut Session<'_>,
    letters: &[char],
    out: &mut dyn Write,
    mut live: Option<&mut Live>,
) -> anyhow::Result<()> {
    intro(session, out)?;
    let mut letters = letters.iter();
    loop {
        match session.current() {
            Current::Finished => return Ok(()),
            Current::Checklist(i) => {
                round(session, i, out)?;
                acknowledge(session);
            }
            Current::Decision(i) => {
                round(session, i, out)?;
                let Some(&letter) = letters.next() else {
                    anyhow::bail!("not enough answers")
                };
                let step = session
                    .answer(letter)
                    .map_err(|e| anyhow::anyhow!("--answers: {e}"))?;
                writeln!(out, "Your choice: {}", step.letter)?;
                outcome(session, &step, out)?;
                live_step(session, &step, live.as_deref_mut(), out)?;
            }
        }
    }
}

/// In live mode, apply the choice's system change to the lab and record the lab's verdict.
fn live_step(
    session: &mut Session<'_>,
    step: &Step,
    live: Option<&mut Live>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let Some(live) = live else { return Ok(()) };
    let action = effective_action(&step.action, &step.result);
    if let Some(verdict) = live.apply_and_verify(&action, out)? {
        session.verify_last(verdict);
    }
    Ok(())
}

fn acknowledge(session: &mut Session<'_>) {
    // current() said checklist, so this cannot fail; ignore rather than unwrap
    let _ = session.acknowledge();
}

fn intro(session: &Session<'_>, out: &mut dyn Write) -> io::Result<()> {
    let s = session.scenario();
    writeln!(out, "Incident replay: {}", s.title)?;
    for line in &s.setup {
        writeln!(out, "  {line}")?;
    }
    Ok(())
}

fn round(session: &Session<'_>, i: usize, out: &mut dyn Write) -> io::Result<()> {
    let s = session.scenario();
    let r = &s.rounds[i];
    let decisions = s.decision_rounds().count();
    writeln!(
        out,
        "\n== Round {}: {} == (clock: T+{} min, {decisions} decisions in all)",
        r.number,
        r.title,
        session.elapsed_minutes()
    )?;
    if let Some(cue) = &r.cue {
        writeln!(out, "Pressure cue: \"{cue}\"")?;
    }
    if let Some(see) = &r.see {
        writeln!(out, "What you see: {see}")?;
    }
    match &r.kind {
        idlereset_core::replay::RoundKind::Decision { choices } => {
            for c in choices {
                writeln!(out, "  {}) {}", c.letter, c.text)?;
            }
        }
        idlereset_core::replay::RoundKind::Checklist { actions } => {
            writeln!(out, "Actions:")?;
            for (k, a) in actions.iter().enumerate() {
                writeln!(out, "  {}. {a}", k + 1)?;
            }
        }
    }
    Ok(())
}

fn outcome(session: &Session<'_>, step: &Step, out: &mut dyn Write) -> io::Result<()> {
    let verdict = if step.recommended {
        "recommended".to_string()
    } else {
        let rec = session.scenario().rounds[step.round_index]
            .recommended()
            .map(|c| c.letter)
            .unwrap_or('?');
        format!("not the recommended choice ({rec})")
    };
    writeln!(
        out,
        "-> {}: {verdict}, +{} min (clock: T+{} min)",
        step.letter,
        step.minutes,
        session.elapsed_minutes()
    )?;
    if !step.result.is_empty() {
        writeln!(out, "   {}", step.result.replace('\n', "\n   "))?;
    }
    if let Some(e) = &step.evidence {
        writeln!(out, "   Measured: {e}")?;
    }
    if let Some(c) = &step.caveat {
        writeln!(out, "   Caveat: {c}")?;
    }
    if step.action.changes_system() {
        writeln!(out, "   System change: {}", step.action.describe())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use idlereset_core::replay::builtin;

    #[test]
    fn line_mode_reprompts_on_bad_input_and_finishes() {
        let s = builtin::get("firewall-900").unwrap();
        let mut session = Session::new(&s).unwrap();
        let input = "\nZ\nbb\nb\nC\nb\nC\n";
        let mut out = Vec::new();
        play(&mut session, input.as_bytes(), &mut out, None).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(session.is_finished(), "{text}");
        assert_eq!(session.transcript().total_minutes, s.optimal_minutes);
        assert!(text.contains("round 1 has no choice 'Z'"), "{text}");
        assert!(text.contains("Type one letter: ABCD."), "{text}");
        assert!(text.contains("== Round 5: Close the incident =="), "{text}");
    }

    #[test]
    fn line_mode_stops_at_end_of_input() {
        let s = builtin::get("firewall-900").unwrap();
        let mut session = Session::new(&s).unwrap();
        let mut out = Vec::new();
        play(&mut session, "A\n".as_bytes(), &mut out, None).unwrap();
        let t = session.transcript();
        assert!(!t.complete);
        assert_eq!(t.path, "A");
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains("input ended before round 2")
        );
    }
}
