//! Naming the client library behind an audit finding, and its fix, from the library data file.
//!
//! A socket finding's generic fix ("set SO_KEEPALIVE ...") is not what a user of HikariCP or
//! grpcio can type. Where the owning process shows its library (a loaded shared object or jar,
//! an open file under the library's install path, its command line; the `detect` hints of
//! `data/libraries.toml`), the finding names it and its fix becomes `plan`'s settings for that
//! library on the finding's path timeout: the same per-library policy `plan` applies, not a
//! second copy of it. Where nothing shows, the finding is unchanged.

use std::collections::BTreeMap;

use super::model::{Finding, Report};
use crate::host::ProcessLibs;
use crate::inventory::{Client, Current, Hop, HopKind, Inventory, Library, Options};
use crate::libraries::{Libraries, LibraryData, SetBy};

/// A library seen in a process, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    /// The library identity.
    pub library: Library,
    /// What showed it (`loaded /usr/lib/.../cygrpc...so`, `command line contains psql`).
    pub evidence: String,
    /// Other libraries the same process shows, by identity name.
    pub others: Vec<String>,
}

fn evidence(l: &LibraryData, p: &ProcessLibs) -> Option<String> {
    for h in &l.detect.loaded {
        if let Some(path) = p.loaded.iter().find(|x| x.contains(h.as_str())) {
            return Some(format!("loaded {path}"));
        }
    }
    l.detect
        .cmdline
        .iter()
        .find(|h| p.cmdline.contains(h.as_str()))
        .map(|h| format!("command line contains {h:?}"))
}

/// The library process `p` uses, when its loaded paths or command line show one. A specific
/// library (one with a protocol) wins over a language's plain sockets (`python`, `java`).
pub fn identify(p: &ProcessLibs) -> Option<Detected> {
    let loaded: Vec<&str> = p.loaded.iter().map(String::as_str).collect();
    let mut found = Libraries::builtin().detect(&p.cmdline, &loaded);
    if found.iter().any(|l| l.protocol != "any") {
        found.retain(|l| l.protocol != "any");
    }
    let first = found.first()?;
    let library = Library::resolve(&first.name)?.0;
    Some(Detected {
        library,
        evidence: evidence(first, p)?,
        others: found.iter().skip(1).map(|l| l.name.clone()).collect(),
    })
}

/// `plan`'s settings for `lib` on a path that forgets idle flows after `path_timeout_s`, as one
/// line: the settings in the library's terms, or the per-client problem when no setting of the
/// library can hold the path.
pub fn fix_for(lib: Library, path_timeout_s: f64) -> Option<String> {
    let inv = Inventory {
        name: None,
        server: None,
        hops: vec![Hop {
            name: "path".into(),
            kind: HopKind::Firewall,
            idle_timeout_s: path_timeout_s,
            failure: crate::catalog::Failure::Reset,
            honours_keepalive: true,
            catalog: None,
            matches: vec![],
            other_path: None,
            line: 1,
        }],
        clients: vec![Client {
            name: lib.as_str().into(),
            library: lib,
            version: None,
            library_alias: None,
            connections: 1,
            current: Current::default(),
        }],
        options: Options::default(),
    };
    let plan = crate::plan::plan(&inv);
    let c = plan.clients.first()?;
    let display = &Libraries::builtin().profile(lib, None).library.display;
    let version = if c.version_assumed {
        format!("{} (assumed)", c.version)
    } else {
        c.version.clone()
    };
    if let Some(p) = c
        .problems
        .iter()
        .find(|p| p.kind == "below-library-minimum")
    {
        return Some(format!("{display} {version}: {}", p.detail));
    }
    let mut parts: Vec<String> = c
        .settings
        .0
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    // A library that leaves the keepalive timing to the OS needs the host's sysctls too.
    let b = Libraries::builtin().profile(lib, None).behaviour;
    if b.set_by == SetBy::Os
        && c.settings
            .0
            .iter()
            .all(|(k, _)| !k.starts_with("net.ipv4."))
    {
        parts.extend(plan.sysctl.iter().map(|(k, v)| format!("{k}={v}")));
    }
    if parts.is_empty() {
        return None;
    }
    Some(format!("{display} {version}: {}", parts.join(", ")))
}

/// Name the library of every socket finding whose process shows one (`by_pid`), and replace its
/// fix with that library's own settings.
pub fn name_libraries(report: &mut Report, by_pid: &BTreeMap<u32, Detected>) {
    for f in report.findings.iter_mut() {
        name_one(f, by_pid);
    }
}

fn name_one(f: &mut Finding, by_pid: &BTreeMap<u32, Detected>) {
    let Some(d) = f.pid.and_then(|p| by_pid.get(&p)) else {
        return;
    };
    let data = Libraries::builtin().profile(d.library, None).library;
    f.library = Some(data.name.clone());
    f.detail.push_str(&format!(
        "; the process uses {} ({}){}",
        data.display,
        d.evidence,
        if d.others.is_empty() {
            String::new()
        } else {
            format!("; it also shows {}", d.others.join(", "))
        }
    ));
    if let Some(fix) = f.path_timeout_s.and_then(|t| fix_for(d.library, t)) {
        f.fix = fix;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::*;
    use crate::audit::evaluate;
    use crate::audit::gather::{attribute, gather};
    use crate::host::fake::FakeHost;
    use crate::host::{HostSocket, Owners, maps_paths};
    use crate::path::PathPolicy;
    use crate::socket::SocketFacts;

    fn idle_socket(port: u16, remote: &str, inode: u64) -> HostSocket {
        HostSocket {
            facts: SocketFacts {
                local: format!("198.18.0.10:{port}").parse().ok(),
                remote: remote.parse().ok(),
                keepalive: Some(false),
                last_data_sent_ms: Some(400_000),
                last_data_recv_ms: Some(400_000),
                last_ack_recv_ms: Some(400_000),
                ..SocketFacts::default()
            },
            inode,
        }
    }

    /// Through the fake host: a Python process with grpcio's C extension mapped is named grpcio
    /// and gets grpcio's channel arguments from `plan`; a JVM with HikariCP's jar open gets the
    /// pool's settings; a process that shows no library keeps the generic fix.
    #[test]
    fn findings_name_the_library_the_process_shows() {
        let maps = "7f0000000000-7f0000001000 r-xp 00000000 08:01 1234 /usr/lib/python3/dist-packages/grpc/_cython/cygrpc.cpython-311-x86_64-linux-gnu.so\n\
                    7f0000002000-7f0000003000 r--p 00000000 00:00 0 [heap]\n\
                    garbage\n";
        let mut host = FakeHost {
            sockets: vec![
                idle_socket(40000, "198.18.2.10:50051", 11),
                idle_socket(40001, "198.18.2.10:5432", 12),
                idle_socket(40002, "198.18.2.10:9000", 13),
            ],
            owners: Ok(Owners {
                by_inode: [
                    (11, (42, "python3".to_string())),
                    (12, (43, "java".to_string())),
                    (13, (44, "worker".to_string())),
                ]
                .into_iter()
                .collect(),
                unreadable: 0,
            }),
            processes: [
                (
                    42,
                    ProcessLibs {
                        cmdline: "python3 /srv/app/events.py".into(),
                        loaded: maps_paths(maps),
                    },
                ),
                (
                    43,
                    ProcessLibs {
                        cmdline: "java -cp /srv/lib/* com.example.Main".into(),
                        loaded: vec!["/srv/lib/HikariCP-5.1.0.jar".into()],
                    },
                ),
                (
                    44,
                    ProcessLibs {
                        cmdline: "/usr/local/bin/worker".into(),
                        loaded: vec!["/usr/lib/x86_64-linux-gnu/libc.so.6".into()],
                    },
                ),
            ]
            .into_iter()
            .collect(),
            ..FakeHost::default()
        };
        let mut facts = vec![gather(&mut host, None, Duration::ZERO).unwrap()];
        attribute(&mut host, &mut facts);
        let f = &facts[0];
        assert_eq!(
            f.libraries.get(&42).map(|d| d.library),
            Some(Library::Grpcio)
        );
        assert_eq!(
            f.libraries.get(&43).map(|d| d.library),
            Some(Library::Hikaricp)
        );
        assert!(!f.libraries.contains_key(&44));
        let paths = PathPolicy::fixed(300.0, "--path-timeout");
        let mut r = evaluate(&f.sockets, &f.kernel(), None, &paths);
        let generic = r
            .findings
            .iter()
            .find(|x| x.pid == Some(44))
            .unwrap()
            .fix
            .clone();
        name_libraries(&mut r, &f.libraries);
        let by = |pid| r.findings.iter().find(|x| x.pid == Some(pid)).unwrap();
        let g = by(42);
        assert_eq!(g.library.as_deref(), Some("grpcio"));
        assert!(g.detail.contains("cygrpc"), "{}", g.detail);
        assert!(g.fix.contains("grpc.keepalive_time_ms="), "{}", g.fix);
        let h = by(43);
        assert_eq!(h.library.as_deref(), Some("hikaricp"));
        assert!(h.fix.contains("keepaliveTime="), "{}", h.fix);
        let w = by(44);
        assert_eq!(w.library, None);
        assert_eq!(w.fix, generic);
        // A path grpcio's pings cannot hold: the fix is the per-client alternative.
        assert!(
            fix_for(Library::Grpcio, 5.0).unwrap().contains("unary RPC"),
            "{:?}",
            fix_for(Library::Grpcio, 5.0)
        );
    }

    #[test]
    fn maps_paths_skip_anonymous_and_malformed_lines() {
        let t = "a-b r-xp 0 08:01 1 /lib/libpq.so.5\na-b r-xp 0 08:01 1 /lib/libpq.so.5\nx\n\na-b rw-p 0 00:00 0 \n";
        assert_eq!(maps_paths(t), vec!["/lib/libpq.so.5".to_string()]);
    }
}
