//! The real [`HostSource`]: the calling thread's network namespace read over sock_diag,
//! `/proc` (socket owners, `/proc/thread-self/net/{snmp,netstat}`), sysctls, ctnetlink and the
//! tracefs reset tracepoints. The analysis that reads these lives in core and is tested over
//! `idlereset_core::host::fake::FakeHost`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use idlereset_core::host::{
    CtCounters, CtFlow, CtSize, HostError, HostErrorKind, HostSocket, HostSource, Owners,
    ProcessLibs, ResetSeen, maps_paths,
};
use idlereset_core::netstat::Counters;
use idlereset_core::resets::parse_trace_line;

use crate::conntrack::{Ctnetlink, Family};
use crate::error::LinuxError;
use crate::procfs::SocketOwners;
use crate::sockdiag::{self, TcpFilter};
use crate::tracefs::{self, RESET_EVENTS, TraceInstance};

/// The host of the calling thread's network namespace. Call its methods from the thread that is
/// in the namespace to read (`NetNs::run`).
#[derive(Default)]
pub struct LinuxHost {
    ct: Option<Ctnetlink>,
}

impl LinuxHost {
    /// A host reading the calling thread's namespace (sockets open lazily, on first use).
    pub fn new() -> LinuxHost {
        LinuxHost::default()
    }

    fn ct(&mut self) -> Result<&mut Ctnetlink, HostError> {
        if self.ct.is_none() {
            self.ct = Some(Ctnetlink::open().map_err(|e| host_err("conntrack", &e))?);
        }
        self.ct
            .as_mut()
            .ok_or_else(|| HostError::new("conntrack", HostErrorKind::Other, "not open"))
    }
}

/// A [`LinuxError`] as core's [`HostError`] for `source`.
pub fn host_err(source: &str, e: &LinuxError) -> HostError {
    let kind = if e.is_permission_denied() {
        HostErrorKind::Permission
    } else if matches!(e, LinuxError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    {
        HostErrorKind::NotFound
    } else {
        HostErrorKind::Other
    };
    HostError::new(source, kind, e.to_string())
}

impl HostSource for LinuxHost {
    fn sockets(&mut self, on: &mut dyn FnMut(HostSocket)) -> Result<bool, HostError> {
        sockdiag::dump_tcp(TcpFilter::established(), |s| {
            on(HostSocket {
                facts: s.facts(),
                inode: s.inode,
            });
        })
        .map(|sum| sum.interrupted)
        .map_err(|e| host_err("sock_diag", &e))
    }

    fn owners(&mut self, inodes: &HashSet<u64>) -> Result<Owners, HostError> {
        let o = SocketOwners::scan(Some(inodes)).map_err(|e| host_err("/proc", &e))?;
        Ok(Owners {
            by_inode: inodes
                .iter()
                .filter_map(|&i| o.process(i).map(|(p, c)| (i, (p, c.to_string()))))
                .collect(),
            unreadable: o.unreadable,
        })
    }

    fn process_libs(&mut self, pid: u32) -> Result<ProcessLibs, HostError> {
        let io = |what: String, e: std::io::Error| {
            let kind = match e.kind() {
                std::io::ErrorKind::PermissionDenied => HostErrorKind::Permission,
                std::io::ErrorKind::NotFound => HostErrorKind::NotFound,
                _ => HostErrorKind::Other,
            };
            HostError::new(what, kind, e.to_string())
        };
        let base = format!("/proc/{pid}");
        let cmdline = std::fs::read(format!("{base}/cmdline"))
            .map_err(|e| io(format!("{base}/cmdline"), e))?;
        let cmdline = String::from_utf8_lossy(&cmdline)
            .split('\0')
            .filter(|a| !a.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        // maps and fd need the same rights as the owner scan; what cannot be read stays empty.
        let mut loaded = std::fs::read_to_string(format!("{base}/maps"))
            .map(|t| maps_paths(&t))
            .unwrap_or_default();
        if let Ok(dir) = std::fs::read_dir(format!("{base}/fd")) {
            for e in dir.flatten() {
                if let Ok(t) = std::fs::read_link(e.path()) {
                    let t = t.to_string_lossy().into_owned();
                    if t.starts_with('/') && !loaded.contains(&t) {
                        loaded.push(t);
                    }
                }
            }
        }
        Ok(ProcessLibs { cmdline, loaded })
    }

    fn sysctl(&mut self, name: &str) -> Result<String, HostError> {
        crate::sysctl::read(name).map_err(|e| host_err(&format!("sysctl {name}"), &e))
    }

    fn conntrack_size(&mut self) -> Result<CtSize, HostError> {
        let c = self
            .ct()?
            .count()
            .map_err(|e| host_err("conntrack count", &e))?;
        Ok(CtSize {
            entries: c.entries,
            max: c.max,
        })
    }

    fn conntrack_counters(&mut self) -> Result<CtCounters, HostError> {
        let s = self
            .ct()?
            .stats()
            .map_err(|e| host_err("conntrack statistics", &e))?
            .total;
        Ok(CtCounters {
            invalid: s.invalid,
            drop: s.drop,
            early_drop: s.early_drop,
            insert_failed: s.insert_failed,
            found: s.found,
            insert: s.insert,
            error: s.error,
            search_restart: s.search_restart,
        })
    }

    fn conntrack_flows(&mut self, on: &mut dyn FnMut(CtFlow)) -> Result<(), HostError> {
        self.ct()?
            .dump(Family::All, |e| {
                on(CtFlow {
                    id: e.id,
                    proto: e.proto,
                    src: e.orig.src,
                    dst: e.orig.dst,
                    sport: e.orig.sport,
                    dport: e.orig.dport,
                    timeout_s: e.timeout_s,
                    packets: e.packets(),
                })
            })
            .map(|_| ())
            .map_err(|e| host_err("conntrack table", &e))
    }

    fn netstat(&mut self) -> Result<Counters, HostError> {
        let mut c = Counters::default();
        for name in ["snmp", "netstat"] {
            // thread-self: the namespace of this thread (/proc/self/net is the main thread's).
            let path = format!("/proc/thread-self/net/{name}");
            let text = std::fs::read_to_string(&path).map_err(|e| {
                let kind = if e.kind() == std::io::ErrorKind::PermissionDenied {
                    HostErrorKind::Permission
                } else {
                    HostErrorKind::Other
                };
                HostError::new(path.clone(), kind, e.to_string())
            })?;
            c.add_file(&text, &path)
                .map_err(|e| HostError::new(path.clone(), HostErrorKind::Other, e.to_string()))?;
        }
        Ok(c)
    }

    fn reset_events(
        &mut self,
        stop: &AtomicBool,
        on: &mut dyn FnMut(ResetSeen),
    ) -> Result<(), HostError> {
        let err = |e: LinuxError| host_err("tracefs", &e);
        let mut inst = TraceInstance::create(&RESET_EVENTS).map_err(err)?;
        while !stop.load(Ordering::Relaxed) {
            inst.read_lines(Duration::from_millis(200), |line| {
                match parse_trace_line(line) {
                    Ok(Some(ev)) => on(ResetSeen {
                        mono_s: ev.ts_s,
                        direction: ev.direction,
                        local: ev.local,
                        remote: ev.remote,
                    }),
                    Ok(None) => {}
                    Err(e) => eprintln!("idlereset: unreadable trace line: {e}"),
                }
            })
            .map_err(err)?;
        }
        inst.remove().map_err(err)
    }

    fn monotonic_s(&self) -> f64 {
        tracefs::monotonic_s()
    }

    fn pause(&mut self, d: Duration) {
        std::thread::sleep(d);
    }
}
