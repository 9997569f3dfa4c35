//! Errors of the kernel layer. Every variant names the operation and the object it failed on
//! (namespace, interface, path, address), and keeps the kernel's errno as its source.

use std::path::PathBuf;

pub type Result<T, E = LinuxError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum LinuxError {
    #[error("network namespace {name}: {op} failed: {source}")]
    Netns {
        name: String,
        op: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("netlink {op} on {object}: {message}")]
    Netlink {
        op: &'static str,
        object: String,
        message: String,
    },
    #[error("netlink {op} on {object}: kernel said {errno}")]
    NetlinkErrno {
        op: &'static str,
        object: String,
        #[source]
        errno: std::io::Error,
    },
    #[error("socket {op} ({object}): {source}")]
    Socket {
        op: &'static str,
        object: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Unsupported(String),
}

impl LinuxError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LinuxError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn socket(
        op: &'static str,
        object: impl Into<String>,
        source: std::io::Error,
    ) -> Self {
        LinuxError::Socket {
            op,
            object: object.into(),
            source,
        }
    }

    /// True when the failure is a missing privilege (EPERM / EACCES).
    pub fn is_permission_denied(&self) -> bool {
        use nix::errno::Errno;
        match self {
            LinuxError::Netns { source, .. } => matches!(source, Errno::EPERM | Errno::EACCES),
            LinuxError::Io { source, .. } | LinuxError::Socket { source, .. } => {
                source.kind() == std::io::ErrorKind::PermissionDenied
            }
            LinuxError::NetlinkErrno { errno, .. } => {
                matches!(errno.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES))
            }
            _ => false,
        }
    }
}
