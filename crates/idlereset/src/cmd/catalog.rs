//! `idlereset catalog`: the documented idle timeouts the analysis commands match against.

use std::io::Write;

use idlereset_core::catalog::{Catalog, Entry};
use idlereset_core::duration::Human;

use crate::app::Outcome;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  idlereset catalog\n  idlereset catalog --json | jq '.entries[] | select(.kind==\"nat\")'"
)]
pub struct Args {
    /// Print one JSON object (`entries: [...]`) instead of a table
    #[arg(long)]
    pub json: bool,
}

/// `catalog --json`.
#[derive(Debug, serde::Serialize)]
struct CatalogJson<'a> {
    entries: &'a [Entry],
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let catalog = Catalog::builtin()?;
    if args.json {
        super::print_json(&CatalogJson {
            entries: catalog.entries(),
        })?;
        return Ok(Outcome::Clean);
    }
    let mut out = std::io::stdout().lock();
    for e in catalog.entries() {
        writeln!(
            out,
            "{:<32} {:<13} {:<22} {}",
            e.id,
            e.kind,
            Human(e.idle_timeout_s).to_string(),
            e.name
        )?;
        writeln!(out, "{:<32} source: {}", "", e.source)?;
    }
    Ok(Outcome::Clean)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn json_snapshot() {
        let catalog = Catalog::builtin().unwrap();
        insta::assert_json_snapshot!(
            "catalog_json",
            CatalogJson {
                entries: catalog.entries()
            }
        );
    }
}
