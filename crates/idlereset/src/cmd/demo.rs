//! `idlereset demo`: the main job for a newcomer, in under a minute.
//!
//! Reproduces the seed incident (`firewall-900`: firewall conntrack 900 s, pool idle timeout
//! 3600 s, no keepalive) on the real kernel at time scale 300, explains the reset from the
//! evidence the lab collected, applies the runbook's preferred fix (TCP keepalive below the
//! firewall timeout, set on the socket) and shows the same connection survive.

use std::io::Write;

use idlereset_lab::reproduce::{self, Outcome as LabOutcome, Report};
use idlereset_lab::scenario::Scenario;

use crate::app::Outcome;
use crate::cmd::signals::run_cancellable;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  sudo idlereset demo
  idlereset demo --time-scale 100        slower, closer to real time (about 30 s)
  idlereset demo --json                  both runs as JSON

Needs CAP_NET_ADMIN, CAP_SYS_ADMIN and CAP_NET_RAW (root): it builds network namespaces.")]
pub struct Args {
    /// Divide the incident's durations by this factor
    #[arg(long, default_value_t = 300.0)]
    pub time_scale: f64,
    /// Print both reports as one JSON object ({"before": ..., "after": ...})
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    idlereset_lab::error::require_privileges()?;
    let mut incident = Scenario::preset("firewall-900")?;
    incident.time_scale = args.time_scale;
    let mut fixed = incident.clone();
    fixed.so_keepalive = true;
    fixed.keepalive_time_s = Some(300.0);
    fixed.keepalive_intvl_s = Some(60.0);
    fixed.keepalive_probes = Some(5);
    fixed.idle_s = 2700.0; // three times the firewall timeout

    let say = |m: &str| {
        if !args.json {
            println!("{m}");
        }
    };
    say("idlereset demo: a firewall forgets an idle database connection, on the real kernel.\n");
    say(&format!(
        "Lab: app -> fw -> db in network namespaces; fw runs nftables with conntrack, established timeout {} s;\n\
         the app's pool keeps idle connections {} s and its sockets have no keepalive. Time runs {}x faster.\n",
        incident.fw_timeout_s,
        incident.pool_idle_timeout_s.unwrap_or(0.0),
        incident.time_scale
    ));
    say("1. Reproduce the incident");
    let before =
        run_cancellable(async { Ok(reproduce::run(&incident, &|m| eprintln!("   {m}")).await?) })?;
    if !args.json {
        let mut out = std::io::stdout().lock();
        super::lab::report::print(&before, &mut out)?;
        explain(&before, &mut out)?;
    }
    say(
        "\n2. Apply the runbook's preferred fix: SO_KEEPALIVE with TCP_KEEPIDLE 300 s, TCP_KEEPINTVL 60 s, TCP_KEEPCNT 5 on the socket",
    );
    say("   and idle three times as long as the firewall timeout.");
    let after =
        run_cancellable(async { Ok(reproduce::run(&fixed, &|m| eprintln!("   {m}")).await?) })?;
    let worked = before.outcome == LabOutcome::Reset && after.outcome == LabOutcome::Survived;
    if args.json {
        crate::cmd::print_json(
            &serde_json::json!({ "before": before, "after": after, "fix_verified": worked }),
        )?;
    } else {
        let mut out = std::io::stdout().lock();
        super::lab::report::print(&after, &mut out)?;
        writeln!(out)?;
        if worked {
            writeln!(
                out,
                "Fix verified: the connection now survives {:.0} s of idle through a {:.0} s firewall.",
                after.idle_s, after.firewall_timeout_s
            )?;
            writeln!(
                out,
                "In production: set keepalive on the socket (libpq keepalives_idle=300, JDBC tcpKeepAlive=true, ...),"
            )?;
            writeln!(
                out,
                "or lower net.ipv4.tcp_keepalive_time below the firewall timeout *and* make sure sockets set SO_KEEPALIVE;"
            )?;
            writeln!(
                out,
                "persist sysctls in /etc/sysctl.d/, fix both sides, and monitor. Try: idlereset lab reproduce --help"
            )?;
        } else {
            writeln!(
                out,
                "Unexpected: before={:?}, after={:?}. The lab reports what the kernel did.",
                before.outcome, after.outcome
            )?;
        }
    }
    if !args.json {
        println!(
            "\n3. The one command that finds it on the app host (here on the incident's log; add --remote DB:PORT there to measure the path):"
        );
        println!("   $ idlereset triage --log app.log --skip-host\n");
        super::triage::after_demo(&before.app_log)?;
    }
    Ok(if worked {
        Outcome::Clean
    } else {
        Outcome::Findings
    })
}

fn explain(r: &Report, out: &mut impl Write) -> std::io::Result<()> {
    let e = &r.evidence;
    writeln!(out, "\nWhy, from the evidence the lab collected:")?;
    if let Some(state) = e.db_socket_state.as_deref().filter(|_| e.db_still_open) {
        writeln!(
            out,
            "  - The database never saw the connection end: sock_diag in its namespace shows its socket {state} ({} errors on its side).",
            e.db_errors
        )?;
    }
    if let Some(t) = e.ct_gone_at_s {
        writeln!(
            out,
            "  - The firewall's conntrack entry for the flow expired at lab t={t:.2} s ({:.0} s after the last query, incident time).",
            t * r.time_scale
        )?;
    }
    if let (Some(rst), Some(db)) = (e.rst_at_app.first(), e.db_ttl_at_app) {
        writeln!(
            out,
            "  - The RST the app got carries the database's address, but its TTL is {rst} while the database's own packets arrive with TTL {db}:\n    it was made one hop closer, by the firewall."
        )?;
    }
    if e.rst_on_db_link == 0 && !e.rst_at_app.is_empty() {
        writeln!(
            out,
            "  - No RST ever crossed the firewall's link to the database: the database did not send it."
        )?;
    }
    Ok(())
}
