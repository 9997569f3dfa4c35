//! The verdict over one or more captures: how many flows failed after idle, the idle bracket
//! those failures imply, and the catalog entries whose timeout fits it.
//!
//! Bracket: a flow that stayed idle for `L` seconds and was still answered proves the path's
//! idle timeout is longer than `L`; a flow that failed after `H` seconds proves it is at most
//! `H`. The lower bound is the longest idle that survived, the upper bound the shortest idle
//! before a failure. When `low >= high`, the failures and the survivors crossed different
//! middleboxes (or the timeout is not purely idle-based) and we say so.
//!
//! Active resets (a middlebox resetting a flow that was in use) are counted on their own and
//! never enter the bracket: they say the box lost state, not how long it keeps idle state.

use serde::Serialize;

use super::events::{Kind, Origin};
use super::flow::Analysis;
use crate::catalog::{Catalog, Failure};
use crate::duration::Human;

/// Most catalog candidates listed.
const MAX_CANDIDATES: usize = 5;

/// Bounds on the path's idle timeout, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bracket {
    /// Longest idle that survived.
    pub low: Option<f64>,
    /// Shortest idle before a failure.
    pub high: Option<f64>,
}

/// A catalog entry whose idle timeout fits the bracket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CandidateOut {
    /// Catalog id.
    pub id: String,
    /// Product name.
    pub name: String,
    /// The entry's idle timeout, seconds.
    pub timeout_s: f64,
    /// What the endpoints see when it fires.
    pub failure: Failure,
    /// The document the figure comes from.
    pub source: String,
}

/// The verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// TCP flows seen.
    pub flows: u64,
    /// Idle failures: resets, blackholes and idle closes.
    pub idle_failures: usize,
    /// `reset` events (RST after idle).
    pub resets: usize,
    /// `reset` events made by a middlebox.
    pub middlebox_resets: usize,
    /// `blackhole` events (data after idle never acknowledged).
    pub blackholes: usize,
    /// `idle-close` events (FIN after a long idle).
    pub idle_closes: usize,
    /// `active-reset` events made by a middlebox (state lost on a busy flow).
    pub active_resets: usize,
    /// `active-reset` events from an endpoint (only listed with `--all`).
    pub endpoint_active_resets: usize,
    /// Active resets whose flow changed path mid-flow (asymmetric-route signature).
    pub route_changes: usize,
    /// The path's idle timeout bracketed by survived and failed idle gaps, seconds.
    pub idle_timeout_s: Bracket,
    /// False when some idle longer than a failing one survived.
    pub consistent: bool,
    /// Catalog entries whose timeout fits the bracket.
    pub candidates: Vec<CandidateOut>,
    /// One sentence stating the conclusion.
    pub verdict: String,
}

/// Combine the analyses of several captures.
pub fn summarise(analyses: &[&Analysis], catalog: &Catalog) -> Summary {
    let events = analyses.iter().flat_map(|a| a.events.iter());
    let count = |k: Kind| events.clone().filter(|e| e.kind == k).count();
    let resets = count(Kind::Reset);
    let blackholes = count(Kind::Blackhole);
    let idle_closes = count(Kind::IdleClose);
    let middlebox_resets = events
        .clone()
        .filter(|e| e.kind == Kind::Reset && e.origin == Origin::Middlebox)
        .count();
    let active = events.clone().filter(|e| e.kind == Kind::ActiveReset);
    let active_resets = active
        .clone()
        .filter(|e| e.origin == Origin::Middlebox)
        .count();
    let endpoint_active_resets = active
        .clone()
        .filter(|e| e.origin != Origin::Middlebox)
        .count();
    let route_changes = active
        .filter(|e| e.origin == Origin::Middlebox && e.route_change.is_some())
        .count();
    let high = events
        .clone()
        .filter(|e| e.kind.is_idle_failure())
        .map(|e| e.idle_before_s)
        .min_by(f64::total_cmp);
    let low = analyses
        .iter()
        .filter_map(|a| a.longest_survived_idle_s)
        .max_by(f64::total_cmp);
    let flows = analyses.iter().map(|a| a.stats.flows).sum();
    let consistent = match (low, high) {
        (Some(l), Some(h)) => l < h,
        _ => true,
    };
    let candidates = high
        .map(|h| candidates(catalog, low.filter(|_| consistent), h))
        .unwrap_or_default();
    let idle_failures = resets + blackholes + idle_closes;
    let mut s = Summary {
        flows,
        idle_failures,
        resets,
        middlebox_resets,
        blackholes,
        idle_closes,
        active_resets,
        endpoint_active_resets,
        route_changes,
        idle_timeout_s: Bracket { low, high },
        consistent,
        candidates,
        verdict: String::new(),
    };
    s.verdict = verdict(&s);
    s
}

fn candidates(catalog: &Catalog, low: Option<f64>, high: f64) -> Vec<CandidateOut> {
    let lo = low.unwrap_or(0.0);
    // A timeout fires during the idle gap, so it is at most `high` (2 % slack for capture
    // timing); it is above `low`. Closest to `high` first.
    let mut fit: Vec<_> = catalog
        .entries()
        .iter()
        .filter(|e| e.kind != "os" && e.kind != "client")
        .filter(|e| e.idle_timeout_s > lo && e.idle_timeout_s <= high * 1.02)
        .collect();
    fit.sort_by(|a, b| {
        (high - a.idle_timeout_s)
            .abs()
            .total_cmp(&(high - b.idle_timeout_s).abs())
    });
    if fit.is_empty() {
        fit = catalog
            .near(high, 0.1)
            .into_iter()
            .map(|c| c.entry)
            .collect();
    }
    fit.into_iter()
        .take(MAX_CANDIDATES)
        .map(|e| CandidateOut {
            id: e.id.clone(),
            name: e.name.clone(),
            timeout_s: e.idle_timeout_s,
            failure: e.failure,
            source: e.source.clone(),
        })
        .collect()
}

fn verdict(s: &Summary) -> String {
    let mut v = idle_verdict(s);
    if s.active_resets > 0 {
        v.push_str(&format!(
            " {} active reset{} from a middlebox on flows in use: state lost without idleness (frozen timer, NAT remap, failover, full table, flush), not an idle timeout{}; see `idlereset conntrack --watch` and the INVALID counters.",
            s.active_resets,
            plural(s.active_resets),
            if s.route_changes > 0 {
                format!(
                    "; {} of them after one direction changed path mid-flow (asymmetric route: INVALID packets, frozen timer)",
                    s.route_changes
                )
            } else {
                String::new()
            }
        ));
    }
    if s.endpoint_active_resets > 0 {
        v.push_str(&format!(
            " {} endpoint reset{} on busy flows (ordinary aborts).",
            s.endpoint_active_resets,
            plural(s.endpoint_active_resets)
        ));
    }
    v
}

fn idle_verdict(s: &Summary) -> String {
    if s.idle_failures == 0 {
        let survived = s
            .idle_timeout_s
            .low
            .map(|l| format!(" (longest idle that survived: {})", Human(l)))
            .unwrap_or_default();
        return format!("No idle failures in {} flows{survived}.", s.flows);
    }
    let mut parts = Vec::new();
    if s.resets > 0 {
        parts.push(format!(
            "{} reset{} ({} from a middlebox)",
            s.resets,
            plural(s.resets),
            s.middlebox_resets
        ));
    }
    if s.blackholes > 0 {
        parts.push(format!(
            "{} silent drop{}",
            s.blackholes,
            plural(s.blackholes)
        ));
    }
    if s.idle_closes > 0 {
        parts.push(format!(
            "{} idle close{}",
            s.idle_closes,
            plural(s.idle_closes)
        ));
    }
    let mut v = format!(
        "{} idle failure{} in {} flows: {}.",
        s.idle_failures,
        plural(s.idle_failures),
        s.flows,
        parts.join(", ")
    );
    match (s.idle_timeout_s.low, s.idle_timeout_s.high) {
        (Some(l), Some(h)) if s.consistent => {
            v.push_str(&format!(" Idle timeout between {} (survived) and {} (failed).", Human(l), Human(h)));
        }
        (Some(l), Some(h)) => v.push_str(&format!(
            " Inconsistent: an idle of {} survived but one of {} failed, so the flows cross different middleboxes or the limit is not an idle timeout.",
            Human(l),
            Human(h)
        )),
        (_, Some(h)) => v.push_str(&format!(" Idle timeout at most {}.", Human(h))),
        _ => {}
    }
    if !s.candidates.is_empty() {
        let names: Vec<String> = s
            .candidates
            .iter()
            .map(|c| format!("{} ({})", c.id, Human(c.timeout_s)))
            .collect();
        v.push_str(&format!(" Matching catalog entries: {}.", names.join(", ")));
    }
    v
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::pcap::events::{Event, Role};

    fn event(kind: Kind, origin: Origin, idle: f64) -> Event {
        Event {
            kind,
            client: "198.18.0.10:41000".into(),
            server: "198.19.0.20:5432".into(),
            origin,
            idle_before_s: idle,
            time: String::new(),
            ts: 0.0,
            carries: None,
            trigger: Role::Client,
            retransmissions: 0,
            evidence: None,
            last_minute: None,
            reading: None,
            route_change: None,
            damage: None,
        }
    }

    fn analysis(events: Vec<Event>, survived: Option<f64>, flows: u64) -> Analysis {
        let mut a = Analysis {
            events,
            longest_survived_idle_s: survived,
            ..Analysis::default()
        };
        a.stats.flows = flows;
        a
    }

    #[test]
    fn bracket_and_candidates_from_two_files() {
        let cat = Catalog::builtin().unwrap();
        let a = analysis(
            vec![event(Kind::Reset, Origin::Middlebox, 352.0)],
            Some(300.0),
            3,
        );
        let b = analysis(
            vec![event(Kind::Reset, Origin::Endpoint, 400.0)],
            Some(120.0),
            2,
        );
        let s = summarise(&[&a, &b], &cat);
        assert_eq!((s.flows, s.resets, s.middlebox_resets), (5, 2, 1));
        assert_eq!(
            s.idle_timeout_s,
            Bracket {
                low: Some(300.0),
                high: Some(352.0)
            }
        );
        assert!(s.consistent);
        assert!(!s.candidates.is_empty());
        assert!(
            s.candidates
                .iter()
                .all(|c| c.timeout_s > 300.0 && c.timeout_s <= 352.0 * 1.02),
            "{:?}",
            s.candidates
        );
        assert!(s.candidates.iter().any(|c| c.id == "aws-nat-gateway"));
        assert!(s.verdict.contains("between"), "{}", s.verdict);
    }

    #[test]
    fn inconsistent_bracket_is_said() {
        let cat = Catalog::builtin().unwrap();
        let a = analysis(
            vec![event(Kind::Blackhole, Origin::Unknown, 100.0)],
            Some(500.0),
            1,
        );
        let s = summarise(&[&a], &cat);
        assert!(!s.consistent);
        assert_eq!(s.blackholes, 1);
        assert!(s.verdict.contains("Inconsistent"), "{}", s.verdict);
    }

    #[test]
    fn no_failures() {
        let cat = Catalog::builtin().unwrap();
        let a = analysis(vec![], Some(75.0), 4);
        let s = summarise(&[&a], &cat);
        assert_eq!(s.idle_failures, 0);
        assert!(s.candidates.is_empty());
        assert!(
            s.verdict.starts_with("No idle failures in 4 flows"),
            "{}",
            s.verdict
        );
    }
}
