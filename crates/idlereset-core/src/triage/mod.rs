//! `triage`: the runbook for resets after idle as one decision.
//!
//! The binary gathers typed [`Evidence`] (logs, packets, probes, the local conntrack table, the
//! OS keepalive settings, which sockets opt in to SO_KEEPALIVE); [`decide`] turns it into a
//! [`Verdict`] (cause, confidence, the chain of evidence, contradictions, what to collect
//! next); [`fix`] turns the verdict into the planner's inventory, the verify command, rollback
//! notes and the alerts that would have caught it. Everything here is pure, so every cause and
//! every contradiction is tested on hand-built evidence.

pub mod evidence;
pub mod fix;
pub mod scope;
#[cfg(test)]
mod tests;
pub mod verdict;

pub use evidence::{
    Evidence, Failure, LocalConntrack, LogEvidence, LogPattern, OsKeepalive, PacketEvidence,
    ProbeEvidence, ProcessSockets, SocketEvidence,
};
pub use verdict::{Bracket, Cause, Confidence, Verdict, decide};
