//! Which of the host's sockets speak for the incident: the one rule `triage` uses before it
//! judges SO_KEEPALIVE.
//!
//! A host carries connections of many processes. Only client-side connections that go across a
//! path can be cut the way `triage` diagnoses, so the keepalive verdict is judged on those
//! alone: connections to loopback never cross a middlebox, and connections accepted by a local
//! listener (their local port is a listening port: an sshd session, the host's own server) are
//! the far end of somebody else's path. When `--remote`s are given, only the connections to
//! them count: an unrelated process's sockets must not decide whether keepalive protects the
//! connections that were reset.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use crate::socket::SocketFacts;

/// Is `s` a client-side connection across a path, relevant to the incident?
///
/// `listening_ports` are the local ports with a listening socket (connections on them were
/// accepted, not opened); `remotes` are the remotes being probed (empty: every remote counts).
pub fn relevant(s: &SocketFacts, listening_ports: &BTreeSet<u16>, remotes: &[SocketAddr]) -> bool {
    let Some(remote) = s.remote else {
        return false;
    };
    if s.is_loopback() {
        return false;
    }
    if s.local.is_some_and(|l| listening_ports.contains(&l.port())) {
        return false;
    }
    remotes.is_empty() || remotes.iter().any(|r| same_endpoint(*r, remote))
}

/// The relevant sockets of `sockets`, in order.
pub fn relevant_sockets(
    sockets: &[SocketFacts],
    listening_ports: &BTreeSet<u16>,
    remotes: &[SocketAddr],
) -> Vec<SocketFacts> {
    sockets
        .iter()
        .filter(|s| relevant(s, listening_ports, remotes))
        .cloned()
        .collect()
}

/// The same address and port, an IPv4-mapped IPv6 address equal to its IPv4 form.
fn same_endpoint(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && a.ip().to_canonical() == b.ip().to_canonical()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sock(local: &str, remote: &str) -> SocketFacts {
        SocketFacts {
            local: local.parse().ok(),
            remote: remote.parse().ok(),
            ..SocketFacts::default()
        }
    }

    #[test]
    fn accepted_loopback_and_other_remotes_are_left_out() {
        let listening: BTreeSet<u16> = [22].into();
        let client = sock("10.0.0.5:40000", "198.18.2.10:5432");
        let sshd = sock("10.0.0.5:22", "203.0.113.9:51000");
        let lo = sock("127.0.0.1:40001", "127.0.0.1:5432");
        let other = sock("10.0.0.5:40002", "198.18.3.3:6379");
        let all = [client.clone(), sshd, lo, other.clone()];
        assert_eq!(
            relevant_sockets(&all, &listening, &[]),
            vec![client.clone(), other]
        );
        let db: SocketAddr = "198.18.2.10:5432".parse().unwrap();
        assert_eq!(relevant_sockets(&all, &listening, &[db]), vec![client]);
        let mapped = sock("[::ffff:10.0.0.5]:40003", "[::ffff:198.18.2.10]:5432");
        assert!(relevant(&mapped, &listening, &[db]));
    }
}
