//! Parser for the kernel's SNMP-style counter files, `/proc/net/snmp` and `/proc/net/netstat`.
//!
//! Both files are pairs of lines: a header line `Tcp: RtoAlgorithm RtoMin ... OutRsts` followed by
//! a value line `Tcp: 1 200 ... 97` with the same prefix and as many fields. The reset and abort
//! counters the exporter publishes (`Tcp:EstabResets`, `Tcp:OutRsts`, `TcpExt:TCPAbortOnTimeout`,
//! `TcpExt:TCPAbortOnData`, ...) live there. Kernels add fields over time, so the parser keeps
//! every `section:field` it finds and callers look up the names they know.
//!
//! Values are signed (`Tcp: MaxConn` is `-1`). A malformed file is an error naming the file and
//! line; the parser never panics on input.

use std::collections::BTreeMap;

/// Counters of one or more SNMP-style files, keyed by `(section, field)`, e.g. `("Tcp", "OutRsts")`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    values: BTreeMap<(String, String), i64>,
}

/// A file that is not header/value line pairs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file} line {line}: {message}")]
pub struct NetstatError {
    /// The file, as named by the caller.
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl Counters {
    /// Parse one file's text and add its counters; `file` names it in errors.
    pub fn add_file(&mut self, text: &str, file: &str) -> Result<(), NetstatError> {
        let err = |line: usize, message: String| NetstatError {
            file: file.to_string(),
            line,
            message,
        };
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        while let Some((hi, header)) = lines.next() {
            let (hsec, hnames) = split_prefix(header)
                .ok_or_else(|| err(hi + 1, format!("no 'Section:' prefix in {header:?}")))?;
            let (vi, values) = lines
                .next()
                .ok_or_else(|| err(hi + 1, format!("header of {hsec} without a value line")))?;
            let (vsec, vfields) = split_prefix(values)
                .ok_or_else(|| err(vi + 1, format!("no 'Section:' prefix in {values:?}")))?;
            if vsec != hsec {
                return Err(err(
                    vi + 1,
                    format!("value line of {vsec} follows header of {hsec}"),
                ));
            }
            let names: Vec<&str> = hnames.split_ascii_whitespace().collect();
            let nums: Vec<&str> = vfields.split_ascii_whitespace().collect();
            if names.len() != nums.len() {
                return Err(err(
                    vi + 1,
                    format!("{hsec} has {} names but {} values", names.len(), nums.len()),
                ));
            }
            for (name, num) in names.into_iter().zip(nums) {
                let v: i64 = num.parse().map_err(|_| {
                    err(
                        vi + 1,
                        format!("{hsec}:{name} value {num:?} is not an integer"),
                    )
                })?;
                self.values.insert((hsec.to_string(), name.to_string()), v);
            }
        }
        Ok(())
    }

    /// Parse one file.
    pub fn parse(text: &str, file: &str) -> Result<Counters, NetstatError> {
        let mut c = Counters::default();
        c.add_file(text, file)?;
        Ok(c)
    }

    /// `section:field`, when the kernel has it.
    pub fn get(&self, section: &str, field: &str) -> Option<i64> {
        self.values
            .get(&(section.to_string(), field.to_string()))
            .copied()
    }

    /// A counter as unsigned (negative sentinels such as `MaxConn -1` become `None`).
    pub fn counter(&self, section: &str, field: &str) -> Option<u64> {
        self.get(section, field).and_then(|v| u64::try_from(v).ok())
    }

    /// Counters read so far.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// No counter read yet.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

fn split_prefix(line: &str) -> Option<(&str, &str)> {
    let (sec, rest) = line.split_once(':')?;
    (!sec.is_empty() && !sec.contains(char::is_whitespace)).then_some((sec, rest))
}

/// The reset and abort counters the exporter publishes: (section, field, metric suffix, help).
pub const RESET_COUNTERS: [(&str, &str, &str, &str); 9] = [
    (
        "Tcp",
        "EstabResets",
        "tcp_estab_resets",
        "Connections reset from ESTABLISHED or CLOSE_WAIT (Tcp:EstabResets)",
    ),
    (
        "Tcp",
        "OutRsts",
        "tcp_out_rsts",
        "Segments sent with the RST flag (Tcp:OutRsts)",
    ),
    (
        "Tcp",
        "AttemptFails",
        "tcp_attempt_fails",
        "Failed connection attempts (Tcp:AttemptFails)",
    ),
    (
        "TcpExt",
        "TCPAbortOnTimeout",
        "tcp_abort_on_timeout",
        "Connections aborted after retransmission or keepalive timeout (TcpExt:TCPAbortOnTimeout)",
    ),
    (
        "TcpExt",
        "TCPAbortOnData",
        "tcp_abort_on_data",
        "Connections reset because data arrived after close (TcpExt:TCPAbortOnData)",
    ),
    (
        "TcpExt",
        "TCPAbortOnClose",
        "tcp_abort_on_close",
        "Connections reset on close with unread data (TcpExt:TCPAbortOnClose)",
    ),
    (
        "TcpExt",
        "TCPAbortOnMemory",
        "tcp_abort_on_memory",
        "Connections aborted for lack of memory (TcpExt:TCPAbortOnMemory)",
    ),
    (
        "TcpExt",
        "TCPAbortOnLinger",
        "tcp_abort_on_linger",
        "Connections aborted by SO_LINGER 0 (TcpExt:TCPAbortOnLinger)",
    ),
    (
        "TcpExt",
        "TCPAbortFailed",
        "tcp_abort_failed",
        "Aborts whose RST could not be sent (TcpExt:TCPAbortFailed)",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    const SNMP: &str = "\
Ip: Forwarding DefaultTTL InReceives
Ip: 2 64 16371
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors
Tcp: 1 200 120000 -1 112 3 0 96 0 16146 11286 0 0 97 0
";
    const NETSTAT: &str = "\
TcpExt: SyncookiesSent TCPAbortOnData TCPAbortOnClose TCPAbortOnMemory TCPAbortOnTimeout TCPAbortOnLinger TCPAbortFailed
TcpExt: 0 12 3 0 7 1 0
IpExt: InNoRoutes
IpExt: 0
";

    #[test]
    fn reads_snmp_and_netstat_together() {
        let mut c = Counters::parse(SNMP, "/proc/net/snmp").unwrap();
        c.add_file(NETSTAT, "/proc/net/netstat").unwrap();
        assert_eq!(c.counter("Tcp", "EstabResets"), Some(96));
        assert_eq!(c.counter("Tcp", "OutRsts"), Some(97));
        assert_eq!(c.get("Tcp", "MaxConn"), Some(-1));
        assert_eq!(c.counter("Tcp", "MaxConn"), None);
        assert_eq!(c.counter("TcpExt", "TCPAbortOnTimeout"), Some(7));
        assert_eq!(c.counter("TcpExt", "TCPAbortOnData"), Some(12));
        assert_eq!(c.counter("TcpExt", "Nope"), None);
        assert_eq!(c.len(), 3 + 15 + 7 + 1);
        for (sec, field, _, _) in RESET_COUNTERS {
            assert!(c.get(sec, field).is_some(), "{sec}:{field} missing");
        }
    }

    #[test]
    fn mismatched_counts_name_file_and_line() {
        let bad = "Tcp: A B C\nTcp: 1 2\n";
        let e = Counters::parse(bad, "/proc/net/snmp").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().contains("/proc/net/snmp line 2"), "{e}");
        assert!(e.message.contains("3 names but 2 values"), "{e}");
    }

    #[test]
    fn other_malformations_are_errors() {
        for (text, line) in [
            ("Tcp: A\n", 1),
            ("Tcp: A\nUdp: 1\n", 2),
            ("Tcp: A\nTcp: x\n", 2),
            ("no prefix here\nTcp: 1\n", 1),
            ("Ip: A\nIp: 1\n\nTcp: A\nTcp 1\n", 5),
        ] {
            let e = Counters::parse(text, "f").unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
        }
    }

    #[test]
    fn empty_file_is_empty() {
        assert!(Counters::parse("", "f").unwrap().is_empty());
    }
}
