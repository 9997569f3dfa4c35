//! Idle events and who caused them: the endpoint whose address a packet carries, or a
//! middlebox forging it.
//!
//! A firewall or NAT that lost a flow's state answers the next packet with a RST carrying the
//! *peer's* address. The address is therefore no evidence; what the middlebox cannot fake
//! without effort is how the peer's packets really look at the capture point:
//!
//! - **TTL / hop limit.** Every packet the endpoint sends leaves with the same initial TTL and
//!   crosses the same routers, so at one capture point its packets arrive with one TTL (two
//!   after a route change). A middlebox sits at a different distance: its RST arrives with a
//!   TTL none of the endpoint's packets had. We compare against the TTLs *observed* from that
//!   endpoint, never against a guessed initial 64/128/255, so routers between the capture
//!   point and the endpoint do not matter. A difference of one hop is enough.
//! - **IPv4 identification**, as a second, weaker signal. Linux gives each connected socket an
//!   incrementing ID; but Linux also sends RSTs that have no socket (the reply to a segment for
//!   an unknown connection) with ID 0 and DF set, and nftables' `reject with tcp reset` does the
//!   same. ID 0 is therefore *neutral*. A non-zero ID far outside an endpoint's incrementing
//!   sequence, or a non-zero ID from an endpoint whose packets always carry 0, points to another
//!   IP stack: a middlebox.
//!
//! A packet that fits both signals is `endpoint`; with no packet from that endpoint to compare
//! against, the origin is `unknown`. A middlebox at the same distance as the endpoint that
//! also copies its ID behaviour cannot be told apart; we say `endpoint` then.

use serde::Serialize;

/// How many distinct TTL values we remember per endpoint (route changes, ECMP).
const TTL_SLOTS: usize = 4;
/// An ID within this distance after the endpoint's last ID is "in sequence" (other
/// connections of the same host may share the counter on some stacks).
const ID_WINDOW: u16 = 4096;

/// What kind of idle failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A RST answered the first exchange after an idle period.
    Reset,
    /// Data after idle was retransmitted and never acknowledged.
    Blackhole,
    /// A FIN was the first packet after a long idle (endpoint or proxy idle timeout).
    IdleClose,
    /// A RST on a flow that carried traffic within `min_idle`: state lost without idleness
    /// (frozen conntrack timer, NAT remap, failover, full table, conntrack flush). Only
    /// middlebox-made ones are reported unless every reset is asked for; never an idle
    /// timeout, so never part of the idle bracket.
    ActiveReset,
}

impl Kind {
    /// An idle failure: one of the kinds that bound the path's idle timeout.
    pub(crate) fn is_idle_failure(self) -> bool {
        matches!(self, Kind::Reset | Kind::Blackhole | Kind::IdleClose)
    }
}

/// Who sent the packet that ended the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// A box between the endpoints (TTL or IP ID unlike the endpoint's own packets).
    Middlebox,
    /// The endpoint whose address the packet carries.
    Endpoint,
    /// No packet of that endpoint to compare against.
    Unknown,
}

/// Which endpoint's address a packet carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The side that opened the connection.
    Client,
    /// The side that accepted it.
    Server,
}

/// The TTL and IP ID evidence behind an origin verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evidence {
    /// TTL / hop limit of the RST or FIN.
    pub ttl: u8,
    /// TTLs of that endpoint's own packets at the capture point.
    pub expected_ttl: Vec<u8>,
    /// IPv4 identification of the RST or FIN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_id: Option<u16>,
    /// The endpoint's IP ID behaviour: "incrementing", "zero", "random", "unknown" or "ipv6".
    pub ip_id_pattern: &'static str,
    /// One sentence explaining the verdict.
    pub reason: String,
}

/// One idle event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// What kind of idle failure.
    pub kind: Kind,
    /// `addr:port` of the side that opened the connection (or the ephemeral-port side).
    pub client: String,
    /// `addr:port` of the side that accepted the connection.
    pub server: String,
    /// Who sent the RST or FIN, from TTL and IP ID.
    pub origin: Origin,
    /// Idle gap before the exchange that failed, in seconds.
    pub idle_before_s: f64,
    /// Capture time of the RST / FIN / first unanswered packet, RFC 3339 UTC.
    pub time: String,
    /// The same time as seconds since the Unix epoch.
    pub ts: f64,
    /// Whose address the RST / FIN carries (`null` for a blackhole).
    pub carries: Option<Role>,
    /// Who sent the first packet after the idle period.
    pub trigger: Role,
    /// Retransmissions of the post-idle data before the event.
    pub retransmissions: u32,
    /// TTL and IP ID behind `origin`, for a RST or FIN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
    /// The flow's traffic in the minute before the event (`active-reset` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_minute: Option<Activity>,
    /// What the event means and what to look at next (`active-reset` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reading: Option<String>,
    /// One direction of the flow changed path mid-flow (its TTL changed and the packets kept
    /// flowing): the asymmetric-route signature that makes a stateful box drop packets as
    /// INVALID and freeze its timer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route_change: Option<RouteChange>,
    /// Set when the idle gap before the event spans a damaged part of the capture: the gap
    /// may hide lost records, so the event is uncertain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub damage: Option<String>,
}

/// Packets and TCP payload bytes of one flow over a recent window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Activity {
    /// Length of the window in seconds (the last 55 to 60 s, counted in 5 s buckets).
    pub window_s: u32,
    /// Packets in the window.
    pub packets: u64,
    /// TCP payload bytes in the window.
    pub bytes: u64,
}

/// A mid-flow TTL change of one direction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteChange {
    /// Whose packets changed path.
    pub direction: Role,
    /// TTL (hop limit) before the change.
    pub from_ttl: u8,
    /// TTL (hop limit) after the change.
    pub to_ttl: u8,
    /// When the new TTL started, RFC 3339 UTC.
    pub time: String,
    /// Packets of that direction seen with the new TTL.
    pub packets_after: u64,
    /// One sentence on what it means.
    pub note: String,
}

/// The TTLs observed from one endpoint.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TtlHistory {
    slots: [(u8, u16); TTL_SLOTS],
}

impl TtlHistory {
    /// Counts one packet's TTL; the rarest value makes room when all slots are taken.
    #[inline(always)]
    pub fn record(&mut self, ttl: u8) {
        if let Some(slot) = self.slots.iter_mut().find(|s| s.1 > 0 && s.0 == ttl) {
            slot.1 = slot.1.saturating_add(1);
            return;
        }
        // Replace an empty slot, else the rarest value.
        if let Some(slot) = self.slots.iter_mut().min_by_key(|s| s.1) {
            *slot = (ttl, 1);
        }
    }

    /// No TTL recorded yet.
    pub fn is_empty(&self) -> bool {
        self.slots.iter().all(|s| s.1 == 0)
    }

    /// Whether `ttl` was seen.
    pub fn contains(&self, ttl: u8) -> bool {
        self.slots.iter().any(|s| s.1 > 0 && s.0 == ttl)
    }

    /// The observed values, most frequent first.
    pub fn values(&self) -> Vec<u8> {
        let mut v: Vec<(u8, u16)> = self.slots.iter().copied().filter(|s| s.1 > 0).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.into_iter().map(|s| s.0).collect()
    }
}

/// How one endpoint numbers its IPv4 packets.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct IpIdHistory {
    last: u16,
    seen: u32,
    incrementing: u32,
    zero: u32,
}

/// An endpoint's IPv4 ID behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdPattern {
    /// Fewer than three packets seen.
    Unknown,
    /// Each ID follows the previous one closely (a per-host or per-flow counter).
    Incrementing,
    /// Always zero (DF packets of stacks that do not number them).
    Zero,
    /// Neither: no usable sequence.
    Random,
}

impl IdPattern {
    fn name(self) -> &'static str {
        match self {
            IdPattern::Unknown => "unknown",
            IdPattern::Incrementing => "incrementing",
            IdPattern::Zero => "zero",
            IdPattern::Random => "random",
        }
    }
}

impl IpIdHistory {
    /// Counts one packet's IPv4 ID.
    #[inline(always)]
    pub fn record(&mut self, id: u16) {
        if self.seen > 0 {
            let d = id.wrapping_sub(self.last);
            if (1..=ID_WINDOW).contains(&d) {
                self.incrementing += 1;
            }
        }
        if id == 0 {
            self.zero += 1;
        }
        self.last = id;
        self.seen = self.seen.saturating_add(1);
    }

    /// The behaviour of the IDs recorded so far.
    pub fn pattern(&self) -> IdPattern {
        if self.seen < 3 {
            IdPattern::Unknown
        } else if self.zero == self.seen {
            IdPattern::Zero
        } else if self.incrementing * 10 >= (self.seen - 1) * 8 {
            IdPattern::Incrementing
        } else {
            IdPattern::Random
        }
    }

    fn in_sequence(&self, id: u16) -> bool {
        (1..=ID_WINDOW).contains(&id.wrapping_sub(self.last))
    }
}

/// Decide whether a RST / FIN carrying an endpoint's address came from that endpoint.
pub(crate) fn classify_origin(
    ttls: &TtlHistory,
    ids: &IpIdHistory,
    ttl: u8,
    ip_id: Option<u16>,
) -> (Origin, Evidence) {
    let expected_ttl = ttls.values();
    let pattern = match ip_id {
        None => "ipv6",
        Some(_) => ids.pattern().name(),
    };
    let mut ev = Evidence {
        ttl,
        expected_ttl,
        ip_id,
        ip_id_pattern: pattern,
        reason: String::new(),
    };
    if ttls.is_empty() {
        ev.reason = "no packet from that endpoint to compare against".into();
        return (Origin::Unknown, ev);
    }
    if !ttls.contains(ttl) {
        ev.reason = format!(
            "TTL {ttl} differs from the endpoint's own packets ({})",
            join(&ev.expected_ttl)
        );
        return (Origin::Middlebox, ev);
    }
    if let Some(id) = ip_id.filter(|&id| id != 0) {
        match ids.pattern() {
            IdPattern::Incrementing if !ids.in_sequence(id) => {
                ev.reason = format!(
                    "IP ID {id} is outside the endpoint's incrementing sequence (last {})",
                    ids.last
                );
                return (Origin::Middlebox, ev);
            }
            IdPattern::Zero => {
                ev.reason = format!("IP ID {id} but the endpoint always sends ID 0");
                return (Origin::Middlebox, ev);
            }
            _ => {}
        }
    }
    ev.reason = format!("TTL {ttl} matches the endpoint's own packets");
    (Origin::Endpoint, ev)
}

fn join(v: &[u8]) -> String {
    v.iter().map(u8::to_string).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ttl_hist(values: &[u8]) -> TtlHistory {
        let mut h = TtlHistory::default();
        values.iter().for_each(|&t| h.record(t));
        h
    }

    fn id_hist(values: &[u16]) -> IpIdHistory {
        let mut h = IpIdHistory::default();
        values.iter().for_each(|&t| h.record(t));
        h
    }

    #[test]
    fn ttl_one_hop_off_is_a_middlebox() {
        let (o, ev) = classify_origin(&ttl_hist(&[63, 63, 63]), &id_hist(&[]), 64, Some(0));
        assert_eq!(o, Origin::Middlebox);
        assert_eq!(ev.expected_ttl, vec![63]);
        assert!(ev.reason.contains("TTL 64"), "{}", ev.reason);
    }

    #[test]
    fn matching_ttl_and_id_zero_is_the_endpoint() {
        // Linux answers a segment for an unknown connection with ID 0: neutral evidence.
        let ids = id_hist(&[10, 11, 12, 13]);
        assert_eq!(
            classify_origin(&ttl_hist(&[57]), &ids, 57, Some(0)).0,
            Origin::Endpoint
        );
        assert_eq!(
            classify_origin(&ttl_hist(&[57]), &ids, 57, Some(14)).0,
            Origin::Endpoint
        );
    }

    #[test]
    fn id_out_of_sequence_is_a_middlebox() {
        let ids = id_hist(&[10, 11, 12, 13]);
        assert_eq!(ids.pattern(), IdPattern::Incrementing);
        assert_eq!(
            classify_origin(&ttl_hist(&[57]), &ids, 57, Some(40000)).0,
            Origin::Middlebox
        );
        let zeros = id_hist(&[0, 0, 0]);
        assert_eq!(
            classify_origin(&ttl_hist(&[57]), &zeros, 57, Some(77)).0,
            Origin::Middlebox
        );
        let random = id_hist(&[10, 30000, 5, 60000]);
        assert_eq!(random.pattern(), IdPattern::Random);
        assert_eq!(
            classify_origin(&ttl_hist(&[57]), &random, 57, Some(40000)).0,
            Origin::Endpoint
        );
    }

    #[test]
    fn no_history_is_unknown_and_route_changes_are_remembered() {
        assert_eq!(
            classify_origin(&ttl_hist(&[]), &id_hist(&[]), 64, None).0,
            Origin::Unknown
        );
        let h = ttl_hist(&[60, 60, 59, 60]);
        assert_eq!(h.values(), vec![60, 59]);
        assert_eq!(
            classify_origin(&h, &id_hist(&[]), 59, None).0,
            Origin::Endpoint
        );
    }

    #[test]
    fn ttl_history_keeps_the_common_values_when_full() {
        let h = ttl_hist(&[1, 1, 1, 2, 2, 3, 4, 5]);
        assert!(h.contains(1) && h.contains(2) && h.contains(5));
        assert!(!h.contains(3) || !h.contains(4));
    }
}
