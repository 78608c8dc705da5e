//! The fenced write path: one [`Batch`] in one transaction, under its source's lease.
//!
//! The transaction first locks the source's `leases` row (`FOR UPDATE`) and compares the
//! fencing token with the caller's [`Lease`]: a different token or owner means another
//! replica has taken the source, and the commit is refused before it writes anything
//! ([`StoreError::Fenced`]). Holding that lock to the commit also serializes a source's
//! commits, so `seq` order is commit order within a source (see `migrations.rs`), and a
//! takeover waits for a commit in flight instead of racing it.
//!
//! The rules are SQLite's (`store/write.rs`, `store/apps.rs`), step for step and in the same
//! order: inventory rows (`inventory.rs`, `apps.rs`: compared with what is stored, staged for
//! a full export, baselines without events), sweep ends (misses, removals, a removed device's
//! rows), events (inserted once per uid; collected again, the newest state or a duplicate),
//! the refresh queue, the checkpoint (or one key of it) and the hour's record count. What
//! differs is how: each step reads what it compares in one statement, decides in Rust, and
//! writes in one statement per kind of change (arrays through `unnest`), so a page of 5,000
//! rows costs a handful of round trips, not 5,000. Outbox rows are queued in the order SQLite
//! writes them and inserted with the commit.

use deadpool_postgres::Transaction;

use super::super::write::stable_hash;
use super::super::{Batch, BatchOutcome, EventRow, StoreError, Table};
use super::search;
use super::{Lease, PgStore};

/// One batch's transaction and what it has done so far.
pub(super) struct W<'a> {
    pub tx: &'a Transaction<'a>,
    pub pg: &'a PgStore,
    pub batch: &'a Batch,
    pub out: BatchOutcome,
    /// Outbox rows (table, ref) in the order SQLite would write them.
    pub outbox: Vec<(&'static str, String)>,
}

impl W<'_> {
    pub(super) fn err(&self, e: tokio_postgres::Error) -> StoreError {
        self.pg.err(e)
    }

    pub(super) fn push(&mut self, tbl: &'static str, key: String) {
        self.outbox.push((tbl, key));
    }

    /// Inserts events in order, each once per (source, stream, uid): new ones, and changed
    /// ones (a new hash: the newest state wins), get an outbox row; an unchanged one is a
    /// duplicate. One statement per event, pipelined: they run in order on the server, so
    /// an event that occurs twice in a batch sees its first occurrence, as in SQLite.
    pub(super) async fn events(&mut self, events: &[EventRow]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let stmt = self
            .tx
            .prepare_cached(
                "WITH ins AS (
                    INSERT INTO events (source, stream, category, event_type, uid, occurred_at,
                        device_id, user_id, severity, summary, raw, hash, collected_at,
                        updated_at, search)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::TEXT::JSON, $12, $13,
                        $13, to_tsvector('simple', $14))
                    ON CONFLICT (source, stream, uid) DO NOTHING
                    RETURNING seq),
                 upd AS (
                    UPDATE events SET raw = $11::TEXT::JSON, summary = $10, severity = $9,
                        hash = $12, updated_at = $13, event_type = $4,
                        search = to_tsvector('simple', $14)
                    WHERE source = $1 AND stream = $2 AND uid = $5 AND hash <> $12
                      AND NOT EXISTS (SELECT 1 FROM ins)
                    RETURNING seq)
                 SELECT seq, TRUE FROM ins UNION ALL SELECT seq, FALSE FROM upd",
            )
            .await
            .map_err(|e| self.err(e))?;
        for ev in events {
            // Stored as `JSON`, which keeps the text as collected (JSONB would reorder keys):
            // checked here for an error that names the event.
            serde_json::from_str::<serde::de::IgnoredAny>(&ev.raw).map_err(|e| {
                StoreError::Invalid(format!(
                    "{}/{}: event {} is not JSON: {e}",
                    self.batch.source, self.batch.stream, ev.uid
                ))
            })?;
        }
        struct P {
            category: String,
            hash: i64,
            doc: String,
        }
        let prepared: Vec<P> = events
            .iter()
            .map(|ev| P {
                category: ev.category.to_string(),
                hash: stable_hash(ev.raw.as_bytes()),
                doc: search::document(&ev.summary, &ev.raw),
            })
            .collect();
        let (source, stream, now) = (&self.batch.source, &self.batch.stream, &self.batch.now);
        for (chunk_ev, chunk_p) in events.chunks(1_000).zip(prepared.chunks(1_000)) {
            type Params<'p> = [&'p (dyn tokio_postgres::types::ToSql + Sync); 14];
            let params: Vec<Params<'_>> = chunk_ev
                .iter()
                .zip(chunk_p)
                .map(|(ev, p)| -> Params<'_> {
                    [
                        source,
                        stream,
                        &p.category,
                        &ev.event_type,
                        &ev.uid,
                        &ev.occurred_at,
                        &ev.device_id,
                        &ev.user_id,
                        &ev.severity,
                        &ev.summary,
                        &ev.raw,
                        &p.hash,
                        now,
                        &p.doc,
                    ]
                })
                .collect();
            let futs = params.iter().map(|p| self.tx.query(&stmt, p));
            let results = futures::future::try_join_all(futs)
                .await
                .map_err(|e| self.pg.err(e))?;
            for rows in results {
                match rows.first() {
                    Some(r) => {
                        let seq: i64 = r.get(0);
                        if r.get::<_, bool>(1) {
                            self.out.events_inserted += 1;
                        } else {
                            self.out.events_updated += 1;
                        }
                        self.outbox.push(("events", seq.to_string()));
                    }
                    None => self.out.events_duplicate += 1,
                }
            }
        }
        Ok(())
    }

    /// When the last full snapshot of (table, scope) completed.
    pub(super) async fn snapshot_at(
        &self,
        table: &str,
        scope: &str,
    ) -> Result<Option<i64>, StoreError> {
        Ok(self
            .tx
            .query_opt(
                "SELECT at FROM snapshots WHERE source = $1 AND tbl = $2 AND scope = $3",
                &[&self.batch.source, &table, &scope],
            )
            .await
            .map_err(|e| self.err(e))?
            .map(|r| r.get(0)))
    }

    pub(super) async fn set_snapshot_at(&self, table: &str, scope: &str) -> Result<(), StoreError> {
        self.tx
            .execute(
                "INSERT INTO snapshots (source, tbl, scope, at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (source, tbl, scope) DO UPDATE SET at = excluded.at",
                &[&self.batch.source, &table, &scope, &self.batch.now],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The start of the staged snapshot of (table, scope) if it belongs to `sweep`.
    pub(super) async fn stage_started(
        &self,
        table: &str,
        scope: &str,
        sweep: i64,
    ) -> Result<Option<i64>, StoreError> {
        Ok(self
            .tx
            .query_opt(
                "SELECT started_at FROM stage_open
                 WHERE source = $1 AND tbl = $2 AND scope = $3 AND sweep = $4",
                &[&self.batch.source, &table, &scope, &sweep],
            )
            .await
            .map_err(|e| self.err(e))?
            .map(|r| r.get(0)))
    }

    /// Makes sure the stage of (table, scope) belongs to `sweep`: rows an earlier, abandoned
    /// snapshot of the same scope staged are dropped (SQLite's `Stages::open_scope`).
    pub(super) async fn open_scope(
        &self,
        table: &'static str,
        scope: &str,
        sweep: i64,
        started_at: i64,
    ) -> Result<(), StoreError> {
        let src = &self.batch.source;
        let row = self
            .tx
            .query_opt(
                "SELECT sweep FROM stage_open WHERE source = $1 AND tbl = $2 AND scope = $3",
                &[src, &table, &scope],
            )
            .await
            .map_err(|e| self.err(e))?;
        match row.map(|r| r.get::<_, i64>(0)) {
            Some(s) if s == sweep => return Ok(()),
            Some(_) => self.clear_stage(table, scope).await?,
            None => {}
        }
        self.tx
            .execute(
                "INSERT INTO stage_open (source, tbl, scope, sweep, started_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (source, tbl, scope) DO UPDATE SET sweep = excluded.sweep,
                   started_at = excluded.started_at",
                &[src, &table, &scope, &sweep, &started_at],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn clear_stage(&self, table: &'static str, scope: &str) -> Result<(), StoreError> {
        let src = &self.batch.source;
        if table == "apps" {
            self.tx
                .execute("DELETE FROM stage_apps WHERE source = $1", &[src])
                .await
        } else {
            // `table` is a `tables.rs` name, never user text.
            self.tx
                .execute(
                    &format!("DELETE FROM stage_{table} WHERE source = $1 AND scope = $2"),
                    &[src, &scope],
                )
                .await
        }
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Drops the stage of (table, scope) once its snapshot is compared.
    pub(super) async fn close_scope(
        &self,
        table: &'static str,
        scope: &str,
    ) -> Result<(), StoreError> {
        self.clear_stage(table, scope).await?;
        self.tx
            .execute(
                "DELETE FROM stage_open WHERE source = $1 AND tbl = $2 AND scope = $3",
                &[&self.batch.source, &table, &scope],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

impl PgStore {
    /// Commits one page under the lease this process holds for its source (in
    /// [`super::LeaseMode::Solo`], taken now if free). Everything, or nothing.
    pub(crate) async fn commit(&self, batch: &Batch) -> Result<BatchOutcome, StoreError> {
        let Some(lease) = self.lease_for(&batch.source).await? else {
            return Err(self.not_held(&batch.source, 0).await);
        };
        let r = self.commit_page(&lease, batch).await;
        if let Err(StoreError::Fenced { .. }) = &r {
            self.drop_held(&batch.source);
        }
        r
    }

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
        if let super::LeaseMode::Solo { ttl_ms, .. } = &self.fence.mode {
            // One process on its own has no heartbeat: each commit extends its lease (the row
            // is locked by this transaction already).
            tx.execute(
                "UPDATE leases SET expires_at = greatest(expires_at,
                    (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT + $2)
                 WHERE source = $1",
                &[&batch.source, ttl_ms],
            )
            .await
            .map_err(|e| self.err(e))?;
        }
        let mut w = W {
            tx: &tx,
            pg: self,
            batch,
            out: BatchOutcome::default(),
            outbox: Vec::new(),
        };
        apply(&mut w).await.inspect_err(|error| {
            tracing::error!(source = %batch.source, stream = %batch.stream, %error, "store write failed (postgres)");
        })?;
        let out = std::mem::take(&mut w.out);
        let outbox = std::mem::take(&mut w.outbox);
        flush_outbox(&tx, self, &batch.source, outbox).await?;
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
            drop(tx);
            return Err(self.not_held(&lease.source, lease.token).await);
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

    /// [`PgStore::record_budget_sample`] under the lease this process holds; nothing (and no
    /// error) when it holds none: the owner records the source's spend.
    pub(crate) async fn record_budget_sample_held(
        &self,
        source: &str,
        hour: i64,
        requests: u64,
        limit_hour: u64,
        share: u64,
    ) -> Result<(), StoreError> {
        match self.lease_for(source).await? {
            Some(l) => {
                let r = self
                    .record_budget_sample(&l, hour, requests, limit_hour, share)
                    .await;
                if let Err(StoreError::Fenced { .. }) = &r {
                    self.drop_held(source);
                }
                r
            }
            None => Ok(()),
        }
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

/// Inserts the batch's outbox rows in order (one statement; `seq` follows the array order).
async fn flush_outbox(
    tx: &Transaction<'_>,
    pg: &PgStore,
    source: &str,
    rows: Vec<(&'static str, String)>,
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let (tbls, refs): (Vec<&str>, Vec<String>) = rows.into_iter().unzip();
    tx.execute(
        "INSERT INTO outbox (source, tbl, ref)
         SELECT $1::TEXT, t, r FROM unnest($2::TEXT[], $3::TEXT[]) WITH ORDINALITY AS u(t, r, n)
         ORDER BY n",
        &[&source, &tbls, &refs],
    )
    .await
    .map_err(|e| pg.err(e))?;
    Ok(())
}

/// SQLite's `apply_in_tx`, step for step.
async fn apply(w: &mut W<'_>) -> Result<(), StoreError> {
    let batch = w.batch;
    for upsert in &batch.upserts {
        if upsert.table == Table::Apps {
            // Raw JSON rows of apps (tests, older callers): normalized here.
            let mut rows = Vec::with_capacity(upsert.rows.len());
            for r in &upsert.rows {
                let v: serde_json::Value = serde_json::from_str(&r.raw).map_err(|e| {
                    StoreError::Invalid(format!("apps row {}: raw is not JSON: {e}", r.key))
                })?;
                let inst = v
                    .as_object()
                    .and_then(super::super::AppInstall::from_json)
                    .ok_or_else(|| {
                        StoreError::Invalid(format!(
                            "apps row {}: raw has no device_id and bundle_id/path/name",
                            r.key
                        ))
                    })?;
                rows.push(inst);
            }
            let up = super::super::AppUpsert {
                sweep: upsert.sweep,
                started_at: upsert.started_at,
                rows,
            };
            super::apps::upsert(w, &up).await?;
        } else {
            super::inventory::upsert_rows(w, upsert).await?;
        }
    }
    for a in &batch.apps {
        super::apps::upsert(w, a).await?;
    }
    for end in &batch.sweep_ends {
        match end.table.spec().snapshots {
            super::super::tables::Snapshots::Restart(_) if end.table == Table::Apps => {
                super::apps::end_snapshot(w, end.sweep).await?
            }
            super::super::tables::Snapshots::Restart(_) => {
                super::inventory::end_snapshot(w, end).await?
            }
            super::super::tables::Snapshots::Resume => super::inventory::end_sweep(w, end).await?,
        }
    }
    w.events(&batch.events).await?;
    let src = &batch.source;
    if !batch.refreshed.is_empty() {
        // The read is recorded whether or not it found rows.
        w.tx.execute(
            "DELETE FROM refresh_queue WHERE source = $1 AND device_id = ANY($2)",
            &[src, &batch.refreshed],
        )
        .await
        .map_err(|e| w.err(e))?;
        let mut ids = batch.refreshed.clone();
        ids.sort();
        ids.dedup();
        w.tx.execute(
            "INSERT INTO device_reads (source, device_id, stream, read_at)
             SELECT $1::TEXT, d, $3::TEXT, $4::BIGINT FROM unnest($2::TEXT[]) AS d
             ON CONFLICT (source, device_id, stream) DO UPDATE SET read_at = excluded.read_at",
            &[src, &ids, &batch.stream, &batch.now],
        )
        .await
        .map_err(|e| w.err(e))?;
    }
    if !batch.refresh.is_empty() {
        let (ids, why): (Vec<&str>, Vec<&str>) = batch
            .refresh
            .iter()
            .map(|(d, r)| (d.as_str(), r.as_str()))
            .unzip();
        // The first reason queued for a device stays (SQLite's DO NOTHING, row by row).
        w.tx.execute(
            "INSERT INTO refresh_queue (source, device_id, reason, queued_at)
             SELECT DISTINCT ON (d) $1::TEXT, d, r, $4::BIGINT
             FROM unnest($2::TEXT[], $3::TEXT[]) WITH ORDINALITY AS u(d, r, n)
             ORDER BY d, n
             ON CONFLICT (source, device_id) DO NOTHING",
            &[src, &ids, &why, &batch.now],
        )
        .await
        .map_err(|e| w.err(e))?;
    }
    if let Some(cp) = &batch.checkpoint {
        let value = match &batch.checkpoint_key {
            None => cp.clone(),
            Some(k) => {
                let old: Option<serde_json::Value> =
                    w.tx.query_opt(
                        "SELECT value FROM checkpoints WHERE source = $1 AND stream = $2",
                        &[src, &batch.stream],
                    )
                    .await
                    .map_err(|e| w.err(e))?
                    .map(|r| r.get(0));
                let mut all = old
                    .filter(serde_json::Value::is_object)
                    .unwrap_or_else(|| serde_json::json!({}));
                all[k.as_str()] = cp.clone();
                all
            }
        };
        w.tx.execute(
            "INSERT INTO checkpoints (source, stream, value, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (source, stream) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            &[src, &batch.stream, &value, &batch.collected_at],
        )
        .await
        .map_err(|e| w.err(e))?;
    }
    let records = w.out.records() as i64;
    if records > 0 {
        let hour = batch.collected_at.div_euclid(3_600_000) * 3_600_000;
        let category = batch.record_category.to_string();
        w.tx.execute(
            "INSERT INTO record_samples (source, hour, category, records) VALUES ($1, $2, $3, $4)
             ON CONFLICT (source, hour, category) DO UPDATE SET records = record_samples.records + excluded.records",
            &[src, &hour, &category, &records],
        )
        .await
        .map_err(|e| w.err(e))?;
        if batch.counts_in_status {
            w.tx.execute(
                "INSERT INTO stream_status (source, stream, state, records_total) VALUES ($1, $2, 'syncing', $3)
                 ON CONFLICT (source, stream) DO UPDATE SET records_total = stream_status.records_total + excluded.records_total",
                &[src, &batch.stream, &records],
            )
            .await
            .map_err(|e| w.err(e))?;
        }
    }
    Ok(())
}
