//! Shared by the `fuzz_seeds` tests of the crates that own fuzzed parsers: every committed seed
//! of a target (`fuzz/corpus-seeds/TARGET/`) through the function its fuzz target calls.

use std::path::PathBuf;

/// The seed files of `target`, sorted; at least two, so an empty or missing directory fails.
pub fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus-seeds")
        .join(target);
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    assert!(
        out.len() >= 2,
        "{target}: at least two seeds in {}",
        dir.display()
    );
    out
}

/// Feed every seed of `target` to `f`; fail naming the seed that panicked.
pub fn run(target: &str, f: fn(&[u8])) {
    for (path, bytes) in seeds(target) {
        let r = std::panic::catch_unwind(|| f(&bytes));
        assert!(r.is_ok(), "{target}: {} panicked", path.display());
    }
}
