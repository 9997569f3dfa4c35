//! AF_PACKET capture inside a namespace, written as standard pcap.
//!
//! A named interface is captured with a `SOCK_RAW` packet socket bound to it (Ethernet frames,
//! `LINKTYPE_ETHERNET`); `any` uses a `SOCK_DGRAM` socket on all interfaces and writes Linux
//! cooked headers (`LINKTYPE_LINUX_SLL`), as `tcpdump -i any` does. The socket is created on a
//! thread inside the namespace and read on a dedicated thread until the stop flag is raised;
//! the pcap is flushed at least every 100 ms so a capture that runs while a scenario runs is
//! readable at any moment, and nothing is lost on Ctrl-C.
//!
//! Each frame carries the kernel's receive timestamp (`SIOCGSTAMPNS` after each read), not the
//! moment the reading thread got to it: on a loaded machine that thread can run hundreds of
//! milliseconds late, and the lab's evidence (traffic during an idle gap) depends on when a
//! packet crossed the link.

use std::mem::{MaybeUninit, size_of};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use idlereset_core::pcap::writer::{LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, PcapWriter};
use socket2::{Domain, Protocol, Socket, Type};

use crate::error::{LinuxError, Result};
use crate::netns::NetNs;

const ETH_P_ALL: u16 = 0x0003;
const SNAPLEN: u32 = 262_144;

/// A captured frame with its wall-clock timestamp.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Capture time, since the Unix epoch.
    pub ts: Duration,
    /// Link-layer bytes: Ethernet for a named interface, Linux SLL for `any`.
    pub data: Vec<u8>,
}

/// An open packet socket on one interface (or `any`) of a namespace.
pub struct Capture {
    sock: Socket,
    iface: String,
    cooked: bool,
}

impl Capture {
    /// Open a capture on `iface` (or `"any"`) inside `ns`.
    pub fn open(ns: &NetNs, iface: &str) -> Result<Capture> {
        let cooked = iface == "any";
        let ifindex = if cooked {
            0
        } else {
            let name = std::ffi::CString::new(iface)
                .map_err(|_| LinuxError::Unsupported(format!("bad interface name {iface:?}")))?;
            ns.run(|| nix::net::if_::if_nametoindex(name.as_c_str()))?
                .map_err(|e| LinuxError::Socket {
                    op: "find interface",
                    object: format!("{}/{iface}", ns.name()),
                    source: e.into(),
                })?
        };
        let ty = if cooked { Type::DGRAM } else { Type::RAW };
        let proto = Protocol::from(i32::from(ETH_P_ALL.to_be()));
        let sock = ns
            .run(|| Socket::new(Domain::PACKET, ty, Some(proto)))?
            .map_err(|e| {
                LinuxError::socket("open AF_PACKET", format!("{}/{iface}", ns.name()), e)
            })?;
        if !cooked {
            bind_ll(&sock, ifindex).map_err(|e| {
                LinuxError::socket("bind AF_PACKET", format!("{}/{iface}", ns.name()), e)
            })?;
        }
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| LinuxError::socket("set timeout", iface.to_string(), e))?;
        // The first SIOCGSTAMPNS turns on the socket's receive timestamps (it answers ENOENT:
        // nothing received yet); from then on each read records its frame's kernel timestamp.
        let _ = kernel_stamp(&sock);
        Ok(Capture {
            sock,
            iface: iface.to_string(),
            cooked,
        })
    }

    /// pcap link type of the frames this capture yields.
    pub fn linktype(&self) -> u32 {
        if self.cooked {
            LINKTYPE_LINUX_SLL
        } else {
            LINKTYPE_ETHERNET
        }
    }

    /// Receive one frame, or `None` after the 100 ms poll timeout.
    pub(crate) fn next_frame(&self, buf: &mut [MaybeUninit<u8>]) -> Result<Option<Frame>> {
        match self.sock.recv_from(buf) {
            Ok((n, addr)) => {
                let ts = kernel_stamp(&self.sock).unwrap_or_else(|_| {
                    SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or_default()
                });
                // SAFETY: recv_from initialised the first `n` bytes of `buf`.
                let bytes: &[u8] =
                    unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) };
                let data = if self.cooked {
                    sll_header(&addr, bytes)
                } else {
                    bytes.to_vec()
                };
                Ok(Some(Frame { ts, data }))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(None),
            Err(e) => Err(LinuxError::socket("recv", self.iface.clone(), e)),
        }
    }

    /// Capture until `stop` is raised (or `limit` frames), handing each frame to `sink`.
    pub fn run(
        &self,
        stop: &AtomicBool,
        limit: Option<u64>,
        mut sink: impl FnMut(&Frame) -> Result<()>,
    ) -> Result<u64> {
        let mut buf = vec![MaybeUninit::<u8>::uninit(); SNAPLEN as usize];
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) && limit.is_none_or(|l| n < l) {
            if let Some(f) = self.next_frame(&mut buf)? {
                sink(&f)?;
                n += 1;
            }
        }
        Ok(n)
    }
}

/// A capture running on its own thread, writing a pcap file.
pub struct CaptureToFile {
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<Result<u64>>>,
}

impl CaptureToFile {
    /// Start capturing `iface` in `ns` into `out`.
    pub fn start(ns: &NetNs, iface: &str, out: std::fs::File) -> Result<CaptureToFile> {
        let cap = Capture::open(ns, iface)?;
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let (stop2, count2) = (stop.clone(), count.clone());
        let thread = std::thread::spawn(move || -> Result<u64> {
            let mut w =
                PcapWriter::new(std::io::BufWriter::new(out), cap.linktype(), SNAPLEN, true)
                    .map_err(|e| LinuxError::socket("write pcap header", cap.iface.clone(), e))?;
            let mut last_flush = Instant::now();
            let mut buf = vec![MaybeUninit::<u8>::uninit(); SNAPLEN as usize];
            while !stop2.load(Ordering::Relaxed) {
                if let Some(f) = cap.next_frame(&mut buf)? {
                    w.write_packet(f.ts, &f.data, f.data.len() as u32)
                        .map_err(|e| LinuxError::socket("write pcap", cap.iface.clone(), e))?;
                    count2.fetch_add(1, Ordering::Relaxed);
                }
                if last_flush.elapsed() >= Duration::from_millis(100) {
                    w.flush()
                        .map_err(|e| LinuxError::socket("flush pcap", cap.iface.clone(), e))?;
                    last_flush = Instant::now();
                }
            }
            w.flush()
                .map_err(|e| LinuxError::socket("flush pcap", cap.iface.clone(), e))?;
            Ok(count2.load(Ordering::Relaxed))
        });
        Ok(CaptureToFile {
            stop,
            count,
            thread: Some(thread),
        })
    }

    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Stop, flush and return the number of frames written.
    pub fn finish(mut self) -> Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(LinuxError::Unsupported("capture thread panicked".into()))),
            None => Ok(0),
        }
    }
}

impl Drop for CaptureToFile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `SIOCGSTAMPNS` (`SIOCGSTAMPNS_OLD` in linux/sockios.h, whose argument is the C library's
/// `struct timespec`); the libc crate does not define it.
const SIOCGSTAMPNS: libc::c_ulong = 0x8907;

/// Kernel receive time (wall clock) of the last frame read from `sock`.
fn kernel_stamp(sock: &Socket) -> std::io::Result<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: SIOCGSTAMPNS writes one `struct timespec` through the pointer, which points to
    // `ts`, alive and writable for the whole call.
    let rc = unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            SIOCGSTAMPNS,
            &mut ts as *mut libc::timespec,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    ))
}

fn bind_ll(sock: &Socket, ifindex: u32) -> std::io::Result<()> {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = ETH_P_ALL.to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: the pointer and length describe the initialised `sll` above, which outlives the call.
    let rc = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast::<libc::sockaddr>(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Build a Linux cooked (SLL v1) header from the packet socket address, then the payload.
fn sll_header(addr: &socket2::SockAddr, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + payload.len());
    let (pkttype, hatype, halen, haddr, proto) = if addr.family()
        == libc::AF_PACKET as libc::sa_family_t
        && addr.len() as usize >= size_of::<libc::sockaddr_ll>()
    {
        // SAFETY: the family is AF_PACKET and the storage is at least sockaddr_ll long, so it
        // holds an initialised sockaddr_ll; read_unaligned copes with any alignment.
        let sll: libc::sockaddr_ll = unsafe { std::ptr::read_unaligned(addr.as_ptr().cast()) };
        (
            sll.sll_pkttype as u16,
            sll.sll_hatype,
            sll.sll_halen as u16,
            sll.sll_addr,
            sll.sll_protocol,
        )
    } else {
        (0, 1, 0, [0u8; 8], 0)
    };
    out.extend_from_slice(&pkttype.to_be_bytes());
    out.extend_from_slice(&hatype.to_be_bytes());
    out.extend_from_slice(&halen.to_be_bytes());
    out.extend_from_slice(&haddr);
    out.extend_from_slice(&proto.to_ne_bytes()); // already network order
    out.extend_from_slice(payload);
    out
}
