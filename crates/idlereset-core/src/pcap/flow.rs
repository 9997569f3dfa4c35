//! Per-flow TCP tracking with bounded memory, and the idle episodes that become events.
//!
//! Every TCP connection in the capture is a [`Flow`] keyed by its canonical 4-tuple. Per
//! direction we keep the next expected sequence number (to tell retransmissions and keepalive
//! probes from new data) and the TTL / IP ID history that the origin verdict needs.
//!
//! **Idle episodes.** A packet that arrives after a gap of at least one second (or `min_idle`
//! if smaller) opens an episode, remembered with the gap and the side that spoke first. The
//! episode ends when:
//! - the *other* side answers with anything but a RST: the idle gap survived;
//! - a RST arrives: `reset` (or `blackhole` when it is the sender giving up after
//!   unanswered retransmissions or keepalive probes; nothing when it is the client's own
//!   stack aborting its idle connection as the first packet after the gap);
//! - the first packet after the gap is a FIN with the server's address: `idle-close` (a
//!   client's own FIN after idle is a pool retiring the connection, not a failure);
//! - the flow ends (capture end, eviction) after retransmitted, never answered data or
//!   probes: `blackhole`.
//!
//! Retransmission back-off gaps inside an open episode do not open new episodes, so a silent
//! drop is one event with the idle gap that preceded it. Only episodes whose gap is at least
//! `min_idle` become events; RSTs and FINs in busy flows (normal closes, refused or aborted
//! requests) are not idle failures.
//!
//! **Bounded memory.** A flow that saw a RST or FINs from both sides lingers for `linger` of
//! capture time (late ACKs and repeated RSTs must not start a new flow) and is then summarised
//! and dropped. When the table holds more than `max_flows`, the tenth of flows idle the
//! longest is summarised and evicted (see `table.rs` for the storage and its measured
//! memory).

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::Serialize;

use super::events::{
    Event, Evidence, IpIdHistory, Kind, Origin, Role, TtlHistory, classify_origin,
};
use super::packet::{ACK, FIN, RST, SYN, TcpSegment};
use super::table::FxHashMap;

const NS: u64 = 1_000_000_000;
/// Gaps shorter than this never open an idle episode.
const EPISODE_MIN_NS: u64 = NS;

/// Tracker settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Only idle gaps at least this long produce events.
    pub min_idle_ns: u64,
    /// Most flows held at once.
    pub max_flows: usize,
    /// How long a closed flow stays in the table (capture time).
    pub linger_ns: u64,
    /// Most per-flow summaries kept for the report.
    pub max_listed_flows: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            min_idle_ns: 5 * NS,
            max_flows: 50_000,
            linger_ns: 10 * NS,
            max_listed_flows: 200,
        }
    }
}

/// Totals over all flows.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FlowStats {
    pub flows: u64,
    pub tcp_packets: u64,
    pub keepalive_probes: u64,
    pub keepalive_answered: u64,
    pub retransmissions: u64,
    /// Longest gap between two packets of one flow.
    pub max_idle_s: f64,
    /// Flows with a gap of at least `min_idle`.
    pub idle_flows: u64,
    /// Flows summarised early because the table was full.
    pub evicted_by_cap: u64,
}

/// One flow, summarised when it ended. Kept for flows that were idle, probed or failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlowSummary {
    pub client: String,
    pub server: String,
    pub packets: u64,
    pub duration_s: f64,
    pub max_idle_s: f64,
    /// Longest idle gap after which the other side still answered.
    pub longest_survived_idle_s: Option<f64>,
    pub keepalive_probes: u32,
    pub keepalive_answered: u32,
    pub retransmissions: u32,
    pub events: u32,
}

/// What one capture showed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Analysis {
    pub stats: FlowStats,
    pub events: Vec<Event>,
    /// Longest idle gap (>= 1 s) that any flow survived.
    pub longest_survived_idle_s: Option<f64>,
    pub notable_flows: Vec<FlowSummary>,
}

/// One endpoint, compact: IPv4 addresses are widened to 128 bits (two words, so the key is
/// 48 bytes, not 64 with u128 alignment); `v6` keeps the families distinct.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Endpoint {
    hi: u64,
    lo: u64,
    port: u16,
    v6: bool,
}

impl Endpoint {
    fn new(ip: IpAddr, port: u16) -> Endpoint {
        match ip {
            IpAddr::V4(a) => Endpoint {
                hi: 0,
                lo: u64::from(a.to_bits()),
                port,
                v6: false,
            },
            IpAddr::V6(a) => {
                let bits = a.to_bits();
                Endpoint {
                    hi: (bits >> 64) as u64,
                    lo: bits as u64,
                    port,
                    v6: true,
                }
            }
        }
    }

    fn ip(&self) -> IpAddr {
        if self.v6 {
            IpAddr::V6(Ipv6Addr::from_bits(
                u128::from(self.hi) << 64 | u128::from(self.lo),
            ))
        } else {
            IpAddr::V4(Ipv4Addr::from_bits(self.lo as u32))
        }
    }
}

/// Canonical flow key: the lower endpoint first. Plain integers rather than `IpAddr` tuples:
/// comparing and hashing the key is on the per-packet path (measured: about a third faster).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    ends: [Endpoint; 2],
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, h: &mut H) {
        let [a, b] = self.ends;
        h.write_u64(a.lo);
        h.write_u64(a.hi);
        h.write_u64(b.lo);
        h.write_u64(b.hi);
        h.write_u64(u64::from(a.port) | u64::from(b.port) << 16 | u64::from(a.v6) << 32);
    }
}

impl Key {
    /// The key and the index (0 or 1) of the sender in it.
    fn of(seg: &TcpSegment) -> (Key, usize) {
        let a = Endpoint::new(seg.src, seg.sport);
        let b = Endpoint::new(seg.dst, seg.dport);
        if a <= b {
            (Key { ends: [a, b] }, 0)
        } else {
            (Key { ends: [b, a] }, 1)
        }
    }

    fn addr(&self, side: usize) -> String {
        let e = self.ends[side];
        SocketAddr::new(e.ip(), e.port).to_string()
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Side {
    snd_nxt: u32,
    have_seq: bool,
    ttl: TtlHistory,
    ids: IpIdHistory,
    probes: u32,
    probes_answered: u32,
    probe_pending: bool,
    retrans: u32,
    fin: bool,
}

#[derive(Debug, Clone, Copy)]
struct Episode {
    gap_ns: u64,
    start_ns: u64,
    starter: usize,
    retrans: u32,
    probes: u32,
}

#[derive(Debug, Clone)]
struct Flow {
    client: usize,
    first_ns: u64,
    last_ns: u64,
    packets: u64,
    max_gap_ns: u64,
    survived_ns: Option<u64>,
    sides: [Side; 2],
    episode: Option<Episode>,
    finished_ns: Option<u64>,
    events: u32,
}

/// An event before it is rendered with addresses.
struct Raw {
    kind: Kind,
    ts_ns: u64,
    gap_ns: u64,
    carries: Option<usize>,
    trigger: usize,
    retrans: u32,
    origin: Origin,
    evidence: Option<Evidence>,
}

/// `a` is after `b` in sequence space.
fn seq_gt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// Which side is the client when no SYN was seen: ports below 1024 are servers, otherwise
/// the higher (ephemeral) port is the client.
fn client_by_ports(key: &Key) -> usize {
    let (p0, p1) = (key.ends[0].port, key.ends[1].port);
    match (p0 < 1024, p1 < 1024) {
        (true, false) => 1,
        (false, true) => 0,
        _ if p0 >= p1 => 0,
        _ => 1,
    }
}

impl Flow {
    fn new(ts: u64, key: &Key, sender: usize, seg: &TcpSegment) -> Flow {
        let client = match (seg.has(SYN), seg.has(ACK)) {
            (true, false) => sender,
            (true, true) => 1 - sender,
            _ => client_by_ports(key),
        };
        Flow {
            client,
            first_ns: ts,
            last_ns: ts,
            packets: 0,
            max_gap_ns: 0,
            survived_ns: None,
            sides: [Side::default(); 2],
            episode: None,
            finished_ns: None,
            events: 0,
        }
    }

    fn on_packet(&mut self, ts: u64, s: usize, seg: &TcpSegment, cfg: &Config) -> Option<Raw> {
        let r = 1 - s;
        let gap = if self.packets == 0 {
            0
        } else {
            ts.saturating_sub(self.last_ns)
        };
        self.packets += 1;
        self.max_gap_ns = self.max_gap_ns.max(gap);
        self.last_ns = self.last_ns.max(ts);
        if self.finished_ns.is_some() {
            return None;
        }
        let (is_rst, is_fin, is_syn) = (seg.has(RST), seg.has(FIN), seg.has(SYN));
        let side = self.sides[s];
        let seq_end = seg
            .seq
            .wrapping_add(seg.payload_len)
            .wrapping_add(u32::from(is_syn) + u32::from(is_fin));
        let probe = !is_rst
            && !is_syn
            && !is_fin
            && seg.has(ACK)
            && side.have_seq
            && seg.seq == side.snd_nxt.wrapping_sub(1)
            && (seg.payload_len == 0 || (seg.payload_len == 1 && gap >= EPISODE_MIN_NS));
        let retrans = !probe
            && !is_rst
            && seg.payload_len > 0
            && side.have_seq
            && !seq_gt(seq_end, side.snd_nxt);

        let mut created = false;
        if self.episode.is_none() && gap >= EPISODE_MIN_NS.min(cfg.min_idle_ns).max(1) {
            self.episode = Some(Episode {
                gap_ns: gap,
                start_ns: ts,
                starter: s,
                retrans: 0,
                probes: 0,
            });
            created = true;
        }
        let mut out = None;
        if let Some(ep) = self.episode.as_mut() {
            let reportable = ep.gap_ns >= cfg.min_idle_ns;
            let classify = |sides: &[Side; 2]| {
                classify_origin(&sides[s].ttl, &sides[s].ids, seg.ttl, seg.ip_id)
            };
            if is_rst {
                let gave_up = s == ep.starter && !created && (ep.retrans > 0 || ep.probes >= 2);
                if reportable && gave_up {
                    out = Some(blackhole(ep));
                } else if reportable {
                    let (origin, evidence) = classify(&self.sides);
                    // The client's own stack aborting its idle connection (SO_LINGER 0, a pool
                    // discarding it) as the first packet after the gap is not a failure.
                    let client_abort = created && s == self.client && origin == Origin::Endpoint;
                    out = (!client_abort).then_some(Raw {
                        kind: Kind::Reset,
                        ts_ns: ts,
                        gap_ns: ep.gap_ns,
                        carries: Some(s),
                        trigger: ep.starter,
                        retrans: ep.retrans,
                        origin,
                        evidence: Some(evidence),
                    });
                }
                self.episode = None;
            } else if s == ep.starter {
                if created && is_fin {
                    // Only a FIN with the server's address is an idle timeout cutting the
                    // client; a client closing its own idle connection is a pool retiring it.
                    if reportable && s != self.client {
                        let (origin, evidence) = classify(&self.sides);
                        out = Some(Raw {
                            kind: Kind::IdleClose,
                            ts_ns: ts,
                            gap_ns: ep.gap_ns,
                            carries: Some(s),
                            trigger: s,
                            retrans: 0,
                            origin,
                            evidence: Some(evidence),
                        });
                    }
                    self.episode = None;
                } else {
                    ep.retrans += u32::from(retrans);
                    ep.probes += u32::from(probe);
                }
            } else {
                self.survived_ns = Some(self.survived_ns.unwrap_or(0).max(ep.gap_ns));
                self.episode = None;
            }
        }

        if !is_rst {
            let me = &mut self.sides[s];
            me.ttl.record(seg.ttl);
            if let Some(id) = seg.ip_id {
                me.ids.record(id);
            }
            if !me.have_seq || seq_gt(seq_end, me.snd_nxt) {
                me.snd_nxt = seq_end;
                me.have_seq = true;
            }
            me.retrans += u32::from(retrans);
            if probe {
                me.probes += 1;
                me.probe_pending = true;
            }
            me.fin |= is_fin;
            let peer = &mut self.sides[r];
            if peer.probe_pending {
                peer.probe_pending = false;
                peer.probes_answered += 1;
            }
        }
        if is_rst || (self.sides[0].fin && self.sides[1].fin) {
            self.finished_ns = Some(ts);
        }
        if out.is_some() {
            self.events += 1;
        }
        out
    }

    /// The event owed when the flow ends inside an unanswered episode.
    fn at_end(&mut self, cfg: &Config) -> Option<Raw> {
        let ep = self.episode.take()?;
        (ep.gap_ns >= cfg.min_idle_ns && (ep.retrans > 0 || ep.probes >= 2)).then(|| {
            self.events += 1;
            blackhole(&ep)
        })
    }
}

fn blackhole(ep: &Episode) -> Raw {
    Raw {
        kind: Kind::Blackhole,
        ts_ns: ep.start_ns,
        gap_ns: ep.gap_ns,
        carries: None,
        trigger: ep.starter,
        retrans: ep.retrans.max(ep.probes.saturating_sub(1)),
        origin: Origin::Unknown,
        evidence: None,
    }
}

fn secs(ns: u64) -> f64 {
    ns as f64 / NS as f64
}

/// RFC 3339 UTC text for a capture timestamp.
pub fn rfc3339(ts_ns: u64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(ts_ns))
        .map(|t| t.to_string())
        .unwrap_or_else(|_| ts_ns.to_string())
}

/// Tracks every TCP flow of one capture.
pub struct Tracker {
    cfg: Config,
    flows: FxHashMap<Key, Flow>,
    finished: VecDeque<(u64, Key)>,
    now: u64,
    out: Analysis,
    survived_ns: Option<u64>,
}

impl Tracker {
    pub fn new(cfg: Config) -> Tracker {
        Tracker {
            cfg,
            flows: FxHashMap::default(),
            finished: VecDeque::new(),
            now: 0,
            out: Analysis::default(),
            survived_ns: None,
        }
    }

    /// Flows currently held.
    pub fn live_flows(&self) -> usize {
        self.flows.len()
    }

    /// Account one TCP segment captured at `ts_ns`.
    pub fn packet(&mut self, ts_ns: u64, seg: &TcpSegment) {
        self.out.stats.tcp_packets += 1;
        self.now = self.now.max(ts_ns);
        self.expire_finished();
        let (key, sender) = Key::of(seg);
        let new_syn = seg.has(SYN) && !seg.has(ACK);
        if new_syn
            && self
                .flows
                .get(&key)
                .is_some_and(|f| f.finished_ns.is_some())
        {
            if let Some(old) = self.flows.remove(&key) {
                self.close(key, old);
            }
        }
        let (raw, client) = if let Some(f) = self.flows.get_mut(&key) {
            let was_finished = f.finished_ns.is_some();
            let raw = f.on_packet(ts_ns, sender, seg, &self.cfg);
            if let Some(t) = f.finished_ns.filter(|_| !was_finished) {
                self.finished.push_back((t, key));
            }
            (raw, f.client)
        } else {
            let mut f = Flow::new(ts_ns, &key, sender, seg);
            let raw = f.on_packet(ts_ns, sender, seg, &self.cfg);
            if let Some(t) = f.finished_ns {
                self.finished.push_back((t, key));
            }
            let client = f.client;
            self.flows.insert(key, f);
            (raw, client)
        };
        if let Some(raw) = raw {
            self.emit(&key, client, raw);
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
            evidence: raw.evidence,
        });
    }

    fn expire_finished(&mut self) {
        while let Some(&(t, key)) = self.finished.front() {
            if t.saturating_add(self.cfg.linger_ns) > self.now {
                break;
            }
            self.finished.pop_front();
            if self
                .flows
                .get(&key)
                .is_some_and(|f| f.finished_ns == Some(t))
            {
                if let Some(f) = self.flows.remove(&key) {
                    self.close(key, f);
                }
            }
        }
    }

    fn evict_oldest(&mut self) {
        // Find the last-packet time of the tenth idle the longest, then evict up to that many
        // flows at or before it. Only timestamps are collected for the selection (8 bytes per
        // flow instead of 56): this runs when the table is at its largest.
        let mut times: Vec<u64> = self.flows.values().map(|f| f.last_ns).collect();
        let n = (times.len() / 10).max(1);
        let cut = if n < times.len() {
            *times.select_nth_unstable(n - 1).1
        } else {
            u64::MAX
        };
        let victims: Vec<Key> = self
            .flows
            .iter()
            .filter(|(_, f)| f.last_ns <= cut)
            .map(|(k, _)| *k)
            .take(n)
            .collect();
        drop(times);
        for key in victims {
            if let Some(f) = self.flows.remove(&key) {
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
            if let Some(f) = self.flows.remove(&key) {
                self.close(key, f);
            }
        }
        self.out.longest_survived_idle_s = self.survived_ns.map(secs);
        self.out.events.sort_by(|a, b| a.ts.total_cmp(&b.ts));
        self.out
    }
}

#[cfg(test)]
mod tests;
