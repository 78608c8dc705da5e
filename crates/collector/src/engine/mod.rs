//! The collection engine: one runtime per source (client, shared budget, resolved filters),
//! the per-stream runner that records status, and the scheduler.

pub mod fetch;
pub mod scope;
pub mod status;
pub mod sweep;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kandji_api::{Budget, BudgetConfig, ClientConfig, KandjiClient};
use tokio::sync::{Notify, watch};

use crate::config::Source;
use crate::store::{Store, StoreError, now_ms};
use crate::streams::{self, StreamName};
pub use scope::Scope;
pub use status::{State, StreamError};

/// A walk whose cursor the API refuses restarts at most this many times per run.
pub const MAX_CURSOR_RESTARTS: u32 = 3;

/// A record dated more than this ahead of now is future-dated (a device's clock, a bad
/// value): stored and flagged, but it never moves a high-water mark.
pub const FUTURE_SKEW_MS: i64 = 5 * 60 * 1000;

/// Counts the restarts of one run's walk after the API refused its cursor.
#[derive(Debug, Default)]
pub struct CursorRestarts {
    n: u32,
}

impl CursorRestarts {
    /// One more restart after `error`; past [`MAX_CURSOR_RESTARTS`], the stream fails with
    /// [`StreamError::CursorExpiring`].
    pub fn restart(
        &mut self,
        rt: &SourceRuntime,
        stream: StreamName,
        error: &kandji_api::KandjiError,
    ) -> Result<(), StreamError> {
        self.n += 1;
        let endpoint = error.endpoint().unwrap_or("GET /api/v1/*").to_string();
        if self.n > MAX_CURSOR_RESTARTS {
            return Err(StreamError::CursorExpiring {
                endpoint,
                restarts: self.n,
                message: error.to_string(),
            });
        }
        tracing::warn!(source = %rt.name(), stream = %stream, restart = self.n,
            max = MAX_CURSOR_RESTARTS, error = %error, "cursor refused (expired?); restarting the walk");
        metrics::counter!("kandji_cursor_restarts_total", "source" => rt.name().to_string(),
            "stream" => stream.as_str())
        .increment(1);
        Ok(())
    }
}

/// A hook called with the stream name and outcome of every committed page.
pub type OnCommit = Arc<dyn Fn(&str, &crate::store::BatchOutcome) + Send + Sync>;

/// What one run of a stream did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunReport {
    pub pages: u64,
    pub records: u64,
    pub requests: u64,
    /// What the run could not collect, and why (the stream is then `degraded`).
    pub degraded: Vec<crate::store::Missing>,
}

impl RunReport {
    /// What the run could not collect, in one line.
    pub fn missing(&self) -> String {
        self.degraded
            .iter()
            .map(|m| m.message.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// One source's runtime: its client and budget, shared by all its streams.
pub struct SourceRuntime {
    pub source: Source,
    pub client: KandjiClient,
    pub budget: Arc<Budget>,
    pub store: Store,
    pub shutdown: watch::Receiver<bool>,
    /// The first wait between Prism export polls (it grows x1.5, to 30 s).
    pub export_poll: Duration,
    /// The engine's clock (ms since the epoch). Wall time in production; tests follow the
    /// simulated tenant's clock with it.
    pub clock: Arc<dyn Fn() -> i64 + Send + Sync>,
    /// Told about every committed page (progress bars, metrics).
    pub on_commit: Option<OnCommit>,
    /// Whether `now` follows the tenant's clock (the `Date` header). Off only where `clock`
    /// is already the tenant's (tests that read the simulator's clock directly).
    pub follow_server_clock: bool,
}

impl SourceRuntime {
    pub fn new(
        source: Source,
        store: Store,
        shutdown: watch::Receiver<bool>,
    ) -> Result<SourceRuntime, kandji_api::KandjiError> {
        let budget = Arc::new(Budget::new(BudgetConfig {
            hourly_limit: source.hourly_limit,
            share: source.budget_share,
            per_second: source.per_second,
            ..BudgetConfig::default()
        }));
        let client = KandjiClient::new(ClientConfig::new(
            source.base.clone(),
            source.token.clone(),
            budget.clone(),
        ))?;
        Ok(SourceRuntime {
            source,
            client,
            budget,
            store,
            shutdown,
            // Small exports are ready in well under a second; the wait grows x1.5 (to 30 s)
            // for big ones, a few extra polls per export every six hours.
            export_poll: Duration::from_millis(200),
            clock: Arc::new(now_ms),
            on_commit: None,
            follow_server_clock: true,
        })
    }

    pub fn name(&self) -> &str {
        &self.source.name
    }

    /// This host's clock (ms): what schedules, next runs and status times use (they are
    /// compared with the store's own timestamps and the operator's clock).
    pub fn host_now(&self) -> i64 {
        (self.clock)()
    }

    /// Now for data, on the tenant's clock: the tenant's (this host's clock plus the offset the last
    /// `Date` header showed; offsets under 2 s are the header's resolution, not skew), unless
    /// `follow_server_clock` is off.
    pub fn now(&self) -> i64 {
        let local = (self.clock)();
        match self.client.server_clock_offset_ms() {
            Some(o) if self.follow_server_clock && o.abs() >= 2_000 => local + o,
            _ => local,
        }
    }

    /// The planner's verdict for this source: sizes the fleet from `/settings/licensing` (one
    /// request) and estimates the schedules' spend. A configuration that would overspend its
    /// share is refused, with the numbers; one close to it is logged as a warning.
    pub async fn preflight(&self) -> Result<crate::planner::Plan, StreamError> {
        let licensing = self.client.licensing().await?;
        let plan = crate::planner::plan(
            crate::check::fleet_size(&licensing),
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

    /// Commits one page (its rows, events and checkpoint in one transaction) and reports it.
    pub async fn commit(
        &self,
        batch: crate::store::Batch,
    ) -> Result<crate::store::BatchOutcome, StoreError> {
        let stream = batch.stream.clone();
        let out = self.store.commit_page(batch).await?;
        if let Some(f) = &self.on_commit {
            f(&stream, &out);
        }
        Ok(out)
    }

    /// An empty batch for `stream`, stamped now.
    pub fn batch(&self, stream: StreamName) -> crate::store::Batch {
        let mut b =
            crate::store::Batch::new(self.name(), stream.as_str(), self.now(), stream.category());
        b.collected_at = self.host_now();
        b
    }

    /// The latest time a high-water mark may take now: the engine's now plus
    /// [`FUTURE_SKEW_MS`].
    pub fn hwm_cap(&self) -> i64 {
        self.now() + FUTURE_SKEW_MS
    }

    /// Flags an event dated past [`Self::hwm_cap`]: its summary says so, it is counted and
    /// logged, and the caller keeps it out of its high-water mark. Returns whether it was.
    pub fn flag_if_future(&self, stream: StreamName, ev: &mut crate::store::EventRow) -> bool {
        if ev.occurred_at <= self.hwm_cap() {
            return false;
        }
        let at = fetch::rfc3339(ev.occurred_at);
        tracing::warn!(source = %self.name(), stream = %stream, uid = %ev.uid, occurred_at = %at,
            "record dated in the future: stored, flagged, not used as the high-water mark");
        metrics::counter!("kandji_future_dated_total", "source" => self.name().to_string(),
            "stream" => stream.as_str())
        .increment(1);
        ev.summary = format!("[future-dated {at}] {}", ev.summary);
        true
    }

    /// A high-water mark read from a checkpoint, brought back if a future-dated record had
    /// moved it past now (before the cap existed): to the newest stored event that is not in
    /// the future, or none (a full re-read, deduplicated by uid).
    pub async fn sane_hwm(
        &self,
        stream: StreamName,
        hwm: Option<i64>,
    ) -> Result<Option<i64>, StreamError> {
        let cap = self.hwm_cap();
        match hwm {
            Some(h) if h > cap => {
                let back = self
                    .store
                    .latest_event_at(self.name(), stream.as_str(), cap)
                    .await?;
                tracing::warn!(source = %self.name(), stream = %stream, hwm = %fetch::rfc3339(h),
                    reset_to = ?back.map(fetch::rfc3339),
                    "high-water mark in the future; resetting it to the newest stored event");
                Ok(back)
            }
            other => Ok(other),
        }
    }

    /// Resolves once shutdown is asked for (at once if it already was).
    pub async fn stopped(&self) {
        let mut rx = self.shutdown.clone();
        if rx.wait_for(|stop| *stop).await.is_err() {
            // The sender is gone: nobody can ask for shutdown any more.
            std::future::pending::<()>().await;
        }
    }

    pub fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Runs one stream once, recording its status before and after.
    pub async fn run_stream(&self, stream: StreamName) -> Result<RunReport, StreamError> {
        let source = self.name().to_string();
        set_state(&self.store, &source, stream, State::Syncing).await?;
        let started = self.host_now();
        // This stream's requests, though other streams spend from the same budget meanwhile.
        let (result, requests) = kandji_api::client::tally(async {
            // Blueprints and tags are what filters resolve against: they are never filtered.
            let scope = match stream {
                StreamName::Blueprints | StreamName::Tags => Ok(Scope::default()),
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
                if report.degraded.is_empty() {
                    tracing::info!(source = %source, stream = %stream, pages = report.pages, records = report.records, requests, "stream run finished");
                } else {
                    tracing::warn!(source = %source, stream = %stream, pages = report.pages, records = report.records, requests,
                        missing = %report.missing(), "stream run finished, degraded");
                }
                record_success(&self.store, &source, stream, report, requests, next).await?;
            }
            Err(StreamError::Shutdown) => {
                set_state(&self.store, &source, stream, State::Pending).await?;
            }
            Err(error) => {
                tracing::warn!(source = %source, stream = %stream, kind = error.kind(), %error, "stream run failed");
                record_failure(&self.store, &source, stream, error, next).await?;
            }
        }
        let labels = [
            ("source", source.clone()),
            ("stream", stream.as_str().to_string()),
        ];
        match &result {
            Ok(_) => {
                metrics::counter!("kandji_stream_runs_total", &labels).increment(1);
                metrics::counter!("kandji_stream_requests_total", &labels).increment(requests);
            }
            Err(StreamError::Shutdown) => {}
            Err(e) => {
                metrics::counter!("kandji_errors_total", "source" => source.clone(),
                    "stream" => stream.as_str(), "type" => e.kind())
                .increment(1);
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
            .await
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

/// The order one cycle runs streams in: dimensions first (filters resolve against them), then
/// the device list (the scope events are filtered by), then events, then the rest of the
/// inventory. Security and audit also lead the budget's priority order.
pub const CYCLE_ORDER: [StreamName; 12] = [
    StreamName::Blueprints,
    StreamName::Tags,
    StreamName::Devices,
    StreamName::AuditEvents,
    StreamName::Threats,
    StreamName::BehavioralDetections,
    StreamName::VulnerabilityDetections,
    StreamName::Users,
    StreamName::AdeDevices,
    StreamName::DeviceDetails,
    StreamName::Apps,
    StreamName::Compliance,
];

/// The result of one stream's run in a cycle.
#[derive(Debug)]
pub struct StreamResult {
    pub source: String,
    pub stream: StreamName,
    pub result: Result<RunReport, StreamError>,
}

/// Runs one cycle of the chosen streams of one source; results come in [`CYCLE_ORDER`].
///
/// Three phases: the dimensions (filters resolve against them) and, when filters are set,
/// the device list (events and inventory are scoped to it), one after another; then every
/// other stream at once (the budget orders their requests: security and audit first; the
/// Prism exports are prepared side by side); then compliance, which reads the refresh queue
/// the others fill. A revoked token stops the cycle at the first phase that meets it.
pub async fn sync_once(rt: &SourceRuntime, only: &[StreamName]) -> Vec<StreamResult> {
    let wanted =
        |s: &StreamName| rt.source.streams.contains(s) && (only.is_empty() || only.contains(s));
    let f = &rt.source.filters;
    let filtered = !(f.blueprints.is_empty() && f.tags.is_empty() && f.device_types.is_empty());
    let phase = |s: StreamName| match s {
        StreamName::Blueprints | StreamName::Tags => 0,
        StreamName::Devices if filtered => 0,
        StreamName::Compliance => 2,
        _ => 1,
    };
    let mut results: BTreeMap<StreamName, Result<RunReport, StreamError>> = BTreeMap::new();
    // A revoked token or a host that cannot be reached fails every stream alike.
    let mut auth_failed: Option<SourceWide> = None;
    for p in 0..3 {
        let streams: Vec<StreamName> = CYCLE_ORDER
            .iter()
            .copied()
            .filter(|s| wanted(s) && phase(*s) == p)
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
        let rest: Vec<StreamName> = CYCLE_ORDER
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
    CYCLE_ORDER
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

/// The daemon without a console: every enabled source's [`source_loop`] until shutdown.
pub async fn run_forever(runtimes: Vec<Arc<SourceRuntime>>, mut shutdown: watch::Receiver<bool>) {
    let mut tasks = tokio::task::JoinSet::new();
    for rt in runtimes {
        if !rt.source.enabled {
            for s in &rt.source.streams {
                let _ = set_state(&rt.store, rt.name(), *s, State::Disabled).await;
            }
            continue;
        }
        let notifies = rt
            .source
            .streams
            .iter()
            .map(|s| (*s, Arc::new(Notify::new())))
            .collect();
        tasks.spawn(source_loop(rt, notifies, shutdown.clone()));
    }
    let _ = shutdown.changed().await;
    while tasks.join_next().await.is_some() {}
}

/// One source on schedule until `stop`: the planner's preflight (a schedule that would
/// overspend the share does not start, and every stream's status says why), the dimensions
/// once so filters resolve, then one [`stream_loop`] per stream. `notifies` wake a stream
/// early ("sync now"). The console's supervisor runs this too.
pub async fn source_loop(
    rt: Arc<SourceRuntime>,
    notifies: BTreeMap<StreamName, Arc<Notify>>,
    stop: watch::Receiver<bool>,
) {
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
    for s in [StreamName::Blueprints, StreamName::Tags] {
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
    for (stream, notify) in notifies {
        let last_success = last.get(&stream).copied();
        tasks.spawn(stream_loop(
            rt.clone(),
            stream,
            notify,
            last_success,
            stop.clone(),
            waits.remove(&stream),
            first_runs.remove(&stream),
        ));
    }
    while tasks.join_next().await.is_some() {}
}

/// The stream whose first run another must wait for in a source's first cycle.
pub fn depends_on(stream: StreamName) -> Option<StreamName> {
    match stream {
        StreamName::Compliance => Some(StreamName::Devices),
        _ => None,
    }
}

/// One stream on its interval until `stop`. A restart does not re-run what ran recently (it
/// waits out the interval from the last success); a failure backs off from 60 s, doubling, to
/// at most the interval; `notify` runs it now.
pub async fn stream_loop(
    rt: Arc<SourceRuntime>,
    stream: StreamName,
    notify: Arc<Notify>,
    last_success: Option<i64>,
    mut stop: watch::Receiver<bool>,
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
            _ = stop.changed() => {}
        }
    }
    if let Some(rx) = after.as_mut() {
        // The stream this one reads from has not run yet: its first run goes first.
        tokio::select! {
            _ = rx.wait_for(|done| *done) => {}
            _ = stop.changed() => {}
        }
    }
    let mut failures = 0u32;
    let mut first_run = first_run;
    loop {
        if *stop.borrow() {
            break;
        }
        let result = rt.run_stream(stream).await;
        if let Some(tx) = first_run.take() {
            let _ = tx.send(true);
        }
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
            _ = stop.changed() => {}
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
