//! Conntrack over ctnetlink (`NETLINK_NETFILTER`, subsystem `NFNL_SUBSYS_CTNETLINK`): dump the
//! table, read its statistics, insert entries. What `conntrack -L / -S / -C / -I` do, without
//! shelling out.
//!
//! Everything acts on the network namespace of the calling thread; pick another one with
//! [`crate::NetNs::run`]. Dumps stream: every received datagram (at most 64 KiB) is decoded and
//! its entries handed to a callback before the next one is read, so memory does not grow with
//! the table. [`Ctnetlink::dump_count`] only counts messages without decoding them: it measures
//! what the kernel and the socket cost, the baseline the decoding is compared against.
//!
//! Message types and attribute numbers: `uapi/linux/netfilter/nfnetlink_conntrack.h`.

pub(crate) mod entry;
pub(crate) mod fast;
mod stats;
#[cfg(test)]
mod tests;

use netlink_packet_core::DefaultNla;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoInfo, ProtoInfoTCP, ProtoTuple, Status,
    Tuple as NlTuple,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::protocols::NETLINK_NETFILTER;

pub use self::entry::{
    ConntrackEntry, Counters, CtTcpState, IPS_ASSURED, IPS_SEEN_REPLY, STATUS_NAMES, Tuple,
    endpoint, proto_name, status_names,
};
pub use self::stats::{CpuStats, CtCount, CtStats};
pub use crate::nldump::DumpSummary;

use crate::error::{LinuxError, Result};
use crate::nldump::{NlSocket, RawMsg};

const IPCTNL_MSG_CT_GET_STATS_CPU: u8 = 4;
const IPCTNL_MSG_CT_GET_STATS: u8 = 5;
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPS_CONFIRMED: u32 = 1 << 3;
const WHAT: &str = "ctnetlink";

/// Which L3 families a dump covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Family {
    /// IPv4 and IPv6 (`AF_UNSPEC`).
    #[default]
    All,
    /// IPv4 only (`AF_INET`).
    V4,
    /// IPv6 only (`AF_INET6`).
    V6,
}

impl Family {
    fn nf(self) -> NetfilterProtoFamily {
        match self {
            Family::All => NetfilterProtoFamily::Unspec,
            Family::V4 => NetfilterProtoFamily::IPv4,
            Family::V6 => NetfilterProtoFamily::IPv6,
        }
    }
}

/// An entry to create with [`Ctnetlink::insert`] (`conntrack -I`). Creating entries needs no
/// netfilter hook in the namespace, which makes it the way tests and the lab plant state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    /// L4 protocol number (6 TCP, 17 UDP, ...).
    pub proto: u8,
    /// The original direction.
    pub orig: Tuple,
    /// Defaults to `orig.inverse()` (no NAT).
    pub reply: Option<Tuple>,
    /// Timeout, seconds.
    pub timeout_s: u32,
    /// TCP only.
    pub tcp_state: Option<CtTcpState>,
    /// `IPS_*` bits; only the changeable ones (ASSURED, SEEN_REPLY, ...) are accepted.
    pub status: u32,
    /// Connection mark (`ct mark`).
    pub mark: u32,
    /// Conntrack zone.
    pub zone: u16,
}

impl NewEntry {
    /// An established, assured TCP entry from `orig` with `timeout_s`.
    pub fn tcp_established(orig: Tuple, timeout_s: u32) -> NewEntry {
        NewEntry {
            proto: 6,
            orig,
            reply: None,
            timeout_s,
            tcp_state: Some(CtTcpState::ESTABLISHED),
            status: IPS_ASSURED | IPS_SEEN_REPLY,
            mark: 0,
            zone: 0,
        }
    }

    fn attributes(&self) -> Vec<ConntrackAttribute> {
        let reply = self.reply.unwrap_or_else(|| self.orig.inverse());
        let mut attrs = vec![
            ConntrackAttribute::CtaTupleOrig(nl_tuple(&self.orig, self.proto)),
            ConntrackAttribute::CtaTupleReply(nl_tuple(&reply, self.proto)),
            ConntrackAttribute::CtaTimeout(self.timeout_s),
        ];
        if self.status != 0 {
            // The kernel marks a ctnetlink-created entry CONFIRMED before applying CTA_STATUS and
            // refuses (EBUSY) a status that would clear that bit.
            let status = self.status | IPS_CONFIRMED;
            attrs.push(ConntrackAttribute::CtaStatus(Status::from_bits_retain(
                status,
            )));
        }
        if self.mark != 0 {
            attrs.push(ConntrackAttribute::CtaMark(self.mark));
        }
        if self.zone != 0 {
            attrs.push(ConntrackAttribute::Other(DefaultNla::new(
                entry::CTA_ZONE,
                self.zone.to_be_bytes().to_vec(),
            )));
        }
        if let (6, Some(state)) = (self.proto, self.tcp_state) {
            attrs.push(ConntrackAttribute::CtaProtoInfo(vec![ProtoInfo::TCP(
                vec![ProtoInfoTCP::State(state.0)],
            )]));
        }
        attrs
    }
}

fn nl_tuple(t: &Tuple, proto: u8) -> Vec<NlTuple> {
    let mut p = vec![ProtoTuple::Protocol(proto.into())];
    if let Some(s) = t.sport {
        p.push(ProtoTuple::SourcePort(s));
    }
    if let Some(d) = t.dport {
        p.push(ProtoTuple::DestinationPort(d));
    }
    vec![
        NlTuple::Ip(vec![
            IPTuple::SourceAddress(t.src),
            IPTuple::DestinationAddress(t.dst),
        ]),
        NlTuple::Proto(p),
    ]
}

fn family_of(t: &Tuple) -> NetfilterProtoFamily {
    if t.src.is_ipv4() {
        NetfilterProtoFamily::IPv4
    } else {
        NetfilterProtoFamily::IPv6
    }
}

fn request(
    family: NetfilterProtoFamily,
    flags: u16,
    msg: ConntrackMessage,
) -> NetlinkMessage<NetfilterMessage> {
    let mut hdr = NetlinkHeader::default();
    hdr.flags = flags;
    NetlinkMessage::new(
        hdr,
        NetlinkPayload::from(NetfilterMessage::new(
            NetfilterHeader::new(family, 0, 0),
            msg,
        )),
    )
}

fn decode_err(op: &'static str, msg: &RawMsg<'_>, message: impl std::fmt::Display) -> LinuxError {
    LinuxError::Netlink {
        op,
        object: WHAT.into(),
        message: format!("message at reply offset {}: {message}", msg.offset),
    }
}

/// Decode one raw message into the nfgenmsg header and the conntrack message.
fn parse(op: &'static str, msg: &RawMsg<'_>) -> Result<(NetfilterHeader, ConntrackMessage)> {
    let nl = NetlinkMessage::<NetfilterMessage>::deserialize(msg.bytes)
        .map_err(|e| decode_err(op, msg, e))?;
    match nl.payload {
        NetlinkPayload::InnerMessage(NetfilterMessage {
            header,
            inner: NetfilterMessageInner::Conntrack(ct),
            ..
        }) => Ok((header, ct)),
        other => Err(decode_err(op, msg, format!("unexpected message {other:?}"))),
    }
}

/// An open ctnetlink socket in the namespace it was created in. Reuse it for repeated dumps.
pub struct Ctnetlink {
    sock: NlSocket,
}

impl Ctnetlink {
    /// Open a ctnetlink socket in the calling thread's network namespace.
    pub fn open() -> Result<Ctnetlink> {
        Ok(Ctnetlink {
            sock: NlSocket::open(NETLINK_NETFILTER, WHAT)?,
        })
    }

    /// Stream every entry of `family` to `on_entry`.
    ///
    /// Pipelined: a scoped thread reads the datagrams (the kernel's share of the work) while
    /// the calling thread decodes the previous ones and runs `on_entry`, so a dump costs about
    /// the larger of the two instead of their sum. At most [`PIPELINE_DEPTH`] batches of about
    /// [`BATCH_BYTES`] are in flight: memory stays bounded whatever the table size.
    pub fn dump(
        &mut self,
        family: Family,
        mut on_entry: impl FnMut(ConntrackEntry),
    ) -> Result<DumpSummary> {
        const OP: &str = "dump conntrack table";
        let seq = self.sock.send(
            request(
                family.nf(),
                NLM_F_REQUEST | NLM_F_DUMP,
                ConntrackMessage::Get(vec![]),
            ),
            OP,
        )?;
        let sock = &mut self.sock;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(PIPELINE_DEPTH);
        let (free_tx, free_rx) = std::sync::mpsc::channel::<Vec<u8>>();
        std::thread::scope(|scope| {
            let reader = scope.spawn(move || {
                let mut batch = Vec::with_capacity(BATCH_BYTES + 65536);
                let res = sock.receive(seq, OP, |msg| {
                    // IPCTNL_MSG_CT_NEW (0) of the ctnetlink subsystem: an entry.
                    if msg.msg_type != NFNL_SUBSYS_CTNETLINK << 8 {
                        return Ok(());
                    }
                    batch.extend_from_slice(&msg.offset.to_ne_bytes());
                    batch.extend_from_slice(&(msg.bytes.len() as u64).to_ne_bytes());
                    batch.extend_from_slice(msg.bytes);
                    if batch.len() >= BATCH_BYTES {
                        let next = free_rx.try_recv().unwrap_or_default();
                        let full = std::mem::replace(&mut batch, next);
                        tx.send(full).map_err(|_| LinuxError::Netlink {
                            op: OP,
                            object: WHAT.into(),
                            message: "decoder stopped".into(),
                        })?;
                    }
                    Ok(())
                });
                if res.is_ok() && !batch.is_empty() {
                    let _ = tx.send(batch);
                }
                res
            });
            let mut decode_error = None;
            for mut batch in rx {
                if decode_error.is_none() {
                    decode_error = decode_batch(&batch, &mut on_entry).err();
                }
                batch.clear();
                let _ = free_tx.send(batch);
                if decode_error.is_some() {
                    break; // dropping `rx` stops the reader
                }
            }
            let summary = reader.join().map_err(|_| LinuxError::Netlink {
                op: OP,
                object: WHAT.into(),
                message: "reader thread panicked".into(),
            })?;
            match decode_error {
                Some(e) => Err(e),
                None => summary,
            }
        })
    }

    /// Dump `family` and only count the entry messages, without decoding them.
    pub fn dump_count(&mut self, family: Family) -> Result<DumpSummary> {
        const OP: &str = "dump conntrack table (count only)";
        let seq = self.sock.send(
            request(
                family.nf(),
                NLM_F_REQUEST | NLM_F_DUMP,
                ConntrackMessage::Get(vec![]),
            ),
            OP,
        )?;
        self.sock.receive(seq, OP, |_| Ok(()))
    }

    /// Per-CPU statistics and their sum (`conntrack -S`).
    pub fn stats(&mut self) -> Result<CtStats> {
        const OP: &str = "read conntrack per-CPU statistics";
        let msg = ConntrackMessage::Other {
            message_type: IPCTNL_MSG_CT_GET_STATS_CPU,
            attributes: vec![],
        };
        let seq = self.sock.send(
            request(
                NetfilterProtoFamily::Unspec,
                NLM_F_REQUEST | NLM_F_DUMP,
                msg,
            ),
            OP,
        )?;
        let mut stats = CtStats::default();
        self.sock.receive(seq, OP, |msg| {
            if msg.msg_type != (NFNL_SUBSYS_CTNETLINK << 8) | u16::from(IPCTNL_MSG_CT_GET_STATS_CPU)
            {
                return Ok(());
            }
            let (hdr, ct) = parse(OP, &msg)?;
            let mut cpu = CpuStats::default();
            if let ConntrackMessage::Other { attributes, .. } = ct {
                for nla in &attributes {
                    use netlink_packet_core::Nla;
                    cpu.set(nla.kind() & 0x3fff, &entry::nla_value(nla))
                        .map_err(|e| decode_err(OP, &msg, e))?;
                }
            }
            stats.push(hdr.res_id, cpu);
            Ok(())
        })?;
        Ok(stats)
    }

    /// Entries in the table and `nf_conntrack_max` (`conntrack -C`).
    pub fn count(&mut self) -> Result<CtCount> {
        const OP: &str = "read conntrack table size";
        let msg = ConntrackMessage::Other {
            message_type: IPCTNL_MSG_CT_GET_STATS,
            attributes: vec![],
        };
        let seq = self.sock.send(
            request(NetfilterProtoFamily::Unspec, NLM_F_REQUEST | NLM_F_ACK, msg),
            OP,
        )?;
        let (mut entries, mut kernel_max) = (None, None);
        self.sock.receive(seq, OP, |msg| {
            let (_, ct) = parse(OP, &msg)?;
            if let ConntrackMessage::Other { attributes, .. } = ct {
                use netlink_packet_core::Nla;
                for nla in &attributes {
                    let v = entry::be_u32(&entry::nla_value(nla)).map(u64::from);
                    match nla.kind() & 0x3fff {
                        stats::CTA_STATS_GLOBAL_ENTRIES => entries = v,
                        stats::CTA_STATS_GLOBAL_MAX_ENTRIES => kernel_max = v,
                        _ => {}
                    }
                }
            }
            Ok(())
        })?;
        let entries = entries.ok_or_else(|| LinuxError::Netlink {
            op: OP,
            object: WHAT.into(),
            message: "reply without CTA_STATS_GLOBAL_ENTRIES".into(),
        })?;
        let max = crate::sysctl::read("net.netfilter.nf_conntrack_max")
            .ok()
            .and_then(|s| s.parse().ok())
            .or(kernel_max);
        Ok(CtCount { entries, max })
    }

    /// Create an entry (`conntrack -I`). Fails with EEXIST when the tuple is already tracked.
    pub fn insert(&mut self, e: &NewEntry) -> Result<()> {
        const OP: &str = "insert conntrack entry";
        let flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK;
        let seq = self.sock.send(
            request(
                family_of(&e.orig),
                flags,
                ConntrackMessage::New(e.attributes()),
            ),
            OP,
        )?;
        self.sock.receive(seq, OP, |_| Ok(())).map(|_| ())
    }

    /// Delete the entry tracked under the original tuple `orig` of protocol `proto`
    /// (`conntrack -D`). Fails with ENOENT when no such entry exists.
    pub fn delete(&mut self, proto: u8, orig: &Tuple) -> Result<()> {
        const OP: &str = "delete conntrack entry";
        let seq = self.sock.send(
            request(
                family_of(orig),
                NLM_F_REQUEST | NLM_F_ACK,
                ConntrackMessage::Delete(vec![ConntrackAttribute::CtaTupleOrig(nl_tuple(
                    orig, proto,
                ))]),
            ),
            OP,
        )?;
        self.sock.receive(seq, OP, |_| Ok(())).map(|_| ())
    }

    /// Delete every entry of the namespace (`conntrack -F`).
    pub fn flush(&mut self) -> Result<()> {
        const OP: &str = "flush conntrack table";
        let seq = self.sock.send(
            request(
                NetfilterProtoFamily::Unspec,
                NLM_F_REQUEST | NLM_F_ACK,
                ConntrackMessage::Delete(vec![]),
            ),
            OP,
        )?;
        self.sock.receive(seq, OP, |_| Ok(())).map(|_| ())
    }
}

/// Batches of copied messages in flight between the dump's reader and decoder.
pub const PIPELINE_DEPTH: usize = 4;
/// Bytes of messages per batch (about 1300 entries).
pub const BATCH_BYTES: usize = 256 * 1024;

/// Decode a batch of `[offset u64][len u64][message]` records.
fn decode_batch(batch: &[u8], on_entry: &mut impl FnMut(ConntrackEntry)) -> Result<()> {
    const OP: &str = "dump conntrack table";
    let mut pos = 0usize;
    while pos + 16 <= batch.len() {
        let word = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&batch[at..at + 8]);
            u64::from_ne_bytes(b)
        };
        let (offset, len) = (word(pos), word(pos + 8) as usize);
        let bytes = batch.get(pos + 16..pos + 16 + len).unwrap_or_default();
        pos += 16 + len;
        let msg = RawMsg {
            msg_type: NFNL_SUBSYS_CTNETLINK << 8,
            bytes,
            offset,
        };
        let e = fast::decode_message(bytes).map_err(|e| decode_err(OP, &msg, e))?;
        on_entry(e);
    }
    Ok(())
}

/// Stream the calling namespace's table to `on_entry` (see [`Ctnetlink::dump`]).
pub fn dump(family: Family, on_entry: impl FnMut(ConntrackEntry)) -> Result<DumpSummary> {
    Ctnetlink::open()?.dump(family, on_entry)
}

/// Count the entries of a dump without decoding them (see [`Ctnetlink::dump_count`]).
pub fn dump_count(family: Family) -> Result<DumpSummary> {
    Ctnetlink::open()?.dump_count(family)
}

/// Per-CPU statistics and their sum (see [`Ctnetlink::stats`]).
pub fn stats() -> Result<CtStats> {
    Ctnetlink::open()?.stats()
}

/// Table size and limit (see [`Ctnetlink::count`]).
pub fn count() -> Result<CtCount> {
    Ctnetlink::open()?.count()
}

/// Turn on per-entry packet/byte counters in the calling namespace
/// (`net.netfilter.nf_conntrack_acct=1`). Only entries created afterwards carry counters.
pub fn enable_accounting() -> Result<()> {
    crate::sysctl::write("net.netfilter.nf_conntrack_acct", "1")
}

/// Is accounting on in the calling namespace?
pub fn accounting_enabled() -> Result<bool> {
    Ok(crate::sysctl::read("net.netfilter.nf_conntrack_acct")? == "1")
}
