//! A private tracefs instance for the TCP reset tracepoints (`tcp:tcp_receive_reset`,
//! `tcp:tcp_send_reset`), read through its `trace_pipe`.
//!
//! Why an instance: enabling events in the top-level tracefs directory would change what every
//! other tracing user on the host sees (and what they disabled, we would re-enable). An instance
//! (`instances/idlereset-<pid>`) has its own ring buffer, event switches and clock; removing the
//! directory removes all of it. [`TraceInstance`] removes it on drop (the caller handles Ctrl-C by
//! stopping its read loop and dropping the instance), and [`remove_stale`] removes instances left
//! by a process that was killed.
//!
//! The instance's `trace_clock` is set to `mono`, so event timestamps are `CLOCK_MONOTONIC`
//! seconds and can be compared with [`monotonic_s`] (e.g. socket idle samples).
//!
//! tracefs is usually mounted at `/sys/kernel/tracing` (or under debugfs at
//! `/sys/kernel/debug/tracing`); when it is not, [`TraceInstance::create`] says how to mount it
//! rather than mounting it itself.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{LinuxError, Result};

/// Where tracefs may be mounted, in order of preference.
pub(crate) const TRACEFS_ROOTS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// The reset tracepoints `watch` and `exporter` enable.
pub(crate) const RESET_EVENTS: [&str; 2] = ["tcp/tcp_receive_reset", "tcp/tcp_send_reset"];

const PREFIX: &str = "idlereset-";

/// The mounted tracefs root, or an error saying how to mount it (not mounted) or that it is
/// there but not readable (permission: run as root).
pub fn find_root() -> Result<PathBuf> {
    find_root_among(TRACEFS_ROOTS.iter().map(Path::new), |p| {
        fs::metadata(p).map(|m| m.is_dir())
    })
}

/// [`find_root`] over `roots`, with `probe` reading whether `<root>/instances` is a directory.
/// A permission error wins over "not mounted": the message must say what is really wrong.
fn find_root_among<'a>(
    roots: impl Iterator<Item = &'a Path>,
    probe: impl Fn(&Path) -> std::io::Result<bool>,
) -> Result<PathBuf> {
    let mut denied = None;
    for root in roots {
        let instances = root.join("instances");
        match probe(&instances) {
            Ok(true) => return Ok(root.to_path_buf()),
            Ok(false) => {}
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                denied.get_or_insert((instances, e));
            }
            Err(_) => {}
        }
    }
    Err(match denied {
        Some((path, source)) => LinuxError::Io {
            op: "open tracefs (needs root)",
            path,
            source,
        },
        None => LinuxError::Unsupported(
            "tracefs is not mounted (no /sys/kernel/tracing/instances); mount it with \
             `mount -t tracefs nodev /sys/kernel/tracing` (needs root)"
                .into(),
        ),
    })
}

/// CLOCK_MONOTONIC in seconds, the clock of the instance's timestamps.
pub fn monotonic_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// A tracefs instance owned by this process, removed on drop.
#[derive(Debug)]
pub struct TraceInstance {
    dir: PathBuf,
    pipe: Option<File>,
    buf: Vec<u8>,
}

fn write_file(path: &Path, value: &str) -> Result<()> {
    fs::write(path, value).map_err(|e| LinuxError::io("write", path, e))
}

impl TraceInstance {
    /// Create `instances/idlereset-<pid>` with the mono clock and `events` (`"tcp/tcp_send_reset"`)
    /// enabled, and open its `trace_pipe`.
    pub fn create(events: &[&str]) -> Result<TraceInstance> {
        let root = find_root()?;
        remove_stale(&root);
        let dir = root
            .join("instances")
            .join(format!("{PREFIX}{}", std::process::id()));
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(LinuxError::io("create tracefs instance", &dir, e)),
        }
        let mut inst = TraceInstance {
            dir,
            pipe: None,
            buf: Vec::with_capacity(8192),
        };
        // Older kernels may lack "mono"; the default clock still orders events.
        let _ = write_file(&inst.dir.join("trace_clock"), "mono");
        for ev in events {
            let enable = inst.dir.join("events").join(ev).join("enable");
            if !enable.exists() {
                return Err(LinuxError::Unsupported(format!(
                    "this kernel has no tracepoint {ev} ({} missing)",
                    enable.display()
                )));
            }
            write_file(&enable, "1")?;
        }
        let pipe_path = inst.dir.join("trace_pipe");
        let pipe = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&pipe_path)
            .map_err(|e| LinuxError::io("open", &pipe_path, e))?;
        inst.pipe = Some(pipe);
        Ok(inst)
    }

    /// The instance directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Wait up to `timeout` for trace lines and hand each complete line to `on_line`. Returns
    /// the number of lines delivered (0 on timeout).
    pub(crate) fn read_lines(
        &mut self,
        timeout: Duration,
        mut on_line: impl FnMut(&str),
    ) -> Result<usize> {
        let Some(pipe) = self.pipe.as_mut() else {
            return Ok(0);
        };
        let mut pfd = libc::pollfd {
            fd: pipe.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: `pfd` is a valid, initialised pollfd for an fd we own for the duration of the
        // call; nfds is 1, matching the single struct passed.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n <= 0 {
            return Ok(0);
        }
        let mut chunk = [0u8; 16384];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) => break,
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => break,
                Err(e) => {
                    return Err(LinuxError::io("read", self.dir.join("trace_pipe"), e));
                }
            }
        }
        let mut delivered = 0;
        let mut start = 0;
        while let Some(nl) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&self.buf[start..start + nl]);
            on_line(&line);
            delivered += 1;
            start += nl + 1;
        }
        self.buf.drain(..start);
        // A line longer than any tracepoint line is garbage; do not let it grow without bound.
        if self.buf.len() > 1 << 20 {
            self.buf.clear();
        }
        Ok(delivered)
    }

    /// Disable the events and remove the instance now (also done on drop).
    pub fn remove(mut self) -> Result<()> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<()> {
        self.pipe = None; // the instance cannot be removed while its pipe is open
        if !self.dir.exists() {
            return Ok(());
        }
        // rmdir of an instance disables and frees everything in it.
        fs::remove_dir(&self.dir)
            .map_err(|e| LinuxError::io("remove tracefs instance", &self.dir, e))
    }
}

impl Drop for TraceInstance {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

/// Remove `instances/idlereset-<pid>` directories whose process no longer exists.
pub fn remove_stale(root: &Path) -> usize {
    let Ok(rd) = fs::read_dir(root.join("instances")) else {
        return 0;
    };
    let mut removed = 0;
    for ent in rd.flatten() {
        let name = ent.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists() && fs::remove_dir(ent.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn roots() -> [&'static Path; 2] {
        [Path::new("/a"), Path::new("/b")]
    }

    #[test]
    fn permission_is_reported_as_permission_not_as_unmounted() {
        let denied = |_: &Path| Err(std::io::Error::from(ErrorKind::PermissionDenied));
        let e = find_root_among(roots().into_iter(), denied).unwrap_err();
        assert!(e.is_permission_denied(), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("needs root") && !msg.contains("not mounted"),
            "{msg}"
        );
    }

    #[test]
    fn missing_is_reported_as_unmounted_and_a_later_root_is_found() {
        let missing = |_: &Path| Err(std::io::Error::from(ErrorKind::NotFound));
        let e = find_root_among(roots().into_iter(), missing).unwrap_err();
        assert!(e.to_string().contains("not mounted"), "{e}");
        let second = |p: &Path| Ok(p.starts_with("/b"));
        assert_eq!(
            find_root_among(roots().into_iter(), second).unwrap(),
            Path::new("/b")
        );
    }

    #[test]
    fn instance_lifecycle_captures_a_reset() {
        if !crate::privilege::require_or_skip("tracefs instance_lifecycle_captures_a_reset") {
            return;
        }
        if find_root().is_err() {
            // CI mounts tracefs before the suite; on a bare machine say why and mount it.
            let _ = nix::mount::mount(
                Some("nodev"),
                "/sys/kernel/tracing",
                Some("tracefs"),
                nix::mount::MsFlags::empty(),
                None::<&str>,
            );
        }
        let mut inst = TraceInstance::create(&RESET_EVENTS).unwrap();
        let dir = inst.dir().to_path_buf();
        assert!(dir.exists());
        assert_eq!(
            fs::read_to_string(dir.join("events/tcp/tcp_send_reset/enable"))
                .unwrap()
                .trim(),
            "1"
        );
        // A connect to a closed loopback port makes the kernel send a reset (no socket).
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let _ = std::net::TcpStream::connect(("127.0.0.1", port));
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while std::time::Instant::now() < deadline && seen.is_empty() {
            inst.read_lines(Duration::from_millis(200), |l| {
                if l.contains(&format!(":{port}")) {
                    seen.push(l.to_string());
                }
            })
            .unwrap();
        }
        assert!(!seen.is_empty(), "no tcp_send_reset for port {port}");
        let ev = idlereset_core::resets::parse_trace_line(&seen[0])
            .unwrap()
            .unwrap();
        // No socket: the kernel reverses the SYN's tuple, so the closed port is the local end.
        assert_eq!(ev.local.port(), port, "{}", seen[0]);
        // Timestamps are CLOCK_MONOTONIC.
        assert!(
            (monotonic_s() - ev.ts_s).abs() < 5.0,
            "{} vs {}",
            ev.ts_s,
            monotonic_s()
        );
        inst.remove().unwrap();
        assert!(!dir.exists(), "instance not removed");
    }
}
