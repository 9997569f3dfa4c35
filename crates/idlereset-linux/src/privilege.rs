//! Does this process hold the capabilities the lab needs?
//!
//! Read from `/proc/self/status` (CapEff) rather than guessed from the uid, so that a root user
//! without CAP_NET_ADMIN (some containers) and a non-root user with file capabilities are both
//! told the truth.

const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;
const CAP_SYS_ADMIN: u32 = 21;

/// Effective capabilities of this process, as a bit set.
pub fn effective_caps() -> u64 {
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
pub fn can_run_lab() -> bool {
    missing_lab_caps().is_empty()
}
