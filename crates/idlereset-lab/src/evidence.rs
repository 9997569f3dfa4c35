//! Evidence the lab collects while a scenario runs: the flow's TCP packets as seen on chosen
//! links (AF_PACKET, parsed with core's pcap link and TCP parsers) and the firewall's conntrack entry for the flow,
//! sampled over time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use idlereset_core::pcap::link::ip_payload;
use idlereset_core::pcap::packet::{ACK, FIN, RST, SYN, parse_tcp};
use idlereset_core::pcap::writer::PcapWriter;
use idlereset_linux::NetNs;
use idlereset_linux::capture::Capture;
use serde::Serialize;

use crate::error::Result;

const MAX_PACKETS: usize = 50_000;

/// One TCP packet of the flow as seen on a link.
#[derive(Debug, Clone, Serialize)]
pub struct SeenPacket {
    /// Seconds since the scenario started (lab time).
    pub t: f64,
    /// Which capture point (`app`, `fw->db`).
    pub point: &'static str,
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// TTL (IPv4) or hop limit (IPv6).
    pub ttl: u8,
    /// SYN flag set.
    pub syn: bool,
    /// ACK flag set.
    pub ack: bool,
    /// FIN flag set.
    pub fin: bool,
    /// RST flag set.
    pub rst: bool,
    /// TCP payload length, bytes.
    pub payload: usize,
    /// TCP sequence number (absolute, as on the wire).
    pub seq: u32,
}

/// Parse a captured frame (`linktype` as the capture reports it) into a TCP packet of interest
/// (`port` on either side), with the same link and TCP parsers `idlereset pcap` uses.
pub fn parse_frame(
    linktype: u32,
    data: &[u8],
    port: u16,
    t: f64,
    point: &'static str,
) -> Option<SeenPacket> {
    let seg = parse_tcp(ip_payload(linktype, data)?)?;
    if seg.sport != port && seg.dport != port {
        return None;
    }
    Some(SeenPacket {
        t,
        point,
        src: SocketAddr::new(seg.src, seg.sport),
        dst: SocketAddr::new(seg.dst, seg.dport),
        ttl: seg.ttl,
        syn: seg.has(SYN),
        ack: seg.has(ACK),
        fin: seg.has(FIN),
        rst: seg.has(RST),
        payload: seg.payload_len as usize,
        seq: seg.seq,
    })
}

/// Packet captures running on threads, collecting the flow's packets in memory.
pub struct FlowCapture {
    stop: Arc<AtomicBool>,
    packets: Arc<Mutex<Vec<SeenPacket>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl FlowCapture {
    /// Capture `(namespace, link, label)` points for TCP `port`. With `pcap_dir`, every frame
    /// of each point is also written to `<dir>/<label>.pcap` (label `fw->db` becomes `fw-db`).
    pub fn start(
        points: Vec<(&NetNs, String, &'static str)>,
        port: u16,
        t0: Instant,
        pcap_dir: Option<&std::path::Path>,
    ) -> Result<FlowCapture> {
        let stop = Arc::new(AtomicBool::new(false));
        let packets = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        // Frames carry the kernel's wall-clock receive time; `t0` on the same clock turns it into
        // scenario time that does not depend on when the capture thread got to run.
        let wall0 = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_sub(t0.elapsed());
        for (ns, link, label) in points {
            let cap = Capture::open(ns, &link)?;
            let linktype = cap.linktype();
            let mut writer = match pcap_dir {
                Some(dir) => {
                    let path = dir.join(format!("{}.pcap", label.replace("->", "-")));
                    let f = std::fs::File::create(&path)
                        .map_err(|e| crate::error::LabError::io("create", &path, e))?;
                    Some(
                        PcapWriter::new(std::io::BufWriter::new(f), cap.linktype(), 262_144, true)
                            .map_err(|e| crate::error::LabError::io("write", &path, e))?,
                    )
                }
                None => None,
            };
            let (stop, packets) = (stop.clone(), packets.clone());
            threads.push(std::thread::spawn(move || {
                let _ = cap.run(&stop, None, |f| {
                    if let Some(w) = writer.as_mut() {
                        let _ = w.write_packet(f.ts, &f.data, f.data.len() as u32);
                    }
                    let t = f.ts.as_secs_f64() - wall0.as_secs_f64();
                    if let Some(p) = parse_frame(linktype, &f.data, port, t, label)
                        && let Ok(mut v) = packets.lock()
                        && v.len() < MAX_PACKETS
                    {
                        v.push(p);
                    }
                    Ok(())
                });
                if let Some(mut w) = writer {
                    let _ = w.flush();
                }
            }));
        }
        Ok(FlowCapture {
            stop,
            packets,
            threads,
        })
    }

    /// Stop and return the packets in time order.
    pub fn finish(mut self) -> Vec<SeenPacket> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let mut v = self.packets.lock().map(|v| v.clone()).unwrap_or_default();
        v.sort_by(|a, b| a.t.total_cmp(&b.t));
        v
    }
}

impl Drop for FlowCapture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The firewall's conntrack entry for the flow at one moment.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CtSample {
    /// Lab seconds since `t0` (see [`sample_conntrack`]).
    pub t: f64,
    /// `None`: no entry for the flow.
    pub state: Option<String>,
    /// Seconds left on the entry's timer; `None` when there is no entry.
    pub timeout_s: Option<u64>,
}

/// Sample the conntrack entry of the flow `client -> server_port` inside `fw` every `period`
/// until `stop`.
pub fn sample_conntrack(
    fw: NetNs,
    client: SocketAddr,
    server_port: u16,
    t0: Instant,
    period: Duration,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<CtSample>> {
    std::thread::spawn(move || {
        let mut out: Vec<CtSample> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let t = t0.elapsed().as_secs_f64();
            let entry = fw
                .run(|| crate::ct::lookup_flow(client, server_port))
                .ok()
                .and_then(|r| r.ok())
                .flatten();
            out.push(CtSample {
                t,
                state: entry.as_ref().map(|e| e.state.clone()),
                timeout_s: entry.as_ref().map(|e| e.timeout_s),
            });
            std::thread::sleep(period);
        }
        out
    })
}
