//! Test support: a throw-away network namespace `idlereset-test-<random>` that is deleted when
//! the guard drops, also when the test fails (panics unwind through `Drop`).

use std::hash::{BuildHasher, Hasher};

use crate::netns::NetNs;

pub(crate) struct TestNs {
    pub ns: NetNs,
}

impl TestNs {
    /// Create a fresh namespace; with `lo_up`, bring its loopback interface up.
    pub fn new(lo_up: bool) -> TestNs {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let name = format!("idlereset-test-{:012x}", h.finish() & 0xffff_ffff_ffff);
        let ns = NetNs::create(&name).expect("create test namespace");
        let guard = TestNs { ns };
        if lo_up {
            guard
                .ns
                .run(bring_lo_up)
                .expect("enter test namespace")
                .expect("bring lo up");
        }
        guard
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        if let Err(e) = NetNs::delete(self.ns.name()) {
            eprintln!("could not delete test namespace {}: {e}", self.ns.name());
        }
    }
}

/// Set `lo` (index 1 in a new namespace) up with rtnetlink, on a runtime owned by this thread.
fn bring_lo_up() -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| e.to_string())?;
        let task = tokio::spawn(conn);
        let res = handle
            .link()
            .set(rtnetlink::LinkUnspec::new_with_index(1).up().build())
            .execute()
            .await
            .map_err(|e| format!("set lo up: {e}"));
        task.abort();
        res
    })
}
