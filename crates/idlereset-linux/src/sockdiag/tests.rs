//! Real-kernel tests: loopback connections inside a throw-away namespace, one with keepalive
//! and one without, read back through sock_diag and mapped to this process through procfs.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};

use super::*;
use crate::privilege::require_or_skip;
use crate::procfs::SocketOwners;
use crate::testns::TestNs;

fn collect(filter: TcpFilter) -> Vec<SocketInfo> {
    let mut v = Vec::new();
    dump_tcp(filter, |s| v.push(s)).unwrap();
    v
}

fn find(all: &[SocketInfo], local: SocketAddr, remote: SocketAddr) -> &SocketInfo {
    all.iter()
        .find(|s| s.local == local && s.remote == remote)
        .unwrap_or_else(|| panic!("no socket {local} -> {remote} in {all:#?}"))
}

#[test]
fn keepalive_timer_addresses_and_owner() {
    if !require_or_skip("sockdiag::keepalive_timer_addresses_and_owner") {
        return;
    }
    let t = TestNs::new(true);
    t.ns.run(|| {
        let l4 = TcpListener::bind("127.0.0.1:0").unwrap();
        let l6 = TcpListener::bind("[::1]:0").unwrap();
        let (a4, b4) = (l4.local_addr().unwrap(), l6.local_addr().unwrap());

        let with_ka = TcpStream::connect(a4).unwrap();
        SockRef::from(&with_ka)
            .set_tcp_keepalive(&TcpKeepalive::new().with_time(Duration::from_secs(600)))
            .unwrap();
        let without = TcpStream::connect(a4).unwrap();
        let v6_ka = TcpStream::connect(b4).unwrap();
        SockRef::from(&v6_ka)
            .set_tcp_keepalive(&TcpKeepalive::new().with_time(Duration::from_secs(45)))
            .unwrap();
        let _srv = (
            l4.accept().unwrap(),
            l4.accept().unwrap(),
            l6.accept().unwrap(),
        );

        let est = collect(TcpFilter::established());
        assert!(est.iter().all(|s| s.state == TcpSockState::ESTABLISHED));
        assert_eq!(est.len(), 6, "3 connections, both ends: {est:#?}");

        let ka = find(&est, with_ka.local_addr().unwrap(), a4);
        let timer = ka.timer.expect("keepalive socket has a timer");
        assert_eq!(timer.kind, TimerKind::Keepalive);
        assert!((590_000..=600_000).contains(&timer.expires_ms), "{timer:?}");
        assert_eq!(ka.keepalive_known(), Some(true));
        assert!(ka.keepalive_armed);
        assert!(ka.last_ack_recv_ms.is_some_and(|ms| ms < 5_000));
        let est_ms = ka.keepalive_idle_estimate_ms().unwrap();
        assert!((598_000..=602_000).contains(&est_ms), "estimate {est_ms}");
        assert!(ka.info.is_some());

        let plain = find(&est, without.local_addr().unwrap(), a4);
        assert_eq!(plain.timer, None);
        assert_eq!(plain.keepalive_known(), Some(false));
        assert!(!plain.keepalive_armed);
        assert_eq!(plain.keepalive_idle_estimate_ms(), None);
        // The server side of the keepalive connection did not set it.
        let server_side = find(&est, a4, with_ka.local_addr().unwrap());
        assert_eq!(server_side.keepalive_known(), Some(false));

        let v6 = find(&est, v6_ka.local_addr().unwrap(), b4);
        assert!(v6.local.is_ipv6());
        assert_eq!(v6.timer.map(|t| t.kind), Some(TimerKind::Keepalive));
        assert!(v6.timer.unwrap().expires_ms <= 45_000);

        // Family and state filters.
        let only4 = collect(TcpFilter {
            ipv6: false,
            ..TcpFilter::established()
        });
        assert_eq!(only4.len(), 4);
        let listeners = collect(TcpFilter {
            states: TcpSockState::LISTEN.bit(),
            ..TcpFilter::all()
        });
        let ports: HashSet<u16> = listeners.iter().map(|s| s.local.port()).collect();
        assert_eq!(ports, [a4.port(), b4.port()].into());

        // procfs maps the inodes to this process.
        let wanted: HashSet<u64> = [ka.inode, plain.inode, v6.inode].into();
        assert!(!wanted.contains(&0));
        let owners = SocketOwners::scan(Some(&wanted)).unwrap();
        for inode in &wanted {
            let (pid, _comm) = owners
                .process(*inode)
                .unwrap_or_else(|| panic!("inode {inode} unmapped"));
            assert_eq!(pid, std::process::id());
        }
    })
    .unwrap();
}

#[test]
fn time_wait_sockets_show_their_timer() {
    if !require_or_skip("sockdiag::time_wait_sockets_show_their_timer") {
        return;
    }
    let t = TestNs::new(true);
    t.ns.run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let local = c.local_addr().unwrap();
        let (s, _) = l.accept().unwrap();
        drop(c); // active close: the client ends in TIME_WAIT once the server closes too
        drop(s);
        std::thread::sleep(Duration::from_millis(100));
        let tw = collect(TcpFilter {
            states: TcpSockState::TIME_WAIT.bit(),
            ..TcpFilter::all()
        });
        let sock = tw
            .iter()
            .find(|s| s.local == local)
            .unwrap_or_else(|| panic!("{tw:#?}"));
        assert_eq!(sock.state.name(), "TIME_WAIT");
        assert_eq!(sock.timer.map(|t| t.kind), Some(TimerKind::TimeWait));
        assert_eq!(sock.info, None);
        assert_eq!(sock.keepalive_known(), None);
    })
    .unwrap();
}

/// A hand-built `inet_diag_msg` for 10.0.0.1:40000 -> 10.0.0.2:5432, ESTABLISHED, keepalive
/// timer 30 s with 2 probes out, uid 1000, inode 4242, followed by an `INET_DIAG_INFO` NLA.
fn fixture(info_len: usize) -> Vec<u8> {
    let mut b = vec![0u8; INET_DIAG_MSG_LEN];
    b[..4].copy_from_slice(&[2, 1, 2, 2]); // AF_INET, ESTABLISHED, timer keepalive, retrans 2
    b[4..6].copy_from_slice(&40000u16.to_be_bytes());
    b[6..8].copy_from_slice(&5432u16.to_be_bytes());
    b[8..12].copy_from_slice(&[10, 0, 0, 1]);
    b[24..28].copy_from_slice(&[10, 0, 0, 2]);
    b[52..56].copy_from_slice(&30_000u32.to_ne_bytes()); // expires
    b[64..68].copy_from_slice(&1000u32.to_ne_bytes()); // uid
    b[68..72].copy_from_slice(&4242u32.to_ne_bytes()); // inode
    let mut info = vec![0u8; info_len];
    if info_len > 60 {
        info[52..56].copy_from_slice(&7_000u32.to_ne_bytes()); // last_data_recv
        info[56..60].copy_from_slice(&5_000u32.to_ne_bytes()); // last_ack_recv
    }
    let nla_len = u16::try_from(4 + info_len).unwrap();
    b.extend_from_slice(&nla_len.to_ne_bytes());
    b.extend_from_slice(&INET_DIAG_INFO.to_ne_bytes());
    b.extend_from_slice(&info);
    b.resize(b.len().next_multiple_of(4), 0);
    b
}

#[test]
fn decodes_inet_diag_msg_fixture() {
    let s = decode(&fixture(232)).unwrap();
    assert_eq!(s.local, "10.0.0.1:40000".parse::<SocketAddr>().unwrap());
    assert_eq!(s.remote, "10.0.0.2:5432".parse::<SocketAddr>().unwrap());
    assert_eq!(
        (s.uid, s.inode, s.state.name()),
        (1000, 4242, "ESTABLISHED")
    );
    assert_eq!(
        s.timer,
        Some(SockTimer {
            kind: TimerKind::Keepalive,
            expires_ms: 30_000,
            retrans: 2
        })
    );
    assert_eq!(s.info.unwrap().since_last_receive_ms(), 5_000);
    // Probes are out: the timer runs at KEEPINTVL, no idle estimate.
    assert_eq!(s.keepalive_idle_estimate_ms(), None);
    assert_eq!(s.keepalive_known(), Some(true));
}

#[test]
fn truncated_messages_are_errors() {
    let full = fixture(232);
    let err = decode(&full[..40]).unwrap_err();
    assert!(err.contains("40 bytes"), "{err}");
    // An INET_DIAG_INFO too short for the oldest tcp_info layout.
    assert!(decode(&fixture(20)).is_err());
}

#[test]
fn state_names() {
    assert_eq!(
        TcpSockState::from_name("listen"),
        Some(TcpSockState::LISTEN)
    );
    assert_eq!(TcpSockState::from_name("UNKNOWN"), None);
    assert_eq!(TcpSockState(99).name(), "UNKNOWN");
    assert_eq!(TcpSockState::ESTABLISHED.bit(), 2);
}
