//! One idle libpq session with the real `psql`: the literal check of a libpq connection string.
//!
//! `psql` runs inside the `app` namespace with its standard input a pipe, so it holds one
//! connection for as long as the pipe stays open. The session sends `select 'before'`, stays
//! idle (sending `select 'hb'` at the heartbeat period, if any) beyond the path timeout, then
//! sends `select 'after'`. Whatever libpq does with `keepalives_idle` & co. happens on the real
//! socket in between; the result is read from psql's own output and error text
//! ("server closed the connection unexpectedly", "Connection reset by peer", ...).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use idlereset_linux::NetNs;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::error::{LabError, Result};

/// What the session saw.
#[derive(Debug, Clone, PartialEq)]
pub struct PsqlResult {
    /// `select 'after'` answered.
    pub survived: bool,
    /// No answer (and no error) within the reply timeout.
    pub hung: bool,
    /// psql's error text, one line.
    pub error: Option<String>,
    /// Heartbeats answered.
    pub heartbeats: u32,
    /// Idle before the final query (lab seconds).
    pub idle: Duration,
}

struct Session {
    child: Child,
    stdin: ChildStdin,
    stdout: tokio::io::Lines<BufReader<ChildStdout>>,
}

impl Session {
    async fn ask(&mut self, tag: &str, timeout: Duration) -> std::result::Result<bool, bool> {
        let q = format!("select '{tag}';\n");
        if self.stdin.write_all(q.as_bytes()).await.is_err() {
            return Err(false);
        }
        let _ = self.stdin.flush().await;
        match tokio::time::timeout(timeout, self.stdout.next_line()).await {
            Ok(Ok(Some(line))) => Ok(line.trim() == tag),
            Ok(_) => Err(false),
            Err(_) => Err(true),
        }
    }
}

/// Spawn `cmd` from a thread inside `ns`: the program and its sockets live in that namespace
/// (tokio's child reaper stays on the caller's runtime). `program` names it in errors.
pub(crate) fn spawn_in(
    ns: &NetNs,
    mut cmd: tokio::process::Command,
    program: &Path,
) -> Result<Child> {
    let rt = tokio::runtime::Handle::current();
    ns.run(move || {
        let _guard = rt.enter();
        cmd.spawn()
    })?
    .map_err(|e| LabError::io("run", program, e))
}

/// Run the session. `conninfo` is a libpq connection string; `idle` and `heartbeat` are lab
/// durations.
pub async fn session(
    psql: &Path,
    ns: &NetNs,
    conninfo: &str,
    idle: Duration,
    heartbeat: Option<Duration>,
    reply_timeout: Duration,
) -> Result<PsqlResult> {
    let mut cmd = tokio::process::Command::new(psql);
    cmd.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
        .arg(conninfo)
        .env("PGCONNECT_TIMEOUT", "5")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = spawn_in(ns, cmd, psql)?;
    let (Some(stdin), Some(stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(LabError::Config("psql pipes missing".into()));
    };
    let err_task = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s).await;
        s
    });
    let mut s = Session {
        child,
        stdin,
        stdout: BufReader::new(stdout).lines(),
    };
    let mut result = PsqlResult {
        survived: false,
        hung: false,
        error: None,
        heartbeats: 0,
        idle: Duration::ZERO,
    };
    let first = s.ask("before", Duration::from_secs(8)).await;
    if first != Ok(true) {
        let _ = s.child.start_kill();
        let text = err_task.await.unwrap_or_default();
        return Err(LabError::Config(format!(
            "psql could not run the first query ({conninfo}): {}",
            one_line(&text)
        )));
    }
    let mut last = Instant::now();
    let started = Instant::now();
    let mut outcome = None;
    while started.elapsed() < idle {
        let left = idle.saturating_sub(started.elapsed());
        match heartbeat {
            Some(h) if last.elapsed() + left >= h => {
                tokio::time::sleep(h.saturating_sub(last.elapsed())).await;
                match s.ask("hb", reply_timeout).await {
                    Ok(_) => {
                        result.heartbeats += 1;
                        last = Instant::now();
                    }
                    Err(hung) => {
                        outcome = Some(hung);
                        break;
                    }
                }
            }
            _ => tokio::time::sleep(left).await,
        }
    }
    result.idle = started.elapsed();
    let outcome = match outcome {
        Some(hung) => Err(hung),
        None => s.ask("after", reply_timeout).await,
    };
    match outcome {
        Ok(true) => result.survived = true,
        Ok(false) => result.error = Some("unexpected reply".into()),
        Err(hung) => result.hung = hung,
    }
    drop(s.stdin);
    if result.hung {
        let _ = s.child.start_kill();
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), s.child.wait()).await;
    let _ = s.child.start_kill();
    let text = tokio::time::timeout(Duration::from_secs(2), err_task)
        .await
        .ok()
        .and_then(|r| r.ok())
        .unwrap_or_default();
    if !result.survived && result.error.is_none() && !text.trim().is_empty() {
        result.error = Some(one_line(&text));
    }
    Ok(result)
}

fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" / ")
}

/// Outcome name for psql's error text: `reset`, `closed` or `blackhole`.
///
/// libpq reports ECONNRESET on a read as "server closed the connection unexpectedly" (the same
/// words as for a plain EOF), so the text alone cannot tell a middlebox's RST from the server
/// closing. The server end is known, though: PostgreSQL only closes an idle session in the lab
/// through `idle_session_timeout`, and then it sends a FATAL message first, which psql prints.
/// So "idle-session timeout" (or any FATAL) means closed by the server; the bare message means
/// the reset came from the path.
pub fn classify(error: &str) -> &'static str {
    let e = error.to_lowercase();
    if e.contains("idle-session timeout") || e.contains("fatal:") {
        "closed"
    } else if e.contains("timed out") {
        "blackhole"
    } else {
        "reset"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_libpq_errors() {
        assert_eq!(
            classify(
                "psql:<stdin>:2: could not receive data from server: Connection reset by peer"
            ),
            "reset"
        );
        assert_eq!(
            classify(
                "FATAL:  terminating connection due to idle-session timeout / server closed the connection unexpectedly"
            ),
            "closed"
        );
        assert_eq!(
            classify("could not receive data from server: Connection timed out"),
            "blackhole"
        );
        assert_eq!(
            classify("server closed the connection unexpectedly / connection to server was lost"),
            "reset"
        );
        assert_eq!(one_line("a\n\n  b \n"), "a / b");
    }
}
