//! The table of one capture's flows: each packet goes to its flow (created on its first
//! packet), events come out as flows report them, flows that ended linger for `linger` of
//! capture time and are then summarised and dropped, and above `max_flows` a tenth of the
//! flows is evicted, finished ones first, then those idle the longest. What happens inside one flow is the parent module's `Flow`.
//!
//! A child module of `flow` so that it reads a flow's fields directly (the per-packet path
//! goes through here once per segment; accessors would only restate the fields).

use std::collections::VecDeque;

use super::*;
use crate::pcap::table::{FlowTable, hash};

/// Tracks every TCP flow of one capture.
pub(crate) struct Tracker {
    cfg: Config,
    flows: FlowTable<Flow>,
    finished: VecDeque<(u64, Key)>,
    /// Capture time at which the front of `finished` expires (`u64::MAX`: none), so the
    /// per-packet check is one comparison.
    next_expiry: u64,
    /// Whether [`Flow::on_common_packet`] may take the common packet (tests turn it off to
    /// check it against the general way).
    common_fast_path: bool,
    now: u64,
    out: Analysis,
    survived_ns: Option<u64>,
}

impl Tracker {
    /// A tracker with no flows yet.
    pub fn new(cfg: Config) -> Tracker {
        Tracker {
            cfg,
            flows: FlowTable::new(),
            finished: VecDeque::new(),
            next_expiry: u64::MAX,
            common_fast_path: true,
            now: 0,
            out: Analysis::default(),
            survived_ns: None,
        }
    }

    /// The same tracker taking every packet the general way.
    #[cfg(test)]
    pub fn without_fast_path(mut self) -> Tracker {
        self.common_fast_path = false;
        self
    }

    /// Flows currently held.
    #[cfg(test)]
    pub fn live_flows(&self) -> usize {
        self.flows.len()
    }

    /// Start bringing the flow of the key hashed `h` (see [`hash`]) into the cache, so that
    /// it is there when its packet comes. Changes nothing.
    #[inline]
    pub fn prefetch(&self, h: u64) {
        self.flows.prefetch(h);
    }

    /// Account one TCP segment captured at `ts_ns`.
    #[inline]
    pub fn packet(&mut self, ts_ns: u64, seg: &Seg) {
        self.packet_hashed(ts_ns, seg, hash(&seg.key))
    }

    /// [`Tracker::packet`] with `h`, the [`hash`] of the segment's key, computed by the
    /// caller (who hashed it already to prefetch its flow).
    #[inline]
    pub(crate) fn packet_hashed(&mut self, ts_ns: u64, seg: &Seg, h: u64) {
        debug_assert_eq!(h, hash(&seg.key), "the hash of another key");
        self.out.stats.tcp_packets += 1;
        self.now = self.now.max(ts_ns);
        if self.now >= self.next_expiry {
            self.expire_finished();
        }
        // By reference: the key stays in the batch (a copy of it was measurable).
        let (key, sender) = (&seg.key, seg.side());
        if self.common_fast_path
            && let Some(f) = self.flows.get_mut(h, key)
            && f.on_common_packet(ts_ns, sender, seg, &self.cfg)
        {
            return;
        }
        let new_syn = seg.has(SYN) && !seg.has(ACK);
        if new_syn
            && self
                .flows
                .get(h, key)
                .is_some_and(|f| f.finished_ns.is_some() || f.is_new_connection(sender, seg))
            && let Some(old) = self.flows.remove(h, key)
        {
            self.close(*key, old);
        }
        let (raw, client, finished) = if let Some(f) = self.flows.get_mut(h, key) {
            let was_finished = f.finished_ns.is_some();
            let raw = f.on_packet(ts_ns, sender, seg, &self.cfg);
            (raw, f.client, f.finished_ns.filter(|_| !was_finished))
        } else {
            let mut f = Flow::new(ts_ns, key, sender, seg);
            let raw = f.on_packet(ts_ns, sender, seg, &self.cfg);
            let (client, finished) = (f.client, f.finished_ns);
            self.flows.insert_new(h, *key, f);
            (raw, client, finished)
        };
        if let Some(t) = finished {
            self.push_finished(t, *key);
        }
        if let Some(raw) = raw {
            self.emit(key, client, *raw);
        }
        if self.flows.len() > self.cfg.max_flows {
            self.evict_oldest();
        }
    }

    fn emit(&mut self, key: &Key, client: usize, raw: Raw) {
        let role = |side: usize| {
            if side == client {
                Role::Client
            } else {
                Role::Server
            }
        };
        self.out.events.push(Event {
            kind: raw.kind,
            client: key.addr(client),
            server: key.addr(1 - client),
            origin: raw.origin,
            idle_before_s: secs(raw.gap_ns),
            time: rfc3339(raw.ts_ns),
            ts: secs(raw.ts_ns),
            carries: raw.carries.map(role),
            trigger: role(raw.trigger),
            retransmissions: raw.retrans,
            reading: (raw.kind == Kind::ActiveReset).then(|| active_reading(&raw)),
            evidence: raw.evidence,
            last_minute: raw.activity,
            route_change: raw.route.map(|(x, c)| route_change(role(x), c)),
            damage: None,
        });
    }

    fn push_finished(&mut self, t: u64, key: Key) {
        if self.finished.is_empty() {
            self.next_expiry = t.saturating_add(self.cfg.linger_ns);
        }
        self.finished.push_back((t, key));
    }

    fn expire_finished(&mut self) {
        while let Some(&(t, key)) = self.finished.front() {
            if t.saturating_add(self.cfg.linger_ns) > self.now {
                break;
            }
            self.finished.pop_front();
            let h = hash(&key);
            if self
                .flows
                .get(h, &key)
                .is_some_and(|f| f.finished_ns == Some(t))
                && let Some(f) = self.flows.remove(h, &key)
            {
                self.close(key, f);
            }
        }
        self.next_expiry = self
            .finished
            .front()
            .map_or(u64::MAX, |&(t, _)| t.saturating_add(self.cfg.linger_ns));
    }

    fn evict_oldest(&mut self) {
        // Find the last-packet time of the tenth idle the longest, then evict up to that many
        // flows at or before it. Only timestamps are collected for the selection (8 bytes per
        // flow instead of 56): this runs when the table is at its largest.
        // Finished flows that only linger go first (as if their last packet were at time 0):
        // a live flow idle the longest may be the one whose failure is still to come.
        let age = |f: &Flow| f.finished_ns.map_or(f.last_ns, |_| 0);
        let mut times: Vec<u64> = self.flows.iter().map(|(_, f)| age(f)).collect();
        let n = (times.len() / 10).max(1);
        let cut = if n < times.len() {
            *times.select_nth_unstable(n - 1).1
        } else {
            u64::MAX
        };
        let victims: Vec<Key> = self
            .flows
            .iter()
            .filter(|(_, f)| age(f) <= cut)
            .map(|(k, _)| *k)
            .take(n)
            .collect();
        drop(times);
        for key in victims {
            if let Some(f) = self.flows.remove(hash(&key), &key) {
                self.out.stats.evicted_by_cap += 1;
                self.close(key, f);
            }
        }
    }

    /// Summarise a flow that ended and drop it.
    fn close(&mut self, key: Key, mut f: Flow) {
        if let Some(raw) = f.at_end(&self.cfg) {
            self.emit(&key, f.client, raw);
        }
        let st = &mut self.out.stats;
        st.flows += 1;
        let probes: u32 = f.sides.iter().map(|s| s.probes).sum();
        let answered: u32 = f.sides.iter().map(|s| s.probes_answered).sum();
        let retrans: u32 = f.sides.iter().map(|s| s.retrans).sum();
        st.keepalive_probes += u64::from(probes);
        st.keepalive_answered += u64::from(answered);
        st.retransmissions += u64::from(retrans);
        st.max_idle_s = st.max_idle_s.max(secs(f.max_gap_ns));
        let idle = f.max_gap_ns >= self.cfg.min_idle_ns;
        st.idle_flows += u64::from(idle);
        if let Some(s) = f.survived_ns {
            self.survived_ns = Some(self.survived_ns.unwrap_or(0).max(s));
        }
        if (idle || probes > 0 || f.events > 0)
            && self.out.notable_flows.len() < self.cfg.max_listed_flows
        {
            self.out.notable_flows.push(FlowSummary {
                client: key.addr(f.client),
                server: key.addr(1 - f.client),
                packets: f.packets,
                duration_s: secs(f.last_ns.saturating_sub(f.first_ns)),
                max_idle_s: secs(f.max_gap_ns),
                longest_survived_idle_s: f.survived_ns.map(secs),
                keepalive_probes: probes,
                keepalive_answered: answered,
                retransmissions: retrans,
                events: f.events,
            });
        }
    }

    /// End of capture: summarise every remaining flow, oldest first (deterministic output).
    /// Only keys are collected, not flows: the table may be at its largest here.
    pub fn finish(mut self) -> Analysis {
        let mut order: Vec<(u64, Key)> = self.flows.iter().map(|(k, f)| (f.first_ns, *k)).collect();
        order.sort_unstable();
        for (_, key) in order {
            if let Some(f) = self.flows.remove(hash(&key), &key) {
                self.close(key, f);
            }
        }
        self.out.longest_survived_idle_s = self.survived_ns.map(secs);
        self.out.events.sort_by(|a, b| a.ts.total_cmp(&b.ts));
        self.out
    }
}
