//! Frozen conntrack timers: turn repeated samples of a conntrack table into events.
//!
//! A conntrack entry's remaining timeout is reset by every packet conntrack accepts as valid.
//! Packets that fail TCP window tracking (after a sequence jump, an asymmetric path, ...) are
//! INVALID: they may still cross the box, but they do not refresh the timer. Such a flow looks
//! busy (its packet counters keep advancing) while its timeout falls second by second, and it is
//! forgotten when the timeout reaches zero: the field report's 12 h resets.
//!
//! On Linux 6.18 the entry's packet counters do not count INVALID packets either (accounting
//! happens only for packets conntrack accepted), so a frozen flow usually looks *silent* in the
//! table, not busy: its counters stop at once while the table-wide INVALID statistic climbs.
//! Both signatures are recognised.
//!
//! [`Watcher`] keeps, per flow, the previous sample only (memory grows with the number of flows
//! sampled, never with the number of samples) and reports:
//! - [`EventKind::Frozen`]: for `frozen_after` consecutive intervals the timeout fell by about
//!   the time elapsed while either the flow's packets advanced, or the flow had been busy just
//!   before its counters stopped and the table's INVALID statistic kept rising;
//! - [`EventKind::ExpiringWhileActive`]: the timeout is below `expiring_s` and packets still
//!   advance;
//! - [`EventKind::Expired`]: a flow flagged frozen or expiring vanished from the table;
//! - [`EventKind::InvalidRising`]: the table's INVALID statistic rose faster than
//!   `invalid_rate_per_s`.
//!
//! The flow key is generic (the caller picks the conntrack id plus tuple, or anything hashable)
//! and time is injected, so the logic is pure and unit-tested on synthetic samples.

use std::collections::HashMap;
use std::hash::Hash;

use serde::Serialize;

/// Thresholds of a [`Watcher`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WatchConfig {
    /// Consecutive frozen intervals before a flow is flagged (at least 1).
    pub frozen_after: u32,
    /// Slack, in seconds, when comparing the timeout's fall with the time elapsed (the kernel
    /// reports whole seconds).
    pub tolerance_s: f64,
    /// A flow whose timeout is at or below this and whose packets advance is about to die.
    pub expiring_s: u32,
    /// INVALID packets per second (table-wide) above which `InvalidRising` is reported.
    pub invalid_rate_per_s: f64,
    /// While the statistic keeps rising, repeat `InvalidRising` at most this often (seconds).
    pub invalid_repeat_s: f64,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            frozen_after: 2,
            tolerance_s: 1.0,
            expiring_s: 30,
            invalid_rate_per_s: 1.0,
            invalid_repeat_s: 60.0,
        }
    }
}

/// One observation of one flow.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds since an arbitrary origin (monotonic).
    pub t_s: f64,
    /// Remaining timeout reported by the kernel.
    pub timeout_s: u32,
    /// Packets of both directions; `None` without accounting (then nothing can be flagged).
    pub packets: Option<u64>,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// The timeout kept falling for `frozen_after` intervals while the flow was busy: its packets
    /// no longer refresh the timer.
    Frozen,
    /// The timeout is below `expiring_s` while packets still advance.
    ExpiringWhileActive,
    /// A flow flagged frozen or expiring vanished from the table.
    Expired,
    /// The table's INVALID statistic rose faster than `invalid_rate_per_s`.
    InvalidRising,
}

impl EventKind {
    /// The kebab-case name of the kind, as in JSON output.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Frozen => "frozen",
            EventKind::ExpiringWhileActive => "expiring-while-active",
            EventKind::Expired => "expired",
            EventKind::InvalidRising => "invalid-rising",
        }
    }
}

/// One event. `flow` is `None` for table-wide events (INVALID statistic).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event<K> {
    /// What happened.
    pub kind: EventKind,
    /// When, in seconds since the watch started.
    pub t_s: f64,
    /// The flow concerned; `None` for table-wide events.
    pub flow: Option<K>,
    /// Human-readable evidence (what was compared).
    pub evidence: String,
    /// Seconds before the entry is forgotten, if known.
    pub time_left_s: Option<u32>,
    /// Packets in the last interval (flow events) or INVALID packets (table event).
    pub packets_delta: Option<u64>,
    /// Timeout lost in the last interval (flow events).
    pub timeout_fall_s: Option<i64>,
}

#[derive(Debug, Clone, Copy)]
struct FlowState {
    last: Sample,
    frozen_streak: u32,
    flagged_frozen: bool,
    flagged_expiring: bool,
    /// Packets advanced in the interval before the current one.
    moved_before: bool,
    seen_round: u64,
}

impl FlowState {
    fn fresh(s: Sample, round: u64) -> FlowState {
        FlowState {
            last: s,
            frozen_streak: 0,
            flagged_frozen: false,
            flagged_expiring: false,
            moved_before: false,
            seen_round: round,
        }
    }
}

/// Sampling state over rounds. Per round: [`Watcher::begin_round`] with the INVALID statistic,
/// [`Watcher::observe`] for every flow of a dump, then [`Watcher::end_round`].
#[derive(Debug)]
pub struct Watcher<K> {
    cfg: WatchConfig,
    flows: HashMap<K, FlowState>,
    round: u64,
    last_invalid: Option<(f64, u64)>,
    /// INVALID packets counted since the previous round (0 when unknown).
    invalid_delta: u64,
    /// When the last `InvalidRising` was reported, while the rise goes on.
    invalid_reported: Option<f64>,
}

impl<K: Clone + Eq + Hash> Watcher<K> {
    /// A watcher with no history (`frozen_after` is at least 1).
    pub fn new(cfg: WatchConfig) -> Watcher<K> {
        Watcher {
            cfg: WatchConfig {
                frozen_after: cfg.frozen_after.max(1),
                ..cfg
            },
            flows: HashMap::new(),
            round: 1,
            last_invalid: None,
            invalid_delta: 0,
            invalid_reported: None,
        }
    }

    /// Flows currently tracked.
    pub fn flows(&self) -> usize {
        self.flows.len()
    }

    /// Tracked flows currently flagged frozen (for a gauge).
    pub fn frozen_flows(&self) -> usize {
        self.flows.values().filter(|f| f.flagged_frozen).count()
    }

    /// Feed one flow's sample of the current round; events it triggers are pushed to `out`.
    pub fn observe(&mut self, key: &K, s: Sample, out: &mut Vec<Event<K>>) {
        let round = self.round;
        let Some(st) = self.flows.get_mut(key) else {
            self.flows.insert(key.clone(), FlowState::fresh(s, round));
            return;
        };
        st.seen_round = round;
        let prev = st.last;
        st.last = s;
        let elapsed = s.t_s - prev.t_s;
        let (Some(p0), Some(p1)) = (prev.packets, s.packets) else {
            st.frozen_streak = 0;
            return;
        };
        if p1 < p0 || elapsed <= 0.0 {
            // A new entry under the same key, or a clock that went backwards: start over.
            *st = FlowState::fresh(s, round);
            return;
        }
        let moved = p1 - p0;
        let fall = i64::from(prev.timeout_s) - i64::from(s.timeout_s);
        let falls_with_time = fall >= 1
            && fall as f64 >= elapsed - self.cfg.tolerance_s
            && fall as f64 <= elapsed + self.cfg.tolerance_s;
        let invalid = self.invalid_delta;
        // Busy, or silenced: busy until just now (or already in a streak) and INVALID rising.
        let silenced = moved == 0
            && invalid > 0
            && (st.moved_before || st.frozen_streak > 0 || st.flagged_frozen);
        let frozen_step = falls_with_time && (moved > 0 || silenced);
        st.moved_before = moved > 0;
        if frozen_step {
            st.frozen_streak += 1;
        } else if fall < 0 || (moved == 0 && invalid == 0) {
            // Refreshed (timer went up) or idle (falling is normal): not frozen.
            st.frozen_streak = 0;
            st.flagged_frozen = false;
        } else {
            st.frozen_streak = 0;
        }
        if st.frozen_streak >= self.cfg.frozen_after && !st.flagged_frozen {
            st.flagged_frozen = true;
            let why = if moved > 0 {
                format!("{moved} packets in {elapsed:.1} s")
            } else {
                format!(
                    "the busy flow's counters stopped while the table's INVALID statistic rose by {invalid} in {elapsed:.1} s"
                )
            };
            out.push(Event {
                kind: EventKind::Frozen,
                t_s: s.t_s,
                flow: Some(key.clone()),
                evidence: format!(
                    "{why}, and the timeout fell {} s -> {} s ({} intervals in a row): its packets no longer refresh the entry",
                    prev.timeout_s, s.timeout_s, st.frozen_streak
                ),
                time_left_s: Some(s.timeout_s),
                packets_delta: Some(moved),
                timeout_fall_s: Some(fall),
            });
        }
        let active = moved > 0 || (st.flagged_frozen && invalid > 0);
        if active && s.timeout_s <= self.cfg.expiring_s {
            if !st.flagged_expiring {
                st.flagged_expiring = true;
                out.push(Event {
                    kind: EventKind::ExpiringWhileActive,
                    t_s: s.t_s,
                    flow: Some(key.clone()),
                    evidence: format!(
                        "{} and only {} s left (threshold {} s): the entry will be forgotten while the endpoints still talk",
                        if moved > 0 {
                            format!("{moved} packets in {elapsed:.1} s")
                        } else {
                            format!("frozen flow, INVALID statistic +{invalid} in {elapsed:.1} s")
                        },
                        s.timeout_s,
                        self.cfg.expiring_s
                    ),
                    time_left_s: Some(s.timeout_s),
                    packets_delta: Some(moved),
                    timeout_fall_s: Some(fall),
                });
            }
        } else if s.timeout_s > self.cfg.expiring_s {
            st.flagged_expiring = false;
        }
    }

    /// Close the round at time `t_s`: flows not observed in it are gone from the table. Flows
    /// that were flagged when they vanished produce an `Expired` event.
    pub fn end_round(&mut self, t_s: f64, out: &mut Vec<Event<K>>) {
        let round = self.round;
        self.flows.retain(|k, st| {
            if st.seen_round == round {
                return true;
            }
            if st.flagged_frozen || st.flagged_expiring {
                out.push(Event {
                    kind: EventKind::Expired,
                    t_s,
                    flow: Some(k.clone()),
                    evidence: format!(
                        "the entry left the table (last seen at {:.1} s with {} s left); the next packet of this flow is unknown to the firewall",
                        st.last.t_s, st.last.timeout_s
                    ),
                    time_left_s: Some(0),
                    packets_delta: None,
                    timeout_fall_s: None,
                });
            }
            false
        });
        self.round += 1;
    }

    /// Start a round at time `t_s` with the table-wide INVALID statistic (`None` when it could
    /// not be read). Call it before the round's [`Watcher::observe`] calls.
    pub fn begin_round(&mut self, t_s: f64, invalid_total: Option<u64>, out: &mut Vec<Event<K>>) {
        self.invalid_delta = 0;
        let Some(total) = invalid_total else {
            return;
        };
        let prev = self.last_invalid.replace((t_s, total));
        let Some((t0, v0)) = prev else {
            return;
        };
        let elapsed = t_s - t0;
        if total < v0 || elapsed <= 0.0 {
            return;
        }
        let delta = total - v0;
        self.invalid_delta = delta;
        let rate = delta as f64 / elapsed;
        if !(delta > 0 && rate > self.cfg.invalid_rate_per_s) {
            self.invalid_reported = None;
            return;
        }
        if self
            .invalid_reported
            .is_some_and(|t| t_s - t < self.cfg.invalid_repeat_s)
        {
            return;
        }
        self.invalid_reported = Some(t_s);
        {
            out.push(Event {
                kind: EventKind::InvalidRising,
                t_s,
                flow: None,
                evidence: format!(
                    "INVALID statistic rose by {delta} in {elapsed:.1} s ({rate:.1}/s, threshold {}/s): packets fail conntrack's checks and refresh no timer",
                    self.cfg.invalid_rate_per_s
                ),
                time_left_s: None,
                packets_delta: Some(delta),
                timeout_fall_s: None,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn s(t: f64, timeout: u32, packets: u64) -> Sample {
        Sample {
            t_s: t,
            timeout_s: timeout,
            packets: Some(packets),
        }
    }

    /// Run rounds of one flow; returns all events.
    fn run(samples: &[Sample], cfg: WatchConfig) -> Vec<Event<u32>> {
        let mut w = Watcher::new(cfg);
        let mut out = Vec::new();
        for x in samples {
            w.begin_round(x.t_s, None, &mut out);
            w.observe(&7, *x, &mut out);
            w.end_round(x.t_s, &mut out);
        }
        out
    }

    #[test]
    fn busy_refreshed_flow_is_quiet() {
        let samples: Vec<_> = (0..10)
            .map(|i| s(f64::from(i), 300 - (i % 2), u64::from(i) * 100))
            .collect();
        assert!(run(&samples, WatchConfig::default()).is_empty());
    }

    #[test]
    fn idle_flow_falling_is_not_frozen() {
        let samples: Vec<_> = (0..10).map(|i| s(f64::from(i), 300 - i, 5)).collect();
        assert!(run(&samples, WatchConfig::default()).is_empty());
    }

    #[test]
    fn frozen_timer_flagged_after_streak_once() {
        // Busy flow refreshed to 48, then frozen: falls 1 s per second while packets flow.
        let mut samples = vec![s(0.0, 48, 0), s(1.0, 48, 100)];
        for i in 2..12 {
            samples.push(s(f64::from(i), 48 - (i - 1), u64::from(i) * 100));
        }
        let ev = run(&samples, WatchConfig::default());
        let frozen: Vec<_> = ev.iter().filter(|e| e.kind == EventKind::Frozen).collect();
        assert_eq!(frozen.len(), 1, "{ev:?}");
        assert_eq!(frozen[0].t_s, 3.0);
        assert_eq!(frozen[0].time_left_s, Some(46));
        assert_eq!(frozen[0].packets_delta, Some(100));
        assert!(frozen[0].evidence.contains("47 s -> 46 s"));
        let cfg = WatchConfig {
            frozen_after: 4,
            ..WatchConfig::default()
        };
        let late = run(&samples, cfg);
        assert_eq!(
            late.iter()
                .find(|e| e.kind == EventKind::Frozen)
                .unwrap()
                .t_s,
            5.0
        );
    }

    #[test]
    fn refresh_clears_the_flag_and_can_reflag() {
        let samples = [
            s(0.0, 40, 0),
            s(1.0, 39, 10),
            s(2.0, 38, 20),
            s(3.0, 60, 30), // resynchronised
            s(4.0, 59, 40),
            s(5.0, 58, 50),
        ];
        let ev = run(&samples, WatchConfig::default());
        let times: Vec<_> = ev
            .iter()
            .filter(|e| e.kind == EventKind::Frozen)
            .map(|e| e.t_s)
            .collect();
        assert_eq!(times, vec![2.0, 5.0]);
    }

    #[test]
    fn expiring_while_active_then_expired() {
        let cfg = WatchConfig {
            expiring_s: 5,
            frozen_after: 100,
            ..WatchConfig::default()
        };
        let mut w = Watcher::new(cfg);
        let mut out = Vec::new();
        for (i, t) in [8u32, 7, 6, 5, 4].iter().enumerate() {
            w.observe(&1u8, s(i as f64, *t, i as u64 * 3), &mut out);
            w.end_round(i as f64, &mut out);
        }
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].kind, EventKind::ExpiringWhileActive);
        assert_eq!(out[0].time_left_s, Some(5));
        // Round without the flow: it expired.
        w.end_round(5.0, &mut out);
        assert_eq!(out.last().unwrap().kind, EventKind::Expired);
        assert_eq!(w.flows(), 0);
        // An idle flow near expiry is normal and vanishes silently.
        let mut w = Watcher::new(cfg);
        let mut out = Vec::new();
        w.observe(&2u8, s(0.0, 3, 9), &mut out);
        w.end_round(0.0, &mut out);
        w.observe(&2u8, s(1.0, 2, 9), &mut out);
        w.end_round(1.0, &mut out);
        w.end_round(2.0, &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn counter_reset_and_missing_accounting_do_not_flag() {
        let samples = [s(0.0, 50, 1000), s(1.0, 49, 10), s(2.0, 48, 20)];
        assert!(run(&samples, WatchConfig::default()).is_empty());
        let none: Vec<_> = (0..6)
            .map(|i| Sample {
                t_s: f64::from(i),
                timeout_s: 50 - i,
                packets: None,
            })
            .collect();
        assert!(run(&none, WatchConfig::default()).is_empty());
    }

    #[test]
    fn fall_much_faster_than_time_is_not_frozen() {
        // The kernel cut the timeout (e.g. to 300 s for unacknowledged data): a drop, not a freeze.
        let samples = [s(0.0, 4000, 0), s(1.0, 300, 10), s(2.0, 100, 20)];
        assert!(run(&samples, WatchConfig::default()).is_empty());
    }

    #[test]
    fn invalid_rising_uses_rate() {
        let mut w: Watcher<u8> = Watcher::new(WatchConfig::default());
        let mut out = Vec::new();
        w.begin_round(0.0, Some(100), &mut out);
        w.begin_round(2.0, Some(101), &mut out); // 0.5/s: below threshold
        assert!(out.is_empty());
        w.begin_round(3.0, Some(301), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, EventKind::InvalidRising);
        assert_eq!(out[0].packets_delta, Some(200));
        assert!(out[0].flow.is_none());
        w.begin_round(4.0, Some(401), &mut out); // still rising: not repeated at once
        assert_eq!(out.len(), 1);
        w.begin_round(64.0, Some(901), &mut out); // still rising a minute later: repeated
        assert_eq!(out.len(), 2);
        w.begin_round(65.0, Some(5), &mut out); // statistic reset (namespace recreated)
        w.begin_round(66.0, Some(5), &mut out); // flat: re-arms
        w.begin_round(67.0, Some(50), &mut out);
        assert_eq!(out.len(), 3);
    }

    /// What Linux 6.18 shows: INVALID packets neither refresh nor count, so the busy flow's
    /// counters stop while the table's INVALID statistic climbs.
    fn silenced(invalid_per_round: u64) -> Vec<Event<u8>> {
        let mut w = Watcher::new(WatchConfig::default());
        let mut out = Vec::new();
        let rounds: [(u32, u64); 7] = [
            (60, 0),
            (60, 100),
            (59, 200), // busy and refreshed
            (53, 300), // fault: part of the interval refreshed
            (52, 300), // silent from here on
            (51, 300),
            (50, 300),
        ];
        for (i, (timeout, packets)) in rounds.iter().enumerate() {
            let t = i as f64;
            let invalid = if i >= 3 {
                (i as u64 - 2) * invalid_per_round
            } else {
                0
            };
            w.begin_round(t, Some(invalid), &mut out);
            w.observe(&1, s(t, *timeout, *packets), &mut out);
            w.end_round(t, &mut out);
        }
        out
    }

    #[test]
    fn silenced_busy_flow_with_rising_invalid_is_frozen() {
        let ev = silenced(100);
        let frozen: Vec<_> = ev.iter().filter(|e| e.kind == EventKind::Frozen).collect();
        assert_eq!(frozen.len(), 1, "{ev:?}");
        assert_eq!(frozen[0].t_s, 5.0);
        assert!(
            frozen[0].evidence.contains("INVALID"),
            "{}",
            frozen[0].evidence
        );
        // The same flow going quiet without INVALID packets is just idle.
        let ev = silenced(0);
        assert!(ev.iter().all(|e| e.kind != EventKind::Frozen), "{ev:?}");
    }

    #[test]
    fn idle_flow_is_not_frozen_by_someone_elses_invalid_packets() {
        let mut w = Watcher::new(WatchConfig::default());
        let mut out = Vec::new();
        for i in 0..8u32 {
            let t = f64::from(i);
            w.begin_round(t, Some(u64::from(i) * 500), &mut out);
            w.observe(&1u8, s(t, 100 - i, 42), &mut out);
            w.end_round(t, &mut out);
        }
        assert!(
            out.iter().all(|e| e.kind == EventKind::InvalidRising),
            "{out:?}"
        );
    }

    #[test]
    fn many_flows_keep_one_state_each() {
        let mut w = Watcher::new(WatchConfig::default());
        let mut out = Vec::new();
        for r in 0..3u32 {
            for k in 0..1000u32 {
                w.observe(&k, s(f64::from(r), 100, u64::from(r)), &mut out);
            }
            w.end_round(f64::from(r), &mut out);
        }
        assert_eq!(w.flows(), 1000);
        assert!(out.is_empty());
    }
}
