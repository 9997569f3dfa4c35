//! The scenario knobs shared by `lab up`, `lab reproduce` and `demo`: a preset, then overrides,
//! in the parts of a [`Scenario`]: the firewall, the client (pool and socket), the app host's
//! keepalive sysctls, the server. Durations accept `900`, `900s`, `15m`, `2h` and are parsed into
//! [`Duration`]s here, at the edge; the scenario keeps incident seconds.

use std::time::Duration;

use idlereset_core::duration::parse_duration;
use idlereset_lab::firewall::Profile;
use idlereset_lab::scenario::Scenario;

fn dur(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

fn secs(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64())
}

fn profile(s: &str) -> Result<Profile, String> {
    Profile::parse(s)
        .ok_or_else(|| format!("unknown profile {s:?} (reject, drop, nat, nat-strict)"))
}

fn onoff(s: &str) -> Result<bool, String> {
    match s {
        "1" | "on" | "true" | "yes" => Ok(true),
        "0" | "off" | "false" | "no" => Ok(false),
        _ => Err(format!("expected 0/1 or on/off, got {s:?}")),
    }
}

/// Every scenario knob: the lab's shape, then one flattened group per part.
#[derive(Debug, Clone, clap::Args)]
pub struct ScenarioArgs {
    /// Divide every duration by this factor (900 s at 100 becomes 9 s)
    #[arg(long, value_name = "N")]
    pub time_scale: Option<f64>,
    /// Extra router hops between app and fw
    #[arg(long, value_name = "N")]
    pub hops: Option<u8>,
    /// Use the IPv6 path (2001:db8::/32) instead of IPv4
    #[arg(long)]
    pub ipv6: bool,
    #[command(flatten)]
    pub firewall: FirewallArgs,
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub host: HostSysctlArgs,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// The firewall between app and database.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "firewall_knobs", multiple = true)]
pub struct FirewallArgs {
    /// Firewall profile: reject, drop, nat, nat-strict
    #[arg(long, value_parser = profile)]
    pub profile: Option<Profile>,
    /// Firewall conntrack TCP established timeout
    #[arg(long, value_parser = dur, value_name = "DURATION")]
    pub fw_timeout: Option<Duration>,
    /// nf_conntrack_tcp_loose on the firewall (0/1)
    #[arg(long, value_parser = onoff, value_name = "0|1")]
    pub loose: Option<bool>,
    /// nf_conntrack_tcp_be_liberal on the firewall (0/1)
    #[arg(long, value_parser = onoff, value_name = "0|1")]
    pub be_liberal: Option<bool>,
    /// Drop packets conntrack marks INVALID (0/1)
    #[arg(long, value_parser = onoff, value_name = "0|1")]
    pub drop_invalid: Option<bool>,
}

/// The app: its workload, its pool and its sockets' options.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "client_knobs", multiple = true)]
pub struct ClientArgs {
    /// Idle gap before the connection is used again
    #[arg(long, value_parser = dur, value_name = "DURATION")]
    pub idle: Option<Duration>,
    /// Pool idle timeout (the pool closes connections idle this long)
    #[arg(long, value_parser = dur, value_name = "DURATION")]
    pub pool_idle_timeout: Option<Duration>,
    /// Pool max connection lifetime
    #[arg(long, value_parser = dur, value_name = "DURATION")]
    pub max_lifetime: Option<Duration>,
    /// Application heartbeat (validation query) interval on idle connections
    #[arg(long, value_parser = dur, value_name = "DURATION")]
    pub heartbeat: Option<Duration>,
    /// SO_KEEPALIVE on the app's sockets (0/1); implied by --keepalive-time
    #[arg(long, value_parser = onoff, value_name = "0|1")]
    pub keepalive: Option<bool>,
    /// TCP_KEEPIDLE on the socket (turns SO_KEEPALIVE on)
    #[arg(long, value_parser = dur, value_name = "DURATION")]
    pub keepalive_time: Option<Duration>,
    /// TCP_KEEPINTVL on the socket
    #[arg(long, value_parser = dur, value_name = "DURATION")]
    pub keepalive_intvl: Option<Duration>,
    /// TCP_KEEPCNT on the socket
    #[arg(long, value_name = "N")]
    pub keepalive_probes: Option<u32>,
    /// TCP_USER_TIMEOUT on the socket
    #[arg(long, value_parser = dur, value_name = "DURATION")]
    pub user_timeout: Option<Duration>,
}

/// The app namespace's OS keepalive defaults (sysctls; only sockets that opt in use them).
#[derive(Debug, Clone, clap::Args)]
#[group(id = "host_sysctl_knobs", multiple = true)]
pub struct HostSysctlArgs {
    /// net.ipv4.tcp_keepalive_time in the app namespace (OS default, only for sockets that opt in)
    #[arg(long, value_parser = dur, value_name = "DURATION")]
    pub os_keepalive_time: Option<Duration>,
    /// net.ipv4.tcp_keepalive_intvl in the app namespace
    #[arg(long, value_parser = dur, value_name = "DURATION")]
    pub os_keepalive_intvl: Option<Duration>,
    /// net.ipv4.tcp_keepalive_probes in the app namespace
    #[arg(long, value_name = "N")]
    pub os_keepalive_probes: Option<u32>,
}

/// The database server and how long the app waits for it.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "server_knobs", multiple = true)]
pub struct ServerArgs {
    /// The database closes connections idle this long (like a proxy's idle timeout)
    #[arg(long, value_parser = dur, value_name = "DURATION")]
    pub server_idle_close: Option<Duration>,
    /// How long the app waits for a query's answer
    #[arg(long, value_parser = dur, value_name = "DURATION")]
    pub query_timeout: Option<Duration>,
}

impl ScenarioArgs {
    /// The flags given on the command line (so a preset can refuse what it cannot honour).
    pub fn given(&self) -> Vec<&'static str> {
        let (f, c, h, v) = (&self.firewall, &self.client, &self.host, &self.server);
        let set = [
            ("--time-scale", self.time_scale.is_some()),
            ("--hops", self.hops.is_some()),
            ("--ipv6", self.ipv6),
            ("--profile", f.profile.is_some()),
            ("--fw-timeout", f.fw_timeout.is_some()),
            ("--loose", f.loose.is_some()),
            ("--be-liberal", f.be_liberal.is_some()),
            ("--drop-invalid", f.drop_invalid.is_some()),
            ("--idle", c.idle.is_some()),
            ("--pool-idle-timeout", c.pool_idle_timeout.is_some()),
            ("--max-lifetime", c.max_lifetime.is_some()),
            ("--heartbeat", c.heartbeat.is_some()),
            ("--keepalive", c.keepalive.is_some()),
            ("--keepalive-time", c.keepalive_time.is_some()),
            ("--keepalive-intvl", c.keepalive_intvl.is_some()),
            ("--keepalive-probes", c.keepalive_probes.is_some()),
            ("--user-timeout", c.user_timeout.is_some()),
            ("--os-keepalive-time", h.os_keepalive_time.is_some()),
            ("--os-keepalive-intvl", h.os_keepalive_intvl.is_some()),
            ("--os-keepalive-probes", h.os_keepalive_probes.is_some()),
            ("--server-idle-close", v.server_idle_close.is_some()),
            ("--query-timeout", v.query_timeout.is_some()),
        ];
        set.into_iter()
            .filter(|(_, s)| *s)
            .map(|(f, _)| f)
            .collect()
    }

    /// The preset with these overrides applied.
    pub fn apply(&self, mut s: Scenario) -> Scenario {
        if let Some(v) = self.time_scale {
            s.time_scale = v;
        }
        if let Some(v) = self.hops {
            s.hops = v;
        }
        s.ipv6 |= self.ipv6;
        self.firewall.apply(&mut s);
        self.client.apply(&mut s);
        self.host.apply(&mut s);
        self.server.apply(&mut s);
        s
    }
}

/// Overwrite `$target` with `Some(v)` when the flag was given.
macro_rules! set_opt {
    ($target:expr, $val:expr) => {
        if let Some(v) = $val {
            $target = Some(v);
        }
    };
}

impl FirewallArgs {
    fn apply(&self, s: &mut Scenario) {
        if let Some(p) = self.profile {
            s.profile = p;
            if p == Profile::NatStrict && self.loose.is_none() {
                s.loose = false;
            }
        }
        if let Some(t) = secs(self.fw_timeout) {
            s.fw_timeout_s = t;
        }
        if let Some(v) = self.loose {
            s.loose = v;
        }
        if let Some(v) = self.be_liberal {
            s.be_liberal = v;
        }
        if let Some(v) = self.drop_invalid {
            s.drop_invalid = v;
        }
    }
}

impl ClientArgs {
    fn apply(&self, s: &mut Scenario) {
        if let Some(t) = secs(self.idle) {
            s.idle_s = t;
        }
        if let Some(v) = self.keepalive {
            s.so_keepalive = v;
        }
        set_opt!(s.pool_idle_timeout_s, secs(self.pool_idle_timeout));
        set_opt!(s.max_lifetime_s, secs(self.max_lifetime));
        set_opt!(s.heartbeat_s, secs(self.heartbeat));
        if self.keepalive_time.is_some() {
            s.keepalive_time_s = secs(self.keepalive_time);
            if self.keepalive.is_none() {
                s.so_keepalive = true;
            }
        }
        set_opt!(s.keepalive_intvl_s, secs(self.keepalive_intvl));
        set_opt!(s.keepalive_probes, self.keepalive_probes);
        set_opt!(s.user_timeout_s, secs(self.user_timeout));
    }
}

impl HostSysctlArgs {
    fn apply(&self, s: &mut Scenario) {
        set_opt!(s.os_keepalive_time_s, secs(self.os_keepalive_time));
        set_opt!(s.os_keepalive_intvl_s, secs(self.os_keepalive_intvl));
        set_opt!(s.os_keepalive_probes, self.os_keepalive_probes);
    }
}

impl ServerArgs {
    fn apply(&self, s: &mut Scenario) {
        set_opt!(s.server_idle_close_s, secs(self.server_idle_close));
        if let Some(t) = secs(self.query_timeout) {
            s.query_timeout_s = t;
        }
    }
}
