//! Stream status: each stream's state, last success and error, records and next run.

use rusqlite::params;

use super::{Store, StoreError, now_ms};

/// How a run ended, as status records it.
#[derive(Debug, Clone)]
pub enum StreamOutcome {
    Success {
        records: i64,
        requests: i64,
        next_run_at: i64,
        /// Collected, but not all of it (`degraded`): what is missing and why.
        degraded: Option<Missing>,
    },
    Failure {
        state: &'static str,
        kind: &'static str,
        message: String,
        endpoint: Option<String>,
        next_run_at: i64,
    },
}

/// What a run that succeeded could not collect: shown as the stream's last error, with the
/// state `degraded`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub kind: &'static str,
    pub message: String,
    pub endpoint: Option<String>,
}

/// One row of `status`: a stream's state with its checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusRow {
    pub source: String,
    pub stream: String,
    pub state: String,
    pub last_success_at: Option<i64>,
    pub last_error_at: Option<i64>,
    pub last_error_kind: Option<String>,
    pub last_error_message: Option<String>,
    pub last_error_endpoint: Option<String>,
    pub records_total: i64,
    pub last_run_records: i64,
    pub last_run_requests: i64,
    pub next_run_at: Option<i64>,
    pub last_run_at: Option<i64>,
    pub checkpoint: Option<String>,
}

impl Store {
    /// Sets a stream's state; `syncing` also stamps the run's start.
    pub async fn set_stream_state(
        &self,
        source: &str,
        stream: &str,
        state: &'static str,
    ) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return pg.set_stream_state(source, stream, state).await;
        }
        let (source, stream) = (source.to_string(), stream.to_string());
        self.exec("recording stream status", move |w| {
            w.conn.execute(
                "INSERT INTO stream_status (source, stream, state, last_run_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (source, stream) DO UPDATE SET state = excluded.state,
                   last_run_at = CASE WHEN excluded.state = 'syncing' THEN excluded.last_run_at ELSE last_run_at END",
                params![source, stream, state, now_ms()],
            )?;
            Ok(())
        })
        .await
    }

    /// Marks every listed stream of a source disabled.
    pub async fn disable_streams(
        &self,
        source: &str,
        streams: Vec<&'static str>,
    ) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return pg.disable_streams(source, streams).await;
        }
        let source = source.to_string();
        self.exec("recording stream status", move |w| {
            let tx = w.conn.transaction()?;
            for s in streams {
                tx.execute(
                    "INSERT INTO stream_status (source, stream, state) VALUES (?1, ?2, 'disabled')
                     ON CONFLICT (source, stream) DO UPDATE SET state = 'disabled'",
                    params![source, s],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Marks every stream of a source disabled (its settings were deleted).
    pub async fn disable_source(&self, source: &str) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return pg.disable_source(source).await;
        }
        let source = source.to_string();
        self.exec("recording stream status", move |w| {
            w.conn.execute(
                "UPDATE stream_status SET state = 'disabled' WHERE source = ?1",
                [&source],
            )?;
            Ok(())
        })
        .await
    }

    /// Records how a run ended.
    pub async fn record_stream_run(
        &self,
        source: &str,
        stream: &str,
        outcome: StreamOutcome,
    ) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return pg.record_stream_run(source, stream, outcome).await;
        }
        let (source, stream) = (source.to_string(), stream.to_string());
        self.exec("recording stream status", move |w| {
            let now = now_ms();
            match outcome {
                StreamOutcome::Success {
                    records,
                    requests,
                    next_run_at,
                    degraded,
                } => {
                    // A healthy run keeps the last error for the record; a degraded one sets it.
                    let state = if degraded.is_some() { "degraded" } else { "healthy" };
                    let (kind, message, endpoint) = match degraded {
                        Some(m) => (Some(m.kind), Some(m.message), m.endpoint),
                        None => (None, None, None),
                    };
                    w.conn.execute(
                        "INSERT INTO stream_status (source, stream, state, last_success_at,
                            last_run_records, last_run_requests, next_run_at, last_error_at,
                            last_error_kind, last_error_message, last_error_endpoint)
                         VALUES (?1, ?2, ?7, ?3, ?4, ?5, ?6, CASE WHEN ?8 IS NULL THEN NULL ELSE ?3 END,
                            ?8, ?9, ?10)
                         ON CONFLICT (source, stream) DO UPDATE SET state = ?7,
                           last_success_at = ?3, last_run_records = ?4, last_run_requests = ?5,
                           next_run_at = ?6,
                           last_error_at = CASE WHEN ?8 IS NULL THEN last_error_at ELSE ?3 END,
                           last_error_kind = coalesce(?8, last_error_kind),
                           last_error_message = coalesce(?9, last_error_message),
                           last_error_endpoint = CASE WHEN ?8 IS NULL THEN last_error_endpoint ELSE ?10 END",
                        params![
                            source, stream, now, records, requests, next_run_at, state, kind,
                            message, endpoint
                        ],
                    )?
                }
                StreamOutcome::Failure {
                    state,
                    kind,
                    message,
                    endpoint,
                    next_run_at,
                } => w.conn.execute(
                    "INSERT INTO stream_status (source, stream, state, last_error_at, last_error_kind,
                        last_error_message, last_error_endpoint, next_run_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (source, stream) DO UPDATE SET state = ?3, last_error_at = ?4,
                       last_error_kind = ?5, last_error_message = ?6, last_error_endpoint = ?7,
                       next_run_at = ?8",
                    params![source, stream, state, now, kind, message, endpoint, next_run_at],
                )?,
            };
            Ok(())
        })
        .await
    }

    /// Each stream's last success — left out when the stream's last run failed, so a restart
    /// (e.g. after a token rotation) retries it at once.
    pub async fn last_successes(&self, source: &str) -> Result<Vec<(String, i64)>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.last_successes(source).await;
        }
        let source = source.to_string();
        self.read(move |c| {
            let mut st = c.prepare(
                "SELECT stream, last_success_at FROM stream_status
                 WHERE source = ?1 AND last_success_at IS NOT NULL
                   AND state IN ('healthy', 'degraded', 'syncing', 'pending', 'disabled')",
            )?;
            let rows = st
                .query_map([&source], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Every stream's status row (of one source, or all), with its checkpoint.
    pub async fn stream_status(&self, only: Option<&str>) -> Result<Vec<StatusRow>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.stream_status(only).await;
        }
        let only = only.map(str::to_string);
        self.read(move |c| {
            let mut st = c.prepare(
                "SELECT s.source, s.stream, s.state, s.last_success_at, s.last_error_at,
                        s.last_error_kind, s.last_error_message, s.last_error_endpoint,
                        s.records_total, s.last_run_records, s.last_run_requests, s.next_run_at,
                        s.last_run_at, c.value
                 FROM stream_status s
                 LEFT JOIN checkpoints c ON c.source = s.source AND c.stream = s.stream
                 WHERE ?1 IS NULL OR s.source = ?1 ORDER BY s.source, s.stream",
            )?;
            let rows = st
                .query_map(params![only], |r| {
                    Ok(StatusRow {
                        source: r.get(0)?,
                        stream: r.get(1)?,
                        state: r.get(2)?,
                        last_success_at: r.get(3)?,
                        last_error_at: r.get(4)?,
                        last_error_kind: r.get(5)?,
                        last_error_message: r.get(6)?,
                        last_error_endpoint: r.get(7)?,
                        records_total: r.get(8)?,
                        last_run_records: r.get(9)?,
                        last_run_requests: r.get(10)?,
                        next_run_at: r.get(11)?,
                        last_run_at: r.get(12)?,
                        checkpoint: r.get(13)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }
}
