//! Per-hour samples: requests spent (the budget chart and the planner) and records written
//! (the records chart; written with each page in `write.rs`).

use rusqlite::params;

use super::{Store, StoreError};

impl Store {
    /// Records this hour's budget use of a source (the highest count seen this hour wins).
    pub async fn record_budget_sample(
        &self,
        source: &str,
        hour: i64,
        requests: u64,
        limit_hour: u64,
        share: u64,
    ) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return pg
                .record_budget_sample_held(source, hour, requests, limit_hour, share)
                .await;
        }
        let source = source.to_string();
        self.exec("recording a budget sample", move |w| {
            w.conn.execute(
                "INSERT INTO budget_samples (source, hour, requests, limit_hour, share)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (source, hour) DO UPDATE SET
                   requests = max(requests, excluded.requests),
                   limit_hour = excluded.limit_hour, share = excluded.share",
                params![
                    source,
                    hour,
                    requests as i64,
                    limit_hour as i64,
                    share as i64
                ],
            )?;
            Ok(())
        })
        .await
    }

    /// Budget use per hour since `since`: (hour ms, requests, hourly limit, share).
    pub async fn budget_series(
        &self,
        source: &str,
        since: i64,
    ) -> Result<Vec<(i64, i64, i64, i64)>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.budget_series(source, since).await;
        }
        let source = source.to_string();
        self.read(move |c| {
            let mut st = c.prepare(
                "SELECT hour, requests, coalesce(limit_hour, 10000), coalesce(share, 0)
                 FROM budget_samples WHERE source = ?1 AND hour >= ?2 ORDER BY hour",
            )?;
            let rows = st
                .query_map(params![source, since], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Records per hour per category since `since`: (hour ms, category, records).
    pub async fn record_series(
        &self,
        source: &str,
        since: i64,
    ) -> Result<Vec<(i64, String, i64)>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.record_series(source, since).await;
        }
        let source = source.to_string();
        self.read(move |c| {
            let mut st = c.prepare(
                "SELECT hour, category, records FROM record_samples
                 WHERE source = ?1 AND hour >= ?2 ORDER BY hour, category",
            )?;
            let rows = st
                .query_map(params![source, since], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }
}
