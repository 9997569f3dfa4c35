//! The lab's topology as data: hosts in a chain `app -> r1..rN -> fw -> db`, the segments
//! between them, their addresses and routes. Pure: `lab::build` turns it into namespaces.
//!
//! Addressing (198.18.0.0/15 and 2001:db8::/32 only): the app segment is 198.18.1.0/24
//! (app .10, next hop .1), the database segment 198.18.2.0/24 (fw .1, db .10), router segments
//! 198.18.(10+k).0/24. IPv6 mirrors it as `2001:db8:<segment>::/64` with the same host numbers.
//! Every link is named `idlereset-<peer host>` inside its namespace.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Role of a host in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The client host, first in the chain.
    App,
    /// A router between `app` and `fw` (`r1`..`rN`).
    Router,
    /// The stateful firewall.
    Fw,
    /// The database host, last in the chain.
    Db,
}

/// One host of the chain (one network namespace).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Host {
    /// Short name: `app`, `r1`, ..., `fw`, `db`.
    pub name: String,
    /// What the host does in the chain.
    pub role: Role,
}

/// One address of a host on a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    /// Link name inside the host's namespace (`idlereset-<peer>`).
    pub link: String,
    /// IPv4 address (198.18.0.0/15).
    pub v4: Ipv4Addr,
    /// IPv6 address (2001:db8::/32).
    pub v6: Ipv6Addr,
}

/// A route a host needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination network.
    pub dest: IpAddr,
    /// Prefix length of `dest`.
    pub prefix: u8,
    /// Next hop.
    pub via: IpAddr,
}

/// The whole chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Hosts in chain order: `app`, `r1`..`rN`, `fw`, `db`.
    pub hosts: Vec<Host>,
}

/// Link name prefix; every lab object carries it.
pub const PREFIX: &str = "idlereset";

impl Topology {
    /// `app`, `hops` routers, `fw`, `db`.
    pub fn chain(hops: u8) -> Topology {
        let mut hosts = vec![Host {
            name: "app".into(),
            role: Role::App,
        }];
        for i in 1..=hops {
            hosts.push(Host {
                name: format!("r{i}"),
                role: Role::Router,
            });
        }
        hosts.push(Host {
            name: "fw".into(),
            role: Role::Fw,
        });
        hosts.push(Host {
            name: "db".into(),
            role: Role::Db,
        });
        Topology { hosts }
    }

    /// Number of routers between `app` and `fw`.
    pub fn hops(&self) -> usize {
        self.hosts.len() - 3
    }

    fn segments(&self) -> usize {
        self.hosts.len() - 1
    }

    /// Third octet (and IPv6 group) of segment `k`.
    fn segment_id(&self, k: usize) -> u8 {
        if k == 0 {
            1
        } else if k == self.segments() - 1 {
            2
        } else {
            10 + k as u8
        }
    }

    fn addr(&self, k: usize, host_no: u8) -> (Ipv4Addr, Ipv6Addr) {
        let seg = self.segment_id(k);
        let group = u16::from_str_radix(&seg.to_string(), 16).unwrap_or(u16::from(seg));
        let host6 = u16::from_str_radix(&host_no.to_string(), 16).unwrap_or(u16::from(host_no));
        (
            Ipv4Addr::new(198, 18, seg, host_no),
            Ipv6Addr::new(0x2001, 0xdb8, group, 0, 0, 0, 0, host6),
        )
    }

    /// Left (app-side) end of segment `k` is host `k`, right end is host `k + 1`.
    fn end(&self, k: usize, right: bool) -> Iface {
        let host_idx = if right { k + 1 } else { k };
        let peer_idx = if right { k } else { k + 1 };
        let host_no = match (self.hosts[host_idx].role, right) {
            (Role::App, _) | (Role::Db, _) => 10,
            (_, true) => 1,
            (_, false) if k + 1 == self.segments() => 1,
            (_, false) => 2,
        };
        let (v4, v6) = self.addr(k, host_no);
        Iface {
            link: format!("{PREFIX}-{}", self.hosts[peer_idx].name),
            v4,
            v6,
        }
    }

    /// Interfaces of host `i`: towards the app side first, then towards the db side.
    pub fn ifaces(&self, i: usize) -> Vec<Iface> {
        let mut v = Vec::new();
        if i > 0 {
            v.push(self.end(i - 1, true));
        }
        if i + 1 < self.hosts.len() {
            v.push(self.end(i, false));
        }
        v
    }

    /// Veth pairs to create: (left host index, left link, right host index, right link).
    pub fn veths(&self) -> Vec<(usize, String, usize, String)> {
        (0..self.segments())
            .map(|k| (k, self.end(k, false).link, k + 1, self.end(k, true).link))
            .collect()
    }

    /// Routes of host `i` for every segment it is not attached to.
    pub fn routes(&self, i: usize) -> Vec<Route> {
        let mut out = Vec::new();
        let role = self.hosts[i].role;
        if role == Role::App || role == Role::Db {
            let gw = if role == Role::App {
                self.end(0, true)
            } else {
                self.end(self.segments() - 1, false)
            };
            out.push(Route {
                dest: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                prefix: 0,
                via: IpAddr::V4(gw.v4),
            });
            out.push(Route {
                dest: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                prefix: 0,
                via: IpAddr::V6(gw.v6),
            });
            return out;
        }
        for k in 0..self.segments() {
            let attached = k + 1 == i || k == i;
            if attached {
                continue;
            }
            // Segment lies to the left (app side) if k < i - 1, else to the right.
            let via = if k + 1 < i {
                self.end(i - 1, false)
            } else {
                self.end(i, true)
            };
            let (d4, d6) = self.addr(k, 0);
            out.push(Route {
                dest: IpAddr::V4(d4),
                prefix: 24,
                via: IpAddr::V4(via.v4),
            });
            out.push(Route {
                dest: IpAddr::V6(d6),
                prefix: 64,
                via: IpAddr::V6(via.v6),
            });
        }
        out
    }

    /// Position of host `name` in the chain.
    pub(crate) fn index_of(&self, name: &str) -> Option<usize> {
        self.hosts.iter().position(|h| h.name == name)
    }

    /// The app's address and the database's address.
    pub fn app_addr(&self, v6: bool) -> IpAddr {
        let a = self.end(0, false);
        if v6 {
            IpAddr::V6(a.v6)
        } else {
            IpAddr::V4(a.v4)
        }
    }

    /// The database's address on its segment (IPv6 when `v6`).
    pub fn db_addr(&self, v6: bool) -> IpAddr {
        let a = self.end(self.segments() - 1, true);
        if v6 {
            IpAddr::V6(a.v6)
        } else {
            IpAddr::V4(a.v4)
        }
    }

    /// The firewall's link towards the app side and towards the database.
    pub fn fw_links(&self) -> (String, String) {
        let fw = self.hosts.len() - 2;
        let ifs = self.ifaces(fw);
        (ifs[0].link.clone(), ifs[1].link.clone())
    }

    /// The app's only link.
    pub fn app_link(&self) -> String {
        self.end(0, false).link
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn direct_chain_addresses() {
        let t = Topology::chain(0);
        assert_eq!(t.app_addr(false).to_string(), "198.18.1.10");
        assert_eq!(t.db_addr(false).to_string(), "198.18.2.10");
        assert_eq!(t.db_addr(true).to_string(), "2001:db8:2::10");
        let fw = t.ifaces(1);
        assert_eq!(fw[0].link, "idlereset-app");
        assert_eq!(fw[0].v4.to_string(), "198.18.1.1");
        assert_eq!(fw[1].link, "idlereset-db");
        assert_eq!(fw[1].v4.to_string(), "198.18.2.1");
        assert!(t.routes(1).is_empty(), "fw is attached to both segments");
        assert_eq!(t.routes(0)[0].via.to_string(), "198.18.1.1");
        assert_eq!(t.routes(2)[0].via.to_string(), "198.18.2.1");
    }

    #[test]
    fn hops_route_through_routers() {
        let t = Topology::chain(2);
        assert_eq!(
            t.hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(),
            ["app", "r1", "r2", "fw", "db"]
        );
        // r1 reaches the db segment via r2, fw reaches the app segment via r2.
        let r1 = t.routes(1);
        let to_db = r1
            .iter()
            .find(|r| r.dest.to_string() == "198.18.2.0")
            .unwrap();
        assert_eq!(to_db.via.to_string(), "198.18.11.1");
        let fw = t.routes(3);
        let to_app = fw
            .iter()
            .find(|r| r.dest.to_string() == "198.18.1.0")
            .unwrap();
        assert_eq!(to_app.via.to_string(), "198.18.12.2");
        for (i, _) in t.hosts.iter().enumerate() {
            for ifc in t.ifaces(i) {
                assert!(ifc.link.len() <= 15, "{} too long for IFNAMSIZ", ifc.link);
                assert!(ifc.link.starts_with(PREFIX));
            }
        }
        assert_eq!(t.veths().len(), 4);
    }

    #[test]
    fn addresses_stay_in_documentation_ranges() {
        let t = Topology::chain(3);
        for i in 0..t.hosts.len() {
            for ifc in t.ifaces(i) {
                let o = ifc.v4.octets();
                assert!(o[0] == 198 && (o[1] == 18 || o[1] == 19), "{}", ifc.v4);
                assert_eq!(ifc.v6.segments()[0..2], [0x2001, 0xdb8]);
            }
        }
    }
}
