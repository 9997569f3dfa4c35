//! Inventories for plan tests.
#![allow(clippy::unwrap_used)]

use crate::inventory::{Client, Current, Hop, HopKind, Inventory, Library, Options};

pub fn client(name: &str, library: Library, version: Option<&str>) -> Client {
    Client {
        name: name.into(),
        library,
        version: version.map(|v| crate::libraries::Version::parse(v).unwrap()),
        library_alias: None,
        connections: 1,
        current: Current::default(),
    }
}

/// A one-hop firewall path of `t` seconds with these clients.
pub fn path(t: f64, clients: Vec<Client>) -> Inventory {
    Inventory {
        name: None,
        server: None,
        hops: vec![Hop {
            name: "fw".into(),
            kind: HopKind::Firewall,
            idle_timeout_s: t,
            failure: crate::catalog::Failure::Reset,
            honours_keepalive: true,
            catalog: None,
            matches: vec![],
            other_path: None,
            line: 1,
        }],
        clients,
        options: Options::default(),
    }
}
