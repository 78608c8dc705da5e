//! Prism, the fleet-wide tables: full snapshots through the asynchronous CSV export and deltas
//! through cursor pages filtered on `last_changed_at`. Shared by `device_details` and `apps`.
//!
//! An export costs about three requests plus polls whatever the fleet size, and its rows arrive
//! in batches as the CSV streams, so memory stays flat in fleet size. CSV records are mapped to
//! store rows in the parser's thread ([`PrismTable::mapper`]): no intermediate map per row.
//!
//! A full export stages its rows in the store and is compared set-wise when its last batch
//! commits (see `store/write.rs`); an interrupted export starts over at the next run (its
//! checkpoint only moves with the snapshot's end).

use std::time::Duration;

use futures::StreamExt;
use kandji_api::export::{CsvHeaders, CsvMapper, ExportOptions, ExportRequest, MappedBatches};
use serde_json::{Value, json};

use crate::store::{Batch, Scope as StoreScope, SweepEnd, Table};
use crate::streams::StreamName;
use crate::streams::fetch::{self, q};
use crate::streams::runtime::{CursorRestarts, RunReport, Scope, SourceRuntime, StreamError};

/// How often the snapshot streams take a full export; between exports they read deltas.
pub const FULL_EXPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

/// Rows per batch handed to the store, for tables of ~1 KB rows (several exports run at
/// once, each with a few batches in flight: memory stays bounded by this).
pub const BATCH_ROWS: usize = 500;
/// How long an export may take before the run gives up (the next run starts a new one).
pub const EXPORT_DEADLINE: Duration = Duration::from_secs(30 * 60);
/// Rows changed this long before the last read are read again.
pub const OVERLAP_MS: i64 = 15 * 60 * 1000;

/// The Prism filter arguments the source's filters push down.
pub fn pushdown(scope: &Scope) -> (Vec<String>, Vec<String>) {
    (scope.blueprint_ids.clone(), scope.families.clone())
}

/// Runs an export of `category` to completion and streams its rows, mapped by `mapper`,
/// `BATCH_ROWS` at a time (the client creates, polls with backoff up to a deadline, downloads
/// the signed URL without the bearer header and parses the CSV as it streams).
pub fn export<M: CsvMapper>(
    rt: &SourceRuntime,
    category: &str,
    scope: &Scope,
    mapper: M,
    batch_rows: usize,
) -> MappedBatches<M::Row> {
    let (blueprint_ids, device_families) = pushdown(scope);
    rt.client.export_mapped(
        ExportRequest {
            category: category.to_string(),
            blueprint_ids,
            device_families,
            ..ExportRequest::default()
        },
        ExportOptions {
            poll_initial: rt.export_poll,
            deadline: EXPORT_DEADLINE,
            batch_size: batch_rows,
            ..ExportOptions::default()
        },
        mapper,
    )
}

/// One page of a Prism cursor walk.
pub struct DeltaPage {
    pub rows: Vec<Value>,
    pub done: bool,
}

/// Walks `GET /prism/{category}` with `filter={"last_changed_at":{"gte": since}}` and the
/// cursor, calling `each` per page; returns the number of pages. A cursor the API refuses
/// (400 or 404: it expired between pages) restarts the walk from the first page, at most
/// `MAX_CURSOR_RESTARTS` times: the rows read again are the same versions, which change
/// nothing.
pub async fn deltas<F, Fut>(
    rt: &SourceRuntime,
    stream: StreamName,
    category: &str,
    since_ms: i64,
    scope: &Scope,
    mut each: F,
) -> Result<u64, StreamError>
where
    F: FnMut(DeltaPage) -> Fut,
    Fut: std::future::Future<Output = Result<(), StreamError>>,
{
    let (bps, fams) = pushdown(scope);
    let filter = json!({"last_changed_at": {"gte": fetch::rfc3339(since_ms)}}).to_string();
    let mut query = vec![q("filter", filter)];
    if !bps.is_empty() {
        query.push(q("blueprint_ids", bps.join(",")));
    }
    if !fams.is_empty() {
        query.push(q("device_families", fams.join(",")));
    }
    let mut restarts = CursorRestarts::default();
    let mut n = 0u64;
    'walk: loop {
        let mut pages = rt.client.prism(category, query.clone(), None);
        let mut with_cursor = false;
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(p) => p,
                Err(e) if with_cursor && e.is_refused_cursor() => {
                    restarts.restart(rt, stream, &e)?;
                    continue 'walk;
                }
                Err(e) => return Err(e.into()),
            };
            n += 1;
            with_cursor = true;
            let done = page.next.is_none() || page.items.is_empty();
            let rows = page
                .items
                .into_iter()
                .map(|r| Value::Object(r.fields))
                .collect();
            each(DeltaPage { rows, done }).await?;
            if done {
                break;
            }
        }
        return Ok(n);
    }
}

/// The ms timestamp of a Prism row's `last_changed_at` (or `updated_at`).
pub fn changed_at(row: &Value) -> Option<i64> {
    fetch::ts(row, "last_changed_at").or_else(|| fetch::ts(row, "updated_at"))
}

/// A store table fed by Prism: how its rows are made from CSV records and JSON rows, and how
/// they join a batch.
pub trait PrismTable: Sync {
    type Row: Send + 'static;
    type Mapper: CsvMapper<Row = Self::Row>;
    fn table(&self) -> Table;
    /// Rows per batch of a full export.
    fn batch_rows(&self) -> usize {
        BATCH_ROWS
    }
    /// A full export at least this often (the only way to see rows that went away).
    fn full_every(&self) -> std::time::Duration {
        FULL_EXPORT_EVERY
    }
    fn mapper(&self, category: &str) -> Self::Mapper;
    fn row_of_json(&self, category: &str, row: &Value) -> Option<Self::Row>;
    fn device_of(row: &Self::Row) -> Option<&str>;
    fn push(batch: &mut Batch, table: Table, sweep: i64, started_at: i64, rows: Vec<Self::Row>);
}

/// A JSON string literal, as serde_json writes it.
pub fn json_string(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// The raw JSON of a Prism JSON row in the form its CSV record has (see [`RawJson`]): keys
/// sorted, every value a string (`null` as `""`, booleans and numbers as written, lists and
/// objects as compact JSON). A row read from a delta page and the same row read from a full
/// export then hash alike, so an unchanged row is not a change.
pub fn csv_form(row: &Value) -> String {
    let Some(map) = row.as_object() else {
        return row.to_string();
    };
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    let mut s = String::with_capacity(64 * keys.len());
    s.push('{');
    for (n, k) in keys.into_iter().enumerate() {
        if n > 0 {
            s.push(',');
        }
        s.push_str(&json_string(k));
        s.push(':');
        let v = match &map[k] {
            Value::Null => String::new(),
            Value::String(x) => x.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Number(x) => x.to_string(),
            other => other.to_string(),
        };
        s.push_str(&json_string(&v));
    }
    s.push('}');
    s
}

/// Builds the raw JSON of a CSV record as `serde_json` would write the record's map (keys
/// sorted, a later column of the same name winning, every value a string), without the map.
#[derive(Debug, Default, Clone)]
pub struct RawJson {
    /// (key as JSON, column), sorted by key.
    cols: Vec<(String, usize)>,
    index: std::collections::HashMap<String, usize>,
}

impl RawJson {
    pub fn new(h: &CsvHeaders) -> RawJson {
        let mut by_name: std::collections::BTreeMap<&str, usize> = Default::default();
        for (i, n) in h.names.iter().enumerate() {
            by_name.insert(n.as_str(), i);
        }
        let mut index = std::collections::HashMap::new();
        for (i, n) in h.names.iter().enumerate() {
            index.entry(n.clone()).or_insert(i);
            index
                .entry(n.trim().to_ascii_lowercase().replace([' ', '-'], "_"))
                .or_insert(i);
        }
        RawJson {
            cols: by_name
                .into_iter()
                .map(|(n, i)| (json_string(n), i))
                .collect(),
            index,
        }
    }

    pub fn write(&self, r: &csv::StringRecord) -> String {
        let mut s = String::with_capacity(r.as_slice().len() + self.cols.len() * 24);
        s.push('{');
        for (n, (k, i)) in self.cols.iter().enumerate() {
            if n > 0 {
                s.push(',');
            }
            s.push_str(k);
            s.push(':');
            s.push_str(&json_string(r.get(*i).unwrap_or_default()));
        }
        s.push('}');
        s
    }

    /// A field of the record by column name (as given or normalized); `""` is absent.
    pub fn get<'r>(&self, r: &'r csv::StringRecord, name: &str) -> Option<&'r str> {
        self.index
            .get(name)
            .and_then(|i| r.get(*i))
            .filter(|s| !s.is_empty())
    }
}

/// One category's checkpoint (stored under the category's key): when its last full export
/// ended and its deltas' mark; or, for a category the tenant refused, since when and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    #[serde(default)]
    pub last_full_ms: Option<i64>,
    #[serde(default)]
    pub hwm_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable_since_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable_message: Option<String>,
}

impl Checkpoint {
    /// After a collected snapshot or delta walk.
    pub fn collected(last_full_ms: Option<i64>, hwm_ms: i64) -> Checkpoint {
        Checkpoint {
            last_full_ms,
            hwm_ms: Some(hwm_ms),
            ..Checkpoint::default()
        }
    }
}

/// A category's checkpoint, typed (see [`super::load`]).
pub async fn checkpoint(
    rt: &SourceRuntime,
    stream: StreamName,
    category: &str,
) -> Result<Checkpoint, StreamError> {
    super::load(rt, stream, Some(category)).await
}

/// Streams one category: a full export or deltas, resuming from `cp` (the category's part of
/// the checkpoint, stored under the category's key).
pub async fn category<T: PrismTable>(
    rt: &SourceRuntime,
    scope: &Scope,
    stream: StreamName,
    category: &str,
    t: &T,
    cp: &Checkpoint,
) -> Result<RunReport, StreamError> {
    let table = t.table();
    let mut report = RunReport::default();
    let started = rt.now();
    let (last_full, hwm) = (cp.last_full_ms, cp.hwm_ms);
    let full_due = match (last_full, hwm) {
        (Some(f), Some(_)) => started - f >= t.full_every().as_millis() as i64,
        _ => true,
    };
    let keep = |r: &T::Row| scope.has_device(T::device_of(r));
    let scope_of_sweep = match table {
        Table::DeviceDetails => StoreScope::Column("category", category.to_string()),
        _ => StoreScope::All,
    };
    if full_due {
        let sweep = started;
        let mut batches = export(rt, category, scope, t.mapper(category), t.batch_rows());
        report.pages += 1;
        while let Some(rows) = batches.next().await {
            let rows: Vec<T::Row> = rows?.into_iter().filter(|r| keep(r)).collect();
            let mut batch = rt.batch(stream);
            T::push(&mut batch, table, sweep, sweep, rows);
            let out = rt.commit(batch).await?;
            report.records += out.records();
            if rt.stopping() {
                // Rows so far are committed; the checkpoint is not, so the next run exports again.
                return Err(StreamError::Shutdown);
            }
        }
        // The whole snapshot is in: close the sweep and move the checkpoint in one commit.
        let mut batch = rt.batch(stream);
        batch.sweep_ends.push(SweepEnd {
            table,
            sweep,
            scope: scope_of_sweep,
        });
        batch.checkpoint = Some(super::save(&Checkpoint::collected(Some(started), started)));
        batch.checkpoint_key = Some(category.to_string());
        let out = rt.commit(batch).await?;
        report.records += out.records();
        return Ok(report);
    }
    let since = hwm.unwrap_or(started) - OVERLAP_MS;
    let records = std::sync::atomic::AtomicU64::new(0);
    let pages = deltas(rt, stream, category, since, scope, |page: DeltaPage| {
        let rows: Vec<T::Row> = page
            .rows
            .iter()
            .filter_map(|r| t.row_of_json(category, r))
            .filter(|r| keep(r))
            .collect();
        let mut batch = rt.batch(stream);
        for r in &rows {
            if let Some(d) = T::device_of(r) {
                batch
                    .refresh
                    .push((d.to_string(), format!("prism:{category}")));
            }
        }
        T::push(&mut batch, table, 0, started, rows);
        if page.done {
            batch.checkpoint = Some(super::save(&Checkpoint::collected(last_full, started)));
            batch.checkpoint_key = Some(category.to_string());
        }
        let records = &records;
        async move {
            let out = rt.commit(batch).await?;
            records.fetch_add(out.records(), std::sync::atomic::Ordering::Relaxed);
            Ok(())
        }
    })
    .await?;
    report.pages += pages;
    report.records += records.into_inner();
    Ok(report)
}

#[cfg(test)]
mod checkpoint_tests {
    use super::*;

    #[test]
    fn collected_and_refused_categories_round_trip() {
        let old: Checkpoint =
            serde_json::from_value(serde_json::json!({"last_full_ms": null, "hwm_ms": 5})).unwrap();
        assert_eq!(old, Checkpoint::collected(None, 5));
        let refused: Checkpoint = serde_json::from_value(serde_json::json!({
            "unavailable_since_ms": 9, "unavailable_message": "Invalid category: filevault"
        }))
        .unwrap();
        assert_eq!(refused.unavailable_since_ms, Some(9));
        assert_eq!(refused.hwm_ms, None);
        assert_eq!(
            serde_json::to_value(Checkpoint::collected(Some(1), 2)).unwrap(),
            serde_json::json!({"last_full_ms": 1, "hwm_ms": 2})
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row read from a delta page (typed JSON) and the same row read from a full export
    /// (CSV strings) have the same raw JSON, so re-reading an unchanged row is no change.
    #[test]
    fn a_json_row_and_its_csv_record_have_the_same_raw_json() {
        let headers = CsvHeaders {
            names: ["sip", "device_id", "count", "tags", "model_id", "n"]
                .map(String::from)
                .to_vec(),
        };
        let record = csv::StringRecord::from(vec![
            "true",
            "7cf7f725",
            "",
            r#"["byod-exempt","<b>bold-tag</b>"]"#,
            "Mac15,5",
            "42",
        ]);
        let from_csv = RawJson::new(&headers).write(&record);
        let row = json!({
            "device_id": "7cf7f725",
            "sip": true,
            "count": null,
            "tags": ["byod-exempt", "<b>bold-tag</b>"],
            "model_id": "Mac15,5",
            "n": 42,
        });
        assert_eq!(csv_form(&row), from_csv);
        // Not a map: kept as it is.
        assert_eq!(csv_form(&json!([1])), "[1]");
    }
}
