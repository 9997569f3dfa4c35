#![allow(clippy::unwrap_used)]
//! `verify` on the real kernel (issue 7's test list): planned settings survive an idle beyond
//! the path timeout, the runbook's "OS sysctl only" setting fails, and a libpq connection
//! string with `keepalives_idle` below the timeout survives against a real PostgreSQL.

use idlereset_core::catalog::Catalog;
use idlereset_core::inventory::Inventory;
use idlereset_core::plan;
use idlereset_lab::verify::mapping::Which;
use idlereset_lab::verify::{Db, Options, Report, RunReport, run};
use idlereset_linux::privilege::require_or_skip;

fn inventory(text: &str) -> Inventory {
    Inventory::parse(text, "test.toml", &Catalog::builtin().unwrap()).unwrap()
}

async fn verify(text: &str, opts: Options) -> Report {
    let inv = inventory(text);
    let p = plan::plan(&inv);
    let r = run(&inv, &p, &opts, &|m| eprintln!("{m}")).await.unwrap();
    for run in &r.runs {
        eprintln!(
            "{:>10} {:<11} {:<9} via {:<7} idle {:.0} s {:?} {}",
            run.client,
            run.settings.as_str(),
            run.outcome,
            run.via,
            run.idle_s,
            run.error,
            run.detail
        );
    }
    r
}

fn find<'a>(r: &'a Report, client: &str, which: Which) -> &'a RunReport {
    r.runs
        .iter()
        .find(|x| x.client == client && x.settings == which)
        .unwrap_or_else(|| panic!("no run {client} {which:?}"))
}

const RUNBOOK: &str = include_str!("../../../examples/inventories/firewall-3600.toml");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runbook_plan_survives_and_sysctl_only_fails() {
    if !require_or_skip("runbook_plan_survives_and_sysctl_only_fails") {
        return;
    }
    let r = verify(RUNBOOK, Options::default()).await;
    assert!(r.verified, "planned settings must survive: {:#?}", r.runs);
    for run in r.runs.iter().filter(|x| x.settings == Which::Planned) {
        assert_eq!(run.outcome, "survived", "{run:?}");
        assert!(
            run.idle_s > r.path_timeout_s,
            "idle {} must exceed the path timeout {}",
            run.idle_s,
            r.path_timeout_s
        );
    }
    // PgJDBC with only the OS sysctls: SO_KEEPALIVE is off, the firewall forgets the flow.
    let trap = find(&r, "reports", Which::SysctlOnly);
    assert_eq!(trap.outcome, "reset", "{trap:?}");
    assert!(
        trap.error.as_deref().unwrap().contains("reset by peer"),
        "{trap:?}"
    );
    // libpq with the OS default 7200 s keepalive idle: too late for the 3600 s firewall.
    assert_ne!(find(&r, "billing", Which::Current).outcome, "survived");
    assert_ne!(find(&r, "ingest", Which::Current).outcome, "survived");
}
