//! `replay --live`: the exercise backed by the real lab.
//!
//! The replay's system runs in a lab at scaled time (the built-in scenarios map to lab presets;
//! other replays default to `firewall-900`; `nat-frozen-timer` runs the frozen-timer story and
//! its fixes up front, see `live_frozen`). Before the first round the incident is reproduced
//! for real and the cue shows what the lab saw: the application's log lines, the pool, the
//! firewall's conntrack entry, the RST. Every choice that changes the system (keepalive on the
//! socket, the OS keepalive sysctl, the firewall timeout, conntrack loose, an application
//! heartbeat, `be_liberal`) is applied to that lab and verified with real traffic idling past the firewall
//! timeout. Nothing is canned: the verdicts are what the kernel did. Markdown replays carry no
//! machine-readable actions, so a result that spells out a command the lab understands
//! (`sysctl -w net.ipv4.tcp_keepalive_time=300`) is applied as written.

use std::io::Write;

use idlereset_core::replay::{Action, Scenario as Replay};
use idlereset_lab::registry::Ownership;
use idlereset_lab::reproduce::{self, Options, Outcome, Report};
use idlereset_lab::scenario::Scenario;
use idlereset_lab::{Lab, LabSpec};
use serde::Serialize;

use super::live_frozen::FrozenRun;

/// What live mode did, for the JSON transcript and the report.
#[derive(Debug, Clone, Serialize)]
pub struct LiveSummary {
    pub lab_preset: String,
    pub time_scale: f64,
    pub incident: Outcome,
    pub applied: Vec<String>,
    pub final_outcome: Option<Outcome>,
    pub final_verdict: Option<String>,
}

pub struct Live {
    backend: Backend,
    pub summary: LiveSummary,
}

/// What backs the exercise.
enum Backend {
    /// A firewall preset's lab, changed knob by knob and verified after each change.
    Lab(LabRun),
    /// The frozen-timer story and its fixes, run once up front.
    Frozen(FrozenRun),
}

/// A firewall preset's lab and the scenario it runs.
struct LabRun {
    rt: tokio::runtime::Runtime,
    lab: Option<Lab>,
    sc: Scenario,
}

/// The time scale of a firewall preset's live lab when none is given.
pub const DEFAULT_TIME_SCALE: f64 = 300.0;

/// The lab preset that runs a replay's system.
pub fn preset_for(replay: &Replay) -> &'static str {
    match replay.id.as_str() {
        "keepalive-7200" => "firewall-3600",
        "nat-frozen-timer" => idlereset_lab::frozen::PRESET,
        _ => "firewall-900",
    }
}

impl Live {
    /// Build the lab for `replay` and reproduce the incident once.
    pub fn start(
        replay: &Replay,
        time_scale: Option<f64>,
        out: &mut dyn Write,
    ) -> anyhow::Result<Live> {
        idlereset_lab::error::require_privileges()?;
        let preset = preset_for(replay);
        if preset == idlereset_lab::frozen::PRESET {
            return Live::start_frozen(time_scale, out);
        }
        let time_scale = time_scale.unwrap_or(DEFAULT_TIME_SCALE);
        let mut sc = Scenario::preset(preset)?;
        sc.time_scale = time_scale;
        sc.validate()?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let spec: LabSpec = sc.lab_spec()?;
        let lab = rt.block_on(Lab::create(spec, None, Ownership::Foreground))?;
        writeln!(
            out,
            "\n[live] lab {} runs preset {preset} at time scale {time_scale}; reproducing the incident...",
            lab.name()
        )?;
        let report = rt.block_on(reproduce::run_in(&lab, &sc, &Options::default(), &|_| {}))?;
        show(&report, out)?;
        let summary = LiveSummary {
            lab_preset: preset.to_string(),
            time_scale,
            incident: report.outcome,
            applied: Vec::new(),
            final_outcome: None,
            final_verdict: None,
        };
        Ok(Live {
            backend: Backend::Lab(LabRun {
                rt,
                lab: Some(lab),
                sc,
            }),
            summary,
        })
    }

    fn start_frozen(time_scale: Option<f64>, out: &mut dyn Write) -> anyhow::Result<Live> {
        let run = FrozenRun::start(time_scale, out)?;
        let summary = LiveSummary {
            lab_preset: idlereset_lab::frozen::PRESET.to_string(),
            time_scale: run.time_scale(),
            incident: run.incident(),
            applied: Vec::new(),
            final_outcome: None,
            final_verdict: None,
        };
        Ok(Live {
            backend: Backend::Frozen(run),
            summary,
        })
    }

    /// Apply a choice's action to the lab and verify it; returns the verdict for the transcript.
    pub fn apply_and_verify(
        &mut self,
        action: &Action,
        out: &mut dyn Write,
    ) -> anyhow::Result<Option<String>> {
        let verdict = match &mut self.backend {
            Backend::Lab(run) => run.apply_and_verify(action, out)?,
            Backend::Frozen(run) => run.verdict(action, out)?,
        };
        if verdict.is_some() {
            self.summary.applied.push(action.describe());
        }
        Ok(verdict)
    }

    /// Verify the system as the trainee left it, then remove the lab.
    pub fn finish(&mut self, out: &mut dyn Write) -> anyhow::Result<()> {
        let (outcome, verdict) = match &mut self.backend {
            Backend::Lab(run) => run.finish(out)?,
            Backend::Frozen(run) => run.finish(out)?,
        };
        self.summary.final_outcome = Some(outcome);
        self.summary.final_verdict = Some(verdict);
        Ok(())
    }
}

impl LabRun {
    /// Change the scenario as `action` says, then verify it in the lab.
    fn apply_and_verify(
        &mut self,
        action: &Action,
        out: &mut dyn Write,
    ) -> anyhow::Result<Option<String>> {
        match action {
            Action::None => return Ok(None),
            Action::KeepaliveOnSocket {
                idle_s,
                intvl_s,
                probes,
            } => {
                self.sc.so_keepalive = true;
                self.sc.keepalive_time_s = Some(f64::from(*idle_s));
                self.sc.keepalive_intvl_s = intvl_s.map(f64::from);
                self.sc.keepalive_probes = *probes;
            }
            Action::SysctlKeepalive {
                time_s,
                intvl_s,
                probes,
            } => {
                self.sc.os_keepalive_time_s = Some(f64::from(*time_s));
                if let Some(i) = intvl_s {
                    self.sc.os_keepalive_intvl_s = Some(f64::from(*i));
                }
                if probes.is_some() {
                    self.sc.os_keepalive_probes = *probes;
                }
            }
            Action::FirewallTimeout { timeout_s } => self.sc.fw_timeout_s = f64::from(*timeout_s),
            Action::ConntrackLoose { enabled } => self.sc.loose = *enabled,
            Action::ConntrackBeLiberal { enabled } => self.sc.be_liberal = *enabled,
            Action::Heartbeat { interval_s } => self.sc.heartbeat_s = Some(f64::from(*interval_s)),
        }
        let what = action.describe();
        writeln!(
            out,
            "[live] applying to the lab: {what}; verifying with {:.0} s of idle...",
            self.sc.idle_s
        )?;
        let report = self.verify()?;
        show(&report, out)?;
        Ok(Some(format!(
            "{what}: verified in the lab: {:?} after {:.0} s idle{}",
            report.outcome,
            report.idle_s,
            report.error.map(|e| format!(" ({e})")).unwrap_or_default()
        )))
    }

    fn verify(&mut self) -> anyhow::Result<Report> {
        let lab = self
            .lab
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("the live lab is gone"))?;
        let spec = self.sc.lab_spec()?;
        lab.set_firewall(spec.firewall)?;
        lab.set_app_sysctls(&spec.app_sysctls)?;
        let lab = self
            .lab
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the live lab is gone"))?;
        Ok(self.rt.block_on(reproduce::run_in(
            lab,
            &self.sc,
            &Options::default(),
            &|_| {},
        ))?)
    }

    /// Verify the system as the trainee left it, then remove the lab.
    fn finish(&mut self, out: &mut dyn Write) -> anyhow::Result<(Outcome, String)> {
        writeln!(
            out,
            "\n[live] final verification of the system as you left it..."
        )?;
        let report = self.verify()?;
        show(&report, out)?;
        if let Some(lab) = self.lab.take() {
            lab.destroy()?;
        }
        Ok((report.outcome, report.verdict))
    }
}

fn show(r: &Report, out: &mut dyn Write) -> std::io::Result<()> {
    for l in r.app_log.iter().rev().take(2).rev() {
        writeln!(out, "[live]   app log | {l}")?;
    }
    if let Some(t) = r.evidence.ct_gone_at_s {
        writeln!(
            out,
            "[live]   fw conntrack: entry for the flow expired at lab t={t:.1} s"
        )?;
    } else if r.evidence.ct_refreshes > 0 {
        writeln!(
            out,
            "[live]   fw conntrack: entry refreshed {} times during the idle gap",
            r.evidence.ct_refreshes
        )?;
    }
    if let (Some(rst), Some(db)) = (r.evidence.rst_at_app.first(), r.evidence.db_ttl_at_app) {
        writeln!(
            out,
            "[live]   RST at the app with TTL {rst} (the database's packets arrive with TTL {db})"
        )?;
    }
    writeln!(out, "[live]   outcome: {:?} — {}", r.outcome, r.verdict)
}
