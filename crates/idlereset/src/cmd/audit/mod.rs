//! `idlereset audit`: the runbook's triage steps 3-5 across a host. Finds the long-lived TCP
//! connections an idle timeout will cut (no keepalive, keepalive slower than the path), the
//! processes that own them, the keepalive sysctl trap, and the local conntrack table's state.
//!
//! The flow: per namespace, core's `audit::gather` reads sockets, sysctls and conntrack counters
//! through the host trait (here the real `LinuxHost`); one `/proc` scan maps all socket inodes
//! to processes; `idlereset_core::audit::evaluate` decides; [`render`] prints. Loopback connections are counted and attributed but not judged (no middlebox sits on
//! them) unless `--include-loopback`.

mod render;

use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use idlereset_core::audit::{self, Report};
use idlereset_core::catalog::Catalog;
use idlereset_core::duration::parse_duration;
use idlereset_core::inventory::Inventory;
use idlereset_core::path::PathPolicy;
use idlereset_core::socket::is_loopback;
use idlereset_linux::NetNs;

use crate::app::Outcome;
use idlereset_core::audit::gather::{NsFacts, attribute, gather};
use idlereset_linux::host::LinuxHost;

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

fn paths(args: &Args, catalog: &Catalog) -> anyhow::Result<PathPolicy> {
    if let Some(t) = &args.path_timeout {
        let d = parse_duration(t).with_context(|| format!("--path-timeout {t:?}"))?;
        anyhow::ensure!(!d.is_zero(), "--path-timeout must be more than 0");
        return Ok(PathPolicy::fixed(d.as_secs_f64(), "--path-timeout"));
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
        return Ok(PathPolicy::inventory(inv, name));
    }
    PathPolicy::catalog_default(catalog)
        .context("the catalog has no NAT entry to assume a path timeout from: pass --path-timeout")
}

/// Gather the calling thread's namespace from the real host.
fn gather_here(netns: Option<String>, sample: Duration) -> anyhow::Result<NsFacts> {
    gather(&mut LinuxHost::new(), netns, sample)
        .map_err(|e| anyhow::Error::new(e).context("dumping TCP sockets over sock_diag"))
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
            ns.run(|| gather_here(Some(name.clone()), sample))
                .with_context(|| format!("enter network namespace {name} (needs root)"))??,
        );
    } else {
        gathered.push(gather_here(None, sample)?);
        if args.all_netns {
            for name in NetNs::list_with_prefix("")? {
                let res = NetNs::open(&name)
                    .and_then(|ns| ns.run(|| gather_here(Some(name.clone()), sample)));
                match res {
                    Ok(Ok(f)) => gathered.push(f),
                    Ok(Err(e)) => could_not_see.push(format!("netns {name}: {e:#}")),
                    Err(e) => could_not_see.push(format!("netns {name}: {e}")),
                }
            }
        }
    }

    could_not_see.extend(attribute(&mut LinuxHost::new(), &mut gathered));

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

fn judge(mut facts: NsFacts, paths: &PathPolicy, include_loopback: bool) -> NsAudit {
    let kernel = facts.kernel();
    let (judged, loopback): (Vec<_>, Vec<_>) = std::mem::take(&mut facts.sockets)
        .into_iter()
        .partition(|s| include_loopback || !s.remote.is_some_and(is_loopback));
    let mut report = audit::evaluate(&judged, &kernel, facts.conntrack.as_ref(), paths);
    audit::libraries::name_libraries(&mut report, &facts.libraries);
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
