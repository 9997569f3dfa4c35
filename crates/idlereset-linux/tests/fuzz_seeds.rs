//! The committed seed corpus of every fuzz target this crate owns (`fuzz/corpus-seeds/TARGET/`)
//! runs through the same function the fuzz target calls (`idlereset_linux::fuzzing`): a crash
//! found by fuzzing and committed as a seed stays a failing test.
#![allow(clippy::unwrap_used)]

#[path = "../../../fuzz/seed_regression.rs"]
mod seed_regression;
use seed_regression::run;

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
