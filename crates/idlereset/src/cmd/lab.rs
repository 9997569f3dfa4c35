//! `idlereset lab ...` (work in progress).

use crate::app::Outcome;

#[derive(Debug, clap::Subcommand)]
pub enum LabCommand {
    /// Bring a lab up
    Up,
}

pub fn run(_cmd: LabCommand) -> anyhow::Result<Outcome> {
    anyhow::bail!("lab not implemented yet")
}
