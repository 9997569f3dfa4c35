//! Fuzz target `listen_line`: `idlereset_core::fuzzing::listen_line` must never panic, whatever the bytes.
//! Seeds: `fuzz/corpus-seeds/listen_line/` (also run by `cargo test -p idlereset-core --test fuzz_seeds`).
//!
//! Run (no nightly toolchain needed): `RUSTC_BOOTSTRAP=1 cargo fuzz run listen_line fuzz/corpus-seeds/listen_line`
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| idlereset_core::fuzzing::listen_line(data));
