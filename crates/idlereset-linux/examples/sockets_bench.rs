//! Benchmark of the audit read path on N loopback sockets: sock_diag dump, /proc owner map,
//! and the conntrack dump (decoded vs count-only) on M planted entries. Runs in a throw-away
//! namespace `idlereset-bench-<pid>` that is deleted at the end.
//!
//!   cargo run --release -p idlereset-linux --example sockets_bench -- 100000 100000
//!
//! Set BENCH_HOLD=SECONDS to keep the sockets open afterwards, e.g. to time
//! `ip netns exec idlereset-bench-<pid> ss -tnoip` against the same table.
#![expect(
    unsafe_code,
    reason = "getrlimit/setrlimit for a benchmark fixture of 100k sockets"
)]
#![allow(clippy::unwrap_used)] // a measuring tool: any failure should stop it loudly

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use idlereset_linux::NetNs;
use idlereset_linux::conntrack::{self, Family, NewEntry, Tuple};
use idlereset_linux::procfs::SocketOwners;
use idlereset_linux::sockdiag::{self, TcpFilter};

struct Guard(String);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = NetNs::delete(&self.0);
    }
}

/// VmRSS and VmHWM of this process.
fn mem() -> String {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .filter(|l| l.starts_with("VmRSS") || l.starts_with("VmHWM"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Socket file descriptors per helper process (the hard RLIMIT_NOFILE may be low).
const PER_CHILD: usize = 16_000;

fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    lim.rlim_cur
}

/// Child: open `pairs` loopback connections inside namespace `ns`, say "ready", wait for EOF.
fn child(ns: &str, idx: u8, pairs: usize) {
    raise_nofile();
    let ns = NetNs::open(ns).expect("open namespace");
    let keep = ns
        .run(|| {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let dst: SocketAddr = l.local_addr().unwrap();
            let mut keep: Vec<(TcpStream, TcpStream)> = Vec::with_capacity(pairs);
            for i in 0..pairs {
                let src = Ipv4Addr::new(127, 1 + idx, (i / 20000) as u8, 1);
                let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                    .unwrap();
                s.bind(&SocketAddr::new(src.into(), 0).into()).unwrap();
                s.connect(&dst.into()).unwrap();
                let (srv, _) = l.accept().unwrap();
                keep.push((s.into(), srv));
            }
            (l, keep)
        })
        .unwrap();
    println!("ready");
    let mut sink = String::new();
    while std::io::stdin()
        .read_line(&mut sink)
        .map(|n| n > 0)
        .unwrap_or(false)
    {}
    drop(keep);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let first = args.next();
    if first.as_deref() == Some("--child") {
        let ns = args.next().unwrap();
        let idx: u8 = args.next().unwrap().parse().unwrap();
        let pairs: usize = args.next().unwrap().parse().unwrap();
        return child(&ns, idx, pairs);
    }
    let sockets: usize = first.and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let entries: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let hold: u64 = std::env::var("BENCH_HOLD")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let name = format!("idlereset-bench-{}", std::process::id());
    let ns = NetNs::create(&name).expect("create namespace");
    let _guard = Guard(name.clone());
    ns.run(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (conn, handle, _) = rtnetlink::new_connection().unwrap();
            tokio::spawn(conn);
            handle
                .link()
                .set(rtnetlink::LinkUnspec::new_with_index(1).up().build())
                .execute()
                .await
                .unwrap();
        });
    })
    .unwrap();
    let t = Instant::now();
    let mut children = Vec::new();
    let mut left = sockets;
    let mut idx = 0u8;
    while left > 0 {
        let n = left.min(PER_CHILD);
        let mut c = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--child", &name, &idx.to_string(), &(n / 2).to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(c.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "ready", "child {idx} failed");
        children.push(c);
        left -= n;
        idx += 1;
    }
    eprintln!(
        "setup: {sockets} sockets in {} processes in {:.1?}",
        children.len(),
        t.elapsed()
    );
    ns.run(|| {
        for round in 0..3 {
            let t = Instant::now();
            let mut inodes = HashSet::new();
            let s = sockdiag::dump_tcp(TcpFilter::all(), |s| {
                inodes.insert(s.inode);
            })
            .unwrap();
            let t_diag = t.elapsed();
            let owners = SocketOwners::scan(Some(&inodes)).unwrap();
            let t_all = t.elapsed();
            let t2 = Instant::now();
            let full = SocketOwners::scan(None).unwrap();
            let t_full = t2.elapsed();
            eprintln!(
                "round {round}: sock_diag {} sockets {:.1?}; + owner map ({} mapped) total {:.1?}; full /proc map {} in {:.1?}",
                s.messages,
                t_diag,
                owners.len(),
                t_all,
                full.len(),
                t_full
            );
        }

        let mut ct = conntrack::Ctnetlink::open().unwrap();
        let t = Instant::now();
        for i in 0..entries {
            let src = Ipv4Addr::from(0xc612_0000 + (i / 50000)); // 198.18.x.x
            let tuple = Tuple {
                src: src.into(),
                dst: Ipv4Addr::new(198, 19, 0, 1).into(),
                sport: Some(10000 + (i % 50000) as u16),
                dport: Some(5432),
            };
            ct.insert(&NewEntry::tcp_established(tuple, 3600)).unwrap();
        }
        eprintln!("planted {entries} conntrack entries in {:.1?}", t.elapsed());
        eprintln!("before dumps: {}", mem());
        for round in 0..3 {
            let t = Instant::now();
            let c = ct.dump_count(Family::All).unwrap();
            let t_count = t.elapsed();
            let t = Instant::now();
            let mut n = 0u64;
            let d = ct.dump(Family::All, |_| n += 1).unwrap();
            eprintln!(
                "round {round}: count-only {} msgs {:.1?} ({} datagrams); decoded {} entries {:.1?}",
                c.messages,
                t_count,
                c.datagrams,
                d.messages,
                t.elapsed()
            );
        }
        eprintln!("after dumps: {} (peak must not grow with the table)", mem());
    })
    .unwrap();
    if hold > 0 {
        eprintln!("holding for {hold} s: namespace {name}");
        std::thread::sleep(Duration::from_secs(hold));
    }
    for mut c in children {
        drop(c.stdin.take());
        let _ = c.wait();
    }
}
