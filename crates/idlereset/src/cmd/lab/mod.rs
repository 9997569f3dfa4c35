//! `idlereset lab ...`: the real-kernel lab.

pub mod args;
mod exec;
mod fault;
mod frozen;
pub mod report;
mod reproduce;
mod up;

use crate::app::Outcome;

const LAB_EXAMPLES: &str = "\
Examples:
  idlereset lab reproduce --preset firewall-900            the seed's incident, scaled 100x
  idlereset lab reproduce --preset firewall-900 --keepalive-time 300 --keepalive-intvl 60
  idlereset lab up --profile nat --fw-timeout 15m --time-scale 100
  idlereset lab status --json
  idlereset lab exec app -- ping -c1 198.18.2.10
  idlereset lab capture app idlereset-fw --out /tmp/app.pcap
  idlereset lab fault asymmetric --for 8                   db -> app around the firewall for 8 s
  idlereset lab down --all";

#[derive(Debug, clap::Subcommand)]
#[command(after_help = LAB_EXAMPLES)]
pub enum LabCommand {
    /// Build a lab (app / fw / db namespaces) and keep it running with a pooled workload
    Up(up::UpArgs),
    /// Remove a lab, or with --all every lab left behind (also after a crash)
    Down(up::DownArgs),
    /// Show labs: hosts, addresses, firewall settings, conntrack entries, pool statistics
    Status(up::StatusArgs),
    /// Run a command inside a lab host's network namespace
    Exec(exec::ExecArgs),
    /// Capture a lab interface to a pcap file (AF_PACKET), also while a scenario runs
    Capture(exec::CaptureArgs),
    /// Run an incident end to end and print the timeline and a verdict
    Reproduce(reproduce::ReproduceArgs),
    /// Inject a fault into a running lab (asymmetric: a path around the firewall)
    #[command(subcommand)]
    Fault(fault::FaultKind),
    /// (internal) the detached supervisor of `lab up`
    #[command(hide = true)]
    Supervise(up::SuperviseArgs),
}

pub fn run(cmd: LabCommand) -> anyhow::Result<Outcome> {
    match cmd {
        LabCommand::Up(a) => up::up(a),
        LabCommand::Down(a) => up::down(a),
        LabCommand::Status(a) => up::status(a),
        LabCommand::Exec(a) => exec::exec(a),
        LabCommand::Capture(a) => exec::capture(a),
        LabCommand::Reproduce(a) => reproduce::run(a),
        LabCommand::Fault(k) => fault::run(k),
        LabCommand::Supervise(a) => up::supervise(a),
    }
}

/// The lab to act on: the named one, or the only one there is.
pub fn pick_lab(name: Option<&str>) -> anyhow::Result<String> {
    if let Some(n) = name {
        return Ok(n.to_string());
    }
    let labs = idlereset_lab::registry::list();
    match labs.as_slice() {
        [one] => Ok(one.name.clone()),
        [] => anyhow::bail!("no lab is running (start one with `idlereset lab up`)"),
        many => anyhow::bail!(
            "several labs are running; name one with --lab: {}",
            many.iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
