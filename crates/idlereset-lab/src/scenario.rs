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
    pub preset: String,
    pub description: String,
    pub time_scale: f64,
    pub hops: u8,
    pub ipv6: bool,
    pub profile: Profile,
    /// Firewall conntrack TCP established timeout.
    pub fw_timeout_s: f64,
    pub loose: bool,
    pub be_liberal: bool,
    pub drop_invalid: bool,
    pub pool_idle_timeout_s: Option<f64>,
    pub max_lifetime_s: Option<f64>,
    /// Application heartbeat (pool validation query) interval.
    pub heartbeat_s: Option<f64>,
    pub so_keepalive: bool,
    pub keepalive_time_s: Option<f64>,
    pub keepalive_intvl_s: Option<f64>,
    pub keepalive_probes: Option<u32>,
    pub user_timeout_s: Option<f64>,
    /// OS keepalive defaults in the app namespace (sysctls).
    pub os_keepalive_time_s: Option<f64>,
    pub os_keepalive_intvl_s: Option<f64>,
    pub os_keepalive_probes: Option<u32>,
    /// Idle gap before the next query.
    pub idle_s: f64,
    pub server_idle_close_s: Option<f64>,
    pub query_timeout_s: f64,
    pub port: u16,
}

/// Names of the built-in presets.
pub const PRESETS: &[(&str, &str)] = &[
    (
        "firewall-900",
        "Seed replay: firewall conntrack 900 s, pool idle timeout 3600 s, no keepalive",
    ),
    (
        "firewall-3600",
        "Runbook: firewall 3600 s, SO_KEEPALIVE on but OS default tcp_keepalive_time 7200 s",
    ),
];

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

    /// A built-in preset.
    pub fn preset(name: &str) -> Result<Scenario> {
        let desc = PRESETS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, d)| *d)
            .ok_or_else(|| {
                LabError::Config(format!(
                    "unknown preset {name:?}; presets: {}",
                    PRESETS
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        Ok(match name {
            "firewall-900" => {
                let mut s = Scenario::base(name, desc, 900.0, 100.0);
                s.pool_idle_timeout_s = Some(3600.0);
                s.idle_s = 1200.0;
                s
            }
            _ => {
                let mut s = Scenario::base(name, desc, 3600.0, 400.0);
                s.pool_idle_timeout_s = Some(10800.0);
                s.so_keepalive = true;
                s.os_keepalive_time_s = Some(7200.0);
                s.os_keepalive_intvl_s = Some(75.0);
                s.os_keepalive_probes = Some(9);
                s.idle_s = 4800.0;
                s
            }
        })
    }

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
    }

    #[test]
    fn too_fine_timeouts_are_refused() {
        let mut s = Scenario::preset("firewall-900").unwrap();
        s.time_scale = 2000.0;
        assert!(s.validate().is_err());
    }
}
