//! Cutting a byte stream into whole lines with bounded memory.
//!
//! `logs` reads files, pipes and standard input the same way: blocks of bytes (at most
//! [`DEFAULT_BLOCK`]) go into a [`LineSplitter`], which hands the scanner the complete lines of
//! each block without copying them. Only the unfinished last line of a block is carried over to
//! the next one. A line that grows past `max_line` bytes without a newline (a binary file,
//! `/dev/zero`, a runaway log statement) is dropped and counted instead of being buffered: memory
//! stays at one block plus one carried line whatever the input.

/// Read block size and, by default, the longest line kept (1 MiB).
pub const DEFAULT_BLOCK: usize = 1 << 20;

/// Splits blocks of a stream into whole lines.
#[derive(Debug)]
pub struct LineSplitter {
    carry: Vec<u8>,
    carry_offset: u64,
    next_offset: u64,
    max_line: usize,
    skipping: bool,
    overlong: u64,
}

impl LineSplitter {
    /// A splitter that drops (and counts) lines longer than `max_line` bytes.
    pub fn new(max_line: usize) -> LineSplitter {
        LineSplitter {
            carry: Vec::new(),
            carry_offset: 0,
            next_offset: 0,
            max_line: max_line.max(1),
            skipping: false,
            overlong: 0,
        }
    }

    /// Lines dropped for being longer than the limit.
    pub fn overlong_lines(&self) -> u64 {
        self.overlong
    }

    /// Bytes pushed so far.
    pub fn bytes(&self) -> u64 {
        self.next_offset
    }

    /// Restart at offset 0 (the file was truncated and is read again from its start).
    pub(crate) fn restart(&mut self) {
        self.carry.clear();
        self.carry_offset = 0;
        self.next_offset = 0;
        self.skipping = false;
    }

    /// Push the next block. `emit(lines, offset)` receives runs of complete lines (each ending
    /// in `\n`) with the stream offset of their first byte.
    pub fn push(&mut self, block: &[u8], mut emit: impl FnMut(&[u8], u64)) {
        let base = self.next_offset;
        self.next_offset += block.len() as u64;
        let Some(first) = memchr::memchr(b'\n', block) else {
            self.extend(block, base);
            return;
        };
        self.extend(&block[..=first], base);
        if !self.carry.is_empty() && !self.skipping {
            emit(&self.carry, self.carry_offset);
        }
        self.carry.clear();
        self.skipping = false;
        let rest = &block[first + 1..];
        let rest_base = base + first as u64 + 1;
        let tail_at = match memchr::memrchr(b'\n', rest) {
            Some(last) => {
                emit(&rest[..=last], rest_base);
                last + 1
            }
            None => 0,
        };
        self.extend(&rest[tail_at..], rest_base + tail_at as u64);
    }

    /// End of stream: the last line if it has no newline.
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8], u64)) {
        if !self.carry.is_empty() && !self.skipping {
            emit(&self.carry, self.carry_offset);
        }
        self.carry.clear();
        self.skipping = false;
    }

    fn extend(&mut self, bytes: &[u8], offset: u64) {
        if self.skipping || bytes.is_empty() {
            return;
        }
        if self.carry.is_empty() {
            self.carry_offset = offset;
        }
        if self.carry.len() + bytes.len() > self.max_line {
            self.overlong += 1;
            self.skipping = true;
            self.carry = Vec::new();
            return;
        }
        self.carry.extend_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn split(blocks: &[&[u8]], max: usize) -> (Vec<(String, u64)>, u64) {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        let mut take = |b: &[u8], off: u64| {
            out.push((String::from_utf8(b.to_vec()).unwrap(), off));
        };
        for b in blocks {
            s.push(b, &mut take);
        }
        s.finish(&mut take);
        (out, s.overlong_lines())
    }

    #[test]
    fn lines_cross_blocks_with_offsets() {
        let (out, over) = split(&[b"ab", b"c\nde\nf", b"g\nh"], 100);
        assert_eq!(
            out,
            [
                ("abc\n".into(), 0),
                ("de\n".into(), 4),
                ("fg\n".into(), 7),
                ("h".into(), 10)
            ]
        );
        assert_eq!(over, 0);
    }

    #[test]
    fn overlong_lines_are_dropped_and_counted() {
        let (out, over) = split(&[b"0123", b"456789", b"ab\nok\n", b"xxxxxxxxxxxx"], 8);
        assert_eq!(out, [("ok\n".into(), 13)]);
        assert_eq!(over, 2);
    }
}
