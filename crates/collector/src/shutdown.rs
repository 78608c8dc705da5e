//! The process's one signal handler: SIGINT or SIGTERM flips the shutdown flag that every
//! source, stream, output and the console watch.

use tokio::sync::watch;

/// Flips `tx` to `true` on the first SIGINT or SIGTERM.
pub fn on_signals(tx: watch::Sender<bool>) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGTERM");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down: committing in-flight pages");
        let _ = tx.send(true);
    });
}
