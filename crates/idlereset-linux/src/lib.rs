//! Everything of idlereset that talks to the Linux kernel.
//!
//! Network namespaces, rtnetlink (links, addresses, routes), nftables and conntrack over
//! nfnetlink, sock_diag, sysctls, AF_PACKET capture and socket options. This is the only crate of
//! the workspace allowed `unsafe`; every block carries a `// SAFETY:` comment. Nothing here
//! shells out to `ip`, `nft`, `tc`, `ss` or `conntrack`.
#![expect(
    unsafe_code,
    reason = "the one crate that makes raw syscalls (AF_PACKET, TCP_INFO, readlinkat, poll)"
)]
#![warn(missing_docs)]

pub mod admission;
pub mod capture;
pub mod conntrack;
pub mod error;
pub mod fuzzing;
pub mod host;
pub mod listen;
pub mod live;
pub mod netns;
pub mod nft;
mod nldump;
pub mod privilege;
pub mod probe;
pub mod procfs;
pub mod rtnl;
pub mod sockdiag;
pub mod sysctl;
pub mod tcpinfo;
#[cfg(test)]
mod testns;
pub mod tracefs;

pub use error::{LinuxError, Result};
pub use netns::NetNs;
