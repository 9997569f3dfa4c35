//! Reading pcap and pcapng records from bytes, without copying and without I/O.
//!
//! Why a streaming decoder instead of an iterator over one big slice: a capture of several
//! gigabytes must be analysed in well under 100 MB of memory. Mapping the whole file would make
//! every page we touch count towards the process's resident set, so the binary reads the file
//! in chunks into one buffer and hands each chunk to [`Decoder::decode`], which either returns
//! the next record (borrowing the buffer: zero copy), asks for more bytes, or fails with the
//! absolute byte offset of the damage. [`Records`] wraps the same decoder for a capture that is
//! already in memory (tests, fuzzing, small files).
//!
//! Hand-rolled rather than `pcap-file` / `pcap-parser`: both formats are a few fixed headers,
//! the decoder must be resumable across chunk boundaries with our own error type carrying the
//! offset, and the core crate stays free of I/O.
//!
//! Supported: classic pcap in both byte orders with microsecond or nanosecond timestamps,
//! and the "modified" pcap of Alexey Kuznetsov's patched libpcap (magic `0xa1b2cd34`, 24-byte
//! record headers that add the interface index, protocol and packet type; libpcap reads it
//! too, see `KUZNETZOV_TCPDUMP_MAGIC` in its `sf-pcap.c`);
//! pcapng sections in both byte orders (several sections per file), interface descriptions
//! with `if_tsresol` / `if_tsoffset`, enhanced, simple and obsolete packet blocks. Other block
//! types are skipped.

/// Largest record or block we accept. Real snap lengths are at most 256 KiB; anything above
/// this is a corrupt length field, and trusting it would make the binary buffer gigabytes.
pub(crate) const MAX_RECORD_LEN: usize = 16 * 1024 * 1024;
/// A classic pcap record may hold up to the file's snap length or libpcap's maximum
/// (262,144 bytes), whichever is larger; a longer one is a corrupt header.
const PCAP_MAX_SNAPLEN: usize = 262_144;
/// pcapng block types a resynchronisation may land on (section headers excluded: they
/// change how everything after them is read).
const KNOWN_BLOCKS: [u32; 9] = [1, 2, 3, 4, 5, 6, 9, 10, 0x0000_0bad];

const PCAP_MICRO: u32 = 0xa1b2_c3d4;
const PCAP_NANO: u32 = 0xa1b2_3c4d;
/// Kuznetsov's modified pcap: microsecond timestamps, [`PCAP_KUZNETZOV_HDR`]-byte records.
const PCAP_KUZNETZOV: u32 = 0xa1b2_cd34;
/// Its record header: the standard 16 bytes, interface index (4), protocol (2), packet
/// type (1) and one byte of padding.
const PCAP_KUZNETZOV_HDR: usize = 24;
/// The standard classic pcap record header.
const PCAP_HDR: usize = 16;
const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_BOM: u32 = 0x1a2b_3c4d;
const BLOCK_IDB: u32 = 1;
const BLOCK_OPB: u32 = 2;
const BLOCK_SPB: u32 = 3;
const BLOCK_EPB: u32 = 6;

/// Why a capture could not be read further. Every variant carries the absolute byte offset of
/// the header or block that is damaged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The file starts with neither a pcap nor a pcapng magic number.
    #[error("byte offset {offset}: not a pcap or pcapng file (magic {magic:#010x})")]
    BadMagic {
        /// Absolute byte offset of the magic number.
        offset: u64,
        /// The magic number read.
        magic: u32,
    },
    /// The file ends inside a header or record.
    #[error("byte offset {offset}: file ends inside {what} ({have} of {need} bytes present)")]
    Truncated {
        /// Absolute byte offset of the header or block.
        offset: u64,
        /// What was being read (`file header`, `record`, ...).
        what: &'static str,
        /// Bytes it needs.
        need: u64,
        /// Bytes present.
        have: u64,
    },
    /// A header or block holds impossible values.
    #[error("byte offset {offset}: corrupt {what}: {why}")]
    Corrupt {
        /// Absolute byte offset of the header or block.
        offset: u64,
        /// What was being read.
        what: &'static str,
        /// What is wrong with it.
        why: String,
    },
}

impl ReadError {
    /// The byte offset of the damage.
    pub fn offset(&self) -> u64 {
        match self {
            ReadError::BadMagic { offset, .. }
            | ReadError::Truncated { offset, .. }
            | ReadError::Corrupt { offset, .. } => *offset,
        }
    }
}

/// One captured packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Capture time in nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// Link-layer header type of the interface (LINKTYPE_* value).
    pub linktype: u32,
    /// The captured bytes (possibly shorter than the packet on the wire).
    pub data: &'a [u8],
    /// Length of the packet on the wire.
    pub orig_len: u32,
    /// Absolute byte offset of the record header in the file.
    pub offset: u64,
}

/// What one call to [`Decoder::decode`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    /// A packet; `used` bytes of the buffer were consumed.
    Record {
        /// The packet record, borrowing from the buffer.
        record: Record<'a>,
        /// Bytes of the buffer consumed.
        used: usize,
    },
    /// A header or non-packet block of `used` bytes was consumed.
    Skip {
        /// Bytes of the buffer consumed.
        used: usize,
    },
    /// The buffer holds an incomplete header or record: give at least `need` bytes.
    NeedMore {
        /// Bytes the next call needs at least.
        need: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endian {
    Little,
    Big,
}

impl Endian {
    fn u16(self, b: &[u8], at: usize) -> u16 {
        let a = [b[at], b[at + 1]];
        match self {
            Endian::Little => u16::from_le_bytes(a),
            Endian::Big => u16::from_be_bytes(a),
        }
    }
    /// A `u32` read as little-endian, in this byte order.
    #[inline(always)]
    fn of_le(self, v: u32) -> u32 {
        match self {
            Endian::Little => v,
            Endian::Big => v.swap_bytes(),
        }
    }
    fn u32(self, b: &[u8], at: usize) -> u32 {
        let a = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        match self {
            Endian::Little => u32::from_le_bytes(a),
            Endian::Big => u32::from_be_bytes(a),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Interface {
    linktype: u32,
    snaplen: u32,
    /// Timestamp units per second: `Pow10(6)` means microseconds.
    resol: Resolution,
    offset_s: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolution {
    Pow10(u8),
    Pow2(u8),
}

impl Resolution {
    fn to_ns(self, units: u64) -> u64 {
        match self {
            Resolution::Pow10(p) if p <= 9 => units.saturating_mul(10u64.pow(u32::from(9 - p))),
            Resolution::Pow10(p) => units / 10u64.pow(u32::from(p.min(28) - 9).min(19)),
            Resolution::Pow2(p) => {
                let ns = (u128::from(units) * 1_000_000_000) >> u32::from(p.min(127));
                u64::try_from(ns).unwrap_or(u64::MAX)
            }
        }
    }
}

#[derive(Debug, Clone)]
enum State {
    Start,
    Pcap(PcapLayout),
    PcapNg {
        endian: Endian,
        interfaces: Vec<Interface>,
    },
}

/// A resumable pcap / pcapng decoder. Feed it the bytes that follow what it consumed so far.
#[derive(Debug, Clone)]
pub struct Decoder {
    state: State,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    /// A decoder at the start of a file.
    pub fn new() -> Decoder {
        Decoder {
            state: State::Start,
        }
    }

    /// `"pcap"`, `"pcapng"`, or `"unknown"` before the file header was read.
    pub fn format(&self) -> &'static str {
        match self.state {
            State::Start => "unknown",
            State::Pcap(_) => "pcap",
            State::PcapNg { .. } => "pcapng",
        }
    }

    /// Decode the next item at the start of `buf`, which begins at absolute file offset `base`.
    pub fn decode<'a>(&mut self, buf: &'a [u8], base: u64) -> Result<Step<'a>, ReadError> {
        match &self.state {
            State::Start => self.decode_file_header(buf, base),
            State::Pcap(layout) => layout.decode(buf, base),
            State::PcapNg { .. } => self.decode_block(buf, base),
        }
    }

    /// The link types of the file (classic pcap) or of the interfaces described so far
    /// (pcapng).
    pub(crate) fn linktypes(&self) -> Vec<u32> {
        match &self.state {
            State::Start => Vec::new(),
            State::Pcap(layout) => vec![layout.linktype],
            State::PcapNg { interfaces, .. } => interfaces.iter().map(|i| i.linktype).collect(),
        }
    }

    /// Whether a plausible record (or pcapng block) starts at `buf[0]` and, to reject
    /// lookalikes inside packet bytes, another one follows it (or the file ends right
    /// after it, or with fewer bytes than a header when `eof`). Used to resynchronise after
    /// damage; `near_ts_ns` (the last good record's time) also bounds a classic pcap
    /// record's timestamp to `max_jump_ns` around it.
    pub fn probe(&self, buf: &[u8], eof: bool, near_ts_ns: Option<u64>, max_jump_ns: u64) -> Probe {
        match &self.state {
            State::Start => Probe::No,
            State::Pcap(layout) => layout.probe(buf, eof, near_ts_ns, max_jump_ns),
            State::PcapNg { endian, interfaces } => {
                let header = |at: usize| -> Option<Result<usize, ()>> {
                    let h = buf.get(at..at + 12)?;
                    let len = endian.u32(h, 4) as usize;
                    let btype = endian.u32(h, 0);
                    if !KNOWN_BLOCKS.contains(&btype)
                        || len < 12
                        || !len.is_multiple_of(4)
                        || len > MAX_RECORD_LEN
                    {
                        return Some(Err(()));
                    }
                    if btype == BLOCK_EPB && endian.u32(h, 8) as usize >= interfaces.len() {
                        return Some(Err(()));
                    }
                    let tail = buf.get(at + len - 4..at + len)?;
                    Some(if endian.u32(tail, 0) as usize == len {
                        Ok(len)
                    } else {
                        Err(())
                    })
                };
                probe_pair(buf.len(), eof, 12, header)
            }
        }
    }

    /// The record layout of a classic pcap file (after its header was read), for a loop over
    /// many records at once; `None` for pcapng or before the header.
    pub(crate) fn pcap_layout(&self) -> Option<PcapLayout> {
        match self.state {
            State::Pcap(layout) => Some(layout),
            _ => None,
        }
    }

    fn decode_file_header<'a>(&mut self, buf: &'a [u8], base: u64) -> Result<Step<'a>, ReadError> {
        if buf.len() < 4 {
            return Ok(Step::NeedMore { need: 4 });
        }
        let le = Endian::Little.u32(buf, 0);
        let be = Endian::Big.u32(buf, 0);
        if le == PCAPNG_SHB {
            return self.decode_block(buf, base);
        }
        let (endian, nanos, hdr_len) = match (le, be) {
            (PCAP_MICRO, _) => (Endian::Little, false, PCAP_HDR),
            (PCAP_NANO, _) => (Endian::Little, true, PCAP_HDR),
            (PCAP_KUZNETZOV, _) => (Endian::Little, false, PCAP_KUZNETZOV_HDR),
            (_, PCAP_MICRO) => (Endian::Big, false, PCAP_HDR),
            (_, PCAP_NANO) => (Endian::Big, true, PCAP_HDR),
            (_, PCAP_KUZNETZOV) => (Endian::Big, false, PCAP_KUZNETZOV_HDR),
            _ => {
                return Err(ReadError::BadMagic {
                    offset: base,
                    magic: be,
                });
            }
        };
        if buf.len() < 24 {
            return Ok(Step::NeedMore { need: 24 });
        }
        let major = endian.u16(buf, 4);
        if major != 2 {
            return Err(corrupt(
                base,
                "pcap file header",
                format!("version {major} (expected 2)"),
            ));
        }
        // The upper bits of the link-type field carry FCS information (pcap spec, LinkType).
        let linktype = endian.u32(buf, 20) & 0xffff;
        let snaplen = endian.u32(buf, 16) as usize;
        self.state = State::Pcap(PcapLayout {
            endian,
            nanos,
            linktype,
            max_len: snaplen.clamp(PCAP_MAX_SNAPLEN, MAX_RECORD_LEN),
            hdr_len,
        });
        Ok(Step::Skip { used: 24 })
    }

    fn decode_block<'a>(&mut self, buf: &'a [u8], base: u64) -> Result<Step<'a>, ReadError> {
        if buf.len() < 12 {
            return Ok(Step::NeedMore { need: 12 });
        }
        let raw_type = Endian::Little.u32(buf, 0);
        if raw_type == PCAPNG_SHB {
            // The section header's byte-order magic decides how to read everything after it,
            // including its own length.
            let endian = match (Endian::Little.u32(buf, 8), Endian::Big.u32(buf, 8)) {
                (PCAPNG_BOM, _) => Endian::Little,
                (_, PCAPNG_BOM) => Endian::Big,
                (_, other) => {
                    return Err(corrupt(
                        base,
                        "pcapng section header",
                        format!("byte-order magic {other:#010x}"),
                    ));
                }
            };
            let len = block_len(buf, base, endian)?;
            if buf.len() < len {
                return Ok(Step::NeedMore { need: len });
            }
            self.state = State::PcapNg {
                endian,
                interfaces: Vec::new(),
            };
            return Ok(Step::Skip { used: len });
        }
        let State::PcapNg { endian, interfaces } = &mut self.state else {
            return Err(ReadError::BadMagic {
                offset: base,
                magic: raw_type,
            });
        };
        let endian = *endian;
        let btype = endian.u32(buf, 0);
        let len = block_len(buf, base, endian)?;
        if buf.len() < len {
            return Ok(Step::NeedMore { need: len });
        }
        let block = &buf[..len];
        let body = &block[8..len - 4];
        match btype {
            BLOCK_IDB => {
                interfaces.push(parse_idb(body, base, endian)?);
                Ok(Step::Skip { used: len })
            }
            BLOCK_EPB | BLOCK_OPB => {
                if body.len() < 20 {
                    return Err(corrupt(
                        base,
                        "pcapng packet block",
                        format!("body of {} bytes", body.len()),
                    ));
                }
                let iface_id = if btype == BLOCK_EPB {
                    endian.u32(body, 0)
                } else {
                    u32::from(endian.u16(body, 0))
                };
                let iface = interface(interfaces, iface_id, base)?;
                let units = (u64::from(endian.u32(body, 4)) << 32) | u64::from(endian.u32(body, 8));
                let caplen = endian.u32(body, 12) as usize;
                let orig_len = endian.u32(body, 16);
                if caplen > body.len() - 20 {
                    return Err(corrupt(
                        base,
                        "pcapng packet block",
                        format!(
                            "captured length {caplen} exceeds the block ({} bytes of data)",
                            body.len() - 20
                        ),
                    ));
                }
                let ts_ns = apply_offset(iface.resol.to_ns(units), iface.offset_s);
                let record = Record {
                    ts_ns,
                    linktype: iface.linktype,
                    data: &body[20..20 + caplen],
                    orig_len,
                    offset: base,
                };
                Ok(Step::Record { record, used: len })
            }
            BLOCK_SPB => {
                if body.len() < 4 {
                    return Err(corrupt(
                        base,
                        "pcapng simple packet block",
                        "body shorter than 4 bytes".into(),
                    ));
                }
                let iface = interface(interfaces, 0, base)?;
                let orig_len = endian.u32(body, 0);
                let mut caplen = (orig_len as usize).min(body.len() - 4);
                if iface.snaplen != 0 {
                    caplen = caplen.min(iface.snaplen as usize);
                }
                // Simple packet blocks carry no timestamp.
                let record = Record {
                    ts_ns: 0,
                    linktype: iface.linktype,
                    data: &body[4..4 + caplen],
                    orig_len,
                    offset: base,
                };
                Ok(Step::Record { record, used: len })
            }
            _ => Ok(Step::Skip { used: len }),
        }
    }
}

fn corrupt(offset: u64, what: &'static str, why: String) -> ReadError {
    ReadError::Corrupt { offset, what, why }
}

fn block_len(buf: &[u8], base: u64, endian: Endian) -> Result<usize, ReadError> {
    let len = endian.u32(buf, 4) as usize;
    if len < 12 || !len.is_multiple_of(4) || len > MAX_RECORD_LEN {
        return Err(corrupt(base, "pcapng block", format!("total length {len}")));
    }
    Ok(len)
}

fn interface(interfaces: &[Interface], id: u32, base: u64) -> Result<Interface, ReadError> {
    interfaces.get(id as usize).copied().ok_or_else(|| {
        corrupt(
            base,
            "pcapng packet block",
            format!(
                "interface {id} was never described ({} known)",
                interfaces.len()
            ),
        )
    })
}

fn apply_offset(ns: u64, offset_s: i64) -> u64 {
    let off = offset_s.unsigned_abs().saturating_mul(1_000_000_000);
    if offset_s >= 0 {
        ns.saturating_add(off)
    } else {
        ns.saturating_sub(off)
    }
}

fn parse_idb(body: &[u8], base: u64, endian: Endian) -> Result<Interface, ReadError> {
    if body.len() < 8 {
        return Err(corrupt(
            base,
            "pcapng interface description",
            format!("body of {} bytes", body.len()),
        ));
    }
    let mut iface = Interface {
        linktype: u32::from(endian.u16(body, 0)),
        snaplen: endian.u32(body, 4),
        resol: Resolution::Pow10(6),
        offset_s: 0,
    };
    let mut opts = &body[8..];
    while opts.len() >= 4 {
        let code = endian.u16(opts, 0);
        let olen = endian.u16(opts, 2) as usize;
        let padded = (olen + 3) & !3;
        if code == 0 || opts.len() < 4 + olen {
            break;
        }
        let val = &opts[4..4 + olen];
        match (code, olen) {
            (9, 1) => {
                let v = val[0];
                iface.resol = if v & 0x80 == 0 {
                    Resolution::Pow10(v)
                } else {
                    Resolution::Pow2(v & 0x7f)
                };
            }
            (14, 8) => {
                let hi = u64::from(endian.u32(val, 0));
                let lo = u64::from(endian.u32(val, 4));
                let raw = match endian {
                    Endian::Little => (hi) | (lo << 32),
                    Endian::Big => (hi << 32) | lo,
                };
                iface.offset_s = raw as i64;
            }
            _ => {}
        }
        opts = opts.get(4 + padded..).unwrap_or(&[]);
    }
    Ok(iface)
}

/// What [`Decoder::probe`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// A plausible record starts here (and is followed by another, or by the end).
    Yes,
    /// Not a record boundary.
    No,
    /// Give at least this many bytes from the probed position.
    NeedMore(usize),
}

/// Check a header at 0 and the one right after it. `header(at)` returns `None` when the
/// buffer is too short to judge, else the record's total length or `Err` for implausible.
fn probe_pair(
    len: usize,
    eof: bool,
    hdr: usize,
    header: impl Fn(usize) -> Option<Result<usize, ()>>,
) -> Probe {
    let first = match header(0) {
        None if eof => return Probe::No,
        None => return Probe::NeedMore(hdr.max(len + 1)),
        Some(Err(())) => return Probe::No,
        Some(Ok(n)) => n,
    };
    if len < first {
        return if eof {
            Probe::No
        } else {
            Probe::NeedMore(first + hdr)
        };
    }
    match header(first) {
        Some(Ok(_)) => Probe::Yes,
        Some(Err(())) => Probe::No,
        // The file ends right after the record, or inside the next header (a cut file).
        None if eof => Probe::Yes,
        // Always ask for more than the buffer holds, or the caller could not make progress
        // (a pcapng block's repeated length lies beyond its header).
        None => Probe::NeedMore((first + hdr).max(len + 1)),
    }
}

/// A classic pcap record header that could be real: its length fits the file's limit and
/// the wire length, its sub-second part is in range, its time is near the last good one.
fn pcap_header_plausible(
    h: &[u8],
    endian: Endian,
    nanos: bool,
    max_len: usize,
    near_ts_ns: Option<u64>,
    max_jump_ns: u64,
) -> Result<usize, ()> {
    let secs = u64::from(endian.u32(h, 0));
    let frac = u64::from(endian.u32(h, 4));
    let incl = endian.u32(h, 8) as usize;
    let orig = endian.u32(h, 12) as usize;
    let frac_max = if nanos { 1_000_000_000 } else { 1_000_000 };
    let ts = secs * 1_000_000_000;
    if incl == 0 || incl > max_len || orig < incl || orig > MAX_RECORD_LEN || frac >= frac_max {
        return Err(());
    }
    if near_ts_ns.is_some_and(|n| n.abs_diff(ts) > max_jump_ns) {
        return Err(());
    }
    Ok(incl)
}

/// How a classic pcap file lays out its records: what [`Decoder::decode`] does for such a file,
/// without the per-call dispatch on the decoder's state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PcapLayout {
    endian: Endian,
    nanos: bool,
    linktype: u32,
    max_len: usize,
    /// Record header length: [`PCAP_HDR`], or [`PCAP_KUZNETZOV_HDR`] for modified pcap.
    hdr_len: usize,
}

impl PcapLayout {
    /// [`Decoder::probe`] on a classic pcap file.
    pub(crate) fn probe(
        &self,
        buf: &[u8],
        eof: bool,
        near_ts_ns: Option<u64>,
        max_jump_ns: u64,
    ) -> Probe {
        let hdr_len = self.hdr_len;
        let header = |at: usize| -> Option<Result<usize, ()>> {
            let h = buf.get(at..at + hdr_len)?;
            Some(
                pcap_header_plausible(
                    h,
                    self.endian,
                    self.nanos,
                    self.max_len,
                    near_ts_ns,
                    max_jump_ns,
                )
                .map(|incl| hdr_len + incl),
            )
        };
        probe_pair(buf.len(), eof, hdr_len, header)
    }

    /// Exactly [`Decoder::decode`] on a classic pcap file.
    #[inline(always)]
    pub(crate) fn decode<'a>(&self, buf: &'a [u8], base: u64) -> Result<Step<'a>, ReadError> {
        decode_pcap_record(
            buf,
            base,
            self.endian,
            self.nanos,
            self.linktype,
            self.max_len,
            self.hdr_len,
        )
    }
}

#[inline(always)]
fn decode_pcap_record(
    buf: &[u8],
    base: u64,
    endian: Endian,
    nanos: bool,
    linktype: u32,
    max_len: usize,
    hdr_len: usize,
) -> Result<Step<'_>, ReadError> {
    // The fixed 16 bytes as an array: the field reads below need no bounds checks (this
    // runs once per record).
    let (Some(h), true) = (buf.first_chunk::<PCAP_HDR>(), buf.len() >= hdr_len) else {
        return Ok(Step::NeedMore { need: hdr_len });
    };
    let field =
        |at: usize| endian.of_le(u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]));
    let secs = u64::from(field(0));
    let frac = u64::from(field(4));
    let incl = field(8) as usize;
    let orig_len = field(12);
    if incl == 0 && secs == 0 && frac == 0 && orig_len == 0 {
        // Not a record: space the file system allocated but nothing wrote (a crash, a
        // preallocated file). Read as one, every 16 zero bytes would be an empty packet.
        return Err(corrupt(base, "pcap record header", "all zero bytes".into()));
    }
    if incl > max_len {
        return Err(corrupt(
            base,
            "pcap record header",
            format!("captured length {incl}"),
        ));
    }
    let frac_ns = if nanos {
        frac
    } else {
        frac.saturating_mul(1000)
    };
    if frac_ns >= 1_000_000_000 {
        return Err(corrupt(
            base,
            "pcap record header",
            format!("sub-second timestamp {frac}"),
        ));
    }
    if buf.len() < hdr_len + incl {
        return Ok(Step::NeedMore {
            need: hdr_len + incl,
        });
    }
    let record = Record {
        ts_ns: secs * 1_000_000_000 + frac_ns,
        linktype,
        data: &buf[hdr_len..hdr_len + incl],
        orig_len,
        offset: base,
    };
    Ok(Step::Record {
        record,
        used: hdr_len + incl,
    })
}

/// Iterates the packets of a capture held in memory. Stops after the first error.
pub struct Records<'a> {
    data: &'a [u8],
    pos: usize,
    decoder: Decoder,
    done: bool,
}

impl<'a> Records<'a> {
    /// Records of a whole capture held in memory.
    pub fn new(data: &'a [u8]) -> Records<'a> {
        Records {
            data,
            pos: 0,
            decoder: Decoder::new(),
            done: false,
        }
    }

    /// `"pcap"` or `"pcapng"` once the header was read.
    pub fn format(&self) -> &'static str {
        self.decoder.format()
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let rest = self.data.get(self.pos..).unwrap_or(&[]);
            if rest.is_empty() && self.decoder.format() != "unknown" {
                self.done = true;
                return None;
            }
            let base = self.pos as u64;
            match self.decoder.decode(rest, base) {
                Ok(Step::Record { record, used }) => {
                    self.pos += used;
                    return Some(Ok(record));
                }
                Ok(Step::Skip { used }) => self.pos += used,
                Ok(Step::NeedMore { need }) => {
                    self.done = true;
                    let what = if self.decoder.format() == "unknown" {
                        "file header"
                    } else {
                        "record"
                    };
                    return Some(Err(ReadError::Truncated {
                        offset: base,
                        what,
                        need: need as u64,
                        have: rest.len() as u64,
                    }));
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests;
