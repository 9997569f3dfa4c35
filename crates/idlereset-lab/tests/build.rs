#![allow(clippy::unwrap_used)]
//! The lab builds on the real kernel: namespaces, veths, addresses, routes, nftables.

use idlereset_lab::firewall::{FirewallSettings, Profile};
use idlereset_lab::registry::Ownership;
use idlereset_lab::{Lab, LabSpec};
use idlereset_linux::privilege::require_or_skip;

fn spec(hops: u8, profile: Profile) -> LabSpec {
    LabSpec {
        hops,
        firewall: FirewallSettings::new(profile, 5),
        app_sysctls: vec![],
        router_firewalls: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_and_removes_a_lab() {
    if !require_or_skip("builds_and_removes_a_lab") {
        return;
    }
    let lab = Lab::create(spec(1, Profile::Nat), None, Ownership::Foreground)
        .await
        .unwrap();
    let name = lab.name().to_string();
    eprintln!("built {name} in {:?}", lab.build_time);
    let tables = lab
        .ns("fw")
        .unwrap()
        .run(idlereset_linux::nft::list_tables)
        .unwrap()
        .unwrap();
    assert!(
        tables.contains(&idlereset_lab::lab::table_name(&name)),
        "{tables:?}"
    );
    let ns_names = idlereset_linux::NetNs::list_with_prefix(&format!("{name}-")).unwrap();
    assert_eq!(ns_names.len(), 4, "{ns_names:?}");
    // TCP from app to db through r1 and fw.
    let db_addr = std::net::SocketAddr::new(lab.topology().db_addr(false), 7777);
    let listener = lab
        .ns("db")
        .unwrap()
        .run(|| std::net::TcpListener::bind(("0.0.0.0", 7777)))
        .unwrap()
        .unwrap();
    let client = lab
        .ns("app")
        .unwrap()
        .run(|| std::net::TcpStream::connect_timeout(&db_addr, std::time::Duration::from_secs(3)))
        .unwrap()
        .unwrap();
    let (_server_side, peer) = listener.accept().unwrap();
    // NAT profile: the database sees the firewall's address.
    assert_eq!(peer.ip().to_string(), "198.18.2.1", "peer seen by db");
    drop(client);
    drop(lab);
    assert!(
        idlereset_linux::NetNs::list_with_prefix(&format!("{name}-"))
            .unwrap()
            .is_empty()
    );
}
