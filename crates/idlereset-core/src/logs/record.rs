//! Multi-line records: which line a stack-trace line belongs to.
//!
//! Java's `log.error(msg, e)`, Python's `log.exception` and Go panics print the reset text on
//! lines without a timestamp below the line that has one:
//!
//! ```text
//! 2024-05-10 03:14:22.123 ERROR [pool-1] c.e.Repo - query failed
//! org.postgresql.util.PSQLException: An I/O error occurred while sending to the backend.
//!     at org.postgresql.core.v3.QueryExecutorImpl.execute(QueryExecutorImpl.java:395)
//! Caused by: java.net.SocketException: Connection reset
//!     ... 12 more
//! ```
//!
//! A line *starts a record* when it has a timestamp and is not a continuation: indented lines,
//! `at ...`, `Caused by:`, `Suppressed:`, `... N more`, `Traceback (...)`, Python's chained
//! exception banners, Go's `panic:` and `goroutine N [...]`. Every other line belongs to the
//! record started by the nearest record start above it (at most [`MAX_RECORD_BYTES`] above), and
//! takes its time. One record is one event however many of its lines match.

use super::timestamp::{self, Parsed, SyslogYear, TimeContext};

/// How far above a stack-trace line its record's first line may be.
pub const MAX_RECORD_BYTES: usize = 256 * 1024;

/// Line prefixes that continue the record above even if a timestamp appears in them.
const CONTINUATION_PREFIXES: &[&[u8]] = &[
    b"at ",
    b"Caused by:",
    b"Suppressed:",
    b"... ",
    b"Traceback (",
    b"During handling of the above exception",
    b"The above exception was the direct cause",
    b"panic:",
    b"goroutine ",
    b"Exception in thread ",
];

/// The timestamp of a line that starts a record; `None` for continuation lines and lines
/// without a timestamp.
pub fn record_start(line: &[u8], ctx: &TimeContext, syslog: &mut SyslogYear) -> Option<Parsed> {
    match line.first() {
        None | Some(b' ' | b'\t' | b'\r' | b'\n') => return None,
        _ => {}
    }
    if CONTINUATION_PREFIXES.iter().any(|p| line.starts_with(p)) {
        return None;
    }
    timestamp::find_timestamp(line, ctx, syslog)
}

/// The nearest record start above byte `ls` (a line start) in `data`: its line start and time.
/// `None` when none lies within [`MAX_RECORD_BYTES`] inside `data`.
pub fn start_above(data: &[u8], ls: usize, ctx: &TimeContext) -> Option<(usize, Parsed)> {
    let floor = ls.saturating_sub(MAX_RECORD_BYTES);
    let mut end = ls;
    // Year tracking is for forward reading; a backward probe must not disturb it.
    let mut syslog = SyslogYear::default();
    while end > floor {
        // `end - 1` is the newline ending the previous line.
        let prev_end = end - 1;
        let start = memchr::memrchr(b'\n', &data[..prev_end]).map_or(0, |i| i + 1);
        if let Some(p) = record_start(&data[start..prev_end], ctx, &mut syslog) {
            return Some((start, p));
        }
        end = start;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_trace_lines_find_their_record() {
        let log = b"2024-05-10 03:14:20 INFO ok\n\
2024-05-10 03:14:22.123 ERROR c.e.Repo - query failed\n\
org.postgresql.util.PSQLException: An I/O error occurred while sending to the backend.\n\
\tat org.postgresql.core.v3.QueryExecutorImpl.execute(QueryExecutorImpl.java:395)\n\
Caused by: java.net.SocketException: Connection reset\n";
        let ctx = TimeContext::default();
        let text = std::str::from_utf8(log).unwrap_or_default();
        let caused = text.find("Caused by").unwrap_or(0);
        let head = text.find("2024-05-10 03:14:22").unwrap_or(0);
        let found = start_above(log, caused, &ctx).map(|(s, _)| s);
        assert_eq!(found, Some(head));
        assert!(
            record_start(
                b"Caused by: x 2024-05-10 03:14:22",
                &ctx,
                &mut SyslogYear::default()
            )
            .is_none()
        );
        assert!(
            record_start(
                b"    at 2024-05-10 03:14:22",
                &ctx,
                &mut SyslogYear::default()
            )
            .is_none()
        );
        assert!(start_above(log, 0, &ctx).is_none());
    }
}
