//! Prism, the fleet-wide tables: full snapshots through the asynchronous CSV export and deltas
//! through cursor pages filtered on `last_changed_at`. Shared by `device_details` and `apps`.
//!
//! An export costs about three requests plus polls whatever the fleet size; the CSV is
//! downloaded from the signed URL without the bearer header and parsed as it streams, in
//! batches, so memory stays flat in fleet size.

use std::io::Read;
use std::time::Duration;

use futures::StreamExt;
use kandji_api::{ApiRequest, KandjiError};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::StreamName;
use crate::engine::fetch::{self, api_priority, q, s};
use crate::engine::{Scope, SourceRuntime, StreamError};

/// Rows per batch handed to the store.
pub const BATCH_ROWS: usize = 5_000;
/// How long an export may take before the run gives up (the next run starts a new one).
pub const EXPORT_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// The Prism filter arguments the source's filters push down.
pub fn pushdown(scope: &Scope) -> (Vec<String>, Vec<String>) {
    (scope.blueprint_ids.clone(), scope.families.clone())
}

/// Runs an export of `category` to completion and streams its rows, `BATCH_ROWS` at a time.
pub async fn export(
    rt: &SourceRuntime,
    stream: StreamName,
    category: &str,
    scope: &Scope,
) -> Result<mpsc::Receiver<Result<Vec<Value>, StreamError>>, StreamError> {
    let (blueprint_ids, families) = pushdown(scope);
    let priority = api_priority(stream.priority());
    let mut create = ApiRequest::get("/api/v1/prism/export", priority);
    create.method = reqwest_method_post();
    create.body = Some(json!({
        "category": category,
        "blueprint_ids": blueprint_ids,
        "device_families": families,
        "filter": {},
        "columns": [],
        "sort_by": "",
    }));
    let created = rt.client.send(&create).await?.body;
    let id = s(&created, "id").ok_or_else(|| {
        StreamError::Data(format!("prism export of {category}: the answer has no id"))
    })?;
    let started = tokio::time::Instant::now();
    let mut delay = rt.export_poll;
    let mut status = created;
    loop {
        match s(&status, "status").as_deref() {
            Some("success") if s(&status, "signed_url").is_some() => break,
            Some("failed") => {
                return Err(KandjiError::ExportFailed {
                    export_id: id,
                    message: s(&status, "error_msg").unwrap_or_default(),
                }
                .into());
            }
            _ => {}
        }
        if started.elapsed() > EXPORT_DEADLINE {
            return Err(KandjiError::ExportTimeout {
                export_id: id,
                waited: started.elapsed(),
            }
            .into());
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(15));
        let poll = ApiRequest::get_path(
            "/api/v1/prism/export/{export_id}",
            format!("/api/v1/prism/export/{id}"),
            priority,
        );
        status = rt.client.send(&poll).await?.body;
    }
    let url = s(&status, "signed_url").unwrap_or_default();
    let resp = rt.client.download(&url).await?;
    // Body chunks go to a blocking CSV parser through a small channel (backpressure), and
    // parsed batches come back through another.
    let (chunk_tx, chunk_rx) = std::sync::mpsc::sync_channel::<Result<bytes::Bytes, String>>(16);
    let (rows_tx, rows_rx) = mpsc::channel::<Result<Vec<Value>, StreamError>>(4);
    tokio::spawn(async move {
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let item = chunk.map_err(|e| e.to_string());
            let stop = item.is_err();
            if chunk_tx.send(item).is_err() || stop {
                break;
            }
        }
    });
    tokio::task::spawn_blocking(move || parse_csv(ChunkReader::new(chunk_rx), &rows_tx));
    Ok(rows_rx)
}

fn reqwest_method_post() -> reqwest::Method {
    reqwest::Method::POST
}

/// Reads the body chunks as one `Read`.
struct ChunkReader {
    rx: std::sync::mpsc::Receiver<Result<bytes::Bytes, String>>,
    buf: bytes::Bytes,
}

impl ChunkReader {
    fn new(rx: std::sync::mpsc::Receiver<Result<bytes::Bytes, String>>) -> Self {
        ChunkReader {
            rx,
            buf: bytes::Bytes::new(),
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.buf.is_empty() {
            match self.rx.recv() {
                Ok(Ok(b)) => self.buf = b,
                Ok(Err(e)) => return Err(std::io::Error::other(e)),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf.split_to(n));
        Ok(n)
    }
}

fn parse_csv(reader: impl Read, tx: &mpsc::Sender<Result<Vec<Value>, StreamError>>) {
    let mut csv = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(reader);
    let headers = match csv.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            let _ = tx.blocking_send(Err(KandjiError::Csv(e.to_string()).into()));
            return;
        }
    };
    let mut batch = Vec::with_capacity(BATCH_ROWS);
    let mut record = csv::StringRecord::new();
    loop {
        match csv.read_record(&mut record) {
            Ok(true) => {
                let mut row = Map::with_capacity(headers.len());
                for (h, v) in headers.iter().zip(record.iter()) {
                    row.insert(h.to_string(), Value::String(v.to_string()));
                }
                batch.push(Value::Object(row));
                if batch.len() >= BATCH_ROWS {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_ROWS));
                    if tx.blocking_send(Ok(full)).is_err() {
                        return;
                    }
                }
            }
            Ok(false) => break,
            Err(e) => {
                let _ = tx.blocking_send(Err(KandjiError::Csv(format!(
                    "line {}: {e}",
                    e.position().map_or(0, |p| p.line())
                ))
                .into()));
                return;
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.blocking_send(Ok(batch));
    }
}

/// One page of a Prism cursor walk.
pub struct DeltaPage {
    pub rows: Vec<Value>,
    pub done: bool,
}

/// Walks `GET /prism/{category}` with `filter={"last_changed_at":{"gte": since}}` and the
/// cursor, calling `each` per page; returns the number of pages.
pub async fn deltas<F, Fut>(
    rt: &SourceRuntime,
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
    let mut pages = rt.client.prism(category, query, None);
    let mut n = 0u64;
    while let Some(page) = pages.next().await {
        let page = page?;
        n += 1;
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
    Ok(n)
}

/// The ms timestamp of a Prism row's `last_changed_at` (or `updated_at`).
pub fn changed_at(row: &Value) -> Option<i64> {
    fetch::ts(row, "last_changed_at").or_else(|| fetch::ts(row, "updated_at"))
}
