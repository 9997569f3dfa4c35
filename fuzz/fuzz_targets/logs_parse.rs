//! Fuzz target: the log scanner and its parsers (signatures, records, timestamps, connection
//! keys, idle phrases, the analysis) must never panic, whatever bytes a log contains, however
//! they are cut into blocks.
//!
//! Run (no nightly toolchain needed): `RUSTC_BOOTSTRAP=1 cargo fuzz run logs_parse -- -max_total_time=60`
#![no_main]

use std::sync::OnceLock;

use idlereset_core::catalog::Catalog;
use idlereset_core::logs::timestamp::{self, SyslogYear, TimeContext};
use idlereset_core::logs::{ScanOptions, Scanner, idle, record};
use libfuzzer_sys::fuzz_target;

/// Built once: compiling the automaton and parsing the catalog per input would dominate the run.
fn fixtures() -> &'static (ScanOptions, Option<Catalog>) {
    static F: OnceLock<(ScanOptions, Option<Catalog>)> = OnceLock::new();
    F.get_or_init(|| {
        let opts = ScanOptions {
            max_line: Some(512),
            ..ScanOptions::default()
        };
        (opts, Catalog::builtin().ok())
    })
}

fuzz_target!(|data: &[u8]| {
    let (opts, catalog) = fixtures();
    // The first byte picks the block size, so lines and records straddle block boundaries.
    let (block, data) = match data.split_first() {
        Some((b, rest)) => (usize::from(*b).max(1), rest),
        None => (1, data),
    };
    let mut scanner = Scanner::new(opts);
    scanner.begin_input("fuzz");
    for chunk in data.chunks(block) {
        scanner.push(chunk, &mut |_| {});
    }
    scanner.end_input(&mut |_| {});
    if let Some(catalog) = catalog {
        let _ = scanner.finish(catalog, &jiff::tz::TimeZone::UTC);
    }
    let ctx = TimeContext::default();
    for line in data.split(|&b| b == b'\n') {
        let _ = timestamp::find_timestamp(line, &ctx, &mut SyslogYear::default());
        let _ = record::record_start(line, &ctx, &mut SyslogYear::default());
        let _ = idle::keyed(line);
        let _ = idle::idle_field(line);
    }
    let _ = record::start_above(data, data.len(), &ctx);
});
