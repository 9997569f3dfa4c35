//! Fuzz target `procfs`: `idlereset_linux::fuzzing::procfs` must never panic, whatever the bytes.
//! Seeds: `fuzz/corpus-seeds/procfs/` (also run by `cargo test -p idlereset-linux --test fuzz_seeds`).
//!
//! Run (no nightly toolchain needed): `RUSTC_BOOTSTRAP=1 cargo fuzz run procfs fuzz/corpus-seeds/procfs`
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| idlereset_linux::fuzzing::procfs(data));
