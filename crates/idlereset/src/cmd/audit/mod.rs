//! `idlereset audit`: the runbook's triage steps 3-5 across a host. Finds the long-lived TCP
//! connections an idle timeout will cut (no keepalive, keepalive slower than the path), the
//! processes that own them, the keepalive sysctl trap, and the local conntrack table's state.
//!
//! The flow: per namespace, [`gather`] reads sockets, sysctls and conntrack counters; one `/proc`
//! scan maps all socket inodes to processes; `idlereset_core::audit::evaluate` decides; [`render`]
//! prints. Loopback connections are counted and attributed but not judged (no middlebox sits on
//! them) unless `--include-loopback`.

pub mod gather;
mod render;

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use idlereset_core::audit::{self, PathTimeout, Report, default_path_timeout};
use idlereset_core::catalog::Catalog;
use idlereset_core::duration::parse_duration;
use idlereset_core::inventory::Inventory;
use idlereset_linux::NetNs;
use idlereset_linux::procfs::SocketOwners;

use self::gather::{NsFacts, gather};
use crate::app::Outcome;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  idlereset audit --path-timeout 350                this namespace, every remote behind a 350 s NAT
  idlereset audit --inventory paths.toml --json     per-remote timeouts from the hops' `matches`
  idlereset audit --netns app --path-timeout 15m    inside /run/netns/app
  idlereset audit --all-netns --json | jq '.findings[] | select(.kind == \"no-keepalive\")'
  idlereset audit || alert                          exit 1 when there are findings (cron, CI)

Without --path-timeout or --inventory the shortest NAT timeout of the catalog is assumed.
Findings: no-keepalive, keepalive-too-late, sysctl-only, conntrack-table-full,
conntrack-invalid-rising, conntrack-timeout-short. Without root, other users' processes and
conntrack are not visible; the output says so under \"could not see\".")]
pub struct Args {
    /// Idle timeout of the path(s) this host's connections cross (seconds, or 15m, 1h)
    #[arg(long, value_name = "SECONDS", conflicts_with = "inventory")]
    pub path_timeout: Option<String>,
    /// Path inventory (TOML `[[hop]]` with idle_timeout_s and `matches`); `-` reads stdin
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// Audit the named network namespace (/run/netns/NAME) instead of this one
    #[arg(long, value_name = "NAME", conflicts_with = "all_netns")]
    pub netns: Option<String>,
    /// Audit this namespace and every namespace pinned under /run/netns
    #[arg(long)]
    pub all_netns: bool,
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
    /// Also judge loopback connections (normally skipped: no middlebox on them)
    #[arg(long)]
    pub include_loopback: bool,
    /// Least time between the two conntrack counter samples that show a rising INVALID count
    #[arg(long, value_name = "SECONDS", default_value = "0")]
    pub sample: String,
}

/// Resolves a socket's remote to its path's idle timeout.
enum Paths {
    Fixed(PathTimeout),
    Inventory(Inventory, String),
}

impl Paths {
    fn resolve(&self, remote: SocketAddr) -> Option<PathTimeout> {
        match self {
            Paths::Fixed(p) => Some(p.clone()),
            Paths::Inventory(inv, file) => {
                inv.path_timeout_for(remote).map(|(s, hop)| PathTimeout {
                    seconds: s,
                    source: format!(
                        "{file}: hop {} ({}, line {})",
                        hop.name,
                        hop.kind.as_str(),
                        hop.line
                    ),
                })
            }
        }
    }
}

fn paths(args: &Args, catalog: &Catalog) -> anyhow::Result<Paths> {
    if let Some(t) = &args.path_timeout {
        let d = parse_duration(t).with_context(|| format!("--path-timeout {t:?}"))?;
        anyhow::ensure!(!d.is_zero(), "--path-timeout must be more than 0");
        return Ok(Paths::Fixed(PathTimeout {
            seconds: d.as_secs_f64(),
            source: "--path-timeout".into(),
        }));
    }
    if let Some(path) = &args.inventory {
        let (name, text) = if path.as_os_str() == "-" {
            let mut t = String::new();
            std::io::stdin()
                .read_to_string(&mut t)
                .context("reading the inventory from standard input")?;
            ("<stdin>".to_string(), t)
        } else {
            let t = std::fs::read_to_string(path)
                .with_context(|| format!("reading inventory {}", path.display()))?;
            (path.display().to_string(), t)
        };
        let inv = Inventory::parse(&text, &name, catalog)?;
        return Ok(Paths::Inventory(inv, name));
    }
    default_path_timeout(catalog)
        .map(Paths::Fixed)
        .context("the catalog has no NAT entry to assume a path timeout from: pass --path-timeout")
}

/// One namespace's facts and conclusions.
pub struct NsAudit {
    pub facts: NsFacts,
    pub report: Report,
    pub loopback: usize,
}

/// Everything `audit` prints.
pub struct AuditResult {
    pub namespaces: Vec<NsAudit>,
    pub processes: Vec<render::ProcessRow>,
    pub could_not_see: Vec<String>,
    pub elapsed: Duration,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let catalog = Catalog::builtin()?;
    let paths = paths(&args, &catalog)?;
    let sample =
        parse_duration(&args.sample).with_context(|| format!("--sample {:?}", args.sample))?;

    let mut could_not_see = Vec::new();
    let mut gathered = Vec::new();
    if let Some(name) = &args.netns {
        let ns = NetNs::open(name).with_context(|| format!("open network namespace {name}"))?;
        gathered.push(
            ns.run(|| gather(Some(name.clone()), sample))
                .with_context(|| format!("enter network namespace {name} (needs root)"))??,
        );
    } else {
        gathered.push(gather(None, sample)?);
        if args.all_netns {
            for name in NetNs::list_with_prefix("")? {
                let res =
                    NetNs::open(&name).and_then(|ns| ns.run(|| gather(Some(name.clone()), sample)));
                match res {
                    Ok(Ok(f)) => gathered.push(f),
                    Ok(Err(e)) => could_not_see.push(format!("netns {name}: {e:#}")),
                    Err(e) => could_not_see.push(format!("netns {name}: {e}")),
                }
            }
        }
    }

    let wanted: HashSet<u64> = gathered
        .iter()
        .flat_map(|f| f.inodes.iter().copied())
        .filter(|i| *i != 0)
        .collect();
    let owners =
        SocketOwners::scan(Some(&wanted)).context("mapping sockets to processes via /proc")?;
    if let Some(n) = owners.visibility_note() {
        could_not_see.push(format!(
            "{n} (their sockets show without pid; run as root to see them)"
        ));
    }
    let mut comms: BTreeMap<u32, Arc<str>> = BTreeMap::new();
    let mut unowned = 0usize;
    for f in &mut gathered {
        for (s, inode) in f.sockets.iter_mut().zip(&f.inodes) {
            match owners.process(*inode) {
                Some((pid, comm)) => {
                    s.pid = Some(pid);
                    let c = comms.entry(pid).or_insert_with(|| Arc::from(comm));
                    s.process = Some(c.to_string());
                }
                None => unowned += 1,
            }
        }
    }
    if unowned > 0 {
        could_not_see.push(format!(
            "{unowned} sockets have no visible owner (other users' processes without root, another PID namespace, or closed during the scan)"
        ));
    }

    let processes = render::processes(&gathered);
    let namespaces = gathered
        .into_iter()
        .map(|facts| judge(facts, &paths, args.include_loopback))
        .collect();
    let result = AuditResult {
        namespaces,
        processes,
        could_not_see,
        elapsed: started.elapsed(),
    };
    let any = result
        .namespaces
        .iter()
        .any(|n| !n.report.findings.is_empty());
    if args.json {
        render::json(&result, args.all_netns)?;
    } else {
        render::text(&result)?;
    }
    Ok(if any {
        Outcome::Findings
    } else {
        Outcome::Clean
    })
}

fn is_loopback(a: SocketAddr) -> bool {
    a.ip().to_canonical().is_loopback()
}

fn judge(mut facts: NsFacts, paths: &Paths, include_loopback: bool) -> NsAudit {
    let kernel = facts.kernel();
    let (judged, loopback): (Vec<_>, Vec<_>) = std::mem::take(&mut facts.sockets)
        .into_iter()
        .partition(|s| include_loopback || !s.remote.is_some_and(is_loopback));
    let mut report = audit::evaluate(&judged, &kernel, facts.conntrack.as_ref(), &|r| {
        paths.resolve(r)
    });
    if !loopback.is_empty() {
        report.notes.push(format!(
            "{} loopback connections not judged (no middlebox on them; --include-loopback to judge them)",
            loopback.len()
        ));
    }
    if facts.dump_interrupted {
        report
            .notes
            .push("the socket table changed during the dump: counts may be inexact".into());
    }
    facts.sockets = judged;
    NsAudit {
        loopback: loopback.len(),
        facts,
        report,
    }
}
