//! `idlereset plan` (work in progress).

use crate::app::Outcome;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<Outcome> {
    anyhow::bail!("`idlereset plan` is not implemented yet")
}
