//! Where each library reads a value: setting keys and snippets, per library identity.
//!
//! Defaults, minimums and which keys a version has come from the library's data row
//! ([`Behaviour`]); [`W::set`] drops any key the version lacks, so a snippet is built only from
//! what was actually emitted.

use crate::inventory::Library;
use crate::libraries::{Behaviour, Profile};
use crate::plan::clients::{ClientPlan, Ctx, Value};
use crate::plan::keepalive::{self, Keepalive};

/// A client plan being written, with its library row.
struct W<'a> {
    p: &'a mut ClientPlan,
    b: &'a Behaviour,
    name: &'a str,
}

impl W<'_> {
    /// Emit `key` when the library version has it; host sysctls (`net.ipv4.`) and server-side
    /// keys (`server:`) always apply.
    fn set(&mut self, key: &str, value: impl Into<Value>) -> bool {
        let ok = key.starts_with("net.ipv4.") || key.starts_with("server:") || self.b.supports(key);
        if ok {
            self.p.settings.set(key, value);
        }
        ok
    }

    fn has(&self, key: &str) -> bool {
        self.b.supports(key)
    }

    fn note(&mut self, n: impl Into<String>) {
        self.p.notes.push(n.into());
    }

    fn problem(&mut self, detail: String) {
        self.p.problem("below-library-minimum", detail);
    }

    /// `planned` seconds for `key` when the version accepts it; below the version's minimum
    /// (the library would replace the value with its default, or turn the feature off) the
    /// minimum when it still stays below `limit` seconds, else `None`: the key is left out.
    /// Either way a note says why.
    fn at_least(&mut self, key: &str, planned: u64, min: Option<f64>, limit: f64) -> Option<u64> {
        let Some(m) = min.filter(|&m| (planned as f64) < m) else {
            return Some(planned);
        };
        let (name, version) = (self.name, self.p.version.clone());
        let clamped = m.ceil() as u64;
        if (clamped as f64) < limit {
            self.note(format!("{name} {version} accepts {key} from {m} s on: planned {clamped} s instead of {planned} s (still below {limit} s)"));
            Some(clamped)
        } else {
            self.note(format!("{name} {version} does not apply a {key} below {m} s (it falls back to its default or turns it off), and {m} s does not fit below {limit} s: {key} is left out ({planned} s would be needed); the TCP keepalive settings hold the path"));
            None
        }
    }

    /// The pool's idle timeout and max lifetime, each `(key, planned seconds)`, with the
    /// version's minimums applied ([`W::at_least`]): both must stay below the path timeout, the
    /// idle timeout also below the lifetime.
    fn pool_limits(
        &mut self,
        ctx: &Ctx<'_>,
        idle: (&str, u64),
        life: (&str, u64),
    ) -> (Option<u64>, Option<u64>) {
        let t = ctx.path_timeout_s;
        let l = self.at_least(life.0, life.1, self.b.min_max_lifetime_s, t);
        let limit = l.map_or(t, |l| t.min(l as f64));
        let i = self.at_least(idle.0, idle.1, self.b.min_pool_idle_s, limit);
        if (l.is_none() || i.is_none()) && ctx.heartbeat.is_some() {
            self.problem(format!("{} cannot retire connections soon enough for a hop that ignores TCP keepalives ({} / {} are below the version's minimums): send application traffic or raise the hop's timeout", self.name, idle.0, life.0));
        }
        (i, l)
    }

    fn sysctls(&mut self, k: &Keepalive) {
        self.set("net.ipv4.tcp_keepalive_time", k.time_s);
        self.set("net.ipv4.tcp_keepalive_intvl", k.intvl_s);
        self.set("net.ipv4.tcp_keepalive_probes", k.probes);
    }
}

/// Fill settings, snippet and notes of `p` for its library.
pub(super) fn write(p: &mut ClientPlan, prof: &Profile<'_>, ctx: &Ctx<'_>, idle: u64, life: u64) {
    let lib = p.library;
    let mut w = W {
        p,
        b: prof.behaviour,
        name: &prof.library.display,
    };
    match lib {
        Library::Libpq => libpq(&mut w, ctx, idle),
        Library::Pgjdbc => pgjdbc(&mut w, ctx),
        Library::Hikaricp => hikaricp(&mut w, ctx, idle, life),
        Library::NodePg => node_pg(&mut w, ctx, idle, life),
        Library::Ioredis => ioredis(&mut w, ctx),
        Library::Go | Library::LibPq => go(&mut w, ctx, idle, life, "sql.DB.SetConnMaxIdleTime"),
        Library::Pgx => go(&mut w, ctx, idle, life, "pgxpool.MaxConnIdleTime"),
        Library::GoRedis => go(&mut w, ctx, idle, life, "ConnMaxIdleTime"),
        Library::Java => java(&mut w, ctx),
        Library::Python | Library::Raw => sockets(&mut w, ctx, lib == Library::Python),
        Library::RedisPy => redis_py(&mut w, ctx),
        Library::Grpcio | Library::GrpcGo | Library::GrpcJava | Library::GrpcJs => {
            grpc(&mut w, ctx, lib)
        }
    }
}

fn secs_ms(s: u64) -> u64 {
    s * 1000
}

fn libpq(w: &mut W<'_>, ctx: &Ctx<'_>, idle: u64) {
    let k = ctx.keepalive;
    w.set("keepalives", 1u64);
    w.set("keepalives_idle", k.time_s);
    w.set("keepalives_interval", k.intvl_s);
    w.set("keepalives_count", k.probes);
    let uto = w.set("tcp_user_timeout", k.tcp_user_timeout_ms);
    let params: Vec<String> =
        w.p.settings
            .0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
    w.p.snippet = format!("postgresql://USER@HOST:5432/DB?{}", params.join("&"));
    if !uto {
        w.note("tcp_user_timeout needs libpq 12 or later");
    }
    w.note(format!("libpq has no pool: close connections idle longer than {idle} s in the application (or PgBouncer server_idle_timeout = {idle})"));
}

fn pgjdbc(w: &mut W<'_>, ctx: &Ctx<'_>) {
    w.set("tcpKeepAlive", true);
    w.sysctls(&ctx.keepalive);
    w.p.snippet = "jdbc:postgresql://HOST:5432/DB?tcpKeepAlive=true\n# plus the sysctl file (idlereset plan --format sysctl) on every client host".into();
    w.note("tcpKeepAlive=true is the opt-in: PgJDBC leaves SO_KEEPALIVE off by default, and the OS sysctls only apply to sockets that set it");
}

fn hikaricp(w: &mut W<'_>, ctx: &Ctx<'_>, idle: u64, life: u64) {
    let t = ctx.path_timeout_s;
    let (idle, life) = w.pool_limits(ctx, ("idleTimeout", idle), ("maxLifetime", life));
    let mut lines = vec!["# HikariCP properties (milliseconds)".to_string()];
    if w.has("keepaliveTime") {
        // A ping must come before the path forgets the flow and before the pool retires it.
        let limit = life.map_or(t, |l| t.min(l as f64));
        let planned =
            keepalive::heartbeat(t).min(life.map_or(u64::MAX, |l| l.saturating_sub(1)).max(1));
        let min = w.b.min_ping_s;
        if let Some(ping) = w.at_least("keepaliveTime", planned, min, limit) {
            w.set("keepaliveTime", secs_ms(ping));
            lines.push(format!("keepaliveTime={}", secs_ms(ping)));
        } else if ctx.heartbeat.is_some() {
            w.problem(format!("{} needs keepaliveTime >= {} s but the {t} s path needs a ping every {planned} s, and a hop ignores TCP keepalives: send application traffic sooner or raise the hop's timeout", w.name, min.unwrap_or(0.0)));
        }
    } else {
        w.note(format!("{} {} has no keepaliveTime: do not set it (the pool throws at start-up); TCP keepalive (dataSource.tcpKeepAlive=true + the host sysctls) is what keeps idle connections alive, maxLifetime / idleTimeout retire them", w.name, w.p.version));
    }
    if let Some(i) = idle {
        w.set("idleTimeout", secs_ms(i));
        lines.push(format!("idleTimeout={}", secs_ms(i)));
    }
    if let Some(l) = life {
        w.set("maxLifetime", secs_ms(l));
        lines.push(format!("maxLifetime={}", secs_ms(l)));
        w.note("maxLifetime must stay below the path timeout");
    }
    w.set("dataSource.tcpKeepAlive", true);
    w.sysctls(&ctx.keepalive);
    lines.push("dataSource.tcpKeepAlive=true".into());
    w.p.snippet = lines.join("\n");
}

/// Node's libuv forces the interval and count: say so instead of asking for host sysctls.
fn node_runtime_note(w: &mut W<'_>, k: &Keepalive) {
    match (w.b.runtime_keepintvl_s, w.b.runtime_keepcnt) {
        (Some(i), Some(n)) => {
            let detect = k.time_s as f64 + i * f64::from(n);
            w.note(format!("Node's libuv sets TCP_KEEPINTVL {i} s and TCP_KEEPCNT {n} itself: the host's tcp_keepalive_intvl / _probes do not apply, a dead peer is detected {detect} s after the last traffic"));
        }
        _ => w.sysctls(k),
    }
}

fn node_pg(w: &mut W<'_>, ctx: &Ctx<'_>, idle: u64, life: u64) {
    let k = ctx.keepalive;
    let (idle, life) = w.pool_limits(
        ctx,
        ("idleTimeoutMillis", idle),
        ("maxLifetimeSeconds", life),
    );
    w.set("keepAlive", true);
    w.set("keepAliveInitialDelayMillis", secs_ms(k.time_s));
    let mut opts = vec![
        "keepAlive: true".to_string(),
        format!("keepAliveInitialDelayMillis: {}", secs_ms(k.time_s)),
    ];
    if let Some(i) = idle {
        w.set("idleTimeoutMillis", secs_ms(i));
        opts.push(format!("idleTimeoutMillis: {}", secs_ms(i)));
    }
    if let Some(l) = life {
        w.set("maxLifetimeSeconds", l);
        opts.push(format!("maxLifetimeSeconds: {l}"));
    }
    node_runtime_note(w, &k);
    w.p.snippet = format!("new Pool({{ {} }})", opts.join(", "));
}

fn ioredis(w: &mut W<'_>, ctx: &Ctx<'_>) {
    let k = ctx.keepalive;
    w.set("keepAlive", secs_ms(k.time_s));
    node_runtime_note(w, &k);
    w.p.snippet = format!(
        "new Redis({{ host: HOST, keepAlive: {} }}) // ms before the first probe",
        secs_ms(k.time_s)
    );
}

fn go(w: &mut W<'_>, ctx: &Ctx<'_>, idle: u64, life: u64, idle_key: &str) {
    let k = ctx.keepalive;
    let life_key = match idle_key {
        "pgxpool.MaxConnIdleTime" => "pgxpool.MaxConnLifetime",
        "ConnMaxIdleTime" => "ConnMaxLifetime",
        _ => "sql.DB.SetConnMaxLifetime",
    };
    let (idle, life) = w.pool_limits(ctx, (idle_key, idle), (life_key, life));
    let dialer = go_dialer(w, &k);
    let mut limits = Vec::new();
    for (key, v) in [(idle_key, idle), (life_key, life)] {
        if let Some(v) = v {
            w.set(key, format!("{v}s"));
            limits.push(format!("{key} = {v}s"));
        }
    }
    let hook = match w.p.library {
        Library::Pgx => "cfg.ConnConfig.DialFunc = d.DialContext // pgxpool.ParseConfig(dsn)",
        Library::LibPq => "c, _ := pq.NewConnector(dsn); c.Dialer(d); db := sql.OpenDB(c)",
        Library::GoRedis => "redis.NewClient(&redis.Options{Dialer: d.DialContext, ...})",
        _ => "conn, err := d.Dial(\"tcp\", addr)",
    };
    w.p.snippet = format!("{dialer}\n{hook}");
    if !limits.is_empty() {
        w.p.snippet.push_str(&format!("\n// {}", limits.join(", ")));
    }
}

/// Go's dialer keepalive (Go 1.23 KeepAliveConfig, or KeepAlive before); the snippet line.
fn go_dialer(w: &mut W<'_>, k: &Keepalive) -> String {
    if w.set("net.KeepAliveConfig.Enable", true) {
        w.set("net.KeepAliveConfig.Idle", format!("{}s", k.time_s));
        w.set("net.KeepAliveConfig.Interval", format!("{}s", k.intvl_s));
        w.set("net.KeepAliveConfig.Count", k.probes);
        format!(
            "d := &net.Dialer{{KeepAliveConfig: net.KeepAliveConfig{{Enable: true, Idle: {} * time.Second, Interval: {} * time.Second, Count: {}}}}} // Go 1.23+; before: net.Dialer{{KeepAlive: {} * time.Second}}",
            k.time_s, k.intvl_s, k.probes, k.time_s
        )
    } else {
        w.set("net.Dialer.KeepAlive", format!("{}s", k.time_s));
        format!(
            "d := &net.Dialer{{KeepAlive: {} * time.Second}} // idle and interval; count from the host",
            k.time_s
        )
    }
}

fn java(w: &mut W<'_>, ctx: &Ctx<'_>) {
    let k = ctx.keepalive;
    w.set("SO_KEEPALIVE", true);
    let ext = w.set("ExtendedSocketOptions.TCP_KEEPIDLE", k.time_s);
    w.set("ExtendedSocketOptions.TCP_KEEPINTERVAL", k.intvl_s);
    w.set("ExtendedSocketOptions.TCP_KEEPCOUNT", k.probes);
    w.p.snippet = if ext {
        format!(
            "socket.setKeepAlive(true); // the opt-in: Java sockets leave SO_KEEPALIVE off\nsocket.setOption(jdk.net.ExtendedSocketOptions.TCP_KEEPIDLE, {});\nsocket.setOption(jdk.net.ExtendedSocketOptions.TCP_KEEPINTERVAL, {});\nsocket.setOption(jdk.net.ExtendedSocketOptions.TCP_KEEPCOUNT, {});",
            k.time_s, k.intvl_s, k.probes
        )
    } else {
        w.sysctls(&k);
        "socket.setKeepAlive(true); // the opt-in; timing from the host sysctls".into()
    };
}

fn sockets(w: &mut W<'_>, ctx: &Ctx<'_>, python: bool) {
    let k = ctx.keepalive;
    w.set("SO_KEEPALIVE", 1u64);
    w.set("TCP_KEEPIDLE", k.time_s);
    w.set("TCP_KEEPINTVL", k.intvl_s);
    w.set("TCP_KEEPCNT", k.probes);
    w.set("TCP_USER_TIMEOUT", k.tcp_user_timeout_ms);
    w.p.snippet = if python {
        format!(
            "sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)  # the opt-in\nsock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, {})\nsock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, {})\nsock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, {})\nsock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, {})",
            k.time_s, k.intvl_s, k.probes, k.tcp_user_timeout_ms
        )
    } else {
        format!(
            "int on = 1, idle = {}, intvl = {}, cnt = {};\nunsigned int uto = {};\nsetsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);   /* the opt-in */\nsetsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);\nsetsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);\nsetsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);\nsetsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &uto, sizeof uto);",
            k.time_s, k.intvl_s, k.probes, k.tcp_user_timeout_ms
        )
    };
}

fn redis_py(w: &mut W<'_>, ctx: &Ctx<'_>) {
    let k = ctx.keepalive;
    let hb = keepalive::heartbeat(ctx.path_timeout_s);
    w.set("socket_keepalive", true);
    w.set(
        "socket_keepalive_options",
        format!(
            "{{TCP_KEEPIDLE: {}, TCP_KEEPINTVL: {}, TCP_KEEPCNT: {}}}",
            k.time_s, k.intvl_s, k.probes
        ),
    );
    w.set("health_check_interval", hb);
    w.set("server:tcp-keepalive", k.time_s);
    w.p.snippet = format!(
        "redis.Redis(host=HOST, socket_keepalive=True,\n    socket_keepalive_options={{socket.TCP_KEEPIDLE: {t}, socket.TCP_KEEPINTVL: {i}, socket.TCP_KEEPCNT: {n}}},\n    health_check_interval={hb})\n# redis.conf (server side keepalive, default 300): tcp-keepalive {t}",
        t = k.time_s,
        i = k.intvl_s,
        n = k.probes,
    );
}

fn grpc(w: &mut W<'_>, ctx: &Ctx<'_>, lib: Library) {
    let t = ctx.path_timeout_s;
    let k = ctx.keepalive;
    let min = w.b.min_ping_s.unwrap_or(0.0);
    // The wire gap between two pings is the period plus what the library adds on top.
    let extra = w.b.ping_wire_extra_s.unwrap_or(0.0);
    if extra > 0.0 && t - extra < 2.0 {
        // No ping period can hold this path: an application call is traffic at any period.
        let alt = grpc_tcp_fallback(w, &k, lib);
        w.problem(format!(
            "{} leaves up to {} s more than its keepalive_time between two pings on an idle channel, so HTTP/2 keepalive cannot hold the {t} s path: {alt}, or raise the hop's timeout",
            w.name,
            extra + 1.0
        ));
        return;
    }
    if min >= t {
        // HTTP/2 keepalive cannot hold this path: TCP keepalive on the socket instead.
        let alt = grpc_tcp_fallback(w, &k, lib);
        w.problem(format!(
            "{} raises keepalive pings below {min} s to {min} s, but the {t} s path forgets the flow sooner: use TCP keepalive on the channel's socket instead ({alt}), or raise the hop's timeout",
            w.name
        ));
        return;
    }
    let mut ping = (k.time_s as f64).max(min).ceil() as u64;
    if extra > 0.0 && ping as f64 + extra >= t {
        ping = ((t - extra) / 2.0).floor().max(1.0) as u64;
        w.note(format!(
            "{} pings an idle channel every keepalive_time + up to {extra} s: planned {ping} s so the gap stays below {t} s",
            w.name
        ));
    }
    let ms = secs_ms(ping);
    let snippet = match lib {
        Library::GrpcGo => {
            w.set("keepalive.ClientParameters.Time", format!("{ping}s"));
            w.set("keepalive.ClientParameters.Timeout", "20s".to_string());
            w.set("keepalive.ClientParameters.PermitWithoutStream", true);
            format!(
                "grpc.WithKeepaliveParams(keepalive.ClientParameters{{Time: {ping} * time.Second, Timeout: 20 * time.Second, PermitWithoutStream: true}})"
            )
        }
        Library::GrpcJava => {
            w.set("keepAliveTime", format!("{ping}s"));
            w.set("keepAliveTimeout", "20s".to_string());
            w.set("keepAliveWithoutCalls", true);
            format!(
                "ManagedChannelBuilder.forTarget(t).keepAliveTime({ping}, TimeUnit.SECONDS).keepAliveTimeout(20, TimeUnit.SECONDS).keepAliveWithoutCalls(true)"
            )
        }
        _ => {
            w.set("grpc.keepalive_time_ms", ms);
            w.set("grpc.keepalive_timeout_ms", 20_000u64);
            w.set("grpc.keepalive_permit_without_calls", 1u64);
            w.set("grpc.http2.max_pings_without_data", 0u64);
            format!(
                "# client channel arguments / options\ngrpc.keepalive_time_ms={ms}\ngrpc.keepalive_timeout_ms=20000\ngrpc.keepalive_permit_without_calls=1"
            )
        }
    };
    if (ping as f64) > k.time_s as f64 {
        w.note(format!(
            "{} accepts pings every {min} s at the most: planned {ping} s instead of {} s",
            w.name, k.time_s
        ));
    }
    w.set("server:grpc.http2.min_ping_interval_without_data_ms", ms);
    w.set("server:grpc.keepalive_permit_without_calls", 1u64);
    w.p.snippet = format!(
        "{snippet}\n# SERVER side, or it answers these pings with GOAWAY too_many_pings:\n# C-core: grpc.http2.min_ping_interval_without_data_ms={ms}, grpc.keepalive_permit_without_calls=1\n# grpc-go: keepalive.EnforcementPolicy{{MinTime: {ping} * time.Second, PermitWithoutStream: true}}\n# grpc-java: NettyServerBuilder.permitKeepAliveTime({ping}, SECONDS).permitKeepAliveWithoutCalls(true)"
    );
    w.note("gRPC client keepalive is disabled by default; without permit_without_calls an idle channel sends no pings at all");
    if ping < 300 {
        w.note(format!(
            "gRPC servers reject client pings more frequent than every 5 min by default (GOAWAY too_many_pings): lower the server's permit_keepalive_time / MinTime to {ping} s or less before rolling out the client"
        ));
    }
}

/// TCP keepalive on a gRPC channel's socket, for paths below the library's ping floor.
fn grpc_tcp_fallback(w: &mut W<'_>, k: &Keepalive, lib: Library) -> String {
    match lib {
        Library::GrpcGo => {
            let d = go_dialer(w, k);
            w.p.snippet = format!(
                "{d}\ngrpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {{ return d.DialContext(ctx, \"tcp\", a) }})"
            );
            "a net.Dialer with KeepAliveConfig through grpc.WithContextDialer".into()
        }
        Library::GrpcJava => {
            w.set("ChannelOption.SO_KEEPALIVE", true);
            w.set("EpollChannelOption.TCP_KEEPIDLE", k.time_s);
            w.set("EpollChannelOption.TCP_KEEPINTVL", k.intvl_s);
            w.set("EpollChannelOption.TCP_KEEPCNT", k.probes);
            w.p.snippet = format!(
                "NettyChannelBuilder.forTarget(t).withOption(ChannelOption.SO_KEEPALIVE, true)\n  .withOption(EpollChannelOption.TCP_KEEPIDLE, {}).withOption(EpollChannelOption.TCP_KEEPINTVL, {}).withOption(EpollChannelOption.TCP_KEEPCNT, {}) // epoll transport",
                k.time_s, k.intvl_s, k.probes
            );
            "NettyChannelBuilder.withOption SO_KEEPALIVE + EpollChannelOption.TCP_KEEP*".into()
        }
        Library::Grpcio => {
            // C-core has no channel argument for SO_KEEPALIVE: host sysctls never apply.
            let period = k.time_s.max(1);
            w.p.snippet = format!(
                "# grpcio sets no SO_KEEPALIVE and has no channel argument for it:
# call a cheap unary RPC (a health check) on the channel every {period} s"
            );
            format!("call a cheap unary RPC (health check) every {period} s")
        }
        _ => {
            w.sysctls(k);
            "SO_KEEPALIVE with the host sysctls".into()
        }
    }
}
