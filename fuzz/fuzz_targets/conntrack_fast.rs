//! Fuzz target `conntrack_fast`: `idlereset_linux::fuzzing::conntrack_fast` must never panic, whatever the bytes.
//! Seeds: `fuzz/corpus-seeds/conntrack_fast/` (also run by `cargo test -p idlereset-linux --test fuzz_seeds`).
//!
//! Run (no nightly toolchain needed): `RUSTC_BOOTSTRAP=1 cargo fuzz run conntrack_fast fuzz/corpus-seeds/conntrack_fast`
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| idlereset_linux::fuzzing::conntrack_fast(data));
