//! The committed seed corpus of every fuzz target this crate owns (`fuzz/corpus-seeds/TARGET/`)
//! runs through the same function the fuzz target calls (`idlereset_linux::fuzzing`): a crash
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
fn conntrack_typed_seeds() {
    run("conntrack_typed", idlereset_linux::fuzzing::conntrack_typed);
}

#[test]
fn conntrack_fast_seeds() {
    run("conntrack_fast", idlereset_linux::fuzzing::conntrack_fast);
}

#[test]
fn sockdiag_seeds() {
    run("sockdiag", idlereset_linux::fuzzing::sockdiag);
}

#[test]
fn tcp_info_seeds() {
    run("tcp_info", idlereset_linux::fuzzing::tcp_info);
}

#[test]
fn procfs_seeds() {
    run("procfs", idlereset_linux::fuzzing::procfs);
}
