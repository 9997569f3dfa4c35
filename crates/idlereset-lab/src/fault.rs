//! Faults injected into a running lab. The one there is: an asymmetric path.
//!
//! A direct veth between `app` and `db` plays the failover link that bypasses the firewall.
//! While the fault lasts, `db` routes the `app` address over it, so the db -> app direction of
//! every flow skips `fw`'s conntrack while the app -> db direction (and the app's ACKs for data
//! the firewall never saw) still crosses it. Conntrack's TCP window tracking falls behind; once
//! the route is restored, the flow's packets through `fw` fail the window checks: they are
//! INVALID, pass (the lab's rulesets do not drop INVALID), and no longer refresh the entry's
//! timer. Whether and when conntrack re-synchronises is the kernel's business, the lab only
//! reports what it sees: the INVALID statistic and the flow's entry before and after.
//!
//! Only the routed (non-NAT) path can be bypassed this way: under NAT the database answers the
//! firewall's own address, which only `fw` can translate back, so the fault is refused there.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use idlereset_linux::conntrack;
use idlereset_linux::rtnl::Rtnl;
use serde::Serialize;

use crate::error::{LabError, Result};
use crate::lab::Lab;
use crate::topology::PREFIX;

/// The failover segment, 198.18.9.0/24: `app` .1, `db` .2.
pub const FAILOVER_APP: Ipv4Addr = Ipv4Addr::new(198, 18, 9, 1);
/// `db`'s address on the failover segment.
pub(crate) const FAILOVER_DB: Ipv4Addr = Ipv4Addr::new(198, 18, 9, 2);

/// Link names of the failover path inside `app` and `db`.
pub fn failover_links() -> (String, String) {
    (format!("{PREFIX}-fodb"), format!("{PREFIX}-foapp"))
}

/// What an asymmetric fault did and what conntrack on `fw` counted meanwhile.
#[derive(Debug, Clone, Serialize)]
pub struct FaultReport {
    /// Name of the lab the fault ran in.
    pub lab: String,
    /// Which fault ran (`asymmetric`).
    pub fault: &'static str,
    /// `db->app`
    pub direction: &'static str,
    /// The route `db` used during the fault.
    pub route: String,
    /// How long the fault actually lasted, lab seconds (shorter when cancelled).
    pub duration_s: f64,
    /// `fw`'s INVALID statistic at the start and at the end of the fault.
    pub invalid_before: u64,
    /// `fw`'s INVALID statistic at the end of the fault.
    pub invalid_after: u64,
}

/// Create the direct `app` <-> `db` link once (idempotent): addresses on both ends, reverse
/// path filtering off in `app` so it accepts the database's address on the new link.
pub async fn ensure_failover_path(lab: &Lab) -> Result<()> {
    let (app_link, db_link) = failover_links();
    let app = Rtnl::connect(lab.ns("app")?)?;
    if app.link_names().await?.contains(&app_link) {
        return Ok(());
    }
    let db_ns = lab.ns("db")?;
    let db = Rtnl::connect(db_ns)?;
    let alias = format!("{} app<->db failover", lab.name());
    app.add_veth(&app_link, &db_link, db_ns, &alias).await?;
    app.add_address(&app_link, FAILOVER_APP.into(), 24).await?;
    app.set_up(&app_link).await?;
    db.add_address(&db_link, FAILOVER_DB.into(), 24).await?;
    db.set_up(&db_link).await?;
    idlereset_linux::sysctl::write_in(
        lab.ns("app")?,
        &[
            ("net.ipv4.conf.all.rp_filter", "0".into()),
            (&format!("net.ipv4.conf.{app_link}.rp_filter"), "0".into()),
        ],
    )?;
    Ok(())
}

fn invalid_on_fw(lab: &Lab) -> Result<u64> {
    Ok(lab.ns("fw")?.run(conntrack::stats)??.total.invalid)
}

/// Route `db`'s packets for the app over the failover path for `duration`, then restore the
/// path through `fw`. Returns early (route restored) when `cancel` completes first.
pub async fn asymmetric(
    lab: &Lab,
    duration: Duration,
    cancel: impl std::future::Future<Output = ()>,
) -> Result<FaultReport> {
    if lab.spec().firewall.profile.is_nat() {
        return Err(LabError::lab(
            lab.name(),
            format!(
                "profile {} translates addresses on fw: the database answers fw's own address, which cannot be routed around the firewall; use a routed profile (reject or drop) with loose=0",
                lab.spec().firewall.profile.name()
            ),
        ));
    }
    ensure_failover_path(lab).await?;
    let app_addr = lab.topology().app_addr(false);
    let db = Rtnl::connect(lab.ns("db")?)?;
    let invalid_before = invalid_on_fw(lab)?;
    let started = Instant::now();
    db.add_route(app_addr, 32, FAILOVER_APP.into()).await?;
    tokio::select! {
        () = tokio::time::sleep(duration) => {}
        () = cancel => {}
    }
    let restored = db.del_route(app_addr, 32, FAILOVER_APP.into()).await;
    let duration_s = started.elapsed().as_secs_f64();
    restored?;
    Ok(FaultReport {
        lab: lab.name().to_string(),
        fault: "asymmetric",
        direction: "db->app",
        route: format!("{app_addr}/32 via {FAILOVER_APP} ({})", failover_links().1),
        duration_s,
        invalid_before,
        invalid_after: invalid_on_fw(lab)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_names_fit_ifnamsiz() {
        let (a, d) = failover_links();
        assert!(a.len() <= 15 && d.len() <= 15, "{a} {d}");
        assert_ne!(a, d);
        assert_eq!(FAILOVER_APP.octets()[..3], [198, 18, 9]);
        assert_eq!(FAILOVER_DB.octets()[..3], [198, 18, 9]);
        assert_ne!(FAILOVER_APP, FAILOVER_DB);
    }
}
