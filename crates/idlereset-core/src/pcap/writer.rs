//! A classic pcap writer (microsecond or nanosecond timestamps).
//!
//! Hand-rolled: the format is a 24-byte header and a 16-byte record header, and the crates that
//! write it pull in reading, async and filtering we do not need on the capture path.

use std::io::{self, Write};
use std::time::Duration;

/// Link-layer header types (<https://www.tcpdump.org/linktypes.html>).
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Raw IP packets (IPv4 or IPv6 by version nibble).
pub const LINKTYPE_RAW: u32 = 101;
/// Linux cooked capture v1 (SLL).
pub const LINKTYPE_LINUX_SLL: u32 = 113;
/// Linux cooked capture v2 (SLL2).
pub(crate) const LINKTYPE_LINUX_SLL2: u32 = 276;

const MAGIC_MICRO: u32 = 0xa1b2_c3d4;
const MAGIC_NANO: u32 = 0xa1b2_3c4d;

/// Writes a pcap stream to any `Write`.
pub struct PcapWriter<W: Write> {
    out: W,
    nanos: bool,
    snaplen: u32,
}

impl<W: Write> PcapWriter<W> {
    /// Write the file header. `nanos` selects nanosecond timestamps.
    pub fn new(mut out: W, linktype: u32, snaplen: u32, nanos: bool) -> io::Result<Self> {
        let magic = if nanos { MAGIC_NANO } else { MAGIC_MICRO };
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&magic.to_le_bytes());
        h[4..6].copy_from_slice(&2u16.to_le_bytes());
        h[6..8].copy_from_slice(&4u16.to_le_bytes());
        // thiszone (8..12) and sigfigs (12..16) stay zero.
        h[16..20].copy_from_slice(&snaplen.to_le_bytes());
        h[20..24].copy_from_slice(&linktype.to_le_bytes());
        out.write_all(&h)?;
        Ok(PcapWriter {
            out,
            nanos,
            snaplen,
        })
    }

    /// Write one packet captured at `ts` (since the Unix epoch) whose original length was
    /// `orig_len`; `data` is truncated to the snap length.
    pub fn write_packet(&mut self, ts: Duration, data: &[u8], orig_len: u32) -> io::Result<()> {
        let incl = data.len().min(self.snaplen as usize);
        let frac = if self.nanos {
            ts.subsec_nanos()
        } else {
            ts.subsec_micros()
        };
        let secs = u32::try_from(ts.as_secs()).unwrap_or(u32::MAX);
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&secs.to_le_bytes());
        h[4..8].copy_from_slice(&frac.to_le_bytes());
        h[8..12].copy_from_slice(&(incl as u32).to_le_bytes());
        h[12..16].copy_from_slice(&orig_len.max(incl as u32).to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(&data[..incl])
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The underlying writer (not flushed).
    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_record_layout() {
        let mut w = PcapWriter::new(Vec::new(), LINKTYPE_ETHERNET, 65535, false).unwrap();
        w.write_packet(Duration::new(10, 5_000), &[1, 2, 3], 3)
            .unwrap();
        let b = w.into_inner();
        assert_eq!(&b[0..4], &MAGIC_MICRO.to_le_bytes());
        assert_eq!(
            u32::from_le_bytes(b[20..24].try_into().unwrap()),
            LINKTYPE_ETHERNET
        );
        assert_eq!(u32::from_le_bytes(b[24..28].try_into().unwrap()), 10);
        assert_eq!(u32::from_le_bytes(b[28..32].try_into().unwrap()), 5);
        assert_eq!(u32::from_le_bytes(b[32..36].try_into().unwrap()), 3);
        assert_eq!(&b[40..43], &[1, 2, 3]);
    }

    #[test]
    fn truncates_to_snaplen() {
        let mut w = PcapWriter::new(Vec::new(), LINKTYPE_RAW, 2, true).unwrap();
        w.write_packet(Duration::new(1, 7), &[9, 8, 7, 6], 4)
            .unwrap();
        let b = w.into_inner();
        assert_eq!(&b[0..4], &MAGIC_NANO.to_le_bytes());
        assert_eq!(u32::from_le_bytes(b[28..32].try_into().unwrap()), 7);
        assert_eq!(u32::from_le_bytes(b[32..36].try_into().unwrap()), 2);
        assert_eq!(u32::from_le_bytes(b[36..40].try_into().unwrap()), 4);
        assert_eq!(b.len(), 24 + 16 + 2);
    }
}
