//! Does this process hold the capabilities the lab needs?
//!
//! Read from `/proc/self/status` (CapEff) rather than guessed from the uid, so that a root user
//! without CAP_NET_ADMIN (some containers) and a non-root user with file capabilities are both
//! told the truth.

const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;
const CAP_SYS_ADMIN: u32 = 21;

/// Effective capabilities of this process, as a bit set.
pub(crate) fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// The capabilities the lab needs that this process lacks, by name.
pub fn missing_lab_caps() -> Vec<&'static str> {
    let caps = effective_caps();
    [
        (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
        (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
        (CAP_NET_RAW, "CAP_NET_RAW"),
    ]
    .into_iter()
    .filter(|(bit, _)| caps & (1u64 << bit) == 0)
    .map(|(_, name)| name)
    .collect()
}

/// True when the lab can run (network namespaces, netlink configuration, raw capture).
pub(crate) fn can_run_lab() -> bool {
    missing_lab_caps().is_empty()
}

/// Gate for tests that need the real kernel with lab privileges. Returns true when the test can
/// go ahead. Otherwise prints `PRIVILEGED TEST SKIPPED: <name>: ...` to stderr and returns false,
/// or panics when `IDLERESET_REQUIRE_PRIVILEGED=1` (CI that must not skip silently).
pub fn require_or_skip(test_name: &str) -> bool {
    let require = std::env::var("IDLERESET_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1");
    match skip_decision(test_name, can_run_lab(), require) {
        Ok(go) => go,
        Err(msg) => panic!("{msg}"),
    }
}

/// `Ok(true)` go ahead, `Ok(false)` skipped (message printed), `Err` must not skip.
fn skip_decision(test_name: &str, can_run: bool, require: bool) -> Result<bool, String> {
    if can_run {
        return Ok(true);
    }
    let msg = format!(
        "PRIVILEGED TEST SKIPPED: {test_name}: needs CAP_NET_ADMIN/CAP_SYS_ADMIN (run as root)"
    );
    if require {
        return Err(format!("{msg} (IDLERESET_REQUIRE_PRIVILEGED=1)"));
    }
    eprintln!("{msg}");
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_or_fail_without_privileges() {
        assert_eq!(skip_decision("t", true, true), Ok(true));
        assert_eq!(skip_decision("t", false, false), Ok(false));
        let err = skip_decision("my test", false, true).expect_err("required privileges must fail");
        assert!(
            err.starts_with("PRIVILEGED TEST SKIPPED: my test: needs CAP_NET_ADMIN/CAP_SYS_ADMIN"),
            "{err}"
        );
    }
}
