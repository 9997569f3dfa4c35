//! The interactive terminal UI (ratatui + crossterm): the cue, what you see, the choices, the
//! incident clock and your own wall clock, the outcome, and a progress strip of the rounds.
//!
//! Rendering is a pure function of [`App`] and the elapsed wall time ([`render`]), and key
//! handling is a pure state transition ([`App::key`]), so both are tested without a terminal:
//! the snapshot tests draw frames on ratatui's `TestBackend`. Only [`play`] touches the
//! terminal (raw mode, alternate screen, restored on every exit path including panics by
//! `ratatui::init`).

use std::time::{Duration, Instant};

use idlereset_core::replay::RoundKind;
use idlereset_core::replay::report::verdict;
use idlereset_core::replay::session::{Current, Session, Step};
use ratatui::Frame;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Paragraph, Wrap};

/// Which screen the UI shows.
#[derive(Debug, Clone, PartialEq)]
pub enum Screen {
    /// The setup, before round 1.
    Intro,
    /// The current round (decision or checklist).
    Round,
    /// The outcome of the answer just given.
    Outcome(Step),
    /// The damage report.
    Report,
}

/// UI state: the session plus what the UI adds (screen, cursor, quit flag).
#[derive(Debug, Clone)]
pub struct App<'a> {
    pub session: Session<'a>,
    pub screen: Screen,
    /// Highlighted choice of the current decision round.
    pub cursor: usize,
    pub quit: bool,
}

/// A key, reduced to what the UI uses (so tests need no crossterm types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Up,
    Down,
    Enter,
    Quit,
    Char(char),
}

impl<'a> App<'a> {
    pub fn new(session: Session<'a>) -> App<'a> {
        App {
            session,
            screen: Screen::Intro,
            cursor: 0,
            quit: false,
        }
    }

    /// Apply one key press.
    pub fn key(&mut self, key: Key) {
        if key == Key::Quit {
            self.quit = true;
            return;
        }
        match self.screen.clone() {
            Screen::Intro => {
                if key == Key::Enter {
                    self.screen = Screen::Round;
                }
            }
            Screen::Round => self.round_key(key),
            Screen::Outcome(_) => {
                if key == Key::Enter || key == Key::Char(' ') {
                    self.cursor = 0;
                    self.screen = if self.session.is_finished() {
                        Screen::Report
                    } else {
                        Screen::Round
                    };
                }
            }
            Screen::Report => {
                if key == Key::Enter {
                    self.quit = true;
                }
            }
        }
    }

    fn round_key(&mut self, key: Key) {
        match self.session.current() {
            Current::Finished => self.screen = Screen::Report,
            Current::Checklist(_) => {
                if key == Key::Enter || key == Key::Char(' ') {
                    let _ = self.session.acknowledge();
                    if self.session.is_finished() {
                        self.screen = Screen::Report;
                    }
                }
            }
            Current::Decision(i) => {
                let choices = self.session.scenario().rounds[i].choices();
                let n = choices.len();
                let letter = match key {
                    Key::Up => {
                        self.cursor = (self.cursor + n - 1) % n.max(1);
                        None
                    }
                    Key::Down => {
                        self.cursor = (self.cursor + 1) % n.max(1);
                        None
                    }
                    Key::Enter => choices.get(self.cursor).map(|c| c.letter),
                    Key::Char(c) => Some(c),
                    Key::Quit => None,
                };
                if let Some(letter) = letter
                    && let Ok(step) = self.session.answer(letter)
                {
                    self.screen = Screen::Outcome(step);
                }
            }
        }
    }
}

/// Run the UI on the real terminal until the player finishes or quits.
pub fn play(session: &mut Session<'_>) -> anyhow::Result<()> {
    let mut app = App::new(session.clone());
    let mut terminal = ratatui::init();
    let started = Instant::now();
    let result = (|| -> anyhow::Result<()> {
        while !app.quit {
            terminal.draw(|f| render(f, &app, started.elapsed()))?;
            if !event::poll(Duration::from_millis(250))? {
                continue;
            }
            if let Event::Key(k) = event::read()? {
                if k.kind != KeyEventKind::Press {
                    continue;
                }
                let key = match k.code {
                    KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => Key::Quit,
                    KeyCode::Esc | KeyCode::Char('q') => Key::Quit,
                    KeyCode::Up => Key::Up,
                    KeyCode::Down => Key::Down,
                    KeyCode::Enter => Key::Enter,
                    KeyCode::Char(c) => Key::Char(c),
                    _ => continue,
                };
                app.key(key);
            }
        }
        Ok(())
    })();
    ratatui::restore();
    *session = app.session;
    result
}

/// Draw the whole UI. `wall` is the real time since the exercise started.
pub fn render(frame: &mut Frame, app: &App<'_>, wall: Duration) {
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Min(5),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    render_header(frame, header, app, wall);
    match &app.screen {
        Screen::Intro => render_intro(frame, body, app),
        Screen::Round => render_round(frame, body, app),
        Screen::Outcome(step) => render_outcome(frame, body, app, step),
        Screen::Report => render_report(frame, body, app),
    }
    let help = match (&app.screen, app.session.current()) {
        (Screen::Intro, _) => "Enter: start   q: quit",
        (Screen::Round, Current::Decision(_)) => "↑/↓ + Enter or a letter: choose   q: quit",
        (Screen::Round, _) | (Screen::Outcome(_), _) => "Enter: continue   q: quit",
        (Screen::Report, _) => "Enter / q: close (the report is printed again on exit)",
    };
    frame.render_widget(
        Paragraph::new(help).style(Style::new().fg(Color::DarkGray)),
        footer,
    );
}

fn render_header(frame: &mut Frame, area: Rect, app: &App<'_>, wall: Duration) {
    let s = app.session.scenario();
    let secs = wall.as_secs();
    let clock = Line::from(vec![
        Span::styled(
            format!("Incident clock T+{} min", app.session.elapsed_minutes()),
            Style::new().bold(),
        ),
        Span::raw(format!(
            "   optimal {} min, worst {} min",
            s.optimal_minutes, s.worst_minutes
        )),
        Span::styled(
            format!("   you: {:02}:{:02}", secs / 60, secs % 60),
            Style::new().fg(Color::DarkGray),
        ),
    ]);
    let block =
        Block::bordered().title(Line::from(format!(" Incident replay: {} ", s.title)).bold());
    frame.render_widget(
        Paragraph::new(vec![progress_strip(app), clock]).block(block),
        area,
    );
}

/// One cell per round: answered ones with their letter (green if recommended, red if not),
/// the current one reversed, later ones dim.
fn progress_strip(app: &App<'_>) -> Line<'static> {
    let s = app.session.scenario();
    let records = app.session.records();
    let mut spans = vec![Span::raw("Rounds ")];
    for (i, r) in s.rounds.iter().enumerate() {
        let span = match records.get(i) {
            Some(rec) => match rec.choice {
                Some(l) if rec.recommended => Span::styled(
                    format!(" {} {l} ✓ ", r.number),
                    Style::new().fg(Color::Green),
                ),
                Some(l) => {
                    Span::styled(format!(" {} {l} ✗ ", r.number), Style::new().fg(Color::Red))
                }
                None => Span::styled(format!(" {} ✓ ", r.number), Style::new().fg(Color::Green)),
            },
            None if i == app.session.position() && app.screen != Screen::Intro => Span::styled(
                format!(" {} ▶ ", r.number),
                Style::new().add_modifier(Modifier::REVERSED),
            ),
            None => Span::styled(
                format!(" {} · ", r.number),
                Style::new().fg(Color::DarkGray),
            ),
        };
        spans.push(span);
    }
    Line::from(spans)
}

fn render_intro(frame: &mut Frame, area: Rect, app: &App<'_>) {
    let s = app.session.scenario();
    let mut lines: Vec<Line> = s
        .setup
        .iter()
        .map(|l| Line::from(format!("• {l}")))
        .collect();
    lines.push(Line::raw(""));
    lines.push(Line::from(format!(
        "{} rounds. Each choice costs incident time; the best path takes {} min.",
        s.decision_rounds().count(),
        s.optimal_minutes
    )));
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(" Setup ")),
        area,
    );
}

fn render_round(frame: &mut Frame, area: Rect, app: &App<'_>) {
    let s = app.session.scenario();
    let Some(r) = s.rounds.get(app.session.position()) else {
        return render_report(frame, area, app);
    };
    let cue = r.cue.clone().unwrap_or_default();
    let see = r.see.clone().unwrap_or_default();
    let inner = area.width.saturating_sub(2);
    let [cue_area, see_area, list_area] = Layout::vertical([
        Constraint::Length(boxed_height(&format!("\"{cue}\""), inner)),
        Constraint::Length(boxed_height(&see, inner)),
        Constraint::Min(3),
    ])
    .areas(area);
    let title = format!(" Round {}: {} ", r.number, r.title);
    if !cue.is_empty() {
        let p = Paragraph::new(format!("\"{cue}\""))
            .wrap(Wrap { trim: true })
            .style(Style::new().fg(Color::Yellow))
            .block(Block::bordered().title(format!("{title}— pressure cue ")));
        frame.render_widget(p, cue_area);
    }
    if !see.is_empty() {
        let p = Paragraph::new(see)
            .wrap(Wrap { trim: true })
            .block(Block::bordered().title(" What you see "));
        frame.render_widget(p, see_area);
    }
    let lines: Vec<Line> = match &r.kind {
        RoundKind::Decision { choices } => choices
            .iter()
            .enumerate()
            .map(|(k, c)| {
                let text = format!(
                    "{} {}) {}",
                    if k == app.cursor { "▶" } else { " " },
                    c.letter,
                    c.text
                );
                if k == app.cursor {
                    Line::styled(text, Style::new().add_modifier(Modifier::REVERSED))
                } else {
                    Line::raw(text)
                }
            })
            .collect(),
        RoundKind::Checklist { actions } => actions
            .iter()
            .enumerate()
            .map(|(k, a)| Line::raw(format!("{}. {a}", k + 1)))
            .collect(),
    };
    let list_title = if r.is_decision() {
        " Choose your action "
    } else {
        " Actions (nothing to choose) "
    };
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(list_title)),
        list_area,
    );
}

/// Height of a bordered, word-wrapped paragraph of `text` in `inner` columns (0 when empty).
/// An estimate that errs on the generous side: word wrap can need a line more than the
/// character count suggests.
fn boxed_height(text: &str, inner: u16) -> u16 {
    let t = text.trim_matches('"');
    if t.trim().is_empty() {
        return 0;
    }
    let width = usize::from(inner.max(1));
    let lines: usize = t
        .lines()
        .map(|l| l.chars().count().div_ceil(width).max(1))
        .sum();
    let slack = usize::from(lines > 1 || t.chars().count() * 10 > width * 9);
    u16::try_from(lines + slack + 2).unwrap_or(u16::MAX)
}

fn render_outcome(frame: &mut Frame, area: Rect, app: &App<'_>, step: &Step) {
    let s = app.session.scenario();
    let Some(r) = s.rounds.get(step.round_index) else {
        return;
    };
    let chosen = r
        .choice(step.letter)
        .map(|c| c.text.clone())
        .unwrap_or_default();
    let (verdict, color) = if step.recommended {
        ("recommended".to_string(), Color::Green)
    } else {
        let rec = r
            .recommended()
            .map(|c| format!("{}) {}", c.letter, c.text))
            .unwrap_or_default();
        (
            format!("not recommended; the recommended choice was {rec}"),
            Color::Red,
        )
    };
    let mut text = Text::default();
    text.push_line(Line::from(format!("You chose {}) {chosen}", step.letter)).bold());
    text.push_line(Line::styled(verdict, Style::new().fg(color)));
    text.push_line(Line::from(format!(
        "+{} min on the incident clock",
        step.minutes
    )));
    text.push_line(Line::raw(""));
    for l in step.result.lines() {
        text.push_line(Line::raw(l.to_string()));
    }
    if let Some(e) = &step.evidence {
        text.push_line(Line::raw(""));
        text.push_line(Line::raw(format!("Measured: {e}")));
    }
    if let Some(c) = &step.caveat {
        text.push_line(Line::raw(""));
        text.push_line(Line::styled(
            format!("Caveat: {c}"),
            Style::new().fg(Color::Yellow),
        ));
    }
    if step.action.changes_system() {
        text.push_line(Line::raw(""));
        text.push_line(Line::styled(
            format!("System change: {}", step.action.describe()),
            Style::new().fg(Color::Cyan),
        ));
    }
    let block = Block::bordered().title(format!(" Round {}: {} — outcome ", r.number, r.title));
    frame.render_widget(
        Paragraph::new(text).wrap(Wrap { trim: true }).block(block),
        area,
    );
}

fn render_report(frame: &mut Frame, area: Rect, app: &App<'_>) {
    let s = app.session.scenario();
    let t = app.session.transcript();
    let mut lines = vec![
        Line::from(format!(
            "Path taken: {}",
            if t.path.is_empty() { "(none)" } else { &t.path }
        )),
        Line::from(format!(
            "Total downtime: {} min (optimal {} min, every wrong choice {} min)",
            t.total_minutes, s.optimal_minutes, s.worst_minutes
        ))
        .bold(),
    ];
    lines.extend(t.shown_damage_notes().map(|n| Line::from(n.to_string())));
    lines.push(Line::from(format!("Verdict: {}", verdict(&t))));
    lines.push(Line::raw(""));
    for r in &t.rounds {
        let what = match r.choice {
            Some(c) if r.recommended => format!("{c} ✓"),
            Some(c) => format!(
                "{c} ✗ (recommended {})",
                r.recommended_choice.unwrap_or('?')
            ),
            None => "checklist".to_string(),
        };
        lines.push(Line::from(format!(
            "Round {}: {:<34} {:<20} {:>4} min",
            r.number, r.title, what, r.minutes
        )));
    }
    lines.push(Line::raw(""));
    lines.push(Line::from("What a strong response covers:").bold());
    for c in &t.checklist {
        let (mark, color) = if c.covered {
            ("[x]", Color::Green)
        } else {
            ("[ ]", Color::Red)
        };
        lines.push(Line::styled(
            format!("{mark} {}", c.text),
            Style::new().fg(color),
        ));
    }
    for r in t.rounds.iter().filter(|r| r.caveat.is_some()) {
        lines.push(Line::styled(
            format!(
                "Caveat (round {}): {}",
                r.number,
                r.caveat.as_deref().unwrap_or("")
            ),
            Style::new().fg(Color::Yellow),
        ));
    }
    if !t.references.is_empty() {
        lines.push(Line::from(format!(
            "Cross-references: {}",
            t.references.join("; ")
        )));
    }
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(" Damage report ")),
        area,
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use idlereset_core::replay::{Scenario, builtin, load_text};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    const SEED: &str =
        include_str!("../../../../idlereset-core/tests/fixtures/replay/seed-000.txt");

    fn frame(app: &App<'_>, wall_s: u64) -> String {
        let mut terminal = Terminal::new(TestBackend::new(100, 30)).unwrap();
        terminal
            .draw(|f| render(f, app, Duration::from_secs(wall_s)))
            .unwrap();
        terminal.backend().to_string()
    }

    fn seed() -> Scenario {
        load_text(SEED, "seed-000.txt").unwrap()
    }

    #[test]
    fn intro_frame() {
        let s = seed();
        let app = App::new(Session::new(&s).unwrap());
        insta::assert_snapshot!(frame(&app, 0));
    }

    #[test]
    fn round_frame_with_cursor_on_c() {
        let s = seed();
        let mut app = App::new(Session::new(&s).unwrap());
        app.key(Key::Enter);
        app.key(Key::Down);
        app.key(Key::Down);
        assert_eq!(app.cursor, 2);
        insta::assert_snapshot!(frame(&app, 75));
    }

    #[test]
    fn wrong_outcome_frame_then_progress() {
        let s = seed();
        let mut app = App::new(Session::new(&s).unwrap());
        app.key(Key::Enter);
        app.key(Key::Char('a'));
        assert!(matches!(
            app.screen,
            Screen::Outcome(Step {
                letter: 'A',
                minutes: 20,
                ..
            })
        ));
        insta::assert_snapshot!("wrong_outcome", frame(&app, 90));
        app.key(Key::Enter);
        app.key(Key::Up); // wraps to D
        app.key(Key::Up); // C
        app.key(Key::Up); // B
        app.key(Key::Enter);
        assert!(matches!(
            app.screen,
            Screen::Outcome(Step {
                letter: 'B',
                minutes: 4,
                ..
            })
        ));
        insta::assert_snapshot!("second_round_outcome", frame(&app, 130));
    }

    #[test]
    fn full_play_reaches_checklist_and_report() {
        let s = seed();
        let mut app = App::new(Session::new(&s).unwrap());
        app.key(Key::Enter);
        for l in ['b', 'b', 'd'] {
            app.key(Key::Char(l));
            app.key(Key::Enter);
        }
        assert_eq!(app.screen, Screen::Round);
        assert!(matches!(app.session.current(), Current::Checklist(3)));
        insta::assert_snapshot!("checklist_round", frame(&app, 200));
        app.key(Key::Enter);
        assert_eq!(app.screen, Screen::Report);
        assert_eq!(app.session.transcript().total_minutes, 12);
        insta::assert_snapshot!("report", frame(&app, 240));
        app.key(Key::Enter);
        assert!(app.quit);
    }

    #[test]
    fn builtin_outcome_shows_the_system_change() {
        let s = builtin::get("firewall-900").unwrap();
        let mut app = App::new(Session::new(&s).unwrap());
        app.key(Key::Enter);
        app.key(Key::Char('b'));
        app.key(Key::Enter);
        app.key(Key::Char('b'));
        app.key(Key::Enter);
        app.key(Key::Char('b'));
        let f = frame(&app, 0);
        assert!(
            f.contains("System change: SO_KEEPALIVE on the socket: idle 300 s"),
            "{f}"
        );
        assert!(f.contains(" 1 B ✓ "), "{f}");
    }

    #[test]
    fn quit_leaves_the_session_unfinished() {
        let s = seed();
        let mut app = App::new(Session::new(&s).unwrap());
        app.key(Key::Enter);
        app.key(Key::Char('z')); // not a choice: ignored
        assert_eq!(app.screen, Screen::Round);
        app.key(Key::Quit);
        assert!(app.quit);
        assert!(!app.session.transcript().complete);
    }
}
