//! Which labs exist, who owns them, and how to remove them (also after a crash).
//!
//! Every lab writes `/run/idlereset/labs/NAME.json` *before* it creates any namespace, naming its
//! owner process (pid and start time, so a recycled pid is not mistaken for the owner). A lab is
//! `foreground` (owned by a running `lab reproduce`, `demo` or test, which removes it itself)
//! or `supervised` (`lab up`: owned by a detached supervisor that `lab down` stops).
//! `lab down --all` removes every supervised lab, every lab whose owner is gone, and every
//! `idlereset-*` namespace with no state file; a lab whose foreground owner still runs is left
//! alone unless forced, so parallel runs never tear each other down.
//!
//! Scopes keep concurrent test runs apart: a lab created while `IDLERESET_LAB_SCOPE` is set
//! records that scope, and a sweep run with a scope only looks at labs of the same scope (and
//! never at orphan namespaces, whose scope is unknown). A sweep without a scope leaves scoped
//! labs with a live owner alone (a test is using them) unless forced.
//!
//! Removing a lab first stops every process running inside its namespaces (see `procs`), then
//! deletes the namespaces, then the state and runtime files.

use std::path::{Path, PathBuf};

use idlereset_linux::NetNs;
use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};
use crate::procs::{self, StoppedProcess};
use crate::topology::PREFIX;

/// Directory of the labs' state files (`NAME.json`) and run directories.
pub(crate) const STATE_DIR: &str = "/run/idlereset/labs";

/// Environment variable naming the scope of labs this process creates and sweeps.
pub const SCOPE_ENV: &str = "IDLERESET_LAB_SCOPE";

/// The scope from [`SCOPE_ENV`], if set and not empty.
pub fn current_scope() -> Option<String> {
    std::env::var(SCOPE_ENV).ok().filter(|s| !s.is_empty())
}

/// Who owns a lab's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ownership {
    /// The creating process itself (a `reproduce` run, a test) removes the lab when it ends.
    Foreground,
    /// A supervisor process (`lab up`) runs the lab's workload; `lab down` stops it.
    Supervised,
}

/// The persisted record of a lab.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabRecord {
    /// The lab's name.
    pub name: String,
    /// PID of the process that owns the lab.
    pub owner_pid: u32,
    /// Start time of the owner (clock ticks since boot, see [`process_start_time`]), so a
    /// reused PID is not taken for the owner.
    pub owner_start: u64,
    /// Foreground or supervised.
    pub ownership: Ownership,
    /// The lab's host names (its namespaces are `NAME-HOST`).
    pub hosts: Vec<String>,
    /// When the lab was recorded, milliseconds since the Unix epoch.
    pub created_unix_ms: u128,
    /// Free-form description of how it was configured (JSON of the spec).
    pub spec: serde_json::Value,
    /// The [`SCOPE_ENV`] scope the lab was created in (test runs), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// Path of the lab's state file, `/run/idlereset/labs/NAME.json`.
pub fn state_path(name: &str) -> PathBuf {
    Path::new(STATE_DIR).join(format!("{name}.json"))
}

/// Directory for a lab's runtime files (supervisor log, app log, pool statistics).
pub fn run_dir(name: &str) -> PathBuf {
    Path::new(STATE_DIR).join(name)
}

impl LabRecord {
    /// Write the record atomically (temporary file, then rename).
    ///
    /// # Errors
    /// [`LabError::Io`] when the directory or file cannot be written, [`LabError::Lab`] when the
    /// record does not serialise.
    pub fn save(&self) -> Result<()> {
        std::fs::create_dir_all(STATE_DIR).map_err(|e| LabError::io("create", STATE_DIR, e))?;
        let p = state_path(&self.name);
        let tmp = p.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(self)
            .map_err(|e| LabError::lab(&self.name, e.to_string()))?;
        std::fs::write(&tmp, body).map_err(|e| LabError::io("write", &tmp, e))?;
        std::fs::rename(&tmp, &p).map_err(|e| LabError::io("rename", &p, e))
    }

    /// Read the record of lab `name`.
    ///
    /// # Errors
    /// [`LabError::Io`] when the state file cannot be read, [`LabError::Lab`] when it is corrupt.
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

/// What removing one lab did.
#[derive(Debug, Default, Serialize)]
pub struct Removal {
    /// Processes that ran inside the lab's namespaces and were stopped.
    pub stopped_processes: Vec<StoppedProcess>,
}

/// The namespaces of lab `name`: the recorded hosts plus any other `NAME-*` namespace (a crash
/// between steps can leave one the record does not list).
fn lab_namespaces(name: &str, hosts: &[String]) -> Vec<String> {
    let mut all: Vec<String> = hosts.iter().map(|h| format!("{name}-{h}")).collect();
    if let Ok(extra) = NetNs::list_with_prefix(&format!("{name}-")) {
        for ns in extra {
            if !all.contains(&ns) {
                all.push(ns);
            }
        }
    }
    all
}

/// Remove a lab: stop the processes in its namespaces, delete the namespaces, then its state and
/// runtime files. Missing pieces are fine.
pub fn remove(name: &str, hosts: &[String]) -> Result<Removal> {
    let namespaces = lab_namespaces(name, hosts);
    let stopped_processes = procs::stop_in(&namespaces, procs::TERM_GRACE);
    let mut first_err = None;
    for ns in &namespaces {
        if let Err(e) = NetNs::delete(ns) {
            first_err.get_or_insert(LabError::from(e));
        }
    }
    let _ = std::fs::remove_dir_all(run_dir(name));
    let _ = std::fs::remove_file(state_path(name));
    match first_err {
        Some(e) => Err(e),
        None => Ok(Removal { stopped_processes }),
    }
}

/// What `lab down --all` did.
#[derive(Debug, Default, Serialize)]
pub struct Sweep {
    /// Labs removed.
    pub removed_labs: Vec<String>,
    /// Orphan namespaces (no lab record) removed.
    pub removed_namespaces: Vec<String>,
    /// Labs left in place, each with the reason.
    pub skipped: Vec<String>,
    /// Processes that still ran inside removed labs' namespaces and were stopped.
    pub stopped_processes: Vec<StoppedProcess>,
    /// tracefs instances (`idlereset-<pid>`) of dead `watch` / `exporter` processes removed.
    pub removed_tracefs_instances: usize,
}

/// Why a sweep leaves a lab alone, if it does.
fn keep_reason(r: &LabRecord, scope: Option<&str>, force: bool) -> Option<String> {
    let alive = r.owner_alive();
    match (scope, r.scope.as_deref()) {
        (Some(mine), theirs) if theirs != Some(mine) => return Some(String::new()),
        (None, Some(theirs)) if alive && !force => {
            return Some(format!(
                "{}: in use by running process {} in scope {theirs} (--force removes it anyway)",
                r.name, r.owner_pid
            ));
        }
        _ => {}
    }
    (r.ownership == Ownership::Foreground && alive && !force).then(|| {
        format!(
            "{}: in use by running process {} (it cleans up itself; --force removes it anyway)",
            r.name, r.owner_pid
        )
    })
}

/// The lab a namespace `LAB-HOST` belongs to (host names contain no `-`).
fn lab_of_namespace(ns: &str) -> Option<&str> {
    ns.rsplit_once('-').map(|(lab, _)| lab)
}

/// Remove supervised labs, labs whose owner died, and orphan namespaces. With `force`, also
/// labs whose foreground owner still runs. With a scope (see [`current_scope`]), only labs of
/// that scope. Also removes tracefs instances of dead processes.
pub fn sweep(force: bool, stop_supervisor: impl Fn(&LabRecord)) -> Result<Sweep> {
    let scope = current_scope();
    let mut out = Sweep::default();
    for r in &list() {
        if let Some(why) = keep_reason(r, scope.as_deref(), force) {
            if !why.is_empty() {
                out.skipped.push(why);
            }
            continue;
        }
        if r.ownership == Ownership::Supervised && r.owner_alive() {
            stop_supervisor(r);
        }
        let removal = remove(&r.name, &r.hosts)?;
        out.stopped_processes.extend(removal.stopped_processes);
        out.removed_labs.push(r.name.clone());
    }
    if scope.is_none() {
        for ns in NetNs::list_with_prefix(&format!("{PREFIX}-"))? {
            // Checked now, after listing: a lab records itself before it creates a namespace,
            // so a namespace whose lab has a state file (maybe one created since the records
            // were read) is never an orphan.
            let lab = lab_of_namespace(&ns).unwrap_or(&ns);
            if state_path(lab).exists() || out.removed_labs.iter().any(|k| k == lab) {
                continue;
            }
            out.stopped_processes
                .extend(procs::stop_in(std::slice::from_ref(&ns), procs::TERM_GRACE));
            NetNs::delete(&ns)?;
            out.removed_namespaces.push(ns);
        }
    }
    out.removed_tracefs_instances = idlereset_linux::tracefs::find_root()
        .map(|root| idlereset_linux::tracefs::remove_stale(&root))
        .unwrap_or(0);
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

    fn record(scope: Option<&str>, ownership: Ownership, owner_alive: bool) -> LabRecord {
        let pid = std::process::id();
        LabRecord {
            name: "idlereset-abc123".into(),
            owner_pid: if owner_alive { pid } else { u32::MAX },
            owner_start: process_start_time(pid).unwrap_or(0),
            ownership,
            hosts: vec!["app".into()],
            created_unix_ms: 0,
            spec: serde_json::Value::Null,
            scope: scope.map(String::from),
        }
    }

    #[test]
    fn sweeps_never_cross_scopes() {
        use Ownership::*;
        // A scoped sweep only sees its own scope, whatever the owner's state.
        let other = record(Some("b"), Supervised, true);
        assert_eq!(keep_reason(&other, Some("a"), true).as_deref(), Some(""));
        let unscoped = record(None, Supervised, false);
        assert!(keep_reason(&unscoped, Some("a"), false).is_some());
        assert!(keep_reason(&record(Some("a"), Supervised, true), Some("a"), false).is_none());
        // An unscoped sweep leaves a live test's lab alone, but removes a dead one's.
        assert!(keep_reason(&record(Some("t"), Supervised, true), None, false).is_some());
        assert!(keep_reason(&record(Some("t"), Supervised, false), None, false).is_none());
        assert!(keep_reason(&record(Some("t"), Supervised, true), None, true).is_none());
        // Foreground labs of live owners stay unless forced.
        assert!(keep_reason(&record(None, Foreground, true), None, false).is_some());
        assert!(keep_reason(&record(None, Foreground, false), None, false).is_none());
    }

    #[test]
    fn namespaces_map_to_their_lab() {
        assert_eq!(
            lab_of_namespace("idlereset-ab12cd-app"),
            Some("idlereset-ab12cd")
        );
        assert_eq!(
            lab_of_namespace("idlereset-my-lab-r2"),
            Some("idlereset-my-lab")
        );
    }
}
