//! From outbox items to output records: what each output sends, raw or OCSF. The outbox
//! itself (rows written with each page, offsets, dead letters) lives in the store
//! (`store/outbox.rs`); this module only maps what it reads.

use serde_json::{Value, json};

use crate::config::sinks::Format;
use crate::store::{ExportItem, OutboxItem, OutboxPos, Store, StoreError, StoredEvent, StoredRow};

pub use crate::store::DEAD_LETTER_CAP;

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
/// still advance it), and how many outbox rows that was.
pub async fn read_batch(
    store: &Store,
    info: &SourceInfo,
    format: Format,
    after: OutboxPos,
    limit: usize,
) -> Result<(Vec<OutRecord>, Option<OutboxPos>, usize), StoreError> {
    let batch = store.outbox_batch(&info.source, after, limit).await?;
    let records = batch
        .items
        .iter()
        .filter_map(|(seq, item)| match item {
            OutboxItem::Row(r) => inventory_record(info, format, *seq, r),
            OutboxItem::Event(e) => event_record(info, format, *seq, e),
        })
        .collect();
    Ok((records, batch.last, batch.consumed))
}

fn ctx<'a>(info: &'a SourceInfo) -> ocsf::Context<'a> {
    ocsf::Context {
        source: &info.source,
        tenant_uid: &info.tenant,
        collector_version: env!("CARGO_PKG_VERSION"),
    }
}

fn inventory(r: &StoredRow, observed_at: i64) -> ocsf::Record<'_> {
    ocsf::Record::Inventory(ocsf::InventoryRecord {
        table: r.table.name(),
        key: &r.key,
        device_id: r.device_id.as_deref(),
        raw: &r.raw,
        hash: r.hash,
        observed_at,
        removed_at: r.removed_at,
    })
}

fn event(e: &StoredEvent) -> ocsf::Record<'_> {
    ocsf::Record::Event(ocsf::EventRecord {
        stream: &e.stream,
        category: &e.category,
        event_type: &e.event_type,
        uid: &e.uid,
        occurred_at: e.occurred_at,
        device_id: e.device_id.as_deref(),
        user_id: e.user_id.as_deref(),
        severity: e.severity.as_deref(),
        summary: &e.summary,
        raw: &e.raw,
        hash: e.hash,
        related: e.related.as_ref(),
    })
}

fn inventory_record(
    info: &SourceInfo,
    format: Format,
    seq: i64,
    r: &StoredRow,
) -> Option<OutRecord> {
    let observed = r.removed_at.unwrap_or(r.last_seen);
    let record = inventory(r, observed);
    let c = ctx(info);
    let id = record.uid(&c);
    let mut time_ms = observed;
    let (body, class_uid, severity_id) = match format {
        Format::Ocsf => {
            let ev = ocsf::map(&c, &record)?;
            let class = ev["class_uid"].as_i64();
            let sev = ev["severity_id"].as_i64().unwrap_or(1);
            time_ms = ev["time"].as_i64().unwrap_or(time_ms);
            (ev, class, sev)
        }
        Format::Raw => (
            json!({
                "id": id,
                "source": info.source,
                "kind": "inventory",
                "table": r.table.name(),
                "key": r.key,
                "device_id": r.device_id,
                "observed_at": r.last_seen,
                "removed_at": r.removed_at,
                "raw": r.raw,
            }),
            None,
            1,
        ),
    };
    Some(OutRecord {
        seq,
        id,
        category: "inventory".into(),
        kind: r.table.name().into(),
        class_uid,
        device_id: r.device_id.clone(),
        record_key: r.key.clone(),
        time_ms,
        severity_id,
        body,
    })
}

fn event_record(info: &SourceInfo, format: Format, seq: i64, e: &StoredEvent) -> Option<OutRecord> {
    let record = event(e);
    let c = ctx(info);
    let id = record.uid(&c);
    let (body, class_uid, severity_id) = match format {
        Format::Ocsf => {
            let ev = ocsf::map(&c, &record)?;
            let class = ev["class_uid"].as_i64();
            let sev = ev["severity_id"].as_i64().unwrap_or(0);
            (ev, class, sev)
        }
        Format::Raw => (
            json!({
                "id": id,
                "source": info.source,
                "kind": "event",
                "stream": e.stream,
                "category": e.category,
                "event_type": e.event_type,
                "uid": e.uid,
                "occurred_at": e.occurred_at,
                "device_id": e.device_id,
                "user_id": e.user_id,
                "severity": e.severity,
                "summary": e.summary,
                "raw": e.raw,
            }),
            None,
            ocsf::severity_id(e.severity.as_deref()),
        ),
    };
    Some(OutRecord {
        seq,
        id,
        category: e.category.clone(),
        kind: e.stream.clone(),
        class_uid,
        device_id: e.device_id.clone(),
        record_key: e.uid.clone(),
        time_ms: e.occurred_at,
        severity_id,
        body,
    })
}

/// The OCSF form of one exported record (`export --format ocsf`), if it has one.
pub fn ocsf_of_export(info: &SourceInfo, item: &ExportItem) -> Option<Value> {
    let c = ctx(info);
    match item {
        ExportItem::Row(r) => ocsf::map(&c, &inventory(r, r.last_seen)),
        ExportItem::Event(e) => ocsf::map(&c, &event(e)),
    }
}
