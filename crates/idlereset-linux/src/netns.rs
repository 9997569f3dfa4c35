//! Named network namespaces, compatible with `ip netns` (bind mounts under `/run/netns`).
//!
//! A namespace is created on a short-lived dedicated thread (`unshare(CLONE_NEWNET)` affects
//! only the calling thread) and pinned by bind-mounting that thread's `/proc/thread-self/ns/net`
//! onto `/run/netns/NAME`, so it outlives this process and other processes (`lab exec`,
//! `lab status`) can enter it. Work inside a namespace runs on a dedicated thread that
//! `setns()`es first: sockets keep the namespace they were created in, so a socket made there can
//! be driven afterwards from any thread or async runtime. We never `fork()` inside a runtime and
//! never change the namespace of a thread we do not own.

use std::fs::{self, File, OpenOptions};
use std::os::fd::AsFd;
use std::path::Path;

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};

use crate::error::{LinuxError, Result};

/// Where named namespaces are pinned (the `ip netns` convention).
pub(crate) const NETNS_RUN_DIR: &str = "/run/netns";

/// An open handle on a named network namespace.
#[derive(Debug)]
pub struct NetNs {
    name: String,
    file: File,
    /// The handle of [`NetNs::current`]: `run` needs no `setns` (nor CAP_SYS_ADMIN) there.
    current: bool,
}

impl NetNs {
    /// Create and pin a new, empty network namespace called `name`.
    pub fn create(name: &str) -> Result<NetNs> {
        validate_name(name)?;
        let dir = Path::new(NETNS_RUN_DIR);
        fs::create_dir_all(dir).map_err(|e| LinuxError::io("create directory", dir, e))?;
        let path = dir.join(name);
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| LinuxError::io("create namespace pin file", &path, e))?;
        let name_owned = name.to_string();
        let path_for_thread = path.clone();
        let pinned = std::thread::spawn(move || -> Result<()> {
            unshare(CloneFlags::CLONE_NEWNET).map_err(|source| LinuxError::Netns {
                name: name_owned.clone(),
                op: "unshare(CLONE_NEWNET)",
                source,
            })?;
            mount(
                Some("/proc/thread-self/ns/net"),
                &path_for_thread,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|source| LinuxError::Netns {
                name: name_owned,
                op: "bind-mount",
                source,
            })
        })
        .join()
        .unwrap_or_else(|_| {
            Err(LinuxError::Unsupported(format!(
                "namespace {name}: creator thread panicked"
            )))
        });
        if let Err(e) = pinned {
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        NetNs::open(name)
    }

    /// Open an existing named namespace.
    pub fn open(name: &str) -> Result<NetNs> {
        validate_name(name)?;
        let path = Path::new(NETNS_RUN_DIR).join(name);
        let file = File::open(&path).map_err(|e| LinuxError::io("open namespace", &path, e))?;
        Ok(NetNs {
            name: name.to_string(),
            file,
            current: false,
        })
    }

    /// The namespace the calling thread is in (`/proc/thread-self/ns/net`), named `current`:
    /// lets code written for a named namespace (captures, sockets) work where the process runs.
    pub fn current() -> Result<NetNs> {
        let path = Path::new("/proc/thread-self/ns/net");
        let file = File::open(path).map_err(|e| LinuxError::io("open namespace", path, e))?;
        Ok(NetNs {
            name: "current".to_string(),
            file,
            current: true,
        })
    }

    /// The namespace's name (`current` for [`NetNs::current`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace file, e.g. for `IFLA_NET_NS_FD` when moving a link into it.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Run `f` on a dedicated thread inside this namespace and return its result.
    pub fn run<F, T>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    if self.current {
                        return Ok(f());
                    }
                    setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|source| {
                        LinuxError::Netns {
                            name: self.name.clone(),
                            op: "setns",
                            source,
                        }
                    })?;
                    Ok(f())
                })
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// Unpin and remove a named namespace. The kernel frees it once no process or socket uses it.
    pub fn delete(name: &str) -> Result<()> {
        validate_name(name)?;
        let path = Path::new(NETNS_RUN_DIR).join(name);
        match umount2(&path, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(source) => {
                return Err(LinuxError::Netns {
                    name: name.to_string(),
                    op: "umount",
                    source,
                });
            }
        }
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(LinuxError::io("remove namespace pin file", path, e)),
        }
    }

    /// Names of pinned namespaces that start with `prefix`.
    pub fn list_with_prefix(prefix: &str) -> Result<Vec<String>> {
        let dir = Path::new(NETNS_RUN_DIR);
        let rd = match fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(LinuxError::io("list", dir, e)),
        };
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with(prefix))
            .collect();
        names.sort();
        Ok(names)
    }
}

fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(LinuxError::Unsupported(format!(
            "invalid namespace name {name:?}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_path_like_names() {
        assert!(validate_name("../etc").is_err());
        assert!(validate_name("").is_err());
        assert!(validate_name("idlereset-abc-app").is_ok());
    }
}
