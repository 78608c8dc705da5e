//! The outbox: every inventory row version and every event version the store commits gets an
//! `outbox` row in the SAME transaction (see `store/write.rs`), so its `seq` orders everything
//! a source produced. Each output keeps its own offset in `output_offsets`; records rejected
//! for good go to the bounded `dead_letters`.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

use super::config::Format;
use crate::store::{StoreError, Table};

/// Dead letters kept per output (oldest dropped beyond; `dead_total` keeps counting).
pub const DEAD_LETTER_CAP: i64 = 10_000;

/// One record ready for an output.
#[derive(Debug, Clone)]
pub struct OutRecord {
    /// The outbox position.
    pub seq: i64,
    /// Stable id of this version of the record (receivers dedupe on it).
    pub id: String,
    /// `inventory`, or the event's category (`audit`, `security`, `change`).
    pub category: String,
    /// The table (inventory) or stream (events).
    pub kind: String,
    pub class_uid: Option<i64>,
    pub device_id: Option<String>,
    /// The event's uid or the row's key.
    pub record_key: String,
    /// Event time (inventory: when the row was last written), ms since the epoch.
    pub time_ms: i64,
    pub severity_id: i64,
    pub body: Value,
}

/// What the outputs need to know about a source.
#[derive(Debug, Clone)]
pub struct SourceInfo {
    pub source: String,
    pub tenant: String,
}

/// Up to `limit` records after `after` for `source`, in outbox order, and the last seq read
/// (records with no form in `format` — dimensions in OCSF, rows gone since — are skipped but
/// still advance it).
pub fn read_batch(
    conn: &Connection,
    info: &SourceInfo,
    format: Format,
    after: i64,
    limit: usize,
) -> Result<(Vec<OutRecord>, Option<i64>), StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, tbl, ref FROM outbox WHERE source = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )?;
    let rows: Vec<(i64, String, String)> = stmt
        .query_map(params![info.source, after, limit as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    let last = rows.last().map(|r| r.0);
    let mut out = Vec::with_capacity(rows.len());
    // A row written twice before delivery has two outbox entries that both read its current
    // version: send it once per batch.
    let mut seen = std::collections::HashSet::new();
    for (seq, tbl, key) in rows {
        if !seen.insert((tbl.clone(), key.clone())) {
            continue;
        }
        let rec = if tbl == "events" {
            event_record(conn, info, format, seq, &key)?
        } else {
            inventory_record(conn, info, format, seq, &tbl, &key)?
        };
        if let Some(r) = rec {
            out.push(r);
        }
    }
    Ok((out, last))
}

fn ctx<'a>(info: &'a SourceInfo) -> ocsf::Context<'a> {
    ocsf::Context {
        source: &info.source,
        tenant_uid: &info.tenant,
        collector_version: env!("CARGO_PKG_VERSION"),
    }
}

/// device_id, hash, last_seen, removed_at, raw.
type InvRow = (Option<String>, i64, i64, Option<i64>, String);

fn inventory_record(
    conn: &Connection,
    info: &SourceInfo,
    format: Format,
    seq: i64,
    tbl: &str,
    key: &str,
) -> Result<Option<OutRecord>, StoreError> {
    let Some(table) = Table::from_name(tbl) else {
        return Ok(None);
    };
    let row: Option<InvRow> = conn
        .prepare_cached(&format!(
            "SELECT device_id, hash, last_seen, removed_at, raw FROM {} WHERE source = ?1 AND key = ?2",
            table.name()
        ))?
        .query_row(params![info.source, key], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .optional()?;
    let Some((device_id, hash, last_seen, removed_at, raw)) = row else {
        return Ok(None);
    };
    let raw: Value = serde_json::from_str(&raw).unwrap_or(Value::String(raw));
    let rec = ocsf::InventoryRecord {
        table: table.name(),
        key,
        device_id: device_id.as_deref(),
        raw: &raw,
        hash,
        observed_at: removed_at.unwrap_or(last_seen),
        removed_at,
    };
    let record = ocsf::Record::Inventory(rec);
    let c = ctx(info);
    let id = record.uid(&c);
    let mut time_ms = removed_at.unwrap_or(last_seen);
    let (body, class_uid, severity_id) = match format {
        Format::Ocsf => match ocsf::map(&c, &record) {
            Some(ev) => {
                let class = ev["class_uid"].as_i64();
                let sev = ev["severity_id"].as_i64().unwrap_or(1);
                time_ms = ev["time"].as_i64().unwrap_or(time_ms);
                (ev, class, sev)
            }
            None => return Ok(None),
        },
        Format::Raw => (
            json!({
                "id": id,
                "source": info.source,
                "kind": "inventory",
                "table": table.name(),
                "key": key,
                "device_id": device_id,
                "observed_at": last_seen,
                "removed_at": removed_at,
                "raw": raw,
            }),
            None,
            1,
        ),
    };
    Ok(Some(OutRecord {
        seq,
        id,
        category: "inventory".into(),
        kind: table.name().into(),
        class_uid,
        device_id,
        record_key: key.to_string(),
        time_ms,
        severity_id,
        body,
    }))
}

type EventRow = (
    String,
    String,
    String,
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    String,
    i64,
);

fn event_record(
    conn: &Connection,
    info: &SourceInfo,
    format: Format,
    seq: i64,
    event_seq: &str,
) -> Result<Option<OutRecord>, StoreError> {
    let Ok(event_seq) = event_seq.parse::<i64>() else {
        return Ok(None);
    };
    let row: Option<EventRow> = conn
        .prepare_cached(
            "SELECT stream, category, event_type, uid, occurred_at, device_id, user_id, severity,
                    summary, raw, hash FROM events WHERE seq = ?1",
        )?
        .query_row([event_seq], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
            ))
        })
        .optional()?;
    let Some((
        stream,
        category,
        event_type,
        uid,
        occurred_at,
        device_id,
        user_id,
        severity,
        summary,
        raw,
        hash,
    )) = row
    else {
        return Ok(None);
    };
    let raw: Value = serde_json::from_str(&raw).unwrap_or(Value::String(raw));
    // A change event points at its row: give the mapping the row's current state.
    let related: Option<Value> = if category == "change" {
        match (
            raw.get("table")
                .and_then(Value::as_str)
                .and_then(Table::from_name),
            raw.get("key").and_then(Value::as_str),
        ) {
            (Some(t), Some(k)) => conn
                .prepare_cached(&format!(
                    "SELECT raw FROM {} WHERE source = ?1 AND key = ?2",
                    t.name()
                ))?
                .query_row(params![info.source, k], |r| r.get::<_, String>(0))
                .optional()?
                .and_then(|s| serde_json::from_str(&s).ok()),
            _ => None,
        }
    } else {
        None
    };
    let rec = ocsf::EventRecord {
        stream: &stream,
        category: &category,
        event_type: &event_type,
        uid: &uid,
        occurred_at,
        device_id: device_id.as_deref(),
        user_id: user_id.as_deref(),
        severity: severity.as_deref(),
        summary: &summary,
        raw: &raw,
        hash,
        related: related.as_ref(),
    };
    let record = ocsf::Record::Event(rec);
    let c = ctx(info);
    let id = record.uid(&c);
    let (body, class_uid, severity_id) = match format {
        Format::Ocsf => match ocsf::map(&c, &record) {
            Some(ev) => {
                let class = ev["class_uid"].as_i64();
                let sev = ev["severity_id"].as_i64().unwrap_or(0);
                (ev, class, sev)
            }
            None => return Ok(None),
        },
        Format::Raw => (
            json!({
                "id": id,
                "source": info.source,
                "kind": "event",
                "stream": stream,
                "category": category,
                "event_type": event_type,
                "uid": uid,
                "occurred_at": occurred_at,
                "device_id": device_id,
                "user_id": user_id,
                "severity": severity,
                "summary": summary,
                "raw": raw,
            }),
            None,
            ocsf::severity_id(severity.as_deref()),
        ),
    };
    Ok(Some(OutRecord {
        seq,
        id,
        category,
        kind: stream,
        class_uid,
        device_id,
        record_key: uid,
        time_ms: occurred_at,
        severity_id,
        body,
    }))
}

/// The output's committed offset (0 when it has none yet).
pub fn offset(conn: &Connection, source: &str, output: &str) -> Result<i64, StoreError> {
    Ok(conn
        .query_row(
            "SELECT seq FROM output_offsets WHERE source = ?1 AND output = ?2",
            [source, output],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0))
}

/// Moves the output's offset forward (never back) and counts what was delivered.
pub fn commit(
    conn: &Connection,
    source: &str,
    output: &str,
    seq: i64,
    delivered: i64,
    now: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO output_offsets (source, output, seq, delivered, updated_at, last_success_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)
         ON CONFLICT (source, output) DO UPDATE SET seq = MAX(seq, excluded.seq),
            delivered = delivered + excluded.delivered, updated_at = excluded.updated_at,
            last_success_at = excluded.updated_at, last_error = NULL",
        params![source, output, seq, delivered, now],
    )?;
    Ok(())
}

/// Records the output's last error (for status), without moving its offset.
pub fn record_error(
    conn: &Connection,
    source: &str,
    output: &str,
    error: &str,
    now: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO output_offsets (source, output, seq, updated_at, last_error, last_error_at)
         VALUES (?1, ?2, 0, ?3, ?4, ?3)
         ON CONFLICT (source, output) DO UPDATE SET last_error = excluded.last_error,
            last_error_at = excluded.last_error_at, updated_at = excluded.updated_at",
        params![source, output, now, error],
    )?;
    Ok(())
}

/// Puts records rejected for good in the dead-letter area (bounded per output).
pub fn dead_letter(
    conn: &mut Connection,
    source: &str,
    output: &str,
    records: &[OutRecord],
    status: Option<u16>,
    error: &str,
    now: i64,
) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    {
        let mut ins = tx.prepare_cached(
            "INSERT INTO dead_letters (source, output, seq, record_id, status, error, payload, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for r in records {
            ins.execute(params![
                source,
                output,
                r.seq,
                r.id,
                status,
                error,
                r.body.to_string(),
                now
            ])?;
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
}

/// Deletes outbox rows every listed output of `source` has delivered. With no outputs, the
/// whole outbox of the source goes (nothing would ever read it).
pub fn prune(conn: &Connection, source: &str, outputs: &[String]) -> Result<u64, StoreError> {
    let min = if outputs.is_empty() {
        i64::MAX
    } else {
        let mut min = i64::MAX;
        for o in outputs {
            min = min.min(offset(conn, source, o)?);
        }
        min
    };
    Ok(conn.execute(
        "DELETE FROM outbox WHERE source = ?1 AND seq <= ?2",
        params![source, min],
    )? as u64)
}

/// Per output: offset, pending records, delivered, dead letters (kept and total), last error.
/// The JSON the console and `status --json` show.
pub fn status(conn: &Connection) -> Result<Value, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT o.source, o.output, o.seq, o.delivered, o.dead_total, o.last_error, o.last_error_at,
                o.last_success_at,
                (SELECT COUNT(*) FROM outbox b WHERE b.source = o.source AND b.seq > o.seq),
                (SELECT COUNT(*) FROM dead_letters d WHERE d.source = o.source AND d.output = o.output)
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
}

/// The newest dead letters of one output (for the console), newest first.
pub fn dead_letters(
    conn: &Connection,
    source: &str,
    output: &str,
    limit: usize,
) -> Result<Value, StoreError> {
    let mut stmt = conn.prepare(
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
}
