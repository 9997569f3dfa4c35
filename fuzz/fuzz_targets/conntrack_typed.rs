//! Fuzz target `conntrack_typed`: `idlereset_linux::fuzzing::conntrack_typed` must never panic, whatever the bytes.
//! Seeds: `fuzz/corpus-seeds/conntrack_typed/` (also run by `cargo test -p idlereset-linux --test fuzz_seeds`).
//!
//! Run (no nightly toolchain needed): `RUSTC_BOOTSTRAP=1 cargo fuzz run conntrack_typed fuzz/corpus-seeds/conntrack_typed`
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| idlereset_linux::fuzzing::conntrack_typed(data));
