//! Streaming a stream's records out (`export`, raw or OCSF), in one pass over a reader:
//! nothing is collected in memory.

use rusqlite::params;

use super::outbox::{StoredEvent, StoredRow};
use super::{Store, StoreError, Table, apps};

/// What `export` reads: an event stream, or an inventory table's live rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportKind {
    Events(&'static str),
    Table(Table),
}

/// One exported record.
#[derive(Debug)]
pub enum ExportItem {
    Row(StoredRow),
    Event(StoredEvent),
}

impl Store {
    /// Calls `each` for every record of `kind` of `source` (events in time order, inventory
    /// rows live only, in key order), seen or occurred at or after `since`. Blocking: call it
    /// from a blocking context. `each` returning an error stops the walk.
    pub fn export_each(
        &self,
        source: &str,
        kind: ExportKind,
        since: Option<i64>,
        each: &mut dyn FnMut(ExportItem) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            let handle = tokio::runtime::Handle::try_current().map_err(|_| {
                StoreError::Invalid("export from a PostgreSQL store needs the async runtime".into())
            })?;
            // Called from async code (the CLI) or a blocking thread: either way, wait here.
            return match handle.runtime_flavor() {
                tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(|| {
                    pg.export_each(&handle, source, kind, since, each)
                }),
                _ => pg.export_each(&handle, source, kind, since, each),
            };
        }
        self.read_blocking(|c| match kind {
            ExportKind::Events(stream) => {
                let mut st = c.prepare(
                    "SELECT category, event_type, uid, occurred_at, device_id, user_id, severity,
                            summary, raw, hash FROM events
                     WHERE source = ?1 AND stream = ?2 AND (?3 IS NULL OR occurred_at >= ?3)
                     ORDER BY occurred_at, seq",
                )?;
                let mut rows = st.query(params![source, stream, since])?;
                while let Some(r) = rows.next()? {
                    let raw: String = r.get(8)?;
                    each(ExportItem::Event(StoredEvent {
                        stream: stream.to_string(),
                        category: r.get(0)?,
                        event_type: r.get(1)?,
                        uid: r.get(2)?,
                        occurred_at: r.get(3)?,
                        device_id: r.get(4)?,
                        user_id: r.get(5)?,
                        severity: r.get(6)?,
                        summary: r.get(7)?,
                        raw: serde_json::from_str(&raw).unwrap_or(serde_json::Value::String(raw)),
                        hash: r.get(9)?,
                        related: None,
                    }))?;
                }
                Ok(())
            }
            ExportKind::Table(Table::Apps) => apps::for_each(c, source, since, &mut |r| {
                each(ExportItem::Row(StoredRow {
                    table: Table::Apps,
                    key: r.key,
                    device_id: Some(r.device_id),
                    hash: r.hash,
                    last_seen: r.last_seen,
                    removed_at: r.removed_at,
                    raw: r.raw,
                }))
            }),
            ExportKind::Table(table) => {
                // A live row of a snapshot table that a full snapshot found unchanged was not
                // rewritten: it was seen when that snapshot completed.
                let seen_by_snapshot = match table.spec().snapshots {
                    super::tables::Snapshots::Resume => String::new(),
                    super::tables::Snapshots::Restart(col) => format!(
                        " OR EXISTS (SELECT 1 FROM snapshots s WHERE s.source = t.source
                             AND s.tbl = ?3 AND s.scope = {} AND s.at >= ?2)",
                        if col.is_empty() {
                            "'*'".to_string()
                        } else {
                            format!("'{col}=' || t.{col}")
                        }
                    ),
                };
                let mut st = c.prepare(&format!(
                    "SELECT key, device_id, hash, last_seen, raw FROM {} t
                     WHERE source = ?1 AND removed_at IS NULL AND ?3 IS NOT NULL
                       AND (?2 IS NULL OR last_seen >= ?2{seen_by_snapshot})
                     ORDER BY key",
                    table.name()
                ))?;
                let mut rows = st.query(params![source, since, table.name()])?;
                while let Some(r) = rows.next()? {
                    let raw: String = r.get(4)?;
                    each(ExportItem::Row(StoredRow {
                        table,
                        key: r.get(0)?,
                        device_id: r.get(1)?,
                        hash: r.get(2)?,
                        last_seen: r.get(3)?,
                        removed_at: None,
                        raw: serde_json::from_str(&raw).unwrap_or(serde_json::Value::String(raw)),
                    }))?;
                }
                Ok(())
            }
        })
    }
}
