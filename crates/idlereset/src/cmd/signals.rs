//! Ctrl-C, SIGTERM and SIGHUP as a future, so long-running commands can stop cleanly: dropping
//! the work future drops the lab it owns, which removes every namespace, link and table it
//! created.
//!
//! The handlers are installed before the work future is first polled: a signal that arrives
//! while the first namespace is being created is caught too, and a command interrupted by a
//! signal always ends with the "interrupted" error (exit code 2), never with a success.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// The signals that stop a command, with their handlers already installed.
pub struct Stop {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Stop {
    /// Install handlers for SIGINT, SIGTERM and SIGHUP (needs a tokio runtime context).
    pub fn install() -> std::io::Result<Stop> {
        Ok(Stop {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Completes with the signal's name when one of them arrives.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}

/// Completes on SIGINT, SIGTERM or SIGHUP (handlers installed on first poll; prefer
/// [`Stop::install`] when the moment of installation matters).
pub async fn shutdown() {
    match Stop::install() {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending::<()>().await,
    }
}

/// The error a command returns after a signal stopped it (exit code 2).
pub fn interrupted(sig: &str) -> anyhow::Error {
    anyhow::anyhow!("interrupted by {sig}; the lab was cleaned up")
}

/// A fresh runtime with the stop signals' handlers already installed.
fn runtime_with_stop() -> anyhow::Result<(tokio::runtime::Runtime, Stop)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let stop = {
        let _guard = rt.enter();
        Stop::install()?
    };
    Ok((rt, stop))
}

/// Run `fut` on a fresh runtime; SIGINT / SIGTERM / SIGHUP cancels it (dropping it, which cleans
/// up) and turns into an "interrupted" error. The handlers are in place before `fut` starts.
pub fn run_cancellable<T>(
    fut: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let (rt, mut stop) = runtime_with_stop()?;
    rt.block_on(async {
        tokio::select! {
            biased;
            sig = stop.recv() => Err(interrupted(sig)),
            r = fut => r,
        }
    })
}

/// Run `work` on a fresh runtime and hand it a future that completes on SIGINT / SIGTERM /
/// SIGHUP, for work that must stop gracefully (restore a route, stop a database) instead of
/// being dropped. Once a signal arrived the result is the "interrupted" error (exit code 2),
/// whatever the work returned, unless the work itself failed.
pub fn run_graceful<T, F, Fut>(work: F) -> anyhow::Result<T>
where
    F: FnOnce(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let (rt, mut stop) = runtime_with_stop()?;
    rt.block_on(async {
        let (tx, rx) = tokio::sync::watch::channel(None::<&'static str>);
        let listener = tokio::spawn(async move {
            let sig = stop.recv().await;
            let _ = tx.send(Some(sig));
        });
        let mut wait = rx.clone();
        let cancel = Box::pin(async move {
            let _ = wait.wait_for(Option::is_some).await;
        });
        let r = work(cancel).await;
        listener.abort();
        let sig = *rx.borrow();
        match (r, sig) {
            (Err(e), _) => Err(e),
            (Ok(_), Some(sig)) => Err(interrupted(sig)),
            (Ok(v), None) => Ok(v),
        }
    })
}
