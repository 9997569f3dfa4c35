//! `idlereset plan`: keepalive, pool, heartbeat and firewall settings that fit a whole path.
//!
//! Reads a path inventory (TOML, see `idlereset_core::inventory`), validates it with
//! line/column errors, plans with `idlereset_core::plan::plan` and renders the result as text,
//! JSON, the `/etc/sysctl.d/` file, the nftables ct timeout policy, or a Mermaid / DOT diagram.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use idlereset_core::catalog::Catalog;
use idlereset_core::inventory::Inventory;
use idlereset_core::plan::{self, render};

use crate::app::Outcome;

const EXAMPLES: &str = "\
Examples:
  idlereset plan examples/inventories/firewall-900.toml
  idlereset plan inventory.toml --json | jq '.keepalive'
  idlereset plan inventory.toml --format sysctl | sudo tee /etc/sysctl.d/90-idlereset-keepalive.conf
  idlereset plan inventory.toml --format nft > path-timeout.nft     # firewall-side alternative
  idlereset plan inventory.toml --format mermaid                     # the path with each hop's expiry
  idlereset plan host.toml --remote 198.18.2.10:5432                 # only the hops on the way to it
  idlereset plan inventory.toml --format dot | dot -Tsvg > path.svg

Inventory (TOML):
  [[hop]]
  name = \"dc-firewall\"
  kind = \"firewall\"             # firewall | nat | load-balancer | proxy
  idle_timeout_s = 900
  failure = \"reset\"             # reset | drop | fin | unknown
  matches = [\"198.18.2.0/24:5432\", \"[2001:db8:2::]/64:5432\"]   # optional
  [[hop]]
  catalog = \"aws-nat-gateway\"   # values from `idlereset catalog`
  [[client]]
  name = \"orders-api\"
  library = \"hikaricp\"          # see docs/plan.md: libpq pgjdbc hikaricp node-pg pgx lib-pq redis-py ioredis go-redis grpcio grpc-go grpc-java grpc-js go java python raw
  version = \"2.7.9\"             # optional: advice for that version (else the assumed one, said in the plan)
  connections = 40
  current = { keepalive = false, pool_idle_timeout_s = 3600 }";

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human report: path, settings per client, firewall alternative, cost
    Text,
    /// The /etc/sysctl.d/ file with the keepalive defaults
    Sysctl,
    /// nftables ct timeout policy for just this path's flows
    Nft,
    /// Mermaid flowchart of the path with each hop's expiry
    Mermaid,
    /// Graphviz DOT graph of the path with each hop's expiry
    Dot,
}

#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Path inventory (TOML); `-` reads standard input
    #[arg(value_name = "INVENTORY.toml")]
    pub inventory: PathBuf,
    /// Print the plan as one JSON object (path_timeout_s, limiting_hop, keepalive, pool, clients, ...)
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Plan only the hops whose `matches` cover this remote (ADDR:PORT; an IPv6 address in brackets)
    #[arg(long, value_name = "ADDR:PORT")]
    pub remote: Option<SocketAddr>,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let (name, text) = read(&args.inventory)?;
    let catalog = Catalog::builtin()?;
    let mut inventory = Inventory::parse(&text, &name, &catalog)?;
    if let Some(remote) = args.remote {
        inventory = inventory.for_remote(remote).with_context(|| {
            format!("no hop in {name} applies to {remote}: check the hops' `matches`")
        })?;
    }
    let plan = plan::plan(&inventory);
    // Rendered to a string first so that a closed stdout surfaces as an io::Error (exit 0 for
    // `| head`), not wrapped in a serde_json::Error.
    let out = match args.format {
        _ if args.json => serde_json::to_string_pretty(&plan)? + "\n",
        Format::Text => render::text(&plan),
        Format::Sysctl => render::sysctl(&plan),
        Format::Nft => render::nft(&plan),
        Format::Mermaid => render::mermaid(&plan),
        Format::Dot => render::dot(&plan),
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(Outcome::Clean)
}

fn read(path: &PathBuf) -> anyhow::Result<(String, String)> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the inventory from standard input")?;
        return Ok(("<stdin>".into(), text));
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading inventory {}", path.display()))?;
    Ok((path.display().to_string(), text))
}
