//! `idlereset exporter`: Prometheus metrics for one host, so a fleet can alert on what the tool
//! watches on one machine (sockets at risk, conntrack INVALID rising, a table near full, reset
//! bursts). One exporter per host; Prometheus scrapes them all (see docs/exporter.md, deploy/).
//!
//! Shape: core's `exporter_collect::Collector` reads each source of the host per scrape (one
//! failing source only turns its `idlereset_source_up` to 0), [`encode`] writes the exposition text with prometheus-client,
//! [`http`] serves it. Reset events come from the `watch` pipeline running in the background
//! (tracefs), feeding an idle-age histogram.
//!
//! Scrapes are serialised (one collector with the frozen-timer sampler's state), which also
//! bounds memory when several Prometheus servers scrape at once.

pub mod encode;
pub mod http;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use idlereset_core::exporter_collect::Collector;
use idlereset_linux::NetNs;
use idlereset_linux::host::LinuxHost;
use prometheus_client::metrics::family::Family;

use crate::app::Outcome;
use idlereset_linux::live::{self as stream, IdleCache};

use self::encode::{ResetHistogram, ResetSource};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  idlereset exporter                                   serve http://127.0.0.1:9477/metrics
  idlereset exporter --path-timeout 900                sockets whose keepalive comes after 900 s are at risk
  idlereset exporter --inventory path.toml             per-remote timeouts from a path inventory
  idlereset exporter --listen 0.0.0.0:9477             reachable from the Prometheus server (explicit)
  idlereset exporter --listen 127.0.0.1:0 --ready-file /run/idlereset.addr   any free port, written to a file
  curl -s localhost:9477/metrics | grep idlereset_conntrack_invalid

Binds to 127.0.0.1 unless --listen says otherwise: exposing process names and flow counts to the
network is a choice to make explicitly. Needs root for conntrack, sock_diag owners and tracefs;
sources that cannot be read show as idlereset_source_up{source=...} 0.")]
pub struct Args {
    /// Address to serve /metrics on
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9477")]
    pub listen: SocketAddr,
    /// The path's idle timeout in seconds, for every remote
    #[arg(long, value_name = "S", conflicts_with = "inventory")]
    pub path_timeout: Option<f64>,
    /// Path inventory (TOML): per-remote idle timeouts; remotes off its path are not judged
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// Export the named network namespace (/run/netns/NAME) instead of this one
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// Process label values kept; sockets of other processes are counted as process="other"
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub max_processes: usize,
    /// Do not read the reset tracepoints (no idlereset_reset_idle_seconds histogram)
    #[arg(long)]
    pub no_reset_events: bool,
    /// Open HTTP connections at most (32 per source address)
    #[arg(long, value_name = "N", default_value_t = http::default_caps().max_connections)]
    pub max_connections: usize,
    /// Once serving, write the bound address (ADDR:PORT and a newline) to this file, for
    /// scripts and tests that start the exporter on port 0
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
}

/// Everything a request handler needs.
pub struct State {
    collector: Mutex<Collector>,
    netns: Option<NetNs>,
    resets: Option<(ResetHistogram, Arc<AtomicBool>)>,
}

impl State {
    /// One scrape, rendered. Blocking: call from a blocking thread.
    pub fn scrape(&self) -> String {
        let Ok(mut c) = self.collector.lock() else {
            return "# collector poisoned by an earlier panic\n# EOF\n".into();
        };
        let col: &mut Collector = &mut c;
        let snap = match &self.netns {
            // A fresh host per scrape: its netlink sockets open in the namespace read.
            Some(ns) => match ns.run(|| col.collect(&mut LinuxHost::new())) {
                Ok(s) => s,
                Err(e) => return format!("# cannot enter namespace: {e}\n# EOF\n"),
            },
            None => col.collect(&mut LinuxHost::new()),
        };
        let resets = self.resets.as_ref().map(|(h, up)| ResetSource {
            up: up.load(Ordering::Relaxed),
            histogram: h,
        });
        encode::render(&snap, resets)
    }
}

/// The background reset reader: stop it (and join) so its tracefs instance is removed.
struct ResetReader {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

/// Start the tracefs reader feeding the histogram; its `up` flag drops if it fails.
fn start_resets(netns: Option<String>) -> (ResetHistogram, Arc<AtomicBool>, ResetReader) {
    let hist: ResetHistogram = Family::new_with_constructor(encode::new_histogram);
    // Both series exist from the start, so rate() and alerts see zeros rather than nothing.
    for d in ["received", "sent"] {
        let _ = hist.get_or_create(&vec![("direction".to_string(), d.to_string())]);
    }
    let up = Arc::new(AtomicBool::new(true));
    let stop = Arc::new(AtomicBool::new(false));
    let cache = Arc::new(Mutex::new(IdleCache::default()));
    let _sampler = stream::spawn_sampler(netns, cache.clone(), stop.clone());
    let (h, u, st) = (hist.clone(), up.clone(), stop.clone());
    let thread = std::thread::spawn(move || {
        let r = stream::run_events(&cache, &stop, |j| {
            let dir = format!("{:?}", j.direction).to_lowercase();
            let l = vec![("direction".to_string(), dir)];
            // Resets on flows the sampler never saw have no idle age; count them at +Inf
            // would mislead, so they only appear in the kernel counters.
            if let Some(idle) = j.idle_s {
                h.get_or_create(&l).observe(idle);
            }
        });
        if let Err(e) = r {
            eprintln!("idlereset exporter: reset events unavailable: {e}");
        }
        u.store(false, Ordering::Relaxed);
        stop.store(true, Ordering::Relaxed);
    });
    (hist, up, ResetReader { stop: st, thread })
}

/// Write `addr` to `path` atomically (a reader never sees a partial address).
fn write_ready_file(path: &std::path::Path, addr: SocketAddr) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{addr}\n"))
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("write ready file {}", path.display()))
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let path = crate::cmd::watch::path_policy(args.inventory.as_deref(), args.path_timeout)?;
    anyhow::ensure!(args.max_processes > 0, "--max-processes must be at least 1");
    let netns = args
        .netns
        .as_deref()
        .map(|n| NetNs::open(n).with_context(|| format!("open network namespace {n}")))
        .transpose()?;
    let (resets, reader) = match args.no_reset_events {
        true => (None, None),
        false => {
            let (h, up, reader) = start_resets(args.netns.clone());
            (Some((h, up)), Some(reader))
        }
    };
    let state = Arc::new(State {
        collector: Mutex::new(Collector::new(path, args.max_processes)),
        netns,
        resets,
    });
    anyhow::ensure!(
        args.max_connections > 0,
        "--max-connections must be at least 1"
    );
    let caps = idlereset_linux::admission::Caps {
        max_connections: args.max_connections,
        ..http::default_caps()
    };
    let (listen, ready_file) = (args.listen, args.ready_file);
    let served = super::signals::run_cancellable(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("bind {listen}"))?;
        let local = listener.local_addr()?;
        if let Some(path) = &ready_file {
            write_ready_file(path, local)?;
        }
        // A stable line (scripts may search for "listening on"), whatever was logged before.
        eprintln!("idlereset exporter: listening on {local} (http://{local}/metrics)");
        http::serve(listener, state, caps).await
    });
    if let Some(r) = reader {
        // Removes the tracefs instance (the reader polls its stop flag every 200 ms).
        r.stop.store(true, Ordering::Relaxed);
        let _ = r.thread.join();
    }
    served.or_else(|e| {
        if e.to_string().starts_with("interrupted") {
            Ok(Outcome::Clean)
        } else {
            Err(e)
        }
    })
}
