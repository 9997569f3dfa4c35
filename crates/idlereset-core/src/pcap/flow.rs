//! Per-flow TCP tracking with bounded memory, and the idle episodes that become events.
//!
//! Every TCP connection in the capture is a `Flow` keyed by its canonical 4-tuple. Per
//! direction we keep the next expected sequence number (to tell retransmissions and keepalive
//! probes from new data) and the TTL / IP ID history that the origin verdict needs.
//!
//! **Idle episodes.** A packet that arrives after a gap of at least one second (or `min_idle`
//! if smaller) opens an episode, remembered with the gap and the side that spoke first. The
//! episode ends when:
//! - the *other* side answers with anything but a RST: the idle gap survived;
//! - a RST arrives: `reset` (or `blackhole` when it is the starter giving up after
//!   unanswered retransmissions or keepalive probes; nothing when the client spoke first after
//!   the gap and then aborted with its own RST, which the TTL / IP ID place at the client);
//! - the server's side, having started the episode, sends a FIN before the client answered
//!   anything: `idle-close` (bare, or after a goodbye message such as PostgreSQL's FATAL for
//!   `idle_session_timeout`), unless what it sent first answered a request the client made
//!   before the gap (a slow response, then `Connection: close`), its keepalive probes went
//!   unanswered (a blackhole), or the client had closed its side; A client's own FIN after idle is a pool retiring the
//!   connection and keeps the episode open: the server's answer means the gap survived, a
//!   middlebox's RST is a `reset`, and retransmitted FINs nobody answers are a `blackhole`;
//! - the flow ends (capture end, eviction) after retransmitted, never answered data, FINs or
//!   probes: `blackhole`.
//!
//! **Sequence numbers** start at whatever each side is first seen sending, and rise by one
//! when the peer acknowledges one more: a capture started mid-flow may first see a keepalive
//! probe, one below the side's next sequence number, and must still know its later probes as
//! probes. A SYN from a side that has sent before, other than a
//! retransmission of its first SYN, starts a new flow on the same 4-tuple (port reuse), so it
//! can neither answer nor open the old flow's episode.
//!
//! Retransmission back-off gaps inside an open episode do not open new episodes, so a silent
//! drop is one event with the idle gap that preceded it. A gap ended by a retransmission, or
//! by new data from a side whose earlier data is still unacknowledged, is a stall, not
//! idleness, and opens no episode either: a busy flow
//! whose packets start being dropped retransmits with growing gaps, and those gaps say
//! nothing about an idle timeout. Only episodes whose gap is at least `min_idle` become idle
//! events.
//!
//! **Active resets.** A RST outside a reportable episode hit a flow that carried traffic
//! within `min_idle`. When its TTL / IP ID show a middlebox made it, the middlebox lost the
//! connection's state while it was in use: an `active-reset` event, with the flow's traffic
//! in the last minute (12 buckets of 5 s per flow) and, when one direction's TTL changed
//! mid-flow while packets kept flowing, that route change (the asymmetric-route signature).
//! An endpoint's RST on a busy flow is an ordinary abort and only reported with
//! [`Config::all_resets`].
//!
//! **Bounded memory** (the `tracker` submodule, which holds the table of flows). A flow that
//! saw a RST or FINs from both sides lingers for `linger` of capture time (late ACKs and
//! repeated RSTs must not start a new flow) and is then summarised and dropped. When the
//! table holds more than `max_flows`, a tenth of the flows is summarised and evicted: finished
//! flows first, then those idle the longest (see `table.rs` for the storage and its measured
//! memory).

use serde::Serialize;

use super::events::{
    Activity, Event, Evidence, IpIdHistory, Kind, Origin, Role, RouteChange, TtlHistory,
    classify_origin,
};
use super::key::{Key, Seg};
use super::packet::{ACK, FIN, RST, SYN};

const NS: u64 = 1_000_000_000;
/// Gaps shorter than this never open an idle episode.
const EPISODE_MIN_NS: u64 = NS;
/// Activity window: this many buckets of `BUCKET_NS`.
const BUCKETS: usize = 12;
const BUCKET_NS: u64 = 5 * NS;
/// A TTL seen on this many consecutive packets of one direction is that direction's path.
const TTL_STABLE: u32 = 3;

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
    /// Also report endpoint resets on busy flows (ordinary aborts) as `active-reset`.
    pub all_resets: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            min_idle_ns: 5 * NS,
            max_flows: 50_000,
            linger_ns: 10 * NS,
            max_listed_flows: 200,
            all_resets: false,
        }
    }
}

/// Totals over all flows.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FlowStats {
    /// TCP flows seen.
    pub flows: u64,
    /// TCP packets seen.
    pub tcp_packets: u64,
    /// Keepalive probes seen (one byte or none, sequence one below the next expected).
    pub keepalive_probes: u64,
    /// Keepalive probes the other side acknowledged.
    pub keepalive_answered: u64,
    /// Retransmitted data segments and FINs.
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
    /// `addr:port` of the side that opened the connection (or the ephemeral-port side).
    pub client: String,
    /// `addr:port` of the side that accepted it.
    pub server: String,
    /// Packets of both directions.
    pub packets: u64,
    /// Time from first to last packet, seconds.
    pub duration_s: f64,
    /// Longest gap between two packets, seconds.
    pub max_idle_s: f64,
    /// Longest idle gap after which the other side still answered.
    pub longest_survived_idle_s: Option<f64>,
    /// Keepalive probes seen.
    pub keepalive_probes: u32,
    /// Keepalive probes acknowledged.
    pub keepalive_answered: u32,
    /// Retransmitted data segments and FINs.
    pub retransmissions: u32,
    /// Idle events found on the flow.
    pub events: u32,
}

/// What one capture showed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Analysis {
    /// Totals over all flows.
    pub stats: FlowStats,
    /// Idle failures and active resets, in time order.
    pub events: Vec<Event>,
    /// Longest idle gap (>= 1 s) that any flow survived.
    pub longest_survived_idle_s: Option<f64>,
    /// Flows that were idle, probed or failed, for the report.
    pub notable_flows: Vec<FlowSummary>,
}

/// A direction's path change: its stable TTL moved from `from` to `to` at `at_ns`.
#[derive(Debug, Clone, Copy)]
struct TtlChange {
    from: u8,
    to: u8,
    at_ns: u64,
    after: u32,
}

/// Per-direction TTL runs, to see a mid-flow path change.
#[derive(Debug, Clone, Copy, Default)]
struct TtlPath {
    run_ttl: u8,
    run_len: u32,
    run_start_ns: u64,
    /// The last TTL seen `TTL_STABLE` times in a row (0: none yet).
    stable: u8,
    change: Option<TtlChange>,
}

impl TtlPath {
    #[inline(always)]
    fn record(&mut self, ttl: u8, ts: u64) {
        if ttl == self.run_ttl && self.run_len > 0 {
            self.run_len = self.run_len.saturating_add(1);
        } else {
            (self.run_ttl, self.run_len, self.run_start_ns) = (ttl, 1, ts);
        }
        if let Some(c) = self.change.as_mut().filter(|c| c.to == ttl) {
            c.after = c.after.saturating_add(1);
        }
        if self.run_len == TTL_STABLE {
            if self.stable != 0 && self.stable != ttl && self.change.is_none() {
                self.change = Some(TtlChange {
                    from: self.stable,
                    to: ttl,
                    at_ns: self.run_start_ns,
                    after: TTL_STABLE,
                });
            }
            self.stable = ttl;
        }
    }
}

/// Packets and payload bytes per 5 s bucket over the last minute.
#[derive(Debug, Clone, Copy, Default)]
struct Window {
    epoch: u64,
    buckets: [(u32, u32); BUCKETS],
}

impl Window {
    #[inline(always)]
    fn advance(&mut self, ts: u64) {
        let e = ts / BUCKET_NS;
        if e > self.epoch {
            let n = (e - self.epoch).min(BUCKETS as u64);
            for i in 1..=n {
                self.buckets[((self.epoch + i) % BUCKETS as u64) as usize] = (0, 0);
            }
            self.epoch = e;
        }
    }

    #[inline(always)]
    fn add(&mut self, ts: u64, bytes: u32) {
        self.advance(ts);
        let b = &mut self.buckets[(self.epoch % BUCKETS as u64) as usize];
        b.0 = b.0.saturating_add(1);
        b.1 = b.1.saturating_add(bytes);
    }

    fn total(&mut self, ts: u64) -> Activity {
        self.advance(ts);
        let (packets, bytes) = self.buckets.iter().fold((0u64, 0u64), |(p, b), x| {
            (p + u64::from(x.0), b + u64::from(x.1))
        });
        Activity {
            window_s: (BUCKETS as u64 * BUCKET_NS / NS) as u32,
            packets,
            bytes,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Side {
    snd_nxt: u32,
    have_seq: bool,
    /// Highest acknowledgment this side sent (what it has of the peer's data).
    max_ack: u32,
    have_ack: bool,
    path: TtlPath,
    ttl: TtlHistory,
    ids: IpIdHistory,
    probes: u32,
    probes_answered: u32,
    probe_pending: bool,
    retrans: u32,
    fin: bool,
    /// The sequence number of this side's SYN, when the capture saw it.
    syn_seq: Option<u32>,
}

impl Side {
    /// The peer acknowledged up to `ack`: this side has sent at least that much. A capture
    /// that starts mid-flow first sees a side at whatever it sends then (a keepalive probe
    /// one below its next sequence number); the peer's ACK corrects that, so its later
    /// probes are seen as probes. Only by that one byte: data the capture missed shows up in
    /// the side's next segment anyway, and a bogus ACK far ahead must not turn the side's
    /// next data into retransmissions.
    #[inline(always)]
    fn acked_to(&mut self, ack: u32) {
        if self.have_seq && ack == self.snd_nxt.wrapping_add(1) {
            self.snd_nxt = ack;
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Episode {
    gap_ns: u64,
    start_ns: u64,
    starter: usize,
    retrans: u32,
    probes: u32,
    /// The server opened it while the client's request before the gap waited for an
    /// answer: what the server sends is that answer, and a FIN after it is an ordinary close.
    awaited: bool,
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
    /// Gap before the last packet that was not a retransmission or RST.
    fresh_gap_ns: u64,
    /// The side that last sent payload ([`NOBODY`] before any).
    last_payload: u8,
    window: Window,
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
    activity: Option<Activity>,
    /// The side whose path changed mid-flow, and how.
    route: Option<(usize, TtlChange)>,
}

/// [`Flow::last_payload`] before any payload.
const NOBODY: u8 = 2;

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
    fn new(ts: u64, key: &Key, sender: usize, seg: &Seg) -> Flow {
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
            fresh_gap_ns: 0,
            last_payload: NOBODY,
            window: Window::default(),
        }
    }

    /// A SYN (without ACK) from side `x` that opens a new connection on this 4-tuple rather
    /// than retransmitting the one this flow began with: `x` has sent before, and not this
    /// SYN (a NAT reusing the port after it forgot the mapping, a client reusing it after a
    /// reset the capture missed). A retransmitted SYN, TCP Fast Open's included, repeats
    /// the first one's sequence number. Such a SYN must neither answer nor open the old flow's
    /// idle episode.
    pub(super) fn is_new_connection(&self, x: usize, seg: &Seg) -> bool {
        let me = &self.sides[x];
        me.have_seq && me.syn_seq != Some(seg.seq)
    }

    /// Side `x` has sent data the peer has not acknowledged (as far as the capture shows).
    fn outstanding(&self, x: usize) -> bool {
        let (me, peer) = (&self.sides[x], &self.sides[1 - x]);
        me.have_seq && peer.have_ack && seq_gt(me.snd_nxt, peer.max_ack)
    }

    /// The origin of a RST / FIN carrying side `s`'s address. After a path change of that
    /// side, its TTL history holds both paths' values; a RST with the old path's TTL while
    /// the endpoint's packets are back on another path was not made by the endpoint.
    fn origin_of(&self, s: usize, seg: &Seg) -> (Origin, Evidence) {
        let side = &self.sides[s];
        let (origin, mut ev) = classify_origin(&side.ttl, &side.ids, seg.ttl, seg.ip_id);
        let p = &side.path;
        if origin == Origin::Endpoint
            && p.change.is_some()
            && p.run_len >= TTL_STABLE
            && seg.ttl != p.run_ttl
        {
            ev.reason = format!(
                "TTL {} differs from the endpoint's packets on its current path ({}); it had that TTL only while its packets took another path",
                seg.ttl, p.run_ttl
            );
            return (Origin::Middlebox, ev);
        }
        (origin, ev)
    }

    /// A RST that ended no reportable idle episode: an `active-reset` when a middlebox made
    /// it (or when every reset is asked for).
    fn active_reset(&mut self, ts: u64, s: usize, seg: &Seg, cfg: &Config) -> Option<Box<Raw>> {
        let (origin, evidence) = self.origin_of(s, seg);
        if origin != Origin::Middlebox && !cfg.all_resets {
            return None;
        }
        let gap_ns = self.episode.map_or(self.fresh_gap_ns, |ep| ep.gap_ns);
        let route = (0..2).find_map(|x| self.sides[x].path.change.map(|c| (x, c)));
        Some(Box::new(Raw {
            kind: Kind::ActiveReset,
            ts_ns: ts,
            gap_ns,
            carries: Some(s),
            trigger: 1 - s,
            retrans: self.episode.map_or(0, |ep| ep.retrans),
            origin,
            evidence: Some(evidence),
            activity: Some(self.window.total(ts)),
            route,
        }))
    }

    /// The common packet, most of any capture: an in-order data segment or a pure ACK, with
    /// no SYN, FIN or RST, on a flow with no open episode, soon after its last packet. Does
    /// for it exactly what [`Flow::on_packet`] would (it can neither be a retransmission nor
    /// a keepalive probe, nor open or end an episode) without the checks that cannot fire,
    /// and returns `true`; leaves the flow untouched and returns `false` for any other
    /// packet. Callgrind on a 150 MB capture from `examples/gen_capture`: the whole run's
    /// instructions fell from 466 M to 390 M, `Flow::on_packet` from 121 M to under 10 M.
    #[inline(always)]
    fn on_common_packet(&mut self, ts: u64, s: usize, seg: &Seg, cfg: &Config) -> bool {
        let me = &self.sides[s];
        let gap = ts.saturating_sub(self.last_ns);
        if seg.flags & (SYN | FIN | RST | ACK) != ACK
            || self.episode.is_some()
            || self.finished_ns.is_some()
            || self.packets == 0
            || !me.have_seq
            || seg.seq != me.snd_nxt
            || seg.payload_len >= 1 << 30
            || gap >= EPISODE_MIN_NS.min(cfg.min_idle_ns).max(1)
        {
            return false;
        }
        self.packets += 1;
        self.max_gap_ns = self.max_gap_ns.max(gap);
        self.last_ns = self.last_ns.max(ts);
        self.window.add(ts, seg.payload_len);
        self.fresh_gap_ns = gap;
        if seg.payload_len > 0 {
            self.last_payload = s as u8;
        }
        let me = &mut self.sides[s];
        me.ttl.record(seg.ttl);
        me.path.record(seg.ttl, ts);
        if !me.have_ack || seq_gt(seg.ack, me.max_ack) {
            me.max_ack = seg.ack;
            me.have_ack = true;
        }
        if let Some(id) = seg.ip_id {
            me.ids.record(id);
        }
        me.snd_nxt = seg.seq.wrapping_add(seg.payload_len);
        let peer = &mut self.sides[1 - s];
        peer.acked_to(seg.ack);
        if peer.probe_pending {
            peer.probe_pending = false;
            peer.probes_answered += 1;
        }
        true
    }

    fn on_packet(&mut self, ts: u64, s: usize, seg: &Seg, cfg: &Config) -> Option<Box<Raw>> {
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
        let (have_seq, snd_nxt) = (self.sides[s].have_seq, self.sides[s].snd_nxt);
        let seq_end = seg
            .seq
            .wrapping_add(seg.payload_len)
            .wrapping_add(u32::from(is_syn) + u32::from(is_fin));
        let probe = !is_rst
            && !is_syn
            && !is_fin
            && seg.has(ACK)
            && have_seq
            && seg.seq == snd_nxt.wrapping_sub(1)
            && (seg.payload_len == 0 || (seg.payload_len == 1 && gap >= EPISODE_MIN_NS));
        let retrans = !probe
            && !is_rst
            && (seg.payload_len > 0 || is_fin)
            && have_seq
            && !seq_gt(seq_end, snd_nxt);

        // Not idle: the sender resends data, or sends more while its earlier data is still
        // unacknowledged (a stall: its packets or the answers are being dropped).
        let stalled = retrans || self.outstanding(s);
        let mut created = false;
        if self.episode.is_none() && !stalled && gap >= EPISODE_MIN_NS.min(cfg.min_idle_ns).max(1) {
            self.episode = Some(Episode {
                gap_ns: gap,
                start_ns: ts,
                starter: s,
                retrans: 0,
                probes: 0,
                awaited: s != self.client && usize::from(self.last_payload) == self.client,
            });
            created = true;
        }
        let mut out = None;
        let reportable_episode = self.episode.is_some_and(|ep| ep.gap_ns >= cfg.min_idle_ns);
        if is_rst && !reportable_episode {
            out = self.active_reset(ts, s, seg, cfg);
            self.episode = None;
        }
        if let Some(ep) = self.episode.as_mut() {
            let reportable = ep.gap_ns >= cfg.min_idle_ns;
            let classify = |sides: &[Side; 2]| {
                classify_origin(&sides[s].ttl, &sides[s].ids, seg.ttl, seg.ip_id)
            };
            if is_rst {
                // The starter giving up after what it sent went unanswered (retransmissions,
                // or keepalive probes: any probe still in an open episode is unanswered).
                let gave_up = s == ep.starter && !created && (ep.retrans > 0 || ep.probes >= 1);
                if reportable && gave_up {
                    out = Some(Box::new(blackhole(ep)));
                } else if reportable {
                    let (origin, evidence) = classify(&self.sides);
                    // The client's own stack aborting its idle connection (SO_LINGER 0, a pool
                    // discarding it, an application giving up on a request) is not a failure.
                    let client_abort =
                        s == self.client && s == ep.starter && origin == Origin::Endpoint;
                    out = (!client_abort).then(|| {
                        Box::new(Raw {
                            kind: Kind::Reset,
                            ts_ns: ts,
                            gap_ns: ep.gap_ns,
                            carries: Some(s),
                            trigger: ep.starter,
                            retrans: ep.retrans,
                            origin,
                            evidence: Some(evidence),
                            activity: None,
                            route: None,
                        })
                    });
                }
                self.episode = None;
            } else if s == ep.starter {
                // A FIN with the server's address before the client answered anything after
                // the gap: an idle close, bare or after a goodbye (PostgreSQL's FATAL for
                // idle_session_timeout, a GOAWAY). Not after the answer
                // to a request the client sent before the gap (a slow response with
                // `Connection: close`), after unanswered keepalive probes (a blackhole), or
                // once the client has closed its side.
                let client_closed = self.sides[self.client].fin;
                // After a request from before the gap, only a bare FIN as the first packet
                // closes idly (the server gave up on the request); what else it sends answers.
                let answered = ep.awaited && !(created && seg.payload_len == 0);
                if is_fin
                    && s != self.client
                    && !client_closed
                    && ep.retrans == 0
                    && ep.probes == 0
                    && !answered
                {
                    if reportable {
                        let (origin, evidence) = classify(&self.sides);
                        out = Some(Box::new(Raw {
                            kind: Kind::IdleClose,
                            ts_ns: ts,
                            gap_ns: ep.gap_ns,
                            carries: Some(s),
                            trigger: s,
                            retrans: 0,
                            origin,
                            evidence: Some(evidence),
                            activity: None,
                            route: None,
                        }));
                    }
                    self.episode = None;
                } else {
                    // A client's FIN after idle is a pool retiring the connection: the episode
                    // stays open so the server's answer (or a middlebox's RST, or nothing)
                    // tells whether the path still held it.
                    ep.retrans += u32::from(retrans);
                    ep.probes += u32::from(probe);
                }
            } else {
                self.survived_ns = Some(self.survived_ns.unwrap_or(0).max(ep.gap_ns));
                self.episode = None;
            }
        }

        if !is_rst {
            self.window.add(ts, seg.payload_len);
            if seg.payload_len > 0 {
                self.last_payload = s as u8;
            }
            if !retrans {
                self.fresh_gap_ns = gap;
            }
            let me = &mut self.sides[s];
            me.ttl.record(seg.ttl);
            me.path.record(seg.ttl, ts);
            if seg.has(ACK) && (!me.have_ack || seq_gt(seg.ack, me.max_ack)) {
                me.max_ack = seg.ack;
                me.have_ack = true;
            }
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
            if is_syn && !have_seq {
                me.syn_seq = Some(seg.seq);
            }
            let peer = &mut self.sides[r];
            if seg.has(ACK) {
                peer.acked_to(seg.ack);
            }
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
        activity: None,
        route: None,
    }
}

/// What an `active-reset` means and where to look next.
fn active_reading(raw: &Raw) -> String {
    let busy = raw.activity.map_or(String::new(), |a| {
        format!(
            " It carried {} packets ({} payload bytes) in the last minute and was idle only {} before it.",
            a.packets,
            a.bytes,
            crate::duration::Human(secs(raw.gap_ns))
        )
    });
    if raw.origin != Origin::Middlebox {
        return format!(
            "An endpoint reset a busy connection (an application abort, a crash or a refused request).{busy} Not an idle timeout."
        );
    }
    let route = if raw.route.is_some() {
        " One direction changed path mid-flow: a stateful box that sees only one direction marks the packets INVALID and its timer freezes until it expires the entry."
    } else {
        ""
    };
    format!(
        "A middlebox reset a flow that was in use, so an idle timeout is not the cause: it lost the connection's state (frozen conntrack timer, NAT remapping, failover, full table or a conntrack flush).{busy}{route} Next: watch the entry on the middlebox with `idlereset conntrack --watch` and its INVALID counters (conntrack statistics `invalid`, nftables `ct state invalid` counters)."
    )
}

fn route_change(direction: Role, c: TtlChange) -> RouteChange {
    let who = match direction {
        Role::Client => "client",
        Role::Server => "server",
    };
    RouteChange {
        direction,
        from_ttl: c.from,
        to_ttl: c.to,
        time: rfc3339(c.at_ns),
        packets_after: u64::from(c.after),
        note: format!(
            "the {who}'s packets changed TTL {} -> {} mid-flow and kept flowing ({} packets after): its direction moved to another path (failover or asymmetric route), which leads a stateful middlebox on either path to INVALID packets and a frozen timer",
            c.from, c.to, c.after
        ),
    }
}

fn secs(ns: u64) -> f64 {
    ns as f64 / NS as f64
}

/// RFC 3339 UTC text for a capture timestamp.
pub(crate) fn rfc3339(ts_ns: u64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(ts_ns))
        .map(|t| t.to_string())
        .unwrap_or_else(|_| ts_ns.to_string())
}

mod tracker;
pub(crate) use tracker::Tracker;

#[cfg(test)]
mod tests;
