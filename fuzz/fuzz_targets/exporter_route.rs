//! Fuzz target `exporter_route`: `idlereset_core::fuzzing::exporter_route` must never panic, whatever the bytes.
//! Seeds: `fuzz/corpus-seeds/exporter_route/` (also run by `cargo test -p idlereset-core --test fuzz_seeds`).
//!
//! Run (no nightly toolchain needed): `RUSTC_BOOTSTRAP=1 cargo fuzz run exporter_route fuzz/corpus-seeds/exporter_route`
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| idlereset_core::fuzzing::exporter_route(data));
