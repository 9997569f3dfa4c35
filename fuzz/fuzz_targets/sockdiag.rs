//! Fuzz target `sockdiag`: `idlereset_linux::fuzzing::sockdiag` must never panic, whatever the bytes.
//! Seeds: `fuzz/corpus-seeds/sockdiag/` (also run by `cargo test -p idlereset-linux --test fuzz_seeds`).
//!
//! Run (no nightly toolchain needed): `RUSTC_BOOTSTRAP=1 cargo fuzz run sockdiag fuzz/corpus-seeds/sockdiag`
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| idlereset_linux::fuzzing::sockdiag(data));
