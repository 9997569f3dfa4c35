//! Fuzz target `inventory`: `idlereset_core::fuzzing::inventory` must never panic, whatever the bytes.
//! Seeds: `fuzz/corpus-seeds/inventory/` (also run by `cargo test -p idlereset-core --test fuzz_seeds`).
//!
//! Run (no nightly toolchain needed): `RUSTC_BOOTSTRAP=1 cargo fuzz run inventory fuzz/corpus-seeds/inventory`
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| idlereset_core::fuzzing::inventory(data));
