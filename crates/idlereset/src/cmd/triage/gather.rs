//! The one adapter between `triage` and the other engines: logs, pcap, probe, capture and
//! audit's host gathering. Each function calls an engine's public API and converts its output
//! into `idlereset_core::triage` evidence types plus a few lines of detail for the step's
//! text. Nothing else in `triage` touches those engines, so when they change, only this file
//! follows.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use idlereset_core::audit::gather::{NsFacts, attribute, gather};
use idlereset_core::audit::{self, KernelSettings, SocketFacts};
use idlereset_core::catalog::Catalog;
use idlereset_core::inventory::Inventory;
use idlereset_core::logs::analysis::Pattern;
use idlereset_core::logs::signatures::SignatureSet;
use idlereset_core::logs::timestamp::TimeContext;
use idlereset_core::logs::{self as core_logs, ScanOptions};
use idlereset_core::path::PathPolicy;
use idlereset_core::pcap::flow::Config as PcapConfig;
use idlereset_core::pcap::summary::summarise;
use idlereset_core::probe::{Failure as ProbeFailure, Precision};
use idlereset_core::triage::fix::library_for_process;
use idlereset_core::triage::scope;
use idlereset_core::triage::{
    Failure, LocalConntrack, LogEvidence, LogPattern, OsKeepalive, PacketEvidence, ProbeEvidence,
    ProcessSockets, SocketEvidence,
};
use idlereset_linux::NetNs;
use idlereset_linux::capture::CaptureToFile;
use idlereset_linux::host::LinuxHost;
use idlereset_linux::probe::{ProbeConfig, Progress};

/// Step 1: the given log files through the `logs` engine with its defaults (UTC, built-in
/// signatures, 2 s merge window).
pub fn logs(files: &[PathBuf], catalog: &Catalog) -> anyhow::Result<LogEvidence> {
    let opts = ScanOptions {
        signatures: SignatureSet::new(true, &[])?,
        time: TimeContext {
            tz: jiff::tz::TimeZone::UTC,
            year: jiff::Zoned::now().year(),
        },
        ..ScanOptions::default()
    };
    // The logs engine streams: each file is read in blocks, never mapped (a rotated file may
    // shrink under us), with the same bounded memory as `idlereset logs`.
    let mut scanner = core_logs::scanner::Scanner::new(&opts);
    let mut buf = vec![0u8; 1 << 20];
    for path in files {
        let mut f =
            std::fs::File::open(path).with_context(|| format!("reading log {}", path.display()))?;
        scanner.begin_input(&path.display().to_string());
        loop {
            let n = std::io::Read::read(&mut f, &mut buf)
                .with_context(|| format!("reading log {}", path.display()))?;
            if n == 0 {
                break;
            }
            scanner.push(&buf[..n], &mut |_| {});
        }
        scanner.end_input(&mut |_| {});
    }
    let report = scanner.finish(catalog, &jiff::tz::TimeZone::UTC).report;
    let pattern = match report.pattern {
        Pattern::ConnectionAgeTimer => LogPattern::ConnectionAgeTimer,
        Pattern::WallClockSchedule => LogPattern::WallClockSchedule,
        Pattern::IdleTimeout => LogPattern::IdleTimeout,
        Pattern::Irregular => LogPattern::Irregular,
    };
    let (low, high) = report
        .idle_bracket
        .as_ref()
        .map_or((None, None), |b| (b.low.filter(|l| *l > 0.0), b.high));
    // Each signature's failure comes from the library data; a record's stack trace counts.
    let failure = if report.failure_texts.reset > 0 {
        Failure::Reset
    } else if report.failure_texts.timeout > 0 {
        Failure::Blackhole
    } else {
        Failure::None
    };
    Ok(LogEvidence {
        failure,
        events: usize::try_from(report.events).unwrap_or(usize::MAX),
        untimed_lines: usize::try_from(report.lines_without_timestamp).unwrap_or(usize::MAX),
        incidents: usize::try_from(report.incidents).unwrap_or(usize::MAX),
        pattern,
        period_s: report.period_s,
        drift_s_per_day: report.drift_s_per_day,
        idle_low_s: low,
        idle_high_s: high,
        signatures: report
            .signatures
            .into_iter()
            .map(|(k, v)| (k, usize::try_from(v).unwrap_or(usize::MAX)))
            .collect(),
        catalog: report.candidates.into_iter().map(|c| c.id).collect(),
    })
}

/// Step 2: captures through the `pcap` engine (idle gaps of at least 2 s count, so scaled
/// labs show too). Damaged files contribute what was readable; the error is returned beside.
pub fn pcaps(files: &[PathBuf], catalog: &Catalog) -> (PacketEvidence, Vec<String>) {
    let cfg = PcapConfig {
        min_idle_ns: 2_000_000_000,
        ..PcapConfig::default()
    };
    let mut analyses = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        // The same streaming reader as `idlereset pcap` (chunked reads, never mapped: a capture
        // may be large or still being written), and the same unsafe-verdict rule.
        match std::fs::File::open(f) {
            Ok(file) => {
                let (analyzer, outcome) = idlereset_core::pcap::spans::analyse_file(
                    &file,
                    idlereset_core::pcap::Analyzer::new(cfg),
                    &|_| {},
                );
                let a = analyzer.finish(&[&outcome]);
                if let Some(e) = &outcome.error {
                    errors.push(format!("{}: {e}", f.display()));
                }
                for d in &outcome.damage {
                    errors.push(format!(
                        "{}: damaged at byte {} ({} bytes skipped): {}",
                        f.display(),
                        d.offset,
                        d.skipped,
                        d.reason
                    ));
                }
                if a.verdict_unsafe {
                    // As `idlereset pcap` exits 2: what it read still counts, flagged.
                    errors.push(format!(
                        "{}: the damage makes this capture's verdict unsafe (events may be missing)",
                        f.display()
                    ));
                    errors.extend(
                        outcome
                            .notes
                            .iter()
                            .filter(|n| n.contains("editcap"))
                            .map(|n| format!("{}: {n}", f.display())),
                    );
                }
                analyses.push(a.analysis);
            }
            Err(e) => errors.push(format!("{}: {e}", f.display())),
        }
    }
    let refs: Vec<_> = analyses.iter().collect();
    let s = summarise(&refs, catalog);
    let ev = PacketEvidence {
        flows: s.flows,
        idle_resets: s.resets,
        middlebox_resets: s.middlebox_resets,
        blackholes: s.blackholes,
        idle_closes: s.idle_closes,
        active_resets: Some(s.active_resets),
        idle_low_s: s.idle_timeout_s.low,
        idle_high_s: s.idle_timeout_s.high,
        consistent: s.consistent,
        catalog: s.candidates.into_iter().map(|c| c.id).collect(),
    };
    (ev, errors)
}

/// Step 2 with `--capture`: an AF_PACKET capture on all interfaces of the namespace (the named
/// one, or the one the command runs in), as `lab capture` does, into a temporary pcap that is
/// analysed and removed afterwards.
pub struct LiveCapture {
    cap: CaptureToFile,
    path: PathBuf,
}

impl LiveCapture {
    pub fn start(netns: Option<&str>) -> anyhow::Result<LiveCapture> {
        let ns = match netns {
            Some(name) => {
                NetNs::open(name).with_context(|| format!("open network namespace {name}"))?
            }
            None => NetNs::current().context("open the current network namespace")?,
        };
        let netns = netns.unwrap_or("the current network namespace");
        let path =
            std::env::temp_dir().join(format!("idlereset-triage-{}.pcap", std::process::id()));
        let file = std::fs::File::create(&path)
            .with_context(|| format!("create capture file {}", path.display()))?;
        let cap = CaptureToFile::start(&ns, "any", file)
            .with_context(|| format!("capture in {netns} (needs CAP_NET_RAW)"))?;
        Ok(LiveCapture { cap, path })
    }

    /// Stop and analyse; returns the evidence, frames captured and read errors.
    pub fn finish(self, catalog: &Catalog) -> anyhow::Result<(PacketEvidence, u64, Vec<String>)> {
        let frames = self.cap.finish().context("stopping the capture")?;
        let (ev, errors) = pcaps(std::slice::from_ref(&self.path), catalog);
        let _ = std::fs::remove_file(&self.path);
        Ok((ev, frames, errors))
    }
}

/// Resolve HOST:PORT to every address it names, in the resolver's order (never empty).
pub fn resolve_all(target: &str) -> anyhow::Result<Vec<SocketAddr>> {
    let mut all: Vec<SocketAddr> = Vec::new();
    for a in target
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {target:?} (expected HOST:PORT)"))?
    {
        if !all.contains(&a) {
            all.push(a);
        }
    }
    anyhow::ensure!(!all.is_empty(), "{target:?} resolves to no address");
    Ok(all)
}

/// Probe limits shared by all remotes (the totals `probe` uses for one).
pub struct ProbeLimits {
    pub max: Duration,
    pub connections: usize,
    pub connect_rate: u32,
}

#[derive(Default, Clone)]
struct Snapshot {
    low: Option<f64>,
    high: Option<(f64, ProbeFailure)>,
    done: bool,
    /// The probe hit its wall-time limit before every rung was decided.
    truncated: bool,
    error: Option<String>,
}

fn failure(f: ProbeFailure) -> Failure {
    match f {
        ProbeFailure::Reset => Failure::Reset,
        ProbeFailure::Blackhole => Failure::Blackhole,
        ProbeFailure::Fin => Failure::Fin,
        ProbeFailure::None => Failure::None,
    }
}

/// Step 3: probe every remote at once, splitting the connection budget and connect rate
/// between them. Stops waiting when `stop` is raised (Ctrl-C) or, once every remote has
/// failed at some idle, when the bracket has had time to narrow (1.1 x the shortest failure +
/// 3 s): the result then says `stopped_early`. Abandoned probe connections close when the
/// process exits.
pub fn probes(
    remotes: &[SocketAddr],
    netns: Option<&str>,
    limits: &ProbeLimits,
    catalog: &Catalog,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(&str),
) -> Vec<ProbeEvidence> {
    let n = remotes.len().max(1);
    let t0 = Instant::now();
    let snaps: Vec<Arc<Mutex<Snapshot>>> = remotes.iter().map(|_| Arc::default()).collect();
    for (target, snap) in remotes.iter().zip(&snaps) {
        let cfg = ProbeConfig {
            target: *target,
            max: limits.max,
            precision: Precision::Relative(0.05),
            connections: (limits.connections / n).max(16),
            connect_rate: (limits.connect_rate / n as u32).max(10),
            wall_limit: limits.max * 3 + Duration::from_secs(60),
            netns: netns.map(str::to_string),
        };
        let snap = snap.clone();
        std::thread::spawn(move || {
            let s2 = snap.clone();
            let mut cb = move |p: &Progress| {
                if let Ok(mut s) = s2.lock() {
                    s.low = p.survived_up_to;
                    s.high = p.failed_from;
                }
            };
            let r = idlereset_linux::probe::run(&cfg, &mut cb);
            if let Ok(mut s) = snap.lock() {
                match r {
                    Ok(o) => {
                        s.low = o.bracket.low;
                        s.high = o.bracket.high;
                        s.truncated = o.truncated;
                    }
                    Err(e) => s.error = Some(e.to_string()),
                }
                s.done = true;
            }
        });
    }
    let mut last = Instant::now();
    let mut stopped = false;
    loop {
        let now: Vec<Snapshot> = snaps
            .iter()
            .map(|s| s.lock().map(|g| g.clone()).unwrap_or_default())
            .collect();
        if now.iter().all(|s| s.done) {
            break;
        }
        if stop.load(Ordering::Relaxed) {
            stopped = true;
            break;
        }
        let budget = now
            .iter()
            .map(|s| s.high.map(|(h, _)| h * 1.1 + 3.0))
            .collect::<Option<Vec<f64>>>()
            .and_then(|v| v.into_iter().reduce(f64::max));
        if budget.is_some_and(|b| t0.elapsed().as_secs_f64() >= b) {
            stopped = true;
            break;
        }
        if last.elapsed() >= Duration::from_secs(1) {
            let line: Vec<String> = remotes
                .iter()
                .zip(&now)
                .map(|(r, s)| {
                    format!(
                        "{r}: survived {} failed {}",
                        s.low.map_or("-".into(), |l| format!("{l:.0} s")),
                        s.high.map_or("-".into(), |(h, _)| format!("{h:.0} s"))
                    )
                })
                .collect();
            progress(&format!(
                "probing {:.0} s | {}",
                t0.elapsed().as_secs_f64(),
                line.join(" | ")
            ));
            last = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    remotes
        .iter()
        .zip(&snaps)
        .map(|(r, s)| {
            let s = s.lock().map(|g| g.clone()).unwrap_or_default();
            let high = s.high.map(|(h, _)| h);
            ProbeEvidence {
                remote: match &s.error {
                    Some(e) => format!("{r} (error: {e})"),
                    None => r.to_string(),
                },
                low_s: s.low,
                high_s: high,
                failure: s.high.map_or(Failure::None, |(_, f)| failure(f)),
                max_s: limits.max.as_secs_f64(),
                stopped_early: (stopped && !s.done) || s.truncated || s.error.is_some(),
                catalog: high
                    .map(|h| {
                        catalog
                            .near(h, 0.05)
                            .into_iter()
                            .map(|c| c.entry.id.clone())
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        })
        .collect()
}

/// Steps 3 (local conntrack), 4 and 5: what audit's gathering reads of the namespace, the
/// socket owners, and whether the namespace forwards.
pub struct HostFacts {
    pub facts: NsFacts,
    /// Local ports with a listening socket: connections on them were accepted (server side).
    pub listening_ports: BTreeSet<u16>,
    pub forwarding: Option<bool>,
    pub could_not_see: Vec<String>,
}

/// Gather once, before probing, so the probe's own connections are not counted.
pub fn host(netns: Option<&str>) -> anyhow::Result<HostFacts> {
    let read_forward = || {
        idlereset_linux::sysctl::read("net.ipv4.ip_forward")
            .ok()
            .map(|v| v.trim() == "1")
    };
    let (mut facts, forwarding, listening) = match netns {
        Some(name) => {
            let ns = NetNs::open(name).with_context(|| format!("open network namespace {name}"))?;
            let (f, fw, l) = ns
                .run(|| {
                    (
                        gather(
                            &mut LinuxHost::new(),
                            Some(name.to_string()),
                            Duration::ZERO,
                        ),
                        read_forward(),
                        listening_ports(),
                    )
                })
                .with_context(|| format!("enter network namespace {name} (needs root)"))?;
            (f?, fw, l)
        }
        None => (
            gather(&mut LinuxHost::new(), None, Duration::ZERO)?,
            read_forward(),
            listening_ports(),
        ),
    };
    let mut could_not_see = std::mem::take(&mut facts.could_not_see);
    let listening_ports = listening.unwrap_or_else(|e| {
        could_not_see.push(format!(
            "listening sockets: {e} (accepted connections cannot be told from client ones)"
        ));
        BTreeSet::new()
    });
    let mut gathered = [facts];
    could_not_see.extend(attribute(&mut LinuxHost::new(), &mut gathered));
    let [facts] = gathered;
    Ok(HostFacts {
        facts,
        listening_ports,
        forwarding,
        could_not_see,
    })
}

/// The local ports with a listening TCP socket in the current namespace (sock_diag).
fn listening_ports() -> Result<BTreeSet<u16>, String> {
    use idlereset_linux::sockdiag::{TcpFilter, TcpSockState, dump_tcp};
    let mut ports = BTreeSet::new();
    dump_tcp(
        TcpFilter {
            states: TcpSockState::LISTEN.bit(),
            ..TcpFilter::all()
        },
        |s| {
            ports.insert(s.local.port());
        },
    )
    .map_err(|e| e.to_string())?;
    Ok(ports)
}

/// Step 4 from the gathered sysctls.
pub fn os_keepalive(h: &HostFacts) -> Option<OsKeepalive> {
    let k = h.facts.kernel();
    k.keepalive_time_s.map(|_| OsKeepalive {
        time_s: k.keepalive_time_s,
        intvl_s: k.keepalive_intvl_s,
        probes: k.keepalive_probes,
    })
}

/// Step 3's local table, when conntrack is loaded in the namespace.
pub fn local_conntrack(h: &HostFacts) -> Option<LocalConntrack> {
    let ct = h.facts.conntrack.as_ref()?;
    let k: KernelSettings = h.facts.kernel();
    Some(LocalConntrack {
        established_timeout_s: k.ct_established_s,
        entries: ct.count,
        max: ct.max,
        invalid: ct.invalid,
    })
}

/// How the path timeout for judging sockets is known.
pub enum PathSource<'a> {
    Measured(f64),
    Inventory(&'a Inventory),
    Assumed,
}

/// Step 5: per process, which connections opt in to SO_KEEPALIVE, judged by audit's checks
/// against the path timeout (measured once step 3 ran, else the inventory, else assumed). Only
/// the sockets [`scope::relevant`] keeps are judged: client-side connections across a path,
/// to one of `remotes` when any are given. At risk: the remotes of audit's `no-keepalive` and
/// `keepalive-too-late` findings, and, under its `sysctl-only` finding, of every socket
/// without SO_KEEPALIVE.
pub fn sockets(
    h: &HostFacts,
    path: &PathSource<'_>,
    catalog: &Catalog,
    remotes: &[SocketAddr],
) -> SocketEvidence {
    let judged: Vec<SocketFacts> =
        scope::relevant_sockets(&h.facts.sockets, &h.listening_ports, remotes);
    let policy = match path {
        PathSource::Measured(s) => PathPolicy::fixed(*s, "measured by triage"),
        PathSource::Inventory(inv) => PathPolicy::inventory((*inv).clone(), "the inventory"),
        PathSource::Assumed => PathPolicy::catalog_default(catalog).unwrap_or(PathPolicy::Unknown),
    };
    let report = audit::evaluate(
        &judged,
        &h.facts.kernel(),
        h.facts.conntrack.as_ref(),
        &policy,
    );
    let mut by_proc: BTreeMap<String, ProcessSockets> = BTreeMap::new();
    for s in &judged {
        let name = match (&s.process, s.pid) {
            (Some(p), Some(pid)) => format!("{p} (pid {pid})"),
            _ => "unknown".to_string(),
        };
        let e = by_proc
            .entry(name.clone())
            .or_insert_with(|| ProcessSockets {
                process: name,
                library: s
                    .process
                    .as_deref()
                    .and_then(library_for_process)
                    .map(str::to_string),
                ..ProcessSockets::default()
            });
        e.connections += 1;
        match s.keepalive {
            Some(true) => e.keepalive_on += 1,
            Some(false) => e.keepalive_off += 1,
            None => {}
        }
        if let Some(r) = s.remote {
            let r = r.to_string();
            if !e.remotes.contains(&r) && e.remotes.len() < 8 {
                e.remotes.push(r);
            }
        }
    }
    let mut at_risk: Vec<String> = report
        .findings
        .iter()
        .filter(|f| f.kind == "no-keepalive" || f.kind == "keepalive-too-late")
        .filter_map(|f| f.remote.clone())
        .collect();
    // The sysctl-only trap is a host finding: its sockets are the ones without SO_KEEPALIVE
    // (the lowered OS defaults never reach them), each at risk on any path that forgets.
    if report.findings.iter().any(|f| f.kind == "sysctl-only") {
        at_risk.extend(
            judged
                .iter()
                .filter(|s| s.keepalive == Some(false))
                .filter_map(|s| s.remote.map(|r| r.to_string())),
        );
    }
    at_risk.sort();
    at_risk.dedup();
    let mut findings: Vec<String> = report.findings.iter().map(|f| f.kind.to_string()).collect();
    findings.sort();
    findings.dedup();
    let mut processes: Vec<_> = by_proc.into_values().collect();
    processes.sort_by_key(|p| std::cmp::Reverse(p.connections));
    SocketEvidence {
        processes,
        at_risk_remotes: at_risk,
        findings,
    }
}

/// Read a path inventory file.
pub fn inventory(path: &Path, catalog: &Catalog) -> anyhow::Result<Inventory> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading inventory {}", path.display()))?;
    Ok(Inventory::parse(
        &text,
        &path.display().to_string(),
        catalog,
    )?)
}

/// The fix: the planner on the synthetic inventory.
pub fn plan(inventory_toml: &str, catalog: &Catalog) -> anyhow::Result<idlereset_core::plan::Plan> {
    let inv = Inventory::parse(inventory_toml, "<triage>", catalog)?;
    Ok(idlereset_core::plan::plan(&inv))
}

#[cfg(test)]
mod tests {
    use super::*;
    use idlereset_core::triage::{Cause, Evidence, decide};

    fn sock(local: &str, remote: &str, keepalive: bool, pid: u32, name: &str) -> SocketFacts {
        SocketFacts {
            local: local.parse().ok(),
            remote: remote.parse().ok(),
            keepalive: Some(keepalive),
            pid: Some(pid),
            process: Some(name.into()),
            ..SocketFacts::default()
        }
    }

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../idlereset-core/tests/fixtures/logs")
            .join(name)
    }

    /// Library-specific texts name the failure too: PgJDBC's `Caused by: ...SocketException:
    /// Connection reset` in the folded stack trace, grpcio's `recvmsg:Connection reset by peer`,
    /// redis-py's `Error while reading from ...: (104, 'Connection reset by peer')`.
    #[test]
    fn library_reset_texts_name_the_failure() {
        let catalog = Catalog::builtin().expect("built-in catalog");
        for name in ["java-pgjdbc-hikaricp.log", "real-grpcio.log"] {
            let l = logs(&[fixture(name)], &catalog).expect("fixture log");
            assert!(l.events > 0, "{name}");
            assert_eq!(l.failure, Failure::Reset, "{name}: {:?}", l.signatures);
        }
        let dir = std::env::temp_dir().join(format!("idlereset-gather-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let redis = dir.join("redis-py.log");
        std::fs::write(
            &redis,
            "2026-12-01 10:39:04,380 ERROR app Error while reading from 10.0.0.7:6379 : (104, 'Connection reset by peer')\n\
             2026-12-01 10:45:04,380 ERROR app Error while reading from 10.0.0.7:6379 : (110, 'Connection timed out')\n",
        )
        .expect("write log");
        let l = logs(std::slice::from_ref(&redis), &catalog).expect("redis log");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(l.signatures, vec![("redis-py-socket-read".to_string(), 2)]);
        assert_eq!(l.failure, Failure::Reset);
    }

    /// An sshd session with SO_KEEPALIVE (accepted on port 22) and another process's client
    /// socket with it must not turn the app's unprotected connections into
    /// `keepalive-ineffective`: only client sockets to the probed remote are judged.
    #[test]
    fn unrelated_and_accepted_sockets_do_not_decide_keepalive() {
        let catalog = Catalog::builtin().expect("built-in catalog");
        let db: SocketAddr = "198.18.2.10:5432".parse().expect("address");
        let facts = NsFacts {
            sockets: vec![
                sock("10.0.0.5:40000", "198.18.2.10:5432", false, 7, "java"),
                sock("10.0.0.5:40001", "198.18.2.10:5432", false, 7, "java"),
                sock("10.0.0.5:22", "203.0.113.9:51000", true, 99, "sshd"),
                sock("10.0.0.5:40100", "198.18.9.9:443", true, 50, "agent"),
            ],
            sysctl: [(
                "net.ipv4.tcp_keepalive_time".to_string(),
                "7200".to_string(),
            )]
            .into(),
            ..NsFacts::default()
        };
        let h = HostFacts {
            facts,
            listening_ports: [22].into(),
            forwarding: None,
            could_not_see: vec![],
        };
        let s = sockets(&h, &PathSource::Measured(300.0), &catalog, &[db]);
        assert_eq!(s.keepalive_on(), 0);
        assert_eq!(s.keepalive_off(), 2);
        let ev = Evidence {
            probes: vec![idlereset_core::triage::ProbeEvidence {
                remote: db.to_string(),
                low_s: Some(290.0),
                high_s: Some(310.0),
                failure: Failure::Reset,
                max_s: 7200.0,
                stopped_early: false,
                catalog: vec![],
            }],
            os_keepalive: os_keepalive(&h),
            sockets: Some(s),
            ..Evidence::default()
        };
        assert_eq!(decide(&ev).cause, Cause::MiddleboxIdleTimeout);
        // Without remotes, the accepted sshd session still stays out.
        let all = sockets(&h, &PathSource::Measured(300.0), &catalog, &[]);
        assert!(all.processes.iter().all(|p| !p.process.starts_with("sshd")));
    }
}
