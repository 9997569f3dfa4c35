//! `idlereset watch`: a live stream of the TCP resets this host sends and receives, each with
//! its flow, owning process, how long the connection had been idle, and a one-line reading
//! against the path inventory (or the timeout catalog).
//!
//! Events come from the kernel's `tcp:tcp_receive_reset` / `tcp:tcp_send_reset` tracepoints in a
//! private tracefs instance (removed on exit and on Ctrl-C); idle ages and owners from a socket
//! sampler (see `idlereset_linux::live`). Runs until Ctrl-C, `--duration` or `--count`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use idlereset_core::catalog::Catalog;
use idlereset_core::inventory::Inventory;
use idlereset_core::live::read_reset;
use idlereset_core::path::PathPolicy;
use idlereset_core::resets::Direction;
use idlereset_linux::tracefs;
use serde::Serialize;

use crate::app::Outcome;

use idlereset_linux::live::{self as stream, IdleCache, Joined};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  idlereset watch                                  resets on this host, with idle age and process
  idlereset watch --inventory path.toml            read each reset against the path's hops
  idlereset watch --json | jq 'select(.idle_s > 300)'
  idlereset watch --netns fw --duration 60         sample the sockets of a lab namespace

Needs root (tracefs and sock_diag). tracefs must be mounted (mount -t tracefs nodev /sys/kernel/tracing).
Tracepoints fire for every namespace; idle ages are known for the sampled namespace's sockets.")]
pub struct Args {
    /// One JSON object per line: time, direction, local, remote, pid, process, idle_s, reading
    #[arg(long)]
    pub json: bool,
    /// Path inventory (TOML): read each reset against the smallest timeout on the way to its remote
    #[arg(long, value_name = "FILE", conflicts_with = "path_timeout")]
    pub inventory: Option<PathBuf>,
    /// The path's idle timeout in seconds, for every remote
    #[arg(long, value_name = "S")]
    pub path_timeout: Option<f64>,
    /// Sample the sockets of the named network namespace (/run/netns/NAME) instead of this one
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// Stop after this many seconds
    #[arg(long, value_name = "S")]
    pub duration: Option<f64>,
    /// Stop after this many events
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Where reset events come from: the kernel's TCP reset tracepoints (tracefs), sock_diag
    /// destroy events paired with the reset counters (no tracefs needed), or auto (tracefs when
    /// available)
    #[arg(long, value_enum, default_value = "auto")]
    pub source: Source,
}

/// One event as `--json` prints it.
#[derive(Debug, Serialize)]
struct Event {
    time: String,
    direction: Direction,
    local: String,
    remote: String,
    pid: Option<u32>,
    process: Option<String>,
    idle_s: Option<f64>,
    reading: String,
}

/// How events are read against the path: the shared path policy, and the catalog for the
/// "looks like DEVICE" hint when no timeout is known.
pub struct Reader {
    paths: PathPolicy,
    catalog: Option<Catalog>,
}

impl Reader {
    pub fn new(paths: PathPolicy) -> Reader {
        Reader {
            paths,
            catalog: Catalog::builtin().ok(),
        }
    }

    pub fn read(&self, j: &Joined) -> String {
        read_reset(j, &self.paths.resolve(j.remote), self.catalog.as_ref())
    }
}

/// The path policy of `watch` / `exporter` from `--inventory` / `--path-timeout` (nothing
/// given: the timeout is unknown).
pub fn path_policy(
    inventory: Option<&std::path::Path>,
    path_timeout: Option<f64>,
) -> anyhow::Result<PathPolicy> {
    if let Some(f) = inventory {
        return Ok(PathPolicy::inventory(
            load_inventory(f)?,
            f.display().to_string(),
        ));
    }
    match path_timeout {
        Some(t) => {
            anyhow::ensure!(
                t > 0.0 && t.is_finite(),
                "--path-timeout must be a positive number of seconds"
            );
            Ok(PathPolicy::fixed(t, "--path-timeout"))
        }
        None => Ok(PathPolicy::Unknown),
    }
}

/// Load an inventory file for `watch` / `exporter`.
pub fn load_inventory(path: &std::path::Path) -> anyhow::Result<Inventory> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read inventory {}", path.display()))?;
    let catalog = Catalog::builtin()?;
    Ok(Inventory::parse(
        &text,
        &path.display().to_string(),
        &catalog,
    )?)
}

/// Sets `stop` on Ctrl-C / SIGTERM (a small runtime on its own thread).
pub fn stop_on_signal(stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(super::signals::shutdown());
            stop.store(true, Ordering::Relaxed);
        }
    });
}

/// Wall-clock time of an event stamped with the monotonic clock.
fn event_time(mono_s: f64) -> String {
    let now = jiff::Timestamp::now();
    let ago = (tracefs::monotonic_s() - mono_s).clamp(0.0, 86400.0);
    let ago = jiff::SignedDuration::from_secs_f64(ago);
    now.checked_sub(ago).unwrap_or(now).to_string()
}

fn endpoint(a: std::net::SocketAddr) -> String {
    a.to_string()
}

/// The `--json` line of one joined reset.
fn event(j: &Joined, reader: &Reader) -> Event {
    Event {
        time: event_time(j.mono_s),
        direction: j.direction,
        local: endpoint(j.local),
        remote: endpoint(j.remote),
        pid: j.pid,
        process: j.process.clone(),
        idle_s: j.idle_s.map(|s| (s * 1000.0).round() / 1000.0),
        reading: reader.read(j),
    }
}

/// Source of reset events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    Auto,
    Tracefs,
    SockDiag,
}

/// The start-up line: names the event source really in use.
fn banner(use_tracefs: bool, netns: Option<&str>) -> String {
    let source = if use_tracefs {
        "tracepoints tcp_receive_reset, tcp_send_reset"
    } else {
        "sock_diag destroy events with the namespace's reset counters"
    };
    format!(
        "watching TCP resets ({source}){}; Ctrl-C stops",
        netns
            .map(|n| format!(", sockets of namespace {n}"))
            .unwrap_or_default()
    )
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let reader = Reader::new(path_policy(args.inventory.as_deref(), args.path_timeout)?);
    let use_tracefs = match args.source {
        Source::Tracefs => {
            tracefs::find_root().context("watch needs the kernel's TCP reset tracepoints")?;
            true
        }
        Source::SockDiag => false,
        Source::Auto => match tracefs::find_root() {
            Ok(_) => true,
            Err(e) => {
                eprintln!(
                    "idlereset: tracefs unavailable ({e}); falling back to sock_diag destroy events"
                );
                false
            }
        },
    };

    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signal(stop.clone());
    let cache = Arc::new(Mutex::new(IdleCache::default()));
    let sampler = stream::spawn_sampler(args.netns.clone(), cache.clone(), stop.clone());
    // Let the first sample land so flows idle from before the start are known.
    std::thread::sleep(stream::SAMPLE_EVERY);
    if sampler.is_finished() {
        stop.store(true, Ordering::Relaxed);
        let r = sampler
            .join()
            .map_err(|_| anyhow::anyhow!("socket sampler panicked"))?;
        r.map_err(anyhow::Error::msg).context("sample sockets")?;
        anyhow::bail!("socket sampler stopped unexpectedly");
    }
    if !args.json {
        eprintln!("{}", banner(use_tracefs, args.netns.as_deref()));
    }
    let deadline = args
        .duration
        .map(|s| Instant::now() + Duration::from_secs_f64(s.max(0.0)));
    if let Some(d) = deadline {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(d.saturating_duration_since(Instant::now()));
            stop.store(true, Ordering::Relaxed);
        });
    }
    let mut seen = 0u64;
    let mut out_err = None;
    let on_event = |j: stream::Joined| {
        if out_err.is_some() {
            return;
        }
        seen += 1;
        let ev = event(&j, &reader);
        let mut out = std::io::stdout().lock();
        let r = if args.json {
            serde_json::to_writer(&mut out, &ev)
                .map_err(std::io::Error::other)
                .and_then(|()| writeln!(out))
        } else {
            let arrow = match j.direction {
                Direction::Received => "<-",
                Direction::Sent => "->",
            };
            let who = match (&ev.process, ev.pid) {
                (Some(p), Some(pid)) => format!("{p}[{pid}]"),
                _ => "?".into(),
            };
            writeln!(
                out,
                "{} {:8} {} {} {} {}: {}",
                ev.time,
                format!("{:?}", j.direction).to_lowercase(),
                ev.local,
                arrow,
                ev.remote,
                who,
                ev.reading
            )
        };
        let _ = out.flush();
        if let Err(e) = r {
            out_err = Some(e);
            stop.store(true, Ordering::Relaxed);
        }
        if args.count.is_some_and(|n| seen >= n) {
            stop.store(true, Ordering::Relaxed);
        }
    };
    let result = if use_tracefs {
        stream::run_events(&cache, &stop, on_event)
    } else {
        stream::run_destroy_events(args.netns.clone(), &cache, &stop, on_event)
    };
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    result.context(if use_tracefs {
        "read the TCP reset tracepoints"
    } else {
        "read sock_diag destroy events"
    })?;
    match out_err {
        Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Outcome::Clean),
        Some(e) => Err(e.into()),
        None if seen > 0 => Ok(Outcome::Findings),
        None => Ok(Outcome::Clean),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The `watch --json` line for a reset read against a fixed path timeout.
    #[test]
    fn json_snapshot() {
        let j = Joined {
            mono_s: 10.0,
            direction: Direction::Received,
            local: "198.18.0.10:40000".parse().unwrap(),
            remote: "198.18.2.10:5432".parse().unwrap(),
            pid: Some(77),
            process: Some("psql".into()),
            idle_s: Some(902.0),
        };
        let reader = Reader::new(PathPolicy::fixed(900.0, "--path-timeout"));
        let ev = event(&j, &reader);
        insta::assert_json_snapshot!("watch_json", ev, { ".time" => "[time]" });
    }

    #[test]
    fn banner_names_the_source_in_use() {
        let fallback = banner(false, Some("app"));
        assert!(!fallback.contains("tracepoints"), "{fallback}");
        assert!(fallback.contains("sock_diag"), "{fallback}");
        assert!(fallback.contains("namespace app"), "{fallback}");
        assert!(banner(true, None).contains("tracepoints"));
    }
}
