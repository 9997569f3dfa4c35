//! Packet captures: writing standard pcap files (used by `lab capture`) and, later, reading
//! pcap / pcapng and explaining resets.

pub mod writer;
