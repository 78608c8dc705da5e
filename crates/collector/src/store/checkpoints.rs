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
}
