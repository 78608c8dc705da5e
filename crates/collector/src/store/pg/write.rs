//! The fenced write path: one [`Batch`] in one transaction, under its source's lease.
//!
//! The transaction first locks the source's `leases` row (`FOR UPDATE`) and compares the
//! fencing token with the caller's [`Lease`]: a different token or owner means another
//! replica has taken the source, and the commit is refused before it writes anything
//! ([`StoreError::Fenced`]). Holding that lock to the commit also serializes a source's
//! commits, so `seq` order is commit order within a source (see `migrations.rs`), and a
//! takeover waits for a commit in flight instead of racing it.
//!
//! The rules are SQLite's (`store/write.rs`): an event inserts once per (source, stream,
//! uid); collected again it keeps its newest state (`updated`) or, unchanged, counts as a
//! duplicate; each new version gets an outbox row; the checkpoint replaces the stream's, or
//! one key of it (`checkpoint_key`); records count into the hour's sample.
//!
//! Inventory rows (upserts, sweep ends, app installs, the refresh queue) are SQLite-only for
//! now: a batch that carries them is refused whole with [`StoreError::Invalid`], never
//! half-written.

use super::super::write::stable_hash;
use super::super::{Batch, BatchOutcome, StoreError};
use super::{Lease, PgStore};

impl PgStore {
    /// Commits one page under `lease`: everything, or nothing.
    pub async fn commit_page(
        &self,
        lease: &Lease,
        batch: &Batch,
    ) -> Result<BatchOutcome, StoreError> {
        if lease.source != batch.source {
            return Err(StoreError::Invalid(format!(
                "a batch of source {} under the lease of {}",
                batch.source, lease.source
            )));
        }
        if !batch.upserts.is_empty()
            || !batch.apps.is_empty()
            || !batch.sweep_ends.is_empty()
            || !batch.refresh.is_empty()
            || !batch.refreshed.is_empty()
        {
            return Err(StoreError::Invalid(format!(
                "{}/{}: the PostgreSQL store holds events and checkpoints; inventory rows are not supported on it yet",
                batch.source, batch.stream
            )));
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        let row = tx
            .query_opt(
                "SELECT owner, fencing_token FROM leases WHERE source = $1 FOR UPDATE",
                &[&batch.source],
            )
            .await
            .map_err(|e| self.err(e))?;
        let (owner, token): (Option<String>, i64) = match &row {
            Some(r) => (r.get(0), r.get(1)),
            None => (None, 0),
        };
        if owner.as_deref() != Some(lease.owner.as_str()) || token != lease.token {
            // Dropping `tx` rolls back; nothing was written.
            return Err(StoreError::Fenced {
                source_name: batch.source.clone(),
                held: lease.token,
                current: token,
                owner,
            });
        }
        let mut out = BatchOutcome::default();
        let insert = tx
            .prepare_cached(
                "INSERT INTO events (source, stream, category, event_type, uid, occurred_at,
                    device_id, user_id, severity, summary, raw, hash, collected_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::TEXT::JSON, $12, $13, $13)
                 ON CONFLICT (source, stream, uid) DO NOTHING
                 RETURNING seq",
            )
            .await
            .map_err(|e| self.err(e))?;
        let update = tx
            .prepare_cached(
                "UPDATE events SET raw = $4::TEXT::JSON, summary = $5, severity = $6, hash = $7,
                    updated_at = $8, event_type = $9
                 WHERE source = $1 AND stream = $2 AND uid = $3 AND hash != $7
                 RETURNING seq",
            )
            .await
            .map_err(|e| self.err(e))?;
        let outbox = tx
            .prepare_cached("INSERT INTO outbox (source, tbl, ref) VALUES ($1, 'events', $2)")
            .await
            .map_err(|e| self.err(e))?;
        for ev in &batch.events {
            // Stored as `JSON`, which keeps the text as collected (JSONB would reorder keys):
            // checked here for an error that names the event.
            serde_json::from_str::<serde::de::IgnoredAny>(&ev.raw).map_err(|e| {
                StoreError::Invalid(format!(
                    "{}/{}: event {} is not JSON: {e}",
                    batch.source, batch.stream, ev.uid
                ))
            })?;
            let raw = &ev.raw;
            let hash = stable_hash(ev.raw.as_bytes());
            let category = ev.category.to_string();
            let inserted = tx
                .query_opt(
                    &insert,
                    &[
                        &batch.source,
                        &batch.stream,
                        &category,
                        &ev.event_type,
                        &ev.uid,
                        &ev.occurred_at,
                        &ev.device_id,
                        &ev.user_id,
                        &ev.severity,
                        &ev.summary,
                        raw,
                        &hash,
                        &batch.now,
                    ],
                )
                .await
                .map_err(|e| self.err(e))?;
            let seq: Option<i64> = match inserted {
                Some(r) => {
                    out.events_inserted += 1;
                    Some(r.get(0))
                }
                None => {
                    let updated = tx
                        .query_opt(
                            &update,
                            &[
                                &batch.source,
                                &batch.stream,
                                &ev.uid,
                                raw,
                                &ev.summary,
                                &ev.severity,
                                &hash,
                                &batch.now,
                                &ev.event_type,
                            ],
                        )
                        .await
                        .map_err(|e| self.err(e))?;
                    match updated {
                        Some(r) => {
                            out.events_updated += 1;
                            Some(r.get(0))
                        }
                        None => {
                            out.events_duplicate += 1;
                            None
                        }
                    }
                }
            };
            if let Some(seq) = seq {
                tx.execute(&outbox, &[&batch.source, &seq.to_string()])
                    .await
                    .map_err(|e| self.err(e))?;
            }
        }
        if let Some(cp) = &batch.checkpoint {
            let value = match &batch.checkpoint_key {
                None => cp.clone(),
                Some(k) => {
                    let old: Option<serde_json::Value> = tx
                        .query_opt(
                            "SELECT value FROM checkpoints WHERE source = $1 AND stream = $2",
                            &[&batch.source, &batch.stream],
                        )
                        .await
                        .map_err(|e| self.err(e))?
                        .map(|r| r.get(0));
                    let mut all = old
                        .filter(serde_json::Value::is_object)
                        .unwrap_or_else(|| serde_json::json!({}));
                    all[k.as_str()] = cp.clone();
                    all
                }
            };
            tx.execute(
                "INSERT INTO checkpoints (source, stream, value, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (source, stream) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                &[&batch.source, &batch.stream, &value, &batch.collected_at],
            )
            .await
            .map_err(|e| self.err(e))?;
        }
        let records = out.records() as i64;
        if records > 0 {
            let hour = batch.collected_at.div_euclid(3_600_000) * 3_600_000;
            let category = batch.record_category.to_string();
            tx.execute(
                "INSERT INTO record_samples (source, hour, category, records) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (source, hour, category) DO UPDATE SET records = record_samples.records + excluded.records",
                &[&batch.source, &hour, &category, &records],
            )
            .await
            .map_err(|e| self.err(e))?;
        }
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(out)
    }

    /// Records this hour's budget use of a source under its lease (the highest count seen
    /// this hour wins, as in SQLite), so the next owner starts from it.
    pub async fn record_budget_sample(
        &self,
        lease: &Lease,
        hour: i64,
        requests: u64,
        limit_hour: u64,
        share: u64,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        let ok = tx
            .query_opt(
                "SELECT 1 FROM leases WHERE source = $1 AND owner = $2 AND fencing_token = $3 FOR UPDATE",
                &[&lease.source, &lease.owner, &lease.token],
            )
            .await
            .map_err(|e| self.err(e))?;
        if ok.is_none() {
            let current = self
                .leases()
                .await?
                .into_iter()
                .find(|l| l.source == lease.source);
            return Err(StoreError::Fenced {
                source_name: lease.source.clone(),
                held: lease.token,
                current: current.as_ref().map_or(0, |l| l.token),
                owner: current.and_then(|l| l.owner),
            });
        }
        let (requests, limit_hour, share) = (requests as i64, limit_hour as i64, share as i64);
        tx.execute(
            "INSERT INTO budget_samples (source, hour, requests, limit_hour, share)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (source, hour) DO UPDATE SET
               requests = greatest(budget_samples.requests, excluded.requests),
               limit_hour = excluded.limit_hour, share = excluded.share",
            &[&lease.source, &hour, &requests, &limit_hour, &share],
        )
        .await
        .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The requests a source has spent in the hour starting at `hour` (ms), by any owner.
    pub async fn budget_spent(&self, source: &str, hour: i64) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT requests FROM budget_samples WHERE source = $1 AND hour = $2",
                &[&source, &hour],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(row.map_or(0, |r| r.get::<_, i64>(0).max(0) as u64))
    }
}
