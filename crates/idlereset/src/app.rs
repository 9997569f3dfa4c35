//! Entry point: parse the command line, dispatch, map results to exit codes.
//!
//! Exit codes (docs/json.md): 0 ok / nothing found, 1 findings or failed verification, 2 usage or
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
            eprintln!("idlereset: error: {}", render_error(&err));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes joined by ": ", each cause once. Library errors (thiserror) often
/// show their source in their own message *and* chain it; a cause whose text the previous link
/// already showed is skipped, so "No such file or directory (os error 2)" is printed once.
pub fn render_error(err: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut previous = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !text.is_empty() && !previous.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        previous = text;
    }
    out
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Like a thiserror variant `#[error("...: {source}")]` with `#[source]`.
    #[derive(Debug)]
    struct Repeats {
        source: std::io::Error,
    }

    impl std::fmt::Display for Repeats {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "open namespace /run/netns/x: {}", self.source)
        }
    }

    impl std::error::Error for Repeats {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn causes_are_printed_once() {
        let io = std::io::Error::from_raw_os_error(2);
        let text = io.to_string();
        let err = anyhow::Error::new(Repeats { source: io }).context("listen");
        let shown = render_error(&err);
        assert_eq!(shown.matches(&text).count(), 1, "{shown}");
        assert!(
            shown.starts_with("listen: open namespace /run/netns/x: "),
            "{shown}"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(render_error(&plain), "outer: inner");
    }
}
