//! Firewall profiles of the `fw` host: a stateful nftables ruleset on the kernel's conntrack,
//! and the conntrack sysctls that decide when an idle flow is forgotten.
//!
//! - `reject`: established / related traffic passes; a TCP packet that starts a *new* flow
//!   without being a plain SYN (the first packet after the entry expired) is answered with a
//!   TCP reset, which carries the far end's address but is made by the firewall.
//! - `drop`: the same packet is silently dropped (the sender retransmits into a black hole).
//! - `nat`: masquerade towards `db` (the database sees the firewall's address), then as `reject`.
//! - `nat-strict`: NAT with `nf_conntrack_tcp_loose = 0` and INVALID not dropped: the field
//!   report's egress box.
//!
//! With `nf_conntrack_tcp_loose = 0` a mid-stream packet gets no conntrack entry: it is
//! INVALID, not NEW, so it bypasses the reject rule and passes unless `drop_invalid` is set.
//! That is the kernel's behaviour and the lab reports it as such.

use idlereset_linux::nft::{
    Action, Chain, ChainType, HookPoint, Match, Rule, Table, ct_state, tcp_flags,
};
use serde::{Deserialize, Serialize};

/// What the firewall does with a flow it no longer knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// Stale mid-stream packets (NEW without SYN) are answered with a TCP reset from `fw`.
    Reject,
    /// Stale mid-stream packets are dropped silently (the client sees a black hole).
    Drop,
    /// As `Reject`, and `fw` masquerades the flow towards the database (source NAT).
    Nat,
    /// As `Nat`, with `nf_conntrack_tcp_loose=0`: conntrack does not pick up flows in mid-stream.
    NatStrict,
}

impl Profile {
    /// Parse a profile name (`reject`, `drop`, `nat`, `nat-strict`); `None` for anything else.
    pub fn parse(s: &str) -> Option<Profile> {
        match s {
            "reject" => Some(Profile::Reject),
            "drop" => Some(Profile::Drop),
            "nat" => Some(Profile::Nat),
            "nat-strict" => Some(Profile::NatStrict),
            _ => None,
        }
    }

    /// The profile's name, as [`Profile::parse`] accepts it.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Reject => "reject",
            Profile::Drop => "drop",
            Profile::Nat => "nat",
            Profile::NatStrict => "nat-strict",
        }
    }

    /// Does `fw` translate addresses (`nat`, `nat-strict`)?
    pub fn is_nat(self) -> bool {
        matches!(self, Profile::Nat | Profile::NatStrict)
    }
}

/// Everything settable on `fw`, in lab (already scaled) seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FirewallSettings {
    /// The ruleset.
    pub profile: Profile,
    /// `nf_conntrack_tcp_timeout_established`, whole seconds.
    pub established_timeout_s: u32,
    /// `nf_conntrack_tcp_loose`
    pub loose: bool,
    /// `nf_conntrack_tcp_be_liberal`
    pub be_liberal: bool,
    /// Drop packets conntrack classifies as INVALID.
    pub drop_invalid: bool,
}

impl FirewallSettings {
    /// Settings for `profile` with an established timeout of `established_timeout_s` lab seconds;
    /// `loose` on except for [`Profile::NatStrict`], `be_liberal` and `drop_invalid` off.
    pub fn new(profile: Profile, established_timeout_s: u32) -> FirewallSettings {
        FirewallSettings {
            profile,
            established_timeout_s,
            loose: profile != Profile::NatStrict,
            be_liberal: false,
            drop_invalid: false,
        }
    }

    /// Sysctls to write inside `fw`'s namespace.
    pub fn sysctls(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "net.netfilter.nf_conntrack_tcp_timeout_established",
                self.established_timeout_s.to_string(),
            ),
            (
                "net.netfilter.nf_conntrack_tcp_loose",
                u8::from(self.loose).to_string(),
            ),
            (
                "net.netfilter.nf_conntrack_tcp_be_liberal",
                u8::from(self.be_liberal).to_string(),
            ),
            ("net.netfilter.nf_conntrack_acct", "1".into()),
        ]
    }

    /// The nftables table for this profile. `db_link` is fw's link towards the database.
    pub fn table(&self, table_name: &str, db_link: &str) -> Table {
        let mut forward = Vec::new();
        if self.drop_invalid {
            forward.push(Rule {
                matches: vec![Match::CtStateAny(ct_state::INVALID)],
                counter: true,
                action: Action::Drop,
            });
        }
        forward.push(Rule {
            matches: vec![Match::CtStateAny(ct_state::ESTABLISHED | ct_state::RELATED)],
            counter: true,
            action: Action::Accept,
        });
        let stale = match self.profile {
            Profile::Drop => Action::Drop,
            _ => Action::RejectTcpReset,
        };
        forward.push(Rule {
            matches: vec![
                Match::L4Proto(6),
                Match::CtStateAny(ct_state::NEW),
                Match::TcpFlagsNot {
                    mask: tcp_flags::FIN | tcp_flags::SYN | tcp_flags::RST | tcp_flags::ACK,
                    value: tcp_flags::SYN,
                },
            ],
            counter: true,
            action: stale,
        });
        let mut chains = vec![Chain {
            name: "forward".into(),
            hook: HookPoint::Forward,
            chain_type: ChainType::Filter,
            priority: 0,
            policy_accept: true,
            rules: forward,
        }];
        if self.profile.is_nat() {
            chains.push(Chain {
                name: "postrouting".into(),
                hook: HookPoint::Postrouting,
                chain_type: ChainType::Nat,
                priority: 100,
                policy_accept: true,
                rules: vec![Rule {
                    matches: vec![Match::OifName(db_link.to_string())],
                    counter: false,
                    action: Action::Masquerade,
                }],
            });
        }
        Table {
            name: table_name.to_string(),
            chains,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_shape_the_ruleset() {
        let reject = FirewallSettings::new(Profile::Reject, 9).table("t", "idlereset-db");
        assert_eq!(reject.chains.len(), 1);
        assert_eq!(
            reject.chains[0].rules.last().map(|r| r.action),
            Some(Action::RejectTcpReset)
        );
        let drop = FirewallSettings::new(Profile::Drop, 9).table("t", "idlereset-db");
        assert_eq!(
            drop.chains[0].rules.last().map(|r| r.action),
            Some(Action::Drop)
        );
        let nat = FirewallSettings::new(Profile::Nat, 9).table("t", "idlereset-db");
        assert_eq!(nat.chains.len(), 2);
        assert_eq!(nat.chains[1].rules[0].action, Action::Masquerade);
        let strict = FirewallSettings::new(Profile::NatStrict, 9);
        assert!(!strict.loose);
        assert!(!strict.drop_invalid);
        let mut dropping = FirewallSettings::new(Profile::Reject, 9);
        dropping.drop_invalid = true;
        assert_eq!(
            dropping.table("t", "x").chains[0].rules[0].action,
            Action::Drop
        );
    }

    #[test]
    fn sysctls_carry_the_timeout() {
        let s = FirewallSettings::new(Profile::Reject, 9).sysctls();
        assert!(s.contains(&(
            "net.netfilter.nf_conntrack_tcp_timeout_established",
            "9".to_string()
        )));
        assert!(s.contains(&("net.netfilter.nf_conntrack_tcp_loose", "1".to_string())));
    }
}
