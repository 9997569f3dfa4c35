//! The live reset pipeline's threads, shared by `watch` and `exporter`: a sampler thread (in
//! the sampled namespace) feeding core's `live::IdleCache` through the real host, and the event
//! readers (tracefs tracepoints, or sock_diag destroy events) whose resets are joined with it.
//! The joining, the cache, the destroy-event reset test and the reading are core's
//! (`idlereset_core::live`, tested over the fake host and fixtures); this module only runs them
//! on threads against the kernel, so the binary only wires.
//!
//! Tracepoints fire for every network namespace and do not say which; the sampler reads one
//! namespace (`--netns`), so events of other namespaces are reported with an unknown idle age.
//! Timestamps: the tracefs instance uses the `mono` clock and the sampler `CLOCK_MONOTONIC`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use idlereset_core::host::{HostError, HostSource};
use idlereset_core::live::{DestroyGate, destroyed_reset, reset_counters, sample_once};
pub use idlereset_core::live::{IdleCache, Joined};

use crate::NetNs;
use crate::host::{LinuxHost, host_err};
use crate::tracefs;

/// Sampling period of the socket table.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(200);

/// Sample the sockets of `netns` (or this namespace) every [`SAMPLE_EVERY`] until `stop`.
pub fn spawn_sampler(
    netns: Option<String>,
    cache: Arc<Mutex<IdleCache>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Result<(), String>> {
    std::thread::spawn(move || {
        let work = || -> Result<(), String> {
            let mut host = LinuxHost::new();
            let mut last_err = None;
            while !stop.load(Ordering::Relaxed) {
                if let Err(e) = sample_once(&mut host, &cache) {
                    let e = e.to_string();
                    if last_err.as_ref() != Some(&e) {
                        eprintln!("idlereset: socket sampler: {e}");
                    }
                    last_err = Some(e);
                }
                std::thread::sleep(SAMPLE_EVERY);
            }
            Ok(())
        };
        match netns {
            Some(name) => {
                let ns = NetNs::open(&name).map_err(|e| e.to_string())?;
                ns.run(work).map_err(|e| e.to_string())?
            }
            None => work(),
        }
    })
}

/// Read reset events from the tracepoints until `stop`, joining each with the cache and handing
/// it to `on_event`. Creating the tracefs instance is the caller's first error to report.
pub fn run_events(
    cache: &Mutex<IdleCache>,
    stop: &AtomicBool,
    mut on_event: impl FnMut(Joined),
) -> Result<(), HostError> {
    LinuxHost::new().reset_events(stop, &mut |ev| {
        let joined = match cache.lock() {
            Ok(c) => c.join(&ev, ev.mono_s),
            Err(_) => return,
        };
        on_event(joined);
    })
}

/// Reset counters of the calling thread's namespace (see core's `live::reset_counters`).
fn read_reset_counters() -> Option<(u64, u64)> {
    LinuxHost::new().netstat().ok().map(|c| reset_counters(&c))
}

/// The fallback where tracefs is unavailable: sockets destroyed in `netns` (sock_diag destroy
/// multicast), kept as resets when the namespace's reset counters (EstabResets, TCPAbortOnData,
/// TCPAbortOnTimeout) rose since the previous event; `sent` when OutRsts rose too. The idle age
/// is the gap that the socket's last send (from its final tcp_info) ended, looked up in the
/// sampler's cache. Reported when the owner closes the socket, so slower than the tracepoints.
pub fn run_destroy_events(
    netns: Option<String>,
    cache: &Mutex<IdleCache>,
    stop: &AtomicBool,
    mut on_event: impl FnMut(Joined) + Send,
) -> Result<(), HostError> {
    let mut work = move || {
        let mut gate = DestroyGate::new(read_reset_counters());
        crate::sockdiag::destroy::watch_destroyed(stop, |s| {
            if s.remote.port() == 0 {
                return;
            }
            let Some(direction) = gate.judge(read_reset_counters()) else {
                return;
            };
            let (ev, sent_at) = destroyed_reset(
                tracefs::monotonic_s(),
                direction,
                s.local,
                s.remote,
                s.last_data_sent_ms,
            );
            let joined = match cache.lock() {
                Ok(c) => c.join(&ev, sent_at),
                Err(_) => return,
            };
            on_event(joined);
        })
    };
    let err = |e| host_err("sock_diag destroy events", &e);
    match netns {
        Some(name) => NetNs::open(&name)
            .map_err(err)?
            .run(work)
            .map_err(err)?
            .map_err(err),
        None => work().map_err(err),
    }
}
