//! Reads the incident-replay markdown format of the first seed, so any replay written in that
//! format plays as it is.
//!
//! The format, line by line (markers are case-insensitive; `#` heading marks, `**` bold and
//! `¶` pilcrows after headings are ignored):
//!
//! ```text
//! Incident Replay: <title>
//! Setup
//! - System context: …            (setup lines)
//! Round 1: <title>
//! [Pressure cue: "…"]
//! What you see: …                 (may continue on the next lines)
//! Choose your action: - A) … - B) … - C) … - D) …   (inline, or one "- A) …" per line)
//! If you chose B (recommended):
//! [Result: …]                      (may span lines up to the closing bracket)
//! If you chose A:
//! [Result: …]
//! Round 4: <title>
//! Actions: 1. … 2. … 3. …          (a checklist round: read, not chosen)
//! Damage Report
//! - Optimal resolution time: 12 minutes
//! - If every wrong choice was made: 60 minutes + additional damage
//! Cross-References
//! - Primer: …
//! ```
//!
//! Hand-rolled rather than built on a CommonMark parser: the seed is not CommonMark (choices
//! sit inline on one line, headings are plain lines with pilcrows), and what matters is the
//! line-oriented markers plus line numbers for every error. The parser never panics: slices
//! are only cut at ASCII marker positions, and every lookup is checked.

use super::caveat;
use super::error::LoadError;
use super::model::{self, Action, Choice, Round, RoundKind, Scenario};
use super::scoring::Costs;

/// Parse a markdown replay. `file` names the source in errors; `id` becomes the scenario id.
pub fn parse(text: &str, file: &str, id: &str) -> Result<Scenario, LoadError> {
    let mut p = Parser {
        file,
        title: None,
        setup: Vec::new(),
        rounds: Vec::new(),
        section: Section::Preamble,
        ..Parser::default()
    };
    for (i, raw) in text.lines().enumerate() {
        p.line(i + 1, raw)?;
    }
    p.finish(id)
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Section {
    #[default]
    Preamble,
    Setup,
    Round,
    Damage,
    References,
}

/// Which text field an unmarked continuation line extends.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Last {
    #[default]
    None,
    See,
    Choice,
    Outcome,
    Action,
}

#[derive(Debug, Default)]
struct RawRound {
    number: u32,
    title: String,
    line: usize,
    cue: Option<String>,
    see: Option<String>,
    choices: Vec<(char, String)>,
    /// (letter, recommended, result, line of "If you chose")
    outcomes: Vec<(char, bool, String, usize)>,
    actions: Vec<String>,
}

#[derive(Debug, Default)]
struct Parser<'f> {
    file: &'f str,
    title: Option<String>,
    setup: Vec<String>,
    rounds: Vec<RawRound>,
    section: Section,
    last: Last,
    /// An open `[Result: …` or `[Pressure cue: …` waiting for its `]`: (is_cue, start line).
    open: Option<(bool, usize)>,
    optimal: Option<(u32, usize)>,
    worst: Option<(u32, Option<String>, usize)>,
    damage_line: usize,
    damage_notes: Vec<String>,
    references: Vec<String>,
}

/// The line without pilcrows, `**`, heading marks and trailing spaces.
fn clean(raw: &str) -> String {
    let s: String = raw.replace('\u{b6}', "").replace("**", "");
    let t = s.trim();
    t.trim_start_matches('#').trim().to_string()
}

/// `s` starts with `prefix`, ignoring ASCII case; returns the rest.
fn strip_ci<'s>(s: &'s str, prefix: &str) -> Option<&'s str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// A heading with optional trailing colon, compared case-insensitively.
fn is_heading(t: &str, names: &[&str]) -> bool {
    let t = t.trim_end_matches(':').trim();
    names.iter().any(|n| t.eq_ignore_ascii_case(n))
}

impl Parser<'_> {
    fn err(&self, line: usize, message: impl Into<String>) -> LoadError {
        LoadError::at(self.file, line, 1, message)
    }

    fn line(&mut self, ln: usize, raw: &str) -> Result<(), LoadError> {
        let t = clean(raw);
        if let Some((is_cue, start)) = self.open.filter(|_| !t.is_empty()) {
            if marker_starts(&t) {
                let what = if is_cue {
                    "[Pressure cue: …"
                } else {
                    "[Result: …"
                };
                return Err(self.err(
                    start,
                    format!("{what} is not closed with ']' before line {ln}"),
                ));
            }
            let (body, closed) = match t.strip_suffix(']') {
                Some(b) => (b, true),
                None => (t.as_str(), false),
            };
            self.append_open(is_cue, body);
            if closed {
                self.open = None;
            }
            return Ok(());
        }
        if t.is_empty() {
            self.last = Last::None;
            return Ok(());
        }
        if is_heading(&t, &["Setup"]) {
            self.section = Section::Setup;
            return Ok(());
        }
        if is_heading(&t, &["Damage Report"]) {
            self.section = Section::Damage;
            self.damage_line = ln;
            return Ok(());
        }
        if is_heading(&t, &["Cross-References", "Cross References", "References"]) {
            self.section = Section::References;
            return Ok(());
        }
        if let Some(rest) = strip_ci(&t, "Round ")
            && let Some(round) = self.round_heading(ln, rest)?
        {
            self.rounds.push(round);
            self.section = Section::Round;
            self.last = Last::None;
            return Ok(());
        }
        match self.section {
            Section::Preamble => {
                if self.title.is_none() {
                    let title = strip_ci(&t, "Incident Replay:").unwrap_or(&t).trim();
                    self.title = Some(title.to_string());
                }
                Ok(())
            }
            Section::Setup => {
                self.setup.push(bullet(&t).to_string());
                Ok(())
            }
            Section::Round => self.round_line(ln, &t),
            Section::Damage => self.damage(ln, bullet(&t)),
            Section::References => {
                self.references.push(bullet(&t).to_string());
                Ok(())
            }
        }
    }

    /// `Round N: Title` (also `Round N - Title`, `Round N`); `None` if this is prose.
    fn round_heading(&self, ln: usize, rest: &str) -> Result<Option<RawRound>, LoadError> {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if digits.is_empty() {
            return Ok(None);
        }
        let after = rest[digits.len()..].trim();
        let title = if after.is_empty() {
            ""
        } else if let Some(t) = after.strip_prefix(':').or_else(|| after.strip_prefix('-')) {
            t.trim()
        } else {
            return Ok(None);
        };
        let number: u32 = digits
            .parse()
            .map_err(|_| self.err(ln, format!("round number {digits} is too large")))?;
        if let Some(prev) = self.rounds.last()
            && number <= prev.number
        {
            return Err(self.err(
                ln,
                format!(
                    "round {number} follows round {}: rounds must be numbered upwards",
                    prev.number
                ),
            ));
        }
        Ok(Some(RawRound {
            number,
            title: title.to_string(),
            line: ln,
            ..RawRound::default()
        }))
    }

    fn current(&mut self, ln: usize) -> Result<&mut RawRound, LoadError> {
        let file = self.file;
        self.rounds.last_mut().ok_or_else(|| {
            LoadError::at(
                file,
                ln,
                1,
                "round content before any 'Round N: Title' line",
            )
        })
    }

    fn round_line(&mut self, ln: usize, t: &str) -> Result<(), LoadError> {
        if let Some(rest) = strip_ci(t, "[Pressure cue:") {
            return self.bracketed(ln, true, rest);
        }
        if let Some(rest) = strip_ci(t, "[Result:") {
            if self.current(ln)?.outcomes.is_empty() {
                return Err(self.err(
                    ln,
                    "[Result: …] without an 'If you chose X:' line before it",
                ));
            }
            return self.bracketed(ln, false, rest);
        }
        if let Some(rest) = strip_ci(t, "What you see:") {
            self.current(ln)?.see = Some(rest.trim().to_string());
            self.last = Last::See;
            return Ok(());
        }
        if let Some(rest) = strip_ci(t, "Choose your action:") {
            let found = split_choices(rest.trim());
            self.add_choices(ln, found)?;
            self.last = Last::Choice;
            return Ok(());
        }
        if let Some(rest) = strip_ci(t, "Actions:") {
            let items = split_numbered(rest.trim());
            self.current(ln)?.actions.extend(items);
            self.last = Last::Action;
            return Ok(());
        }
        if let Some(rest) = strip_ci(t, "If you chose ") {
            return self.outcome_heading(ln, rest);
        }
        // continuation lines
        match self.last {
            Last::Choice => {
                let found = split_choices(t);
                if found.is_empty() {
                    append(self.current(ln)?.choices.last_mut().map(|c| &mut c.1), t);
                } else {
                    self.add_choices(ln, found)?;
                }
            }
            Last::Action => {
                let items = split_numbered(t);
                let r = self.current(ln)?;
                if items.len() == 1 && !starts_numbered(t) && !t.starts_with('-') {
                    append(r.actions.last_mut(), t);
                } else {
                    r.actions.extend(items);
                }
            }
            Last::See => {
                let r = self.current(ln)?;
                append(r.see.as_mut(), t);
            }
            Last::Outcome => {
                let r = self.current(ln)?;
                append(r.outcomes.last_mut().map(|o| &mut o.2), t);
            }
            Last::None => {
                // prose between markers: extend "what you see" if the round has nothing else yet
                let r = self.current(ln)?;
                if r.choices.is_empty() && r.actions.is_empty() {
                    match r.see.as_mut() {
                        Some(see) => append(Some(see), t),
                        None => r.see = Some(t.to_string()),
                    }
                }
            }
        }
        Ok(())
    }

    fn add_choices(&mut self, ln: usize, found: Vec<(char, String)>) -> Result<(), LoadError> {
        let file = self.file;
        let r = self.current(ln)?;
        for (letter, text) in found {
            if r.choices.iter().any(|(l, _)| *l == letter) {
                return Err(LoadError::at(
                    file,
                    ln,
                    1,
                    format!("round {}: choice {letter} appears twice", r.number),
                ));
            }
            r.choices.push((letter, text));
        }
        Ok(())
    }

    /// `If you chose B (recommended):` / `If you chose A:`.
    fn outcome_heading(&mut self, ln: usize, rest: &str) -> Result<(), LoadError> {
        let rest = rest.trim().trim_end_matches(':').trim();
        let mut chars = rest.chars();
        let letter = chars
            .next()
            .filter(char::is_ascii_alphabetic)
            .map(|c| c.to_ascii_uppercase());
        let tail = chars.as_str().trim();
        let recommended = tail.to_ascii_lowercase().contains("recommended");
        let Some(letter) =
            letter.filter(|_| tail.is_empty() || tail.starts_with('(') || tail.starts_with(')'))
        else {
            return Err(self.err(
                ln,
                format!("expected 'If you chose X:' with a choice letter, found {rest:?}"),
            ));
        };
        let file = self.file;
        let r = self.current(ln)?;
        if r.outcomes.iter().any(|o| o.0 == letter) {
            return Err(LoadError::at(
                file,
                ln,
                1,
                format!("round {}: outcome of choice {letter} given twice", r.number),
            ));
        }
        r.outcomes.push((letter, recommended, String::new(), ln));
        self.last = Last::Outcome;
        Ok(())
    }

    /// The rest of a `[Pressure cue:` / `[Result:` line; opens a multi-line block if no `]`.
    fn bracketed(&mut self, ln: usize, is_cue: bool, rest: &str) -> Result<(), LoadError> {
        self.current(ln)?;
        let rest = rest.trim();
        let (body, closed) = match rest.strip_suffix(']') {
            Some(b) => (b, true),
            None => (rest, false),
        };
        if is_cue && let Some(r) = self.rounds.last_mut() {
            r.cue = Some(String::new());
        }
        self.append_open(is_cue, body);
        self.last = if is_cue { Last::None } else { Last::Outcome };
        if !closed {
            self.open = Some((is_cue, ln));
        }
        Ok(())
    }

    fn append_open(&mut self, is_cue: bool, body: &str) {
        let Some(r) = self.rounds.last_mut() else {
            return;
        };
        let target = if is_cue {
            r.cue.as_mut()
        } else {
            r.outcomes.last_mut().map(|o| &mut o.2)
        };
        let body = if is_cue {
            body.trim().trim_matches('"').trim()
        } else {
            body.trim()
        };
        if let Some(t) = target {
            if t.is_empty() {
                t.push_str(body);
            } else {
                t.push('\n');
                t.push_str(body);
            }
        }
    }

    fn damage(&mut self, ln: usize, t: &str) -> Result<(), LoadError> {
        let lower = t.to_ascii_lowercase();
        if lower.starts_with("optimal") {
            let value = after_colon(t);
            let (minutes, _) = parse_minutes(value).ok_or_else(|| {
                self.err(
                    ln,
                    format!("optimal resolution time {value:?} is not a time like '12 minutes'"),
                )
            })?;
            self.optimal = Some((minutes, ln));
        } else if lower.contains("every wrong choice") || lower.starts_with("worst") {
            let value = after_colon(t);
            let (minutes, note) = parse_minutes(value).ok_or_else(|| {
                self.err(
                    ln,
                    format!("worst resolution time {value:?} is not a time like '60 minutes'"),
                )
            })?;
            self.worst = Some((minutes, note, ln));
        } else {
            self.damage_notes.push(t.to_string());
        }
        Ok(())
    }

    fn finish(self, id: &str) -> Result<Scenario, LoadError> {
        if let Some((is_cue, start)) = self.open {
            let what = if is_cue {
                "[Pressure cue: …"
            } else {
                "[Result: …"
            };
            return Err(self.err(
                start,
                format!("{what} is not closed with ']' before the end of the file"),
            ));
        }
        let Some((optimal, _)) = self.optimal else {
            return Err(self.err(
                self.damage_line,
                "no 'Optimal resolution time: N minutes' line (expected under 'Damage Report')",
            ));
        };
        let Some((worst, worst_note, worst_line)) = self.worst.clone() else {
            return Err(self.err(self.damage_line, "no 'If every wrong choice was made: N minutes' line (expected under 'Damage Report')"));
        };
        let mut rounds = Vec::new();
        for raw in &self.rounds {
            rounds.push(self.build_round(raw)?);
        }
        let title = self.title.clone().unwrap_or_else(|| id.to_string());
        let mut scenario = Scenario {
            id: id.to_string(),
            summary: title.clone(),
            title,
            setup: self.setup.clone(),
            rounds,
            optimal_minutes: optimal,
            worst_minutes: worst,
            worst_note,
            damage_notes: self.damage_notes.clone(),
            checklist: Vec::new(),
            references: self.references.clone(),
            evidence: Vec::new(),
            origin: self.file.to_string(),
        };
        model::check(&scenario).map_err(|(msg, line)| self.err(line, msg))?;
        Costs::compute(&scenario).map_err(|e| self.err(worst_line, e.to_string()))?;
        caveat::annotate(&mut scenario);
        Ok(scenario)
    }

    fn build_round(&self, raw: &RawRound) -> Result<Round, LoadError> {
        let kind = if !raw.choices.is_empty() {
            for (letter, _, _, line) in &raw.outcomes {
                if !raw.choices.iter().any(|(l, _)| l == letter) {
                    return Err(self.err(
                        *line,
                        format!(
                            "round {}: outcome for choice {letter}, which the round does not offer",
                            raw.number
                        ),
                    ));
                }
            }
            let choices = raw
                .choices
                .iter()
                .map(|(letter, text)| {
                    let outcome = raw.outcomes.iter().find(|o| o.0 == *letter);
                    Choice {
                        letter: *letter,
                        text: text.clone(),
                        recommended: outcome.is_some_and(|o| o.1),
                        result: outcome.map(|o| o.2.clone()).unwrap_or_default(),
                        minutes: None,
                        action: Action::None,
                        covers: Vec::new(),
                        evidence: None,
                        caveat: None,
                    }
                })
                .collect();
            RoundKind::Decision { choices }
        } else if !raw.actions.is_empty() {
            RoundKind::Checklist {
                actions: raw.actions.clone(),
            }
        } else {
            return Err(self.err(
                raw.line,
                format!(
                    "round {} has neither 'Choose your action:' choices nor 'Actions:'",
                    raw.number
                ),
            ));
        };
        Ok(Round {
            number: raw.number,
            title: raw.title.clone(),
            cue: raw.cue.clone(),
            see: raw.see.clone(),
            kind,
            line: raw.line,
        })
    }
}

/// Lines that start a new element and therefore cannot continue an open bracket.
fn marker_starts(t: &str) -> bool {
    [
        "If you chose ",
        "[Result:",
        "[Pressure cue:",
        "Choose your action:",
        "What you see:",
        "Damage Report",
    ]
    .iter()
    .any(|m| strip_ci(t, m).is_some())
        || strip_ci(t, "Round ").is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
}

fn append(target: Option<&mut String>, t: &str) {
    if let Some(s) = target {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(t);
    }
}

fn bullet(t: &str) -> &str {
    t.strip_prefix("- ")
        .or_else(|| t.strip_prefix("* "))
        .unwrap_or(t)
        .trim()
}

fn after_colon(t: &str) -> &str {
    t.split_once(':').map_or(t, |(_, v)| v).trim()
}

/// `12 minutes`, `1 hour`, `1 h 30 min`, `60 minutes + additional damage` -> minutes and the
/// rest as a note.
fn parse_minutes(text: &str) -> Option<(u32, Option<String>)> {
    let mut total: u64 = 0;
    let mut rest = text.trim();
    let mut any = false;
    loop {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if digits.is_empty() {
            break;
        }
        let value: u64 = digits.parse().ok()?;
        let after = rest[digits.len()..].trim_start();
        let unit: String = after
            .chars()
            .take_while(char::is_ascii_alphabetic)
            .collect();
        let factor = match unit.to_ascii_lowercase().as_str() {
            "m" | "min" | "mins" | "minute" | "minutes" => 1,
            "h" | "hr" | "hrs" | "hour" | "hours" => 60,
            _ => return None,
        };
        total = total.checked_add(value.checked_mul(factor)?)?;
        any = true;
        rest = after[unit.len()..].trim_start();
    }
    if !any {
        return None;
    }
    let note = (!rest.is_empty()).then(|| rest.to_string());
    Some((u32::try_from(total).ok()?, note))
}

/// Split `- A) one - B) two` (or `A) one B) two`, or a single `- A) one`) into choices. A
/// marker is a capital letter and `)` at the start or after a space, optionally after `- `;
/// letters must go up and all markers must agree on the dash, so a stray `X)` in the text
/// stays text.
fn split_choices(s: &str) -> Vec<(char, String)> {
    let b = s.as_bytes();
    let mut marks: Vec<(usize, usize, char)> = Vec::new(); // (start of marker, start of text, letter)
    let mut dash_style: Option<bool> = None; // all markers use "- X)" or all use "X)"
    let mut i = 0;
    while i < b.len() {
        let at_boundary = i == 0 || b[i - 1] == b' ';
        if at_boundary {
            let (dash, j) = if b[i] == b'-' && b.get(i + 1) == Some(&b' ') {
                (true, i + 2)
            } else {
                (false, i)
            };
            let letter = b.get(j).copied().filter(u8::is_ascii_uppercase);
            let paren = b.get(j + 1) == Some(&b')');
            let space_after = b.get(j + 2).is_none_or(|c| *c == b' ');
            if let (Some(l), true, true) = (letter, paren, space_after) {
                let l = char::from(l);
                let increasing = marks.last().is_none_or(|m| l > m.2);
                let same_style = dash_style.is_none_or(|d| d == dash);
                if increasing && same_style {
                    dash_style = Some(dash);
                    marks.push((i, (j + 2).min(b.len()), l));
                    i = j + 2;
                    continue;
                }
            }
        }
        i += 1;
    }
    if marks.first().is_some_and(|m| m.0 != 0) {
        return Vec::new(); // text before the first marker: not a choice line
    }
    marks
        .iter()
        .enumerate()
        .map(|(k, m)| {
            let end = marks.get(k + 1).map_or(s.len(), |n| n.0);
            (m.2, s.get(m.1..end).unwrap_or("").trim().to_string())
        })
        .collect()
}

fn starts_numbered(t: &str) -> bool {
    let d = t.chars().take_while(char::is_ascii_digit).count();
    d > 0 && t[d..].starts_with(". ")
}

/// Split `1. one 2. two` (numbers must count up by one) or `- one` into items.
fn split_numbered(s: &str) -> Vec<String> {
    let s = bullet(s);
    let b = s.as_bytes();
    let mut marks: Vec<(usize, usize)> = Vec::new(); // (marker start, text start)
    let mut expected = 1u64;
    let mut i = 0;
    while i < b.len() {
        if i == 0 || b[i - 1] == b' ' {
            let d = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
            if d > 0
                && d < 6
                && b.get(i + d) == Some(&b'.')
                && b.get(i + d + 1).is_none_or(|c| *c == b' ')
            {
                let n: u64 = s.get(i..i + d).and_then(|x| x.parse().ok()).unwrap_or(0);
                if n == expected || (marks.is_empty() && i == 0) {
                    expected = n + 1;
                    marks.push((i, (i + d + 2).min(b.len())));
                    i += d + 1;
                    continue;
                }
            }
        }
        i += 1;
    }
    if marks.first().is_none_or(|m| m.0 != 0) {
        return if s.is_empty() {
            Vec::new()
        } else {
            vec![s.to_string()]
        };
    }
    marks
        .iter()
        .enumerate()
        .map(|(k, m)| {
            let end = marks.get(k + 1).map_or(s.len(), |n| n.0);
            s.get(m.1..end).unwrap_or("").trim().to_string()
        })
        .filter(|x| !x.is_empty())
        .collect()
}

#[cfg(test)]
mod tests;
