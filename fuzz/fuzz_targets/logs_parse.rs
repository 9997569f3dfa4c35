//! Fuzz target: the log scanner and its parsers (signatures, timestamps, connection keys, idle
//! fields, the analysis) must never panic, whatever bytes a log contains.
//!
//! Run (no nightly toolchain needed): `RUSTC_BOOTSTRAP=1 cargo fuzz run logs_parse -- -max_total_time=60`
#![no_main]

use std::sync::OnceLock;

use idlereset_core::catalog::Catalog;
use idlereset_core::logs::signatures::SignatureSet;
use idlereset_core::logs::timestamp::{self, SyslogYear, TimeContext};
use idlereset_core::logs::{self, ScanOptions, idle};
use libfuzzer_sys::fuzz_target;

/// Built once: compiling the automaton and parsing the catalog per input would dominate the run.
fn fixtures() -> &'static (ScanOptions, Option<Catalog>) {
    static F: OnceLock<(ScanOptions, Option<Catalog>)> = OnceLock::new();
    F.get_or_init(|| {
        let opts = ScanOptions {
            signatures: SignatureSet::builtin(),
            time: TimeContext::default(),
            connections: true,
        };
        (opts, Catalog::builtin().ok())
    })
}

fuzz_target!(|data: &[u8]| {
    let (opts, catalog) = fixtures();
    let scan = logs::scan(data, opts);
    if let Some(catalog) = catalog {
        let _ = logs::report(
            &[scan],
            &opts.signatures,
            catalog,
            &jiff::tz::TimeZone::UTC,
            2.0,
        );
    }
    for line in data.split(|&b| b == b'\n') {
        let _ = timestamp::find_timestamp(line, &opts.time, &mut SyslogYear::default());
        let _ = idle::keyed(line);
        let _ = idle::idle_field(line);
    }
});
