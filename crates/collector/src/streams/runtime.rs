//! One source's runtime, shared by all its streams: the client and the budget, the store,
//! the stop signal and the clocks; and what a run reports.

use std::sync::Arc;
use std::time::Duration;

use kandji_api::{Budget, BudgetConfig, ClientConfig, KandjiClient};
use tokio_util::sync::CancellationToken;

use super::StreamName;
pub use super::error::{State, StreamError};
use super::fetch;
pub use super::scope::Scope;
use super::source::Source;
use crate::internal_events::{CursorRestarted, FutureDatedRecord, HighWaterMarkReset, emit};
use crate::store::{Store, StoreError, now_ms};

/// A walk whose cursor the API refuses restarts at most this many times per run.
pub const MAX_CURSOR_RESTARTS: u32 = 3;
/// How far back [`SourceRuntime::now`] holds its clock (see there).
pub const HELD_STEP_BACK_MS: i64 = 60_000;

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
        emit(CursorRestarted {
            source: rt.name(),
            stream: stream.as_str(),
            restart: self.n,
            max: MAX_CURSOR_RESTARTS,
            error,
        });
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
    /// Cancelled when the process (or this source alone) stops: a child of the process's
    /// token.
    pub shutdown: CancellationToken,
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
    /// The latest [`SourceRuntime::now`] returned, once anchored: data time does not run
    /// backwards by less than [`HELD_STEP_BACK_MS`].
    last_now: Arc<std::sync::Mutex<Option<i64>>>,
    /// Permits for bulk runs (Prism exports), shared by every source of the process: a
    /// replica with hundreds of tenants runs a few exports at a time, not hundreds (memory and
    /// the store's write rate stay bounded; the budget is per tenant either way).
    pub bulk: Arc<tokio::sync::Semaphore>,
    /// Where health changes are posted, if anywhere ([`crate::health`]).
    pub alerts: Option<crate::health::AlertWebhook>,
    /// The last recorded health of each subject (loaded from the store at first use); one
    /// evaluation at a time.
    pub health: Arc<tokio::sync::Mutex<Option<crate::health::Memory>>>,
}

/// The process's permits for bulk runs ([`SourceRuntime::bulk`]).
static BULK_PERMITS: std::sync::OnceLock<Arc<tokio::sync::Semaphore>> = std::sync::OnceLock::new();

/// Bulk runs at once in this process, when nothing set it ([`set_max_bulk_runs`]).
pub const DEFAULT_MAX_BULK_RUNS: usize = 4;

/// Sets how many bulk runs (Prism exports) the process's sources make at once; the first
/// call wins (`run` calls it with the config's `max_concurrent_exports`).
pub fn set_max_bulk_runs(n: usize) {
    let _ = BULK_PERMITS.set(Arc::new(tokio::sync::Semaphore::new(n.max(1))));
}

fn bulk_permits() -> Arc<tokio::sync::Semaphore> {
    BULK_PERMITS
        .get_or_init(|| Arc::new(tokio::sync::Semaphore::new(DEFAULT_MAX_BULK_RUNS)))
        .clone()
}

impl SourceRuntime {
    pub fn new(
        source: Source,
        store: Store,
        shutdown: CancellationToken,
    ) -> Result<SourceRuntime, kandji_api::KandjiError> {
        let budget = Arc::new(Budget::new(BudgetConfig {
            hourly_limit: source.hourly_limit,
            share: source.budget_share,
            per_second: source.per_second,
            reserve_for_others: source.hygiene.reserve_for_others,
            ..BudgetConfig::default()
        }));
        let mut cfg = ClientConfig::new(source.base.clone(), source.token.clone(), budget.clone());
        cfg.download_hosts
            .extend(source.export_download_hosts.iter().cloned());
        let client = KandjiClient::new(cfg)?;
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
            last_now: Arc::new(std::sync::Mutex::new(None)),
            bulk: bulk_permits(),
            alerts: None,
            health: Arc::new(tokio::sync::Mutex::new(None)),
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
    ///
    /// Held against small steps back: a reading up to [`HELD_STEP_BACK_MS`] behind the latest
    /// (the offset corrected by a `Date` header, the host's clock stepped back by NTP) is the
    /// latest, so a snapshot's rows are never stamped before the snapshot began. A larger step
    /// is a new clock (the tenant's, first seen) and is taken. Until the first `Date` header
    /// anchors the tenant's clock, readings are not held.
    pub fn now(&self) -> i64 {
        let local = (self.clock)();
        let offset = self.client.server_clock_offset_ms();
        let t = match offset {
            Some(o) if self.follow_server_clock && o.abs() >= 2_000 => local + o,
            _ => local,
        };
        if self.follow_server_clock && offset.is_none() {
            return t;
        }
        let mut last = self
            .last_now
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match *last {
            Some(prev) if t < prev && prev - t <= HELD_STEP_BACK_MS => prev,
            _ => {
                *last = Some(t);
                t
            }
        }
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
        emit(FutureDatedRecord {
            source: self.name(),
            stream: stream.as_str(),
            uid: &ev.uid,
            occurred_at: &at,
        });
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
                emit(HighWaterMarkReset {
                    source: self.name(),
                    stream: stream.as_str(),
                    hwm: &fetch::rfc3339(h),
                    reset_to: back.map(fetch::rfc3339),
                });
                Ok(back)
            }
            other => Ok(other),
        }
    }

    /// Resolves once shutdown is asked for (at once if it already was).
    pub async fn stopped(&self) {
        self.shutdown.cancelled().await;
    }

    pub fn stopping(&self) -> bool {
        self.shutdown.is_cancelled()
    }
}
