//! `idlereset pcap FILE...`: explain resets after idle in packet captures.
//!
//! The file is read in fixed chunks into one buffer that the core decoder borrows records from
//! (zero copy). We do not memory-map it: every page of a mapping that the analysis touches
//! counts in the resident set, so a 4 GB capture would show 4 GB of RSS; chunked reads keep
//! the peak under 100 MB whatever the file size, at the cost of one memcpy from the page cache.
//! Each file is analysed on its own (TTLs differ per capture point); the verdict combines them.

use std::fs::File;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender};

use anyhow::Context;
use idlereset_core::catalog::Catalog;
use idlereset_core::duration::{Human, parse_duration};
use idlereset_core::pcap::events::{Event, Kind, Origin, Role};
use idlereset_core::pcap::flow::Config;
use idlereset_core::pcap::packet::TcpSegment;
use idlereset_core::pcap::reader::{Decoder, ReadError, Step};
use idlereset_core::pcap::summary::{Summary, summarise};
use idlereset_core::pcap::{Analyzer, FileAnalysis, tcp_segment};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::app::Outcome;

/// Read size; records larger than this grow the buffer (up to the decoder's limit).
const CHUNK: usize = 4 * 1024 * 1024;
/// Files above this size get a progress bar (when stdout is a terminal).
const PROGRESS_MIN_BYTES: u64 = 32 * 1024 * 1024;

const EXAMPLES: &str = "\
Examples:
  idlereset pcap client.pcap                      who reset the connections, after how much idle
  idlereset pcap any.pcapng server.pcap --json    several captures (tcpdump -i any works too)
  idlereset pcap lab.pcap --min-idle 1s           scaled lab captures with short idle gaps
  idlereset pcap db.pcap --flows                  also list idle / probed / failed flows
  idlereset pcap --merge cap-*.pcap               rotated files (tcpdump -G 3600) as one capture
  tcpdump -i any -s 128 -w idle.pcap 'tcp port 5432'   a capture that is enough for this

Exit status: 0 no idle failures, 1 idle failures found, 2 unreadable or damaged capture
(everything readable is still analysed and reported).";

#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Capture files (pcap with micro- or nanosecond timestamps, or pcapng)
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Print one JSON object (`flows`, `events`, `summary`, ...) instead of text
    #[arg(long)]
    pub json: bool,
    /// Ignore idle gaps shorter than this (RSTs and FINs in busy flows are not idle failures)
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub min_idle: std::time::Duration,
    /// Most flows held in memory at once (about 1 KB each at peak); beyond that the flows idle
    /// the longest are summarised and dropped
    #[arg(long, value_name = "N", default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(16..))]
    pub max_flows: u64,
    /// Also list the flows that were idle, sent keepalive probes or failed (text output;
    /// JSON always has them under `files[].notable_flows`)
    #[arg(long)]
    pub flows: bool,
    /// Treat the files as one capture cut into pieces (tcpdump -C / -G rotation), in the
    /// order given, so idle gaps across file boundaries are seen
    #[arg(long)]
    pub merge: bool,
}

/// Events printed per file in text output; `--json` has them all.
const TEXT_EVENTS: usize = 50;

struct FileResult {
    /// The file name, or all names joined with ` + ` under `--merge`.
    label: String,
    analysis: FileAnalysis,
    error: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let cfg = Config {
        min_idle_ns: u64::try_from(args.min_idle.as_nanos()).unwrap_or(u64::MAX),
        max_flows: usize::try_from(args.max_flows).unwrap_or(usize::MAX),
        ..Config::default()
    };
    let catalog = Catalog::builtin()?;
    let show_progress = std::io::stdout().is_terminal();
    let mut results = Vec::new();
    if args.merge {
        // One continuous capture cut into files (tcpdump -C / -G): flows and idle gaps span
        // the file boundaries.
        let mut analyzer = Analyzer::new(cfg);
        let mut format = "unknown";
        let mut errors = Vec::new();
        for path in &args.files {
            let (a, read) = analyse_file(path, analyzer, cfg, show_progress);
            analyzer = a;
            match read {
                Ok((f, err)) => {
                    format = if format == "unknown" || format == f {
                        f
                    } else {
                        "mixed"
                    };
                    errors.extend(err.map(|e| format!("{}: {e}", path.display())));
                }
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        let label = args
            .files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" + ");
        results.push(FileResult {
            label,
            analysis: analyzer.finish(format),
            error: (!errors.is_empty()).then(|| errors.join("; ")),
        });
    } else {
        for path in &args.files {
            let (analyzer, read) = analyse_file(path, Analyzer::new(cfg), cfg, show_progress);
            let (format, error) = match read {
                Ok((f, e)) => (f, e.map(|e| format!("{}: {e}", path.display()))),
                Err(e) => ("unknown", Some(format!("{e:#}"))),
            };
            results.push(FileResult {
                label: path.display().to_string(),
                analysis: analyzer.finish(format),
                error,
            });
        }
    }
    let analyses: Vec<_> = results.iter().map(|r| &r.analysis.analysis).collect();
    let summary = summarise(&analyses, &catalog);
    if args.json {
        super::print_json(&to_json(&results, &summary))?;
    } else {
        print_text(&results, &summary, args.flows)?;
    }
    let errors: Vec<String> = results
        .iter()
        .filter_map(|r| r.error.as_ref().cloned())
        .collect();
    if !errors.is_empty() {
        anyhow::bail!("{}", errors.join("; "));
    }
    Ok(if summary.idle_failures > 0 {
        Outcome::Findings
    } else {
        Outcome::Clean
    })
}

/// Feed one file to `analyzer` and hand it back, whatever happened. The result is the capture
/// format and the decoder error that stopped reading (a damaged capture), or an I/O error.
///
/// Two threads: this one reads, decodes records and parses headers (stateless), the other
/// tracks flows; batches of parsed segments go between them through a bounded channel and
/// come back empty for reuse. On a 1 GB capture this hides the read and parse cost behind
/// the flow tracking when a second core is free (see bench/pcap/run.sh).
fn analyse_file(
    path: &Path,
    analyzer: Analyzer,
    cfg: Config,
    progress: bool,
) -> (Analyzer, anyhow::Result<(&'static str, Option<ReadError>)>) {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            return (
                analyzer,
                Err(anyhow::Error::new(e).context(format!("cannot open {}", path.display()))),
            );
        }
    };
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = (progress && size >= PROGRESS_MIN_BYTES).then(|| {
        let bar = ProgressBar::new(size);
        if let Ok(style) = ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(path.display().to_string());
        bar
    });
    let (tx, rx) = mpsc::sync_channel::<Batch>(QUEUED_BATCHES);
    let (back_tx, back_rx) = mpsc::channel::<Batch>();
    let (analyzer, read) = std::thread::scope(|scope| {
        let tracker = scope.spawn(move || {
            let mut analyzer = analyzer;
            for mut batch in rx {
                for (ts, seg) in &batch {
                    analyzer.account(*ts, seg.as_ref());
                }
                batch.clear();
                // The reader may be gone already; then the batch is simply dropped.
                let _ = back_tx.send(batch);
            }
            analyzer
        });
        let read = read_records(&mut file, path, bar.as_ref(), &tx, &back_rx);
        drop(tx);
        (tracker.join(), read)
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    match analyzer {
        Ok(a) => (a, read),
        Err(_) => (
            Analyzer::new(cfg),
            Err(anyhow::anyhow!(
                "flow tracking thread panicked on {}",
                path.display()
            )),
        ),
    }
}

type Batch = Vec<(u64, Option<TcpSegment>)>;
const BATCH: usize = 4 * 1024;
const QUEUED_BATCHES: usize = 8;

/// Decode `file` and send its parsed segments in batches. Returns the capture format and the
/// decoder error that stopped reading, if any.
fn read_records(
    file: &mut File,
    path: &Path,
    bar: Option<&ProgressBar>,
    tx: &SyncSender<Batch>,
    back: &Receiver<Batch>,
) -> anyhow::Result<(&'static str, Option<ReadError>)> {
    let mut decoder = Decoder::new();
    let mut buf = vec![0u8; CHUNK];
    let mut batch: Batch = Vec::with_capacity(BATCH);
    let (mut start, mut end, mut base) = (0usize, 0usize, 0u64);
    let mut eof = false;
    let mut error = None;
    loop {
        match decoder.decode(&buf[start..end], base + start as u64) {
            Ok(Step::Record { record, used }) => {
                batch.push((record.ts_ns, tcp_segment(&record)));
                start += used;
                if batch.len() == BATCH {
                    let next = back
                        .try_recv()
                        .unwrap_or_else(|_| Vec::with_capacity(BATCH));
                    tx.send(std::mem::replace(&mut batch, next))
                        .context("flow tracking thread stopped")?;
                    if let Some(bar) = bar {
                        bar.set_position(base + start as u64);
                    }
                }
            }
            Ok(Step::Skip { used }) => start += used,
            Ok(Step::NeedMore { need }) => {
                if eof {
                    if start < end || decoder.format() == "unknown" {
                        let what = if decoder.format() == "unknown" {
                            "file header"
                        } else {
                            "record"
                        };
                        error = Some(ReadError::Truncated {
                            offset: base + start as u64,
                            what,
                            need: need as u64,
                            have: (end - start) as u64,
                        });
                    }
                    break;
                }
                buf.copy_within(start..end, 0);
                base += start as u64;
                end -= start;
                start = 0;
                if need > buf.len() {
                    buf.resize(need, 0);
                }
                let n = file
                    .read(&mut buf[end..])
                    .with_context(|| format!("cannot read {}", path.display()))?;
                if n == 0 {
                    eof = true;
                }
                end += n;
            }
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    if !batch.is_empty() {
        tx.send(batch).context("flow tracking thread stopped")?;
    }
    Ok((decoder.format(), error))
}

fn to_json(results: &[FileResult], summary: &Summary) -> Value {
    let mut events = Vec::new();
    for r in results {
        for e in &r.analysis.analysis.events {
            let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
            if let Value::Object(map) = &mut v {
                map.insert("file".into(), json!(r.label));
            }
            events.push(v);
        }
    }
    let files: Vec<Value> = results
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(&r.analysis).unwrap_or(Value::Null);
            if let Value::Object(map) = &mut v {
                map.remove("events");
                map.insert("file".into(), json!(r.label));
                map.insert("error".into(), json!(r.error));
            }
            v
        })
        .collect();
    json!({
        "flows": summary.flows,
        "events": events,
        "summary": summary,
        "idle_timeout_s": summary.idle_timeout_s,
        "candidates": summary.candidates,
        "files": files,
    })
}

fn print_text(results: &[FileResult], summary: &Summary, flows: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for r in results {
        let a = &r.analysis;
        let st = &a.analysis.stats;
        writeln!(
            out,
            "{}: {}, {} packets ({} not TCP), {} flows, longest idle {}, {} keepalive probes ({} answered), {} retransmissions",
            r.label,
            a.format,
            a.packets,
            a.other_packets,
            st.flows,
            Human(st.max_idle_s),
            st.keepalive_probes,
            st.keepalive_answered,
            st.retransmissions
        )?;
        for e in a.analysis.events.iter().take(TEXT_EVENTS) {
            writeln!(out, "  {}", describe(e))?;
        }
        if a.analysis.events.len() > TEXT_EVENTS {
            writeln!(
                out,
                "  ... and {} more events (--json lists them all)",
                a.analysis.events.len() - TEXT_EVENTS
            )?;
        }
        if flows {
            for f in &a.analysis.notable_flows {
                let survived = f
                    .longest_survived_idle_s
                    .map(|s| Human(s).to_string())
                    .unwrap_or_else(|| "-".into());
                writeln!(
                    out,
                    "  flow {} -> {}: {} packets over {}, longest idle {}, longest survived idle {survived}, keepalive probes {} ({} answered), {} retransmissions, {} events",
                    f.client,
                    f.server,
                    f.packets,
                    Human(f.duration_s),
                    Human(f.max_idle_s),
                    f.keepalive_probes,
                    f.keepalive_answered,
                    f.retransmissions,
                    f.events
                )?;
            }
        }
        if let Some(err) = &r.error {
            writeln!(
                out,
                "  error: {err} (analysis above covers the readable part)"
            )?;
        }
    }
    writeln!(out)?;
    writeln!(out, "Verdict: {}", summary.verdict)?;
    if !summary.candidates.is_empty() {
        writeln!(out, "Catalog candidates:")?;
        for c in &summary.candidates {
            writeln!(
                out,
                "  {:<30} {:<20} {}",
                c.id,
                Human(c.timeout_s).to_string(),
                c.name
            )?;
            writeln!(out, "  {:<30} source: {}", "", c.source)?;
        }
    }
    Ok(())
}

fn describe(e: &Event) -> String {
    let role = |r: Role| match r {
        Role::Client => "client",
        Role::Server => "server",
    };
    let head = format!(
        "{} {} -> {} after {} idle",
        e.time,
        e.client,
        e.server,
        Human(e.idle_before_s)
    );
    let origin = match e.origin {
        Origin::Middlebox => "a middlebox",
        Origin::Endpoint => "the endpoint",
        Origin::Unknown => "unknown",
    };
    let why = e
        .evidence
        .as_ref()
        .map(|ev| format!(": {}", ev.reason))
        .unwrap_or_default();
    match e.kind {
        Kind::Reset => format!(
            "RESET      {head}: the {} spoke first, a RST with the {}'s address came from {origin}{why}",
            role(e.trigger),
            e.carries.map(role).unwrap_or("?")
        ),
        Kind::Blackhole => format!(
            "BLACKHOLE  {head}: the {} sent, retransmitted {} times, never acknowledged (silent drop)",
            role(e.trigger),
            e.retransmissions
        ),
        Kind::IdleClose => format!(
            "IDLE-CLOSE {head}: FIN with the {}'s address from {origin}{why}",
            e.carries.map(role).unwrap_or("?")
        ),
    }
}
