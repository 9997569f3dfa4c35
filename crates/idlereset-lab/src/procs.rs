//! Processes inside a lab's namespaces, and stopping them when the lab is removed.
//!
//! A namespace is deleted by unmounting its `/run/netns` file, but the kernel keeps it alive for
//! as long as a process runs in it: a PostgreSQL cluster started in `db` would keep serving with
//! its data directory removed. So removal first finds every process whose network namespace is
//! one of the lab's, by namespace identity (the `(device, inode)` of `/proc/PID/ns/net` equals the
//! one of `/run/netns/NAME`), never by process name; sends SIGTERM, waits a grace period, sends
//! SIGKILL to those still alive, and reports them. The calling process itself is never signalled.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Serialize;

use crate::registry::process_start_time;

/// How long processes get to exit after SIGTERM before SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(3);
/// How long to wait for SIGKILLed processes to be gone.
const KILL_WAIT: Duration = Duration::from_secs(2);

/// A process that ran inside a lab namespace when the lab was removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoppedProcess {
    /// Process id.
    pub pid: u32,
    /// `/proc/PID/comm` (informative only: processes are found by namespace).
    pub command: String,
    /// The lab namespace it ran in.
    pub namespace: String,
    /// The last signal it needed: `SIGTERM`, or `SIGKILL` when it ignored the first.
    pub signal: &'static str,
    /// Still present after SIGKILL (e.g. stuck in the kernel); normally false.
    pub survived: bool,
}

/// `(device, inode)` of a namespace file, following symlinks.
fn ns_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Processes (other than this one) running in the named namespaces (`/run/netns/NAME`).
pub fn in_namespaces(namespaces: &[String]) -> Vec<(u32, String)> {
    let ids: Vec<((u64, u64), &String)> = namespaces
        .iter()
        .filter_map(|n| ns_id(&Path::new("/run/netns").join(n)).map(|id| (id, n)))
        .collect();
    if ids.is_empty() {
        return Vec::new();
    }
    let me = std::process::id();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<(u32, String)> = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter_map(|pid| {
            let id = ns_id(&Path::new("/proc").join(pid.to_string()).join("ns/net"))?;
            let (_, ns) = ids.iter().find(|(i, _)| *i == id)?;
            Some((pid, (*ns).clone()))
        })
        .collect();
    found.sort();
    found
}

fn command_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// A process identity that survives pid reuse: pid plus start time.
fn alive(pid: u32, start: Option<u64>) -> bool {
    start.is_some() && process_start_time(pid) == start
}

fn wait_gone(procs: &[(u32, Option<u64>)], within: Duration) {
    let t = Instant::now();
    while procs.iter().any(|&(p, s)| alive(p, s)) && t.elapsed() < within {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stop every process in the named namespaces: SIGTERM, `grace`, then SIGKILL. Returns what was
/// found, with the signal each needed.
pub fn stop_in(namespaces: &[String], grace: Duration) -> Vec<StoppedProcess> {
    let found = in_namespaces(namespaces);
    if found.is_empty() {
        return Vec::new();
    }
    let ids: Vec<(u32, Option<u64>)> = found
        .iter()
        .map(|(p, _)| (*p, process_start_time(*p)))
        .collect();
    let mut out: Vec<StoppedProcess> = found
        .iter()
        .map(|(pid, ns)| StoppedProcess {
            pid: *pid,
            command: command_of(*pid),
            namespace: ns.clone(),
            signal: "SIGTERM",
            survived: false,
        })
        .collect();
    for &(p, _) in &ids {
        let _ = kill(Pid::from_raw(p as i32), Signal::SIGTERM);
    }
    wait_gone(&ids, grace);
    let stubborn: Vec<(u32, Option<u64>)> =
        ids.iter().copied().filter(|&(p, s)| alive(p, s)).collect();
    for &(p, _) in &stubborn {
        let _ = kill(Pid::from_raw(p as i32), Signal::SIGKILL);
    }
    wait_gone(&stubborn, KILL_WAIT);
    for sp in &mut out {
        if let Some(&(p, s)) = stubborn.iter().find(|(p, _)| *p == sp.pid) {
            sp.signal = "SIGKILL";
            sp.survived = alive(p, s);
        }
    }
    // Processes forked meanwhile (a postmaster restarting a backend) get one more round.
    let late: Vec<(u32, String)> = in_namespaces(namespaces)
        .into_iter()
        .filter(|(p, _)| !out.iter().any(|s| s.pid == *p))
        .collect();
    for (pid, ns) in late {
        let start = process_start_time(pid);
        let command = command_of(pid);
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        wait_gone(&[(pid, start)], KILL_WAIT);
        out.push(StoppedProcess {
            pid,
            command,
            namespace: ns,
            signal: "SIGKILL",
            survived: alive(pid, start),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_namespaces_have_no_processes() {
        assert!(in_namespaces(&["idlereset-nonexistent-xyz".into()]).is_empty());
        assert!(stop_in(&[], Duration::from_millis(1)).is_empty());
    }
}
