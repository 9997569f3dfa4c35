//! Find the conntrack entry of one flow in the current namespace.

use std::net::SocketAddr;

/// What the lab needs to know of a flow's conntrack entry.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowEntry {
    pub state: String,
    pub timeout_s: u64,
}

/// The entry whose original tuple starts at `client` towards `server_port`, if any.
pub fn lookup_flow(client: SocketAddr, server_port: u16) -> std::io::Result<Option<FlowEntry>> {
    let text = std::fs::read_to_string("/proc/thread-self/net/nf_conntrack")?;
    let sport = format!("sport={}", client.port());
    let dport = format!("dport={server_port}");
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 7 || f[2] != "tcp" {
            continue;
        }
        // ipv4 2 tcp 6 TIMEOUT STATE src=.. dst=.. sport=.. dport=.. (first tuple = original)
        let first_src = f.iter().position(|x| x.starts_with("src="));
        let Some(i) = first_src else { continue };
        let src_ip = f[i]
            .strip_prefix("src=")
            .and_then(|a| a.parse::<std::net::IpAddr>().ok());
        if src_ip == Some(client.ip())
            && f.get(i + 2) == Some(&sport.as_str())
            && f.get(i + 3) == Some(&dport.as_str())
        {
            let timeout_s = f[4].parse().unwrap_or(0);
            return Ok(Some(FlowEntry {
                state: f[5].to_string(),
                timeout_s,
            }));
        }
    }
    Ok(None)
}

/// Number of conntrack entries in the current namespace.
pub fn count_entries() -> std::io::Result<usize> {
    Ok(
        std::fs::read_to_string("/proc/thread-self/net/nf_conntrack")?
            .lines()
            .count(),
    )
}
