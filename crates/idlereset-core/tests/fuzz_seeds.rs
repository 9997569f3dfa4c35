//! The committed seed corpus of every fuzz target this crate owns (`fuzz/corpus-seeds/TARGET/`)
//! runs through the same function the fuzz target calls (`idlereset_core::fuzzing`): a crash
//! found by fuzzing and committed as a seed stays a failing test.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus-seeds")
        .join(target);
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    assert!(
        out.len() >= 2,
        "{target}: at least two seeds in {}",
        dir.display()
    );
    out
}

fn run(target: &str, f: fn(&[u8])) {
    for (path, bytes) in seeds(target) {
        let r = std::panic::catch_unwind(|| f(&bytes));
        assert!(r.is_ok(), "{target}: {} panicked", path.display());
    }
}

#[test]
fn inventory_seeds() {
    run("inventory", idlereset_core::fuzzing::inventory);
}

#[test]
fn replay_seeds() {
    run("replay", idlereset_core::fuzzing::replay);
}

#[test]
fn duration_seeds() {
    run("duration", idlereset_core::fuzzing::duration);
}

#[test]
fn trace_line_seeds() {
    run("trace_line", idlereset_core::fuzzing::trace_line);
}

#[test]
fn netstat_seeds() {
    run("netstat", idlereset_core::fuzzing::netstat);
}
