//! Sysctls read and written through `/proc/sys`, inside a chosen network namespace.
//!
//! `/proc/sys/net/*` shows the namespace of the thread that opens the file, so the namespace's
//! own values are reached by opening the file on a thread that has entered it (`NetNs::run`).

use std::path::PathBuf;

use crate::error::{LinuxError, Result};
use crate::netns::NetNs;

/// `/proc/sys` path of a dotted sysctl name (`net.ipv4.tcp_keepalive_time`).
pub(crate) fn path_of(name: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(name.replace('.', "/"))
}

/// Read a sysctl in the current thread's namespace.
pub fn read(name: &str) -> Result<String> {
    let p = path_of(name);
    std::fs::read_to_string(&p)
        .map(|s| s.trim().to_string())
        .map_err(|e| LinuxError::io("read sysctl", p, e))
}

/// Write a sysctl in the current thread's namespace.
pub fn write(name: &str, value: &str) -> Result<()> {
    let p = path_of(name);
    std::fs::write(&p, value).map_err(|e| LinuxError::io("write sysctl", p, e))
}

/// Write several sysctls inside `ns`.
pub fn write_in(ns: &NetNs, settings: &[(&str, String)]) -> Result<()> {
    ns.run(|| settings.iter().try_for_each(|(k, v)| write(k, v)))?
}
