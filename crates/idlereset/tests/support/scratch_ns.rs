//! A throw-away network namespace for one test binary, deleted on drop.

#![allow(dead_code)]

use std::hash::{BuildHasher, Hasher};

use idlereset_linux::NetNs;

/// A namespace named `idlereset-test-<random>`; deleted when dropped.
pub struct TestNs(pub NetNs);

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = NetNs::delete(self.0.name());
    }
}

/// Create a fresh namespace (needs CAP_SYS_ADMIN).
pub fn test_ns() -> TestNs {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    TestNs(
        NetNs::create(&format!(
            "idlereset-test-{:012x}",
            h.finish() & 0xffff_ffff_ffff
        ))
        .unwrap_or_else(|e| panic!("creating a test namespace: {e}")),
    )
}
