#![allow(clippy::unwrap_used)]
//! `logs` on application logs written by the real JVM and Go client libraries in the lab
//! (regenerate with bench/client-matrix.sh; `lib-pq-current-10s.log` is lib/pq's defaults on a
//! 10 s path, shorter than its 15 s keepalive): each failure is counted once, stack traces and
//! `Caused by:` lines attach to the timestamped line above, runs that survived count nothing.

use std::path::PathBuf;
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../idlereset-core/tests/fixtures/client-logs")
        .join(name)
}

fn logs(paths: &[PathBuf]) -> (Output, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_idlereset"))
        .arg("logs")
        .args(paths)
        .arg("--json")
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out, v)
}

/// Each library's failing run: the fixture, the signature `logs` must name, and the text of
/// the library (from the library data) that the record carries.
const FAILURES: &[(&str, &str, &str)] = &[
    (
        "pgjdbc-current.log",
        "pgjdbc-io-error",
        "An I/O error occurred while sending to the backend.",
    ),
    (
        "hikaricp-current.log",
        "hikaricp-validation-failed",
        "Failed to validate connection",
    ),
    (
        "pgx-current.log",
        "connection-reset",
        "read: connection reset by peer",
    ),
    (
        "lib-pq-current-10s.log",
        "connection-reset",
        "read: connection reset by peer",
    ),
];

#[test]
fn each_real_failure_is_one_incident_with_its_stack_trace_attached() {
    for (name, signature, text) in FAILURES {
        let path = fixture(name);
        let raw = std::fs::read_to_string(&path).unwrap();
        assert!(raw.contains(text), "{name} lost the library's text");
        assert!(
            !raw.contains("/work/") && !raw.contains("/home/"),
            "{name}: machine paths"
        );
        let (out, v) = logs(&[path]);
        assert_eq!(out.status.code(), Some(1), "{name}: {v}");
        assert_eq!(v["events"], 1, "{name}: {v}");
        assert_eq!(v["signatures"][*signature], 1, "{name}: {v}");
        // Stack-trace lines have no timestamp of their own: they belong to the record above
        // and are neither skipped nor counted again (PgJDBC's `Caused by: ... Connection
        // reset` is the same failure as its `An I/O error occurred`).
        assert_eq!(v["lines_without_timestamp"], 0, "{name}: {v}");
    }
    let raw = std::fs::read_to_string(fixture("pgjdbc-current.log")).unwrap();
    assert!(raw.contains("\nCaused by: java.net.SocketException: Connection reset"));
    let (_, v) = logs(&[fixture("pgjdbc-current.log")]);
    assert_eq!(v["lines_in_records"], 1, "{v}");
}

#[test]
fn repeated_failures_count_once_each() {
    let d = std::env::temp_dir().join(format!("idlereset-client-logs-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    for (name, signature, _) in FAILURES {
        let raw = std::fs::read_to_string(fixture(name)).unwrap();
        // The same real run again one hour later (Java and Go timestamp styles).
        let later = raw
            .replace("2026-12-01T10:", "2026-12-01T11:")
            .replace("2026/12/01 10:", "2026/12/01 11:");
        assert_ne!(later, raw, "{name}: timestamps not shifted");
        let path = d.join(name);
        std::fs::write(&path, format!("{raw}{later}")).unwrap();
        let (_, v) = logs(&[path]);
        assert_eq!(v["events"], 2, "{name}: {v}");
        assert_eq!(v["signatures"][*signature], 2, "{name}: {v}");
    }
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn survived_runs_log_no_failure() {
    for name in [
        "pgjdbc-planned.log",
        "hikaricp-planned.log",
        "lib-pq-planned.log",
        "lib-pq-current.log",
        "pgx-planned.log",
    ] {
        let (out, v) = logs(&[fixture(name)]);
        assert_eq!(out.status.code(), Some(0), "{name}: {v}");
        assert_eq!(v["events"], 0, "{name}: {v}");
    }
}

#[test]
fn all_four_libraries_together() {
    let paths: Vec<PathBuf> = FAILURES.iter().map(|(n, _, _)| fixture(n)).collect();
    let (_, v) = logs(&paths);
    assert_eq!(v["events"], FAILURES.len(), "{v}");
    assert_eq!(v["signatures"]["connection-reset"], 2, "{v}");
}
