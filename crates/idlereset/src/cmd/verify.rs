//! `idlereset verify`: prove a plan in the lab instead of trusting the arithmetic.
//!
//! Reads the same path inventory as `plan`, plans it, and hands both to
//! `idlereset_lab::verify::run`, which builds the path with one conntrack firewall per hop,
//! scales time so the path timeout lasts a few seconds, and idles one connection per client
//! and settings variant (planned, current, "OS sysctl only") beyond every hop's timeout.
//! Exit 0 when every planned run survived, 1 when one did not.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use idlereset_core::catalog::Catalog;
use idlereset_core::duration::Human;
use idlereset_core::inventory::Inventory;
use idlereset_core::plan;
use idlereset_lab::verify::{self, Db, Report};
use serde::Serialize;

use crate::app::Outcome;
use crate::cmd::signals::run_cancellable;

const EXAMPLES: &str = "\
Examples:
  sudo idlereset verify examples/inventories/firewall-3600.toml
  sudo idlereset verify examples/inventories/firewall-900.toml --client orders-api --json
  sudo idlereset verify inventory.toml --db postgres       # libpq clients through real psql + PostgreSQL
  sudo idlereset verify inventory.toml --lab-timeout 8     # path timeout = 8 lab seconds (slower, more margin)

What runs: every hop that honours TCP keepalives becomes a Linux conntrack firewall (reset -> TCP
reset from the firewall, drop -> silent drop); a hop that ignores keepalives (L7 proxy) becomes an
idle close at the server that only application traffic resets. Per client: the planned settings,
the current ones, and for clients without SO_KEEPALIVE the runbook's 'OS sysctl only' trap.
libpq runs the real psql against PostgreSQL when installed; other libraries run as the socket
options, pool limits and pings their settings amount to (shown per run).

Exit code: 0 when every planned run survived, 1 when one failed, 2 on errors.";

/// Which database the lab runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DbArg {
    /// PostgreSQL when installed and a libpq client is verified, else the built-in server
    Auto,
    /// Only the built-in line-protocol server
    Builtin,
    /// Require PostgreSQL (initdb/postgres/psql)
    Postgres,
}

#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Path inventory (TOML), as for `idlereset plan`
    #[arg(value_name = "INVENTORY.toml")]
    pub inventory: PathBuf,
    /// Verify only this client
    #[arg(long, value_name = "NAME")]
    pub client: Option<String>,
    /// Database in the lab
    #[arg(long, value_enum, default_value_t = DbArg::Auto)]
    pub db: DbArg,
    /// The path timeout in lab seconds; sets the time scale (every duration is divided alike)
    #[arg(long, value_name = "SECONDS", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(2..=120))]
    pub lab_timeout: u32,
    /// Print one JSON object: inventory, time_scale, path_timeout_s, runs, verified
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Json<'a> {
    inventory: String,
    #[serde(flatten)]
    report: &'a Report,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let text = std::fs::read_to_string(&args.inventory)
        .with_context(|| format!("reading inventory {}", args.inventory.display()))?;
    let name = args.inventory.display().to_string();
    let inventory = Inventory::parse(&text, &name, &Catalog::builtin()?)?;
    let plan = plan::plan(&inventory);
    let opts = verify::Options {
        client: args.client.clone(),
        lab_path_timeout_s: args.lab_timeout,
        db: match args.db {
            DbArg::Auto => Db::Auto,
            DbArg::Builtin => Db::Builtin,
            DbArg::Postgres => Db::Postgres,
        },
    };
    let report = run_cancellable(async {
        Ok(verify::run(&inventory, &plan, &opts, &|m| eprintln!("idlereset: {m}")).await?)
    })?;
    if args.json {
        crate::cmd::print_json(&Json {
            inventory: name,
            report: &report,
        })?;
    } else {
        print(&report, &mut std::io::stdout().lock())?;
    }
    Ok(if report.verified {
        Outcome::Clean
    } else {
        Outcome::Findings
    })
}

fn print(r: &Report, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "Path {}: timeout {} (limiting hop), time scale {:.0} (path timeout = {} lab s, idle {:.1} lab s = {})",
        r.path.as_deref().unwrap_or("(unnamed)"),
        Human(r.path_timeout_s),
        r.time_scale,
        r.lab_path_timeout_s,
        r.lab_idle_s,
        Human(r.lab_idle_s * r.time_scale),
    )?;
    for h in &r.hops {
        writeln!(
            out,
            "  hop {:<16} {:>8} on {:<3} {}",
            h.name,
            Human(h.timeout_s).to_string(),
            h.host,
            h.modelled_as
        )?;
    }
    writeln!(out, "Database: {}", r.db)?;
    writeln!(out)?;
    for run in &r.runs {
        let mark = match (run.settings, run.kept_alive(), run.outcome.as_str()) {
            (_, true, _) => "ok  ",
            (verify::mapping::Which::Planned, false, _) => "FAIL",
            // Survived only because a retry or validation hid the reset from the application.
            (_, false, "survived") => "hid ",
            _ => "--  ",
        };
        writeln!(
            out,
            "{mark} {:<16} {:<9} {:<11} {:<9} after {} idle  via {}",
            run.client,
            run.library,
            run.settings.as_str(),
            run.outcome,
            Human(run.idle_s),
            run.via
        )?;
        if let Some(e) = &run.error {
            writeln!(out, "       error: {e}")?;
        }
        writeln!(out, "       {}", run.detail)?;
        writeln!(out, "       settings as run: {}", run.model.how)?;
        if !run.why.is_empty() {
            writeln!(out, "       how it ran: {}", run.why)?;
        }
    }
    for n in &r.notes {
        writeln!(out, "note: {n}")?;
    }
    writeln!(out)?;
    if r.verified {
        writeln!(
            out,
            "Verified: every client's planned settings survived an idle beyond the path timeout."
        )
    } else {
        writeln!(
            out,
            "NOT verified: planned settings failed for at least one client, or survived only through a retry that hid a reset (see FAIL above)."
        )
    }
}
