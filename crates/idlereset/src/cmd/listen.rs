//! `idlereset listen PORT`: the cooperating responder for `probe --reverse`.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use crate::app::Outcome;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  idlereset listen 9477                          on the server side of the path
  idlereset probe server.example:9477 --reverse  on the client side: server-to-client expiry
  idlereset lab exec db -- idlereset listen 9477

Runs until interrupted. Each test connection gets TCP keepalive armed with the idle duration the
client asked for; results go back on the client's control connection.")]
pub struct Args {
    /// TCP port to listen on
    pub port: u16,
    /// Address to bind (default: all, IPv4 and IPv6)
    #[arg(long)]
    pub bind: Option<IpAddr>,
    /// Listen inside this network namespace (/run/netns/NAME)
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
}

pub fn run(a: Args) -> anyhow::Result<Outcome> {
    let addr = SocketAddr::new(a.bind.unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED)), a.port);
    let listener = idlereset_linux::listen::bind(addr, a.netns.as_deref())?;
    eprintln!("idlereset: listening on {addr} for `idlereset probe --reverse`");
    idlereset_linux::listen::serve(listener, |m| eprintln!("idlereset: {m}"))?;
    Ok(Outcome::Clean)
}
