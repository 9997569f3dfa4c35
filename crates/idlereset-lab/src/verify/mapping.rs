//! From a client's plan (or what it runs today) to what the lab can run: socket options, pool
//! limits and an application heartbeat.
//!
//! Where the real library cannot run (see `drivers`), what it does to an idle connection
//! comes down to a few things the kernel and the lab workload reproduce exactly: whether the
//! socket sets SO_KEEPALIVE, its TCP_KEEPIDLE / TCP_KEEPINTVL / TCP_KEEPCNT (or the host's
//! `net.ipv4.tcp_keepalive_*` when it sets none), TCP_USER_TIMEOUT, the pool's idle timeout and
//! max lifetime, and application traffic on idle connections (HikariCP's keepaliveTime ping,
//! redis-py's health check, gRPC's HTTP/2 PING). Each [`Model`] says in `how` which of these a
//! library's settings became, so the report states what was verified literally (libpq through
//! the real `psql`) and what through equivalent socket options.
//!
//! Library defaults for the "current" runs come from the library data file
//! (`idlereset_core::libraries`), through the same `plan::clients::today` that `plan` judges
//! today's problems with; nothing about a library is written here.

use idlereset_core::inventory::Client;
use idlereset_core::libraries::Libraries;
use idlereset_core::plan::Plan;
use idlereset_core::plan::clients::{ClientPlan, Value, profile_of, today};
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
    /// The variant's name in the report (`planned`, `current`, `sysctl-only`).
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
    /// SO_KEEPALIVE is set on the socket.
    pub so_keepalive: bool,
    /// Per-socket TCP_KEEPIDLE; `None` = the host's `net.ipv4.tcp_keepalive_time`.
    pub keepidle_s: Option<f64>,
    /// Per-socket TCP_KEEPINTVL; `None` = the host's `net.ipv4.tcp_keepalive_intvl`.
    pub keepintvl_s: Option<f64>,
    /// Per-socket TCP_KEEPCNT; `None` = the host's `net.ipv4.tcp_keepalive_probes`.
    pub keepcnt: Option<u32>,
    /// TCP_USER_TIMEOUT, milliseconds; `None` = not set.
    pub user_timeout_ms: Option<u64>,
    /// The pool retires connections idle this long; `None` = never.
    pub pool_idle_s: Option<f64>,
    /// The pool retires connections this old; `None` = never.
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

/// Where a plan setting goes in the model, and its unit.
#[derive(Clone, Copy)]
enum Field {
    On,
    Idle,
    Intvl,
    Cnt,
    UserTimeoutMs,
    PoolIdle,
    Lifetime,
    Heartbeat,
}

/// Setting keys (as `plan` writes them for any library) and what they set. Values are seconds
/// unless the key's unit is milliseconds (`ms = true`); Go / gRPC durations are written "420s".
const KEYS: &[(&str, Field, bool)] = &[
    ("keepalives", Field::On, false),
    ("tcpKeepAlive", Field::On, false),
    ("dataSource.tcpKeepAlive", Field::On, false),
    ("net.KeepAliveConfig.Enable", Field::On, false),
    ("SO_KEEPALIVE", Field::On, false),
    ("socket_keepalive", Field::On, false),
    ("ChannelOption.SO_KEEPALIVE", Field::On, false),
    ("keepalives_idle", Field::Idle, false),
    ("net.KeepAliveConfig.Idle", Field::Idle, false),
    ("net.Dialer.KeepAlive", Field::Idle, false),
    ("ExtendedSocketOptions.TCP_KEEPIDLE", Field::Idle, false),
    ("EpollChannelOption.TCP_KEEPIDLE", Field::Idle, false),
    ("TCP_KEEPIDLE", Field::Idle, false),
    ("keepAliveInitialDelayMillis", Field::Idle, true),
    ("keepalives_interval", Field::Intvl, false),
    ("net.KeepAliveConfig.Interval", Field::Intvl, false),
    (
        "ExtendedSocketOptions.TCP_KEEPINTERVAL",
        Field::Intvl,
        false,
    ),
    ("EpollChannelOption.TCP_KEEPINTVL", Field::Intvl, false),
    ("TCP_KEEPINTVL", Field::Intvl, false),
    ("keepalives_count", Field::Cnt, false),
    ("net.KeepAliveConfig.Count", Field::Cnt, false),
    ("ExtendedSocketOptions.TCP_KEEPCOUNT", Field::Cnt, false),
    ("EpollChannelOption.TCP_KEEPCNT", Field::Cnt, false),
    ("TCP_KEEPCNT", Field::Cnt, false),
    ("tcp_user_timeout", Field::UserTimeoutMs, false),
    ("TCP_USER_TIMEOUT", Field::UserTimeoutMs, false),
    ("idleTimeout", Field::PoolIdle, true),
    ("idleTimeoutMillis", Field::PoolIdle, true),
    ("sql.DB.SetConnMaxIdleTime", Field::PoolIdle, false),
    ("pgxpool.MaxConnIdleTime", Field::PoolIdle, false),
    ("ConnMaxIdleTime", Field::PoolIdle, false),
    ("maxLifetime", Field::Lifetime, true),
    ("maxLifetimeSeconds", Field::Lifetime, false),
    ("sql.DB.SetConnMaxLifetime", Field::Lifetime, false),
    ("pgxpool.MaxConnLifetime", Field::Lifetime, false),
    ("ConnMaxLifetime", Field::Lifetime, false),
    ("keepaliveTime", Field::Heartbeat, true),
    ("grpc.keepalive_time_ms", Field::Heartbeat, true),
    ("keepalive.ClientParameters.Time", Field::Heartbeat, false),
    ("keepAliveTime", Field::Heartbeat, false),
    ("health_check_interval", Field::Heartbeat, false),
];

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Int(n) => Some(*n as f64),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        Value::Text(t) => t.trim_end_matches('s').parse().ok(),
    }
}

/// The planned settings of client `p` as a lab model: every key the plan wrote, read through
/// `KEYS`; keepalive interval / count the library's runtime forces come from its data row.
pub fn planned(plan: &Plan, p: &ClientPlan) -> Model {
    let mut m = Model::sockets(false);
    let mut used = Vec::new();
    for (key, v) in &p.settings.0 {
        // ioredis' keepAlive is a number of ms (the delay), node-pg's a bool.
        let special = (key == "keepAlive").then(|| match v {
            Value::Int(ms) => (Field::Idle, Some(*ms as f64 / 1000.0)),
            _ => (Field::On, num(v)),
        });
        let Some((field, val)) = special.or_else(|| {
            let (_, f, ms) = KEYS.iter().find(|(k, _, _)| k == key)?;
            Some((*f, num(v).map(|x| if *ms { x / 1000.0 } else { x })))
        }) else {
            continue;
        };
        let Some(x) = val else { continue };
        used.push(key.as_str());
        match field {
            Field::On => m.so_keepalive |= x > 0.0,
            Field::Idle => {
                m.keepidle_s = Some(x);
                m.so_keepalive = true;
            }
            Field::Intvl => m.keepintvl_s = Some(x),
            Field::Cnt => m.keepcnt = Some(x as u32),
            Field::UserTimeoutMs => m.user_timeout_ms = Some(x as u64),
            Field::PoolIdle => m.pool_idle_s = Some(x),
            Field::Lifetime => m.max_lifetime_s = Some(x),
            Field::Heartbeat => m.heartbeat_s = Some(x),
        }
    }
    if let Some((i, v, c)) = parse_redis_opts(p) {
        (m.keepidle_s, m.keepintvl_s, m.keepcnt) = (i, v, c);
        used.push("socket_keepalive_options");
    }
    let b = profile_of(p).behaviour;
    if m.so_keepalive {
        m.keepintvl_s = b.runtime_keepintvl_s.or(m.keepintvl_s);
        m.keepcnt = b.runtime_keepcnt.or(m.keepcnt);
    }
    // What the library really does with values below its minimums (from its data row).
    let asked = (m.heartbeat_s, m.pool_idle_s, m.max_lifetime_s);
    m.heartbeat_s = m.heartbeat_s.and_then(|h| b.effective_ping(h));
    (m.pool_idle_s, m.max_lifetime_s) = b.effective_pool(m.pool_idle_s, m.max_lifetime_s);
    let corrected = asked != (m.heartbeat_s, m.pool_idle_s, m.max_lifetime_s);
    m.how = format!(
        "{} -> socket options / pool limits / application ping{}",
        used.join(", "),
        if b.runtime_keepintvl_s.is_some() {
            " (interval and count as the runtime forces them, from the library data)"
        } else {
            ""
        }
    );
    if corrected {
        m.how.push_str(
            "; values below the library's minimums as the library applies them (ignored, raised or its default)",
        );
    }
    // The plan asks for application traffic when a hop ignores keepalives; a pool's idle
    // connections are out of the application's reach, only the pool's own ping counts.
    if let Some(h) = plan.heartbeat.as_ref().filter(|_| b.pool_idle_s.is_none()) {
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

type KeepaliveTriple = (Option<f64>, Option<f64>, Option<u32>);

fn parse_redis_opts(p: &ClientPlan) -> Option<KeepaliveTriple> {
    let Some(Value::Text(t)) = p.settings.get("socket_keepalive_options") else {
        return None;
    };
    let field = |name: &str| -> Option<f64> {
        let rest = t.split(&format!("{name}:")).nth(1)?;
        rest.split([',', '}']).next()?.trim().parse().ok()
    };
    Some((
        field("TCP_KEEPIDLE"),
        field("TCP_KEEPINTVL"),
        field("TCP_KEEPCNT").map(|c| c as u32),
    ))
}

/// What the client runs today: the library's defaults from its data row (at the inventory's
/// version) with the inventory's `current` values over them. Keepalive timing is always
/// explicit (the host's 7200 / 75 / 9 when neither sets it), because the lab's `app` host
/// carries the *planned* sysctls.
pub fn current(c: &Client) -> Model {
    let prof = Libraries::builtin().profile(c.library, c.version);
    let now = today(c, prof.behaviour);
    let on = now.so_keepalive;
    Model {
        so_keepalive: on,
        keepidle_s: on.then_some(now.keepidle_s),
        keepintvl_s: on.then_some(now.keepintvl_s),
        keepcnt: on.then_some(now.keepcnt),
        user_timeout_ms: None,
        pool_idle_s: now.pool_idle_s,
        max_lifetime_s: now.max_lifetime_s,
        heartbeat_s: now.heartbeat_s,
        how: format!(
            "defaults of {} (data/libraries.toml) with the inventory's `current` values",
            prof.describe()
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
library = "redis-py"
version = "7.4.0"
connections = 1
[[client]]
name = "f"
library = "grpcio"
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
        // The proxy ignores keepalives: every planned client gets traffic below its timeout,
        // or (a pool, whose idle connections the application cannot ping) retires idle
        // connections sooner.
        for c in &plan.clients {
            let m = planned(&plan, c);
            let bound = m
                .heartbeat_s
                .or(m.pool_idle_s)
                .expect("heartbeat or pool idle");
            assert!(bound < 1200.0, "{}: {bound}", c.name);
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
