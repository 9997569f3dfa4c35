//! `lab exec` and `lab capture`: use a lab host's namespace from the outside.

use std::time::{Duration, Instant};

use idlereset_linux::NetNs;
use idlereset_linux::capture::CaptureToFile;

use crate::app::Outcome;
use nix::sys::signal::Signal;

use crate::cmd::signals::{Stop, run_cancellable};

// Runs the command inside the host's namespace; SIGINT, SIGTERM and SIGHUP sent to `lab exec`
// are forwarded to it, and `lab exec` exits with its exit code (2 when it died of a signal).
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  idlereset lab exec app -- ping -c1 198.18.2.10
  idlereset lab exec fw --lab idlereset-3fa9c1 -- cat /proc/sys/net/netfilter/nf_conntrack_count
  idlereset lab exec app -- idlereset audit --path-timeout 900

SIGINT, SIGTERM and SIGHUP are forwarded to the command; the exit code is the command's
(2 when it was killed by a signal).")]
pub struct ExecArgs {
    /// Host: app, r1..rN, fw, db
    pub host: String,
    /// Lab (default: the only one)
    #[arg(long)]
    pub lab: Option<String>,
    /// Command and arguments
    #[arg(last = true, required = true)]
    pub cmd: Vec<String>,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  idlereset lab capture app idlereset-fw --out /tmp/app.pcap            until Ctrl-C
  idlereset lab capture fw idlereset-db --out /tmp/fw-db.pcap --duration 30s
  idlereset lab capture app any --out /tmp/any.pcap --count 100        Linux cooked headers")]
pub struct CaptureArgs {
    /// Host: app, r1..rN, fw, db
    pub host: String,
    /// Interface inside the host (e.g. idlereset-fw), or `any`
    pub iface: String,
    /// pcap file to write
    #[arg(long, value_name = "FILE")]
    pub out: std::path::PathBuf,
    /// Lab (default: the only one)
    #[arg(long)]
    pub lab: Option<String>,
    /// Stop after this long
    #[arg(long, value_parser = |s: &str| idlereset_core::duration::parse_duration(s).map_err(|e| e.to_string()))]
    pub duration: Option<Duration>,
    /// Stop after this many frames
    #[arg(long)]
    pub count: Option<u64>,
}

fn host_ns(lab: Option<&str>, host: &str) -> anyhow::Result<NetNs> {
    let lab = super::pick_lab(lab)?;
    NetNs::open(&format!("{lab}-{host}"))
        .map_err(|e| anyhow::anyhow!("lab {lab} has no host {host:?} ({e})"))
}

pub fn exec(a: ExecArgs) -> anyhow::Result<Outcome> {
    let ns = host_ns(a.lab.as_deref(), &a.host)?;
    let (prog, args) = a
        .cmd
        .split_first()
        .ok_or_else(|| anyhow::anyhow!("no command given"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Handlers first: a signal from now on is forwarded to the child, never kills this process
    // and orphans it.
    let mut stop = {
        let _guard = rt.enter();
        Stop::install()?
    };
    let mut child = ns
        .run(|| std::process::Command::new(prog).args(args).spawn())?
        .map_err(|e| anyhow::anyhow!("cannot run {prog:?} in {}: {e}", ns.name()))?;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let status = rt.block_on(async {
        loop {
            if let Some(st) = child.try_wait()? {
                return Ok::<_, std::io::Error>(st);
            }
            tokio::select! {
                sig = stop.recv() => {
                    let sig = match sig {
                        "SIGINT" => Signal::SIGINT,
                        "SIGHUP" => Signal::SIGHUP,
                        _ => Signal::SIGTERM,
                    };
                    let _ = nix::sys::signal::kill(pid, sig);
                }
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    })?;
    std::process::exit(status.code().unwrap_or(2));
}

pub fn capture(a: CaptureArgs) -> anyhow::Result<Outcome> {
    let ns = host_ns(a.lab.as_deref(), &a.host)?;
    let file = std::fs::File::create(&a.out)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", a.out.display()))?;
    let cap = CaptureToFile::start(&ns, &a.iface, file)?;
    eprintln!(
        "idlereset: capturing {}/{} into {} (Ctrl-C to stop)",
        ns.name(),
        a.iface,
        a.out.display()
    );
    let started = Instant::now();
    let (duration, count) = (a.duration, a.count);
    let _ = run_cancellable(async {
        loop {
            if duration.is_some_and(|d| started.elapsed() >= d)
                || count.is_some_and(|c| cap.frames() >= c)
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let n = cap.finish()?;
    eprintln!("idlereset: wrote {n} frames to {}", a.out.display());
    Ok(Outcome::Clean)
}
