//! `idlereset listen PORT`: the cooperating responder for `probe --reverse`.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use idlereset_core::duration::parse_duration;
use idlereset_linux::listen::ListenConfig;

use crate::app::Outcome;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  idlereset listen 9477                          on the server side of the path
  idlereset listen 9477 --allow 203.0.113.0/24   only probers from that network may connect
  idlereset probe server.example:9477 --reverse  on the client side: server-to-client expiry
  idlereset lab exec db -- idlereset listen 9477

Runs until interrupted. Each test connection gets TCP keepalive armed with the idle duration the
client asked for; results go back on the client's control connection. Prints
`idlereset: listening on ADDR` once it accepts connections (port 0 picks a free port).

What it exposes: anyone who may connect (see --allow) can open a session and hold up to
--max-connections idle connections in total (600 per source address) until the durations they
asked for (at most 32767 s) have passed. Lines are capped at 128 bytes and must arrive within 5 s;
sessions carry a random 128-bit token and only accept tests from their own source address.")]
pub struct Args {
    /// TCP port to listen on (0: any free port)
    pub port: u16,
    /// Address to bind (default: all, IPv4 and IPv6)
    #[arg(long)]
    pub bind: Option<IpAddr>,
    /// Listen inside this network namespace (/run/netns/NAME)
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// Only accept connections from this network (repeatable; default: everyone)
    #[arg(long, value_name = "CIDR")]
    pub allow: Vec<ipnet::IpNet>,
    /// Open connections at most (also kept below the file descriptor limit)
    #[arg(long, value_name = "N", default_value_t = ListenConfig::default().max_connections)]
    pub max_connections: usize,
    /// Lifetime of a prober's session
    #[arg(long, value_name = "DURATION", default_value = "12h",
          value_parser = |s: &str| parse_duration(s).map_err(|e| e.to_string()))]
    pub session_timeout: Duration,
}

pub fn run(a: Args) -> anyhow::Result<Outcome> {
    anyhow::ensure!(
        a.max_connections > 0,
        "--max-connections must be at least 1"
    );
    let addr = SocketAddr::new(a.bind.unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED)), a.port);
    let listener = idlereset_linux::listen::bind(addr, a.netns.as_deref())?;
    let local = listener.local_addr().unwrap_or(addr);
    eprintln!("idlereset: listening on {local} for `idlereset probe --reverse`");
    let cfg = ListenConfig {
        allow: a.allow,
        max_connections: a.max_connections,
        session_timeout: a.session_timeout,
        ..ListenConfig::default()
    };
    idlereset_linux::listen::serve_with(listener, cfg, |m| eprintln!("idlereset: {m}"))?;
    Ok(Outcome::Clean)
}
