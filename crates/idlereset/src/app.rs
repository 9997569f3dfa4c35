//! Entry point: parse the command line, dispatch, map results to exit codes.
//!
//! Exit codes (design.md): 0 ok / nothing found, 1 findings or failed verification, 2 usage or
//! runtime error. A closed stdout (`| head`) is success, as in ripgrep.

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;
use crate::cmd;

/// What a command concluded, mapped to an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing wrong found (exit 0).
    Clean,
    /// Findings, a reproduced failure or a failed verification (exit 1).
    Findings,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cmd::run(cli) {
        Ok(Outcome::Clean) => ExitCode::SUCCESS,
        Ok(Outcome::Findings) => ExitCode::from(1),
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("idlereset: error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
