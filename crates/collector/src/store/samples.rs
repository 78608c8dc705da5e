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

impl Store {
    /// Records what the other tools on the tenant spent in an hour (the budget chart's second
    /// series). The latest estimate wins.
    pub async fn record_others_sample(
        &self,
        source: &str,
        hour: i64,
        others: u64,
    ) -> Result<(), StoreError> {
        let others = i64::try_from(others).unwrap_or(i64::MAX);
        if let Some(pg) = self.pg() {
            return pg.record_others_sample(source, hour, others).await;
        }
        let source = source.to_string();
        self.exec("recording the other tools' spend", move |w| {
            w.conn.execute(
                "INSERT INTO budget_samples (source, hour, requests, others) VALUES (?1, ?2, 0, ?3)
                 ON CONFLICT (source, hour) DO UPDATE SET others = excluded.others",
                params![source, hour, others],
            )?;
            Ok(())
        })
        .await
    }

    /// The other tools' spend per hour since `since`: (hour ms, requests), hours with an
    /// estimate only.
    pub async fn others_series(
        &self,
        source: &str,
        since: i64,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.others_series(source, since).await;
        }
        let source = source.to_string();
        self.read(move |c| {
            let mut st = c.prepare(
                "SELECT hour, others FROM budget_samples
                 WHERE source = ?1 AND hour >= ?2 AND others IS NOT NULL ORDER BY hour",
            )?;
            let rows = st
                .query_map(params![source, since], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Keeps a small finding about a source (JSON text) under `key`, replacing the last one.
    pub async fn set_source_fact(
        &self,
        source: &str,
        key: &str,
        value: String,
        at: i64,
    ) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return pg.set_source_fact(source, key, &value, at).await;
        }
        let (source, key) = (source.to_string(), key.to_string());
        self.exec("keeping a source finding", move |w| {
            w.conn.execute(
                "INSERT INTO source_facts (source, key, value, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (source, key) DO UPDATE SET value = excluded.value,
                   updated_at = excluded.updated_at",
                params![source, key, value, at],
            )?;
            Ok(())
        })
        .await
    }

    /// A finding kept with [`Store::set_source_fact`]: (value, when).
    pub async fn source_fact(
        &self,
        source: &str,
        key: &str,
    ) -> Result<Option<(String, i64)>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.source_fact(source, key).await;
        }
        let (source, key) = (source.to_string(), key.to_string());
        self.read(move |c| {
            use rusqlite::OptionalExtension;
            Ok(c.query_row(
                "SELECT value, updated_at FROM source_facts WHERE source = ?1 AND key = ?2",
                params![source, key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
        })
        .await
    }

    /// A stream's events of the given types (all its events when `types` is empty), oldest
    /// first: (occurred_at ms, event_type, raw JSON). For the token's history (audit events
    /// about API tokens and admins) and the health records' last states: both small sets,
    /// found through the event-type index.
    pub async fn events_of_types(
        &self,
        source: &str,
        stream: &str,
        types: Vec<String>,
    ) -> Result<Vec<(i64, String, String)>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.events_of_types(source, stream, &types).await;
        }
        let (source, stream) = (source.to_string(), stream.to_string());
        self.read(move |c| {
            let mut out = Vec::new();
            if types.is_empty() {
                let mut st = c.prepare(
                    "SELECT occurred_at, event_type, raw FROM events
                     WHERE source = ?1 AND stream = ?2 ORDER BY occurred_at, seq",
                )?;
                let rows = st.query_map(params![source, stream], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?;
                for r in rows {
                    out.push(r?);
                }
            } else {
                let mut st = c.prepare(
                    "SELECT occurred_at, event_type, raw FROM events
                     WHERE event_type = ?3 AND source = ?1 AND stream = ?2",
                )?;
                for t in &types {
                    let rows = st.query_map(params![source, stream, t], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })?;
                    for r in rows {
                        out.push(r?);
                    }
                }
                out.sort_by_key(|(at, _, _): &(i64, String, String)| *at);
            }
            Ok(out)
        })
        .await
    }
}
