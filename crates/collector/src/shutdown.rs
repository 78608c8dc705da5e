//! The process's one signal handler: SIGINT or SIGTERM cancels the process's token, which
//! every source, stream, output and the console hold a child of.

use tokio_util::sync::CancellationToken;

/// Cancels `token` on the first SIGINT or SIGTERM.
pub fn on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                        () = token.cancelled() => return,
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGTERM");
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        () = token.cancelled() => return,
                    }
                }
            }
        }
        #[cfg(not(unix))]
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = token.cancelled() => return,
        }
        tracing::info!("shutting down: committing in-flight pages");
        token.cancel();
    });
}
