//! idlereset's real-kernel lab.
//!
//! Hosts `app`, `fw` and `db` (plus optional routers) in network namespaces joined by veth
//! pairs, a stateful nftables firewall using the kernel's own conntrack on `fw`, a line-protocol
//! database server on `db` and a pooled workload on `app`. Durations are divided by a time
//! scale so the seeds' incidents replay in seconds. Built on `idlereset-linux`.
#![warn(missing_docs)]

pub mod ct;
pub mod error;
pub mod evidence;
pub mod fault;
pub mod firewall;
pub mod frozen;
pub mod grpc;
pub mod lab;
pub mod postgres;
pub mod procs;
pub mod redis;
pub mod registry;
pub mod reproduce;
pub mod scenario;
pub mod server;
pub mod supervise;
pub mod topology;
pub mod traffic;
pub mod verify;
pub mod workload;

pub use error::{LabError, Result};
pub use lab::{Lab, LabSpec};
