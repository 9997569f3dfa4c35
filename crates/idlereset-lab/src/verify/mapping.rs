//! From a client's plan (or what it runs today) to what the lab can run: socket options, pool
//! limits and an application heartbeat.
//!
//! The lab cannot run HikariCP, Go or gRPC, but what those libraries do to an idle connection
//! comes down to a few things the kernel and the lab workload reproduce exactly: whether the
//! socket sets SO_KEEPALIVE, its TCP_KEEPIDLE / TCP_KEEPINTVL / TCP_KEEPCNT (or the host's
//! `net.ipv4.tcp_keepalive_*` when it sets none), TCP_USER_TIMEOUT, the pool's idle timeout and
//! max lifetime, and application traffic on idle connections (HikariCP's keepaliveTime ping,
//! redis-py's health check, gRPC's HTTP/2 PING). Each [`Model`] says in `how` which of these a
//! library's settings became, so the report states what was verified literally (libpq through
//! the real `psql`) and what through equivalent socket options.
//!
//! Library defaults for the "current" runs follow design.md (libpq keepalives on with the OS's
//! 7200 s, Go 15 s, PgJDBC / Java / node-postgres / gRPC / Python / redis off, HikariCP
//! idleTimeout 600 s, node-postgres idleTimeoutMillis 10 s), as `plan::clients` assumes them.

use idlereset_core::inventory::{Client, Library};
use idlereset_core::plan::Plan;
use idlereset_core::plan::clients::{ClientPlan, Value};
use serde::Serialize;

/// Which settings a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Which {
    /// The plan's settings for the client.
    Planned,
    /// What the inventory says the client runs today (library defaults filled in).
    Current,
    /// The runbook's trap: the plan's OS sysctls installed, but the client still does not set
    /// SO_KEEPALIVE, so they never apply.
    SysctlOnly,
}

impl Which {
    pub fn as_str(self) -> &'static str {
        match self {
            Which::Planned => "planned",
            Which::Current => "current",
            Which::SysctlOnly => "sysctl-only",
        }
    }
}

/// What one run does to its connection, in configured (unscaled) seconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Model {
    pub so_keepalive: bool,
    /// Per-socket TCP_KEEPIDLE; `None` = the host's `net.ipv4.tcp_keepalive_time`.
    pub keepidle_s: Option<f64>,
    pub keepintvl_s: Option<f64>,
    pub keepcnt: Option<u32>,
    pub user_timeout_ms: Option<u64>,
    pub pool_idle_s: Option<f64>,
    pub max_lifetime_s: Option<f64>,
    /// Application traffic on an idle connection at this period.
    pub heartbeat_s: Option<f64>,
    /// How the library's settings became these (for the report).
    pub how: String,
}

impl Model {
    fn sockets(so_keepalive: bool) -> Model {
        Model {
            so_keepalive,
            keepidle_s: None,
            keepintvl_s: None,
            keepcnt: None,
            user_timeout_ms: None,
            pool_idle_s: None,
            max_lifetime_s: None,
            heartbeat_s: None,
            how: String::new(),
        }
    }
}

fn num(p: &ClientPlan, key: &str) -> Option<f64> {
    match p.settings.get(key)? {
        Value::Int(n) => Some(*n as f64),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        // Go durations are written "420s".
        Value::Text(t) => t.trim_end_matches('s').parse().ok(),
    }
}

fn on(p: &ClientPlan, key: &str) -> bool {
    num(p, key).is_some_and(|v| v > 0.0)
}

/// The planned settings of client `p` as a lab model.
pub fn planned(plan: &Plan, p: &ClientPlan) -> Model {
    let ms = |k: &str| num(p, k).map(|v| v / 1000.0);
    let mut m = match p.library {
        Library::Libpq => Model {
            keepidle_s: num(p, "keepalives_idle"),
            keepintvl_s: num(p, "keepalives_interval"),
            keepcnt: num(p, "keepalives_count").map(|c| c as u32),
            user_timeout_ms: num(p, "tcp_user_timeout").map(|c| c as u64),
            how: "connection string keepalives_* / tcp_user_timeout (run literally with psql against PostgreSQL when installed, else as the same socket options)".into(),
            ..Model::sockets(on(p, "keepalives"))
        },
        Library::Pgjdbc => Model {
            how: "tcpKeepAlive=true -> SO_KEEPALIVE with the host's planned net.ipv4.tcp_keepalive_* sysctls".into(),
            ..Model::sockets(on(p, "tcpKeepAlive"))
        },
        Library::Hikaricp => Model {
            heartbeat_s: ms("keepaliveTime"),
            pool_idle_s: ms("idleTimeout"),
            max_lifetime_s: ms("maxLifetime"),
            how: "keepaliveTime -> application ping of idle connections; idleTimeout / maxLifetime -> pool limits; dataSource.tcpKeepAlive -> SO_KEEPALIVE with the planned sysctls".into(),
            ..Model::sockets(on(p, "dataSource.tcpKeepAlive"))
        },
        Library::Go => Model {
            keepidle_s: num(p, "net.KeepAliveConfig.Idle"),
            keepintvl_s: num(p, "net.KeepAliveConfig.Interval"),
            keepcnt: num(p, "net.KeepAliveConfig.Count").map(|c| c as u32),
            pool_idle_s: num(p, "sql.DB.SetConnMaxIdleTime"),
            max_lifetime_s: num(p, "sql.DB.SetConnMaxLifetime"),
            how: "net.KeepAliveConfig -> SO_KEEPALIVE + TCP_KEEPIDLE/INTVL/CNT; SetConnMaxIdleTime / SetConnMaxLifetime -> pool limits".into(),
            ..Model::sockets(on(p, "net.KeepAliveConfig.Enable"))
        },
        Library::Java => Model {
            keepidle_s: num(p, "ExtendedSocketOptions.TCP_KEEPIDLE"),
            keepintvl_s: num(p, "ExtendedSocketOptions.TCP_KEEPINTERVAL"),
            keepcnt: num(p, "ExtendedSocketOptions.TCP_KEEPCOUNT").map(|c| c as u32),
            how: "setKeepAlive + ExtendedSocketOptions -> the same socket options".into(),
            ..Model::sockets(on(p, "SO_KEEPALIVE"))
        },
        Library::Python | Library::Raw => Model {
            keepidle_s: num(p, "TCP_KEEPIDLE"),
            keepintvl_s: num(p, "TCP_KEEPINTVL"),
            keepcnt: num(p, "TCP_KEEPCNT").map(|c| c as u32),
            user_timeout_ms: num(p, "TCP_USER_TIMEOUT").map(|c| c as u64),
            how: "setsockopt calls -> the same socket options".into(),
            ..Model::sockets(on(p, "SO_KEEPALIVE"))
        },
        Library::NodePg => Model {
            keepidle_s: ms("keepAliveInitialDelayMillis"),
            pool_idle_s: ms("idleTimeoutMillis"),
            max_lifetime_s: num(p, "maxLifetimeSeconds"),
            how: "keepAlive + keepAliveInitialDelayMillis -> SO_KEEPALIVE + TCP_KEEPIDLE (interval and count from the planned sysctls); idleTimeoutMillis / maxLifetimeSeconds -> pool limits".into(),
            ..Model::sockets(on(p, "keepAlive"))
        },
        Library::Grpc => Model {
            heartbeat_s: ms("grpc.keepalive_time_ms"),
            how: "grpc.keepalive_time_ms with permit_without_calls -> HTTP/2 PING on the idle channel, modelled as an application ping (gRPC does not set SO_KEEPALIVE)".into(),
            ..Model::sockets(false)
        },
        Library::Redis => {
            let (i, v, c) = parse_redis_opts(p);
            Model {
                keepidle_s: i,
                keepintvl_s: v,
                keepcnt: c,
                heartbeat_s: num(p, "health_check_interval"),
                how: "socket_keepalive_options -> TCP_KEEPIDLE/INTVL/CNT; health_check_interval -> PING on idle connections".into(),
                ..Model::sockets(on(p, "socket_keepalive"))
            }
        }
    };
    // The plan asks every client for application traffic when a hop ignores keepalives.
    if let Some(h) = &plan.heartbeat {
        let hb = h.interval_s as f64;
        if m.heartbeat_s.is_none_or(|x| x > hb) {
            m.heartbeat_s = Some(hb);
            m.how.push_str(&format!(
                "; the plan's heartbeat every {hb} s for {:?} (ignores keepalives)",
                h.hop
            ));
        }
    }
    m
}

fn parse_redis_opts(p: &ClientPlan) -> (Option<f64>, Option<f64>, Option<u32>) {
    let Some(Value::Text(t)) = p.settings.get("socket_keepalive_options") else {
        return (None, None, None);
    };
    let field = |name: &str| -> Option<f64> {
        let rest = t.split(&format!("{name}:")).nth(1)?;
        rest.split([',', '}']).next()?.trim().parse().ok()
    };
    (
        field("TCP_KEEPIDLE"),
        field("TCP_KEEPINTVL"),
        field("TCP_KEEPCNT").map(|c| c as u32),
    )
}

/// Whether a library sets SO_KEEPALIVE without being asked, and its pool idle default.
fn library_defaults(lib: Library) -> (bool, f64, f64, Option<f64>) {
    // (keepalive on, idle, interval, pool idle)
    match lib {
        Library::Libpq => (true, 7200.0, 75.0, None),
        Library::Go => (true, 15.0, 15.0, None),
        Library::Hikaricp => (false, 7200.0, 75.0, Some(600.0)),
        Library::NodePg => (false, 7200.0, 75.0, Some(10.0)),
        _ => (false, 7200.0, 75.0, None),
    }
}

/// What the client runs today, library defaults filled in. Keepalive timing is always explicit
/// (the OS defaults 7200 / 75 / 9 when the inventory says nothing), because the lab's `app`
/// host carries the *planned* sysctls.
pub fn current(c: &Client) -> Model {
    let (ka, idle, intvl, pool_idle) = library_defaults(c.library);
    let cur = &c.current;
    let on = cur.keepalive.unwrap_or(ka);
    Model {
        so_keepalive: on,
        keepidle_s: on.then(|| cur.keepalive_time_s.unwrap_or(idle)),
        keepintvl_s: on.then(|| cur.keepalive_intvl_s.unwrap_or(intvl)),
        keepcnt: on.then(|| cur.keepalive_probes.unwrap_or(9)),
        user_timeout_ms: None,
        pool_idle_s: cur.pool_idle_timeout_s.or(pool_idle),
        max_lifetime_s: cur.max_lifetime_s,
        heartbeat_s: cur.heartbeat_s,
        how: format!(
            "{} defaults with the inventory's `current` values",
            c.library.as_str()
        ),
    }
}

/// The runbook's "OS sysctl only" fix for a client that does not set SO_KEEPALIVE today:
/// `None` when the client already sets it (the trap does not apply).
pub fn sysctl_only(c: &Client) -> Option<Model> {
    let m = current(c);
    (!m.so_keepalive).then(|| Model {
        how: "the plan's net.ipv4.tcp_keepalive_* sysctls installed, client unchanged (no SO_KEEPALIVE): the sysctls never apply".into(),
        ..m
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use idlereset_core::catalog::Catalog;
    use idlereset_core::inventory::Inventory;

    const MULTI: &str = r#"
[[hop]]
name = "fw"
kind = "firewall"
idle_timeout_s = 900
failure = "reset"
[[hop]]
name = "proxy"
kind = "proxy"
idle_timeout_s = 1200
failure = "fin"
honours_keepalive = false
[[client]]
name = "a"
library = "libpq"
connections = 1
current = { keepalive_time_s = 3000 }
[[client]]
name = "b"
library = "pgjdbc"
connections = 1
[[client]]
name = "c"
library = "hikaricp"
connections = 1
[[client]]
name = "d"
library = "go"
connections = 1
[[client]]
name = "e"
library = "redis"
connections = 1
[[client]]
name = "f"
library = "grpc"
connections = 1
[[client]]
name = "g"
library = "node-pg"
connections = 1
"#;

    fn setup() -> (Inventory, Plan) {
        let inv = Inventory::parse(MULTI, "t.toml", &Catalog::builtin().expect("catalog"))
            .expect("inventory");
        let plan = idlereset_core::plan::plan(&inv);
        (inv, plan)
    }

    fn model(plan: &Plan, name: &str) -> Model {
        let c = plan
            .clients
            .iter()
            .find(|c| c.name == name)
            .expect("client");
        planned(plan, c)
    }

    #[test]
    fn planned_models_follow_the_plan_numbers() {
        let (_, plan) = setup();
        let k = plan.keepalive;
        let a = model(&plan, "a");
        assert!(a.so_keepalive);
        assert_eq!(a.keepidle_s, Some(k.time_s as f64));
        assert_eq!(a.keepintvl_s, Some(k.intvl_s as f64));
        assert_eq!(a.user_timeout_ms, Some(k.tcp_user_timeout_ms));
        // PgJDBC sets no per-socket timing: the host sysctls decide.
        let b = model(&plan, "b");
        assert!(b.so_keepalive && b.keepidle_s.is_none());
        let d = model(&plan, "d");
        assert_eq!(d.keepidle_s, Some(k.time_s as f64));
        assert_eq!(d.pool_idle_s, Some(plan.pool.idle_timeout_s as f64));
        let e = model(&plan, "e");
        assert_eq!(
            (e.keepidle_s, e.keepintvl_s, e.keepcnt),
            (
                Some(k.time_s as f64),
                Some(k.intvl_s as f64),
                Some(k.probes)
            )
        );
        let f = model(&plan, "f");
        assert!(!f.so_keepalive);
        let g = model(&plan, "g");
        assert_eq!(g.keepidle_s, Some(k.time_s as f64));
        // The proxy ignores keepalives: every planned client gets traffic below its timeout.
        for c in &plan.clients {
            let m = planned(&plan, c);
            let hb = m.heartbeat_s.expect("heartbeat");
            assert!(hb < 1200.0, "{}: {hb}", c.name);
        }
    }

    #[test]
    fn current_models_fill_library_defaults() {
        let (inv, _) = setup();
        let by = |n: &str| current(inv.clients.iter().find(|c| c.name == n).expect("c"));
        let a = by("a");
        assert!(a.so_keepalive);
        assert_eq!(a.keepidle_s, Some(3000.0));
        assert_eq!(a.keepintvl_s, Some(75.0));
        assert!(!by("b").so_keepalive);
        assert_eq!(by("c").pool_idle_s, Some(600.0));
        assert_eq!(by("d").keepidle_s, Some(15.0));
        assert!(
            sysctl_only(&inv.clients[0]).is_none(),
            "libpq sets SO_KEEPALIVE"
        );
        let trap = sysctl_only(&inv.clients[1]).expect("pgjdbc does not");
        assert!(!trap.so_keepalive);
    }
}
