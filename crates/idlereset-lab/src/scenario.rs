//! Incident scenarios for `lab reproduce`: every knob in incident (configured) seconds, the
//! presets from the seeds, and the translation into lab settings at a time scale.

use std::time::Duration;

use idlereset_core::scale::TimeScale;
use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};
use crate::firewall::{FirewallSettings, Profile};
use crate::lab::LabSpec;
use crate::workload::{ClientOptions, PoolConfig};

/// One reproducible incident, in the incident's own seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    /// The preset it started from.
    pub preset: String,
    /// One line saying what it reproduces.
    pub description: String,
    /// Incident seconds per lab second.
    pub time_scale: f64,
    /// Extra router hops between app and fw.
    pub hops: u8,
    /// Use the IPv6 path (2001:db8::/32).
    pub ipv6: bool,
    /// The firewall's ruleset.
    pub profile: Profile,
    /// Firewall conntrack TCP established timeout.
    pub fw_timeout_s: f64,
    /// `nf_conntrack_tcp_loose` on the firewall.
    pub loose: bool,
    /// `nf_conntrack_tcp_be_liberal` on the firewall.
    pub be_liberal: bool,
    /// Whether the firewall drops packets conntrack marks INVALID.
    pub drop_invalid: bool,
    /// The pool closes connections idle this long.
    pub pool_idle_timeout_s: Option<f64>,
    /// The pool's maximum connection lifetime.
    pub max_lifetime_s: Option<f64>,
    /// Application heartbeat (pool validation query) interval.
    pub heartbeat_s: Option<f64>,
    /// SO_KEEPALIVE on the app's sockets.
    pub so_keepalive: bool,
    /// TCP_KEEPIDLE on the socket.
    pub keepalive_time_s: Option<f64>,
    /// TCP_KEEPINTVL on the socket.
    pub keepalive_intvl_s: Option<f64>,
    /// TCP_KEEPCNT on the socket.
    pub keepalive_probes: Option<u32>,
    /// TCP_USER_TIMEOUT on the socket.
    pub user_timeout_s: Option<f64>,
    /// OS keepalive defaults in the app namespace (sysctls).
    pub os_keepalive_time_s: Option<f64>,
    /// `net.ipv4.tcp_keepalive_intvl` in the app namespace.
    pub os_keepalive_intvl_s: Option<f64>,
    /// `net.ipv4.tcp_keepalive_probes` in the app namespace.
    pub os_keepalive_probes: Option<u32>,
    /// Idle gap before the next query.
    pub idle_s: f64,
    /// The database closes connections idle this long.
    pub server_idle_close_s: Option<f64>,
    /// How long the app waits for a query's answer.
    pub query_timeout_s: f64,
    /// The database's port.
    pub port: u16,
}

/// The built-in incident presets of `lab reproduce`.
///
/// Two kinds: [`Preset::Firewall900`] and [`Preset::Firewall3600`] are [`Scenario`]s (one
/// connection, idle, used again; every knob settable), [`Preset::Nat43200Invalid`] is the
/// frozen-timer story of `frozen` (a busy flow, a fault, the report's fixes), which honours only
/// the knobs [`Preset::honours`] lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Preset {
    /// Seed replay: firewall 900 s, pool idle timeout 3600 s, no keepalive.
    #[serde(rename = "firewall-900")]
    Firewall900,
    /// Runbook: firewall 3600 s, SO_KEEPALIVE on but the OS default 7200 s.
    #[serde(rename = "firewall-3600")]
    Firewall3600,
    /// The frozen conntrack timer story (see [`crate::frozen`]).
    #[serde(rename = "nat-43200-invalid")]
    Nat43200Invalid,
}

impl Preset {
    /// Every preset, in `--list` order.
    pub const ALL: [Preset; 3] = [
        Preset::Firewall900,
        Preset::Firewall3600,
        Preset::Nat43200Invalid,
    ];

    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Firewall900 => "firewall-900",
            Preset::Firewall3600 => "firewall-3600",
            Preset::Nat43200Invalid => "nat-43200-invalid",
        }
    }

    /// One line for `--list`.
    pub fn description(self) -> &'static str {
        match self {
            Preset::Firewall900 => {
                "Seed replay: firewall conntrack 900 s, pool idle timeout 3600 s, no keepalive"
            }
            Preset::Firewall3600 => {
                "Runbook: firewall 3600 s, SO_KEEPALIVE on but OS default tcp_keepalive_time 7200 s"
            }
            Preset::Nat43200Invalid => crate::frozen::DESCRIPTION,
        }
    }

    /// The preset named `name`, or an error listing them.
    pub fn parse(name: &str) -> Result<Preset> {
        Preset::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                LabError::Config(format!(
                    "unknown preset {name:?}; presets: {}",
                    Preset::ALL.map(Preset::name).join(", ")
                ))
            })
    }

    /// Is this preset a [`Scenario`] (every scenario knob applies)?
    pub fn is_scenario(self) -> bool {
        !matches!(self, Preset::Nat43200Invalid)
    }

    /// Whether the preset can honour the command-line knob `flag` (e.g. `--fw-timeout`).
    /// Scenario presets honour every knob; the frozen-timer story only its time scale and
    /// firewall timeout (and `--capture-dir`, which is not a scenario knob).
    pub fn honours(self, flag: &str) -> bool {
        self.is_scenario() || matches!(flag, "--time-scale" | "--fw-timeout")
    }

    /// Refuse the knobs in `given` this preset cannot honour (never ignore them silently).
    pub fn check_knobs(self, given: &[&str]) -> Result<()> {
        let refused: Vec<&str> = given.iter().copied().filter(|f| !self.honours(f)).collect();
        if refused.is_empty() {
            return Ok(());
        }
        Err(LabError::Config(format!(
            "preset {} cannot honour {} (it runs its own busy flow and fault; it takes only --time-scale and --fw-timeout)",
            self.name(),
            refused.join(", ")
        )))
    }
}

impl std::fmt::Display for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Scenario {
    fn base(preset: &str, description: &str, fw_timeout_s: f64, time_scale: f64) -> Scenario {
        Scenario {
            preset: preset.into(),
            description: description.into(),
            time_scale,
            hops: 0,
            ipv6: false,
            profile: Profile::Reject,
            fw_timeout_s,
            loose: true,
            be_liberal: false,
            drop_invalid: false,
            pool_idle_timeout_s: None,
            max_lifetime_s: None,
            heartbeat_s: None,
            so_keepalive: false,
            keepalive_time_s: None,
            keepalive_intvl_s: None,
            keepalive_probes: None,
            user_timeout_s: None,
            os_keepalive_time_s: None,
            os_keepalive_intvl_s: None,
            os_keepalive_probes: None,
            idle_s: fw_timeout_s * 4.0 / 3.0,
            server_idle_close_s: None,
            query_timeout_s: 60.0,
            port: 5432,
        }
    }

    /// A built-in preset, by name (see [`Preset`]).
    pub fn preset(name: &str) -> Result<Scenario> {
        Scenario::of(Preset::parse(name)?)
    }

    /// The scenario of a scenario preset; the frozen-timer story is not one (see [`Preset`]).
    pub fn of(preset: Preset) -> Result<Scenario> {
        let (name, desc) = (preset.name(), preset.description());
        Ok(match preset {
            Preset::Firewall900 => {
                let mut s = Scenario::base(name, desc, 900.0, 100.0);
                s.pool_idle_timeout_s = Some(3600.0);
                s.idle_s = 1200.0;
                s
            }
            Preset::Firewall3600 => {
                let mut s = Scenario::base(name, desc, 3600.0, 400.0);
                s.pool_idle_timeout_s = Some(10800.0);
                s.so_keepalive = true;
                s.os_keepalive_time_s = Some(7200.0);
                s.os_keepalive_intvl_s = Some(75.0);
                s.os_keepalive_probes = Some(9);
                s.idle_s = 4800.0;
                s
            }
            Preset::Nat43200Invalid => {
                return Err(LabError::Config(format!(
                    "preset {name} is the frozen-timer story of `lab reproduce` (a busy flow, a fault and the fixes), not a scenario a lab can run with `lab up`; use firewall-900 or firewall-3600"
                )));
            }
        })
    }

    /// The time scale, refused when below 1.
    pub fn scale(&self) -> Result<TimeScale> {
        TimeScale::new(self.time_scale).ok_or_else(|| {
            LabError::Config(format!(
                "time scale {} must be a number >= 1",
                self.time_scale
            ))
        })
    }

    /// Reject settings the kernel or the lab cannot honour.
    pub fn validate(&self) -> Result<()> {
        let scale = self.scale()?;
        if self.fw_timeout_s <= 0.0 || self.idle_s < 0.0 {
            return Err(LabError::Config(
                "firewall timeout must be > 0 and idle >= 0".into(),
            ));
        }
        if self.fw_timeout_s / scale.factor() < 1.0 {
            return Err(LabError::Config(format!(
                "firewall timeout {} s at time scale {} is below one second, the kernel's granularity; lower --time-scale",
                self.fw_timeout_s, self.time_scale
            )));
        }
        if self.hops > 8 {
            return Err(LabError::Config("at most 8 extra hops".into()));
        }
        Ok(())
    }

    /// The lab to build for this scenario.
    pub fn lab_spec(&self) -> Result<LabSpec> {
        let scale = self.scale()?;
        let mut fw = FirewallSettings::new(self.profile, scale.lab_whole_secs(self.fw_timeout_s));
        fw.loose = self.loose;
        fw.be_liberal = self.be_liberal;
        fw.drop_invalid = self.drop_invalid;
        Ok(LabSpec {
            hops: self.hops,
            firewall: fw,
            app_sysctls: self.app_sysctls()?,
            router_firewalls: Vec::new(),
        })
    }

    /// OS keepalive sysctls for `app`, scaled. Unset ones get Linux's defaults (7200 s, 75 s, 9)
    /// scaled too, so a socket that sets only TCP_KEEPIDLE re-probes at the scaled default
    /// interval, as it would in the incident, not at 75 real seconds.
    pub fn app_sysctls(&self) -> Result<Vec<(String, String)>> {
        let scale = self.scale()?;
        let time = self.os_keepalive_time_s.unwrap_or(7200.0);
        let intvl = self.os_keepalive_intvl_s.unwrap_or(75.0);
        let probes = self.os_keepalive_probes.unwrap_or(9);
        Ok(vec![
            (
                "net.ipv4.tcp_keepalive_time".to_string(),
                scale.lab_whole_secs(time).to_string(),
            ),
            (
                "net.ipv4.tcp_keepalive_intvl".to_string(),
                scale.lab_whole_secs(intvl).to_string(),
            ),
            (
                "net.ipv4.tcp_keepalive_probes".to_string(),
                probes.to_string(),
            ),
        ])
    }

    /// The app's socket options, scaled to lab time.
    pub fn client_options(&self) -> Result<ClientOptions> {
        let scale = self.scale()?;
        Ok(ClientOptions {
            so_keepalive: self.so_keepalive,
            keepidle_s: self.keepalive_time_s.map(|t| scale.lab_whole_secs(t)),
            keepintvl_s: self.keepalive_intvl_s.map(|t| scale.lab_whole_secs(t)),
            keepcnt: self.keepalive_probes,
            user_timeout_ms: self
                .user_timeout_s
                .map(|t| (scale.lab(t).as_millis() as u64).max(1)),
        })
    }

    /// The app's pool settings, scaled to lab time.
    pub fn pool_config(&self) -> Result<PoolConfig> {
        let scale = self.scale()?;
        Ok(PoolConfig {
            size: 1,
            idle_timeout: self.pool_idle_timeout_s.map(|t| scale.lab(t)),
            max_lifetime: self.max_lifetime_s.map(|t| scale.lab(t)),
            heartbeat: self.heartbeat_s.map(|t| scale.lab(t)),
            query_timeout: scale.lab(self.query_timeout_s).max(Duration::from_secs(2)),
            connect_timeout: Duration::from_secs(5),
        })
    }

    /// The idle gap in lab time.
    pub fn lab_idle(&self) -> Result<Duration> {
        Ok(self.scale()?.lab(self.idle_s))
    }

    /// One-line description of the client side.
    pub fn client_summary(&self) -> String {
        let mut parts = Vec::new();
        if self.so_keepalive {
            let eff = self
                .keepalive_time_s
                .or(self.os_keepalive_time_s)
                .unwrap_or(7200.0);
            let src = if self.keepalive_time_s.is_some() {
                "TCP_KEEPIDLE"
            } else {
                "OS tcp_keepalive_time"
            };
            parts.push(format!(
                "SO_KEEPALIVE on, first probe after {eff:.0} s ({src})"
            ));
        } else {
            parts.push("SO_KEEPALIVE off".to_string());
            if let Some(t) = self.os_keepalive_time_s {
                parts.push(format!(
                    "OS tcp_keepalive_time {t:.0} s (unused: sockets do not opt in)"
                ));
            }
        }
        if let Some(h) = self.heartbeat_s {
            parts.push(format!("heartbeat every {h:.0} s"));
        }
        if let Some(p) = self.pool_idle_timeout_s {
            parts.push(format!("pool idle timeout {p:.0} s"));
        }
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn presets_scale_to_lab_seconds() {
        let s = Scenario::preset("firewall-900").unwrap();
        assert_eq!(s.lab_spec().unwrap().firewall.established_timeout_s, 9);
        assert_eq!(s.lab_idle().unwrap(), Duration::from_secs(12));
        assert!(s.idle_s > s.fw_timeout_s && s.idle_s < s.pool_idle_timeout_s.unwrap());
        let r = Scenario::preset("firewall-3600").unwrap();
        assert!(r.so_keepalive);
        assert_eq!(
            r.app_sysctls().unwrap()[0],
            ("net.ipv4.tcp_keepalive_time".into(), "18".into())
        );
        assert!(Scenario::preset("nope").is_err());
        assert!(Scenario::preset("nat-43200-invalid").is_err());
    }

    #[test]
    fn presets_round_trip_and_refuse_what_they_cannot_honour() {
        for p in Preset::ALL {
            assert_eq!(Preset::parse(p.name()).unwrap(), p);
            assert_eq!(
                serde_json::to_value(p).unwrap(),
                serde_json::Value::String(p.name().into())
            );
        }
        assert!(
            Preset::Firewall900
                .check_knobs(&["--keepalive-time"])
                .is_ok()
        );
        let frozen = Preset::Nat43200Invalid;
        assert!(
            frozen
                .check_knobs(&["--time-scale", "--fw-timeout"])
                .is_ok()
        );
        let err = frozen
            .check_knobs(&["--time-scale", "--keepalive-time", "--hops"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--keepalive-time, --hops"), "{err}");
        assert!(!err.contains("--time-scale,"), "{err}");
    }

    #[test]
    fn too_fine_timeouts_are_refused() {
        let mut s = Scenario::preset("firewall-900").unwrap();
        s.time_scale = 2000.0;
        assert!(s.validate().is_err());
    }
}
