//! The one error type of the scenario loaders: which file, where in it, what is wrong.
//!
//! Both loaders (markdown and TOML) and the final playability check report through
//! [`LoadError`], so the CLI prints every problem as `file:line:column: message`, the form
//! editors jump to.

/// A scenario that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// Something at a known place in the file (line and column are 1-based).
    #[error("{file}:{line}:{column}: {message}")]
    At {
        /// The scenario file.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong there.
        message: String,
    },
    /// A problem of the scenario as a whole (no single place to point at).
    #[error("{file}: {message}")]
    Whole {
        /// The scenario file.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// A built-in id that does not exist.
    #[error(
        "no built-in scenario {id:?} (built-ins: {known}); a path must end in .toml, .md or .txt"
    )]
    UnknownBuiltin {
        /// The id asked for.
        id: String,
        /// The built-in ids, comma-separated.
        known: String,
    },
}

impl LoadError {
    /// An error at `line` (1-based; 0 means "no line", giving [`LoadError::Whole`]).
    pub fn at(file: &str, line: usize, column: usize, message: impl Into<String>) -> LoadError {
        if line == 0 {
            LoadError::Whole {
                file: file.to_string(),
                message: message.into(),
            }
        } else {
            LoadError::At {
                file: file.to_string(),
                line,
                column: column.max(1),
                message: message.into(),
            }
        }
    }

    /// The 1-based line the error points at, if any.
    pub fn line(&self) -> Option<usize> {
        match self {
            LoadError::At { line, .. } => Some(*line),
            _ => None,
        }
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`; offsets past the end
/// or inside a character are clamped, never a panic.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters_and_clamps() {
        let t = "ab\ncé d\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 3), (2, 1));
        // 'd' is after a two-byte 'é': byte 7, column 4
        assert_eq!(line_col(t, 7), (2, 4));
        assert_eq!(
            line_col(t, 5),
            (2, 2),
            "inside 'é' clamps back to its start"
        );
        assert_eq!(line_col(t, 999), (3, 1));
    }
}
