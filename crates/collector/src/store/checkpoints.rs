//! Checkpoints: each stream's committed position, written only with a page
//! ([`Batch::checkpoint`](super::Batch)), read here.

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError};

impl Store {
    /// The stream's committed checkpoint, if any.
    pub async fn checkpoint(
        &self,
        source: &str,
        stream: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.checkpoint(source, stream).await;
        }
        let (source, stream) = (source.to_string(), stream.to_string());
        self.read(move |c| {
            let raw: Option<String> = c
                .query_row(
                    "SELECT value FROM checkpoints WHERE source = ?1 AND stream = ?2",
                    params![source, stream],
                    |r| r.get(0),
                )
                .optional()?;
            raw.map(|s| {
                serde_json::from_str(&s).map_err(|e| StoreError::BadCheckpoint {
                    source_name: source.clone(),
                    stream: stream.clone(),
                    message: e.to_string(),
                })
            })
            .transpose()
        })
        .await
    }

    /// The newest time of the stream's stored events that is not after `at_most` (ms): what a
    /// high-water mark that a future-dated record once moved too far is brought back to.
    pub async fn latest_event_at(
        &self,
        source: &str,
        stream: &str,
        at_most: i64,
    ) -> Result<Option<i64>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.latest_event_at(source, stream, at_most).await;
        }
        let (source, stream) = (source.to_string(), stream.to_string());
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT occurred_at FROM events
                 WHERE source = ?1 AND occurred_at <= ?3 AND stream = ?2
                 ORDER BY occurred_at DESC LIMIT 1",
            )?
            .query_row(params![source, stream, at_most], |r| r.get(0))
            .optional()?)
        })
        .await
    }
}
