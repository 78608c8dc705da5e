//! Signals between replicas, through PostgreSQL's `LISTEN`/`NOTIFY`.
//!
//! Every replica serves the console, but a source is collected by the replica holding its
//! lease. A console edit on any replica notifies `changed` (every replica reconciles its
//! sources with the store); "Sync now" notifies `sync` with the source and stream, and the
//! replica that holds the source wakes the stream. Notifications are sent in their own
//! statement after the change committed, and delivered only to sessions listening then, so a
//! replica whose listening connection drops reconnects and reconciles once (it may have
//! missed some); the periodic reconcile covers the rest.
//!
//! The channel is per schema (`kandji_collector` on the default one), so stores that share a
//! database never hear each other.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;

use super::super::StoreError;
use super::PgStore;

/// What another replica asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// Sources changed (or a notification may have been missed): reconcile.
    Changed,
    /// "Sync now" for a source, one stream or all.
    Sync {
        source: String,
        stream: Option<String>,
    },
}

impl Signal {
    fn payload(&self) -> String {
        match self {
            Signal::Changed => "changed".into(),
            Signal::Sync { source, stream } => {
                format!("sync\t{source}\t{}", stream.as_deref().unwrap_or(""))
            }
        }
    }

    fn parse(p: &str) -> Option<Signal> {
        let mut it = p.split('\t');
        match it.next()? {
            "changed" => Some(Signal::Changed),
            "sync" => {
                let source = it.next()?.to_string();
                let stream = it.next().filter(|s| !s.is_empty()).map(str::to_string);
                Some(Signal::Sync { source, stream })
            }
            _ => None,
        }
    }
}

impl PgStore {
    fn channel(&self) -> String {
        match &self.schema {
            Some(s) => format!("kandji_collector_{s}"),
            None => "kandji_collector".into(),
        }
    }

    /// Tells every replica (this one included).
    pub async fn notify(&self, signal: &Signal) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.execute(
            "SELECT pg_notify($1, $2)",
            &[&self.channel(), &signal.payload()],
        )
        .await
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// [`PgStore::notify`] of [`Signal::Changed`], logged rather than failed: the change is
    /// committed, and replicas reconcile on their own every 30 s.
    pub(crate) async fn notify_changed(&self) {
        if let Err(error) = self.notify(&Signal::Changed).await {
            tracing::warn!(%error, "telling the other replicas of a change failed; they pick it up within 30 s");
        }
    }

    /// Listens on a connection of its own until `stop`, reconnecting with backoff; each
    /// (re)connection first yields [`Signal::Changed`].
    pub fn listen(&self, stop: CancellationToken) -> mpsc::Receiver<Signal> {
        let (tx, rx) = mpsc::channel(256);
        let store = self.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(200);
            loop {
                let r = tokio::select! {
                    r = store.listen_once(&tx) => r,
                    () = stop.cancelled() => return,
                };
                if tx.is_closed() {
                    return;
                }
                match r {
                    Ok(()) => backoff = Duration::from_millis(200),
                    Err(error) => {
                        tracing::warn!(%error, "the LISTEN connection failed; reconnecting");
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stop.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        });
        rx
    }

    async fn listen_once(&self, tx: &mpsc::Sender<Signal>) -> Result<(), StoreError> {
        let (client, mut conn) = self.config.connect(NoTls).await.map_err(|e| self.err(e))?;
        let (msg_tx, mut msg_rx) = mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
            while let Some(m) = messages.next().await {
                match m {
                    Ok(AsyncMessage::Notification(n)) => {
                        if msg_tx.send(n.payload().to_string()).is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::debug!(%error, "LISTEN connection closed");
                        break;
                    }
                }
            }
        });
        // `channel()` is built from a checked identifier (`valid_schema`).
        client
            .batch_execute(&format!("LISTEN {}", self.channel()))
            .await
            .map_err(|e| self.err(e))?;
        if tx.send(Signal::Changed).await.is_err() {
            driver.abort();
            return Ok(());
        }
        while let Some(p) = msg_rx.recv().await {
            if let Some(s) = Signal::parse(&p)
                && tx.send(s).await.is_err()
            {
                break;
            }
        }
        driver.abort();
        drop(client);
        Err(StoreError::Postgres {
            url: self.url.clone(),
            message: "the LISTEN connection closed".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_round_trip() {
        for s in [
            Signal::Changed,
            Signal::Sync {
                source: "acme".into(),
                stream: Some("devices".into()),
            },
            Signal::Sync {
                source: "acme".into(),
                stream: None,
            },
        ] {
            assert_eq!(Signal::parse(&s.payload()), Some(s));
        }
        assert_eq!(Signal::parse("nonsense"), None);
    }
}
