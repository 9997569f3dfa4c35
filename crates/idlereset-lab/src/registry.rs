//! Which labs exist, who owns them, and how to remove them (also after a crash).
//!
//! Every lab writes `/run/idlereset/labs/NAME.json` *before* it creates any namespace, naming its
//! owner process (pid and start time, so a recycled pid is not mistaken for the owner). A lab is
//! `foreground` (owned by a running `lab reproduce`, `demo` or test, which removes it itself)
//! or `supervised` (`lab up`: owned by a detached supervisor that `lab down` stops).
//! `lab down --all` removes every supervised lab, every lab whose owner is gone, and every
//! `idlereset-*` namespace with no state file; a lab whose foreground owner still runs is left
//! alone unless forced, so parallel runs never tear each other down.

use std::path::{Path, PathBuf};

use idlereset_linux::NetNs;
use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};
use crate::topology::PREFIX;

pub const STATE_DIR: &str = "/run/idlereset/labs";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ownership {
    Foreground,
    Supervised,
}

/// The persisted record of a lab.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabRecord {
    pub name: String,
    pub owner_pid: u32,
    pub owner_start: u64,
    pub ownership: Ownership,
    pub hosts: Vec<String>,
    pub created_unix_ms: u128,
    /// Free-form description of how it was configured (JSON of the spec).
    pub spec: serde_json::Value,
}

pub fn state_path(name: &str) -> PathBuf {
    Path::new(STATE_DIR).join(format!("{name}.json"))
}

/// Directory for a lab's runtime files (supervisor log, app log, pool statistics).
pub fn run_dir(name: &str) -> PathBuf {
    Path::new(STATE_DIR).join(name)
}

impl LabRecord {
    pub fn save(&self) -> Result<()> {
        std::fs::create_dir_all(STATE_DIR).map_err(|e| LabError::io("create", STATE_DIR, e))?;
        let p = state_path(&self.name);
        let tmp = p.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(self)
            .map_err(|e| LabError::lab(&self.name, e.to_string()))?;
        std::fs::write(&tmp, body).map_err(|e| LabError::io("write", &tmp, e))?;
        std::fs::rename(&tmp, &p).map_err(|e| LabError::io("rename", &p, e))
    }

    pub fn load(name: &str) -> Result<LabRecord> {
        let p = state_path(name);
        let body = std::fs::read(&p).map_err(|e| LabError::io("read lab state", &p, e))?;
        serde_json::from_slice(&body)
            .map_err(|e| LabError::lab(name, format!("corrupt state {}: {e}", p.display())))
    }

    /// Is the owner process still the one that created the lab?
    pub fn owner_alive(&self) -> bool {
        process_start_time(self.owner_pid) == Some(self.owner_start)
    }
}

/// Make the current process the owner of lab `name` (the `lab up` supervisor takes over).
pub fn adopt(name: &str, ownership: Ownership) -> Result<LabRecord> {
    let mut rec = LabRecord::load(name)?;
    let pid = std::process::id();
    rec.owner_pid = pid;
    rec.owner_start = process_start_time(pid).unwrap_or(0);
    rec.ownership = ownership;
    rec.save()?;
    Ok(rec)
}

/// All lab records on this machine.
pub fn list() -> Vec<LabRecord> {
    let Ok(rd) = std::fs::read_dir(STATE_DIR) else {
        return Vec::new();
    };
    let mut v: Vec<LabRecord> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().into_string().ok()?;
            let name = n.strip_suffix(".json")?;
            LabRecord::load(name).ok()
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// Start time (clock ticks since boot) of a live process, from /proc/PID/stat. A zombie (exited,
/// not yet reaped: a detached supervisor's parent may reap late) counts as gone.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command may contain spaces and parentheses: fields start after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Remove a lab's namespaces, state and runtime files. Missing pieces are fine.
pub fn remove(name: &str, hosts: &[String]) -> Result<()> {
    let mut first_err = None;
    for h in hosts {
        if let Err(e) = NetNs::delete(&format!("{name}-{h}")) {
            first_err.get_or_insert(LabError::from(e));
        }
    }
    // Namespaces of this lab not listed in the record (a crash between steps).
    if let Ok(extra) = NetNs::list_with_prefix(&format!("{name}-")) {
        for ns in extra {
            if let Err(e) = NetNs::delete(&ns) {
                first_err.get_or_insert(LabError::from(e));
            }
        }
    }
    let _ = std::fs::remove_dir_all(run_dir(name));
    let _ = std::fs::remove_file(state_path(name));
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// What `lab down --all` did.
#[derive(Debug, Default, Serialize)]
pub struct Sweep {
    pub removed_labs: Vec<String>,
    pub removed_namespaces: Vec<String>,
    pub skipped: Vec<String>,
}

/// Remove supervised labs, labs whose owner died, and orphan namespaces. With `force`, also
/// labs whose foreground owner still runs.
pub fn sweep(force: bool, stop_supervisor: impl Fn(&LabRecord)) -> Result<Sweep> {
    let mut out = Sweep::default();
    let records = list();
    for r in &records {
        let alive = r.owner_alive();
        if r.ownership == Ownership::Foreground && alive && !force {
            out.skipped.push(format!(
                "{}: in use by running process {} (it cleans up itself; --force removes it anyway)",
                r.name, r.owner_pid
            ));
            continue;
        }
        if r.ownership == Ownership::Supervised && alive {
            stop_supervisor(r);
        }
        remove(&r.name, &r.hosts)?;
        out.removed_labs.push(r.name.clone());
    }
    let known: Vec<&str> = records.iter().map(|r| r.name.as_str()).collect();
    for ns in NetNs::list_with_prefix(&format!("{PREFIX}-"))? {
        let owned_by_skipped = known.iter().any(|k| ns.starts_with(&format!("{k}-")))
            && !out
                .removed_labs
                .iter()
                .any(|k| ns.starts_with(&format!("{k}-")));
        if owned_by_skipped {
            continue;
        }
        if out
            .removed_labs
            .iter()
            .any(|k| ns.starts_with(&format!("{k}-")))
        {
            continue;
        }
        NetNs::delete(&ns)?;
        out.removed_namespaces.push(ns);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_readable_and_stable() {
        let me = std::process::id();
        let a = process_start_time(me);
        assert!(a.is_some());
        assert_eq!(a, process_start_time(me));
        assert_eq!(process_start_time(u32::MAX), None);
    }
}
