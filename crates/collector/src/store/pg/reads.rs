//! Everything but the write path and the explorer, on PostgreSQL: stream status, checkpoints,
//! samples, console sources and the admin, the refresh queue, lookups, the outbox and the
//! outputs' offsets, and `export`. Each is SQLite's query (`store/status.rs`, `outbox.rs`, …)
//! in PostgreSQL's dialect, with the same results.
//!
//! Stream status is written by the replica that holds the source's lease, under it: a write
//! for a source this process does not hold is skipped, and the statement itself checks the
//! token, so a replica that lost its lease while paused cannot put its stale state over the
//! new owner's.

use std::collections::HashSet;

use serde_json::{Value, json};
use tokio_postgres::Row;

use super::super::outbox::{
    DEAD_LETTER_CAP, DeadLetter, OutboxBatch, OutboxItem, OutboxPos, StoredEvent, StoredRow,
};
use super::super::{
    ConsoleSourceRow, ExportItem, ExportKind, Menus, NewConsoleSource, SourceSettings, StatusRow,
    StoreError, StreamOutcome, Table, now_ms,
};
use super::{Lease, PgStore};

fn json_or_text(raw: String) -> Value {
    serde_json::from_str(&raw).unwrap_or(Value::String(raw))
}

const CONSOLE_COLS: &str =
    "name, endpoint, region, allow_custom, token_last4, enabled, budget_share,
    hourly_limit, per_second, streams, schedules, filters, updated_at, token_ct,
    token_name, rotate_after_days, reserve_for_others";

fn console_row(r: &Row) -> ConsoleSourceRow {
    ConsoleSourceRow {
        name: r.get(0),
        endpoint: r.get(1),
        region: r.get(2),
        allow_custom: r.get(3),
        token_last4: r.get(4),
        enabled: r.get(5),
        budget_share: r.get(6),
        hourly_limit: u32::try_from(r.get::<_, i64>(7)).unwrap_or(u32::MAX),
        per_second: u32::try_from(r.get::<_, i64>(8)).unwrap_or(u32::MAX),
        streams: r.get(9),
        schedules: r.get(10),
        filters: r.get(11),
        updated_at: r.get(12),
        token_ct: r.get(13),
        hygiene: super::super::ConsoleHygiene {
            token_name: r.get(14),
            rotate_after_days: r.get(15),
            reserve_for_others: r.get(16),
        },
    }
}

fn stored_event(r: &Row, stream: Option<String>) -> StoredEvent {
    StoredEvent {
        stream: stream.unwrap_or_else(|| r.get(10)),
        category: r.get(0),
        event_type: r.get(1),
        uid: r.get(2),
        occurred_at: r.get(3),
        device_id: r.get(4),
        user_id: r.get(5),
        severity: r.get(6),
        summary: r.get(7),
        raw: json_or_text(r.get(8)),
        hash: r.get(9),
        related: None,
    }
}

const EVENT_COLS: &str = "category, event_type, uid, occurred_at, device_id, user_id, severity, summary, raw::TEXT, hash, stream";

impl PgStore {
    /// The lease a status write for `source` goes under, if this process may write it.
    async fn status_lease(&self, source: &str) -> Result<Option<Lease>, StoreError> {
        self.lease_for(source).await
    }

    pub(crate) async fn latest_event_at(
        &self,
        source: &str,
        stream: &str,
        at_most: i64,
    ) -> Result<Option<i64>, StoreError> {
        let c = self.client().await?;
        Ok(c.query_opt(
            "SELECT occurred_at FROM events
             WHERE source = $1 AND stream = $2 AND occurred_at <= $3
             ORDER BY occurred_at DESC LIMIT 1",
            &[&source, &stream, &at_most],
        )
        .await
        .map_err(|e| self.err(e))?
        .map(|r| r.get(0)))
    }

    pub(crate) async fn set_stream_state(
        &self,
        source: &str,
        stream: &str,
        state: &str,
    ) -> Result<(), StoreError> {
        let Some(l) = self.status_lease(source).await? else {
            tracing::debug!(
                source,
                stream,
                state,
                "not this replica's source: status not written"
            );
            return Ok(());
        };
        let c = self.client().await?;
        c.execute(
            "INSERT INTO stream_status (source, stream, state, last_run_at)
             SELECT $1::TEXT, $2::TEXT, $3::TEXT, $4::BIGINT WHERE EXISTS (SELECT 1 FROM leases
                WHERE source = $1 AND owner = $5 AND fencing_token = $6)
             ON CONFLICT (source, stream) DO UPDATE SET state = excluded.state,
               last_run_at = CASE WHEN excluded.state = 'syncing' THEN excluded.last_run_at
                                  ELSE stream_status.last_run_at END",
            &[&source, &stream, &state, &now_ms(), &l.owner, &l.token],
        )
        .await
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub(crate) async fn disable_streams(
        &self,
        source: &str,
        streams: Vec<&'static str>,
    ) -> Result<(), StoreError> {
        let Some(l) = self.status_lease(source).await? else {
            return Ok(());
        };
        let c = self.client().await?;
        c.execute(
            "INSERT INTO stream_status (source, stream, state)
             SELECT $1::TEXT, s, 'disabled' FROM unnest($2::TEXT[]) AS s
             WHERE EXISTS (SELECT 1 FROM leases WHERE source = $1 AND owner = $3 AND fencing_token = $4)
             ON CONFLICT (source, stream) DO UPDATE SET state = 'disabled'",
            &[&source, &streams, &l.owner, &l.token],
        )
        .await
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub(crate) async fn disable_source(&self, source: &str) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.execute(
            "UPDATE stream_status SET state = 'disabled' WHERE source = $1",
            &[&source],
        )
        .await
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub(crate) async fn record_stream_run(
        &self,
        source: &str,
        stream: &str,
        outcome: StreamOutcome,
    ) -> Result<(), StoreError> {
        let Some(l) = self.status_lease(source).await? else {
            return Ok(());
        };
        let c = self.client().await?;
        let now = now_ms();
        match outcome {
            StreamOutcome::Success {
                records,
                requests,
                next_run_at,
                degraded,
            } => {
                let state = if degraded.is_some() {
                    "degraded"
                } else {
                    "healthy"
                };
                let (kind, message, endpoint) = match degraded {
                    Some(m) => (Some(m.kind.to_string()), Some(m.message), m.endpoint),
                    None => (None, None, None),
                };
                c.execute(
                    "INSERT INTO stream_status (source, stream, state, last_success_at,
                        last_run_records, last_run_requests, next_run_at, last_error_at,
                        last_error_kind, last_error_message, last_error_endpoint)
                     SELECT $1::TEXT, $2::TEXT, $7::TEXT, $3::BIGINT, $4::BIGINT, $5::BIGINT, $6::BIGINT,
                        CASE WHEN $8::TEXT IS NULL THEN NULL ELSE $3::BIGINT END, $8::TEXT, $9::TEXT, $10::TEXT
                     WHERE EXISTS (SELECT 1 FROM leases
                        WHERE source = $1 AND owner = $11 AND fencing_token = $12)
                     ON CONFLICT (source, stream) DO UPDATE SET state = $7,
                       last_success_at = $3, last_run_records = $4, last_run_requests = $5,
                       next_run_at = $6,
                       last_error_at = CASE WHEN $8::TEXT IS NULL THEN stream_status.last_error_at ELSE $3 END,
                       last_error_kind = coalesce($8, stream_status.last_error_kind),
                       last_error_message = coalesce($9, stream_status.last_error_message),
                       last_error_endpoint = CASE WHEN $8::TEXT IS NULL THEN stream_status.last_error_endpoint ELSE $10 END",
                    &[
                        &source, &stream, &now, &records, &requests, &next_run_at, &state, &kind,
                        &message, &endpoint, &l.owner, &l.token,
                    ],
                )
                .await
                .map_err(|e| self.err(e))?;
            }
            StreamOutcome::Failure {
                state,
                kind,
                message,
                endpoint,
                next_run_at,
            } => {
                c.execute(
                    "INSERT INTO stream_status (source, stream, state, last_error_at, last_error_kind,
                        last_error_message, last_error_endpoint, next_run_at)
                     SELECT $1::TEXT, $2::TEXT, $3::TEXT, $4::BIGINT, $5::TEXT, $6::TEXT, $7::TEXT, $8::BIGINT
                     WHERE EXISTS (SELECT 1 FROM leases
                        WHERE source = $1 AND owner = $9 AND fencing_token = $10)
                     ON CONFLICT (source, stream) DO UPDATE SET state = $3, last_error_at = $4,
                       last_error_kind = $5, last_error_message = $6, last_error_endpoint = $7,
                       next_run_at = $8",
                    &[
                        &source,
                        &stream,
                        &state,
                        &now,
                        &kind,
                        &message,
                        &endpoint,
                        &next_run_at,
                        &l.owner,
                        &l.token,
                    ],
                )
                .await
                .map_err(|e| self.err(e))?;
            }
        }
        Ok(())
    }

    pub(crate) async fn last_successes(
        &self,
        source: &str,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let c = self.client().await?;
        Ok(c.query(
            "SELECT stream, last_success_at FROM stream_status
             WHERE source = $1 AND last_success_at IS NOT NULL
               AND state IN ('healthy', 'degraded', 'syncing', 'pending', 'disabled')",
            &[&source],
        )
        .await
        .map_err(|e| self.err(e))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
    }

    pub(crate) async fn stream_status(
        &self,
        only: Option<&str>,
    ) -> Result<Vec<StatusRow>, StoreError> {
        let c = self.client().await?;
        Ok(c.query(
            "SELECT s.source, s.stream, s.state, s.last_success_at, s.last_error_at,
                    s.last_error_kind, s.last_error_message, s.last_error_endpoint,
                    s.records_total, s.last_run_records, s.last_run_requests, s.next_run_at,
                    s.last_run_at, c.value::TEXT
             FROM stream_status s
             LEFT JOIN checkpoints c ON c.source = s.source AND c.stream = s.stream
             WHERE $1::TEXT IS NULL OR s.source = $1 ORDER BY s.source, s.stream",
            &[&only],
        )
        .await
        .map_err(|e| self.err(e))?
        .iter()
        .map(|r| StatusRow {
            source: r.get(0),
            stream: r.get(1),
            state: r.get(2),
            last_success_at: r.get(3),
            last_error_at: r.get(4),
            last_error_kind: r.get(5),
            last_error_message: r.get(6),
            last_error_endpoint: r.get(7),
            records_total: r.get(8),
            last_run_records: r.get(9),
            last_run_requests: r.get(10),
            next_run_at: r.get(11),
            last_run_at: r.get(12),
            checkpoint: r.get(13),
        })
        .collect())
    }

    pub(crate) async fn budget_series(
        &self,
        source: &str,
        since: i64,
    ) -> Result<Vec<(i64, i64, i64, i64)>, StoreError> {
        let c = self.client().await?;
        Ok(c.query(
            "SELECT hour, requests, coalesce(limit_hour, 10000), coalesce(share, 0)
             FROM budget_samples WHERE source = $1 AND hour >= $2 ORDER BY hour",
            &[&source, &since],
        )
        .await
        .map_err(|e| self.err(e))?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect())
    }

    pub(crate) async fn record_series(
        &self,
        source: &str,
        since: i64,
    ) -> Result<Vec<(i64, String, i64)>, StoreError> {
        let c = self.client().await?;
        Ok(c.query(
            "SELECT hour, category, records FROM record_samples
             WHERE source = $1 AND hour >= $2 ORDER BY hour, category",
            &[&source, &since],
        )
        .await
        .map_err(|e| self.err(e))?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
    }

    // --- console sources and the admin ---

    pub(crate) async fn console_sources(&self) -> Result<Vec<ConsoleSourceRow>, StoreError> {
        let c = self.client().await?;
        Ok(c.query(
            &format!("SELECT {CONSOLE_COLS} FROM console_sources ORDER BY name"),
            &[],
        )
        .await
        .map_err(|e| self.err(e))?
        .iter()
        .map(console_row)
        .collect())
    }

    pub(crate) async fn console_source(
        &self,
        name: &str,
    ) -> Result<Option<ConsoleSourceRow>, StoreError> {
        let c = self.client().await?;
        Ok(c.query_opt(
            &format!("SELECT {CONSOLE_COLS} FROM console_sources WHERE name = $1"),
            &[&name],
        )
        .await
        .map_err(|e| self.err(e))?
        .map(|r| console_row(&r)))
    }

    pub(crate) async fn insert_console_source(
        &self,
        s: NewConsoleSource,
    ) -> Result<bool, StoreError> {
        let c = self.client().await?;
        let n = c
            .execute(
                "INSERT INTO console_sources (name, endpoint, region, allow_custom, token_last4,
                   streams, created_at, updated_at, token_ct)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)
                 ON CONFLICT (name) DO NOTHING",
                &[
                    &s.name,
                    &s.endpoint,
                    &s.region,
                    &s.allow_custom,
                    &s.token_last4,
                    &s.streams,
                    &now_ms(),
                    &s.token_ct,
                ],
            )
            .await
            .map_err(|e| self.err(e))?;
        if n == 1 {
            self.notify_changed().await;
        }
        Ok(n == 1)
    }

    pub(crate) async fn update_console_source(
        &self,
        name: &str,
        s: SourceSettings,
    ) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.execute(
            "UPDATE console_sources SET enabled = $2, budget_share = $3, streams = $4,
               schedules = $5, filters = $6, updated_at = $7, endpoint = $8, region = $9,
               token_name = $10, rotate_after_days = $11, reserve_for_others = $12
             WHERE name = $1",
            &[
                &name,
                &s.enabled,
                &s.budget_share,
                &s.streams,
                &s.schedules,
                &s.filters,
                &now_ms(),
                &s.endpoint,
                &s.region,
                &s.hygiene.token_name,
                &s.hygiene.rotate_after_days,
                &s.hygiene.reserve_for_others,
            ],
        )
        .await
        .map_err(|e| self.err(e))?;
        self.notify_changed().await;
        Ok(())
    }

    pub(crate) async fn set_console_source_enabled(
        &self,
        name: &str,
        enabled: bool,
    ) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.execute(
            "UPDATE console_sources SET enabled = $2, updated_at = $3 WHERE name = $1",
            &[&name, &enabled, &now_ms()],
        )
        .await
        .map_err(|e| self.err(e))?;
        self.notify_changed().await;
        Ok(())
    }

    pub(crate) async fn rotate_console_token(
        &self,
        name: &str,
        token_ct: Vec<u8>,
        token_last4: String,
    ) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.execute(
            "UPDATE console_sources SET token_ct = $2, token_last4 = $3, updated_at = $4
             WHERE name = $1",
            &[&name, &token_ct, &token_last4, &now_ms()],
        )
        .await
        .map_err(|e| self.err(e))?;
        self.notify_changed().await;
        Ok(())
    }

    pub(crate) async fn delete_console_source(&self, name: &str) -> Result<(), StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(|e| self.err(e))?;
        tx.execute("DELETE FROM console_sources WHERE name = $1", &[&name])
            .await
            .map_err(|e| self.err(e))?;
        tx.execute(
            "UPDATE stream_status SET state = 'disabled' WHERE source = $1",
            &[&name],
        )
        .await
        .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        self.notify_changed().await;
        Ok(())
    }

    /// Deletes everything collected from `source`, in one transaction: every table with a
    /// `source` column but the console's own settings and the lease itself.
    pub(crate) async fn purge_source(&self, source: &str) -> Result<u64, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(|e| self.err(e))?;
        // Under the lease row's lock: no commit of the source runs beside the purge.
        tx.execute(
            "SELECT 1 FROM leases WHERE source = $1 FOR UPDATE",
            &[&source],
        )
        .await
        .map_err(|e| self.err(e))?;
        let tables: Vec<String> = tx
            .query(
                "SELECT c.relname FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'source' AND NOT a.attisdropped
                 WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
                   AND NOT c.relispartition
                   AND c.relname NOT IN ('console_sources', 'leases')
                 ORDER BY c.relname",
                &[],
            )
            .await
            .map_err(|e| self.err(e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut n = 0u64;
        for t in tables {
            // `t` comes from the catalogue itself, quoted as an identifier.
            n += tx
                .execute(
                    &format!(
                        "DELETE FROM \"{}\" WHERE source = $1",
                        t.replace('"', "\"\"")
                    ),
                    &[&source],
                )
                .await
                .map_err(|e| self.err(e))?;
        }
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(n)
    }

    pub(crate) async fn admin_password_hash(&self) -> Result<Option<String>, StoreError> {
        let c = self.client().await?;
        Ok(
            c.query_opt("SELECT password_hash FROM console_admin WHERE id = 1", &[])
                .await
                .map_err(|e| self.err(e))?
                .map(|r| r.get(0)),
        )
    }

    pub(crate) async fn set_admin_password_hash(&self, hash: String) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO console_admin (id, password_hash, updated_at) VALUES (1, $1, $2)
             ON CONFLICT (id) DO UPDATE SET password_hash = excluded.password_hash,
               updated_at = excluded.updated_at",
            &[&hash, &now_ms()],
        )
        .await
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    // --- the refresh queue and lookups ---

    pub(crate) async fn compliance_candidates(
        &self,
        source: &str,
        cap: usize,
    ) -> Result<Vec<(String, bool)>, StoreError> {
        let c = self.client().await?;
        let mut out: Vec<(String, bool)> = Vec::new();
        let mut seen = HashSet::new();
        let mut push = |id: String, queued: bool, out: &mut Vec<(String, bool)>| {
            if out.len() < cap && seen.insert(id.clone()) {
                out.push((id, queued));
            }
        };
        for r in c
            .query(
                "SELECT q.device_id FROM refresh_queue q
                 JOIN devices d ON d.source = q.source AND d.key = q.device_id AND d.removed_at IS NULL
                 WHERE q.source = $1 ORDER BY q.queued_at, q.device_id LIMIT $2",
                &[&source, &(cap as i64)],
            )
            .await
            .map_err(|e| self.err(e))?
        {
            push(r.get(0), true, &mut out);
        }
        // Never read first, then check-in after our last read, then the oldest reads.
        let rows = c
            .query(
                "SELECT d.key, r.read_at, d.last_check_in
                 FROM devices d
                 LEFT JOIN device_reads r ON r.source = d.source AND r.device_id = d.key
                   AND r.stream = 'compliance'
                 WHERE d.source = $1 AND d.removed_at IS NULL
                 ORDER BY (r.read_at IS NOT NULL), r.read_at, d.key LIMIT $2",
                &[&source, &((cap * 4) as i64)],
            )
            .await
            .map_err(|e| self.err(e))?;
        let mut moved = Vec::new();
        let mut rotation = Vec::new();
        for r in rows {
            let id: String = r.get(0);
            match r.get::<_, Option<i64>>(1) {
                None => moved.push(id),
                Some(read_at) => {
                    if r.get::<_, Option<i64>>(2).is_some_and(|ci| ci > read_at) {
                        moved.push(id);
                    } else {
                        rotation.push(id);
                    }
                }
            }
        }
        for id in moved.into_iter().chain(rotation) {
            push(id, false, &mut out);
        }
        Ok(out)
    }

    pub(crate) async fn resolve_ids(
        &self,
        source: &str,
        table: Table,
        wanted: Vec<String>,
    ) -> Result<Result<Vec<String>, String>, StoreError> {
        let c = self.client().await?;
        let st = c
            .prepare(&format!(
                "SELECT key FROM {} WHERE source = $1 AND removed_at IS NULL
                 AND (key = $2 OR lower(name) = lower($2)) ORDER BY key LIMIT 1",
                table.name()
            ))
            .await
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for w in wanted {
            match c
                .query_opt(&st, &[&source, &w])
                .await
                .map_err(|e| self.err(e))?
            {
                Some(r) => out.push(r.get(0)),
                None => return Ok(Err(w)),
            }
        }
        Ok(Ok(out))
    }

    pub(crate) async fn dimension(
        &self,
        source: &str,
        table: Table,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let c = self.client().await?;
        Ok(c.query(
            &format!(
                "SELECT key, coalesce(name, key) FROM {} WHERE source = $1 AND removed_at IS NULL
                 ORDER BY name NULLS FIRST",
                table.name()
            ),
            &[&source],
        )
        .await
        .map_err(|e| self.err(e))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
    }

    pub(crate) async fn live_device_ids(
        &self,
        source: &str,
    ) -> Result<HashSet<String>, StoreError> {
        let c = self.client().await?;
        Ok(c.query(
            "SELECT key FROM devices WHERE source = $1 AND removed_at IS NULL",
            &[&source],
        )
        .await
        .map_err(|e| self.err(e))?
        .iter()
        .map(|r| r.get(0))
        .collect())
    }

    pub(crate) async fn removal_candidates(
        &self,
        source: &str,
        table: Table,
        sweep: i64,
    ) -> Result<Vec<String>, StoreError> {
        let c = self.client().await?;
        let spec = table.spec();
        Ok(c.query(
            &format!(
                "SELECT key FROM {} WHERE source = $1 AND removed_at IS NULL AND sweep < $2
                   AND missing + 1 >= $3 ORDER BY key",
                spec.name
            ),
            &[&source, &sweep, &spec.remove_after_missed],
        )
        .await
        .map_err(|e| self.err(e))?
        .iter()
        .map(|r| r.get(0))
        .collect())
    }

    pub(crate) async fn fleet_size(&self, source: &str) -> Result<(u64, u64), StoreError> {
        let c = self.client().await?;
        let r = c
            .query_one(
                "SELECT (SELECT count(*) FROM devices WHERE source = $1 AND removed_at IS NULL),
                        (SELECT count(*) FROM users WHERE source = $1 AND removed_at IS NULL)",
                &[&source],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok((
            r.get::<_, i64>(0).max(0) as u64,
            r.get::<_, i64>(1).max(0) as u64,
        ))
    }

    pub(crate) async fn menus(&self) -> Result<Menus, StoreError> {
        let c = self.client().await?;
        let list = |rows: Vec<Row>| -> Vec<String> {
            rows.iter()
                .filter_map(|r| r.get::<_, Option<String>>(0))
                .collect()
        };
        // Distinct values by a loose index scan: one seek per value.
        let loose = |col: &str, table: &str, live: bool| {
            let cond = if live { " AND removed_at IS NULL" } else { "" };
            format!(
                "WITH RECURSIVE t(v) AS (
                   SELECT (SELECT min({col}) FROM {table} WHERE TRUE{cond})
                   UNION ALL
                   SELECT (SELECT min({col}) FROM {table} WHERE {col} > t.v{cond})
                   FROM t WHERE t.v IS NOT NULL)
                 SELECT v FROM t WHERE v IS NOT NULL"
            )
        };
        let q = |sql: String| {
            let c = &c;
            async move { c.query(&sql, &[]).await }
        };
        let (sources, categories, event_types, platforms, blueprints) = futures::try_join!(
            q("SELECT DISTINCT source FROM stream_status ORDER BY 1".into()),
            q("SELECT DISTINCT category FROM record_samples ORDER BY 1".into()),
            q(loose("event_type", "events", false)),
            q(loose("platform", "devices", true)),
            q(loose("blueprint_name", "devices", true)),
        )
        .map_err(|e| self.err(e))?;
        Ok(Menus {
            sources: list(sources),
            categories: list(categories),
            event_types: list(event_types),
            platforms: list(platforms),
            blueprints: list(blueprints),
        })
    }

    // --- the outbox and the outputs ---

    async fn inventory_row_on(
        &self,
        c: &tokio_postgres::Client,
        source: &str,
        table: Table,
        key: &str,
    ) -> Result<Option<StoredRow>, StoreError> {
        if table == Table::Apps {
            return Ok(self.app_by_key(c, source, key).await?.map(|r| StoredRow {
                table,
                key: r.key,
                device_id: Some(r.device_id),
                hash: r.hash,
                last_seen: r.last_seen,
                removed_at: r.removed_at,
                raw: r.raw,
            }));
        }
        Ok(c.query_opt(
            &format!(
                "SELECT device_id, hash, last_seen, removed_at, raw::TEXT FROM {}
                 WHERE source = $1 AND key = $2",
                table.name()
            ),
            &[&source, &key],
        )
        .await
        .map_err(|e| self.err(e))?
        .map(|r| StoredRow {
            table,
            key: key.to_string(),
            device_id: r.get(0),
            hash: r.get(1),
            last_seen: r.get(2),
            removed_at: r.get(3),
            raw: json_or_text(r.get(4)),
        }))
    }

    pub(crate) async fn inventory_row(
        &self,
        source: &str,
        table: Table,
        key: &str,
    ) -> Result<Option<StoredRow>, StoreError> {
        let c = self.client().await?;
        self.inventory_row_on(&c, source, table, key).await
    }

    /// The current raw form of the row a change event names.
    pub(super) async fn related_raw(
        &self,
        c: &tokio_postgres::Client,
        source: &str,
        raw: &Value,
    ) -> Result<Option<Value>, StoreError> {
        match (
            raw.get("table")
                .and_then(Value::as_str)
                .and_then(Table::from_name),
            raw.get("key").and_then(Value::as_str),
        ) {
            (Some(t), Some(k)) => Ok(self.inventory_row_on(c, source, t, k).await?.map(|r| r.raw)),
            _ => Ok(None),
        }
    }

    pub(crate) async fn outbox_batch(
        &self,
        source: &str,
        after: OutboxPos,
        limit: usize,
    ) -> Result<OutboxBatch, StoreError> {
        let c = self.client().await?;
        let limit = limit.max(1);
        let first = if after.part.is_some() {
            after.seq
        } else {
            after.seq + 1
        };
        let rows: Vec<(i64, String, String)> = c
            .query(
                "SELECT seq, tbl, ref FROM outbox WHERE source = $1 AND seq >= $2
                 ORDER BY seq LIMIT $3",
                &[&source, &first, &(limit as i64)],
            )
            .await
            .map_err(|e| self.err(e))?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        // The events the batch names, in one read.
        let event_seqs: Vec<i64> = rows
            .iter()
            .filter(|(_, t, _)| t == "events")
            .filter_map(|(_, _, k)| k.parse().ok())
            .collect();
        let mut events: std::collections::HashMap<i64, StoredEvent> = c
            .query(
                &format!(
                    "SELECT seq, {EVENT_COLS} FROM events WHERE source = $1 AND seq = ANY($2)"
                ),
                &[&source, &event_seqs],
            )
            .await
            .map_err(|e| self.err(e))?
            .iter()
            .map(|r| {
                let seq: i64 = r.get(0);
                (
                    seq,
                    StoredEvent {
                        stream: r.get(11),
                        category: r.get(1),
                        event_type: r.get(2),
                        uid: r.get(3),
                        occurred_at: r.get(4),
                        device_id: r.get(5),
                        user_id: r.get(6),
                        severity: r.get(7),
                        summary: r.get(8),
                        raw: json_or_text(r.get(9)),
                        hash: r.get(10),
                        related: None,
                    },
                )
            })
            .collect();
        let mut out = OutboxBatch::default();
        let mut seen = HashSet::new();
        for (seq, tbl, key) in rows {
            if out.items.len() >= limit {
                break;
            }
            let done = OutboxPos::after(seq);
            if tbl == "events" {
                out.consumed += 1;
                out.last = Some(done);
                let Ok(event_seq) = key.parse::<i64>() else {
                    continue;
                };
                if !seen.insert((tbl.clone(), key.clone())) {
                    continue;
                }
                if let Some(mut ev) = events.remove(&event_seq) {
                    if ev.category == "change" {
                        ev.related = self.related_raw(&c, source, &ev.raw).await?;
                    }
                    out.items.push((seq, OutboxItem::Event(ev)));
                }
                continue;
            }
            let Some(table) = Table::from_name(&tbl) else {
                out.consumed += 1;
                out.last = Some(done);
                continue;
            };
            if table == Table::Apps {
                let parsed = if let Some((d, t)) = key.split_once(':') {
                    d.parse::<i64>()
                        .ok()
                        .zip(t.parse::<i64>().ok())
                        .map(|(d, t)| (d, Some(t), 0))
                } else if let Some((d, at)) = key.split_once('@') {
                    d.parse::<i64>()
                        .ok()
                        .zip(at.parse::<i64>().ok())
                        .map(|(d, at)| (d, None, at))
                } else {
                    None
                };
                let Some((dev, title, seen_by)) = parsed else {
                    out.consumed += 1;
                    out.last = Some(done);
                    continue;
                };
                let rows = match title {
                    Some(t) => self
                        .app_by_ids(&c, source, dev, t)
                        .await?
                        .map(|r| (t, r))
                        .into_iter()
                        .collect(),
                    None => {
                        let after_t = match after.part {
                            Some(p) if seq == after.seq => p,
                            _ => i64::MIN,
                        };
                        self.apps_by_device(
                            &c,
                            source,
                            (dev, seen_by),
                            after_t,
                            limit - out.items.len(),
                        )
                        .await?
                    }
                };
                let full = title.is_none() && rows.len() == limit - out.items.len();
                let last_title = rows.last().map(|(t, _)| *t);
                for (_, r) in rows {
                    if !seen.insert((tbl.clone(), r.key.clone())) {
                        continue;
                    }
                    out.items.push((
                        seq,
                        OutboxItem::Row(StoredRow {
                            table,
                            key: r.key,
                            device_id: Some(r.device_id),
                            hash: r.hash,
                            last_seen: r.last_seen,
                            removed_at: r.removed_at,
                            raw: r.raw,
                        }),
                    ));
                }
                let more = match (full, last_title) {
                    (true, Some(t)) => !self
                        .apps_by_device(&c, source, (dev, seen_by), t, 1)
                        .await?
                        .is_empty(),
                    _ => false,
                };
                if more {
                    out.last = Some(OutboxPos {
                        seq,
                        part: last_title,
                    });
                    break;
                }
                out.consumed += 1;
                out.last = Some(done);
                continue;
            }
            out.consumed += 1;
            out.last = Some(done);
            if !seen.insert((tbl.clone(), key.clone())) {
                continue;
            }
            if let Some(r) = self.inventory_row_on(&c, source, table, &key).await? {
                out.items.push((seq, OutboxItem::Row(r)));
            }
        }
        Ok(out)
    }

    async fn offset_on(
        &self,
        c: &impl deadpool_postgres::GenericClient,
        source: &str,
        output: &str,
    ) -> Result<OutboxPos, StoreError> {
        Ok(c.query_opt(
            "SELECT seq, part FROM output_offsets WHERE source = $1 AND output = $2",
            &[&source, &output],
        )
        .await
        .map_err(|e| self.err(e))?
        .map(|r| OutboxPos {
            seq: r.get(0),
            part: r.get(1),
        })
        .unwrap_or_default())
    }

    pub(crate) async fn output_offset(
        &self,
        source: &str,
        output: &str,
    ) -> Result<OutboxPos, StoreError> {
        let c = self.client().await?;
        self.offset_on(&c, source, output).await
    }

    pub(crate) async fn commit_output_offset(
        &self,
        source: &str,
        output: &str,
        pos: OutboxPos,
        delivered: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(|e| self.err(e))?;
        // One writer of an output's offset at a time (replicas each run every output).
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 0))",
            &[&source, &output],
        )
        .await
        .map_err(|e| self.err(e))?;
        let old = self.offset_on(&tx, source, output).await?;
        let pos = pos.max(old);
        tx.execute(
            "INSERT INTO output_offsets (source, output, seq, part, delivered, updated_at, last_success_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6)
             ON CONFLICT (source, output) DO UPDATE SET seq = excluded.seq, part = excluded.part,
                delivered = output_offsets.delivered + excluded.delivered,
                updated_at = excluded.updated_at,
                last_success_at = excluded.updated_at, last_error = NULL",
            &[&source, &output, &pos.seq, &pos.part, &delivered, &now],
        )
        .await
        .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(())
    }

    pub(crate) async fn record_output_error(
        &self,
        source: &str,
        output: &str,
        error: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO output_offsets (source, output, seq, updated_at, last_error, last_error_at)
             VALUES ($1, $2, 0, $3, $4, $3)
             ON CONFLICT (source, output) DO UPDATE SET last_error = excluded.last_error,
                last_error_at = excluded.last_error_at, updated_at = excluded.updated_at",
            &[&source, &output, &now, &error],
        )
        .await
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub(crate) async fn dead_letter(
        &self,
        source: &str,
        output: &str,
        records: Vec<DeadLetter>,
        status: Option<u16>,
        error: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(|e| self.err(e))?;
        let status = status.map(i64::from);
        let seqs: Vec<i64> = records.iter().map(|r| r.seq).collect();
        let ids: Vec<&str> = records.iter().map(|r| r.record_id.as_str()).collect();
        let payloads: Vec<&str> = records.iter().map(|r| r.payload.as_str()).collect();
        tx.execute(
            "INSERT INTO dead_letters (source, output, seq, record_id, status, error, payload, at)
             SELECT $1::TEXT, $2::TEXT, s, i, $3::BIGINT, $4::TEXT, p, $5::BIGINT
             FROM unnest($6::BIGINT[], $7::TEXT[], $8::TEXT[]) WITH ORDINALITY AS u(s, i, p, n)
             ORDER BY n",
            &[
                &source, &output, &status, &error, &now, &seqs, &ids, &payloads,
            ],
        )
        .await
        .map_err(|e| self.err(e))?;
        tx.execute(
            "INSERT INTO output_offsets (source, output, seq, updated_at, dead_total)
             VALUES ($1, $2, 0, $3, $4)
             ON CONFLICT (source, output) DO UPDATE SET dead_total = output_offsets.dead_total + excluded.dead_total",
            &[&source, &output, &now, &(records.len() as i64)],
        )
        .await
        .map_err(|e| self.err(e))?;
        tx.execute(
            "DELETE FROM dead_letters WHERE source = $1 AND output = $2 AND id <= (
                SELECT id FROM dead_letters WHERE source = $1 AND output = $2
                ORDER BY id DESC LIMIT 1 OFFSET $3)",
            &[&source, &output, &DEAD_LETTER_CAP],
        )
        .await
        .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(())
    }

    pub(crate) async fn prune_outbox(
        &self,
        plan: Vec<(String, Vec<String>)>,
    ) -> Result<u64, StoreError> {
        let c = self.client().await?;
        let mut n = 0u64;
        for (source, outputs) in &plan {
            let mut min = i64::MAX;
            for o in outputs {
                let p = self.offset_on(&c, source, o).await?;
                min = min.min(if p.part.is_some() { p.seq - 1 } else { p.seq });
            }
            n += c
                .execute(
                    "DELETE FROM outbox WHERE source = $1 AND seq <= $2",
                    &[source, &min],
                )
                .await
                .map_err(|e| self.err(e))?;
        }
        Ok(n)
    }

    pub(crate) async fn outputs_status(&self) -> Result<Value, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT o.source, o.output, o.seq, o.delivered, o.dead_total, o.last_error,
                        o.last_error_at, o.last_success_at,
                        (SELECT count(*) FROM outbox b WHERE b.source = o.source
                           AND (b.seq > o.seq OR (b.seq = o.seq AND o.part IS NOT NULL))),
                        (SELECT count(*) FROM dead_letters d
                          WHERE d.source = o.source AND d.output = o.output)
                 FROM output_offsets o ORDER BY o.source, o.output",
                &[],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(Value::Array(
            rows.iter()
                .map(|r| {
                    json!({
                        "source": r.get::<_, String>(0),
                        "output": r.get::<_, String>(1),
                        "offset": r.get::<_, i64>(2),
                        "delivered": r.get::<_, i64>(3),
                        "dead_letters_total": r.get::<_, i64>(4),
                        "last_error": r.get::<_, Option<String>>(5),
                        "last_error_at": r.get::<_, Option<i64>>(6),
                        "last_success_at": r.get::<_, Option<i64>>(7),
                        "pending": r.get::<_, i64>(8),
                        "dead_letters": r.get::<_, i64>(9),
                    })
                })
                .collect(),
        ))
    }

    pub(crate) async fn dead_letters(
        &self,
        source: &str,
        output: &str,
        limit: usize,
    ) -> Result<Value, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT id, seq, record_id, status, error, payload, at FROM dead_letters
                 WHERE source = $1 AND output = $2 ORDER BY id DESC LIMIT $3",
                &[&source, &output, &(limit as i64)],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(Value::Array(
            rows.iter()
                .map(|r| {
                    let payload: String = r.get(5);
                    json!({
                        "id": r.get::<_, i64>(0),
                        "seq": r.get::<_, i64>(1),
                        "record_id": r.get::<_, String>(2),
                        "status": r.get::<_, Option<i64>>(3),
                        "error": r.get::<_, String>(4),
                        "payload": serde_json::from_str::<Value>(&payload).unwrap_or(Value::String(payload)),
                        "at": r.get::<_, i64>(6),
                    })
                })
                .collect(),
        ))
    }

    /// `export`: every record of `kind` of `source`, streamed to `each` (events in time order,
    /// inventory rows live only, in key order). Runs on the calling thread (blocking context),
    /// on the runtime `handle`.
    pub(crate) fn export_each(
        &self,
        handle: &tokio::runtime::Handle,
        source: &str,
        kind: ExportKind,
        since: Option<i64>,
        each: &mut dyn FnMut(ExportItem) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        use futures::StreamExt;
        handle.block_on(async {
            let mut c = self.client().await?;
            // A cursor walk inside a transaction: rows stream, nothing is held in memory.
            let tx = c.transaction().await.map_err(|e| self.err(e))?;
            let (sql, params): (String, Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>>) =
                match kind {
                    ExportKind::Events(stream) => (
                        format!(
                            "SELECT {EVENT_COLS} FROM events
                             WHERE source = $1 AND stream = $2
                               AND ($3::BIGINT IS NULL OR occurred_at >= $3)
                             ORDER BY occurred_at, seq"
                        ),
                        vec![
                            Box::new(source.to_string()),
                            Box::new(stream.to_string()),
                            Box::new(since),
                        ],
                    ),
                    ExportKind::Table(Table::Apps) => {
                        let snapshot: Option<i64> = tx
                            .query_opt(
                                "SELECT at FROM snapshots WHERE source = $1 AND tbl = 'apps' AND scope = '*'",
                                &[&source],
                            )
                            .await
                            .map_err(|e| self.err(e))?
                            .map(|r| r.get(0));
                        let seen_all = matches!((since, snapshot), (Some(s), Some(at)) if at >= s)
                            || since.is_none();
                        (
                            format!(
                                "{} WHERE i.source = $1 AND i.removed_at IS NULL
                                   AND ($2 OR coalesce(i.last_seen, i.first_seen) >= $3)
                                 ORDER BY d.device_id, t.ident",
                                super::apps::REBUILD_SELECT
                            ),
                            vec![
                                Box::new(source.to_string()),
                                Box::new(seen_all),
                                Box::new(since.unwrap_or(0)),
                            ],
                        )
                    }
                    ExportKind::Table(table) => {
                        let seen_by_snapshot = match table.spec().snapshots {
                            super::super::tables::Snapshots::Resume => String::new(),
                            super::super::tables::Snapshots::Restart(col) => format!(
                                " OR EXISTS (SELECT 1 FROM snapshots s WHERE s.source = t.source
                                     AND s.tbl = '{name}' AND s.scope = {scope} AND s.at >= $2)",
                                name = table.name(),
                                scope = if col.is_empty() {
                                    "'*'".to_string()
                                } else {
                                    format!("'{col}=' || t.{col}")
                                }
                            ),
                        };
                        (
                            format!(
                                "SELECT key, device_id, hash, last_seen, raw::TEXT FROM {} t
                                 WHERE source = $1 AND removed_at IS NULL
                                   AND ($2::BIGINT IS NULL OR last_seen >= $2{seen_by_snapshot})
                                 ORDER BY key",
                                table.name()
                            ),
                            vec![Box::new(source.to_string()), Box::new(since)],
                        )
                    }
                };
            let p: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
                .iter()
                .map(|b| b.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
                .collect();
            let stream = tx
                .query_raw(&sql, p.iter().copied())
                .await
                .map_err(|e| self.err(e))?;
            futures::pin_mut!(stream);
            while let Some(r) = stream.next().await {
                let r = r.map_err(|e| self.err(e))?;
                let item = match kind {
                    ExportKind::Events(stream) => {
                        ExportItem::Event(stored_event(&r, Some(stream.to_string())))
                    }
                    ExportKind::Table(Table::Apps) => {
                        let (_, row) = super::apps::rebuilt(&r);
                        ExportItem::Row(StoredRow {
                            table: Table::Apps,
                            key: row.key,
                            device_id: Some(row.device_id),
                            hash: row.hash,
                            last_seen: row.last_seen,
                            removed_at: row.removed_at,
                            raw: row.raw,
                        })
                    }
                    ExportKind::Table(table) => ExportItem::Row(StoredRow {
                        table,
                        key: r.get(0),
                        device_id: r.get(1),
                        hash: r.get(2),
                        last_seen: r.get(3),
                        removed_at: None,
                        raw: json_or_text(r.get(4)),
                    }),
                };
                each(item)?;
            }
            Ok(())
        })
    }
}

impl PgStore {
    pub(crate) async fn record_others_sample(
        &self,
        source: &str,
        hour: i64,
        others: i64,
    ) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO budget_samples (source, hour, requests, others) VALUES ($1, $2, 0, $3)
             ON CONFLICT (source, hour) DO UPDATE SET others = excluded.others",
            &[&source, &hour, &others],
        )
        .await
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub(crate) async fn others_series(
        &self,
        source: &str,
        since: i64,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let c = self.client().await?;
        Ok(c.query(
            "SELECT hour, others FROM budget_samples
             WHERE source = $1 AND hour >= $2 AND others IS NOT NULL ORDER BY hour",
            &[&source, &since],
        )
        .await
        .map_err(|e| self.err(e))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
    }

    pub(crate) async fn set_source_fact(
        &self,
        source: &str,
        key: &str,
        value: &str,
        at: i64,
    ) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO source_facts (source, key, value, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (source, key) DO UPDATE SET value = excluded.value,
               updated_at = excluded.updated_at",
            &[&source, &key, &value, &at],
        )
        .await
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub(crate) async fn source_fact(
        &self,
        source: &str,
        key: &str,
    ) -> Result<Option<(String, i64)>, StoreError> {
        let c = self.client().await?;
        Ok(c.query_opt(
            "SELECT value, updated_at FROM source_facts WHERE source = $1 AND key = $2",
            &[&source, &key],
        )
        .await
        .map_err(|e| self.err(e))?
        .map(|r| (r.get(0), r.get(1))))
    }

    pub(crate) async fn events_of_types(
        &self,
        source: &str,
        stream: &str,
        types: &[String],
    ) -> Result<Vec<(i64, String, String)>, StoreError> {
        let c = self.client().await?;
        let rows = if types.is_empty() {
            c.query(
                "SELECT occurred_at, event_type, raw::text FROM events
                 WHERE source = $1 AND stream = $2 ORDER BY occurred_at, seq",
                &[&source, &stream],
            )
            .await
        } else {
            c.query(
                "SELECT occurred_at, event_type, raw::text FROM events
                 WHERE source = $1 AND stream = $2 AND event_type = ANY($3)
                 ORDER BY occurred_at, seq",
                &[&source, &stream, &types],
            )
            .await
        }
        .map_err(|e| self.err(e))?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }
}
