//! `idlereset pcap` (work in progress).

use crate::app::Outcome;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  idlereset pcap capture.pcap --json   (not implemented yet)")]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<Outcome> {
    anyhow::bail!("`idlereset pcap` is not implemented yet")
}
