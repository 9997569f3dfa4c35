//! Fuzz target `netstat`: `idlereset_core::fuzzing::netstat` must never panic, whatever the bytes.
//! Seeds: `fuzz/corpus-seeds/netstat/` (also run by `cargo test -p idlereset-core --test fuzz_seeds`).
//!
//! Run (no nightly toolchain needed): `RUSTC_BOOTSTRAP=1 cargo fuzz run netstat fuzz/corpus-seeds/netstat`
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| idlereset_core::fuzzing::netstat(data));
