//! Which remote endpoints a hop applies to: `matches = ["198.18.2.0/24:5432"]`.
//!
//! One host often talks to several paths (a database behind a 900 s firewall, an API behind a
//! 350 s NAT gateway). `audit` and `exporter` must pick the right path timeout per socket, so a
//! hop can be limited to the remotes it actually sits in front of.
//!
//! Syntax (documented in docs/plan.md; hand-rolled because no small crate parses "CIDR with an
//! optional port" and the errors must name the offending text):
//!
//! | form | meaning |
//! |---|---|
//! | `198.18.2.10` | one IPv4 host, any port |
//! | `198.18.2.0/24` | an IPv4 network, any port |
//! | `198.18.2.0/24:5432` | an IPv4 network, port 5432 |
//! | `2001:db8:2::/64` | an IPv6 network, any port (no brackets: no port) |
//! | `[2001:db8:2::]/64:5432` | an IPv6 network, port 5432 (brackets are needed for a port) |
//! | `[2001:db8:2::10]:5432` | one IPv6 host, port 5432 |
//! | `*:5432` / `*` | any address (IPv4 or IPv6), port 5432 / any port |
//!
//! IPv4-mapped IPv6 remotes (`::ffff:198.18.2.10`, as dual-stack sockets report them) are
//! compared as the IPv4 address they carry.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// Why a `matches` entry did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid match {text:?}: {why} (examples: 198.18.2.0/24:5432, [2001:db8:2::]/64:5432, 2001:db8:2::/64, *:5432)"
)]
pub struct MatchError {
    /// The match text as given.
    pub text: String,
    /// What is wrong with it.
    pub why: String,
}

/// An address range, with an optional port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    /// `None` = any address.
    pub net: Option<(IpAddr, u8)>,
    /// `None` = any port.
    pub port: Option<u16>,
}

impl Match {
    /// Whether `remote` lies in this range (and has this port, when one is given).
    pub fn matches(&self, remote: SocketAddr) -> bool {
        if self.port.is_some_and(|p| p != remote.port()) {
            return false;
        }
        let Some((net, prefix)) = self.net else {
            return true;
        };
        match (net.to_canonical(), remote.ip().to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(r)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                u32::from(n) & mask == u32::from(r) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(r)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                u128::from(n) & mask == u128::from(r) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Match {
    type Err = MatchError;

    fn from_str(text: &str) -> Result<Match, MatchError> {
        let err = |why: &str| MatchError {
            text: text.to_string(),
            why: why.to_string(),
        };
        let t = text.trim();
        if t.is_empty() {
            return Err(err("empty"));
        }
        // Split into (address part, prefix part, port part).
        let (addr, prefix, port): (&str, Option<&str>, Option<&str>) =
            if let Some(rest) = t.strip_prefix('[') {
                let close = rest
                    .find(']')
                    .ok_or_else(|| err("'[' without a closing ']'"))?;
                let addr = &rest[..close];
                let after = &rest[close + 1..];
                let (prefix, tail) = match after.strip_prefix('/') {
                    Some(p) => match p.find(':') {
                        Some(i) => (Some(&p[..i]), &p[i..]),
                        None => (Some(p), ""),
                    },
                    None => (None, after),
                };
                let port = match tail {
                    "" => None,
                    t => Some(
                        t.strip_prefix(':')
                            .ok_or_else(|| err("expected ':PORT' after ']'"))?,
                    ),
                };
                (addr, prefix, port)
            } else if t.matches(':').count() > 1 {
                // Bare IPv6: no port possible.
                match t.split_once('/') {
                    Some((a, p)) => (a, Some(p), None),
                    None => (t, None, None),
                }
            } else {
                let (net, port) = match t.split_once(':') {
                    Some((n, p)) => (n, Some(p)),
                    None => (t, None),
                };
                match net.split_once('/') {
                    Some((a, p)) => (a, Some(p), port),
                    None => (net, None, port),
                }
            };
        let port = port
            .map(|p| match p {
                "*" => Ok(None),
                p => p
                    .parse::<u16>()
                    .map(Some)
                    .map_err(|_| err("port must be a number 0-65535")),
            })
            .transpose()?
            .flatten();
        if addr == "*" {
            if prefix.is_some() {
                return Err(err("'*' takes no prefix length"));
            }
            return Ok(Match { net: None, port });
        }
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| err("not an IPv4 or IPv6 address"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => {
                let n: u8 = p.parse().map_err(|_| {
                    if p.contains(':') {
                        err("an IPv6 network with a port needs brackets: [2001:db8::]/64:5432")
                    } else {
                        err("prefix length must be a number")
                    }
                })?;
                if n > max {
                    return Err(err(&format!("prefix length {n} exceeds {max}")));
                }
                n
            }
        };
        Ok(Match {
            net: Some((ip, prefix)),
            port,
        })
    }
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.net, self.port) {
            (None, None) => write!(f, "*"),
            (None, Some(p)) => write!(f, "*:{p}"),
            (Some((IpAddr::V4(a), n)), None) => write!(f, "{a}/{n}"),
            (Some((IpAddr::V4(a), n)), Some(p)) => write!(f, "{a}/{n}:{p}"),
            (Some((IpAddr::V6(a), n)), None) => write!(f, "{a}/{n}"),
            (Some((IpAddr::V6(a), n)), Some(p)) => write!(f, "[{a}]/{n}:{p}"),
        }
    }
}

impl serde::Serialize for Match {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Match {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Match, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn m(s: &str) -> Match {
        s.parse().unwrap()
    }
    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_network_with_port() {
        let x = m("198.18.2.0/24:5432");
        assert!(x.matches(sa("198.18.2.10:5432")));
        assert!(!x.matches(sa("198.18.2.10:5433")), "other port");
        assert!(!x.matches(sa("198.18.3.10:5432")), "other network");
        assert_eq!(x.to_string(), "198.18.2.0/24:5432");
    }

    #[test]
    fn ipv4_host_and_any_port() {
        let x = m("198.18.2.10");
        assert!(x.matches(sa("198.18.2.10:1")));
        assert!(!x.matches(sa("198.18.2.11:1")));
        assert!(m("198.18.0.0/15").matches(sa("198.19.255.1:80")));
        assert!(m("0.0.0.0/0").matches(sa("8.8.8.8:53")));
    }

    #[test]
    fn ipv6_forms() {
        let x = m("[2001:db8:2::]/64:5432");
        assert!(x.matches(sa("[2001:db8:2::10]:5432")));
        assert!(!x.matches(sa("[2001:db8:3::10]:5432")));
        assert!(!x.matches(sa("[2001:db8:2::10]:80")));
        let y = m("2001:db8:2::/64");
        assert!(y.matches(sa("[2001:db8:2::10]:80")));
        assert_eq!(y.port, None);
        let z = m("[2001:db8::1]:5432");
        assert_eq!(z.net, Some(("2001:db8::1".parse().unwrap(), 128)));
        assert!(z.matches(sa("[2001:db8::1]:5432")));
        assert_eq!(x.to_string(), "[2001:db8:2::]/64:5432");
    }

    #[test]
    fn families_do_not_mix_but_mapped_v4_does() {
        assert!(!m("198.18.2.0/24").matches(sa("[2001:db8::1]:5432")));
        assert!(m("198.18.2.0/24:5432").matches(sa("[::ffff:198.18.2.10]:5432")));
    }

    #[test]
    fn wildcard() {
        assert!(m("*:5432").matches(sa("[2001:db8::1]:5432")));
        assert!(m("*:5432").matches(sa("10.0.0.1:5432")));
        assert!(!m("*:5432").matches(sa("10.0.0.1:5433")));
        assert!(m("*").matches(sa("10.0.0.1:1")));
    }

    #[test]
    fn errors_name_the_text() {
        for bad in [
            "",
            "198.18.2.0/33",
            "198.18.2.0/24:99999",
            "[2001:db8::",
            "nonsense",
            "2001:db8::/64:5432",
            "*/8",
            "1.2.3.4/x",
        ] {
            let e = bad.parse::<Match>().unwrap_err();
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
        let e = "2001:db8::/64:5432".parse::<Match>().unwrap_err();
        assert!(e.why.contains("brackets"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in ".{0,40}") {
            let _ = s.parse::<Match>();
        }

        #[test]
        fn display_round_trips(a in proptest::prelude::any::<u32>(), n in 0u8..=32, p in proptest::option::of(proptest::prelude::any::<u16>())) {
            let x = Match { net: Some((IpAddr::V4(a.into()), n)), port: p };
            proptest::prop_assert_eq!(x.to_string().parse::<Match>().unwrap(), x);
        }
    }
}
