//! Helper of bench/conntrack.sh: fill the calling namespace's conntrack table over ctnetlink,
//! and time the kernel's own cost of a dump (count-only) against a decoding dump.
//!
//!   ip netns exec NS ct_table fill 1000000     insert N UDP entries (timeout 3600 s)
//!   ip netns exec NS ct_table count            time dump_count (messages only)
//!   ip netns exec NS ct_table decode           time dump (every entry decoded, nothing printed)

#![allow(clippy::unwrap_used)] // a measuring tool: any failure should stop it loudly

use std::net::Ipv4Addr;
use std::time::Instant;

use idlereset_linux::conntrack::{self, Family, NewEntry, Tuple};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("fill") => {
            let n: u32 = args
                .get(2)
                .and_then(|s| s.parse().ok())
                .unwrap_or(1_000_000);
            let mut ct = conntrack::Ctnetlink::open().unwrap();
            let t = Instant::now();
            for i in 0..n {
                // 198.18.0.0/15 sources x 50000 ports: distinct tuples.
                let host = i / 50_000;
                let orig = Tuple {
                    src: Ipv4Addr::new(198, 18, (host / 250) as u8, (host % 250 + 1) as u8).into(),
                    dst: Ipv4Addr::new(198, 19, 0, 1).into(),
                    sport: Some(10_000 + (i % 50_000) as u16),
                    dport: Some(53),
                };
                let e = NewEntry {
                    proto: 17,
                    orig,
                    reply: None,
                    timeout_s: 3600,
                    tcp_state: None,
                    status: 0,
                    mark: 0,
                    zone: 0,
                };
                ct.insert(&e).unwrap();
            }
            eprintln!("inserted {n} entries in {:.2} s", t.elapsed().as_secs_f64());
        }
        Some("count") => {
            let t = Instant::now();
            let s = conntrack::dump_count(Family::All).unwrap();
            println!(
                "dump_count: {} entries, {} bytes in {:.3} s",
                s.messages,
                s.bytes,
                t.elapsed().as_secs_f64()
            );
        }
        Some("decode") => {
            let t = Instant::now();
            let mut n = 0u64;
            conntrack::dump(Family::All, |_| n += 1).unwrap();
            println!(
                "dump: {n} entries decoded in {:.3} s",
                t.elapsed().as_secs_f64()
            );
        }
        _ => {
            eprintln!("usage: ct_table fill N | count | decode");
            std::process::exit(2);
        }
    }
}
