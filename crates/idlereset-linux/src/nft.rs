//! A small nftables ruleset model and its loader over nfnetlink (NETLINK_NETFILTER).
//!
//! The lab needs a handful of rule shapes (ct state matches, TCP flag tests, interface names,
//! accept / drop / reject-with-tcp-reset / masquerade), so rules are described with a typed
//! [`Match`] / [`Action`] vocabulary and encoded into nf_tables expressions with the
//! `netlink-packet-netfilter` message types. Expressions that crate does not model (`ct`,
//! `reject`, `masq`, `counter`) are emitted as raw attributes from the kernel's
//! `include/uapi/linux/netfilter/nf_tables.h`. A whole table is loaded in one atomic batch.

use netlink_packet_core::{
    DefaultNla, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REQUEST, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_netfilter::nftables::{
    Bitwise, ChainAttribute, ChainMessage, Cmp, DataAttribute, Expressions, Hook, Immediate,
    InetHookNumber, Meta, MetaKey, NfTablesMessage, Operator, Payload, Register, RuleAttribute,
    RuleMessage, TableAttribute, TableFlags, TableMessage, Verdict, VerdictAttribute,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
    none::ControlMessage,
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

use crate::error::{LinuxError, Result};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;
const NFT_REJECT_TCP_RST: u32 = 1;

/// Connection-tracking states as nftables' `ct state` bit mask.
pub mod ct_state {
    /// Packets conntrack could not track.
    pub const INVALID: u32 = 1;
    /// Packets of a known flow.
    pub const ESTABLISHED: u32 = 2;
    /// Packets related to a known flow (ICMP errors, FTP data).
    pub const RELATED: u32 = 4;
    /// Packets opening a new flow.
    pub const NEW: u32 = 8;
    /// Packets exempt from tracking (`notrack`).
    pub const UNTRACKED: u32 = 64;
}

/// TCP flag bits as in the TCP header's flags byte.
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// Where a base chain hooks in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPoint {
    /// Before routing, on every incoming packet.
    Prerouting,
    /// Packets for this host.
    Input,
    /// Packets routed through this host.
    Forward,
    /// Packets this host sends.
    Output,
    /// After routing, on every outgoing packet.
    Postrouting,
}

/// Base chain type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainType {
    /// A `filter` chain (accept or drop packets).
    Filter,
    /// A `nat` chain (rewrite addresses).
    Nat,
}

/// One condition of a rule; all conditions of a rule must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// Layer-4 protocol number (6 = TCP).
    L4Proto(u8),
    /// `ct state` has any bit of this mask.
    CtStateAny(u32),
    /// `tcp flags & mask != value` (e.g. mask fin|syn|rst|ack, value syn: "not a plain SYN").
    TcpFlagsNot {
        /// Flag bits looked at ([`tcp_flags`]).
        mask: u8,
        /// The value they must not have.
        value: u8,
    },
    /// Output interface name equals.
    OifName(String),
    /// Input interface name equals.
    IifName(String),
}

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Let the packet pass.
    Accept,
    /// Drop the packet silently.
    Drop,
    /// `reject with tcp reset`
    RejectTcpReset,
    /// `masquerade` (nat chains only)
    Masquerade,
}

/// One rule: every match must hold for the action to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Conditions, all of which must hold.
    pub matches: Vec<Match>,
    /// Count packets and bytes matching this rule.
    pub counter: bool,
    /// What to do with a matching packet.
    pub action: Action,
}

/// A base chain attached to a netfilter hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Chain name.
    pub name: String,
    /// The hook it is attached to.
    pub hook: HookPoint,
    /// Filter or NAT.
    pub chain_type: ChainType,
    /// Hook priority; lower runs first.
    pub priority: i32,
    /// Default policy: accept (`true`) or drop (`false`).
    pub policy_accept: bool,
    /// Rules in order.
    pub rules: Vec<Rule>,
}

/// An `inet` table with its base chains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// Table name.
    pub name: String,
    /// The table's base chains.
    pub chains: Vec<Chain>,
}

impl Table {
    /// Load the table in one atomic batch into the current thread's network namespace.
    pub fn apply(&self) -> Result<()> {
        let mut msgs = Vec::new();
        msgs.push(table_msg(&self.name));
        for chain in &self.chains {
            msgs.push(chain_msg(&self.name, chain));
            for rule in &chain.rules {
                msgs.push(rule_msg(&self.name, &chain.name, rule));
            }
        }
        send_batch(msgs, &self.name)
    }
}

/// Delete an `inet` table (and everything in it) in the current namespace. Missing is fine.
pub fn delete_table(name: &str) -> Result<()> {
    let msg = nft_message(
        NfTablesMessage::DeleteTable(TableMessage {
            attributes: vec![TableAttribute::Name(name.to_string())],
        }),
        0,
    );
    match send_batch(vec![msg], name) {
        Err(LinuxError::NetlinkErrno { errno, .. })
            if errno.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// Names of all nftables tables in the current namespace (any family).
pub fn list_tables() -> Result<Vec<String>> {
    let mut msg = NetlinkMessage::from(NetfilterMessage::new(
        NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, 0),
        NfTablesMessage::GetTable(TableMessage { attributes: vec![] }),
    ));
    msg.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    msg.header.sequence_number = 1;
    msg.finalize();
    let sock = open_socket("tables")?;
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut buf);
    sock.send(&buf, 0)
        .map_err(|e| LinuxError::socket("send", "nftables dump", e))?;
    let mut names = Vec::new();
    let mut rx = vec![0u8; 64 * 1024];
    loop {
        let n = sock
            .recv(&mut &mut rx[..], 0)
            .map_err(|e| LinuxError::socket("recv", "nftables dump", e))?;
        let mut off = 0;
        while off < n {
            let m = NetlinkMessage::<NetfilterMessage>::deserialize(&rx[off..n]).map_err(|e| {
                LinuxError::Netlink {
                    op: "parse",
                    object: format!("nftables table dump at offset {off}"),
                    message: e.to_string(),
                }
            })?;
            let len = m.header.length as usize;
            match m.payload {
                NetlinkPayload::Done(_) => return Ok(names),
                NetlinkPayload::Error(e) => {
                    return Err(LinuxError::NetlinkErrno {
                        op: "dump",
                        object: "nftables tables".into(),
                        errno: e.to_io(),
                    });
                }
                NetlinkPayload::InnerMessage(NetfilterMessage {
                    inner: NetfilterMessageInner::NfTables(NfTablesMessage::NewTable(t)),
                    ..
                }) => {
                    for a in t.attributes {
                        if let TableAttribute::Name(n) = a {
                            names.push(n);
                        }
                    }
                }
                _ => {}
            }
            if len == 0 {
                break;
            }
            off += (len + 3) & !3;
        }
    }
}

fn open_socket(what: &str) -> Result<Socket> {
    let mut sock = Socket::new(NETLINK_NETFILTER)
        .map_err(|e| LinuxError::socket("open NETLINK_NETFILTER", what, e))?;
    sock.bind_auto()
        .map_err(|e| LinuxError::socket("bind", what, e))?;
    sock.connect(&SocketAddr::new(0, 0))
        .map_err(|e| LinuxError::socket("connect", what, e))?;
    Ok(sock)
}

fn nft_message(inner: NfTablesMessage, flags: u16) -> NetlinkMessage<NetfilterMessage> {
    let mut m = NetlinkMessage::from(NetfilterMessage::new(
        NetfilterHeader::new(NetfilterProtoFamily::Inet, 0, 0),
        inner,
    ));
    m.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    m
}

fn control(msg: ControlMessage) -> NetlinkMessage<NetfilterMessage> {
    let mut m = NetlinkMessage::from(NetfilterMessage::new(
        NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, NFNL_SUBSYS_NFTABLES),
        msg,
    ));
    m.header.flags = NLM_F_REQUEST;
    m
}

fn send_batch(body: Vec<NetlinkMessage<NetfilterMessage>>, object: &str) -> Result<()> {
    let mut all = Vec::with_capacity(body.len() + 2);
    all.push(control(ControlMessage::BatchBegin));
    all.extend(body);
    all.push(control(ControlMessage::BatchEnd));
    let mut buf = Vec::new();
    let mut acked = Vec::new();
    for (seq, mut m) in all.into_iter().enumerate() {
        m.header.sequence_number = seq as u32 + 1;
        m.finalize();
        if m.header.flags & NLM_F_ACK != 0 {
            acked.push(m.header.sequence_number);
        }
        let start = buf.len();
        buf.resize(start + m.buffer_len(), 0);
        m.serialize(&mut buf[start..]);
    }
    let sock = open_socket(object)?;
    sock.send(&buf, 0)
        .map_err(|e| LinuxError::socket("send", format!("nftables batch for {object}"), e))?;
    let mut rx = vec![0u8; 64 * 1024];
    let mut pending = acked.len();
    while pending > 0 {
        let n = sock
            .recv(&mut &mut rx[..], 0)
            .map_err(|e| LinuxError::socket("recv", format!("nftables batch for {object}"), e))?;
        let mut off = 0;
        while off < n {
            let m = NetlinkMessage::<NetfilterMessage>::deserialize(&rx[off..n]).map_err(|e| {
                LinuxError::Netlink {
                    op: "parse ack",
                    object: object.to_string(),
                    message: e.to_string(),
                }
            })?;
            let len = m.header.length as usize;
            if let NetlinkPayload::Error(e) = m.payload {
                if let Some(code) = e.code {
                    return Err(LinuxError::NetlinkErrno {
                        op: "load nftables batch",
                        object: format!("{object} (message {})", m.header.sequence_number),
                        errno: std::io::Error::from_raw_os_error(-code.get()),
                    });
                }
                pending = pending.saturating_sub(1);
            }
            if len == 0 {
                break;
            }
            off += (len + 3) & !3;
        }
    }
    Ok(())
}

fn table_msg(name: &str) -> NetlinkMessage<NetfilterMessage> {
    nft_message(
        NfTablesMessage::NewTable(TableMessage {
            attributes: vec![
                TableAttribute::Name(name.to_string()),
                TableAttribute::Flags(TableFlags::default()),
            ],
        }),
        NLM_F_CREATE,
    )
}

fn chain_msg(table: &str, chain: &Chain) -> NetlinkMessage<NetfilterMessage> {
    let hook = match chain.hook {
        HookPoint::Prerouting => InetHookNumber::PreRouting,
        HookPoint::Input => InetHookNumber::LocalIn,
        HookPoint::Forward => InetHookNumber::Forward,
        HookPoint::Output => InetHookNumber::LocalOut,
        HookPoint::Postrouting => InetHookNumber::PostRouting,
    };
    let ty = match chain.chain_type {
        ChainType::Filter => "filter",
        ChainType::Nat => "nat",
    };
    nft_message(
        NfTablesMessage::NewChain(ChainMessage {
            attributes: vec![
                ChainAttribute::Table(table.to_string()),
                ChainAttribute::Name(chain.name.clone()),
                ChainAttribute::Hook(vec![
                    Hook::Number(hook.into()),
                    Hook::Priority(chain.priority as u32),
                ]),
                ChainAttribute::Policy(if chain.policy_accept {
                    NF_ACCEPT
                } else {
                    NF_DROP
                }),
                ChainAttribute::Type(ty.to_string()),
            ],
        }),
        NLM_F_CREATE,
    )
}

fn rule_msg(table: &str, chain: &str, rule: &Rule) -> NetlinkMessage<NetfilterMessage> {
    let mut exprs = Vec::new();
    for m in &rule.matches {
        encode_match(m, &mut exprs);
    }
    if rule.counter {
        exprs.push(raw_expr("counter", vec![]));
    }
    match rule.action {
        Action::Accept => exprs.push(verdict(NF_ACCEPT)),
        Action::Drop => exprs.push(verdict(NF_DROP)),
        Action::RejectTcpReset => exprs.push(raw_expr(
            "reject",
            vec![
                DefaultNla::new(1, NFT_REJECT_TCP_RST.to_be_bytes().to_vec()),
                DefaultNla::new(2, vec![0]),
            ],
        )),
        Action::Masquerade => exprs.push(raw_expr("masq", vec![])),
    }
    nft_message(
        NfTablesMessage::NewRule(RuleMessage {
            attributes: vec![
                RuleAttribute::Table(table.to_string()),
                RuleAttribute::Chain(chain.to_string()),
                RuleAttribute::Expressions(exprs.into_iter().map(Into::into).collect()),
            ],
        }),
        NLM_F_CREATE | NLM_F_APPEND,
    )
}

fn verdict(code: u32) -> Expressions {
    Expressions::Immediate(vec![
        Immediate::DestinationRegister(Register::Verdict),
        Immediate::Data(DataAttribute::Verdict(vec![VerdictAttribute::Code(
            Verdict::Other(code),
        )])),
    ])
}

fn raw_expr(name: &str, attributes: Vec<DefaultNla>) -> Expressions {
    Expressions::Other {
        expression_type: name.to_string(),
        attributes,
    }
}

fn cmp(op: Operator, value: Vec<u8>) -> Expressions {
    Expressions::Cmp(vec![
        Cmp::SourceRegister(Register::Reg1),
        Cmp::Op(op),
        Cmp::Data(DataAttribute::Value(value)),
    ])
}

fn ifname_bytes(name: &str) -> Vec<u8> {
    let mut v = vec![0u8; 16];
    let b = name.as_bytes();
    let n = b.len().min(15);
    v[..n].copy_from_slice(&b[..n]);
    v
}

fn encode_match(m: &Match, out: &mut Vec<Expressions>) {
    match m {
        Match::L4Proto(p) => {
            out.push(Expressions::Meta(vec![
                Meta::DestinationRegister(Register::Reg1),
                Meta::Key(MetaKey::L4Proto),
            ]));
            out.push(cmp(Operator::Equal, vec![*p]));
        }
        Match::CtStateAny(mask) => {
            // ct load: NFTA_CT_DREG = 1, NFTA_CT_KEY = 2 (NFT_CT_STATE = 0)
            out.push(raw_expr(
                "ct",
                vec![
                    DefaultNla::new(1, 1u32.to_be_bytes().to_vec()),
                    DefaultNla::new(2, 0u32.to_be_bytes().to_vec()),
                ],
            ));
            out.push(Expressions::Bitwise(vec![
                Bitwise::SourceRegister(Register::Reg1),
                Bitwise::DestinationRegister(Register::Reg1),
                Bitwise::Length(4),
                Bitwise::Mask(DataAttribute::Value(mask.to_ne_bytes().to_vec())),
                Bitwise::Xor(DataAttribute::Value(vec![0; 4])),
            ]));
            out.push(cmp(Operator::NotEqual, vec![0; 4]));
        }
        Match::TcpFlagsNot { mask, value } => {
            out.push(Expressions::Payload(vec![
                Payload::DestinationRegister(Register::Reg1),
                Payload::Base(2), // transport header
                Payload::Offset(13),
                Payload::Len(1),
            ]));
            out.push(Expressions::Bitwise(vec![
                Bitwise::SourceRegister(Register::Reg1),
                Bitwise::DestinationRegister(Register::Reg1),
                Bitwise::Length(1),
                Bitwise::Mask(DataAttribute::Value(vec![*mask])),
                Bitwise::Xor(DataAttribute::Value(vec![0])),
            ]));
            out.push(cmp(Operator::NotEqual, vec![*value]));
        }
        Match::OifName(n) | Match::IifName(n) => {
            let key = if matches!(m, Match::OifName(_)) {
                MetaKey::Oifname
            } else {
                MetaKey::Iifname
            };
            out.push(Expressions::Meta(vec![
                Meta::DestinationRegister(Register::Reg1),
                Meta::Key(key),
            ]));
            out.push(cmp(Operator::Equal, ifname_bytes(n)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_encoding_has_expected_expressions() {
        let rule = Rule {
            matches: vec![
                Match::L4Proto(6),
                Match::CtStateAny(ct_state::NEW),
                Match::TcpFlagsNot {
                    mask: tcp_flags::FIN | tcp_flags::SYN | tcp_flags::RST | tcp_flags::ACK,
                    value: tcp_flags::SYN,
                },
            ],
            counter: true,
            action: Action::RejectTcpReset,
        };
        let msg = rule_msg("t", "c", &rule);
        let dbg = format!("{msg:?}");
        for needle in [
            "\"ct\"",
            "\"reject\"",
            "\"counter\"",
            "L4Proto",
            "Offset(13)",
        ] {
            assert!(dbg.contains(needle), "{needle} missing in {dbg}");
        }
        let mut m = msg;
        m.finalize();
        let mut buf = vec![0u8; m.buffer_len()];
        m.serialize(&mut buf);
        assert_eq!(buf.len() as u32, m.header.length);
    }

    #[test]
    fn interface_names_are_padded() {
        assert_eq!(ifname_bytes("idlereset-db").len(), 16);
        assert_eq!(&ifname_bytes("ab")[..3], b"ab\0");
    }
}
