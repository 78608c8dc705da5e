//! The outbox and the outputs' offsets: every inventory row version and every event version
//! the store commits gets an `outbox` row in the SAME transaction (`write.rs`; the installs
//! of a device one batch first saw share one row, `DEV@AT`), so its `seq` orders everything a
//! source produced. Each output keeps its own offset in `output_offsets`; records rejected
//! for good go to the bounded `dead_letters`.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

use super::{Store, StoreError, Table, apps};

/// Dead letters kept per output (oldest dropped beyond; `dead_total` keeps counting).
pub const DEAD_LETTER_CAP: i64 = 10_000;

/// An inventory row as stored (apps rebuilt to their Prism shape).
#[derive(Debug, Clone)]
pub struct StoredRow {
    pub table: Table,
    pub key: String,
    pub device_id: Option<String>,
    pub hash: i64,
    pub last_seen: i64,
    pub removed_at: Option<i64>,
    pub raw: Value,
}

/// An event as stored; change events carry the current raw row they are about.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub stream: String,
    pub category: String,
    pub event_type: String,
    pub uid: String,
    pub occurred_at: i64,
    pub device_id: Option<String>,
    pub user_id: Option<String>,
    pub severity: Option<String>,
    pub summary: String,
    pub raw: Value,
    pub hash: i64,
    pub related: Option<Value>,
}

/// One record the outbox points at.
#[derive(Debug, Clone)]
pub enum OutboxItem {
    Row(StoredRow),
    Event(StoredEvent),
}

/// A position in a source's outbox: every row before `seq` is delivered, and row `seq` is
/// delivered whole (`part: None`) or, for a device's app installs, up to title id `part`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxPos {
    pub seq: i64,
    pub part: Option<i64>,
}

/// Positions in outbox order: within a row, a part comes before the whole row.
impl Ord for OutboxPos {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.seq
            .cmp(&other.seq)
            .then(match (self.part, other.part) {
                (None, None) => std::cmp::Ordering::Equal,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(_), None) => std::cmp::Ordering::Less,
                (Some(a), Some(b)) => a.cmp(&b),
            })
    }
}

impl PartialOrd for OutboxPos {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl OutboxPos {
    /// Right after row `seq`.
    pub fn after(seq: i64) -> OutboxPos {
        OutboxPos { seq, part: None }
    }
}

/// What [`Store::outbox_batch`] read.
#[derive(Debug, Clone, Default)]
pub struct OutboxBatch {
    /// (outbox seq, record), in outbox order; a record written twice before delivery appears
    /// once (its current version).
    pub items: Vec<(i64, OutboxItem)>,
    /// Where the batch ends (records gone since are skipped but still move it); a device's
    /// installs beyond the batch's room are split across batches, never the batch overfilled.
    pub last: Option<OutboxPos>,
    /// Outbox rows read whole.
    pub consumed: usize,
}

fn json_or_text(raw: String) -> Value {
    serde_json::from_str(&raw).unwrap_or(Value::String(raw))
}

/// One generic inventory row by key.
fn inventory_row(
    c: &Connection,
    source: &str,
    table: Table,
    key: &str,
) -> Result<Option<StoredRow>, StoreError> {
    if table == Table::Apps {
        return Ok(apps::by_key(c, source, key)?.map(|r| StoredRow {
            table,
            key: r.key,
            device_id: Some(r.device_id),
            hash: r.hash,
            last_seen: r.last_seen,
            removed_at: r.removed_at,
            raw: r.raw,
        }));
    }
    Ok(c.prepare_cached(&format!(
        "SELECT device_id, hash, last_seen, removed_at, raw FROM {} WHERE source = ?1 AND key = ?2",
        table.name()
    ))?
    .query_row(params![source, key], |r| {
        Ok(StoredRow {
            table,
            key: key.to_string(),
            device_id: r.get(0)?,
            hash: r.get(1)?,
            last_seen: r.get(2)?,
            removed_at: r.get(3)?,
            raw: json_or_text(r.get(4)?),
        })
    })
    .optional()?)
}

/// The current raw form of the row a change event names.
pub(crate) fn related_raw(
    c: &Connection,
    source: &str,
    raw: &Value,
) -> Result<Option<Value>, StoreError> {
    match (
        raw.get("table")
            .and_then(Value::as_str)
            .and_then(Table::from_name),
        raw.get("key").and_then(Value::as_str),
    ) {
        (Some(t), Some(k)) => Ok(inventory_row(c, source, t, k)?.map(|r| r.raw)),
        _ => Ok(None),
    }
}

pub(crate) fn event_by_seq(
    c: &Connection,
    source: &str,
    seq: i64,
    with_related: bool,
) -> Result<Option<StoredEvent>, StoreError> {
    let ev = c
        .prepare_cached(
            "SELECT stream, category, event_type, uid, occurred_at, device_id, user_id, severity,
                    summary, raw, hash FROM events WHERE seq = ?1",
        )?
        .query_row([seq], |r| {
            Ok(StoredEvent {
                stream: r.get(0)?,
                category: r.get(1)?,
                event_type: r.get(2)?,
                uid: r.get(3)?,
                occurred_at: r.get(4)?,
                device_id: r.get(5)?,
                user_id: r.get(6)?,
                severity: r.get(7)?,
                summary: r.get(8)?,
                raw: json_or_text(r.get(9)?),
                hash: r.get(10)?,
                related: None,
            })
        })
        .optional()?;
    let Some(mut ev) = ev else {
        return Ok(None);
    };
    if with_related && ev.category == "change" {
        ev.related = related_raw(c, source, &ev.raw)?;
    }
    Ok(Some(ev))
}

fn read_batch(
    c: &Connection,
    source: &str,
    after: OutboxPos,
    limit: usize,
) -> Result<OutboxBatch, StoreError> {
    let limit = limit.max(1);
    // A row delivered in part is read again, from where it stopped.
    let first = if after.part.is_some() {
        after.seq
    } else {
        after.seq + 1
    };
    let rows: Vec<(i64, String, String)> = c
        .prepare_cached(
            "SELECT seq, tbl, ref FROM outbox WHERE source = ?1 AND seq >= ?2
             ORDER BY seq LIMIT ?3",
        )?
        .query_map(params![source, first, limit as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut out = OutboxBatch::default();
    let mut seen = std::collections::HashSet::new();
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
            if let Some(ev) = event_by_seq(c, source, event_seq, true)? {
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
            // `DEV:TITLE`, one install; `DEV@AT`, the installs of a device first seen at AT
            // (written by one batch), perhaps begun by an earlier read.
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
                Some(t) => apps::by_ids(c, source, dev, t)?
                    .map(|r| (t, r))
                    .into_iter()
                    .collect(),
                None => {
                    let after = match after.part {
                        Some(p) if seq == after.seq => p,
                        _ => i64::MIN,
                    };
                    apps::by_device(c, source, dev, seen_by, after, limit - out.items.len())?
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
            // The batch is full: stop inside this device unless it has nothing after.
            let more = match (full, last_title) {
                (true, Some(t)) => !apps::by_device(c, source, dev, seen_by, t, 1)?.is_empty(),
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
        if let Some(r) = inventory_row(c, source, table, &key)? {
            out.items.push((seq, OutboxItem::Row(r)));
        }
    }
    Ok(out)
}

/// A record rejected for good, for the dead-letter area.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub seq: i64,
    pub record_id: String,
    pub payload: String,
}

impl Store {
    /// One inventory row by key (apps rebuilt to their Prism shape), live or removed.
    pub async fn inventory_row(
        &self,
        source: &str,
        table: Table,
        key: &str,
    ) -> Result<Option<StoredRow>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.inventory_row(source, table, key).await;
        }
        let (source, key) = (source.to_string(), key.to_string());
        self.read(move |c| inventory_row(c, &source, table, &key))
            .await
    }

    /// Up to `limit` records of `source` after outbox position `after`, in outbox order.
    pub async fn outbox_batch(
        &self,
        source: &str,
        after: OutboxPos,
        limit: usize,
    ) -> Result<OutboxBatch, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.outbox_batch(source, after, limit).await;
        }
        let source = source.to_string();
        self.read(move |c| read_batch(c, &source, after, limit))
            .await
    }

    /// The output's committed offset (the start when it has none yet).
    pub async fn output_offset(&self, source: &str, output: &str) -> Result<OutboxPos, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.output_offset(source, output).await;
        }
        let (source, output) = (source.to_string(), output.to_string());
        self.read(move |c| offset(c, &source, &output)).await
    }

    /// Moves the output's offset forward (never back) and counts what was delivered.
    pub async fn commit_output_offset(
        &self,
        source: &str,
        output: &str,
        pos: OutboxPos,
        delivered: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return pg
                .commit_output_offset(source, output, pos, delivered, now)
                .await;
        }
        let (source, output) = (source.to_string(), output.to_string());
        self.exec("committing an output offset", move |w| {
            let tx = w.conn.transaction()?;
            let old = offset(&tx, &source, &output)?;
            let pos = pos.max(old);
            tx.execute(
                "INSERT INTO output_offsets (source, output, seq, part, delivered, updated_at, last_success_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
                 ON CONFLICT (source, output) DO UPDATE SET seq = excluded.seq, part = excluded.part,
                    delivered = delivered + excluded.delivered, updated_at = excluded.updated_at,
                    last_success_at = excluded.updated_at, last_error = NULL",
                params![source, output, pos.seq, pos.part, delivered, now],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Records the output's last error (for status), without moving its offset.
    pub async fn record_output_error(
        &self,
        source: &str,
        output: &str,
        error: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return pg.record_output_error(source, output, error, now).await;
        }
        let (source, output, error) = (source.to_string(), output.to_string(), error.to_string());
        self.exec("recording an output error", move |w| {
            w.conn.execute(
                "INSERT INTO output_offsets (source, output, seq, updated_at, last_error, last_error_at)
                 VALUES (?1, ?2, 0, ?3, ?4, ?3)
                 ON CONFLICT (source, output) DO UPDATE SET last_error = excluded.last_error,
                    last_error_at = excluded.last_error_at, updated_at = excluded.updated_at",
                params![source, output, now, error],
            )?;
            Ok(())
        })
        .await
    }

    /// Puts records rejected for good in the dead-letter area (bounded per output).
    pub async fn dead_letter(
        &self,
        source: &str,
        output: &str,
        records: Vec<DeadLetter>,
        status: Option<u16>,
        error: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return pg
                .dead_letter(source, output, records, status, error, now)
                .await;
        }
        let (source, output, error) = (source.to_string(), output.to_string(), error.to_string());
        self.exec("dead-lettering records", move |w| {
            let tx = w.conn.transaction()?;
            {
                let mut ins = tx.prepare_cached(
                    "INSERT INTO dead_letters (source, output, seq, record_id, status, error, payload, at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?;
                for r in &records {
                    ins.execute(params![source, output, r.seq, r.record_id, status, error, r.payload, now])?;
                }
                tx.execute(
                    "INSERT INTO output_offsets (source, output, seq, updated_at, dead_total)
                     VALUES (?1, ?2, 0, ?3, ?4)
                     ON CONFLICT (source, output) DO UPDATE SET dead_total = dead_total + excluded.dead_total",
                    params![source, output, now, records.len() as i64],
                )?;
                tx.execute(
                    "DELETE FROM dead_letters WHERE source = ?1 AND output = ?2 AND id <= (
                        SELECT id FROM dead_letters WHERE source = ?1 AND output = ?2
                        ORDER BY id DESC LIMIT 1 OFFSET ?3)",
                    params![source, output, DEAD_LETTER_CAP],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Deletes outbox rows every listed output of each source has delivered. A source with no
    /// outputs loses its whole outbox (nothing would ever read it). Returns the rows deleted.
    pub async fn prune_outbox(&self, plan: Vec<(String, Vec<String>)>) -> Result<u64, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.prune_outbox(plan).await;
        }
        self.exec("pruning the outbox", move |w| {
            let mut n = 0u64;
            for (source, outputs) in &plan {
                // Rows every output has delivered whole.
                let mut min = i64::MAX;
                for o in outputs {
                    let p = offset(&w.conn, source, o)?;
                    min = min.min(if p.part.is_some() { p.seq - 1 } else { p.seq });
                }
                n += w.conn.execute(
                    "DELETE FROM outbox WHERE source = ?1 AND seq <= ?2",
                    params![source, min],
                )? as u64;
            }
            if n > 0 {
                // Free pages are reused by later writes; only when they are a tenth of the
                // file are they given back (stores made with auto_vacuum; a no-op on others:
                // it moves pages, not worth it for a few). It frees a page per step.
                let free: i64 = w
                    .conn
                    .query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
                let pages: i64 = w.conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
                if free * 10 > pages {
                    let mut st = w.conn.prepare("PRAGMA incremental_vacuum")?;
                    let mut rows = st.query([])?;
                    while rows.next()?.is_some() {}
                }
            }
            Ok(n)
        })
        .await
    }

    /// Per output: offset, pending outbox rows, delivered, dead letters (kept and total), last
    /// error. The JSON the console and `status --json` show.
    pub async fn outputs_status(&self) -> Result<Value, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.outputs_status().await;
        }
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT o.source, o.output, o.seq, o.delivered, o.dead_total, o.last_error,
                        o.last_error_at, o.last_success_at,
                        (SELECT COUNT(*) FROM outbox b WHERE b.source = o.source
                           AND (b.seq > o.seq OR (b.seq = o.seq AND o.part IS NOT NULL))),
                        (SELECT COUNT(*) FROM dead_letters d
                          WHERE d.source = o.source AND d.output = o.output)
                 FROM output_offsets o ORDER BY o.source, o.output",
            )?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(json!({
                        "source": r.get::<_, String>(0)?,
                        "output": r.get::<_, String>(1)?,
                        "offset": r.get::<_, i64>(2)?,
                        "delivered": r.get::<_, i64>(3)?,
                        "dead_letters_total": r.get::<_, i64>(4)?,
                        "last_error": r.get::<_, Option<String>>(5)?,
                        "last_error_at": r.get::<_, Option<i64>>(6)?,
                        "last_success_at": r.get::<_, Option<i64>>(7)?,
                        "pending": r.get::<_, i64>(8)?,
                        "dead_letters": r.get::<_, i64>(9)?,
                    }))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Value::Array(rows))
        })
        .await
    }

    /// The newest dead letters of one output, newest first.
    pub async fn dead_letters(
        &self,
        source: &str,
        output: &str,
        limit: usize,
    ) -> Result<Value, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.dead_letters(source, output, limit).await;
        }
        let (source, output) = (source.to_string(), output.to_string());
        self.read(move |c| {
            let mut stmt = c.prepare(
                "SELECT id, seq, record_id, status, error, payload, at FROM dead_letters
                 WHERE source = ?1 AND output = ?2 ORDER BY id DESC LIMIT ?3",
            )?;
            let rows = stmt
                .query_map(params![source, output, limit as i64], |r| {
                    let payload: String = r.get(5)?;
                    Ok(json!({
                        "id": r.get::<_, i64>(0)?,
                        "seq": r.get::<_, i64>(1)?,
                        "record_id": r.get::<_, String>(2)?,
                        "status": r.get::<_, Option<i64>>(3)?,
                        "error": r.get::<_, String>(4)?,
                        "payload": serde_json::from_str::<Value>(&payload).unwrap_or(Value::String(payload)),
                        "at": r.get::<_, i64>(6)?,
                    }))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Value::Array(rows))
        })
        .await
    }
}

fn offset(c: &Connection, source: &str, output: &str) -> Result<OutboxPos, StoreError> {
    Ok(c.query_row(
        "SELECT seq, part FROM output_offsets WHERE source = ?1 AND output = ?2",
        [source, output],
        |r| {
            Ok(OutboxPos {
                seq: r.get(0)?,
                part: r.get(1)?,
            })
        },
    )
    .optional()?
    .unwrap_or_default())
}
