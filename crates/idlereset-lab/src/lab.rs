//! A running lab: the namespaces of one topology, configured over netlink.
//!
//! [`Lab::create`] records the lab (see `registry`), creates one namespace per host, joins them
//! with veth pairs created directly inside the lab namespaces, assigns addresses and routes,
//! enables forwarding on routers and the firewall, writes the conntrack sysctls and loads the
//! firewall's nftables table. Dropping a `Lab` that this process created removes all of it.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use idlereset_linux::rtnl::Rtnl;
use idlereset_linux::{NetNs, nft, sysctl};
use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result, require_privileges};
use crate::firewall::FirewallSettings;
use crate::registry::{self, LabRecord, Ownership};
use crate::topology::{PREFIX, Role, Topology};

/// How to build a lab.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabSpec {
    /// Extra routers between `app` and `fw`.
    pub hops: u8,
    /// Settings of the firewall on `fw`.
    pub firewall: FirewallSettings,
    /// Sysctls for the `app` namespace (e.g. the OS keepalive defaults), dotted names.
    #[serde(default)]
    pub app_sysctls: Vec<(String, String)>,
    /// Stateful firewalls on the routers: entry `k` makes `r{k+1}` a conntrack firewall of its
    /// own (sysctls + nft table), so a path of several middleboxes has one firewall per hop.
    /// Routers without an entry only forward.
    #[serde(default)]
    pub router_firewalls: Vec<FirewallSettings>,
}

impl LabSpec {
    /// A plain chain: `hops` routers, one firewall, default app settings.
    pub fn new(hops: u8, firewall: FirewallSettings) -> LabSpec {
        LabSpec {
            hops,
            firewall,
            app_sysctls: Vec::new(),
            router_firewalls: Vec::new(),
        }
    }
}

/// A lab this process created (and removes on drop) or opened.
pub struct Lab {
    name: String,
    topo: Topology,
    spec: LabSpec,
    namespaces: Vec<NetNs>,
    owned: bool,
    /// How long creation took.
    pub build_time: std::time::Duration,
}

/// A fresh lab name: `idlereset-` and six hex digits.
pub fn new_name() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mix = (nanos as u64)
        ^ (u64::from(std::process::id()) << 20)
        ^ COUNTER.fetch_add(0x9e37, std::sync::atomic::Ordering::Relaxed);
    let h = mix.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!("{PREFIX}-{:06x}", (h >> 40) & 0xff_ffff)
}

static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The table name on `fw`.
pub fn table_name(lab: &str) -> String {
    lab.replace('-', "_")
}

impl Lab {
    /// Build a lab. `ownership` says who removes it (see `registry`).
    pub async fn create(spec: LabSpec, name: Option<String>, ownership: Ownership) -> Result<Lab> {
        require_privileges()?;
        let started = Instant::now();
        let name = name.unwrap_or_else(new_name);
        if !name.starts_with(&format!("{PREFIX}-")) || name.len() > 40 {
            return Err(LabError::Config(format!(
                "lab name {name:?} must start with {PREFIX}- and be short"
            )));
        }
        if registry::state_path(&name).exists() {
            return Err(LabError::lab(&name, "already exists (lab down it first)"));
        }
        let topo = Topology::chain(spec.hops);
        let pid = std::process::id();
        LabRecord {
            name: name.clone(),
            owner_pid: pid,
            owner_start: registry::process_start_time(pid).unwrap_or(0),
            ownership,
            hosts: topo.hosts.iter().map(|h| h.name.clone()).collect(),
            created_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0),
            spec: serde_json::to_value(&spec).unwrap_or_default(),
            scope: registry::current_scope(),
        }
        .save()?;
        let mut lab = Lab {
            name,
            topo,
            spec,
            namespaces: Vec::new(),
            owned: true,
            build_time: Default::default(),
        };
        lab.build().await?;
        lab.build_time = started.elapsed();
        Ok(lab)
    }

    async fn build(&mut self) -> Result<()> {
        for h in &self.topo.hosts {
            let ns = NetNs::create(&format!("{}-{}", self.name, h.name))?;
            let mut settings = vec![
                ("net.ipv6.conf.all.accept_dad", "0".to_string()),
                ("net.ipv6.conf.default.accept_dad", "0".to_string()),
            ];
            if matches!(h.role, Role::Router | Role::Fw) {
                settings.push(("net.ipv4.ip_forward", "1".into()));
                settings.push(("net.ipv6.conf.all.forwarding", "1".into()));
            }
            if h.role == Role::Fw {
                settings.extend(self.spec.firewall.sysctls());
            }
            if let Some(fw) = self.router_firewall(&h.name) {
                settings.extend(fw.sysctls());
            }
            sysctl::write_in(&ns, &settings)?;
            if h.role == Role::App {
                let app: Vec<(&str, String)> = self
                    .spec
                    .app_sysctls
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.clone()))
                    .collect();
                sysctl::write_in(&ns, &app)?;
            }
            self.namespaces.push(ns);
        }
        let rtnl: Vec<Rtnl> = self
            .namespaces
            .iter()
            .map(Rtnl::connect)
            .collect::<Result<_, _>>()?;
        for (l, l_link, r, r_link) in self.topo.veths() {
            let alias = format!(
                "{} {}<->{}",
                self.name, self.topo.hosts[l].name, self.topo.hosts[r].name
            );
            rtnl[l]
                .add_veth(&l_link, &r_link, &self.namespaces[r], &alias)
                .await?;
        }
        for (i, nl) in rtnl.iter().enumerate() {
            nl.set_up("lo").await?;
            for ifc in self.topo.ifaces(i) {
                nl.add_address(&ifc.link, ifc.v4.into(), 24).await?;
                nl.add_address(&ifc.link, ifc.v6.into(), 64).await?;
                nl.set_up(&ifc.link).await?;
            }
            for r in self.topo.routes(i) {
                nl.add_route(r.dest, r.prefix, r.via).await?;
            }
        }
        self.apply_firewall_table()?;
        Ok(())
    }

    fn apply_firewall_table(&self) -> Result<()> {
        let (_, db_link) = self.topo.fw_links();
        let table = self.spec.firewall.table(&table_name(&self.name), &db_link);
        let fw = self.ns("fw")?;
        fw.run(|| {
            nft::delete_table(&table.name)?;
            table.apply()
        })??;
        for (k, settings) in self.spec.router_firewalls.iter().enumerate() {
            let host = format!("r{}", k + 1);
            let i = self.topo.index_of(&host).ok_or_else(|| {
                LabError::Config(format!(
                    "{} router firewalls but only {} routers (hops)",
                    self.spec.router_firewalls.len(),
                    self.spec.hops
                ))
            })?;
            let db_side = self
                .topo
                .ifaces(i)
                .pop()
                .map(|f| f.link)
                .unwrap_or_default();
            let table = settings.table(&table_name(&self.name), &db_side);
            self.ns(&host)?.run(|| {
                nft::delete_table(&table.name)?;
                table.apply()
            })??;
        }
        Ok(())
    }

    /// The firewall settings of router `host` (`r1`, ...), when it is a firewall.
    fn router_firewall(&self, host: &str) -> Option<&FirewallSettings> {
        let k: usize = host.strip_prefix('r')?.parse().ok()?;
        self.spec.router_firewalls.get(k.checked_sub(1)?)
    }

    /// Change the firewall (profile, timeout, loose, liberal, invalid handling) in place.
    pub fn set_firewall(&mut self, fw: FirewallSettings) -> Result<()> {
        self.spec.firewall = fw;
        sysctl::write_in(self.ns("fw")?, &self.spec.firewall.sysctls())?;
        self.apply_firewall_table()
    }

    /// Write sysctls in the `app` namespace (OS keepalive defaults and the like).
    pub fn set_app_sysctls(&mut self, settings: &[(String, String)]) -> Result<()> {
        let s: Vec<(&str, String)> = settings
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        sysctl::write_in(self.ns("app")?, &s)?;
        self.spec.app_sysctls.extend(settings.iter().cloned());
        Ok(())
    }

    /// Open a lab created by another process (not removed on drop).
    pub fn open(name: &str) -> Result<Lab> {
        let rec = registry::LabRecord::load(name)?;
        let spec: LabSpec = serde_json::from_value(rec.spec.clone())
            .map_err(|e| LabError::lab(name, format!("unreadable spec: {e}")))?;
        let topo = Topology::chain(spec.hops);
        let namespaces = topo
            .hosts
            .iter()
            .map(|h| NetNs::open(&format!("{name}-{}", h.name)))
            .collect::<Result<_, _>>()?;
        Ok(Lab {
            name: name.to_string(),
            topo,
            spec,
            namespaces,
            owned: false,
            build_time: Default::default(),
        })
    }

    /// The lab's name (prefix of its namespaces).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host chain the lab was built from.
    pub fn topology(&self) -> &Topology {
        &self.topo
    }

    /// The spec the lab was built from.
    pub fn spec(&self) -> &LabSpec {
        &self.spec
    }

    /// The namespace of host `host` (`app`, `r1`, `fw`, `db`).
    pub fn ns(&self, host: &str) -> Result<&NetNs> {
        self.topo
            .index_of(host)
            .and_then(|i| self.namespaces.get(i))
            .ok_or_else(|| {
                LabError::lab(
                    &self.name,
                    format!("no host {host:?} (hosts: {})", self.host_names().join(", ")),
                )
            })
    }

    /// Names of the lab's hosts in chain order (`app`, `r1`..., `fw`, `db`).
    pub(crate) fn host_names(&self) -> Vec<String> {
        self.topo.hosts.iter().map(|h| h.name.clone()).collect()
    }

    /// Remove everything now: processes still running inside the lab are stopped and reported.
    pub fn destroy(mut self) -> Result<registry::Removal> {
        self.owned = false;
        self.namespaces.clear();
        registry::remove(&self.name, &self.host_names())
    }

    /// Take ownership of an opened lab: this process now removes it when the handle drops.
    pub fn adopt(mut self, ownership: Ownership) -> Result<Lab> {
        registry::adopt(&self.name, ownership)?;
        self.owned = true;
        Ok(self)
    }

    /// Keep the lab after this handle is dropped (handed to a supervisor).
    pub fn detach(mut self) {
        self.owned = false;
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.owned {
            self.namespaces.clear();
            let _ = registry::remove(&self.name, &self.host_names());
        }
    }
}
