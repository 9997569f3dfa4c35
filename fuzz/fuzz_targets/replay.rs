//! Fuzz target `replay`: `idlereset_core::fuzzing::replay` must never panic, whatever the bytes.
//! Seeds: `fuzz/corpus-seeds/replay/` (also run by `cargo test -p idlereset-core --test fuzz_seeds`).
//!
//! Run (no nightly toolchain needed): `RUSTC_BOOTSTRAP=1 cargo fuzz run replay fuzz/corpus-seeds/replay`
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| idlereset_core::fuzzing::replay(data));
