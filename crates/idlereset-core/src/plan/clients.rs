//! Per-library settings: the plan's numbers in each client's own terms.
//!
//! A keepalive value is useless if the engineer cannot find where it goes. So each library gets
//! the exact keys it reads (connection-string parameters, pool properties, dialer fields, socket
//! options, channel arguments), a snippet to paste, the opt-in the runbook warns about (the OS
//! sysctls only apply to sockets that set SO_KEEPALIVE), and the problems with what the client
//! runs today, judged against the library's documented defaults (design.md).

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::inventory::{Client, IpVersion, Library};
use crate::plan::Heartbeat;
use crate::plan::cost::{self, KeepaliveCost};
use crate::plan::keepalive::{self, Keepalive, Pool};

/// What [`plan_client`] needs from the path plan.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    pub path_timeout_s: f64,
    pub limiting_hop: &'a str,
    pub keepalive: Keepalive,
    pub pool: Pool,
    pub heartbeat: Option<&'a Heartbeat>,
}

/// One setting value, printed as the library expects it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Bool(bool),
    Int(u64),
    Text(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(n) => write!(f, "{n}"),
            Value::Text(t) => write!(f, "{t}"),
        }
    }
}

/// Ordered `key -> value` settings (a JSON object in the output, in the order written).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings(pub Vec<(String, Value)>);

impl Settings {
    fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.0.push((key.to_string(), value.into()));
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}
impl From<u64> for Value {
    fn from(n: u64) -> Value {
        Value::Int(n)
    }
}
impl From<u32> for Value {
    fn from(n: u32) -> Value {
        Value::Int(u64::from(n))
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Text(s)
    }
}

impl Serialize for Settings {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Settings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Settings, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Settings;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of settings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Settings, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    out.push((k, v));
                }
                Ok(Settings(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A problem with what the client runs today.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    /// `no-keepalive`, `keepalive-too-late`, `pool-idle-too-long`, `no-heartbeat`.
    pub kind: String,
    pub detail: String,
}

/// The plan for one client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientPlan {
    pub name: String,
    pub library: Library,
    pub connections: u64,
    /// Exact keys and values in the library's terms.
    pub settings: Settings,
    /// Code or configuration to paste.
    pub snippet: String,
    pub notes: Vec<String>,
    pub problems: Vec<Problem>,
    /// Longest a connection of this client can sit idle today (keepalive time, heartbeat or pool
    /// idle timeout, library defaults included); `None` = unbounded.
    pub current_idle_bound_s: Option<f64>,
    pub cost: KeepaliveCost,
}

/// Library defaults (design.md): SO_KEEPALIVE on?, keepalive time, pool idle, app heartbeat.
struct Defaults {
    keepalive: bool,
    time_s: Option<f64>,
    intvl_s: f64,
    pool_idle_s: Option<f64>,
    heartbeat_s: Option<f64>,
}

fn defaults(lib: Library) -> Defaults {
    let os = |on: bool| Defaults {
        keepalive: on,
        time_s: Some(7200.0),
        intvl_s: 75.0,
        pool_idle_s: None,
        heartbeat_s: None,
    };
    match lib {
        // libpq: keepalives=1 by default, idle from the OS (7200 s).
        Library::Libpq => os(true),
        // net.Dialer: KeepAlive 15 s for idle and interval.
        Library::Go => Defaults {
            keepalive: true,
            time_s: Some(15.0),
            intvl_s: 15.0,
            pool_idle_s: None,
            heartbeat_s: None,
        },
        // HikariCP: idleTimeout 10 min. Its keepaliveTime (an isValid() ping of idle
        // connections) defaults to 2 min only in recent versions, so it is not assumed.
        Library::Hikaricp => Defaults {
            pool_idle_s: Some(600.0),
            ..os(false)
        },
        // node-postgres: keepAlive false, pool idleTimeoutMillis 10 s.
        Library::NodePg => Defaults {
            pool_idle_s: Some(10.0),
            ..os(false)
        },
        Library::Pgjdbc
        | Library::Java
        | Library::Python
        | Library::Grpc
        | Library::Redis
        | Library::Raw => os(false),
    }
}

/// Settings, snippet, notes and problems for one client.
pub fn plan_client(c: &Client, ctx: &Ctx<'_>, ip: IpVersion) -> ClientPlan {
    let (problems, bound) = problems(c, ctx);
    let mut p = ClientPlan {
        name: c.name.clone(),
        library: c.library,
        connections: c.connections,
        settings: Settings::default(),
        snippet: String::new(),
        notes: Vec::new(),
        problems,
        current_idle_bound_s: bound,
        cost: cost::keepalive_cost(&ctx.keepalive, c.connections, ip),
    };
    let d = defaults(c.library);
    // Only ever shorten a pool's idle timeout / lifetime: a shorter current value is kept.
    let idle = shorter(
        ctx.pool.idle_timeout_s,
        c.current.pool_idle_timeout_s.or(d.pool_idle_s),
    );
    let life = shorter(ctx.pool.max_lifetime_s, c.current.max_lifetime_s);
    let write = match c.library {
        Library::Libpq => libpq,
        Library::Pgjdbc => pgjdbc,
        Library::Hikaricp => hikaricp,
        Library::Go => go,
        Library::Java => java,
        Library::Python => python,
        Library::NodePg => node_pg,
        Library::Grpc => grpc,
        Library::Redis => redis,
        Library::Raw => raw,
    };
    write(&mut p, ctx, idle, life);
    if let Some(h) = ctx.heartbeat {
        p.notes.push(format!(
            "hop {:?} ignores TCP keepalives (idle timeout {} s): send application traffic on connections idle for {} s, or retire connections before {} s of age",
            h.hop, h.hop_timeout_s, h.interval_s, h.hop_timeout_s
        ));
    }
    p
}

fn shorter(planned: u64, current: Option<f64>) -> u64 {
    match current {
        Some(c) if c >= 1.0 && (c as u64) < planned => c as u64,
        _ => planned,
    }
}

fn problems(c: &Client, ctx: &Ctx<'_>) -> (Vec<Problem>, Option<f64>) {
    let d = defaults(c.library);
    let t = ctx.path_timeout_s;
    let hop = ctx.limiting_hop;
    let cur = &c.current;
    let mut out = Vec::new();
    let mut add = |kind: &str, detail: String| {
        out.push(Problem {
            kind: kind.into(),
            detail,
        })
    };
    let on = cur.keepalive.unwrap_or(d.keepalive);
    let time = cur.keepalive_time_s.or(d.time_s).unwrap_or(7200.0);
    let intvl = cur.keepalive_intvl_s.unwrap_or(d.intvl_s);
    if !on {
        add(
            "no-keepalive",
            format!(
                "sockets do not set SO_KEEPALIVE, so no OS keepalive setting applies; {hop:?} forgets an idle connection after {t} s"
            ),
        );
    } else if time >= t {
        add(
            "keepalive-too-late",
            format!(
                "first keepalive probe after {time} s idle, but {hop:?} forgets the flow after {t} s"
            ),
        );
    } else if intvl >= t {
        add(
            "keepalive-too-late",
            format!("keepalive interval {intvl} s is not below {hop:?}'s {t} s"),
        );
    }
    let ka_holds = on && time < t && intvl < t;
    let pool_idle = cur.pool_idle_timeout_s.or(d.pool_idle_s);
    if let Some(idle) = pool_idle.filter(|&i| i >= t && !ka_holds) {
        add(
            "pool-idle-too-long",
            format!("the pool keeps idle connections {idle} s, longer than {hop:?}'s {t} s"),
        );
    }
    let heartbeat = cur.heartbeat_s.or(d.heartbeat_s);
    if let Some(h) = ctx.heartbeat {
        let covered = heartbeat.is_some_and(|x| x < h.hop_timeout_s)
            || cur.max_lifetime_s.is_some_and(|x| x < h.hop_timeout_s)
            || pool_idle.is_some_and(|x| x < h.hop_timeout_s);
        if !covered {
            add(
                "no-heartbeat",
                format!(
                    "{:?} ignores TCP keepalives and cuts connections idle for {} s; nothing in this client sends traffic sooner",
                    h.hop, h.hop_timeout_s
                ),
            );
        }
    }
    let bounds = [on.then_some(time), heartbeat, pool_idle];
    let bound = bounds
        .into_iter()
        .flatten()
        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.min(x))));
    (out, bound)
}

fn secs_ms(s: u64) -> u64 {
    s * 1000
}

fn libpq(p: &mut ClientPlan, ctx: &Ctx<'_>, idle: u64, _life: u64) {
    let k = ctx.keepalive;
    let s = &mut p.settings;
    s.set("keepalives", 1u64);
    s.set("keepalives_idle", k.time_s);
    s.set("keepalives_interval", k.intvl_s);
    s.set("keepalives_count", k.probes);
    s.set("tcp_user_timeout", k.tcp_user_timeout_ms);
    p.snippet = format!(
        "postgresql://USER@HOST:5432/DB?keepalives=1&keepalives_idle={}&keepalives_interval={}&keepalives_count={}&tcp_user_timeout={}",
        k.time_s, k.intvl_s, k.probes, k.tcp_user_timeout_ms
    );
    p.notes.push("libpq enables keepalives by default but leaves the idle time to the OS (7200 s): keepalives_idle is the setting that matters".into());
    p.notes.push(format!("libpq has no pool: close connections idle longer than {idle} s in the application (or PgBouncer server_idle_timeout = {idle})"));
}

fn sysctl_keys(p: &mut ClientPlan, k: &Keepalive) {
    p.settings.set("net.ipv4.tcp_keepalive_time", k.time_s);
    p.settings.set("net.ipv4.tcp_keepalive_intvl", k.intvl_s);
    p.settings.set("net.ipv4.tcp_keepalive_probes", k.probes);
}

fn pgjdbc(p: &mut ClientPlan, ctx: &Ctx<'_>, _idle: u64, _life: u64) {
    p.settings.set("tcpKeepAlive", true);
    sysctl_keys(p, &ctx.keepalive);
    p.snippet = "jdbc:postgresql://HOST:5432/DB?tcpKeepAlive=true\n# plus the sysctl file (idlereset plan --format sysctl) on every client host".into();
    p.notes.push("tcpKeepAlive=true is the opt-in: PgJDBC leaves SO_KEEPALIVE off by default, and the OS sysctls only apply to sockets that set it".into());
    p.notes.push("PgJDBC cannot set the idle time per socket (JDBC predates Java 11's jdk.net.ExtendedSocketOptions); once tcpKeepAlive=true the host's net.ipv4.tcp_keepalive_* apply".into());
}

fn hikaricp(p: &mut ClientPlan, ctx: &Ctx<'_>, idle: u64, life: u64) {
    let t = ctx.path_timeout_s;
    let ping = keepalive::heartbeat(t).min(life.saturating_sub(1).max(1));
    let s = &mut p.settings;
    s.set("keepaliveTime", secs_ms(ping));
    s.set("idleTimeout", secs_ms(idle));
    s.set("maxLifetime", secs_ms(life));
    s.set("dataSource.tcpKeepAlive", true);
    sysctl_keys(p, &ctx.keepalive);
    p.snippet = format!(
        "# HikariCP properties (milliseconds)\nkeepaliveTime={}\nidleTimeout={}\nmaxLifetime={}\ndataSource.tcpKeepAlive=true",
        secs_ms(ping),
        secs_ms(idle),
        secs_ms(life)
    );
    p.notes.push(format!("keepaliveTime is an application-level ping (Connection.isValid) of idle pooled connections every {ping} s: it also holds hops that ignore TCP keepalives; only recent HikariCP versions default it to 2 min, so set it explicitly"));
    p.notes.push("idleTimeout only applies when minimumIdle < maximumPoolSize; maxLifetime must stay below the path timeout (HikariCP: a few seconds below any infrastructure limit)".into());
    p.notes.push("dataSource.tcpKeepAlive=true is the opt-in for PgJDBC underneath; its idle time comes from the host sysctls".into());
    if ping < 30 || life < 30 || idle < 10 {
        p.problems.push(Problem {
            kind: "below-library-minimum".into(),
            detail: format!("HikariCP needs keepaliveTime and maxLifetime >= 30 s and idleTimeout >= 10 s (smaller values fall back to defaults); the {t} s path is too short"),
        });
    }
}

fn go(p: &mut ClientPlan, ctx: &Ctx<'_>, idle: u64, life: u64) {
    let k = ctx.keepalive;
    let s = &mut p.settings;
    s.set("net.KeepAliveConfig.Enable", true);
    s.set("net.KeepAliveConfig.Idle", format!("{}s", k.time_s));
    s.set("net.KeepAliveConfig.Interval", format!("{}s", k.intvl_s));
    s.set("net.KeepAliveConfig.Count", k.probes);
    s.set("sql.DB.SetConnMaxIdleTime", format!("{idle}s"));
    s.set("sql.DB.SetConnMaxLifetime", format!("{life}s"));
    p.snippet = format!(
        "d := &net.Dialer{{KeepAliveConfig: net.KeepAliveConfig{{\n\tEnable: true, Idle: {} * time.Second, Interval: {} * time.Second, Count: {},\n}}}} // Go 1.23+\n// before Go 1.23: &net.Dialer{{KeepAlive: {} * time.Second}} sets idle and interval to that value\ndb.SetConnMaxIdleTime({idle} * time.Second)\ndb.SetConnMaxLifetime({life} * time.Second)",
        k.time_s, k.intvl_s, k.probes, k.time_s
    );
    p.notes.push("Go's default (KeepAlive 15 s for idle and interval) already holds paths longer than 15 s; KeepAlive < 0 disables it".into());
}

fn java(p: &mut ClientPlan, ctx: &Ctx<'_>, _idle: u64, _life: u64) {
    let k = ctx.keepalive;
    let s = &mut p.settings;
    s.set("SO_KEEPALIVE", true);
    s.set("ExtendedSocketOptions.TCP_KEEPIDLE", k.time_s);
    s.set("ExtendedSocketOptions.TCP_KEEPINTERVAL", k.intvl_s);
    s.set("ExtendedSocketOptions.TCP_KEEPCOUNT", k.probes);
    p.snippet = format!(
        "socket.setKeepAlive(true); // the opt-in: Java sockets leave SO_KEEPALIVE off\nsocket.setOption(jdk.net.ExtendedSocketOptions.TCP_KEEPIDLE, {});     // Java 11+, Linux\nsocket.setOption(jdk.net.ExtendedSocketOptions.TCP_KEEPINTERVAL, {});\nsocket.setOption(jdk.net.ExtendedSocketOptions.TCP_KEEPCOUNT, {});",
        k.time_s, k.intvl_s, k.probes
    );
    p.notes.push(
        "before Java 11 only setKeepAlive(true) exists: the host sysctls then decide the timing"
            .into(),
    );
}

fn python(p: &mut ClientPlan, ctx: &Ctx<'_>, _idle: u64, _life: u64) {
    let k = ctx.keepalive;
    let s = &mut p.settings;
    s.set("SO_KEEPALIVE", 1u64);
    s.set("TCP_KEEPIDLE", k.time_s);
    s.set("TCP_KEEPINTVL", k.intvl_s);
    s.set("TCP_KEEPCNT", k.probes);
    s.set("TCP_USER_TIMEOUT", k.tcp_user_timeout_ms);
    p.snippet = format!(
        "sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)  # the opt-in\nsock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, {})\nsock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, {})\nsock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, {})\nsock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, {})",
        k.time_s, k.intvl_s, k.probes, k.tcp_user_timeout_ms
    );
}

fn node_pg(p: &mut ClientPlan, ctx: &Ctx<'_>, idle: u64, life: u64) {
    let k = ctx.keepalive;
    let s = &mut p.settings;
    s.set("keepAlive", true);
    s.set("keepAliveInitialDelayMillis", secs_ms(k.time_s));
    s.set("idleTimeoutMillis", secs_ms(idle));
    s.set("maxLifetimeSeconds", life);
    sysctl_keys(p, &k);
    p.snippet = format!(
        "new Pool({{ keepAlive: true, keepAliveInitialDelayMillis: {}, idleTimeoutMillis: {}, maxLifetimeSeconds: {life} }})",
        secs_ms(k.time_s),
        secs_ms(idle)
    );
    p.notes.push("keepAlive: true is the opt-in (node-postgres default false); Node sets only the idle delay, interval and count come from libuv / the host sysctls".into());
}

fn grpc(p: &mut ClientPlan, ctx: &Ctx<'_>, _idle: u64, _life: u64) {
    let ping = ctx.keepalive.time_s.max(10);
    let s = &mut p.settings;
    s.set("grpc.keepalive_time_ms", secs_ms(ping));
    s.set("grpc.keepalive_timeout_ms", 20_000u64);
    s.set("grpc.keepalive_permit_without_calls", 1u64);
    s.set("grpc.http2.max_pings_without_data", 0u64);
    s.set(
        "server:grpc.http2.min_ping_interval_without_data_ms",
        secs_ms(ping),
    );
    s.set("server:grpc.keepalive_permit_without_calls", 1u64);
    p.snippet = format!(
        "# client channel arguments (C-core / Python / C++)\ngrpc.keepalive_time_ms={ms}\ngrpc.keepalive_timeout_ms=20000\ngrpc.keepalive_permit_without_calls=1\ngrpc.http2.max_pings_without_data=0\n# grpc-go: keepalive.ClientParameters{{Time: {ping} * time.Second, Timeout: 20 * time.Second, PermitWithoutStream: true}}\n# grpc-java: ManagedChannelBuilder.keepAliveTime({ping}, SECONDS).keepAliveWithoutCalls(true)\n# SERVER side, or it answers these pings with GOAWAY too_many_pings:\n# C-core: grpc.http2.min_ping_interval_without_data_ms={ms}, grpc.keepalive_permit_without_calls=1\n# grpc-go: keepalive.EnforcementPolicy{{MinTime: {ping} * time.Second, PermitWithoutStream: true}}\n# grpc-java: NettyServerBuilder.permitKeepAliveTime({ping}, SECONDS).permitKeepAliveWithoutCalls(true)",
        ms = secs_ms(ping)
    );
    p.notes.push("gRPC client keepalive is disabled by default; without permit_without_calls an idle channel sends no pings at all".into());
    if ping < 300 {
        p.notes.push(format!(
            "gRPC servers reject client pings more frequent than every 5 min by default (GOAWAY too_many_pings): lower the server's permit_keepalive_time / MinTime to {ping} s or less before rolling out the client"
        ));
    }
}

fn redis(p: &mut ClientPlan, ctx: &Ctx<'_>, idle: u64, life: u64) {
    let k = ctx.keepalive;
    let s = &mut p.settings;
    s.set("socket_keepalive", true);
    s.set(
        "socket_keepalive_options",
        format!(
            "{{TCP_KEEPIDLE: {}, TCP_KEEPINTVL: {}, TCP_KEEPCNT: {}}}",
            k.time_s, k.intvl_s, k.probes
        ),
    );
    s.set(
        "health_check_interval",
        keepalive::heartbeat(ctx.path_timeout_s),
    );
    s.set("go-redis:ConnMaxIdleTime", format!("{idle}s"));
    s.set("go-redis:ConnMaxLifetime", format!("{life}s"));
    s.set("server:tcp-keepalive", k.time_s);
    p.snippet = format!(
        "# redis-py\nredis.Redis(host=HOST, socket_keepalive=True,\n    socket_keepalive_options={{socket.TCP_KEEPIDLE: {t}, socket.TCP_KEEPINTVL: {i}, socket.TCP_KEEPCNT: {n}}},\n    health_check_interval={hb})\n// go-redis: Options{{Dialer: (&net.Dialer{{KeepAliveConfig: net.KeepAliveConfig{{Enable: true, Idle: {t} * time.Second, Interval: {i} * time.Second, Count: {n}}}}}).DialContext,\n//   ConnMaxIdleTime: {idle} * time.Second, ConnMaxLifetime: {life} * time.Second}}\n# redis.conf (server side keepalive, default 300): tcp-keepalive {t}",
        t = k.time_s,
        i = k.intvl_s,
        n = k.probes,
        hb = keepalive::heartbeat(ctx.path_timeout_s)
    );
    p.notes.push("socket_keepalive=True is the opt-in (redis-py default off); health_check_interval sends PING on connections idle that long".into());
}

fn raw(p: &mut ClientPlan, ctx: &Ctx<'_>, _idle: u64, _life: u64) {
    let k = ctx.keepalive;
    let s = &mut p.settings;
    s.set("SO_KEEPALIVE", 1u64);
    s.set("TCP_KEEPIDLE", k.time_s);
    s.set("TCP_KEEPINTVL", k.intvl_s);
    s.set("TCP_KEEPCNT", k.probes);
    s.set("TCP_USER_TIMEOUT", k.tcp_user_timeout_ms);
    p.snippet = format!(
        "int on = 1, idle = {}, intvl = {}, cnt = {};\nunsigned int uto = {};\nsetsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);   /* the opt-in */\nsetsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);\nsetsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);\nsetsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);\nsetsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &uto, sizeof uto);",
        k.time_s, k.intvl_s, k.probes, k.tcp_user_timeout_ms
    );
}
