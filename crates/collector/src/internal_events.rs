//! The collector's internal events, in the style of Vector's `internal_events` (the client's
//! own are in `kandji_api::events`): each is a struct, and its `emit()` writes the log line and
//! the metric in one place. INFO is what an operator needs (runs finished, failures, guards
//! that fired); start-up detail goes to DEBUG.
//!
//! Architecture Invariant: this module knows nothing of the rest of the crate; every other
//! module may use it.

pub use kandji_api::events::{InternalEvent, emit};

/// What an event carries of an error: its text (and a `Debug` form for the event's own).
pub trait ErrorText: std::fmt::Display + std::fmt::Debug + Sync {}
impl<T: std::fmt::Display + std::fmt::Debug + Sync> ErrorText for T {}

/// A stream's run ended: collected, or collected in part (`missing` says what was not).
#[derive(Debug)]
pub struct StreamRunFinished<'a> {
    pub source: &'a str,
    pub stream: &'static str,
    pub pages: u64,
    pub records: u64,
    pub requests: u64,
    pub missing: Option<String>,
}

impl InternalEvent for StreamRunFinished<'_> {
    fn emit(self) {
        match &self.missing {
            None => tracing::info!(source = %self.source, stream = self.stream,
                pages = self.pages, records = self.records, requests = self.requests,
                "stream run finished"),
            Some(m) => tracing::warn!(source = %self.source, stream = self.stream,
                pages = self.pages, records = self.records, requests = self.requests,
                missing = %m, "stream run finished, degraded"),
        }
        let labels = [
            ("source", self.source.to_string()),
            ("stream", self.stream.to_string()),
        ];
        metrics::counter!("kandji_stream_runs_total", &labels).increment(1);
        metrics::counter!("kandji_stream_requests_total", &labels).increment(self.requests);
        if self.missing.is_some() {
            metrics::counter!("kandji_stream_degraded_runs_total", &labels).increment(1);
        }
    }
}

/// A stream's run failed.
#[derive(Debug)]
pub struct StreamRunFailed<'a> {
    pub source: &'a str,
    pub stream: &'static str,
    pub kind: &'static str,
    pub error: &'a dyn ErrorText,
}

impl InternalEvent for StreamRunFailed<'_> {
    fn emit(self) {
        tracing::warn!(source = %self.source, stream = self.stream, kind = self.kind,
            error = %self.error, "stream run failed");
        metrics::counter!("kandji_errors_total", "source" => self.source.to_string(),
            "stream" => self.stream, "type" => self.kind)
        .increment(1);
    }
}

/// The API refused a walk's cursor and the walk restarts.
#[derive(Debug)]
pub struct CursorRestarted<'a> {
    pub source: &'a str,
    pub stream: &'static str,
    pub restart: u32,
    pub max: u32,
    pub error: &'a dyn ErrorText,
}

impl InternalEvent for CursorRestarted<'_> {
    fn emit(self) {
        tracing::warn!(source = %self.source, stream = self.stream, restart = self.restart,
            max = self.max, error = %self.error, "cursor refused (expired?); restarting the walk");
        metrics::counter!("kandji_cursor_restarts_total", "source" => self.source.to_string(),
            "stream" => self.stream)
        .increment(1);
    }
}

/// A record dated in the future was stored, flagged, and kept out of the high-water mark.
#[derive(Debug)]
pub struct FutureDatedRecord<'a> {
    pub source: &'a str,
    pub stream: &'static str,
    pub uid: &'a str,
    pub occurred_at: &'a str,
}

impl InternalEvent for FutureDatedRecord<'_> {
    fn emit(self) {
        tracing::warn!(source = %self.source, stream = self.stream, uid = %self.uid,
            occurred_at = %self.occurred_at,
            "record dated in the future: stored, flagged, not used as the high-water mark");
        metrics::counter!("kandji_future_dated_total", "source" => self.source.to_string(),
            "stream" => self.stream)
        .increment(1);
    }
}

/// A high-water mark found in the future (set before the cap existed) was brought back.
#[derive(Debug)]
pub struct HighWaterMarkReset<'a> {
    pub source: &'a str,
    pub stream: &'static str,
    pub hwm: &'a str,
    pub reset_to: Option<String>,
}

impl InternalEvent for HighWaterMarkReset<'_> {
    fn emit(self) {
        tracing::warn!(source = %self.source, stream = self.stream, hwm = %self.hwm,
            reset_to = ?self.reset_to,
            "high-water mark in the future; resetting it to the newest stored event");
        metrics::counter!("kandji_hwm_resets_total", "source" => self.source.to_string(),
            "stream" => self.stream)
        .increment(1);
    }
}

/// A checkpoint that does not parse as its driver's type was reset (the stream starts over,
/// its uids dedup what it reads again).
#[derive(Debug)]
pub struct CheckpointReset<'a> {
    pub source: &'a str,
    pub stream: &'static str,
    pub key: &'a str,
    pub reason: &'a dyn ErrorText,
}

impl InternalEvent for CheckpointReset<'_> {
    fn emit(self) {
        tracing::warn!(source = %self.source, stream = self.stream, key = self.key,
            reason = %self.reason, "checkpoint unreadable; starting this stream over");
        metrics::counter!("kandji_checkpoint_resets_total", "source" => self.source.to_string(),
            "stream" => self.stream)
        .increment(1);
    }
}
