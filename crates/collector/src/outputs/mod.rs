//! Outputs: routes each source's records, raw or OCSF, to NDJSON files/stdout, OTLP/HTTP
//! logs, HTTP webhooks and NATS JetStream, beside the embedded store (always on).
//!
//! Delivery is at-least-once and never blocks collection. The store writes an `outbox` row
//! for every new row or event version in the batch's own transaction (`store/write.rs`); each
//! output reads the outbox after its own committed offset, sends a batch, and moves its
//! offset only once the receiver acknowledged it. Collection never waits for an output, and
//! a Kandji checkpoint never depends on one: a slow or dead output just falls behind and
//! catches up from its offset when it recovers, also across restarts and crashes. Transient
//! failures (network, 408/425/429, 5xx) retry with exponential backoff and full jitter
//! (backon); a permanent rejection (other 4xx) of a batch is retried record by record and
//! what is still rejected goes to the bounded dead-letter area ([`Store::dead_letters`],
//! counts in [`status`]). Each record carries a stable id (`metadata.uid` in OCSF, `id` raw;
//! `kandji.event_id` in OTLP) that changes only when the record does, so receivers can drop
//! repeats.

pub mod nats;
pub mod ndjson;
pub mod otlp;
pub mod outbox;
pub mod webhook;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use tokio_util::sync::CancellationToken;

pub use crate::config::sinks::{self as config, Format, SinkKind, SinkSpec};
pub use outbox::{OutRecord, SourceInfo, ocsf_of_export};

use crate::store::{Store, StoreError, now_ms};

/// Why a send failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SinkError {
    /// Worth retrying: the receiver is down, slow, overloaded or failing.
    #[error("{0}")]
    Transient(String),
    /// The receiver rejected the records; retrying will not help.
    #[error("rejected ({status:?}): {message}")]
    Permanent {
        status: Option<u16>,
        message: String,
    },
}

impl SinkError {
    pub fn is_transient(&self) -> bool {
        matches!(self, SinkError::Transient(_))
    }
}

/// Why an output stopped.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("shutting down")]
    Shutdown,
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

pub(crate) fn gzip(data: &[u8]) -> Result<Vec<u8>, SinkError> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4),
        flate2::Compression::fast(),
    );
    enc.write_all(data)
        .and_then(|_| enc.finish())
        .map_err(|e| SinkError::Permanent {
            status: None,
            message: format!("gzip: {e}"),
        })
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// An HTTP client for the outputs: rustls with ring, no redirects (credentials stay with the
/// configured host).
pub(crate) fn http_client(timeout: Duration) -> Result<reqwest::Client, SinkError> {
    kandji_api::client::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("kandji-collector/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| SinkError::Permanent {
            status: None,
            message: format!("cannot build the HTTP client: {}", error_chain(&e)),
        })
}

/// 2xx: delivered. 400, 413, 415 and 422 reject the records (the batch is then retried record
/// by record; what is still rejected is dead-lettered). Everything else — 5xx, 408, 425, 429,
/// and also 401/403/404 and other 4xx, which mean a misconfigured or unavailable receiver
/// rather than bad records — is retried with backoff until it recovers, so a wrong token or
/// URL never drains the outbox into the dead letters.
pub(crate) async fn classify(what: &str, resp: reqwest::Response) -> Result<(), SinkError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let text: String = resp
        .text()
        .await
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect();
    let code = status.as_u16();
    if matches!(code, 400 | 413 | 415 | 422) {
        Err(SinkError::Permanent {
            status: Some(code),
            message: format!("{what}: HTTP {code}: {text}"),
        })
    } else {
        Err(SinkError::Transient(format!("{what}: HTTP {code}: {text}")))
    }
}

/// A built sink.
pub enum Sink {
    Ndjson(Mutex<ndjson::NdjsonSink>),
    Otlp(otlp::OtlpSink),
    Webhook(webhook::WebhookSink),
    /// Boxed: the client's connection state is large beside the other sinks.
    Nats(Box<nats::NatsSink>),
}

impl Sink {
    pub fn build(info: &SourceInfo, spec: &SinkSpec) -> Result<Sink, SinkError> {
        Ok(match &spec.kind {
            SinkKind::Ndjson {
                path,
                rotate_bytes,
                rotate_every,
                keep_files,
            } => Sink::Ndjson(Mutex::new(ndjson::NdjsonSink::new(
                path.clone(),
                *rotate_bytes,
                *rotate_every,
                *keep_files,
            ))),
            SinkKind::Otlp {
                endpoint,
                encoding,
                gzip,
                headers,
                secret_headers,
                timeout,
            } => Sink::Otlp(otlp::OtlpSink::new(
                info.clone(),
                endpoint.clone(),
                *encoding,
                *gzip,
                headers.clone(),
                secret_headers.clone(),
                *timeout,
            )?),
            SinkKind::Webhook {
                url,
                gzip,
                auth,
                hmac_secret,
                timeout,
            } => Sink::Webhook(webhook::WebhookSink::new(
                url.clone(),
                *gzip,
                auth.clone(),
                hmac_secret.clone(),
                *timeout,
            )?),
            SinkKind::Nats(spec) => {
                Sink::Nats(Box::new(nats::NatsSink::new(info.clone(), spec.clone())))
            }
        })
    }

    pub async fn send(&self, records: &[OutRecord]) -> Result<(), SinkError> {
        match self {
            Sink::Ndjson(m) => match m.lock() {
                Ok(mut s) => s.send(records),
                Err(_) => Err(SinkError::Transient("ndjson: writer poisoned".into())),
            },
            Sink::Otlp(s) => s.send(records).await,
            Sink::Webhook(s) => s.send(records).await,
            Sink::Nats(s) => s.send(records).await,
        }
    }
}

/// One batch read from the outbox.
struct ReadBatch {
    records: Vec<OutRecord>,
    /// Where the batch ends in the outbox (`None`: nothing after the offset).
    last: Option<crate::store::OutboxPos>,
    /// Outbox rows consumed (records skipped or merged included).
    consumed: usize,
}

/// Retry pacing.
#[derive(Debug, Clone)]
pub struct Pacing {
    /// The wait between outbox polls when an output is caught up.
    pub poll: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Attempts per send before giving up for this round (`None` = until shutdown).
    pub max_attempts: Option<usize>,
}

impl Default for Pacing {
    fn default() -> Pacing {
        Pacing {
            poll: Duration::from_millis(500),
            min_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(60),
            max_attempts: None,
        }
    }
}

/// One output of one source.
pub struct Output {
    pub info: SourceInfo,
    pub spec: SinkSpec,
    sink: Arc<Sink>,
    store: Store,
    pacing: Pacing,
}

impl Output {
    pub fn new(
        store: Store,
        info: SourceInfo,
        spec: SinkSpec,
        pacing: Pacing,
    ) -> Result<Output, SinkError> {
        let sink = Arc::new(Sink::build(&info, &spec)?);
        Ok(Output {
            info,
            spec,
            sink,
            store,
            pacing,
        })
    }

    async fn send_retrying(
        &self,
        records: &[OutRecord],
        shutdown: &CancellationToken,
    ) -> Result<(), OutputError> {
        let mut backoff = ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(self.pacing.min_backoff)
            .with_max_delay(self.pacing.max_backoff);
        backoff = match self.pacing.max_attempts {
            Some(n) => backoff.with_max_times(n),
            None => backoff.without_max_times(),
        };
        let sink = self.sink.clone();
        let store = self.store.clone();
        let (source, output) = (self.info.source.clone(), self.spec.name.clone());
        let attempt = || {
            let sink = sink.clone();
            async move { sink.send(records).await }
        };
        let retry = attempt
            .retry(backoff)
            .when(SinkError::is_transient)
            .notify(|e: &SinkError, wait: Duration| {
                tracing::warn!(source = %source, output = %output, error = %e, retry_in_ms = wait.as_millis() as u64, "output send failed, retrying");
                let (store, source, output, msg) =
                    (store.clone(), source.clone(), output.clone(), e.to_string());
                tokio::spawn(async move {
                    let _ = store
                        .record_output_error(&source, &output, &msg, now_ms())
                        .await;
                });
            });
        if shutdown.is_cancelled() {
            return Err(OutputError::Shutdown);
        }
        tokio::select! {
            r = retry => r.map_err(OutputError::Sink),
            () = shutdown.cancelled() => Err(OutputError::Shutdown),
        }
    }

    /// Reads the batch after `after` (the committed offset when `None`) off the runtime.
    fn read_task(
        &self,
        after: Option<crate::store::OutboxPos>,
    ) -> tokio::task::JoinHandle<Result<ReadBatch, StoreError>> {
        let info = self.info.clone();
        let name = self.spec.name.clone();
        let (format, limit) = (self.spec.format, self.spec.batch_size);
        let store = self.store.clone();
        tokio::spawn(async move {
            let after = match after {
                Some(a) => a,
                None => store.output_offset(&info.source, &name).await?,
            };
            let (records, last, consumed) =
                outbox::read_batch(&store, &info, format, after, limit).await?;
            Ok(ReadBatch {
                records,
                last,
                consumed,
            })
        })
    }

    /// Sends a batch (isolating rejected records) and commits the offset past it.
    async fn deliver(
        &self,
        batch: &ReadBatch,
        last: crate::store::OutboxPos,
        shutdown: &CancellationToken,
    ) -> Result<(), OutputError> {
        let mut delivered = batch.records.len() as i64;
        if !batch.records.is_empty() {
            match self.send_retrying(&batch.records, shutdown).await {
                Ok(()) => {}
                Err(OutputError::Sink(SinkError::Permanent { .. })) => {
                    delivered = self.isolate_rejects(&batch.records, shutdown).await?;
                }
                Err(e) => return Err(e),
            }
        }
        self.store
            .commit_output_offset(
                &self.info.source,
                &self.spec.name,
                last,
                delivered,
                now_ms(),
            )
            .await?;
        Ok(())
    }

    /// Delivers one batch from the outbox. Returns how many outbox rows it consumed (0 = caught up).
    pub async fn step(&self, shutdown: &CancellationToken) -> Result<usize, OutputError> {
        let batch = self
            .read_task(None)
            .await
            .map_err(|_| StoreError::WriterGone)??;
        let Some(last) = batch.last else {
            return Ok(0);
        };
        self.deliver(&batch, last, shutdown).await?;
        Ok(batch.consumed.max(1))
    }

    /// Delivers until the outbox is empty for this output, reading the next batch while the
    /// current one is in flight (offsets still commit in order). Returns the outbox rows consumed.
    async fn pump(&self, shutdown: &CancellationToken) -> Result<u64, OutputError> {
        let mut total = 0u64;
        let mut next = self.read_task(None);
        loop {
            let batch = next.await.map_err(|_| StoreError::WriterGone)??;
            let Some(last) = batch.last else {
                return Ok(total);
            };
            next = self.read_task(Some(last));
            self.deliver(&batch, last, shutdown).await?;
            total += batch.consumed.max(1) as u64;
        }
    }

    /// A batch was rejected: send its records one by one and dead-letter the ones rejected.
    async fn isolate_rejects(
        &self,
        records: &[OutRecord],
        shutdown: &CancellationToken,
    ) -> Result<i64, OutputError> {
        let mut delivered = 0;
        for r in records {
            match self.send_retrying(std::slice::from_ref(r), shutdown).await {
                Ok(()) => delivered += 1,
                Err(OutputError::Sink(SinkError::Permanent { status, message })) => {
                    tracing::warn!(source = %self.info.source, output = %self.spec.name, record_id = %r.id, status, error = %message, "record rejected, dead-lettered");
                    self.store
                        .dead_letter(
                            &self.info.source,
                            &self.spec.name,
                            vec![crate::store::DeadLetter {
                                seq: r.seq,
                                record_id: r.id.clone(),
                                payload: r.body.to_string(),
                            }],
                            status,
                            &message,
                            now_ms(),
                        )
                        .await?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(delivered)
    }

    /// Delivers until the outbox is empty for this output (or a send gives up).
    pub async fn drain(&self, shutdown: &CancellationToken) -> Result<u64, OutputError> {
        if !self.store.delivers(&self.info.source).await {
            return Ok(0);
        }
        self.pump(shutdown).await
    }

    /// Runs until shutdown: delivers, then polls the outbox.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(source = %self.info.source, output = %self.spec.name, kind = self.spec.kind.type_name(), "output started");
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            // On a shared store, the replica that collects the source sends its records.
            let mine = self.store.delivers(&self.info.source).await;
            match if mine {
                self.pump(&shutdown).await
            } else {
                Ok(0)
            } {
                Ok(_) => {}
                Err(OutputError::Shutdown) => break,
                Err(e) => {
                    tracing::warn!(source = %self.info.source, output = %self.spec.name, error = %e, "output step failed");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.pacing.poll) => {}
                () = shutdown.cancelled() => break,
            }
        }
        tracing::info!(source = %self.info.source, output = %self.spec.name, "output stopped");
    }
}

/// The tenant id of a source: the Kandji subdomain, or the source name for custom endpoints.
pub fn tenant_of(source: &crate::config::Source) -> String {
    let host = source.base.host();
    let known = [".api.kandji.io", ".api.eu.kandji.io", ".api.iru.com"];
    match known.iter().find_map(|k| host.strip_suffix(k)) {
        Some(sub) if !sub.is_empty() => sub.to_string(),
        _ => source.name.clone(),
    }
}

/// Builds every output of every source in `config` (sources resolved for their tenant).
pub fn build_all(
    store: &Store,
    config: &crate::config::Config,
    sources: &[crate::config::Source],
    pacing: Pacing,
) -> Result<Vec<Output>, BuildError> {
    let mut out = Vec::new();
    for (i, sc) in config.sources.iter().enumerate() {
        let Some(src) = sources.iter().find(|s| s.name == sc.name) else {
            continue;
        };
        let info = SourceInfo {
            source: src.name.clone(),
            tenant: tenant_of(src),
        };
        for spec in config::resolve(i, &sc.sinks)? {
            out.push(Output::new(
                store.clone(),
                info.clone(),
                spec,
                pacing.clone(),
            )?);
        }
    }
    Ok(out)
}

/// Why the outputs could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("output: {0}")]
    Sink(#[from] SinkError),
}

/// Spawns every output and an outbox pruner, each under a child of `shutdown`; they stop
/// when it is cancelled.
pub fn spawn_all(
    store: &Store,
    outputs: Vec<Output>,
    sources: &[String],
    shutdown: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut by_source: std::collections::BTreeMap<String, Vec<String>> =
        sources.iter().map(|s| (s.clone(), Vec::new())).collect();
    for o in &outputs {
        by_source
            .entry(o.info.source.clone())
            .or_default()
            .push(o.spec.name.clone());
    }
    let mut handles: Vec<_> = outputs
        .into_iter()
        .map(|o| tokio::spawn(o.run(shutdown.child_token())))
        .collect();
    let store = store.clone();
    let sd = shutdown.child_token();
    handles.push(tokio::spawn(async move {
        loop {
            let plan = by_source.clone().into_iter().collect();
            let r = store.prune_outbox(plan).await;
            if let Err(error) = r {
                tracing::warn!(%error, "outbox prune failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                () = sd.cancelled() => break,
            }
        }
    }));
    handles
}

/// Per-output delivery status (offset, pending, delivered, dead letters, last error) as
/// JSON, for `status --json` and the console.
pub async fn status(store: &Store) -> Result<serde_json::Value, StoreError> {
    store.outputs_status().await
}

/// Builds and spawns the outputs of every source in `config` (the `run` daemon).
pub fn start(
    store: &Store,
    config: &crate::config::Config,
    sources: &[crate::config::Source],
    shutdown: CancellationToken,
) -> Result<Vec<tokio::task::JoinHandle<()>>, BuildError> {
    let outputs = build_all(store, config, sources, Pacing::default())?;
    let names: Vec<String> = sources.iter().map(|s| s.name.clone()).collect();
    Ok(spawn_all(store, outputs, &names, shutdown))
}

/// Waits for spawned outputs to stop (after shutdown).
pub async fn join(handles: Vec<tokio::task::JoinHandle<()>>) {
    for h in handles {
        let _ = h.await;
    }
}

/// After `sync --once`: delivers what the outbox holds to every configured output, with a few
/// retries each; what is left stays queued for the next run.
pub async fn drain_once(
    store: &Store,
    config: &crate::config::Config,
    sources: &[crate::config::Source],
    shutdown: &CancellationToken,
) -> Result<(), BuildError> {
    let pacing = Pacing {
        max_attempts: Some(4),
        max_backoff: Duration::from_secs(5),
        ..Pacing::default()
    };
    let outputs = build_all(store, config, sources, pacing)?;
    let mut plan: std::collections::BTreeMap<String, Vec<String>> = sources
        .iter()
        .map(|s| (s.name.clone(), Vec::new()))
        .collect();
    for o in &outputs {
        plan.entry(o.info.source.clone())
            .or_default()
            .push(o.spec.name.clone());
    }
    for o in outputs {
        match o.drain(&shutdown.child_token()).await {
            Ok(n) => {
                tracing::info!(source = %o.info.source, output = %o.spec.name, records = n, "output drained")
            }
            Err(error) => {
                tracing::warn!(source = %o.info.source, output = %o.spec.name, %error, "output not drained; records stay queued")
            }
        }
    }
    // What every output of a source has delivered leaves the outbox (all of it for a source
    // with no outputs).
    let r = store.prune_outbox(plan.into_iter().collect()).await;
    if let Err(error) = r {
        tracing::warn!(%error, "outbox prune failed");
    }
    Ok(())
}

/// The outputs section of `status`: offset, pending, delivered and dead letters per output.
pub fn print_status(
    rows: &serde_json::Value,
    only: Option<&str>,
    out: &mut dyn Write,
) -> Result<(), anyhow::Error> {
    let rows: Vec<&serde_json::Value> = rows
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| only.is_none_or(|o| r["source"] == o))
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "\n{:<12} {:<20} {:>10} {:>10} {:>12} last error",
        "source", "output", "pending", "delivered", "dead letters"
    )?;
    for r in rows {
        writeln!(
            out,
            "{:<12} {:<20} {:>10} {:>10} {:>12} {}",
            r["source"].as_str().unwrap_or("-"),
            r["output"].as_str().unwrap_or("-"),
            r["pending"].as_i64().unwrap_or(0),
            r["delivered"].as_i64().unwrap_or(0),
            format!(
                "{} ({} total)",
                r["dead_letters"].as_i64().unwrap_or(0),
                r["dead_letters_total"].as_i64().unwrap_or(0)
            ),
            r["last_error"].as_str().unwrap_or("-")
        )?;
    }
    Ok(())
}
