//! Runs of the real client library (see [`super::driver`]): whether a run can use it, and the
//! run itself. Split from the orchestration in `verify/mod.rs` so each file keeps one job.

use idlereset_core::inventory::Library;
use idlereset_core::libraries::Libraries;
use idlereset_core::plan::Plan;

use super::compiled;
use super::driver::{self, Driver};
use super::mapping::Which;
use super::runs::RunCtx;
use super::{Options, REAL_TIME_MAX_S, RunReport, psql};
use crate::error::Result;
use crate::grpc::GRPC_PORT;
use crate::redis::REDIS_PORT;

/// A host as a gRPC target names it (IPv6 in brackets).
fn target_host(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V6(a) => format!("[{a}]"),
        v4 => v4.to_string(),
    }
}

/// Whether a library's defaults carry durations fixed in its code (keepalive idle, the runtime's
/// interval, a ping): those cannot be divided by a time scale.
pub(super) fn fixed_timing(b: &idlereset_core::libraries::Behaviour) -> bool {
    (b.so_keepalive && (b.keepidle_s.is_some() || b.runtime_keepintvl_s.is_some()))
        || b.ping_s.is_some()
        || b.ping_wire_extra_s.is_some()
}

/// Which clients' real libraries can run here (or why not), by library.
pub(super) async fn available_drivers(
    plan: &Plan,
    opts: &Options,
) -> std::collections::HashMap<Library, std::result::Result<Driver, String>> {
    let mut out = std::collections::HashMap::new();
    let drivers: Vec<Driver> = plan
        .clients
        .iter()
        .filter(|c| opts.client.as_deref().is_none_or(|n| n == c.name))
        .filter_map(|c| Driver::of(Libraries::builtin().profile(c.library, None).library))
        .collect();
    compiled::prepare_all(drivers.iter().map(|d| d.runtime.as_str())).await;
    for c in plan
        .clients
        .iter()
        .filter(|c| opts.client.as_deref().is_none_or(|n| n == c.name))
    {
        if out.contains_key(&c.library) {
            continue;
        }
        let data = Libraries::builtin().profile(c.library, None).library;
        let d = match Driver::of(data) {
            Some(d) => d.availability().await.map(|()| d),
            None => Err(format!("no driver program for {} yet", data.display)),
        };
        out.insert(c.library, d);
    }
    out
}

impl RunCtx<'_> {
    /// The real library's driver for this run, or why the socket-level model runs instead.
    pub(super) fn real_plan(
        &self,
        lib: Library,
        which: Which,
        defaults: bool,
    ) -> std::result::Result<Driver, String> {
        let d = match self.drivers.get(&lib) {
            Some(Ok(d)) => d.clone(),
            Some(Err(why)) => return Err(format!("socket-level model: {why}")),
            None => return Err("socket-level model: no driver".into()),
        };
        if which == Which::SysctlOnly {
            return Err("socket-level model: the sysctl-only trap is the library's socket without SO_KEEPALIVE".into());
        }
        let proto = Libraries::builtin()
            .profile(lib, None)
            .library
            .protocol
            .clone();
        if proto == "postgres" && self.pg.is_none() {
            return Err("socket-level model: PostgreSQL is not running in the lab".into());
        }
        if proto == "redis" && !self.redis {
            return Err("socket-level model: redis-server is not running in the lab".into());
        }
        if proto == "grpc" && !self.grpc {
            return Err("socket-level model: the gRPC server is not running in the lab".into());
        }
        if which == Which::Current
            && defaults
            && !self.real_time
            && fixed_timing(Libraries::builtin().profile(lib, None).behaviour)
        {
            return Err(format!(
                "socket-level model: the library's defaults are fixed in its code and cannot be time-scaled, and the path is longer than {REAL_TIME_MAX_S} s: its defaults from the library data were replayed as socket options, scaled"
            ));
        }
        Ok(d)
    }

    /// For the compiled drivers (JVM, Go): whether the real library runs this model faithfully
    /// at the run's time scale (see [`compiled::fits`]); other drivers always do.
    pub(super) fn compiled_fits(
        &self,
        lib: Library,
        d: &Driver,
        m: &super::mapping::Model,
    ) -> std::result::Result<(), String> {
        if !compiled::is_compiled(&d.runtime) {
            return Ok(());
        }
        let b = Libraries::builtin().profile(lib, None).behaviour;
        compiled::fits(&d.module, b, m, self.scale.factor())
    }

    pub(super) async fn real(&self, r: &mut RunReport, d: &Driver, defaults: bool) -> Result<()> {
        let host = self.target.ip();
        let target = match (d.module.as_str(), self.pg) {
            ("psycopg2", Some((pg, _))) => serde_json::json!({
                "dsn": format!("{} connect_timeout=5 application_name=idlereset-verify", pg.conninfo(host))
            }),
            ("pg", Some((pg, _))) => serde_json::json!({
                "host": host.to_string(), "port": pg.port, "user": pg.user, "database": "postgres",
                "connectionTimeoutMillis": 5000
            }),
            ("grpc", _) => serde_json::json!({"host": target_host(host), "port": GRPC_PORT}),
            (m, Some((pg, _))) if compiled::is_compiled(&d.runtime) => {
                compiled::target(m, pg, host)
            }
            _ => serde_json::json!({"host": host.to_string(), "port": REDIS_PORT}),
        };
        let b = Libraries::builtin()
            .profile(
                Library::resolve(&r.library).map_or(Library::Raw, |(l, _)| l),
                None,
            )
            .behaviour;
        // A library that leaves the timing to the OS gets the host's defaults explicitly: the
        // lab's app host carries the planned sysctls, which are not what runs today.
        let os_timing = b.so_keepalive && b.keepidle_s.is_none();
        let settings = if r.settings == Which::Current && defaults && !os_timing {
            Default::default()
        } else {
            driver::settings(&d.module, &r.model, &|s| {
                u64::from(self.scale.lab_whole_secs(s))
            })
        };
        let ns = self.lab.ns("app")?;
        let res = driver::run(d, ns, &target, self.idle, &settings).await?;
        r.idle_s = self.scale.configured(self.idle);
        r.library_version = res.version.clone();
        r.retried = Some(res.retried);
        r.error = res.error.clone();
        r.outcome = if res.survived {
            "survived".into()
        } else {
            psql::classify(res.error.as_deref().unwrap_or("")).into()
        };
        let what = if settings.is_empty() {
            "the library's own defaults".to_string()
        } else if r.settings == Which::Current && defaults {
            format!(
                "the library's defaults; it leaves keepalive timing to the OS, so the host defaults are passed explicitly: {}",
                serde_json::to_string(&settings).unwrap_or_default()
            )
        } else {
            serde_json::to_string(&settings).unwrap_or_default()
        };
        r.why = format!(
            "real library {} {} ({what})",
            d.module,
            res.version.as_deref().unwrap_or("?")
        );
        r.detail = match (res.survived, res.retried) {
            (true, false) if res.replaced => "the pool retired the idle connection before the path cut it and answered on a new one".into(),
            (true, false) => "the same connection answered after the idle".into(),
            (true, true) => "answered only on a new connection: the library's retry / reconnect hid a reset from the application".into(),
            (false, _) => "the library raised an error to the application".into(),
        };
        r.app_log = Some(res.app_log);
        r.sockopts = res.sockopts;
        Ok(())
    }
}

/// Notes for real runs whose installed library version behaves differently (another row of the
/// library data) from the version the plan's advice is for: the real run then checks advice
/// written for another version (HikariCP 2.7 rejects 4.x's keepaliveTime at start-up).
pub(super) fn version_notes(plan: &Plan, runs: &[super::RunReport]) -> Vec<String> {
    use idlereset_core::libraries::Version;
    let mut notes = Vec::new();
    for cp in &plan.clients {
        let Some(installed) = runs
            .iter()
            .filter(|r| r.client == cp.name && r.via.starts_with("real:"))
            .find_map(|r| r.library_version.as_deref())
        else {
            continue;
        };
        let first = installed.split_whitespace().next().unwrap_or(installed);
        let (Ok(have), Ok(want)) = (Version::parse(first), Version::parse(&cp.version)) else {
            continue;
        };
        let libs = Libraries::builtin();
        let (a, b) = (
            libs.profile(cp.library, Some(have)),
            libs.profile(cp.library, Some(want)),
        );
        if !std::ptr::eq(a.behaviour, b.behaviour) {
            notes.push(format!(
                "{}: the lab ran the installed {} {first}, but the plan's advice is for {}{}, which behaves differently (library data); add `version = \"{first}\"` to the client if that is the version it runs",
                cp.name,
                a.library.display,
                cp.version,
                if cp.version_assumed { " (assumed)" } else { "" }
            ));
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use idlereset_core::catalog::Catalog;
    use idlereset_core::inventory::Inventory;

    fn run_of(inv: &Inventory, version: &str) -> super::super::RunReport {
        let c = &inv.clients[0];
        super::super::RunReport {
            client: c.name.clone(),
            library: c.library.as_str().into(),
            settings: Which::Planned,
            outcome: "error".into(),
            idle_s: 0.0,
            error: None,
            detail: String::new(),
            via: "real:java:hikaricp".into(),
            why: String::new(),
            library_version: Some(version.into()),
            retried: None,
            app_log: None,
            sockopts: None,
            model: super::super::mapping::current(c),
        }
    }

    #[test]
    fn installed_version_with_other_behaviour_is_noted() {
        let text = |v: &str| {
            format!(
                "[[hop]]\nname = \"fw\"\nkind = \"firewall\"\nidle_timeout_s = 60\nfailure = \"reset\"\n[[client]]\nname = \"pool\"\nlibrary = \"hikaricp\"\n{v}"
            )
        };
        let cat = Catalog::builtin().expect("catalog");
        // No version: the advice assumes HikariCP 5.x; the lab's 2.7.9 behaves otherwise.
        let inv = Inventory::parse(&text(""), "t.toml", &cat).expect("inventory");
        let plan = idlereset_core::plan::plan(&inv);
        let notes = version_notes(&plan, &[run_of(&inv, "2.7.9 (PgJDBC 42.5.5)")]);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("version = \"2.7.9\""), "{notes:?}");
        assert!(notes[0].contains("(assumed)"), "{notes:?}");
        // The inventory names the installed version: nothing to say.
        let inv = Inventory::parse(&text("version = \"2.7.9\""), "t.toml", &cat).expect("inv");
        let plan = idlereset_core::plan::plan(&inv);
        assert!(version_notes(&plan, &[run_of(&inv, "2.7.9 (PgJDBC 42.5.5)")]).is_empty());
    }
}
