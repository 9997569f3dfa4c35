//! Fuzz target `duration`: `idlereset_core::fuzzing::duration` must never panic, whatever the bytes.
//! Seeds: `fuzz/corpus-seeds/duration/` (also run by `cargo test -p idlereset-core --test fuzz_seeds`).
//!
//! Run (no nightly toolchain needed): `RUSTC_BOOTSTRAP=1 cargo fuzz run duration fuzz/corpus-seeds/duration`
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| idlereset_core::fuzzing::duration(data));
