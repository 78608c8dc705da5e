//! Lookups: what filters resolve against (blueprints, tags, live devices), the explorer's
//! filter menus, and fleet sizes.

use std::collections::HashSet;

use rusqlite::params;

use super::{Store, StoreError, Table};

impl Store {
    /// The ids of `wanted` (ids or names, names matched without case) in a dimension table
    /// (blueprints or tags) of a source; `Err(name)` for the first one it does not hold.
    pub async fn resolve_ids(
        &self,
        source: &str,
        table: Table,
        wanted: Vec<String>,
    ) -> Result<Result<Vec<String>, String>, StoreError> {
        if !matches!(table, Table::Blueprints | Table::Tags) {
            return Err(StoreError::Invalid(format!(
                "{} is not a dimension table",
                table.name()
            )));
        }
        if let Some(pg) = self.pg() {
            return pg.resolve_ids(source, table, wanted).await;
        }
        let source = source.to_string();
        self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT key FROM {} WHERE source = ?1 AND removed_at IS NULL
                 AND (key = ?2 OR name = ?2 COLLATE NOCASE) LIMIT 1",
                table.name()
            ))?;
            let mut out = Vec::new();
            for w in wanted {
                let id: Option<String> = st.query_row(params![source, w], |r| r.get(0)).ok();
                match id {
                    Some(id) => out.push(id),
                    None => return Ok(Err(w)),
                }
            }
            Ok(Ok(out))
        })
        .await
    }

    /// A dimension table's live rows of a source: (id, name), by name.
    pub async fn dimension(
        &self,
        source: &str,
        table: Table,
    ) -> Result<Vec<(String, String)>, StoreError> {
        if !matches!(table, Table::Blueprints | Table::Tags) {
            return Err(StoreError::Invalid(format!(
                "{} is not a dimension table",
                table.name()
            )));
        }
        if let Some(pg) = self.pg() {
            return pg.dimension(source, table).await;
        }
        let source = source.to_string();
        self.read(move |c| {
            let mut st = c.prepare(&format!(
                "SELECT key, coalesce(name, key) FROM {} WHERE source = ?1 AND removed_at IS NULL
                 ORDER BY name",
                table.name()
            ))?;
            let rows = st
                .query_map([&source], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// The ids of a source's live devices.
    pub async fn live_device_ids(&self, source: &str) -> Result<HashSet<String>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.live_device_ids(source).await;
        }
        let source = source.to_string();
        self.read(move |c| {
            let mut st =
                c.prepare("SELECT key FROM devices WHERE source = ?1 AND removed_at IS NULL")?;
            let ids = st
                .query_map([&source], |r| r.get::<_, String>(0))?
                .collect::<Result<_, _>>()?;
            Ok(ids)
        })
        .await
    }

    /// The rows the end of sweep `sweep` would mark removed if it saw none of them again: live,
    /// not seen in this sweep, and one miss short of the table's threshold. A sweep asks for
    /// evidence before it lets them go.
    pub async fn removal_candidates(
        &self,
        source: &str,
        table: super::Table,
        sweep: i64,
    ) -> Result<Vec<String>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.removal_candidates(source, table, sweep).await;
        }
        let source = source.to_string();
        let spec = table.spec();
        let threshold = spec.remove_after_missed;
        let sql = format!(
            "SELECT key FROM {} WHERE source = ?1 AND removed_at IS NULL AND sweep < ?2
               AND missing + 1 >= ?3 ORDER BY key",
            spec.name
        );
        self.read(move |c| {
            let mut st = c.prepare(&sql)?;
            let keys = st
                .query_map(rusqlite::params![source, sweep, threshold], |r| {
                    r.get::<_, String>(0)
                })?
                .collect::<Result<_, _>>()?;
            Ok(keys)
        })
        .await
    }

    /// Live devices and users of a source (the planner's fleet size).
    pub async fn fleet_size(&self, source: &str) -> Result<(u64, u64), StoreError> {
        if let Some(pg) = self.pg() {
            return pg.fleet_size(source).await;
        }
        let source = source.to_string();
        self.read(move |c| {
            let d: i64 = c.query_row(
                "SELECT count(*) FROM devices WHERE source = ?1 AND removed_at IS NULL",
                [&source],
                |r| r.get(0),
            )?;
            let u: i64 = c.query_row(
                "SELECT count(*) FROM users WHERE source = ?1 AND removed_at IS NULL",
                [&source],
                |r| r.get(0),
            )?;
            Ok((d.max(0) as u64, u.max(0) as u64))
        })
        .await
    }

    /// The explorer's menus: sources with a status, record categories, event types (by a
    /// skip-scan of the type index: one seek per distinct type), platforms and blueprints of
    /// live devices.
    pub async fn menus(&self) -> Result<Menus, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.menus().await;
        }
        self.read(|c| {
            let list = |sql: &str| -> Result<Vec<String>, StoreError> {
                let mut st = c.prepare(sql)?;
                let v = st
                    .query_map([], |r| r.get::<_, Option<String>>(0))?
                    .filter_map(|r| r.ok().flatten())
                    .collect();
                Ok(v)
            };
            Ok(Menus {
                sources: list("SELECT DISTINCT source FROM stream_status ORDER BY 1")?,
                categories: list("SELECT DISTINCT category FROM record_samples ORDER BY 1")?,
                event_types: list(
                    "WITH RECURSIVE t(v) AS (
                       SELECT (SELECT min(event_type) FROM events)
                       UNION ALL
                       SELECT (SELECT min(event_type) FROM events WHERE event_type > t.v)
                       FROM t WHERE t.v IS NOT NULL)
                     SELECT v FROM t WHERE v IS NOT NULL",
                )?,
                platforms: list(
                    "WITH RECURSIVE t(v) AS (
                       SELECT (SELECT min(platform) FROM devices WHERE removed_at IS NULL)
                       UNION ALL
                       SELECT (SELECT min(platform) FROM devices
                               WHERE removed_at IS NULL AND platform > t.v)
                       FROM t WHERE t.v IS NOT NULL)
                     SELECT v FROM t WHERE v IS NOT NULL",
                )?,
                blueprints: list(
                    "WITH RECURSIVE t(v) AS (
                       SELECT (SELECT min(blueprint_name) FROM devices WHERE removed_at IS NULL)
                       UNION ALL
                       SELECT (SELECT min(blueprint_name) FROM devices
                               WHERE removed_at IS NULL AND blueprint_name > t.v)
                       FROM t WHERE t.v IS NOT NULL)
                     SELECT v FROM t WHERE v IS NOT NULL",
                )?,
            })
        })
        .await
    }
}

/// The explorer's filter menus.
#[derive(Debug, Clone, Default)]
pub struct Menus {
    pub sources: Vec<String>,
    pub categories: Vec<String>,
    pub event_types: Vec<String>,
    pub platforms: Vec<String>,
    pub blueprints: Vec<String>,
}
