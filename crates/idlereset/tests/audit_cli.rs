//! `idlereset audit` against a real lab: four connections from the `app` namespace with
//! different keepalive settings, audited with `--path-timeout 5`; the sysctl trap; the `fw`
//! namespace's conntrack state (issue 4's test list).
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use idlereset_lab::firewall::{FirewallSettings, Profile};
use idlereset_lab::registry::Ownership;
use idlereset_lab::server::DbServer;
use idlereset_lab::{Lab, LabSpec};
use idlereset_linux::NetNs;
use idlereset_linux::privilege::require_or_skip;
use idlereset_linux::sysctl;
use socket2::{Domain, Socket, TcpKeepalive, Type};

/// Connect from inside `ns` with the given keepalive (None: SO_KEEPALIVE off), send one query.
fn connect(ns: &NetNs, target: SocketAddr, ka: Option<(u64, u64)>) -> TcpStream {
    ns.run(|| {
        let s = Socket::new(Domain::for_address(target), Type::STREAM, None).unwrap();
        if let Some((idle, intvl)) = ka {
            let k = TcpKeepalive::new()
                .with_time(Duration::from_secs(idle))
                .with_interval(Duration::from_secs(intvl));
            s.set_tcp_keepalive(&k).unwrap();
        }
        s.connect(&target.into()).unwrap();
        let mut stream: TcpStream = s.into();
        stream.write_all(b"PING\n").unwrap();
        let mut line = String::new();
        BufReader::new(stream.try_clone().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "PONG");
        stream
    })
    .unwrap()
}

fn audit(args: &[&str]) -> (i32, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_idlereset"))
        .arg("audit")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let v = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

fn findings_for<'a>(v: &'a serde_json::Value, local: &str) -> Vec<&'a serde_json::Value> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["local"] == local)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_findings_sysctl_trap_and_conntrack() {
    if !require_or_skip("audit_cli::keepalive_findings_sysctl_trap_and_conntrack") {
        return;
    }
    let spec = LabSpec {
        hops: 0,
        firewall: FirewallSettings::new(Profile::Reject, 60),
        app_sysctls: vec![],
        router_firewalls: vec![],
    };
    let lab = Lab::create(spec, None, Ownership::Foreground)
        .await
        .unwrap();
    let _server = DbServer::start(lab.ns("db").unwrap(), 5432, None).unwrap();
    let target = SocketAddr::new(lab.topology().db_addr(false), 5432);
    let app = lab.ns("app").unwrap();
    let app_name = app.name().to_string();
    let fw_name = lab.ns("fw").unwrap().name().to_string();

    let conns =
        [None, Some((2, 2)), Some((2, 75)), Some((7200, 75))].map(|ka| connect(app, target, ka));
    let locals: Vec<String> = conns
        .iter()
        .map(|c| c.local_addr().unwrap().to_string())
        .collect();
    // Past the 2 s first probe (answered), and past half the 5 s path for the idle socket.
    tokio::time::sleep(Duration::from_millis(3500)).await;

    let (code, v) = tokio::task::spawn_blocking({
        let app_name = app_name.clone();
        move || audit(&["--netns", &app_name, "--path-timeout", "5"])
    })
    .await
    .unwrap();
    assert_eq!(code, 1, "findings exit 1: {v}");
    assert_eq!(v["sockets"], 4, "{v}");
    let pid = std::process::id();
    let expect = [
        Some("no-keepalive"),
        None,
        Some("keepalive-too-late"),
        Some("keepalive-too-late"),
    ];
    for (local, want) in locals.iter().zip(expect) {
        let got = findings_for(&v, local);
        match want {
            None => assert!(got.is_empty(), "{local}: expected nothing, got {got:?}"),
            Some(kind) => {
                assert_eq!(got.len(), 1, "{local}: {got:?}");
                assert_eq!(got[0]["kind"], kind, "{local}: {}", got[0]);
                assert_eq!(got[0]["pid"], pid, "{local}");
                assert_eq!(got[0]["remote"], target.to_string());
            }
        }
    }
    // The interval case is recognised from the re-armed timer, the idle case from the first.
    let late_intvl = findings_for(&v, &locals[2])[0];
    let ka_s = late_intvl["keepalive_s"].as_f64().unwrap();
    assert!((70.0..=76.0).contains(&ka_s), "{late_intvl}");
    let late_idle = findings_for(&v, &locals[3])[0];
    let ka_s = late_idle["keepalive_s"].as_f64().unwrap();
    assert!((7190.0..=7201.0).contains(&ka_s), "{late_idle}");
    assert_eq!(v["sysctl"]["net.ipv4.tcp_keepalive_time"], 7200);
    assert!(
        !v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["kind"] == "sysctl-only"),
        "defaults are no trap: {v}"
    );

    // The trap: lowered OS keepalive, the first socket still without SO_KEEPALIVE.
    sysctl::write_in(app, &[("net.ipv4.tcp_keepalive_time", "60".to_string())]).unwrap();
    let (code, v) = tokio::task::spawn_blocking({
        let app_name = app_name.clone();
        move || audit(&["--netns", &app_name, "--path-timeout", "5"])
    })
    .await
    .unwrap();
    assert_eq!(code, 1);
    let trap: Vec<_> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "sysctl-only")
        .collect();
    assert_eq!(trap.len(), 1, "{v}");
    assert!(
        trap[0]["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("pid {pid}")),
        "{}",
        trap[0]
    );

    // The firewall's conntrack table holds the four flows.
    let (_, v) = tokio::task::spawn_blocking(move || audit(&["--netns", &fw_name]))
        .await
        .unwrap();
    let ct = &v["conntrack"];
    assert!(ct["count"].as_u64().unwrap() >= 4, "{v}");
    assert!(
        ct["invalid"].is_u64() && ct["invalid_delta"].is_u64(),
        "{v}"
    );
    assert!(
        v["sysctl"]["net.netfilter.nf_conntrack_tcp_timeout_established"].is_u64(),
        "{v}"
    );
    drop(conns);
}
