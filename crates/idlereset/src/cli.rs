//! The command line: one clap definition per subcommand, each in its own `cmd` module.
//! Completions and the man page are generated from this same definition.

use clap::{Parser, Subcommand};

use crate::cmd;

const ABOUT: &str = "From 'Connection reset by peer' after idle to a verified fix.";

const EXAMPLES: &str = "\
Examples:
  idlereset demo                                  reproduce, explain and fix the incident in a lab
  idlereset lab reproduce --preset firewall-900   replay the 900 s firewall incident, scaled
  idlereset lab up && idlereset lab status        a lab that stays up for your own experiments
  idlereset replay seed.md --answers B,B,D        play an incident-replay exercise
  idlereset audit --path-timeout 350              sockets, processes, settings a 350 s timeout cuts
  idlereset catalog                               documented idle timeouts, with sources
  idlereset completions bash > /etc/bash_completion.d/idlereset";

#[derive(Debug, Parser)]
#[command(name = "idlereset", version, about = ABOUT, long_about = None, after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Reproduce the idle-reset incident on the real kernel, explain it, fix it, verify the fix
    Demo(cmd::demo::Args),
    /// Real-kernel lab: app / fw / db hosts in network namespaces with nftables + conntrack
    #[command(subcommand)]
    Lab(Box<cmd::lab::LabCommand>),
    /// Play an incident-replay exercise (built-in, TOML, or the seed's markdown format)
    Replay(cmd::replay::Args),
    /// Measure a path's idle timeout and how it fails (reset, blackhole, fin), against any TCP server
    Probe(cmd::probe::Args),
    /// Cooperating responder for `probe --reverse` (server-to-client idle expiry)
    Listen(cmd::listen::Args),
    /// Find reset events in application logs: period, drift, idle bracket, catalog matches
    Logs(cmd::logs::Args),
    /// Explain resets in packet captures: who sent the RST, after how much idle
    Pcap(cmd::pcap::Args),
    /// Find the sockets, processes and settings on a host that an idle timeout will cut
    Audit(cmd::audit::Args),
    /// Dump a namespace's conntrack table: states, timers left, NAT, counters, statistics
    Conntrack(cmd::conntrack::Args),
    /// Serve Prometheus metrics: conntrack, sockets at risk, reset counters, reset idle ages
    Exporter(cmd::exporter::Args),
    /// Live stream of TCP resets sent and received, with idle age, process and a reading
    Watch(cmd::watch::Args),
    /// List documented idle timeouts of middleboxes and client defaults, with sources
    Catalog(cmd::catalog::Args),
    /// Compute keepalive / pool / firewall settings that fit a whole path
    Plan(cmd::plan::Args),
    /// Run the runbook on this host: logs, packets, path timeout, keepalive, sockets; verdict and fix
    Triage(cmd::triage::Args),
    /// Prove a plan in the lab: the inventory's path, planned vs current settings, real idle
    Verify(cmd::verify::Args),
    /// Print shell completions (bash, zsh, fish, elvish, powershell)
    Completions(cmd::completions::Args),
    /// Print the man page (roff) generated from the command-line definition
    Man,
}
