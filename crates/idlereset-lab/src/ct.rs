//! Find the conntrack entry of one flow in the current namespace, over ctnetlink.

use std::net::SocketAddr;

use idlereset_linux::conntrack::{self, Family};

/// What the lab needs to know of a flow's conntrack entry.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowEntry {
    /// conntrack's TCP state name (e.g. `ESTABLISHED`); empty when the entry carries none.
    pub state: String,
    /// Seconds left on the entry's timer before conntrack expires it.
    pub timeout_s: u64,
    /// Packets in both directions (with accounting on).
    pub packets: Option<u64>,
}

/// The entry whose original tuple starts at `client` towards `server_port`, if any.
pub fn lookup_flow(
    client: SocketAddr,
    server_port: u16,
) -> idlereset_linux::Result<Option<FlowEntry>> {
    let family = if client.is_ipv6() {
        Family::V6
    } else {
        Family::V4
    };
    let mut found = None;
    conntrack::dump(family, |e| {
        if e.proto == 6
            && e.orig.src == client.ip()
            && e.orig.sport == Some(client.port())
            && e.orig.dport == Some(server_port)
        {
            found = Some(FlowEntry {
                state: e
                    .tcp_state
                    .map(|s| s.name().to_string())
                    .unwrap_or_default(),
                timeout_s: u64::from(e.timeout_s),
                packets: e.packets(),
            });
        }
    })?;
    Ok(found)
}

/// Number of conntrack entries in the current namespace.
pub fn count_entries() -> idlereset_linux::Result<usize> {
    Ok(conntrack::count()?.entries as usize)
}
