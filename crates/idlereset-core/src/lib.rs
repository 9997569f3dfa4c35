//! Pure logic of idlereset.
//!
//! Everything in this crate works on bytes, strings and numbers: no syscalls, no sockets, no
//! clocks that cannot be injected. That keeps the analysis, the replay engine and the planner
//! unit-testable on fixtures, and lets the `linux` and `lab` crates stay thin adapters around
//! the kernel.
#![forbid(unsafe_code)]

pub mod audit;
pub mod catalog;
pub mod ctwatch;
pub mod duration;
pub mod inventory;
pub mod logs;
pub mod netstat;
pub mod pcap;
pub mod plan;
pub mod probe;
pub mod replay;
pub mod resets;
pub mod scale;
pub mod triage;
