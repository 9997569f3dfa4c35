//! Errors of the lab. Variants name the lab, host, file or setting that failed.

use std::path::PathBuf;

use idlereset_linux::LinuxError;

/// The lab's result type.
pub type Result<T, E = LabError> = std::result::Result<T, E>;

/// Why a lab operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A syscall or netlink request of `idlereset-linux` failed.
    #[error(transparent)]
    Linux(#[from] LinuxError),
    /// The cause is the error's `source` only (not repeated in the message, so a chain printer
    /// such as anyhow's `{:#}` shows it once); [`LabError::with_causes`] spells it out.
    #[error("{op} {}", path.display())]
    Io {
        /// What was being done (`read`, `write`, `create`...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A step of the named lab failed.
    #[error("lab {lab}: {message}")]
    Lab {
        /// The lab's name.
        lab: String,
        /// What failed.
        message: String,
    },
    /// A setting the lab or the kernel cannot honour (the message names it).
    #[error("invalid lab setting: {0}")]
    Config(String),
    /// Missing root or capabilities.
    #[error(
        "the lab needs {missing}: run as root (sudo) or grant the capabilities \
         (e.g. `sudo setcap cap_net_admin,cap_sys_admin,cap_net_raw+ep $(which idlereset)`)"
    )]
    Privilege {
        /// The capabilities missing, comma-separated.
        missing: String,
    },
    /// Stopped by a signal before it finished.
    #[error("interrupted")]
    Interrupted,
}

impl LabError {
    /// The message followed by every cause, `: `-separated (for a report field that must carry
    /// the whole story in one string).
    pub fn with_causes(&self) -> String {
        let mut s = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            s.push_str(": ");
            s.push_str(&c.to_string());
            cause = c.source();
        }
        s
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LabError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn lab(lab: &str, message: impl Into<String>) -> Self {
        LabError::Lab {
            lab: lab.to_string(),
            message: message.into(),
        }
    }
}

/// Fail early, with the exact capabilities missing, when the lab cannot run.
pub fn require_privileges() -> Result<()> {
    let missing = idlereset_linux::privilege::missing_lab_caps();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(LabError::Privilege {
            missing: missing.join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_is_printed_once() {
        let e = LabError::io(
            "read",
            "/run/x.json",
            std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        assert_eq!(e.to_string(), "read /run/x.json");
        let full = e.with_causes();
        assert!(full.starts_with("read /run/x.json: "), "{full}");
        assert_eq!(full.matches("not found").count(), 1, "{full}");
    }
}
