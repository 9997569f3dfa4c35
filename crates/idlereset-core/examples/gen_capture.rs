//! Writes a large synthetic multi-flow capture for the `idlereset pcap` benchmark.
//!
//! Usage: `gen_capture OUT.pcap SIZE_MB [SEED]`
//!
//! About a thousand concurrent client/server connections (Ethernet, IPv4) exchange requests and
//! responses of 40-600 bytes and close with FIN; a new connection replaces each closed one.
//! One connection in 400 instead goes idle for 200-400 s and then fails: half of them get a
//! RST forged by a middlebox (TTL 64 where the server's packets arrive with 62), half are
//! silently dropped (six retransmissions, never acknowledged). The number of planted failures
//! is printed on stderr so the benchmark can check the analysis found them all.
//! Headers are written by hand (checksums zero): this is a generator, and speed matters.

use std::fs::File;
use std::io::BufWriter;
use std::time::Duration;

use idlereset_core::pcap::writer::{LINKTYPE_ETHERNET, PcapWriter};

const ACK: u8 = 0x10;
const PSH: u8 = 0x08;
const SYN: u8 = 0x02;
const FIN: u8 = 0x01;
const RST: u8 = 0x04;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Copy)]
enum Fate {
    Close,
    Reset,
    Blackhole,
}

#[derive(Clone, Copy)]
struct Flow {
    client: [u8; 4],
    server: [u8; 4],
    cport: u16,
    cseq: u32,
    sseq: u32,
    cid: u16,
    sid: u16,
    step: u32,
    exchanges: u32,
    fate: Fate,
}

struct Gen {
    w: PcapWriter<BufWriter<File>>,
    t_ns: u64,
    bytes: u64,
    buf: Vec<u8>,
}

impl Gen {
    /// Write one Ethernet/IPv4/TCP packet; `from_client` picks addresses, TTL and IP ID.
    fn packet(
        &mut self,
        f: &mut Flow,
        from_client: bool,
        flags: u8,
        len: u16,
        seq_override: Option<u32>,
        ttl_override: Option<u8>,
    ) {
        let (src, dst, sport, dport) = if from_client {
            (f.client, f.server, f.cport, 5432)
        } else {
            (f.server, f.client, 5432, f.cport)
        };
        let (seq, ack, ttl, id) = if from_client {
            (f.cseq, f.sseq, 64u8, f.cid)
        } else {
            (f.sseq, f.cseq, 62u8, f.sid)
        };
        let seq = seq_override.unwrap_or(seq);
        let b = &mut self.buf;
        b.clear();
        b.extend_from_slice(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00]);
        let total = 40 + len;
        b.extend_from_slice(&[0x45, 0]);
        b.extend_from_slice(&total.to_be_bytes());
        b.extend_from_slice(&id.to_be_bytes());
        b.extend_from_slice(&[0x40, 0, ttl_override.unwrap_or(ttl), 6, 0, 0]);
        b.extend_from_slice(&src);
        b.extend_from_slice(&dst);
        b.extend_from_slice(&sport.to_be_bytes());
        b.extend_from_slice(&dport.to_be_bytes());
        b.extend_from_slice(&seq.to_be_bytes());
        b.extend_from_slice(&ack.to_be_bytes());
        b.extend_from_slice(&[0x50, flags, 0xfa, 0x00, 0, 0, 0, 0]);
        b.resize(b.len() + usize::from(len), 0x61);
        let used = u32::from(len) + u32::from(flags & (SYN | FIN) != 0);
        if ttl_override.is_none() {
            if from_client {
                f.cid = f.cid.wrapping_add(1);
                if seq_override.is_none() {
                    f.cseq = f.cseq.wrapping_add(used);
                }
            } else {
                f.sid = f.sid.wrapping_add(1);
                f.sseq = f.sseq.wrapping_add(used);
            }
        }
        self.w
            .write_packet(
                Duration::from_nanos(self.t_ns),
                &self.buf,
                self.buf.len() as u32,
            )
            .expect("write capture");
        self.bytes += 16 + self.buf.len() as u64;
        self.t_ns += 200_000;
    }
}

fn new_flow(rng: &mut Rng, n: u64) -> Flow {
    let fate = match rng.below(400) {
        0 => Fate::Reset,
        1 => Fate::Blackhole,
        _ => Fate::Close,
    };
    Flow {
        client: [198, 18, (n >> 8) as u8 & 0x7f, n as u8],
        server: [198, 19, 0, 1 + rng.below(8) as u8],
        cport: 32768 + (n % 28000) as u16,
        cseq: rng.next() as u32,
        sseq: rng.next() as u32,
        cid: rng.next() as u16,
        sid: rng.next() as u16,
        step: 0,
        exchanges: 5 + rng.below(40) as u32,
        fate,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: gen_capture OUT.pcap SIZE_MB [SEED]");
        std::process::exit(2);
    }
    let target = args[2].parse::<u64>().expect("SIZE_MB is a number") * 1024 * 1024;
    let seed = args
        .get(3)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x01d1_e5e7_u64);
    let file = File::create(&args[1]).expect("create output");
    let w = PcapWriter::new(
        BufWriter::with_capacity(8 << 20, file),
        LINKTYPE_ETHERNET,
        65535,
        false,
    )
    .expect("header");
    let mut g = Gen {
        w,
        t_ns: 1_700_000_000 * 1_000_000_000,
        bytes: 24,
        buf: Vec::with_capacity(2048),
    };
    let mut rng = Rng(seed | 1);
    let mut serial = 0u64;
    let mut active: Vec<Flow> = (0..1000)
        .map(|_| {
            serial += 1;
            new_flow(&mut rng, serial)
        })
        .collect();
    let mut idle: std::collections::VecDeque<(u64, Flow)> = Default::default();
    let (mut resets, mut blackholes, mut closed) = (0u64, 0u64, 0u64);
    while g.bytes < target {
        if let Some(&(wake, _)) = idle.front()
            && wake <= g.t_ns
        {
            let Some((_, mut f)) = idle.pop_front() else {
                break;
            };
            g.packet(&mut f, true, ACK | PSH, 120, None, None);
            match f.fate {
                Fate::Reset => {
                    let forged = f.sseq;
                    g.packet(&mut f, false, RST | ACK, 0, Some(forged), Some(64));
                    resets += 1;
                }
                _ => {
                    let seq = f.cseq.wrapping_sub(120);
                    for _ in 0..6 {
                        g.packet(&mut f, true, ACK | PSH, 120, Some(seq), None);
                    }
                    blackholes += 1;
                }
            }
            continue;
        }
        let i = rng.below(active.len() as u64) as usize;
        let mut f = active[i];
        let s = f.step;
        let last = 3 + 3 * f.exchanges;
        match s {
            0 => g.packet(&mut f, true, SYN, 0, None, None),
            1 => g.packet(&mut f, false, SYN | ACK, 0, None, None),
            2 => g.packet(&mut f, true, ACK, 0, None, None),
            s if s < last => match (s - 3) % 3 {
                0 => g.packet(
                    &mut f,
                    true,
                    ACK | PSH,
                    40 + rng.below(200) as u16,
                    None,
                    None,
                ),
                1 => g.packet(
                    &mut f,
                    false,
                    ACK | PSH,
                    40 + rng.below(560) as u16,
                    None,
                    None,
                ),
                _ => g.packet(&mut f, true, ACK, 0, None, None),
            },
            s if s == last => {
                if let Fate::Close = f.fate {
                    g.packet(&mut f, true, FIN | ACK, 0, None, None);
                } else {
                    let wake = g.t_ns + (200 + rng.below(200)) * 1_000_000_000;
                    idle.push_back((wake, f));
                    serial += 1;
                    active[i] = new_flow(&mut rng, serial);
                    continue;
                }
            }
            s if s == last + 1 => g.packet(&mut f, false, FIN | ACK, 0, None, None),
            _ => {
                g.packet(&mut f, true, ACK, 0, None, None);
                closed += 1;
                serial += 1;
                active[i] = new_flow(&mut rng, serial);
                continue;
            }
        }
        f.step += 1;
        active[i] = f;
    }
    g.w.flush().expect("flush");
    eprintln!(
        "wrote {} bytes to {}: {closed} closed flows, planted {resets} middlebox resets and {blackholes} blackholes",
        g.bytes, args[1]
    );
}
