//! Fuzz target `tcp_info`: `idlereset_linux::fuzzing::tcp_info` must never panic, whatever the bytes.
//! Seeds: `fuzz/corpus-seeds/tcp_info/` (also run by `cargo test -p idlereset-linux --test fuzz_seeds`).
//!
//! Run (no nightly toolchain needed): `RUSTC_BOOTSTRAP=1 cargo fuzz run tcp_info fuzz/corpus-seeds/tcp_info`
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| idlereset_linux::fuzzing::tcp_info(data));
