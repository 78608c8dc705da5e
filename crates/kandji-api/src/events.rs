//! The client's internal events, in the style of Vector's `internal_events`: each is a
//! struct, and its [`InternalEvent::emit`] writes the log line and the metric in one place,
//! so what the logs say and what the metrics count cannot drift apart.

use std::time::Duration;

use crate::budget::Priority;

/// An event that logs and counts itself.
pub trait InternalEvent {
    /// Writes the log line and updates the metrics.
    fn emit(self);
}

/// Emits `event` (see [`InternalEvent`]).
pub fn emit(event: impl InternalEvent) {
    event.emit();
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A request failed in a way worth another try, and waits before it.
#[derive(Debug)]
pub struct RequestRetried<'a> {
    /// `"GET /api/v1/…"`.
    pub endpoint: &'a str,
    /// This try's number (1-based).
    pub attempt: u32,
    /// The error's kind (`rate_limited`, `server`, `unreachable`, …).
    pub kind: &'static str,
    /// The wait before the next try.
    pub wait: Duration,
    /// Whether the wait is the server's (`Retry-After`, `X-RateLimit-Reset`).
    pub server_hint: bool,
}

impl InternalEvent for RequestRetried<'_> {
    fn emit(self) {
        tracing::info!(endpoint = %self.endpoint, attempt = self.attempt, kind = self.kind,
            wait_ms = ms(self.wait), server_hint = self.server_hint, "retrying");
        metrics::counter!("kandji_request_retries_total", "kind" => self.kind).increment(1);
    }
}

/// A request failed for good: an error that is not retried, or retries ran out.
#[derive(Debug)]
pub struct RequestFailed<'a> {
    /// `"GET /api/v1/…"`.
    pub endpoint: &'a str,
    /// The last try's number.
    pub attempt: u32,
    /// The error (its kind labels the metric).
    pub error: &'a crate::error::KandjiError,
    /// Whether it was retried before.
    pub gave_up: bool,
}

impl InternalEvent for RequestFailed<'_> {
    fn emit(self) {
        let message = if self.gave_up {
            "giving up after retries"
        } else {
            "request failed"
        };
        let kind = self.error.kind();
        tracing::warn!(endpoint = %self.endpoint, attempt = self.attempt, kind,
            error = %self.error, "{message}");
        metrics::counter!("kandji_request_failures_total", "kind" => kind).increment(1);
    }
}

/// A request waited for the budget (the per-second pace, the hourly share, or a caller of
/// higher priority). Waits of a second or more are logged; all are counted.
#[derive(Debug)]
pub struct BudgetWaited {
    /// The waiting caller's priority.
    pub priority: Priority,
    /// How long it waits before it looks again.
    pub wait: Duration,
}

impl InternalEvent for BudgetWaited {
    fn emit(self) {
        if self.wait >= Duration::from_secs(60) {
            tracing::warn!(priority = ?self.priority, wait_ms = ms(self.wait),
                "budget spent for now: waiting for the window to reopen");
        } else if self.wait >= Duration::from_secs(1) {
            tracing::info!(priority = ?self.priority, wait_ms = ms(self.wait), "budget wait");
        } else {
            tracing::trace!(priority = ?self.priority, wait_ms = ms(self.wait), "budget wait");
        }
        let p = match self.priority {
            Priority::Security => "security",
            Priority::Audit => "audit",
            Priority::Inventory => "inventory",
            Priority::Bulk => "bulk",
        };
        metrics::counter!("kandji_budget_waits_total", "priority" => p).increment(1);
        metrics::counter!("kandji_budget_wait_ms_total", "priority" => p).increment(ms(self.wait));
    }
}

/// A rate-limit header with a value no tenant sends (0, negative, above 1,000,000) was
/// ignored. Warned once per budget; later ones go to DEBUG.
#[derive(Debug)]
pub struct RateLimitHeaderIgnored<'a> {
    /// The header's name.
    pub header: &'a str,
    /// Its value (the first 40 characters).
    pub value: &'a str,
    /// Whether it is this header's first absurd value for this budget.
    pub first: bool,
}

impl InternalEvent for RateLimitHeaderIgnored<'_> {
    fn emit(self) {
        if self.first {
            tracing::warn!(header = self.header, value = %self.value,
                "ignoring an absurd rate-limit header");
        } else {
            tracing::debug!(header = self.header, value = %self.value,
                "ignoring an absurd rate-limit header");
        }
        metrics::counter!("kandji_rate_limit_headers_ignored_total").increment(1);
    }
}
