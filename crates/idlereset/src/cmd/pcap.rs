//! `idlereset pcap FILE...`: explain resets after idle, and resets of busy flows, in packet
//! captures. Wiring only: reading and analysis live in `idlereset_core::pcap` (the chunked,
//! damage-tolerant reader and the two-thread pipeline); this module opens files, shows
//! progress, renders text or JSON and maps the result to an exit code. Each file is analysed
//! on its own (TTLs differ per capture point); the verdict combines them.

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use idlereset_core::catalog::Catalog;
use idlereset_core::duration::{Human, parse_duration};
use idlereset_core::pcap::chunks::Damage;
use idlereset_core::pcap::events::{Event, Kind, Origin, Role};
use idlereset_core::pcap::flow::{Config, FlowStats, FlowSummary};
use idlereset_core::pcap::pipeline::analyse_reader;
use idlereset_core::pcap::spans::analyse_file;
use idlereset_core::pcap::summary::{Bracket, CandidateOut, Summary, summarise};
use idlereset_core::pcap::{Analyzer, FileAnalysis, ReadOutcome};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::app::Outcome;

/// Files above this size get a progress bar (when stdout is a terminal).
const PROGRESS_MIN_BYTES: u64 = 32 * 1024 * 1024;

const EXAMPLES: &str = "\
Examples:
  idlereset pcap client.pcap                      who reset the connections, after how much idle
  idlereset pcap any.pcapng server.pcap --json    several captures (tcpdump -i any works too)
  idlereset pcap lab.pcap --min-idle 1s           scaled lab captures with short idle gaps
  idlereset pcap db.pcap --flows                  also list idle / probed / failed flows
  idlereset pcap app.pcap --all                   also list endpoint resets of busy flows
  idlereset pcap --merge cap-*.pcap               rotated files (tcpdump -G 3600) as one capture
  zcat cap.pcap.gz | idlereset pcap -             a capture from standard input
  tcpdump -i any -s 128 -w idle.pcap 'tcp port 5432'   a capture that is enough for this

Events: reset, blackhole, idle-close (idle failures: they bound the idle timeout) and
active-reset (a middlebox reset a flow in use: state lost without idleness, not an idle
timeout). Damaged records are skipped and their byte ranges reported.

Exit status: 0 nothing found, 1 idle failures or middlebox resets of busy flows found,
2 unreadable capture, unsupported link type, or damage that makes the verdict unsafe
(everything readable is still analysed and reported).";

#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Capture files (pcap with micro- or nanosecond timestamps, or pcapng); `-` reads
    /// standard input
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Print one JSON object (`flows`, `events`, `summary`, ...) instead of text
    #[arg(long)]
    pub json: bool,
    /// Ignore idle gaps shorter than this (a middlebox RST on a flow that carried traffic
    /// within it is an `active-reset`, never an idle failure)
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
    /// Also report endpoint resets of busy flows (ordinary aborts) as `active-reset` events
    #[arg(long)]
    pub all: bool,
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
    /// Errors that make the file (or part of it) unreadable or the verdict unsafe.
    error: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let cfg = Config {
        min_idle_ns: u64::try_from(args.min_idle.as_nanos()).unwrap_or(u64::MAX),
        max_flows: usize::try_from(args.max_flows).unwrap_or(usize::MAX),
        all_resets: args.all,
        ..Config::default()
    };
    if args.files.iter().filter(|p| is_stdin(p)).count() > 1 {
        anyhow::bail!("`-` (standard input) can be given only once");
    }
    let catalog = Catalog::builtin()?;
    let progress = std::io::stdout().is_terminal();
    let groups: Vec<Vec<PathBuf>> = if args.merge {
        // One continuous capture cut into files: flows and idle gaps span the boundaries.
        vec![args.files.clone()]
    } else {
        args.files.iter().map(|p| vec![p.clone()]).collect()
    };
    let results: Vec<FileResult> = groups
        .iter()
        .map(|g| analyse_group(g, cfg, progress))
        .collect();
    let analyses: Vec<_> = results.iter().map(|r| &r.analysis.analysis).collect();
    let summary = summarise(&analyses, &catalog);
    if args.json {
        super::print_json(&JsonOut::new(&results, &summary))?;
    } else {
        print_text(&results, &summary, args.flows)?;
    }
    let errors: Vec<&str> = results.iter().filter_map(|r| r.error.as_deref()).collect();
    if !errors.is_empty() {
        anyhow::bail!("{}", errors.join("; "));
    }
    Ok(if summary.idle_failures > 0 || summary.active_resets > 0 {
        Outcome::Findings
    } else {
        Outcome::Clean
    })
}

/// `-`: standard input.
fn is_stdin(path: &std::path::Path) -> bool {
    path.as_os_str() == "-"
}

/// Analyse files as one capture (one file unless `--merge`).
fn analyse_group(paths: &[PathBuf], cfg: Config, progress: bool) -> FileResult {
    let mut analyzer = Analyzer::new(cfg);
    let mut outcomes = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        let name = path.display().to_string();
        let (a, mut outcome) = if is_stdin(path) {
            // A pipe: no size to show progress against.
            analyse_reader(std::io::stdin(), analyzer, &|_| {})
        } else {
            let file = match File::open(path) {
                Ok(f) => f,
                Err(e) => {
                    errors.push(format!("cannot open {name}: {e}"));
                    continue;
                }
            };
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            let bar = (progress && size >= PROGRESS_MIN_BYTES).then(|| progress_bar(&name, size));
            let read = analyse_file(&file, analyzer, &|pos| {
                if let Some(b) = &bar {
                    b.set_position(pos);
                }
            });
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            read
        };
        analyzer = a;
        outcome
            .damage
            .iter_mut()
            .for_each(|d| d.file.clone_from(&name));
        errors.extend(read_error(&name, &outcome));
        outcomes.push(outcome);
    }
    let reads: Vec<&ReadOutcome> = outcomes.iter().collect();
    let analysis = analyzer.finish(&reads);
    if analysis.verdict_unsafe {
        errors.push(format!(
            "{}: damaged ({} range(s), {} bytes skipped) in a way that makes the verdict unsafe",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" + "),
            analysis.damage.len(),
            analysis.damage.iter().map(|d| d.skipped).sum::<u64>()
        ));
    }
    FileResult {
        label: paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" + "),
        analysis,
        error: (!errors.is_empty()).then(|| errors.join("; ")),
    }
}

/// The error that makes a file unusable, if any.
fn read_error(name: &str, o: &ReadOutcome) -> Option<String> {
    if let Some(e) = &o.error {
        return Some(format!("{name}: {e}"));
    }
    o.no_supported_linktype.then(|| {
        format!(
            "{name}: link type {:?} is not supported (supported: Ethernet 1, Linux cooked SLL 113 and SLL2 276, raw IP 101/12/14/228/229, BSD loopback 0/108); re-capture with `tcpdump -i any` or on an Ethernet interface",
            o.unsupported_linktypes
        )
    })
}

fn progress_bar(name: &str, size: u64) -> ProgressBar {
    let bar = ProgressBar::new(size);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(name.to_string());
    bar
}

/// `pcap --json` (contract: docs/json.md).
#[derive(Serialize)]
struct JsonOut<'a> {
    flows: u64,
    events: Vec<JsonEvent<'a>>,
    summary: &'a Summary,
    idle_timeout_s: &'a Bracket,
    candidates: &'a [CandidateOut],
    files: Vec<JsonFile<'a>>,
}

#[derive(Serialize)]
struct JsonEvent<'a> {
    #[serde(flatten)]
    event: &'a Event,
    file: &'a str,
}

#[derive(Serialize)]
struct JsonFile<'a> {
    format: &'static str,
    packets: u64,
    other_packets: u64,
    stats: &'a FlowStats,
    longest_survived_idle_s: Option<f64>,
    notable_flows: &'a [FlowSummary],
    damage: &'a [Damage],
    notes: &'a [String],
    verdict_unsafe: bool,
    file: &'a str,
    error: Option<&'a str>,
}

impl<'a> JsonOut<'a> {
    fn new(results: &'a [FileResult], summary: &'a Summary) -> JsonOut<'a> {
        let events = results
            .iter()
            .flat_map(|r| {
                r.analysis.analysis.events.iter().map(|event| JsonEvent {
                    event,
                    file: &r.label,
                })
            })
            .collect();
        let files = results
            .iter()
            .map(|r| {
                let a = &r.analysis;
                JsonFile {
                    format: a.format,
                    packets: a.packets,
                    other_packets: a.other_packets,
                    stats: &a.analysis.stats,
                    longest_survived_idle_s: a.analysis.longest_survived_idle_s,
                    notable_flows: &a.analysis.notable_flows,
                    damage: &a.damage,
                    notes: &a.notes,
                    verdict_unsafe: a.verdict_unsafe,
                    file: &r.label,
                    error: r.error.as_deref(),
                }
            })
            .collect();
        JsonOut {
            flows: summary.flows,
            events,
            summary,
            idle_timeout_s: &summary.idle_timeout_s,
            candidates: &summary.candidates,
            files,
        }
    }
}

fn print_text(results: &[FileResult], summary: &Summary, flows: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for r in results {
        print_file(&mut out, r, flows)?;
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

fn print_file(out: &mut impl Write, r: &FileResult, flows: bool) -> anyhow::Result<()> {
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
        for extra in [
            &e.reading,
            &e.route_change.as_ref().map(|c| c.note.clone()),
            &e.damage,
        ]
        .into_iter()
        .flatten()
        {
            writeln!(out, "             {extra}")?;
        }
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
            print_flow(out, f)?;
        }
    }
    for d in &a.damage {
        writeln!(
            out,
            "  damaged: {} byte offset {}, {} bytes skipped: {}",
            d.file, d.offset, d.skipped, d.reason
        )?;
    }
    for n in &a.notes {
        writeln!(out, "  note: {n}")?;
    }
    if let Some(err) = &r.error {
        writeln!(
            out,
            "  error: {err} (analysis above covers the readable part)"
        )?;
    }
    Ok(())
}

fn print_flow(out: &mut impl Write, f: &FlowSummary) -> anyhow::Result<()> {
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
    let carries = e.carries.map(role).unwrap_or("?");
    match e.kind {
        Kind::Reset => format!(
            "RESET        {head}: the {} spoke first, a RST with the {carries}'s address came from {origin}{why}",
            role(e.trigger),
        ),
        Kind::Blackhole => format!(
            "BLACKHOLE    {head}: the {} sent, retransmitted {} times, never acknowledged (silent drop)",
            role(e.trigger),
            e.retransmissions
        ),
        Kind::IdleClose => {
            format!("IDLE-CLOSE   {head}: FIN with the {carries}'s address from {origin}{why}")
        }
        Kind::ActiveReset => {
            let busy = e
                .last_minute
                .map(|m| format!(" ({} packets in the last minute)", m.packets))
                .unwrap_or_default();
            format!(
                "ACTIVE-RESET {head}{busy}: a RST with the {carries}'s address came from {origin}{why}"
            )
        }
    }
}
