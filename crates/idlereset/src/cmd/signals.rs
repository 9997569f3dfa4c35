//! Ctrl-C and SIGTERM as a future, so long-running commands can stop cleanly: dropping the work
//! future drops the lab it owns, which removes every namespace, link and table it created.

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// Run `fut` on a fresh runtime; Ctrl-C / SIGTERM cancels it (dropping it, which cleans up) and
/// turns into an "interrupted" error.
pub fn run_cancellable<T>(
    fut: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        tokio::select! {
            r = fut => r,
            _ = shutdown() => Err(anyhow::anyhow!("interrupted; the lab was cleaned up")),
        }
    })
}
