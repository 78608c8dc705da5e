//! The Prism export cycle: create, poll with backoff up to a deadline, download the signed URL
//! WITHOUT the bearer header, and stream-parse the CSV in batches without buffering the file.
//!
//! The body is pumped through a bounded channel into a blocking `csv::Reader` running in
//! `spawn_blocking`; row batches come back through another bounded channel, so memory stays
//! bounded by `channel_capacity × batch_size` rows whatever the file size.

use std::io::Read;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::api::{path_segment, paths};
use crate::budget::Priority;
use crate::client::{ApiRequest, KandjiClient};
use crate::error::KandjiError;
use crate::models::{ExportStatus, Model, PrismExport, PrismRow};

/// What to export.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ExportRequest {
    /// Prism category (`apps`, `device_information`, `filevault`, …).
    pub category: String,
    /// Restrict to blueprints (empty = all).
    pub blueprint_ids: Vec<String>,
    /// Restrict to families `Mac`, `iPhone`, `iPad`, `tvOS` (empty = all).
    pub device_families: Vec<String>,
    /// Prism filter expression (e.g. `{"updated_at":{"gte":"…"}}`); `None` = `{}`.
    pub filter: Option<Value>,
    /// Columns (empty = all).
    pub columns: Vec<String>,
}

impl ExportRequest {
    /// Export a whole category.
    pub fn category(category: impl Into<String>) -> Self {
        Self {
            category: category.into(),
            ..Self::default()
        }
    }

    fn body(&self) -> Value {
        json!({
            "category": self.category,
            "blueprint_ids": self.blueprint_ids,
            "device_families": self.device_families,
            "filter": self.filter.clone().unwrap_or_else(|| json!({})),
            "columns": self.columns,
            "sort_by": "",
        })
    }
}

/// Polling and parsing knobs.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// First poll delay (default 2 s).
    pub poll_initial: Duration,
    /// Largest poll delay (default 30 s); delays grow ×1.5.
    pub poll_max: Duration,
    /// Give up polling after this long (default 15 min).
    pub deadline: Duration,
    /// Rows per yielded batch (default 500).
    pub batch_size: usize,
    /// Batches buffered between the parser and the consumer (default 4).
    pub channel_capacity: usize,
    /// Whole cycles tried when an export ends `failed` or its signed URL has expired before
    /// the download starts (default 3; each costs a create, its polls and a download).
    pub attempts: u32,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            poll_initial: Duration::from_secs(2),
            poll_max: Duration::from_secs(30),
            deadline: Duration::from_secs(900),
            batch_size: 500,
            channel_capacity: 4,
            attempts: 3,
        }
    }
}

/// Whether a new export may succeed where this one did not: it ended `failed`, or its signed
/// URL expired (S3's 403 "Request has expired") before the download began.
fn worth_another_export(e: &KandjiError) -> bool {
    match e {
        KandjiError::ExportFailed { .. } => true,
        KandjiError::BadRequest {
            status: 403,
            message,
            ..
        } => message.to_ascii_lowercase().contains("expired"),
        _ => false,
    }
}

/// A stream of row batches.
pub type RowBatches = Pin<Box<dyn Stream<Item = Result<Vec<PrismRow>, KandjiError>> + Send>>;

/// A stream of batches of whatever a [`CsvMapper`] makes of each CSV record.
pub type MappedBatches<T> = Pin<Box<dyn Stream<Item = Result<Vec<T>, KandjiError>> + Send>>;

/// The header row of an export, with BOMs trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvHeaders {
    /// The column names as the file gives them.
    pub names: Vec<String>,
}

impl CsvHeaders {
    /// The index of a column, by its name as given or in normalized form (lower case, spaces
    /// → `_`), the same lookup [`PrismRow::from_map`] does.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.names
            .iter()
            .position(|h| h == name)
            .or_else(|| self.names.iter().position(|h| normalize(h) == name))
    }
}

fn normalize(h: &str) -> String {
    h.trim().to_ascii_lowercase().replace([' ', '-'], "_")
}

/// Maps CSV records to rows in the parser's own thread, so a record never becomes an
/// intermediate map. `headers` is called once, before the first record.
pub trait CsvMapper: Send + 'static {
    /// What a record becomes.
    type Row: Send + 'static;
    /// Called with the header row, before the first record.
    fn headers(&mut self, headers: &CsvHeaders);
    /// `None` drops the record.
    fn map(&mut self, record: &csv::StringRecord) -> Option<Self::Row>;
}

/// The mapper behind [`KandjiClient::export`]: one [`PrismRow`] per record.
#[derive(Debug, Default)]
pub struct PrismRows {
    headers: Vec<String>,
}

impl CsvMapper for PrismRows {
    type Row = PrismRow;
    fn headers(&mut self, headers: &CsvHeaders) {
        self.headers = headers.names.clone();
    }
    fn map(&mut self, record: &csv::StringRecord) -> Option<PrismRow> {
        let mut map = Map::with_capacity(self.headers.len());
        for (i, h) in self.headers.iter().enumerate() {
            map.insert(
                h.clone(),
                Value::String(record.get(i).unwrap_or_default().to_string()),
            );
        }
        Some(PrismRow::from_map(map))
    }
}

impl KandjiClient {
    /// `POST /api/v1/prism/export`: start an export.
    pub async fn create_export(&self, req: &ExportRequest) -> Result<PrismExport, KandjiError> {
        let mut r = ApiRequest::get(paths::PRISM_EXPORT, Priority::Bulk);
        r.method = reqwest::Method::POST;
        r.body = Some(req.body());
        let endpoint = r.endpoint();
        let body = self.send(&r).await?.body;
        let export = PrismExport::from_value(body).map_err(|message| KandjiError::Decode {
            endpoint: endpoint.clone(),
            message,
        })?;
        if export.id.is_none() {
            return Err(KandjiError::Decode {
                endpoint,
                message: "export has no id".into(),
            });
        }
        Ok(export)
    }

    /// `GET /api/v1/prism/export/{export_id}`.
    pub async fn get_export(&self, export_id: &str) -> Result<PrismExport, KandjiError> {
        let path = paths::PRISM_EXPORT_ID.replace("{export_id}", &path_segment(export_id));
        let r = ApiRequest::get_path(paths::PRISM_EXPORT_ID, path, Priority::Bulk);
        let endpoint = r.endpoint();
        let body = self.send(&r).await?.body;
        PrismExport::from_value(body).map_err(|message| KandjiError::Decode { endpoint, message })
    }

    /// Poll until the export succeeded with a `signed_url`, failed, or the deadline passed.
    pub async fn wait_export(
        &self,
        export_id: &str,
        opts: &ExportOptions,
    ) -> Result<PrismExport, KandjiError> {
        let start = Instant::now();
        let mut delay = opts.poll_initial;
        loop {
            let e = self.get_export(export_id).await?;
            match (&e.status, &e.signed_url) {
                (ExportStatus::Success, Some(_)) => return Ok(e),
                (ExportStatus::Failed, _) => {
                    return Err(KandjiError::ExportFailed {
                        export_id: export_id.to_string(),
                        message: e.error_msg.clone().unwrap_or_default(),
                        attempts: 1,
                    });
                }
                _ => {}
            }
            if start.elapsed() + delay > opts.deadline {
                return Err(KandjiError::ExportTimeout {
                    export_id: export_id.to_string(),
                    waited: start.elapsed(),
                });
            }
            tracing::debug!(
                export_id,
                status = e.status.as_str(),
                wait_ms = delay.as_millis() as u64,
                "export pending"
            );
            tokio::time::sleep(delay).await;
            delay = delay.mul_f64(1.5).min(opts.poll_max);
        }
    }

    /// Download a signed export URL (no bearer header) and stream its CSV as row batches.
    pub async fn download_export(
        &self,
        signed_url: &str,
        opts: &ExportOptions,
    ) -> Result<RowBatches, KandjiError> {
        self.download_export_mapped(signed_url, opts, PrismRows::default())
            .await
    }

    /// Like [`download_export`](Self::download_export), with the rows made by `mapper` in the
    /// parser's thread.
    pub async fn download_export_mapped<M: CsvMapper>(
        &self,
        signed_url: &str,
        opts: &ExportOptions,
        mapper: M,
    ) -> Result<MappedBatches<M::Row>, KandjiError> {
        let resp = self.download(signed_url).await?;
        Ok(parse_csv_stream_mapped(
            resp.bytes_stream(),
            opts.batch_size,
            opts.channel_capacity,
            mapper,
        ))
    }

    /// The whole cycle: create, poll, download, parse. Yields row batches.
    pub fn export(&self, req: ExportRequest, opts: ExportOptions) -> RowBatches {
        self.export_mapped(req, opts, PrismRows::default())
    }

    /// The whole cycle, with each CSV record mapped by `mapper` as it is parsed (no
    /// intermediate map per record).
    pub fn export_mapped<M: CsvMapper>(
        &self,
        req: ExportRequest,
        opts: ExportOptions,
        mapper: M,
    ) -> MappedBatches<M::Row> {
        let client = self.clone();
        let fut = async move {
            let attempts = opts.attempts.max(1);
            let mut attempt = 0;
            loop {
                attempt += 1;
                // Retried only before the first row is parsed, so no row is yielded twice.
                let tried = async {
                    let created = client.create_export(&req).await?;
                    let id = created.id.clone().unwrap_or_default();
                    tracing::debug!(export_id = %id, category = %req.category, "prism export created");
                    let done = client.wait_export(&id, &opts).await?;
                    let url = done.signed_url.unwrap_or_default();
                    let resp = client.download(&url).await?;
                    Ok::<_, KandjiError>(resp)
                }
                .await;
                match tried {
                    Ok(resp) => {
                        return Ok(parse_csv_stream_mapped(
                            resp.bytes_stream(),
                            opts.batch_size,
                            opts.channel_capacity,
                            mapper,
                        ));
                    }
                    Err(e) if attempt < attempts && worth_another_export(&e) => {
                        tracing::warn!(category = %req.category, attempt, of = attempts,
                            error = %e, "prism export did not complete; creating another");
                    }
                    Err(KandjiError::ExportFailed {
                        export_id, message, ..
                    }) => {
                        return Err(KandjiError::ExportFailed {
                            export_id,
                            message,
                            attempts: attempt,
                        });
                    }
                    Err(e) if worth_another_export(&e) => {
                        return Err(KandjiError::ExportFailed {
                            export_id: String::new(),
                            message: format!("the signed download URL had expired ({e})"),
                            attempts: attempt,
                        });
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        Box::pin(futures::stream::once(fut).flat_map(|r| match r {
            Ok(s) => s,
            Err(e) => Box::pin(futures::stream::iter([Err(e)])) as MappedBatches<M::Row>,
        }))
    }
}

/// Parse a CSV byte stream (header row first; quoted fields may span lines) into batches of
/// rows, without buffering the whole body.
pub fn parse_csv_stream<S, E>(body: S, batch_size: usize, channel_capacity: usize) -> RowBatches
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    parse_csv_stream_mapped(body, batch_size, channel_capacity, PrismRows::default())
}

/// [`parse_csv_stream`] with the rows made by `mapper` in the parser's thread.
pub fn parse_csv_stream_mapped<S, E, M>(
    body: S,
    batch_size: usize,
    channel_capacity: usize,
    mapper: M,
) -> MappedBatches<M::Row>
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
    M: CsvMapper,
{
    let (bytes_tx, bytes_rx) = mpsc::channel::<Result<Bytes, String>>(channel_capacity.max(1));
    let (rows_tx, rows_rx) =
        mpsc::channel::<Result<Vec<M::Row>, KandjiError>>(channel_capacity.max(1));
    tokio::spawn(async move {
        let mut body = Box::pin(body);
        while let Some(chunk) = body.next().await {
            let failed = chunk.is_err();
            if bytes_tx
                .send(chunk.map_err(|e| e.to_string()))
                .await
                .is_err()
                || failed
            {
                break;
            }
        }
    });
    let batch_size = batch_size.max(1);
    tokio::task::spawn_blocking(move || {
        parse_blocking(
            ChannelReader {
                rx: bytes_rx,
                buf: Bytes::new(),
            },
            batch_size,
            &rows_tx,
            mapper,
        )
    });
    Box::pin(futures::stream::unfold(rows_rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

fn parse_blocking<M: CsvMapper>(
    reader: ChannelReader,
    batch_size: usize,
    out: &mpsc::Sender<Result<Vec<M::Row>, KandjiError>>,
    mut mapper: M,
) {
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .buffer_capacity(256 * 1024)
        .from_reader(reader);
    let headers = match rdr.headers() {
        Ok(h) => CsvHeaders {
            names: h
                .iter()
                .map(|s| s.trim_start_matches('\u{feff}').to_string())
                .collect(),
        },
        Err(e) => {
            let _ = out.blocking_send(Err(csv_error(&e)));
            return;
        }
    };
    mapper.headers(&headers);
    let mut batch = Vec::with_capacity(batch_size);
    let mut record = csv::StringRecord::new();
    loop {
        match rdr.read_record(&mut record) {
            Ok(true) => {
                if let Some(row) = mapper.map(&record) {
                    batch.push(row);
                }
                if batch.len() >= batch_size
                    && out.blocking_send(Ok(std::mem::take(&mut batch))).is_err()
                {
                    return; // consumer went away
                }
            }
            Ok(false) => break,
            Err(e) => {
                if !batch.is_empty() && out.blocking_send(Ok(std::mem::take(&mut batch))).is_err() {
                    return;
                }
                let _ = out.blocking_send(Err(csv_error(&e)));
                return;
            }
        }
    }
    if !batch.is_empty() {
        let _ = out.blocking_send(Ok(batch));
    }
}

fn csv_error(e: &csv::Error) -> KandjiError {
    match e.kind() {
        csv::ErrorKind::Io(io) => KandjiError::Transport {
            endpoint: "GET <signed export URL>".into(),
            message: format!("export body interrupted: {io}"),
        },
        _ => KandjiError::Csv(e.to_string()),
    }
}

/// A blocking `Read` over a channel of byte chunks.
struct ChannelReader {
    rx: mpsc::Receiver<Result<Bytes, String>>,
    buf: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.buf.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.buf = b,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf = self.buf.slice(n..);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn csv_streams_in_batches_with_multiline_fields() {
        let csv = "device_id,name,copyright\nd1,Safari,\"Copyright ©\n2024 Apple\"\nd2,\"Chess, the game\",\"\"\"quoted\"\"\"\nd3,X,\n";
        // Split into awkward 3-byte chunks.
        let chunks: Vec<Result<Bytes, String>> = csv
            .as_bytes()
            .chunks(3)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let batches: Vec<Vec<PrismRow>> = parse_csv_stream(futures::stream::iter(chunks), 2, 1)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1]);
        let rows: Vec<_> = batches.into_iter().flatten().collect();
        assert_eq!(
            rows[0].get_str("copyright").as_deref(),
            Some("Copyright ©\n2024 Apple")
        );
        assert_eq!(rows[1].get_str("name").as_deref(), Some("Chess, the game"));
        assert_eq!(rows[1].get_str("copyright").as_deref(), Some("\"quoted\""));
        assert_eq!(rows[2].device_id.as_deref(), Some("d3"));
        assert_eq!(rows[2].get_str("copyright"), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn interrupted_body_is_an_error_after_good_rows() {
        let chunks: Vec<Result<Bytes, String>> = vec![
            Ok(Bytes::from_static(b"a,b\n1,2\n3,")),
            Err("connection reset".into()),
        ];
        let items: Vec<_> = parse_csv_stream(futures::stream::iter(chunks), 10, 1)
            .collect()
            .await;
        assert!(items.len() == 2, "{items:?}");
        assert!(items[0].as_ref().is_ok_and(|b| b.len() == 1));
        assert!(matches!(items[1], Err(KandjiError::Transport { .. })));
    }
}
