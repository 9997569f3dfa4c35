//! The scenario knobs shared by `lab up`, `lab reproduce` and `demo`: a preset, then overrides.
//! Durations accept `900`, `900s`, `15m`, `2h`.

use idlereset_core::duration::parse_duration;
use idlereset_lab::firewall::Profile;
use idlereset_lab::scenario::Scenario;

fn secs(s: &str) -> Result<f64, String> {
    parse_duration(s)
        .map(|d| d.as_secs_f64())
        .map_err(|e| e.to_string())
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
    /// Firewall profile: reject, drop, nat, nat-strict
    #[arg(long, value_parser = profile)]
    pub profile: Option<Profile>,
    /// Firewall conntrack TCP established timeout
    #[arg(long, value_parser = secs, value_name = "DURATION")]
    pub fw_timeout: Option<f64>,
    /// nf_conntrack_tcp_loose on the firewall (0/1)
    #[arg(long, value_parser = onoff, value_name = "0|1")]
    pub loose: Option<bool>,
    /// nf_conntrack_tcp_be_liberal on the firewall (0/1)
    #[arg(long, value_parser = onoff, value_name = "0|1")]
    pub be_liberal: Option<bool>,
    /// Drop packets conntrack marks INVALID (0/1)
    #[arg(long, value_parser = onoff, value_name = "0|1")]
    pub drop_invalid: Option<bool>,
    /// Idle gap before the connection is used again
    #[arg(long, value_parser = secs, value_name = "DURATION")]
    pub idle: Option<f64>,
    /// Pool idle timeout (the pool closes connections idle this long)
    #[arg(long, value_parser = secs, value_name = "DURATION")]
    pub pool_idle_timeout: Option<f64>,
    /// Pool max connection lifetime
    #[arg(long, value_parser = secs, value_name = "DURATION")]
    pub max_lifetime: Option<f64>,
    /// Application heartbeat (validation query) interval on idle connections
    #[arg(long, value_parser = secs, value_name = "DURATION")]
    pub heartbeat: Option<f64>,
    /// SO_KEEPALIVE on the app's sockets (0/1); implied by --keepalive-time
    #[arg(long, value_parser = onoff, value_name = "0|1")]
    pub keepalive: Option<bool>,
    /// TCP_KEEPIDLE on the socket (turns SO_KEEPALIVE on)
    #[arg(long, value_parser = secs, value_name = "DURATION")]
    pub keepalive_time: Option<f64>,
    /// TCP_KEEPINTVL on the socket
    #[arg(long, value_parser = secs, value_name = "DURATION")]
    pub keepalive_intvl: Option<f64>,
    /// TCP_KEEPCNT on the socket
    #[arg(long, value_name = "N")]
    pub keepalive_probes: Option<u32>,
    /// TCP_USER_TIMEOUT on the socket
    #[arg(long, value_parser = secs, value_name = "DURATION")]
    pub user_timeout: Option<f64>,
    /// net.ipv4.tcp_keepalive_time in the app namespace (OS default, only for sockets that opt in)
    #[arg(long, value_parser = secs, value_name = "DURATION")]
    pub os_keepalive_time: Option<f64>,
    /// net.ipv4.tcp_keepalive_intvl in the app namespace
    #[arg(long, value_parser = secs, value_name = "DURATION")]
    pub os_keepalive_intvl: Option<f64>,
    /// net.ipv4.tcp_keepalive_probes in the app namespace
    #[arg(long, value_name = "N")]
    pub os_keepalive_probes: Option<u32>,
    /// The database closes connections idle this long (like a proxy's idle timeout)
    #[arg(long, value_parser = secs, value_name = "DURATION")]
    pub server_idle_close: Option<f64>,
    /// How long the app waits for a query's answer
    #[arg(long, value_parser = secs, value_name = "DURATION")]
    pub query_timeout: Option<f64>,
}

impl ScenarioArgs {
    /// The flags given on the command line (so a preset can refuse what it cannot honour).
    pub fn given(&self) -> Vec<&'static str> {
        let set = [
            ("--time-scale", self.time_scale.is_some()),
            ("--hops", self.hops.is_some()),
            ("--ipv6", self.ipv6),
            ("--profile", self.profile.is_some()),
            ("--fw-timeout", self.fw_timeout.is_some()),
            ("--loose", self.loose.is_some()),
            ("--be-liberal", self.be_liberal.is_some()),
            ("--drop-invalid", self.drop_invalid.is_some()),
            ("--idle", self.idle.is_some()),
            ("--pool-idle-timeout", self.pool_idle_timeout.is_some()),
            ("--max-lifetime", self.max_lifetime.is_some()),
            ("--heartbeat", self.heartbeat.is_some()),
            ("--keepalive", self.keepalive.is_some()),
            ("--keepalive-time", self.keepalive_time.is_some()),
            ("--keepalive-intvl", self.keepalive_intvl.is_some()),
            ("--keepalive-probes", self.keepalive_probes.is_some()),
            ("--user-timeout", self.user_timeout.is_some()),
            ("--os-keepalive-time", self.os_keepalive_time.is_some()),
            ("--os-keepalive-intvl", self.os_keepalive_intvl.is_some()),
            ("--os-keepalive-probes", self.os_keepalive_probes.is_some()),
            ("--server-idle-close", self.server_idle_close.is_some()),
            ("--query-timeout", self.query_timeout.is_some()),
        ];
        set.into_iter()
            .filter(|(_, s)| *s)
            .map(|(f, _)| f)
            .collect()
    }

    /// The preset with these overrides applied.
    pub fn apply(&self, mut s: Scenario) -> Scenario {
        macro_rules! set {
            ($field:ident, $val:expr) => {
                if let Some(v) = $val {
                    s.$field = v;
                }
            };
        }
        set!(time_scale, self.time_scale);
        set!(hops, self.hops);
        s.ipv6 |= self.ipv6;
        if let Some(p) = self.profile {
            s.profile = p;
            if p == Profile::NatStrict && self.loose.is_none() {
                s.loose = false;
            }
        }
        set!(fw_timeout_s, self.fw_timeout);
        set!(loose, self.loose);
        set!(be_liberal, self.be_liberal);
        set!(drop_invalid, self.drop_invalid);
        set!(idle_s, self.idle);
        set!(query_timeout_s, self.query_timeout);
        set!(so_keepalive, self.keepalive);
        if self.pool_idle_timeout.is_some() {
            s.pool_idle_timeout_s = self.pool_idle_timeout;
        }
        if self.max_lifetime.is_some() {
            s.max_lifetime_s = self.max_lifetime;
        }
        if self.heartbeat.is_some() {
            s.heartbeat_s = self.heartbeat;
        }
        if self.keepalive_time.is_some() {
            s.keepalive_time_s = self.keepalive_time;
            if self.keepalive.is_none() {
                s.so_keepalive = true;
            }
        }
        if self.keepalive_intvl.is_some() {
            s.keepalive_intvl_s = self.keepalive_intvl;
        }
        if self.keepalive_probes.is_some() {
            s.keepalive_probes = self.keepalive_probes;
        }
        if self.user_timeout.is_some() {
            s.user_timeout_s = self.user_timeout;
        }
        if self.os_keepalive_time.is_some() {
            s.os_keepalive_time_s = self.os_keepalive_time;
        }
        if self.os_keepalive_intvl.is_some() {
            s.os_keepalive_intvl_s = self.os_keepalive_intvl;
        }
        if self.os_keepalive_probes.is_some() {
            s.os_keepalive_probes = self.os_keepalive_probes;
        }
        if self.server_idle_close.is_some() {
            s.server_idle_close_s = self.server_idle_close;
        }
        s
    }
}
