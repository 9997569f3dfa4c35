//! The committed seed corpus of every fuzz target this crate owns (`fuzz/corpus-seeds/TARGET/`)
//! runs through the same function the fuzz target calls (`idlereset_core::fuzzing`): a crash
//! found by fuzzing and committed as a seed stays a failing test.
#![allow(clippy::unwrap_used)]

#[path = "../../../fuzz/seed_regression.rs"]
mod seed_regression;
use seed_regression::run;

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

#[test]
fn listen_line_seeds() {
    run("listen_line", idlereset_core::fuzzing::listen_line);
}

#[test]
fn exporter_route_seeds() {
    run("exporter_route", idlereset_core::fuzzing::exporter_route);
}
