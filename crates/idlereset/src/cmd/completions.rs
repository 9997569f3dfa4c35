//! `idlereset completions SHELL` and `idlereset man`, generated from the clap definition so they
//! never drift from the real command line.

use clap::CommandFactory;

use crate::app::Outcome;
use crate::cli::Cli;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  idlereset completions bash > /etc/bash_completion.d/idlereset\n  idlereset completions zsh > \"${fpath[1]}/_idlereset\""
)]
pub struct Args {
    /// Shell to generate completions for
    pub shell: clap_complete::Shell,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "idlereset", &mut std::io::stdout());
    Ok(Outcome::Clean)
}

pub fn man() -> anyhow::Result<Outcome> {
    let cmd = Cli::command();
    clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?;
    Ok(Outcome::Clean)
}
