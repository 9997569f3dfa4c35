//! `idlereset conntrack`: dump a namespace's conntrack table with its size and statistics.
//!
//! Shows what a Linux firewall or NAT box currently remembers about each flow: the conntrack
//! TCP state, the seconds left before the entry is forgotten, NAT rewrites, counters. Entries are
//! streamed from the kernel and printed one by one (human table or `--json`), so a table of a
//! million entries does not sit in memory. `--json` prints one object whose `entries` array is
//! written as the dump arrives: `count`, `max`, `accounting`, `stats`, then `entries`, then
//! `matched` (entries printed after filtering) and `dump_interrupted`.

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::net::IpAddr;

use anyhow::Context;
use idlereset_linux::NetNs;
use idlereset_linux::conntrack::{
    self, ConntrackEntry, CpuStats, CtCount, CtStats, CtTcpState, Family,
};
use serde::Serialize;

use crate::app::Outcome;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  idlereset conntrack                                   this namespace's table, stats, size
  idlereset conntrack --netns fw --state ESTABLISHED --port 5432
  idlereset conntrack --src 198.18.0.10 --json | jq '.entries[] | select(.timeout_s < 300)'
  idlereset conntrack --netns fw --enable-accounting    count packets of entries created from now on
  idlereset conntrack --netns fw --watch --interval 2   flag flows whose timers stopped refreshing
  idlereset conntrack --netns fw --watch --json --samples 30 --port 5432

Filters combine (all must match). --src/--dst match the original direction (as conntrack -s/-d);
--port matches any port of either direction, so it also finds NATed flows.")]
pub struct Args {
    /// Read the table of the named network namespace (/run/netns/NAME) instead of this one
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// Print one JSON object (count, max, stats, entries) instead of a table
    #[arg(long)]
    pub json: bool,
    /// Only entries whose original source address is ADDR
    #[arg(long, value_name = "ADDR")]
    pub src: Option<IpAddr>,
    /// Only entries whose original destination address is ADDR
    #[arg(long, value_name = "ADDR")]
    pub dst: Option<IpAddr>,
    /// Only entries with port P in either direction
    #[arg(long, value_name = "P")]
    pub port: Option<u16>,
    /// Only TCP entries in conntrack state S (ESTABLISHED, TIME_WAIT, SYN_SENT, CLOSE_WAIT, ...)
    #[arg(long, value_name = "S", value_parser = parse_state)]
    pub state: Option<CtTcpState>,
    /// First set net.netfilter.nf_conntrack_acct=1 in the namespace (counters for new entries)
    #[arg(long)]
    pub enable_accounting: bool,
    /// Sample the table repeatedly and report frozen timers, flows expiring while active and a
    /// rising INVALID statistic, one line (or JSON line) per event
    #[arg(long)]
    pub watch: bool,
    /// Seconds between samples of --watch (fractions allowed)
    #[arg(long, value_name = "S", default_value_t = 1.0, requires = "watch")]
    pub interval: f64,
    /// Stop --watch after this many samples (default: until interrupted)
    #[arg(long, value_name = "N", requires = "watch")]
    pub samples: Option<u64>,
    /// --watch: consecutive frozen intervals before a flow is flagged
    #[arg(long, value_name = "N", default_value_t = 2, requires = "watch")]
    pub frozen_after: u32,
    /// --watch: flag active flows with at most this many seconds left
    #[arg(long, value_name = "S", default_value_t = 30, requires = "watch")]
    pub expiring: u32,
}

fn parse_state(s: &str) -> Result<CtTcpState, String> {
    CtTcpState::from_name(s).ok_or_else(|| {
        format!("unknown conntrack TCP state {s:?}; one of NONE, SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSE, SYN_SENT2")
    })
}

/// The entry filter built from the arguments.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Filter {
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    port: Option<u16>,
    state: Option<CtTcpState>,
}

impl Filter {
    pub(crate) fn from_args(args: &Args) -> Filter {
        Filter {
            src: args.src,
            dst: args.dst,
            port: args.port,
            state: args.state,
        }
    }

    pub(crate) fn matches(&self, e: &ConntrackEntry) -> bool {
        self.src.is_none_or(|a| e.orig.src == a)
            && self.dst.is_none_or(|a| e.orig.dst == a)
            && self.state.is_none_or(|s| e.tcp_state == Some(s))
            && self.port.is_none_or(|p| {
                [e.orig.sport, e.orig.dport, e.reply.sport, e.reply.dport].contains(&Some(p))
            })
    }
}

/// One entry in `--json` output. `src`/`dst`/`packets`/`bytes` are the contract of docs/json.md;
/// `packets`/`bytes` sum both directions and are null without accounting.
#[derive(Debug, Serialize)]
struct EntryJson {
    proto: String,
    state: Option<&'static str>,
    src: String,
    dst: String,
    timeout_s: u32,
    packets: Option<u64>,
    bytes: Option<u64>,
    reply_src: String,
    reply_dst: String,
    nat: bool,
    status: Vec<&'static str>,
    mark: u32,
    zone: u16,
    id: u32,
    orig_packets: Option<u64>,
    orig_bytes: Option<u64>,
    reply_packets: Option<u64>,
    reply_bytes: Option<u64>,
}

impl From<&ConntrackEntry> for EntryJson {
    fn from(e: &ConntrackEntry) -> Self {
        EntryJson {
            proto: e.proto_name(),
            state: e.tcp_state.map(CtTcpState::name),
            src: e.orig.src_endpoint(),
            dst: e.orig.dst_endpoint(),
            timeout_s: e.timeout_s,
            packets: e.packets(),
            bytes: e.bytes(),
            reply_src: e.reply.src_endpoint(),
            reply_dst: e.reply.dst_endpoint(),
            nat: e.is_natted(),
            status: e.status_names(),
            mark: e.mark,
            zone: e.zone,
            id: e.id,
            orig_packets: e.orig_counters.map(|c| c.packets),
            orig_bytes: e.orig_counters.map(|c| c.bytes),
            reply_packets: e.reply_counters.map(|c| c.packets),
            reply_bytes: e.reply_counters.map(|c| c.bytes),
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    match &args.netns {
        Some(name) => {
            let ns = NetNs::open(name).with_context(|| format!("open network namespace {name}"))?;
            ns.run(|| dump(&args))?
        }
        None => dump(&args),
    }
}

pub(crate) fn hint(e: idlereset_linux::LinuxError) -> anyhow::Error {
    if e.is_permission_denied() {
        anyhow::Error::new(e).context("reading conntrack needs CAP_NET_ADMIN (run as root)")
    } else {
        anyhow::Error::new(e)
    }
}

/// Everything below runs in the chosen namespace.
fn dump(args: &Args) -> anyhow::Result<Outcome> {
    if args.enable_accounting {
        conntrack::enable_accounting().map_err(hint)?;
    }
    let accounting = conntrack::accounting_enabled().unwrap_or(false);
    if args.watch {
        return super::ctwatch::watch(args, accounting);
    }
    let mut ct = conntrack::Ctnetlink::open().map_err(hint)?;
    let count = ct.count().map_err(hint)?;
    let stats = ct.stats().map_err(hint)?;
    let filter = Filter {
        src: args.src,
        dst: args.dst,
        port: args.port,
        state: args.state,
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if args.json {
        write_json(&mut out, &mut ct, filter, count, &stats, accounting)?;
    } else {
        write_table(&mut out, &mut ct, filter, count, &stats, accounting)?;
    }
    out.flush()?;
    Ok(Outcome::Clean)
}

/// The `stats` object of `conntrack --json`: the counters summed over CPUs, and how many CPUs.
#[derive(Debug, Serialize)]
struct StatsJson {
    #[serde(flatten)]
    total: CpuStats,
    cpus: usize,
}

/// `conntrack --json`: a serde type whose `entries` are serialised while the table is dumped
/// (memory stays flat in the table size); `matched` and `dump_interrupted` follow them, so they
/// are known by the time they are written.
struct ConntrackJson<'a> {
    count: CtCount,
    accounting: bool,
    stats: StatsJson,
    entries: Entries<'a>,
}

/// The streamed `entries` array and what the dump learnt while writing it.
struct Entries<'a> {
    ct: RefCell<&'a mut conntrack::Ctnetlink>,
    filter: Filter,
    matched: Cell<u64>,
    interrupted: Cell<bool>,
    /// A dump failure, kept whole for the caller (serde errors carry only text).
    failed: RefCell<Option<anyhow::Error>>,
}

impl Serialize for Entries<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeSeq};
        let mut seq = ser.serialize_seq(None)?;
        let mut write_err = None;
        let mut ct = self.ct.borrow_mut();
        let dumped = ct.dump(Family::All, |e| {
            if write_err.is_some() || !self.filter.matches(&e) {
                return;
            }
            self.matched.set(self.matched.get() + 1);
            if let Err(err) = seq.serialize_element(&EntryJson::from(&e)) {
                write_err = Some(err);
            }
        });
        if let Some(err) = write_err {
            return Err(err);
        }
        match dumped {
            Ok(summary) => self.interrupted.set(summary.interrupted),
            Err(e) => {
                let e = hint(e);
                let msg = e.to_string();
                *self.failed.borrow_mut() = Some(e);
                return Err(S::Error::custom(msg));
            }
        }
        seq.end()
    }
}

impl Serialize for ConntrackJson<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = ser.serialize_struct("ConntrackJson", 7)?;
        st.serialize_field("count", &self.count.entries)?;
        st.serialize_field("max", &self.count.max)?;
        st.serialize_field("accounting", &self.accounting)?;
        st.serialize_field("stats", &self.stats)?;
        st.serialize_field("entries", &self.entries)?;
        st.serialize_field("matched", &self.entries.matched.get())?;
        st.serialize_field("dump_interrupted", &self.entries.interrupted.get())?;
        st.end()
    }
}

/// Write `conntrack --json`, streaming the entries from the dump.
fn write_json(
    out: &mut impl Write,
    ct: &mut conntrack::Ctnetlink,
    filter: Filter,
    count: CtCount,
    stats: &CtStats,
    accounting: bool,
) -> anyhow::Result<()> {
    let doc = ConntrackJson {
        count,
        accounting,
        stats: StatsJson {
            total: stats.total,
            cpus: stats.per_cpu.len(),
        },
        entries: Entries {
            ct: RefCell::new(ct),
            filter,
            matched: Cell::new(0),
            interrupted: Cell::new(false),
            failed: RefCell::new(None),
        },
    };
    if let Err(e) = serde_json::to_writer(&mut *out, &doc) {
        return Err(match doc.entries.failed.take() {
            Some(dump_err) => dump_err,
            None => e.into(),
        });
    }
    writeln!(out)?;
    Ok(())
}

fn write_table(
    out: &mut impl Write,
    ct: &mut conntrack::Ctnetlink,
    filter: Filter,
    count: CtCount,
    stats: &CtStats,
    accounting: bool,
) -> anyhow::Result<()> {
    let max = count.max.map_or_else(|| "?".to_string(), |m| m.to_string());
    let acct = if accounting {
        "on"
    } else {
        "off (--enable-accounting)"
    };
    writeln!(
        out,
        "conntrack: {} of {max} entries, accounting {acct}",
        count.entries
    )?;
    let s = &stats.total;
    writeln!(
        out,
        "stats ({} CPUs): found {} invalid {} insert {} insert_failed {} drop {} early_drop {} error {} search_restart {} clash_resolve {} chaintoolong {}",
        stats.per_cpu.len(),
        s.found,
        s.invalid,
        s.insert,
        s.insert_failed,
        s.drop,
        s.early_drop,
        s.error,
        s.search_restart,
        s.clash_resolve,
        s.chaintoolong
    )?;
    writeln!(
        out,
        "{:<7} {:<12} {:>9} {:<24} {:<24} {:<24} {:>9} {:>11}  FLAGS",
        "PROTO", "STATE", "TIMEOUT", "SOURCE", "DESTINATION", "NAT REPLY", "PACKETS", "BYTES"
    )?;
    let mut matched = 0u64;
    let mut io_err = None;
    let summary = ct
        .dump(Family::All, |e| {
            if io_err.is_some() || !filter.matches(&e) {
                return;
            }
            matched += 1;
            if let Err(err) = writeln!(out, "{}", table_row(&e)) {
                io_err = Some(err);
            }
        })
        .map_err(hint)?;
    if let Some(err) = io_err {
        return Err(err.into());
    }
    let note = if summary.interrupted {
        " (table changed during the dump: may be inexact)"
    } else {
        ""
    };
    writeln!(out, "{matched} entries shown{note}")?;
    Ok(())
}

fn table_row(e: &ConntrackEntry) -> String {
    let nat = if e.is_natted() {
        format!("{}->{}", e.reply.src_endpoint(), e.reply.dst_endpoint())
    } else {
        "-".into()
    };
    let opt = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    let mut flags = e
        .status_names()
        .iter()
        .filter(|n| **n != "CONFIRMED")
        .copied()
        .collect::<Vec<_>>()
        .join(",");
    if e.mark != 0 {
        flags.push_str(&format!(" mark={:#x}", e.mark));
    }
    if e.zone != 0 {
        flags.push_str(&format!(" zone={}", e.zone));
    }
    format!(
        "{:<7} {:<12} {:>8}s {:<24} {:<24} {:<24} {:>9} {:>11}  {}",
        e.proto_name(),
        e.tcp_state.map_or("-", CtTcpState::name),
        e.timeout_s,
        e.orig.src_endpoint(),
        e.orig.dst_endpoint(),
        nat,
        opt(e.packets()),
        opt(e.bytes()),
        flags.trim()
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use idlereset_linux::conntrack::{Counters, Tuple};

    fn entry() -> ConntrackEntry {
        let orig = Tuple {
            src: "198.18.0.10".parse().unwrap(),
            dst: "198.18.1.20".parse().unwrap(),
            sport: Some(40000),
            dport: Some(5432),
        };
        ConntrackEntry {
            family: 2,
            proto: 6,
            tcp_state: Some(CtTcpState::ESTABLISHED),
            orig,
            reply: Tuple {
                dst: "198.18.0.99".parse().unwrap(),
                dport: Some(61000),
                ..orig.inverse()
            },
            timeout_s: 899,
            orig_counters: Some(Counters {
                packets: 3,
                bytes: 180,
            }),
            reply_counters: Some(Counters {
                packets: 2,
                bytes: 120,
            }),
            mark: 0,
            zone: 0,
            status: 0b1110,
            id: 1,
            use_count: 1,
            start_ns: None,
        }
    }

    #[test]
    fn stats_json_snapshot() {
        let stats = CtStats {
            per_cpu: vec![],
            total: CpuStats {
                invalid: 7,
                found: 3,
                ..CpuStats::default()
            },
        };
        let doc = StatsJson {
            total: stats.total,
            cpus: stats.per_cpu.len(),
        };
        insta::assert_json_snapshot!("conntrack_stats_json", doc);
    }

    #[test]
    fn filters_combine() {
        let e = entry();
        assert!(Filter::default().matches(&e));
        assert!(
            Filter {
                port: Some(61000),
                ..Filter::default()
            }
            .matches(&e),
            "NAT port matches"
        );
        assert!(
            !Filter {
                port: Some(1),
                ..Filter::default()
            }
            .matches(&e)
        );
        assert!(
            Filter {
                src: e.orig.src.into(),
                state: Some(CtTcpState::ESTABLISHED),
                ..Filter::default()
            }
            .matches(&e)
        );
        assert!(
            !Filter {
                src: e.orig.src.into(),
                state: Some(CtTcpState::TIME_WAIT),
                ..Filter::default()
            }
            .matches(&e)
        );
        assert!(
            !Filter {
                dst: e.orig.src.into(),
                ..Filter::default()
            }
            .matches(&e)
        );
    }

    #[test]
    fn json_entry_has_contract_fields() {
        let v = serde_json::to_value(EntryJson::from(&entry())).unwrap();
        assert_eq!(v["proto"], "tcp");
        assert_eq!(v["state"], "ESTABLISHED");
        assert_eq!(v["src"], "198.18.0.10:40000");
        assert_eq!(v["dst"], "198.18.1.20:5432");
        assert_eq!(v["reply_dst"], "198.18.0.99:61000");
        assert_eq!(v["nat"], true);
        assert_eq!(v["timeout_s"], 899);
        assert_eq!(
            (v["packets"].as_u64(), v["bytes"].as_u64()),
            (Some(5), Some(300))
        );
        assert_eq!(
            v["status"],
            serde_json::json!(["SEEN_REPLY", "ASSURED", "CONFIRMED"])
        );
    }

    #[test]
    fn state_parser_explains_choices() {
        assert_eq!(parse_state("established").unwrap(), CtTcpState::ESTABLISHED);
        assert!(parse_state("open").unwrap_err().contains("TIME_WAIT"));
    }

    #[test]
    fn row_shows_nat_and_hides_confirmed() {
        let row = table_row(&entry());
        assert!(row.contains("198.18.1.20:5432->198.18.0.99:61000"), "{row}");
        assert!(
            row.contains("SEEN_REPLY,ASSURED") && !row.contains("CONFIRMED"),
            "{row}"
        );
    }
}
