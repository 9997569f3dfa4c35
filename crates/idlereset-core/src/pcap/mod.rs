//! Packet captures: writing standard pcap files (used by `lab capture`), and reading pcap /
//! pcapng to explain resets after idle (`idlereset pcap`).
//!
//! The analysis is a pipeline of small steps, one module each: [`reader`] (records from
//! bytes) → [`link`] (the IP packet in a frame) → [`packet`] (IP/TCP header fields) →
//! [`flow`] (per-flow tracking, idle episodes) → [`events`] (event types and origin
//! verdict) → [`summary`] (idle bracket, catalog candidates, verdict). Nothing here does I/O:
//! the binary reads the file in chunks and feeds [`Analyzer::record`].

pub mod events;
pub mod flow;
pub mod link;
pub mod packet;
pub mod reader;
pub mod summary;
pub mod table;
pub mod writer;

#[cfg(test)]
mod testkit;

use serde::Serialize;

use self::flow::{Analysis, Config, Tracker};
use self::packet::TcpSegment;
use self::reader::{ReadError, Record, Records};

/// What one capture file contained and showed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileAnalysis {
    /// `"pcap"` or `"pcapng"`.
    pub format: &'static str,
    /// Records read.
    pub packets: u64,
    /// Records that were not TCP over IPv4 / IPv6 (ARP, UDP, unknown link types, fragments).
    pub other_packets: u64,
    #[serde(flatten)]
    pub analysis: Analysis,
}

/// Analyses the records of one capture, in file order.
pub struct Analyzer {
    tracker: Tracker,
    packets: u64,
    other: u64,
}

impl Analyzer {
    pub fn new(cfg: Config) -> Analyzer {
        Analyzer {
            tracker: Tracker::new(cfg),
            packets: 0,
            other: 0,
        }
    }

    /// Account one record.
    pub fn record(&mut self, rec: &Record<'_>) {
        self.account(rec.ts_ns, tcp_segment(rec).as_ref());
    }

    /// Account one record already decoded by [`tcp_segment`] (possibly on another thread):
    /// `None` for a record that is not TCP.
    pub fn account(&mut self, ts_ns: u64, seg: Option<&TcpSegment>) {
        self.packets += 1;
        match seg {
            Some(seg) => self.tracker.packet(ts_ns, seg),
            None => self.other += 1,
        }
    }

    /// Records seen so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Summarise all flows.
    pub fn finish(self, format: &'static str) -> FileAnalysis {
        FileAnalysis {
            format,
            packets: self.packets,
            other_packets: self.other,
            analysis: self.tracker.finish(),
        }
    }
}

/// The TCP segment in a record, if it carries one. Stateless, so decoding can run on one
/// thread while another tracks flows.
pub fn tcp_segment(rec: &Record<'_>) -> Option<TcpSegment> {
    link::ip_payload(rec.linktype, rec.data).and_then(packet::parse_tcp)
}

/// Analyse a capture held in memory. Returns what was readable and, if the file is damaged,
/// the error that stopped reading.
pub fn analyse_bytes(data: &[u8], cfg: Config) -> (FileAnalysis, Option<ReadError>) {
    let mut records = Records::new(data);
    let mut analyzer = Analyzer::new(cfg);
    let mut error = None;
    for rec in records.by_ref() {
        match rec {
            Ok(r) => analyzer.record(&r),
            Err(e) => error = Some(e),
        }
    }
    (analyzer.finish(records.format()), error)
}
