//! Errors of the kernel layer. Every variant names the operation and the object it failed on
//! (namespace, interface, path, address), and keeps the kernel's errno as its source.

use std::path::PathBuf;

/// Result of the kernel layer, failing with [`LinuxError`].
pub type Result<T, E = LinuxError> = std::result::Result<T, E>;

/// Why a kernel operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LinuxError {
    /// Entering, creating or removing a network namespace failed.
    #[error("network namespace {name}: {op} failed: {source}")]
    Netns {
        /// Name of the namespace.
        name: String,
        /// The operation (`setns`, `unshare`, ...).
        op: &'static str,
        /// The errno.
        #[source]
        source: nix::Error,
    },
    /// A file operation (namespace pin files, procfs, sysctls, tracefs) failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// The operation (`read`, `open namespace`, ...).
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A netlink exchange failed without an errno (a malformed or unexpected reply).
    #[error("netlink {op} on {object}: {message}")]
    Netlink {
        /// The netlink operation.
        op: &'static str,
        /// What it was applied to (namespace, interface, table, ...).
        object: String,
        /// What went wrong.
        message: String,
    },
    /// The kernel answered a netlink request with an error.
    #[error("netlink {op} on {object}: kernel said {errno}")]
    NetlinkErrno {
        /// The netlink operation.
        op: &'static str,
        /// What it was applied to (namespace, interface, table, ...).
        object: String,
        /// The errno the kernel returned.
        #[source]
        errno: std::io::Error,
    },
    /// A socket call (socket, bind, setsockopt, getsockopt, ...) failed.
    #[error("socket {op} ({object}): {source}")]
    Socket {
        /// The call.
        op: &'static str,
        /// What it was applied to (interface, address, ...).
        object: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Anything else that has no errno: a request this crate cannot express, a bad interface
    /// name, a panicked capture thread (the text says which).
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
