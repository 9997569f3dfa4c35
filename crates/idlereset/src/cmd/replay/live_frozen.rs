//! `replay nat-frozen-timer --live`: the frozen-timer replay backed by the lab's own story.
//!
//! The `nat-43200-invalid` story is not a lab one can change knob by knob: it is a busy flow, an
//! asymmetric fault and an expiry, and each fix needs a fresh run from before the fault. So live
//! mode runs the story and every fix once, concurrently, each in its own lab
//! (`idlereset_lab::frozen::run`), before the first round, and each choice that changes the
//! system gets the verdict of the run that applied that change. Nothing is canned; what is not
//! run is said: keepalive changes have no run of their own (their probes are packets of the same
//! flow, INVALID like the application's pings, so the pings run stands in and the verdict says
//! so), and combinations of fixes are not run together.

use std::io::Write;

use idlereset_core::replay::Action;
use idlereset_lab::frozen::{self, FixOutcome, FixVerdict, Report, RunResult};
use idlereset_lab::reproduce::Outcome;

/// The story and its fixes, measured once.
pub struct FrozenRun {
    report: Report,
    /// The measured runs whose change the trainee applied, latest last.
    applied: Vec<Measured>,
}

/// One applied change and the run that measured it.
struct Measured {
    outcome: Option<Outcome>,
    verdict: FixOutcome,
}

impl FrozenRun {
    /// Run the story and its fixes at `time_scale` (None: the preset's own, 43200 s as 15 lab
    /// seconds).
    pub fn start(time_scale: Option<f64>, out: &mut dyn Write) -> anyhow::Result<FrozenRun> {
        let opts = frozen::Options::from_knobs(time_scale, None)?;
        writeln!(
            out,
            "\n[live] preset {} at established timeout {} lab s: the story and its fixes, each in its own lab, run now (about {} s)...",
            frozen::PRESET,
            opts.established_timeout_s,
            opts.established_timeout_s * 5
        )?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let report = rt.block_on(frozen::run(&opts, &|_| {}))?;
        show_run(&report.story, out)?;
        Ok(FrozenRun {
            report,
            applied: Vec::new(),
        })
    }

    /// The time scale the runs used (the incident's timeout over the lab's).
    pub fn time_scale(&self) -> f64 {
        frozen::INCIDENT_TIMEOUT_S / f64::from(self.report.options.established_timeout_s)
    }

    /// The story run's outcome.
    pub fn incident(&self) -> Outcome {
        self.report.outcome
    }

    /// The lab's verdict on `action`, from the run that applied it; None when the choice
    /// changes nothing the story has a run for.
    pub fn verdict(
        &mut self,
        action: &Action,
        out: &mut dyn Write,
    ) -> anyhow::Result<Option<String>> {
        let Some((fix, note)) = fix_for(action) else {
            return Ok(None);
        };
        let Some(v) = self.report.fixes.iter().find(|f| f.fix.starts_with(fix)) else {
            return Ok(None);
        };
        let outcome = self.outcome_of(v);
        self.applied.push(Measured {
            outcome,
            verdict: v.outcome,
        });
        let text = format!(
            "{}: measured in this session's lab run `{}`: {} ({}){note}",
            action.describe(),
            v.fix,
            v.outcome.name(),
            v.detail
        );
        writeln!(out, "[live]   {text}")?;
        Ok(Some(text))
    }

    /// The connection's end in the run of fix `v` (the story's for loose=1, judged on it).
    fn outcome_of(&self, v: &FixVerdict) -> Option<Outcome> {
        self.report
            .runs
            .iter()
            .find(|r| r.fix == v.fix)
            .map_or(Some(self.report.outcome), |r: &RunResult| r.outcome)
    }

    /// The system as the trainee left it: the last applied change that helped decides (each
    /// fix ran on its own), else the last one applied, else the story.
    pub fn finish(&self, out: &mut dyn Write) -> anyhow::Result<(Outcome, String)> {
        let pick = self
            .applied
            .iter()
            .rev()
            .find(|m| m.verdict == FixOutcome::Helps)
            .or(self.applied.last());
        let (outcome, verdict) = match pick {
            Some(m) => (
                m.outcome.unwrap_or(self.report.outcome),
                format!(
                    "as measured for the change that decides it ({}); each fix ran on its own in this session, combinations were not run",
                    m.verdict.name()
                ),
            ),
            None => (
                self.report.outcome,
                "nothing applied: the story run's end".to_string(),
            ),
        };
        writeln!(out, "\n[live] final: {outcome:?} — {verdict}")?;
        Ok((outcome, verdict))
    }
}

/// The run whose change `action` makes, and a note when that run only stands in for it.
fn fix_for(action: &Action) -> Option<(&'static str, &'static str)> {
    const BY_PINGS: &str = "; keepalive has no run of its own: its probes are packets of the same flow, INVALID like the application's pings, so the pings run stands in";
    Some(match action {
        Action::ConntrackBeLiberal { enabled: true } => ("be_liberal=1", ""),
        Action::ConntrackLoose { enabled: true } => ("loose=1", ""),
        Action::ConntrackLoose { enabled: false } => ("loose=0", ""),
        Action::FirewallTimeout { .. } => ("longer established timeout", ""),
        Action::Heartbeat { .. } => ("application pings", ""),
        Action::KeepaliveOnSocket { .. } | Action::SysctlKeepalive { .. } => {
            ("application pings", BY_PINGS)
        }
        Action::ConntrackBeLiberal { enabled: false } | Action::None => return None,
    })
}

fn show_run(r: &RunResult, out: &mut dyn Write) -> std::io::Result<()> {
    if let Some(t) = r.frozen_at_s {
        writeln!(
            out,
            "[live]   fw conntrack: the flow's timer froze at lab t={t:.0} s"
        )?;
    }
    if let Some(t) = r.expired_at_s {
        writeln!(
            out,
            "[live]   fw conntrack: the entry expired at lab t={t:.0} s while the flow was busy"
        )?;
    }
    if r.invalid_packets > 0 {
        writeln!(out, "[live]   fw: {} INVALID packets", r.invalid_packets)?;
    }
    if let Some(e) = &r.app_error {
        writeln!(out, "[live]   app: {e}")?;
    }
    let outcome = r
        .outcome
        .map_or("run failed".to_string(), |o| format!("{o:?}"));
    writeln!(out, "[live]   outcome: {outcome} — {}", r.detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_system_change_maps_to_a_run_of_the_story() {
        let names = frozen::fix_names();
        let actions = [
            Action::ConntrackBeLiberal { enabled: true },
            Action::ConntrackLoose { enabled: true },
            Action::ConntrackLoose { enabled: false },
            Action::FirewallTimeout { timeout_s: 86_400 },
            Action::Heartbeat { interval_s: 30 },
            Action::SysctlKeepalive {
                time_s: 1800,
                intvl_s: None,
                probes: None,
            },
        ];
        for a in &actions {
            let (fix, _) = fix_for(a).unwrap_or_else(|| panic!("{a:?} has no run"));
            assert!(names.iter().any(|n| n.starts_with(fix)), "{a:?} -> {fix}");
        }
        assert!(fix_for(&Action::None).is_none());
        assert!(
            fix_for(&Action::SysctlKeepalive {
                time_s: 1,
                intvl_s: None,
                probes: None
            })
            .is_some_and(|(_, note)| note.contains("stands in"))
        );
    }
}
