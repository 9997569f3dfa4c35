//! Incident replays: load an exercise (built-in, TOML, or the seed's markdown), play it one
//! answer at a time, score it and write the after-action report.
//!
//! Pure logic: no terminal, no clock, no lab. The CLI's terminal UI, line mode and
//! `--answers` all drive [`session::Session`]; live mode applies the [`model::Action`] a
//! choice carries.

pub mod builtin;
pub mod caveat;
pub mod error;
pub mod markdown;
pub mod model;
pub mod report;
pub mod scoring;
pub mod session;
pub mod toml_format;

pub use error::LoadError;
pub use model::{Action, Choice, Round, RoundKind, Scenario};
pub use session::{Current, Session, Step, Transcript};

/// Load a scenario from a built-in id or a file's text. `.toml` files use the TOML format,
/// anything else (`.md`, `.txt`) the seed's markdown format.
pub fn load_text(text: &str, file: &str) -> Result<Scenario, LoadError> {
    let stem = std::path::Path::new(file)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("scenario");
    if file.to_ascii_lowercase().ends_with(".toml") {
        toml_format::parse(text, file, stem)
    } else {
        markdown::parse(text, file, stem)
    }
}
