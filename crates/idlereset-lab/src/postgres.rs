//! A real PostgreSQL server as the lab's database.
//!
//! The built-in line-protocol server (`server.rs`) is enough to show a reset, but a libpq
//! setting is only verified when a real libpq client talks to a real PostgreSQL. So where the
//! PostgreSQL binaries are installed, [`Postgres::start`] creates a throw-away cluster under a
//! temporary directory (`initdb`, trust authentication for the lab's subnets only) and starts
//! `postgres` inside the `db` namespace, listening on every address of that namespace (only
//! the lab's 198.18.0.0/15 and 2001:db8::/32 addresses exist there). Dropping the handle stops
//! the server (fast shutdown, then SIGKILL) and removes the directory.
//!
//! PostgreSQL refuses to run as root, so `initdb` and `postgres` run as the `postgres` system
//! user (or `idlereset-pg`; `.ci/install-deps` creates one when neither exists). The binaries
//! are looked up on `PATH`, then under `/usr/lib/postgresql/<version>/bin` (Debian's layout,
//! newest version first).

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use idlereset_linux::NetNs;

use crate::error::{LabError, Result};

/// System users the server may run as, in order of preference.
pub const USERS: [&str; 2] = ["postgres", "idlereset-pg"];

/// The PostgreSQL programs the lab needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binaries {
    /// Path of the `initdb` program.
    pub initdb: PathBuf,
    /// Path of the `postgres` server program.
    pub postgres: PathBuf,
}

impl Binaries {
    /// Find `initdb` and `postgres` (same directory) on `PATH` or under
    /// `/usr/lib/postgresql/*/bin`; `None` when PostgreSQL is not installed.
    pub fn find() -> Option<Binaries> {
        let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        dirs.extend(debian_dirs(Path::new("/usr/lib/postgresql")));
        dirs.into_iter().find_map(|d| {
            let b = Binaries {
                initdb: d.join("initdb"),
                postgres: d.join("postgres"),
            };
            (b.initdb.is_file() && b.postgres.is_file()).then_some(b)
        })
    }
}

/// `<root>/<version>/bin`, newest version first.
fn debian_dirs(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let ver = e.file_name().to_str()?.split('.').next()?.parse().ok()?;
                    Some((ver, e.path().join("bin")))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort_by_key(|b| std::cmp::Reverse(b.0));
    v.into_iter().map(|(_, p)| p).collect()
}

/// The `psql` client, if installed (PATH or Debian's layout).
pub fn find_psql() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(debian_dirs(Path::new("/usr/lib/postgresql")));
    dirs.into_iter()
        .map(|d| d.join("psql"))
        .find(|p| p.is_file())
}

/// How to run the server.
#[derive(Debug, Clone, PartialEq)]
pub struct PgOptions {
    /// TCP port the server listens on.
    pub port: u16,
    /// `idle_session_timeout`: the server closes sessions idle this long. Keepalives do not
    /// count as activity, queries do: the lab's stand-in for a proxy that ignores keepalives.
    pub idle_session_timeout: Option<Duration>,
    /// Where the cluster directory goes (default: the system temp dir). `lab up` puts it in
    /// the lab's run directory, so `lab down --all` removes it even after a crash; a server
    /// whose data directory vanished shuts itself down (PostgreSQL rechecks its lock file).
    pub parent: Option<PathBuf>,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            port: 5432,
            idle_session_timeout: None,
            parent: None,
        }
    }
}

/// A running PostgreSQL server in a lab namespace; stopped and removed on drop.
pub struct Postgres {
    child: Option<Child>,
    dir: PathBuf,
    /// TCP port the server listens on.
    pub port: u16,
    /// The database user to connect as (trust authentication).
    pub user: String,
}

fn system_user() -> Option<nix::unistd::User> {
    USERS
        .iter()
        .find_map(|u| nix::unistd::User::from_name(u).ok().flatten())
}

impl Postgres {
    /// Create a cluster for lab `lab` and start it inside `ns` (the `db` namespace).
    pub fn start(ns: &NetNs, lab: &str, opts: &PgOptions) -> Result<Postgres> {
        let bins = Binaries::find().ok_or_else(|| {
            LabError::lab(
                lab,
                "PostgreSQL is not installed (no initdb/postgres on PATH or under /usr/lib/postgresql/*/bin); run .ci/install-deps or apt-get install postgresql",
            )
        })?;
        let user = system_user().ok_or_else(|| {
            LabError::lab(
                lab,
                format!(
                    "no system user to run PostgreSQL as (tried {}); `useradd --system idlereset-pg` or run .ci/install-deps",
                    USERS.join(", ")
                ),
            )
        })?;
        let dir = opts
            .parent
            .clone()
            .unwrap_or_else(std::env::temp_dir)
            .join(format!("{lab}-pg-{}", opts.port));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| LabError::io("create", &dir, e))?;
        let mut pg = Postgres {
            child: None,
            dir: dir.clone(),
            port: opts.port,
            user: "postgres".into(),
        };
        nix::unistd::chown(&dir, Some(user.uid), Some(user.gid))
            .map_err(|e| LabError::io("chown", &dir, e.into()))?;
        let data = dir.join("data");
        let log_path = dir.join("server.log");
        let status = Command::new(&bins.initdb)
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "-N"])
            .uid(user.uid.as_raw())
            .gid(user.gid.as_raw())
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(log_file(&log_path)?)
            .status()
            .map_err(|e| LabError::io("run", &bins.initdb, e))?;
        if !status.success() {
            return Err(LabError::lab(
                lab,
                format!("initdb failed ({status}): {}", tail(&log_path)),
            ));
        }
        let hba = data.join("pg_hba.conf");
        let mut text = std::fs::read_to_string(&hba).map_err(|e| LabError::io("read", &hba, e))?;
        text.push_str(
            "\n# idlereset lab subnets only\nhost all all 198.18.0.0/15 trust\nhost all all 2001:db8::/32 trust\n",
        );
        std::fs::write(&hba, text).map_err(|e| LabError::io("write", &hba, e))?;
        let mut cmd = Command::new(&bins.postgres);
        cmd.arg("-D")
            .arg(&data)
            .arg("-p")
            .arg(opts.port.to_string())
            .args(["-c", "listen_addresses=*"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", dir.display()))
            .args(["-c", "fsync=off", "-c", "max_connections=30"])
            .args(["-c", "shared_buffers=16MB", "-c", "log_connections=on"])
            .args(["-c", "log_disconnections=on"]);
        if let Some(t) = opts.idle_session_timeout {
            cmd.arg("-c")
                .arg(format!("idle_session_timeout={}", t.as_millis().max(1)));
        }
        cmd.uid(user.uid.as_raw())
            .gid(user.gid.as_raw())
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(&log_path)?);
        // Forked from a thread inside `ns`: the server inherits the namespace.
        let child = ns
            .run(move || cmd.spawn())?
            .map_err(|e| LabError::io("run", &bins.postgres, e))?;
        pg.child = Some(child);
        pg.wait_ready(lab, &data, &log_path)?;
        Ok(pg)
    }

    fn wait_ready(&mut self, lab: &str, data: &Path, log: &Path) -> Result<()> {
        let pid_file = data.join("postmaster.pid");
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                return Err(LabError::lab(
                    lab,
                    format!("postgres exited ({st}): {}", tail(log)),
                ));
            }
            // postmaster.pid's 8th line is the server status; "ready" once it accepts connections.
            if std::fs::read_to_string(&pid_file)
                .is_ok_and(|t| t.lines().nth(7).is_some_and(|l| l.trim() == "ready"))
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(LabError::lab(
            lab,
            format!("postgres not ready after 20 s: {}", tail(log)),
        ))
    }

    /// A libpq connection string for this server at `host` (the db's lab address).
    pub fn conninfo(&self, host: std::net::IpAddr) -> String {
        format!(
            "host={host} port={} user={} dbname=postgres sslmode=disable",
            self.port, self.user
        )
    }

    /// The cluster's directory (data, socket, `server.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server log so far (connections, disconnections, idle-session closes).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

fn log_file(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| LabError::io("open", path, e))
}

/// Last lines of a log, for error messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            // SIGINT = fast shutdown: sessions are ended, the cluster stops cleanly.
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
            let started = Instant::now();
            loop {
                match c.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if started.elapsed() > Duration::from_secs(5) => {
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_layout_newest_first() {
        let root = std::env::temp_dir().join(format!("idlereset-pgtest-{}", std::process::id()));
        for v in ["13", "15", "9.6", "notaversion"] {
            std::fs::create_dir_all(root.join(v).join("bin")).expect("mkdir");
        }
        let dirs = debian_dirs(&root);
        let names: Vec<String> = dirs
            .iter()
            .map(|p| {
                p.parent()
                    .and_then(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(names, ["15", "13", "9.6"]);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn tail_keeps_last_lines() {
        let p = std::env::temp_dir().join(format!("idlereset-pgtail-{}", std::process::id()));
        std::fs::write(&p, "1\n2\n3\n4\n5\n6\n7\n").expect("write");
        assert_eq!(tail(&p), "3 | 4 | 5 | 6 | 7");
        let _ = std::fs::remove_file(&p);
    }
}
