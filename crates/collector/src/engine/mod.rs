//! The collection engine: runs the streams of each source on schedule. It records every
//! run's status, orders a cycle by the streams' declarations, fails a source's remaining
//! streams together after a source-wide error, and checks a source's plan before it starts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::internal_events::{StreamRunFailed, StreamRunFinished, emit};
use crate::store::{Store, StoreError, now_ms};
pub use crate::streams::error as status;
pub mod replicas;
pub mod supervisor;
pub mod view;
pub use crate::streams::runtime::{
    CursorRestarts, FUTURE_SKEW_MS, MAX_CURSOR_RESTARTS, OnCommit, RunReport, Scope, SourceRuntime,
    State, StreamError,
};
use crate::streams::{self, Stage, StreamName};
pub use supervisor::{Broken, Catalog, CatalogEntry, ConfigCatalog, SourceCatalog, Supervisor};
pub use view::{status_json, status_rows};

impl SourceRuntime {
    /// The planner's verdict for this source: sizes the fleet from `/settings/licensing` (one
    /// request) and estimates the schedules' spend. A configuration that would overspend its
    /// share is refused, with the numbers; one close to it is logged as a warning.
    pub async fn preflight(&self) -> Result<crate::planner::Plan, StreamError> {
        let licensing = self.client.licensing().await?;
        let plan = crate::planner::plan(
            crate::planner::fleet_size(&licensing),
            &self.source.streams,
            &self.source.intervals,
            self.source.hourly_limit,
            self.source.budget_share,
            &crate::planner::Assumptions::default(),
        );
        match &plan.verdict {
            crate::planner::Verdict::Ok => {
                tracing::info!(source = %self.name(), requests_per_hour = plan.total_per_hour as u64,
                    share = plan.share_per_hour as u64, "plan fits the budget share");
            }
            crate::planner::Verdict::Warn(m) => {
                tracing::warn!(source = %self.name(), "{m}");
            }
            crate::planner::Verdict::Refuse(m) => {
                return Err(StreamError::PlanRefused(m.clone()));
            }
        }
        Ok(plan)
    }

    /// Runs one stream once, recording its status before and after.
    pub async fn run_stream(&self, stream: StreamName) -> Result<RunReport, StreamError> {
        let source = self.name().to_string();
        // A bulk run waits for one of the process's permits (a few exports at a time).
        let _permit = if stream.spec().priority == kandji_api::Priority::Bulk {
            tokio::select! {
                p = self.bulk.clone().acquire_owned() => p.ok(),
                () = self.stopped() => return Err(StreamError::Shutdown),
            }
        } else {
            None
        };
        set_state(&self.store, &source, stream, State::Syncing).await?;
        let started = self.host_now();
        // This stream's requests, though other streams spend from the same budget meanwhile.
        let (result, requests) = kandji_api::client::tally(async {
            // The dimensions are what filters resolve against: they are never filtered.
            let scope = match stream.spec().stage {
                Stage::Dimension => Ok(Scope::default()),
                _ => Scope::resolve(self).await,
            };
            let work = async {
                match scope {
                    Ok(scope) => streams::run(self, &scope, stream).await,
                    Err(e) => Err(e),
                }
            };
            // Shutdown interrupts every wait (budget, retry sleeps, export polls, requests in
            // flight) by dropping the run. A page commit is never cut in half: once handed
            // to the writer it commits whole (with its checkpoint), or it was never sent.
            tokio::select! {
                r = work => r,
                () = self.stopped() => Err(StreamError::Shutdown),
            }
        })
        .await;
        let next = started
            + self
                .source
                .intervals
                .get(&stream)
                .map_or(0, |d| d.as_millis() as i64);
        match &result {
            Ok(report) => {
                emit(StreamRunFinished {
                    source: &source,
                    stream: stream.as_str(),
                    pages: report.pages,
                    records: report.records,
                    requests,
                    missing: (!report.degraded.is_empty()).then(|| report.missing()),
                });
                record_success(&self.store, &source, stream, report, requests, next).await?;
            }
            Err(StreamError::Shutdown) => {
                set_state(&self.store, &source, stream, State::Pending).await?;
            }
            Err(error) => {
                emit(StreamRunFailed {
                    source: &source,
                    stream: stream.as_str(),
                    kind: error.kind(),
                    error,
                });
                record_failure(&self.store, &source, stream, error, next).await?;
            }
        }
        if requests > 0
            && let Err(error) = self.record_budget_sample().await
        {
            tracing::warn!(source = %source, %error, "recording the budget sample failed");
        }
        result.map(|mut r| {
            r.requests = requests;
            r
        })
    }

    /// Counts what this source already spent this hour, as the store recorded it (a previous
    /// run of this process, or the replica that held the source before): a restart or a
    /// handover never spends the hour's share twice. The rate-limit headers of the next
    /// response then say what the tenant has left.
    pub async fn resume_budget(&self) {
        let hour = now_ms().div_euclid(3_600_000) * 3_600_000;
        match self.store.budget_series(self.name(), hour).await {
            Ok(rows) => {
                if let Some((_, spent, _, _)) = rows.iter().find(|r| r.0 == hour)
                    && *spent > 0
                {
                    let spent = u32::try_from(*spent).unwrap_or(u32::MAX);
                    self.budget.preload_spent(spent);
                    tracing::info!(source = %self.name(), spent, "this hour's spend so far, from the store");
                }
            }
            Err(error) => {
                tracing::warn!(source = %self.name(), %error, "cannot read this hour's spend; counting from zero")
            }
        }
    }

    /// Records this hour's budget use into `budget_samples` (the console's 24 h chart): the
    /// requests spent, the tenant's hourly limit and this source's share.
    pub async fn record_budget_sample(&self) -> Result<(), StoreError> {
        let b = self.budget.state();
        let hour = now_ms().div_euclid(3_600_000) * 3_600_000;
        self.store
            .record_budget_sample(
                self.name(),
                hour,
                u64::from(b.spent_this_hour),
                u64::from(b.limit),
                u64::from(b.share_limit),
            )
            .await?;
        if let Some(others) = b.others_this_hour {
            self.store
                .record_others_sample(self.name(), hour, u64::from(others))
                .await?;
        }
        Ok(())
    }
}

async fn set_state(
    store: &Store,
    source: &str,
    stream: StreamName,
    state: State,
) -> Result<(), StoreError> {
    store
        .set_stream_state(source, stream.as_str(), state.as_str())
        .await
}

async fn record_success(
    store: &Store,
    source: &str,
    stream: StreamName,
    report: &RunReport,
    requests: u64,
    next: i64,
) -> Result<(), StoreError> {
    store
        .record_stream_run(
            source,
            stream.as_str(),
            crate::store::StreamOutcome::Success {
                records: report.records as i64,
                requests: requests as i64,
                next_run_at: next,
                degraded: report.degraded.first().map(|first| crate::store::Missing {
                    kind: first.kind,
                    message: report.missing(),
                    endpoint: first.endpoint.clone(),
                }),
            },
        )
        .await
}

async fn record_failure(
    store: &Store,
    source: &str,
    stream: StreamName,
    error: &StreamError,
    next: i64,
) -> Result<(), StoreError> {
    store
        .record_stream_run(
            source,
            stream.as_str(),
            crate::store::StreamOutcome::Failure {
                state: error.state().as_str(),
                kind: error.kind(),
                message: error.to_string(),
                endpoint: error.endpoint(),
                next_run_at: next,
            },
        )
        .await
}

/// The order one cycle runs streams in (each stream's `rank`): dimensions first (filters
/// resolve against them), then the device list (the scope events are filtered by), then
/// events, then the rest of the inventory. Security and audit also lead the budget's priority
/// order.
pub fn cycle_order() -> Vec<StreamName> {
    StreamName::by_rank()
}

/// The phase of a cycle a stream runs in (see [`sync_once`]).
fn phase(stream: StreamName, filtered: bool) -> u8 {
    let spec = stream.spec();
    match spec.stage {
        Stage::Dimension => 0,
        Stage::DeviceList if filtered => 0,
        _ if spec.needs.is_some() => 2,
        _ => 1,
    }
}

/// The result of one stream's run in a cycle.
#[derive(Debug)]
pub struct StreamResult {
    pub source: String,
    pub stream: StreamName,
    pub result: Result<RunReport, StreamError>,
}

/// Runs one cycle of the chosen streams of one source; results come in [`cycle_order`].
///
/// Three phases: the dimensions (filters resolve against them) and, when filters are set,
/// the device list (events and inventory are scoped to it), one after another; then every
/// other stream at once (the budget orders their requests: security and audit first; the
/// Prism exports are prepared side by side); then the streams that read what others collect
/// (compliance reads the device list and the refresh queue the others fill). A revoked token stops the cycle at the first phase that meets it.
pub async fn sync_once(rt: &SourceRuntime, only: &[StreamName]) -> Vec<StreamResult> {
    let wanted =
        |s: &StreamName| rt.source.streams.contains(s) && (only.is_empty() || only.contains(s));
    let f = &rt.source.filters;
    let filtered = !(f.blueprints.is_empty() && f.tags.is_empty() && f.device_types.is_empty());
    let order = cycle_order();
    let mut results: BTreeMap<StreamName, Result<RunReport, StreamError>> = BTreeMap::new();
    // A revoked token or a host that cannot be reached fails every stream alike.
    let mut auth_failed: Option<SourceWide> = None;
    for p in 0..3 {
        let streams: Vec<StreamName> = order
            .iter()
            .copied()
            .filter(|s| wanted(s) && phase(*s, filtered) == p)
            .collect();
        if rt.stopping() {
            break;
        }
        let mut ran = Vec::new();
        if p == 0 {
            for s in streams {
                let r = rt.run_stream(s).await;
                let fatal = source_wide(&r).is_some();
                ran.push((s, r));
                if fatal || rt.stopping() {
                    break;
                }
            }
        } else {
            let runs = streams
                .iter()
                .map(|s| async move { (*s, rt.run_stream(*s).await) });
            ran = futures::future::join_all(runs).await;
        }
        for (s, r) in ran {
            if auth_failed.is_none() {
                auth_failed = source_wide(&r);
            }
            results.insert(s, r);
        }
        if auth_failed.is_some() {
            break;
        }
    }
    if let Some(first) = auth_failed {
        // Say so once per remaining stream, without spending a request on it.
        let rest: Vec<StreamName> = order
            .iter()
            .copied()
            .filter(|s| wanted(s) && !results.contains_key(s))
            .collect();
        for s in &rest {
            let err = first.again();
            let _ = record_failure(&rt.store, rt.name(), *s, &err, now_ms()).await;
            results.insert(*s, Err(err));
        }
    }
    order
        .iter()
        .filter_map(|s| {
            results.remove(s).map(|result| StreamResult {
                source: rt.name().to_string(),
                stream: *s,
                result,
            })
        })
        .collect()
}

/// An error that fails the whole source, not just this stream: a revoked token (401) or a
/// host that cannot be reached. The source's other streams skip the cycle with it.
fn source_wide(r: &Result<RunReport, StreamError>) -> Option<SourceWide> {
    match r {
        Err(StreamError::Api(kandji_api::KandjiError::Unauthorized { .. })) => {
            Some(SourceWide::Unauthorized)
        }
        Err(StreamError::Api(kandji_api::KandjiError::Unreachable { host, message, .. })) => {
            Some(SourceWide::Unreachable {
                host: host.clone(),
                message: message.clone(),
            })
        }
        _ => None,
    }
}

/// See [`source_wide`].
enum SourceWide {
    Unauthorized,
    Unreachable { host: String, message: String },
}

impl SourceWide {
    /// The same failure, for a stream that did not run because of it.
    fn again(&self) -> StreamError {
        let endpoint = "GET /api/v1/*".to_string();
        StreamError::Api(match self {
            SourceWide::Unauthorized => kandji_api::KandjiError::Unauthorized { endpoint },
            SourceWide::Unreachable { host, message } => kandji_api::KandjiError::Unreachable {
                endpoint,
                host: host.clone(),
                message: message.clone(),
            },
        })
    }
}

/// The daemon without a console: the [`Supervisor`] over the config file's sources, until
/// `shutdown` is cancelled.
pub async fn run_config_sources(
    store: Store,
    sources: Vec<crate::streams::source::Source>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    run_config_sources_alerting(store, sources, None, shutdown).await;
}

/// [`run_config_sources`], posting health changes to an alert webhook.
pub async fn run_config_sources_alerting(
    store: Store,
    sources: Vec<crate::streams::source::Source>,
    alerts: Option<crate::health::AlertWebhook>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let sup = Arc::new(Supervisor::new(store, Arc::new(ConfigCatalog(sources))));
    sup.set_alerts(alerts);
    replicas::run(sup, shutdown).await;
}

/// One source on schedule until its runtime's token is cancelled: the planner's preflight (a schedule that would
/// overspend the share does not start, and every stream's status says why), the dimensions
/// once so filters resolve, then one [`stream_loop`] per stream. `notifies` wake a stream
/// early ("sync now"). The console's supervisor runs this too.
pub async fn source_loop(rt: Arc<SourceRuntime>, notifies: BTreeMap<StreamName, Arc<Notify>>) {
    rt.resume_budget().await;
    let preflight = tokio::select! {
        r = rt.preflight() => r,
        () = rt.stopped() => return,
    };
    if let Err(e) = preflight
        && matches!(e, StreamError::PlanRefused(_))
    {
        tracing::error!(source = %rt.name(), error = %e, "source not started");
        for s in &rt.source.streams {
            let _ = set_state(&rt.store, rt.name(), *s, State::Failing).await;
            let _ = record_failure(&rt.store, rt.name(), *s, &e, rt.host_now()).await;
        }
        return;
    }
    for s in cycle_order()
        .into_iter()
        .filter(|s| s.spec().stage == Stage::Dimension)
    {
        if rt.source.streams.contains(&s) && !rt.stopping() {
            let _ = rt.run_stream(s).await;
        }
    }
    let last = last_successes(&rt).await.unwrap_or_default();
    // A stream that reads what another collects (compliance reads the device list) waits,
    // in a source's first cycle, until that one has run once.
    let mut first_runs: BTreeMap<StreamName, watch::Sender<bool>> = BTreeMap::new();
    let mut waits: BTreeMap<StreamName, watch::Receiver<bool>> = BTreeMap::new();
    for stream in notifies.keys() {
        if let Some(d) =
            depends_on(*stream).filter(|d| notifies.contains_key(d) && !last.contains_key(d))
        {
            let tx = first_runs
                .entry(d)
                .or_insert_with(|| watch::channel(false).0);
            waits.insert(*stream, tx.subscribe());
        }
    }
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(health_loop(rt.clone()));
    for (stream, notify) in notifies {
        let last_success = last.get(&stream).copied();
        tasks.spawn(stream_loop(
            rt.clone(),
            stream,
            notify,
            last_success,
            waits.remove(&stream),
            first_runs.remove(&stream),
        ));
    }
    while tasks.join_next().await.is_some() {}
}

/// How often a source's health is looked at besides after each run (the budget's pace and
/// the token's age change between runs).
pub const HEALTH_EVERY: Duration = Duration::from_secs(60);

async fn health_loop(rt: Arc<SourceRuntime>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(HEALTH_EVERY) => {}
            () = rt.stopped() => return,
        }
        rt.check_health().await;
    }
}

impl SourceRuntime {
    /// The token's history from the audit feed, when the source names its token.
    pub async fn token_history(&self) -> Result<Option<crate::hygiene::TokenHistory>, StoreError> {
        let Some(name) = &self.source.hygiene.token_name else {
            return Ok(None);
        };
        let types = crate::hygiene::TOKEN_EVENT_TYPES
            .iter()
            .chain(crate::hygiene::ADMIN_REMOVAL_TYPES.iter())
            .map(|s| s.to_string())
            .collect();
        let events = self
            .store
            .events_of_types(self.name(), crate::streams::audit_events::SPEC.name, types)
            .await?;
        Ok(crate::hygiene::token_history(
            &events,
            name,
            &streams::permissions(&self.source.streams),
            self.host_now(),
            self.source.hygiene.rotate_after,
        ))
    }

    /// The privileges the last review found granted (`"FileVault recovery keys"`).
    pub async fn unneeded_privileges(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .store
            .source_fact(self.name(), crate::check::PRIVILEGE_REVIEW)
            .await?
            .and_then(|(v, _)| serde_json::from_str::<crate::check::StoredReview>(&v).ok())
            .map(|r| r.granted())
            .unwrap_or_default())
    }

    /// Looks at the source's health and records (and posts) what changed: see
    /// [`crate::health`]. Problems are logged, never raised: health must not stop collection.
    pub async fn check_health(&self) {
        // A runtime that is stopping (disabled, edited, handed over) records nothing more: its
        // successor reads the last records back.
        if self.stopping() {
            return;
        }
        tokio::select! {
            r = self.evaluate_health() => {
                if let Err(error) = r {
                    tracing::warn!(source = %self.name(), %error, "recording the source's health failed");
                }
            }
            () = self.stopped() => {}
        }
    }

    /// [`SourceRuntime::check_health`], returning the changes recorded.
    pub async fn evaluate_health(&self) -> Result<Vec<crate::health::Change>, StoreError> {
        let rows = self.store.stream_status(Some(self.name())).await?;
        let token = match self.token_history().await {
            Ok(t) => t,
            Err(error) => {
                tracing::warn!(source = %self.name(), %error, "cannot read the token's history");
                None
            }
        };
        let store_problem = if !self.store.writer_alive() {
            Some(
                "the store's writer stopped: nothing is stored until the collector restarts"
                    .to_string(),
            )
        } else {
            rows.iter()
                .find(|r| {
                    r.state == "failing"
                        && r.last_error_kind
                            .as_deref()
                            .is_some_and(|k| k.starts_with("store") && k != "store_fenced")
                })
                .map(|r| {
                    r.last_error_message
                        .clone()
                        .unwrap_or_else(|| "the store failed".into())
                })
        };
        let inputs = crate::health::Inputs {
            rows: &rows,
            exhaustion_in: self.budget.state().exhaustion_in,
            token: token
                .iter()
                .flat_map(|t| t.warnings.iter().map(|w| (w.state(), w.message())))
                .collect(),
            unneeded_privileges: self.unneeded_privileges().await.unwrap_or_default(),
            store_problem,
        };
        let http = self.alerts.as_ref().map(|_| alert_client());
        let hook = self.alerts.as_ref().zip(http.as_ref());
        let mut memory = self.health.lock().await;
        crate::health::evaluate(
            &self.store,
            self.name(),
            &mut memory,
            &inputs,
            hook,
            crate::store::now_ms(),
        )
        .await
    }
}

/// The alert webhook's HTTP client (rustls, a 10 s timeout), made once.
fn alert_client() -> reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default()
        })
        .clone()
}

/// The stream whose first run another must wait for in a source's first cycle: the one that
/// fills the table it reads.
pub fn depends_on(stream: StreamName) -> Option<StreamName> {
    stream.spec().needs.and_then(streams::filling)
}

/// One stream on its interval until its runtime's token is cancelled. A restart does not re-run what ran recently (it
/// waits out the interval from the last success); a failure backs off from 60 s, doubling, to
/// at most the interval; `notify` runs it now.
pub async fn stream_loop(
    rt: Arc<SourceRuntime>,
    stream: StreamName,
    notify: Arc<Notify>,
    last_success: Option<i64>,
    mut after: Option<watch::Receiver<bool>>,
    first_run: Option<watch::Sender<bool>>,
) {
    let interval = rt
        .source
        .intervals
        .get(&stream)
        .copied()
        .unwrap_or_else(|| stream.default_interval());
    let first = next_due(last_success, interval, rt.host_now()) - rt.host_now();
    if first > 0 {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(first as u64)) => {}
            _ = notify.notified() => {}
            () = rt.stopped() => {}
        }
    }
    if let Some(rx) = after.as_mut() {
        // The stream this one reads from has not run yet: its first run goes first.
        tokio::select! {
            _ = rx.wait_for(|done| *done) => {}
            () = rt.stopped() => {}
        }
    }
    let mut failures = 0u32;
    let mut first_run = first_run;
    loop {
        if rt.stopping() {
            break;
        }
        let result = rt.run_stream(stream).await;
        if let Some(tx) = first_run.take() {
            let _ = tx.send(true);
        }
        rt.check_health().await;
        let wait = match result {
            Ok(_) => {
                failures = 0;
                interval
            }
            Err(StreamError::Shutdown) => break,
            Err(_) => {
                failures = failures.saturating_add(1);
                Duration::from_secs(30u64.saturating_mul(1 << failures.min(8))).min(interval)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = notify.notified() => {}
            () = rt.stopped() => {}
        }
    }
}

/// When a stream is next due (ms), given its last success and interval: now if it never ran.
pub fn next_due(last_success: Option<i64>, interval: Duration, now: i64) -> i64 {
    match last_success {
        Some(t) => t + interval.as_millis() as i64,
        None => now,
    }
}

/// Each stream's last success, from the store — left out when the stream's last run failed,
/// so a restart (e.g. after a token rotation) retries it at once.
async fn last_successes(rt: &SourceRuntime) -> Result<BTreeMap<StreamName, i64>, StoreError> {
    Ok(rt
        .store
        .last_successes(rt.name())
        .await?
        .into_iter()
        .filter_map(|(s, t)| StreamName::parse(&s).map(|s| (s, t)))
        .collect())
}
