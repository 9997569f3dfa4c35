//! `idlereset probe HOST:PORT`: measure a path's idle timeout and how it fails.

use std::io::{IsTerminal, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use idlereset_core::catalog::Catalog;
use idlereset_core::duration::{Human, parse_duration};
use idlereset_core::probe::{Failure, Precision, advise_keepalive};
use idlereset_linux::probe::{ProbeConfig, Progress, refresh_test, run as run_probe, run_reverse};
use idlereset_linux::probe::{RefreshOutcome, RungOutcome};
use serde::Serialize;

use crate::app::Outcome;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  idlereset probe db.internal:5432                       up to 2 h, 5 % precision
  idlereset probe 198.18.2.10:5432 --max 30m --precision 2s
  idlereset probe api.example:443 --refresh 60s --json    also check keepalives keep it alive
  idlereset lab exec app -- idlereset probe 198.18.2.10:5432 --max 60s

Sends no payload: each connection's first TCP keepalive probe, timed by the kernel with
TCP_KEEPIDLE, tests one idle duration; all run at once, so the measurement ends shortly after the
timeout itself (you cannot know a connection survives T seconds idle without waiting T seconds).
TCP_KEEPIDLE has one-second granularity: brackets are never narrower than 1 s.
Exit code: 1 when an idle timeout was found, 0 when the path held up to --max.")]
pub struct Args {
    /// Target HOST:PORT (any TCP server)
    pub target: String,
    /// Longest idle to test
    #[arg(long, default_value = "2h", value_parser = |s: &str| parse_duration(s).map_err(|e| e.to_string()))]
    pub max: Duration,
    /// Bracket width to reach: relative (5%) or absolute (5s)
    #[arg(long, default_value = "5%", value_parser = Precision::parse)]
    pub precision: Precision,
    /// Connection budget per pass
    #[arg(long, default_value_t = 256)]
    pub connections: usize,
    /// New connections per second
    #[arg(long, default_value_t = 200)]
    pub connect_rate: u32,
    /// Afterwards, hold one connection with keepalives at this interval past the measured timeout
    /// and check it still carries data
    #[arg(long, value_parser = |s: &str| parse_duration(s).map_err(|e| e.to_string()))]
    pub refresh: Option<Duration>,
    /// Measure the server-to-client direction against `idlereset listen` on the target
    #[arg(long)]
    pub reverse: bool,
    /// Create the probe sockets inside this network namespace (/run/netns/NAME)
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// Print one JSON object
    #[arg(long)]
    pub json: bool,
}

fn resolve(target: &str) -> anyhow::Result<SocketAddr> {
    target
        .to_socket_addrs()
        .map_err(|e| anyhow::anyhow!("cannot resolve {target:?} (expected HOST:PORT): {e}"))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{target:?} resolves to no address"))
}

/// `probe --json`.
#[derive(Debug, Serialize)]
struct ProbeJson<'a> {
    target: String,
    direction: &'static str,
    timeout_s: TimeoutRange,
    failure: &'static str,
    elapsed_s: f64,
    connections: usize,
    passes: u32,
    truncated: bool,
    recommendation: Option<RecommendationJson>,
    refresh: Option<&'a RefreshOutcome>,
    candidates: Vec<CandidateJson<'a>>,
    rungs: &'a [RungOutcome],
}

/// Longest idle that survived, shortest that failed.
#[derive(Debug, Serialize)]
struct TimeoutRange {
    low: Option<f64>,
    high: Option<f64>,
}

/// Keepalive settings below the measured timeout.
#[derive(Debug, Serialize)]
struct RecommendationJson {
    keepalive_time_s: u32,
    keepalive_intvl_s: u32,
    keepalive_probes: u32,
    dead_peer_detection_s: u32,
}

/// A catalog entry within 5 % of the measured timeout.
#[derive(Debug, Serialize)]
struct CandidateJson<'a> {
    id: &'a str,
    timeout_s: f64,
    source: &'a str,
}

fn failure_name(f: Failure) -> &'static str {
    match f {
        Failure::Reset => "reset",
        Failure::Blackhole => "blackhole",
        Failure::Fin => "fin",
        Failure::None => "none",
    }
}

pub fn run(a: Args) -> anyhow::Result<Outcome> {
    let target = resolve(&a.target)?;
    if a.connections < 2 {
        anyhow::bail!("--connections must be at least 2");
    }
    let cfg = ProbeConfig {
        target,
        max: a.max,
        precision: a.precision,
        connections: a.connections,
        connect_rate: a.connect_rate,
        wall_limit: a.max * 3 + Duration::from_secs(60),
        netns: a.netns.clone(),
    };
    let tty = std::io::stderr().is_terminal();
    let mut last_line = String::new();
    let mut show = |p: &Progress| {
        let pending = match p.pending.as_slice() {
            [] => "none".to_string(),
            v if v.len() <= 6 => v
                .iter()
                .map(|d| format!("{d}s"))
                .collect::<Vec<_>>()
                .join(" "),
            v => format!("{}s..{}s ({} rungs)", v[0], v[v.len() - 1], v.len()),
        };
        let line = format!(
            "pass {} | {:.0} s elapsed | survived up to {} | failed from {} | pending {}",
            p.pass,
            p.elapsed_s,
            p.survived_up_to
                .map(|l| format!("{l:.0} s"))
                .unwrap_or_else(|| "-".into()),
            p.failed_from
                .map(|(h, f)| format!("{h:.0} s ({})", failure_name(f)))
                .unwrap_or_else(|| "-".into()),
            pending
        );
        if tty {
            eprint!("\r\x1b[2K{line}");
        } else if line != last_line && !a.json {
            eprintln!("{line}");
        }
        last_line = line;
    };
    let outcome = if a.reverse {
        run_reverse(&cfg, &mut show)?
    } else {
        run_probe(&cfg, &mut show)?
    };
    if tty {
        eprintln!();
    }
    let b = &outcome.bracket;
    let failure = b.failure();
    let low = b.low;
    let high = b.high.map(|(h, _)| h);
    let advice = low.filter(|_| high.is_some()).map(advise_keepalive);
    let refresh = match (a.refresh, high) {
        (Some(iv), Some(h)) => {
            let hold = Duration::from_secs_f64(h * 1.5);
            eprintln!(
                "refresh test: keepalive every {} s for {:.0} s ...",
                iv.as_secs(),
                hold.as_secs_f64()
            );
            Some(refresh_test(&cfg, iv.as_secs().max(1) as u32, hold)?)
        }
        (Some(_), None) => None,
        _ => None,
    };
    let catalog = Catalog::builtin()?;
    let candidates: Vec<CandidateJson<'_>> = high
        .map(|h| {
            catalog
                .near(h, 0.05)
                .into_iter()
                .map(|c| CandidateJson {
                    id: &c.entry.id,
                    timeout_s: c.entry.idle_timeout_s,
                    source: &c.entry.source,
                })
                .collect()
        })
        .unwrap_or_default();
    if a.json {
        crate::cmd::print_json(&ProbeJson {
            target: target.to_string(),
            direction: if a.reverse {
                "server-to-client"
            } else {
                "client-to-server"
            },
            timeout_s: TimeoutRange { low, high },
            failure: failure_name(failure),
            elapsed_s: outcome.elapsed_s,
            connections: outcome.connections,
            passes: outcome.passes,
            truncated: outcome.truncated,
            recommendation: advice.map(|k| RecommendationJson {
                keepalive_time_s: k.time_s,
                keepalive_intvl_s: k.intvl_s,
                keepalive_probes: k.probes,
                dead_peer_detection_s: k.dead_peer_detection_s,
            }),
            refresh: refresh.as_ref(),
            candidates,
            rungs: &outcome.rungs,
        })?;
    } else {
        let mut out = std::io::stdout().lock();
        match (low, b.high) {
            (_, None) => writeln!(
                out,
                "{target}: no idle timeout up to {} (failure: none)",
                Human(a.max.as_secs_f64())
            )?,
            (Some(l), Some((h, f))) => writeln!(
                out,
                "{target}: idle timeout between {l:.0} s (survived) and {h:.0} s (failed: {})",
                failure_name(f)
            )?,
            (None, Some((h, f))) => writeln!(
                out,
                "{target}: failed already after {h:.0} s idle ({})",
                failure_name(f)
            )?,
        }
        writeln!(
            out,
            "measured in {:.1} s with {} connections in {} pass(es)",
            outcome.elapsed_s, outcome.connections, outcome.passes
        )?;
        let how = match failure {
            Failure::Reset => {
                "the next packet after the timeout is answered with a RST (a middlebox or the peer forgot the flow)"
            }
            Failure::Blackhole => {
                "the next packet after the timeout vanishes: the sender retransmits until it gives up"
            }
            Failure::Fin => {
                "the peer or a proxy closes idle connections (FIN): an endpoint idle timeout"
            }
            Failure::None => "nothing cut the connection",
        };
        writeln!(out, "how it fails: {how}")?;
        if let Some(k) = advice {
            writeln!(
                out,
                "recommendation: SO_KEEPALIVE with TCP_KEEPIDLE {} s, TCP_KEEPINTVL {} s, TCP_KEEPCNT {} (dead peer noticed within {} s)",
                k.time_s, k.intvl_s, k.probes, k.dead_peer_detection_s
            )?;
            if failure == Failure::Fin {
                writeln!(
                    out,
                    "  (an endpoint closing idle connections is not held open by TCP keepalives: use application heartbeats)"
                )?;
            }
        }
        for c in &candidates {
            writeln!(
                out,
                "matches catalog: {} ({} s) — {}",
                c.id, c.timeout_s, c.source
            )?;
        }
        if let Some(r) = &refresh {
            writeln!(
                out,
                "refresh test: keepalive every {} s held {:.0} s; data afterwards {}",
                r.interval_s,
                r.held_s,
                if r.carried_data {
                    "went through: keepalives keep the state alive".to_string()
                } else {
                    format!("FAILED ({})", failure_name(r.failure))
                }
            )?;
        }
    }
    Ok(if high.is_some() {
        Outcome::Findings
    } else {
        Outcome::Clean
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `probe --json` shape (a measurement needs a lab; the lab test checks the values).
    #[test]
    fn json_snapshot() {
        let doc = ProbeJson {
            target: "198.18.2.10:5432".into(),
            direction: "client-to-server",
            timeout_s: TimeoutRange {
                low: Some(345.0),
                high: Some(355.0),
            },
            failure: failure_name(Failure::Reset),
            elapsed_s: 712.5,
            connections: 12,
            passes: 2,
            truncated: false,
            recommendation: Some(RecommendationJson {
                keepalive_time_s: 300,
                keepalive_intvl_s: 30,
                keepalive_probes: 5,
                dead_peer_detection_s: 450,
            }),
            refresh: None,
            candidates: vec![CandidateJson {
                id: "aws-nat-gateway",
                timeout_s: 350.0,
                source: "https://docs.aws.amazon.com/vpc/latest/userguide/nat-gateway-troubleshooting.html",
            }],
            rungs: &[],
        };
        insta::assert_json_snapshot!("probe_json", doc);
    }
}
