//! `idlereset replay` (work in progress).

use crate::app::Outcome;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<Outcome> {
    anyhow::bail!("`idlereset replay` is not implemented yet")
}
