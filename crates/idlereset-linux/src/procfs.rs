//! Which process owns a socket: socket inode -> (pid, fd, comm), by scanning `/proc/*/fd`.
//!
//! sock_diag reports a socket's inode, not its process; the only general way back is the
//! `socket:[INODE]` symlinks under `/proc/PID/fd`. `ss -p` does the same and spends most of its
//! time there on a busy host, so this scan is built for speed:
//! - one pass, a `HashMap<inode, owner>` built once, lookups O(1) afterwards;
//! - each `/proc/PID/fd` is opened once and its entries are resolved with `readlinkat()`
//!   relative to that directory into a stack buffer (no path strings, no allocation per fd);
//! - with a wanted set, only wanted inodes are stored, and the scan stops as soon as all of
//!   them have an owner;
//! - `/proc/PID/comm` is read only for processes that own a stored inode.
//!
//! Processes whose `fd` directory cannot be opened for lack of permission (other users' processes
//! when not root) are counted, so callers can say "could not see N processes: permission".
//! Processes that exit during the scan are silently skipped.

use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::error::{LinuxError, Result};

/// The first process found holding a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// Process id.
    pub pid: u32,
    /// File descriptor of the socket in that process.
    pub fd: u32,
}

/// Socket inode -> owning process map of one scan.
#[derive(Debug, Default)]
pub struct SocketOwners {
    owners: HashMap<u64, Owner>,
    comms: HashMap<u32, String>,
    /// Processes whose fds could not be read (permission).
    pub unreadable: usize,
    /// Processes whose fds were read.
    pub scanned: usize,
}

impl SocketOwners {
    /// Scan `/proc`. With `wanted`, only those inodes are looked for.
    pub fn scan(wanted: Option<&HashSet<u64>>) -> Result<SocketOwners> {
        Self::scan_root(Path::new("/proc"), wanted)
    }

    /// Scan a procfs-shaped tree rooted at `root` (tests use a fake one).
    pub(crate) fn scan_root(root: &Path, wanted: Option<&HashSet<u64>>) -> Result<SocketOwners> {
        let mut out = SocketOwners::default();
        let rd =
            std::fs::read_dir(root).map_err(|e| LinuxError::io("list processes in", root, e))?;
        let mut link = [0u8; 64];
        'procs: for ent in rd.flatten() {
            let name = ent.file_name();
            let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let fd_dir = root.join(name).join("fd");
            let mut dir = match Dir::open(
                &fd_dir,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            ) {
                Ok(d) => d,
                Err(Errno::EACCES | Errno::EPERM) => {
                    out.unreadable += 1;
                    continue;
                }
                Err(_) => continue, // exited, or a kernel thread without an fd table
            };
            out.scanned += 1;
            let dirfd = dir.as_raw_fd();
            for fd_ent in dir.iter().flatten() {
                let fd_name = fd_ent.file_name();
                let Some(n) = readlinkat(dirfd, fd_name, &mut link) else {
                    continue;
                };
                let Some(inode) = parse_socket_link(&link[..n]) else {
                    continue;
                };
                if wanted.is_some_and(|w| !w.contains(&inode)) {
                    continue;
                }
                let Some(fd) = fd_name.to_str().ok().and_then(|s| s.parse().ok()) else {
                    continue;
                };
                out.owners.entry(inode).or_insert(Owner { pid, fd });
                out.comms.entry(pid).or_insert_with(|| read_comm(root, pid));
                if wanted.is_some_and(|w| w.len() == out.owners.len()) {
                    break 'procs;
                }
            }
        }
        Ok(out)
    }

    /// The owner of a socket inode.
    pub fn get(&self, inode: u64) -> Option<Owner> {
        self.owners.get(&inode).copied()
    }

    /// The command name (`/proc/PID/comm`) of a pid that owns a stored socket.
    pub fn comm(&self, pid: u32) -> Option<&str> {
        self.comms.get(&pid).map(String::as_str)
    }

    /// Owner and command name of a socket inode.
    pub fn process(&self, inode: u64) -> Option<(u32, &str)> {
        let o = self.get(inode)?;
        Some((o.pid, self.comm(o.pid).unwrap_or("?")))
    }

    /// Number of sockets mapped.
    pub fn len(&self) -> usize {
        self.owners.len()
    }

    /// No socket inode mapped.
    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }

    /// "could not see N processes: permission", when some were unreadable.
    pub fn visibility_note(&self) -> Option<String> {
        (self.unreadable > 0)
            .then(|| format!("could not see {} processes: permission", self.unreadable))
    }
}

/// `readlinkat(dirfd, name)` into `buf`; the length read, or None on error / truncation.
fn readlinkat(dirfd: i32, name: &CStr, buf: &mut [u8]) -> Option<usize> {
    // SAFETY: `name` is a NUL-terminated C string that lives across the call, `buf` is a valid
    // writable buffer of `buf.len()` bytes, and readlinkat writes at most that many bytes.
    let n = unsafe { libc::readlinkat(dirfd, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    let n = usize::try_from(n).ok()?;
    (n < buf.len()).then_some(n)
}

/// `socket:[12345]` -> 12345.
pub(crate) fn parse_socket_link(link: &[u8]) -> Option<u64> {
    let digits = link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, d| {
        let d = d.checked_sub(b'0').filter(|d| *d <= 9)?;
        acc.checked_mul(10)?.checked_add(u64::from(d))
    })
}

fn read_comm(root: &Path, pid: u32) -> String {
    let p: PathBuf = root.join(pid.to_string()).join("comm");
    std::fs::read_to_string(p)
        .map(|s| s.trim_end().to_string())
        .unwrap_or_else(|_| "?".into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn socket_link_parsing() {
        assert_eq!(parse_socket_link(b"socket:[12345]"), Some(12345));
        assert_eq!(parse_socket_link(b"socket:[]"), None);
        assert_eq!(parse_socket_link(b"socket:[12a]"), None);
        assert_eq!(parse_socket_link(b"pipe:[12]"), None);
        assert_eq!(parse_socket_link(b"socket:[99999999999999999999999]"), None);
    }

    fn fake_proc() -> PathBuf {
        let root = std::env::temp_dir().join(format!(
            "idlereset-fakeproc-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&root);
        for (pid, comm, links) in [
            (
                "100",
                "postgres",
                vec![
                    ("3", "socket:[555]"),
                    ("4", "/dev/null"),
                    ("7", "socket:[556]"),
                ],
            ),
            (
                "200",
                "java",
                vec![("9", "socket:[777]"), ("10", "socket:[555]")],
            ),
        ] {
            let fd = root.join(pid).join("fd");
            std::fs::create_dir_all(&fd).unwrap();
            std::fs::write(root.join(pid).join("comm"), format!("{comm}\n")).unwrap();
            for (n, target) in links {
                symlink(target, fd.join(n)).unwrap();
            }
        }
        std::fs::create_dir_all(root.join("self-not-a-pid")).unwrap();
        std::fs::create_dir_all(root.join("300")).unwrap(); // no fd dir: exited / kernel thread
        root
    }

    #[test]
    fn maps_inodes_to_processes() {
        let root = fake_proc();
        let all = SocketOwners::scan_root(&root, None).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all.process(777), Some((200, "java")));
        assert_eq!(all.get(556), Some(Owner { pid: 100, fd: 7 }));
        // 555 is shared; whichever process came first is the owner.
        assert!(matches!(
            all.process(555),
            Some((100, "postgres")) | Some((200, "java"))
        ));
        assert_eq!(all.get(1), None);
        assert_eq!(all.scanned, 2);
        assert_eq!(all.visibility_note(), None);

        let wanted: HashSet<u64> = [777].into();
        let some = SocketOwners::scan_root(&root, Some(&wanted)).unwrap();
        assert_eq!(some.len(), 1);
        assert_eq!(some.process(777), Some((200, "java")));
        assert_eq!(some.get(556), None);
        std::fs::remove_dir_all(root).unwrap();
    }
}
