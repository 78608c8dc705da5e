//! The writer side: applying one [`Batch`] in one transaction.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Transaction, params, params_from_iter};

use super::StoreError;
use super::tables::{self, Change, Table};

/// One inventory row, as a stream maps it.
#[derive(Debug, Clone)]
pub struct InvRow {
    pub key: String,
    pub device_id: Option<String>,
    /// One value per typed column of the table, in the table's column order.
    pub values: Vec<Value>,
    pub raw: String,
}

/// Rows for one table. `sweep` is the id of the full sweep they belong to, or 0 for a delta
/// (rows seen outside a sweep never reset a row's missed-sweep count). `started_at` is when
/// the sweep (or delta walk) began: rows first seen before it are known, and a table — or, in
/// per-device tables, a device — with no known rows is a baseline whose rows are not news.
#[derive(Debug, Clone)]
pub struct Upsert {
    pub table: Table,
    pub sweep: i64,
    pub started_at: i64,
    pub rows: Vec<InvRow>,
}

/// One audit, security or change event.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub category: &'static str,
    pub event_type: String,
    /// The dedup key, stable across re-collection.
    pub uid: String,
    pub occurred_at: i64,
    pub device_id: Option<String>,
    pub user_id: Option<String>,
    pub severity: Option<String>,
    pub summary: String,
    pub raw: String,
}

/// Which rows a sweep covered.
#[derive(Debug, Clone)]
pub enum Scope {
    /// The whole table for the source.
    All,
    /// Rows whose typed column equals the value (e.g. one Prism category).
    Column(&'static str, String),
    /// Rows of one device.
    Device(String),
}

/// Closes a full sweep: rows the sweep did not see count one more miss, and rows that reach
/// the table's threshold are marked removed.
#[derive(Debug, Clone)]
pub struct SweepEnd {
    pub table: Table,
    pub sweep: i64,
    pub scope: Scope,
}

/// Stream status fields the engine records with a batch.
#[derive(Debug, Clone, Default)]
pub struct StatusUpdate {
    pub state: Option<String>,
    pub requests: u64,
}

/// One page of one stream: everything here commits together, or nothing does.
#[derive(Debug, Clone)]
pub struct Batch {
    pub source: String,
    pub stream: String,
    /// The commit's time (ms since the epoch): first_seen/last_seen, change events' time.
    pub now: i64,
    pub upserts: Vec<Upsert>,
    pub events: Vec<EventRow>,
    pub sweep_ends: Vec<SweepEnd>,
    /// The stream's checkpoint after this page. `None` leaves it unchanged.
    pub checkpoint: Option<serde_json::Value>,
    /// The category records are counted under in the per-hour chart.
    pub record_category: &'static str,
    /// Devices to re-fetch (device id, reason).
    pub refresh: Vec<(String, String)>,
    /// Devices taken off the refresh queue by this batch.
    pub refreshed: Vec<String>,
}

impl Batch {
    pub fn new(source: &str, stream: &str, now: i64, record_category: &'static str) -> Batch {
        Batch {
            source: source.to_string(),
            stream: stream.to_string(),
            now,
            upserts: Vec::new(),
            events: Vec::new(),
            sweep_ends: Vec::new(),
            checkpoint: None,
            record_category,
            refresh: Vec::new(),
            refreshed: Vec::new(),
        }
    }
}

/// What a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub removed: u64,
    pub events_inserted: u64,
    pub events_updated: u64,
    pub events_duplicate: u64,
    pub changes: u64,
}

impl BatchOutcome {
    /// Records that are new or changed.
    pub fn records(&self) -> u64 {
        self.inserted + self.updated + self.removed + self.events_inserted + self.events_updated
    }
}

/// FNV-1a, 64 bit: a hash that stays the same across builds (unlike std's `DefaultHasher`).
pub fn stable_hash(bytes: &[u8]) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h as i64
}

pub(super) fn apply(conn: &mut Connection, batch: &Batch) -> Result<BatchOutcome, StoreError> {
    let tx = conn.transaction()?;
    let mut out = BatchOutcome::default();
    for upsert in &batch.upserts {
        upsert_rows(&tx, batch, upsert, &mut out)?;
    }
    for end in &batch.sweep_ends {
        end_sweep(&tx, batch, end, &mut out)?;
    }
    for event in &batch.events {
        insert_event(&tx, batch, &batch.stream, event, &mut out)?;
    }
    if !batch.refreshed.is_empty() {
        let mut del =
            tx.prepare_cached("DELETE FROM refresh_queue WHERE source = ?1 AND device_id = ?2")?;
        for d in &batch.refreshed {
            del.execute(params![batch.source, d])?;
        }
    }
    if !batch.refresh.is_empty() {
        let mut ins = tx.prepare_cached(
            "INSERT INTO refresh_queue (source, device_id, reason, queued_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (source, device_id) DO NOTHING",
        )?;
        for (d, why) in &batch.refresh {
            ins.execute(params![batch.source, d, why, batch.now])?;
        }
    }
    if let Some(cp) = &batch.checkpoint {
        tx.execute(
            "INSERT INTO checkpoints (source, stream, value, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (source, stream) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            params![batch.source, batch.stream, cp.to_string(), batch.now],
        )?;
    }
    let records = out.records() as i64;
    if records > 0 {
        let hour = batch.now.div_euclid(3_600_000) * 3_600_000;
        tx.execute(
            "INSERT INTO record_samples (source, hour, category, records) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (source, hour, category) DO UPDATE SET records = records + excluded.records",
            params![batch.source, hour, batch.record_category, records],
        )?;
        tx.execute(
            "INSERT INTO stream_status (source, stream, state, records_total) VALUES (?1, ?2, 'syncing', ?3)
             ON CONFLICT (source, stream) DO UPDATE SET records_total = records_total + excluded.records_total",
            params![batch.source, batch.stream, records],
        )?;
    }
    tx.commit()?;
    Ok(out)
}

fn typed_list(table: Table) -> String {
    table
        .spec()
        .columns
        .iter()
        .map(|c| c.name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn change_event(
    batch: &Batch,
    table: Table,
    key: &str,
    device_id: Option<&str>,
    change: Change,
    discriminator: String,
) -> EventRow {
    let raw = serde_json::json!({
        "table": table.name(),
        "key": key,
        "device_id": device_id,
        "event_type": change.event_type,
        "summary": change.summary,
    });
    EventRow {
        category: "change",
        event_type: change.event_type.to_string(),
        uid: format!(
            "{}:{}:{}:{}",
            table.name(),
            key,
            change.event_type,
            discriminator
        ),
        occurred_at: batch.now,
        device_id: device_id.map(str::to_string),
        user_id: None,
        severity: Some(change.severity.to_string()),
        summary: change.summary,
        raw: raw.to_string(),
    }
}

fn upsert_rows(
    tx: &Transaction<'_>,
    batch: &Batch,
    upsert: &Upsert,
    out: &mut BatchOutcome,
) -> Result<(), StoreError> {
    let table = upsert.table;
    let spec = table.spec();
    let ncols = spec.columns.len();
    let cols = typed_list(table);
    let select_sql = format!(
        "SELECT hash, removed_at, {cols} FROM {} WHERE source = ?1 AND key = ?2",
        spec.name
    );
    let placeholders: String = (0..ncols).map(|i| format!(", ?{}", i + 9)).collect();
    let insert_sql = format!(
        "INSERT INTO {} (source, key, device_id, raw, hash, first_seen, last_seen, sweep, {cols})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8{placeholders})
         ON CONFLICT (source, key) DO UPDATE SET device_id = excluded.device_id, raw = excluded.raw,
           hash = excluded.hash, last_seen = excluded.last_seen,
           sweep = MAX(sweep, excluded.sweep), missing = CASE WHEN excluded.sweep > 0 THEN 0 ELSE missing END,
           removed_at = NULL, {}",
        spec.name,
        spec.columns
            .iter()
            .map(|c| format!("{0} = excluded.{0}", c.name))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let touch_sql = format!(
        "UPDATE {} SET last_seen = ?3, sweep = MAX(sweep, ?4),
           missing = CASE WHEN ?4 > 0 THEN 0 ELSE missing END
         WHERE source = ?1 AND key = ?2",
        spec.name
    );
    let mut select = tx.prepare_cached(&select_sql)?;
    let mut insert = tx.prepare_cached(&insert_sql)?;
    let mut touch = tx.prepare_cached(&touch_sql)?;
    let mut changes: Vec<EventRow> = Vec::new();
    // The first snapshot is a baseline, not news: no "created" events for a table the source
    // has no rows in yet, nor, in per-device tables, for a device with no rows yet (a newly
    // enrolled device's apps are not 150 installs).
    let per_device = matches!(
        table,
        Table::Apps | Table::Compliance | Table::DeviceDetails | Table::VulnDetections
    );
    // Per-device tables only ask per device (indexed); the table-wide question would scan the
    // whole table on every batch of a first snapshot.
    let table_known: bool = !per_device
        && tx
            .prepare_cached(&format!(
                "SELECT EXISTS (SELECT 1 FROM {} WHERE source = ?1 AND first_seen < ?2)",
                spec.name
            ))?
            .query_row(params![batch.source, upsert.started_at], |r| r.get(0))?;
    let mut device_known_stmt = tx.prepare_cached(&format!(
        "SELECT EXISTS (SELECT 1 FROM {} WHERE source = ?1 AND device_id = ?2 AND first_seen < ?3)",
        spec.name
    ))?;
    let mut device_known: std::collections::HashMap<String, bool> = Default::default();
    for row in &upsert.rows {
        if row.values.len() != ncols {
            return Err(StoreError::Sqlite(rusqlite::Error::InvalidParameterCount(
                row.values.len(),
                ncols,
            )));
        }
        let hash = stable_hash(row.raw.as_bytes());
        let baseline = if per_device {
            match &row.device_id {
                Some(d) => match device_known.get(d) {
                    Some(known) => !known,
                    None => {
                        let known: bool = device_known_stmt
                            .query_row(params![batch.source, d, upsert.started_at], |r| r.get(0))?;
                        device_known.insert(d.clone(), known);
                        !known
                    }
                },
                None => !table_known,
            }
        } else {
            !table_known
        };
        let existing: Option<(i64, Option<i64>, Vec<Value>)> = select
            .query_row(params![batch.source, row.key], |r| {
                let mut vals = Vec::with_capacity(ncols);
                for i in 0..ncols {
                    vals.push(r.get::<_, Value>(i + 2)?);
                }
                Ok((r.get(0)?, r.get(1)?, vals))
            })
            .optional()?;
        match &existing {
            Some((h, None, _)) if *h == hash => {
                touch.execute(params![batch.source, row.key, batch.now, upsert.sweep])?;
                out.unchanged += 1;
                continue;
            }
            _ => {}
        }
        let mut p: Vec<Value> = Vec::with_capacity(8 + ncols);
        p.push(Value::Text(batch.source.clone()));
        p.push(Value::Text(row.key.clone()));
        p.push(row.device_id.clone().map_or(Value::Null, Value::Text));
        p.push(Value::Text(row.raw.clone()));
        p.push(Value::Integer(hash));
        p.push(Value::Integer(batch.now));
        p.push(Value::Integer(batch.now));
        p.push(Value::Integer(upsert.sweep));
        p.extend(row.values.iter().cloned());
        insert.execute(params_from_iter(p))?;
        outbox_push(tx, &batch.source, spec.name, &row.key)?;
        let device = row.device_id.as_deref();
        match existing {
            None => {
                out.inserted += 1;
                if baseline {
                    continue;
                }
                if let Some(c) = tables::created(table, &row.key, &row.values) {
                    changes.push(change_event(
                        batch,
                        table,
                        &row.key,
                        device,
                        c,
                        format!("{hash:x}"),
                    ));
                }
            }
            Some((_, Some(removed_at), _)) => {
                out.inserted += 1;
                if let Some(c) = tables::created(table, &row.key, &row.values) {
                    changes.push(change_event(
                        batch,
                        table,
                        &row.key,
                        device,
                        c,
                        format!("{hash:x}-{removed_at}"),
                    ));
                }
            }
            Some((_, None, old)) => {
                out.updated += 1;
                for c in tables::changed(table, &row.key, &old, &row.values) {
                    changes.push(change_event(
                        batch,
                        table,
                        &row.key,
                        device,
                        c,
                        format!("{hash:x}"),
                    ));
                }
            }
        }
    }
    drop((select, insert, touch, device_known_stmt));
    for ev in changes {
        out.changes += 1;
        insert_event(tx, batch, &batch.stream, &ev, out)?;
    }
    Ok(())
}

fn scope_sql(scope: &Scope) -> (String, Option<String>) {
    match scope {
        Scope::All => (String::new(), None),
        Scope::Column(c, v) => (format!(" AND {c} = ?3"), Some(v.clone())),
        Scope::Device(d) => (" AND device_id = ?3".to_string(), Some(d.clone())),
    }
}

fn end_sweep(
    tx: &Transaction<'_>,
    batch: &Batch,
    end: &SweepEnd,
    out: &mut BatchOutcome,
) -> Result<(), StoreError> {
    let spec = end.table.spec();
    let (scope, scope_val) = scope_sql(&end.scope);
    let bind = |extra: Value| -> Vec<Value> {
        let mut v = vec![Value::Text(batch.source.clone()), extra];
        if let Some(s) = &scope_val {
            v.push(Value::Text(s.clone()));
        }
        v
    };
    tx.execute(
        &format!(
            "UPDATE {} SET missing = missing + 1
             WHERE source = ?1 AND removed_at IS NULL AND sweep < ?2{scope}",
            spec.name
        ),
        params_from_iter(bind(Value::Integer(end.sweep))),
    )?;
    let cols = typed_list(end.table);
    let mut stmt = tx.prepare(&format!(
        "SELECT key, device_id, {cols} FROM {}
         WHERE source = ?1 AND removed_at IS NULL AND missing >= ?2{scope}",
        spec.name
    ))?;
    let ncols = spec.columns.len();
    let gone: Vec<(String, Option<String>, Vec<Value>)> = stmt
        .query_map(
            params_from_iter(bind(Value::Integer(spec.remove_after_missed))),
            |r| {
                let mut vals = Vec::with_capacity(ncols);
                for i in 0..ncols {
                    vals.push(r.get::<_, Value>(i + 2)?);
                }
                Ok((r.get(0)?, r.get(1)?, vals))
            },
        )?
        .collect::<Result<_, _>>()?;
    drop(stmt);
    if gone.is_empty() {
        return Ok(());
    }
    let mut mark = tx.prepare_cached(&format!(
        "UPDATE {} SET removed_at = ?3 WHERE source = ?1 AND key = ?2",
        spec.name
    ))?;
    // A removed device takes its per-device rows with it (they would never be re-read).
    let mut cascade = Vec::new();
    if end.table == Table::Devices {
        for t in [
            Table::DeviceDetails,
            Table::Apps,
            Table::Compliance,
            Table::VulnDetections,
        ] {
            cascade.push(tx.prepare_cached(&format!(
                "UPDATE {} SET removed_at = ?3 WHERE source = ?1 AND device_id = ?2 AND removed_at IS NULL",
                t.name()
            ))?);
        }
    }
    let mut events = Vec::new();
    for (key, device_id, vals) in gone {
        mark.execute(params![batch.source, key, batch.now])?;
        outbox_push(tx, &batch.source, spec.name, &key)?;
        for stmt in &mut cascade {
            stmt.execute(params![batch.source, key, batch.now])?;
        }
        out.removed += 1;
        if let Some(c) = tables::removed(end.table, &key, &vals) {
            events.push(change_event(
                batch,
                end.table,
                &key,
                device_id.as_deref(),
                c,
                end.sweep.to_string(),
            ));
        }
    }
    drop(mark);
    drop(cascade);
    for ev in events {
        out.changes += 1;
        insert_event(tx, batch, &batch.stream, &ev, out)?;
    }
    Ok(())
}

fn insert_event(
    tx: &Transaction<'_>,
    batch: &Batch,
    stream: &str,
    ev: &EventRow,
    out: &mut BatchOutcome,
) -> Result<(), StoreError> {
    let hash = stable_hash(ev.raw.as_bytes());
    let mut ins = tx.prepare_cached(
        "INSERT INTO events (source, stream, category, event_type, uid, occurred_at, device_id,
            user_id, severity, summary, raw, hash, collected_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13)
         ON CONFLICT (source, stream, uid) DO NOTHING",
    )?;
    let n = ins.execute(params![
        batch.source,
        stream,
        ev.category,
        ev.event_type,
        ev.uid,
        ev.occurred_at,
        ev.device_id,
        ev.user_id,
        ev.severity,
        ev.summary,
        ev.raw,
        hash,
        batch.now
    ])?;
    if n == 1 {
        out.events_inserted += 1;
        outbox_push(
            tx,
            &batch.source,
            "events",
            &tx.last_insert_rowid().to_string(),
        )?;
        return Ok(());
    }
    // Same uid: a record collected again. Keep the newest state of it (a threat's status can
    // move from quarantined to released), and count it as a duplicate when nothing changed.
    let mut upd = tx.prepare_cached(
        "UPDATE events SET raw = ?4, summary = ?5, severity = ?6, hash = ?7, updated_at = ?8,
            event_type = ?9
         WHERE source = ?1 AND stream = ?2 AND uid = ?3 AND hash != ?7
         RETURNING seq",
    )?;
    let updated: Option<i64> = upd
        .query_row(
            params![
                batch.source,
                stream,
                ev.uid,
                ev.raw,
                ev.summary,
                ev.severity,
                hash,
                batch.now,
                ev.event_type
            ],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(seq) = updated {
        out.events_updated += 1;
        outbox_push(tx, &batch.source, "events", &seq.to_string())?;
    } else {
        out.events_duplicate += 1;
    }
    Ok(())
}

/// Queues a new version of a row or event for the outputs, in the batch's transaction.
fn outbox_push(tx: &Transaction<'_>, source: &str, tbl: &str, key: &str) -> Result<(), StoreError> {
    tx.prepare_cached("INSERT INTO outbox (source, tbl, ref) VALUES (?1, ?2, ?3)")?
        .execute(params![source, tbl, key])?;
    Ok(())
}
