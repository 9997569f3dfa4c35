//! `audit` output: the `--json` contract (`sockets`, `findings[]`, `sysctl`, plus `conntrack`,
//! `processes`, `notes`, `could_not_see`, `namespaces`) and the human report.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use idlereset_core::audit::{ConntrackFacts, Finding, Severity};
use serde::Serialize;

use super::{AuditResult, NsAudit};
use idlereset_core::audit::gather::NsFacts;

/// Sockets of one process in one namespace, by keepalive state.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessRow {
    pub netns: Option<String>,
    pub pid: Option<u32>,
    pub process: Option<String>,
    pub sockets: usize,
    pub keepalive: usize,
    pub no_keepalive: usize,
    pub unknown: usize,
}

/// One row per (namespace, owner), most sockets first.
pub fn processes(namespaces: &[NsFacts]) -> Vec<ProcessRow> {
    let mut rows = Vec::new();
    for ns in namespaces {
        let mut by_pid: HashMap<Option<u32>, ProcessRow> = HashMap::new();
        for s in &ns.sockets {
            let row = by_pid.entry(s.pid).or_insert_with(|| ProcessRow {
                netns: ns.netns.clone(),
                pid: s.pid,
                process: s.process.clone(),
                sockets: 0,
                keepalive: 0,
                no_keepalive: 0,
                unknown: 0,
            });
            row.sockets += 1;
            match s.keepalive {
                Some(true) => row.keepalive += 1,
                Some(false) => row.no_keepalive += 1,
                None => row.unknown += 1,
            }
        }
        let mut v: Vec<ProcessRow> = by_pid.into_values().collect();
        v.sort_by(|a, b| b.sockets.cmp(&a.sockets).then(a.pid.cmp(&b.pid)));
        rows.extend(v);
    }
    rows
}

/// A sysctl's value: a JSON number when the text is one, the text otherwise.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum SysctlValue<'a> {
    Number(u64),
    Text(&'a str),
}

fn sysctl_json(map: &BTreeMap<String, String>) -> BTreeMap<&str, SysctlValue<'_>> {
    map.iter()
        .map(|(k, v)| {
            let val = v
                .parse::<u64>()
                .map_or(SysctlValue::Text(v.as_str()), SysctlValue::Number);
            (k.as_str(), val)
        })
        .collect()
}

#[derive(Serialize)]
struct FindingJson<'a> {
    netns: Option<&'a str>,
    #[serde(flatten)]
    finding: &'a Finding,
}

#[derive(Serialize)]
struct NsJson<'a> {
    netns: Option<&'a str>,
    sockets: usize,
    loopback: usize,
    findings: usize,
    sysctl: BTreeMap<&'a str, SysctlValue<'a>>,
    conntrack: Option<&'a ConntrackFacts>,
    notes: &'a [String],
    could_not_see: &'a [String],
}

#[derive(Serialize)]
struct AuditJson<'a> {
    sockets: usize,
    findings: Vec<FindingJson<'a>>,
    sysctl: BTreeMap<&'a str, SysctlValue<'a>>,
    conntrack: Option<&'a ConntrackFacts>,
    notes: Vec<String>,
    could_not_see: Vec<String>,
    processes: &'a [ProcessRow],
    namespaces: Vec<NsJson<'a>>,
    elapsed_s: f64,
}

fn ns_sockets(n: &NsAudit) -> usize {
    n.facts.sockets.len() + n.loopback
}

/// Prefix a namespace's lines with its name when several namespaces are shown.
fn tagged(result: &AuditResult, pick: impl Fn(&NsAudit) -> &[String]) -> Vec<String> {
    let many = result.namespaces.len() > 1;
    result
        .namespaces
        .iter()
        .flat_map(|n| {
            let tag = match (&n.facts.netns, many) {
                (Some(name), true) => format!("[netns {name}] "),
                (None, true) => "[this netns] ".to_string(),
                _ => String::new(),
            };
            pick(n).iter().map(move |l| format!("{tag}{l}"))
        })
        .collect()
}

pub fn json(result: &AuditResult, _all: bool) -> anyhow::Result<()> {
    let doc = doc(result);
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    serde_json::to_writer(&mut out, &doc).map_err(std::io::Error::from)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// The `--json` document.
fn doc(result: &AuditResult) -> AuditJson<'_> {
    let first = result.namespaces.first();
    let mut could_not_see = tagged(result, |n| &n.facts.could_not_see);
    could_not_see.extend(result.could_not_see.iter().cloned());
    AuditJson {
        sockets: result.namespaces.iter().map(ns_sockets).sum(),
        findings: result
            .namespaces
            .iter()
            .flat_map(|n| {
                n.report.findings.iter().map(|f| FindingJson {
                    netns: n.facts.netns.as_deref(),
                    finding: f,
                })
            })
            .collect(),
        sysctl: first
            .map(|n| sysctl_json(&n.facts.sysctl))
            .unwrap_or_default(),
        conntrack: first.and_then(|n| n.facts.conntrack.as_ref()),
        notes: tagged(result, |n| &n.report.notes),
        could_not_see,
        processes: &result.processes,
        namespaces: result
            .namespaces
            .iter()
            .map(|n| NsJson {
                netns: n.facts.netns.as_deref(),
                sockets: ns_sockets(n),
                loopback: n.loopback,
                findings: n.report.findings.len(),
                sysctl: sysctl_json(&n.facts.sysctl),
                conntrack: n.facts.conntrack.as_ref(),
                notes: &n.report.notes,
                could_not_see: &n.facts.could_not_see,
            })
            .collect(),
        elapsed_s: result.elapsed.as_secs_f64(),
    }
}

fn sev(s: Severity) -> &'static str {
    match s {
        Severity::High => "HIGH",
        Severity::Medium => "MEDIUM",
        Severity::Low => "low",
    }
}

fn ns_header(out: &mut impl Write, n: &NsAudit) -> std::io::Result<()> {
    let name = n.facts.netns.as_deref().unwrap_or("(this namespace)");
    let s = &n.facts.sysctl;
    let get = |k: &str| s.get(k).map_or("?", String::as_str);
    writeln!(
        out,
        "netns {name}: {} established TCP sockets ({} loopback)",
        ns_sockets(n),
        n.loopback
    )?;
    writeln!(
        out,
        "  keepalive sysctls: time {} intvl {} probes {}; tcp_retries2 {}",
        get("net.ipv4.tcp_keepalive_time"),
        get("net.ipv4.tcp_keepalive_intvl"),
        get("net.ipv4.tcp_keepalive_probes"),
        get("net.ipv4.tcp_retries2")
    )?;
    if let Some(ct) = &n.facts.conntrack {
        let max = ct.max.map_or_else(|| "?".into(), |m| m.to_string());
        let delta = match (ct.invalid_delta, ct.sample_s) {
            (Some(d), Some(t)) => format!(" (+{d} in {t:.2} s)"),
            _ => String::new(),
        };
        writeln!(
            out,
            "  conntrack: {} of {max} entries; ESTABLISHED timeout {} s, tcp_loose {}, be_liberal {}; invalid {}{delta}, drop {}, early_drop {}, insert_failed {}",
            ct.count,
            get("net.netfilter.nf_conntrack_tcp_timeout_established"),
            get("net.netfilter.nf_conntrack_tcp_loose"),
            get("net.netfilter.nf_conntrack_tcp_be_liberal"),
            ct.invalid,
            ct.drop,
            ct.early_drop,
            ct.insert_failed
        )?;
    }
    Ok(())
}

fn finding(out: &mut impl Write, f: &Finding) -> std::io::Result<()> {
    let sock = match (&f.local, &f.remote) {
        (Some(l), Some(r)) => format!(" {l} -> {r}"),
        _ => String::new(),
    };
    let proc_ = match (f.pid, &f.process) {
        (Some(pid), Some(p)) => format!(" {p}[{pid}]"),
        (Some(pid), None) => format!(" pid {pid}"),
        _ => String::new(),
    };
    let idle = f.idle_s.map(|i| format!(" idle {i} s")).unwrap_or_default();
    writeln!(out, "  [{}] {}{sock}{proc_}{idle}", sev(f.severity), f.kind)?;
    writeln!(out, "      {}", f.detail)?;
    writeln!(out, "      fix: {}", f.fix)
}

pub fn text(result: &AuditResult) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for n in &result.namespaces {
        ns_header(&mut out, n)?;
    }
    if !result.processes.is_empty() {
        writeln!(out, "processes:")?;
        writeln!(
            out,
            "  {:<8} {:<16} {:>8} {:>10} {:>13} {:>8}  NETNS",
            "PID", "COMMAND", "SOCKETS", "KEEPALIVE", "NO-KEEPALIVE", "UNKNOWN"
        )?;
        for p in &result.processes {
            writeln!(
                out,
                "  {:<8} {:<16} {:>8} {:>10} {:>13} {:>8}  {}",
                p.pid.map_or_else(|| "?".into(), |p| p.to_string()),
                p.process.as_deref().unwrap_or("?"),
                p.sockets,
                p.keepalive,
                p.no_keepalive,
                p.unknown,
                p.netns.as_deref().unwrap_or("-")
            )?;
        }
    }
    let total: usize = result
        .namespaces
        .iter()
        .map(|n| n.report.findings.len())
        .sum();
    if total == 0 {
        writeln!(out, "findings: none")?;
    } else {
        writeln!(out, "findings ({total}):")?;
        for n in &result.namespaces {
            for f in &n.report.findings {
                finding(&mut out, f)?;
            }
        }
    }
    let notes = tagged(result, |n| &n.report.notes);
    if !notes.is_empty() {
        writeln!(out, "notes:")?;
        for l in notes {
            writeln!(out, "  - {l}")?;
        }
    }
    let mut cns = tagged(result, |n| &n.facts.could_not_see);
    cns.extend(result.could_not_see.iter().cloned());
    if !cns.is_empty() {
        writeln!(out, "could not see:")?;
        for l in cns {
            writeln!(out, "  - {l}")?;
        }
    }
    writeln!(out, "audited in {:.2} s", result.elapsed.as_secs_f64())?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use idlereset_core::audit::gather::{attribute, gather};
    use idlereset_core::host::fake::FakeHost;
    use idlereset_core::host::{CtCounters, CtSize, HostSocket, Owners, ProcessLibs};
    use idlereset_core::path::PathPolicy;
    use idlereset_core::socket::SocketFacts;

    use super::*;
    use crate::cmd::audit::judge;

    /// The `audit --json` document over a fake host (no root needed); `elapsed_s` redacted.
    #[test]
    fn json_snapshot_over_a_fake_host() {
        let sock = |port: u16, inode, keepalive: bool| HostSocket {
            facts: SocketFacts {
                local: format!("198.18.0.10:{port}").parse().ok(),
                remote: "198.18.2.10:5432".parse().ok(),
                keepalive: Some(keepalive),
                keepalive_timer_ms: keepalive.then_some(7_000_000),
                last_data_sent_ms: Some(400_000),
                last_data_recv_ms: Some(400_000),
                last_ack_recv_ms: Some(400_000),
                ..SocketFacts::default()
            },
            inode,
        };
        let mut host = FakeHost {
            sockets: vec![sock(40000, 1, false), sock(40001, 2, true)],
            owners: Ok(Owners {
                by_inode: [(1, (42, "java".to_string()))].into_iter().collect(),
                unreadable: 0,
            }),
            // The JVM has PgJDBC's jar open: the finding names it and its fix.
            processes: [(
                42,
                ProcessLibs {
                    cmdline: "java -jar /srv/app.jar".into(),
                    loaded: vec!["/srv/lib/postgresql-42.7.3.jar".into()],
                },
            )]
            .into_iter()
            .collect(),
            sysctls: [
                ("net.ipv4.tcp_keepalive_time", "7200"),
                ("net.ipv4.tcp_keepalive_intvl", "75"),
                ("net.ipv4.tcp_keepalive_probes", "9"),
                ("net.ipv4.tcp_retries2", "15"),
                ("net.netfilter.nf_conntrack_count", "10"),
                ("net.netfilter.nf_conntrack_max", "100"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            ct_size: Ok(CtSize {
                entries: 10,
                max: Some(100),
            }),
            ct_counters: [Ok(CtCounters::default())].into_iter().collect(),
            ..FakeHost::default()
        };
        let mut facts = vec![gather(&mut host, None, Duration::ZERO).unwrap()];
        let could_not_see = attribute(&mut host, &mut facts);
        let processes = processes(&facts);
        let paths = PathPolicy::fixed(300.0, "--path-timeout");
        let result = AuditResult {
            namespaces: facts.into_iter().map(|f| judge(f, &paths, false)).collect(),
            processes,
            could_not_see,
            elapsed: Duration::from_millis(5),
        };
        insta::assert_json_snapshot!("audit_json", doc(&result), { ".elapsed_s" => "[elapsed]" });
    }
}
