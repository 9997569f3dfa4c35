//! Pure logic of idlereset.
//!
//! Everything in this crate works on bytes, strings and numbers: no syscalls, no sockets, no
//! clocks that cannot be injected. That keeps the analysis, the replay engine and the planner
//! unit-testable on fixtures, and lets the `linux` and `lab` crates stay thin adapters around
//! the kernel.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
pub mod catalog;
pub mod ctwatch;
pub mod duration;
pub mod exporter_collect;
pub mod exporter_http;
pub mod fuzzing;
pub mod host;
pub mod inventory;
pub mod libraries;
pub mod live;
pub mod logs;
pub mod netstat;
pub mod path;
pub mod pcap;
pub mod plan;
pub mod probe;
pub mod replay;
pub mod resets;
pub mod reverse;
pub mod scale;
pub mod socket;
pub mod tally;
pub mod triage;
