//! One module per subcommand: each parses nothing itself (clap did), validates its arguments
//! into the libraries' typed configs, calls them and renders the result (human or `--json`).

pub mod audit;
pub mod catalog;
pub mod completions;
pub mod conntrack;
mod ctwatch;
pub mod demo;
pub mod exporter;
pub mod lab;
pub mod listen;
pub mod logs;
pub mod pcap;
pub mod plan;
pub mod probe;
pub mod replay;
pub mod signals;
pub mod triage;
pub mod verify;
pub mod watch;

use crate::app::Outcome;
use crate::cli::{Cli, Command};

pub fn run(cli: Cli) -> anyhow::Result<Outcome> {
    match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Lab(args) => lab::run(*args),
        Command::Replay(args) => replay::run(args),
        Command::Logs(args) => logs::run(args),
        Command::Pcap(args) => pcap::run(args),
        Command::Catalog(args) => catalog::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Conntrack(args) => conntrack::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Triage(args) => triage::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Exporter(args) => exporter::run(args),
        Command::Watch(args) => watch::run(args),
        Command::Probe(args) => probe::run(args),
        Command::Listen(args) => listen::run(args),
        Command::Completions(args) => completions::run(args),
        Command::Man => completions::man(),
    }
}

/// Print a value as one JSON object on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}
