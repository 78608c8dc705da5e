//! The per-tenant request budget, shared by every stream of one tenant.
//!
//! Kandji allows 10,000 requests per hour per tenant, shared by every token and integration.
//! A [`Budget`] enforces our *share* of that (default 50 %), a per-second cap (default 10/s,
//! never above the gateway's 50/s), adapts to the rate-limit headers the server sends, and
//! lets higher [`Priority`] callers go first: a slice of the hourly share is reserved for
//! [`Priority::Security`] and [`Priority::Audit`], so bulk inventory cannot starve them.
//!
//! Time comes from `tokio::time` (governor runs on a [`TokioClock`]), so tests under
//! `tokio::time::pause()` are deterministic. The wall clock is only used to align the hourly
//! window to the top of the clock hour, and is injectable ([`BudgetConfig::wall_clock`]).

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use reqwest::header::HeaderMap;
use time::OffsetDateTime;
use tokio::time::Instant;

/// The gateway's documented per-second ceiling; the per-second cap is clamped to it.
pub const GATEWAY_PER_SECOND: u32 = 50;
/// The documented tenant-wide hourly limit.
pub const DEFAULT_HOURLY_LIMIT: u32 = 10_000;
const HOUR: Duration = Duration::from_secs(3600);

/// Who is asking. Lower discriminant = more important.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Threats, behavioral detections, vulnerability detections.
    Security = 0,
    /// The audit log.
    Audit = 1,
    /// Device list, users, blueprints, tags, compliance.
    Inventory = 2,
    /// Prism exports, per-device fan-out, backfills.
    Bulk = 3,
}

impl Priority {
    /// All priorities, most important first.
    pub const ALL: [Priority; 4] = [Self::Security, Self::Audit, Self::Inventory, Self::Bulk];

    /// Whether this priority may use the reserved slice of the hourly share.
    pub fn uses_reserve(self) -> bool {
        matches!(self, Self::Security | Self::Audit)
    }

    fn idx(self) -> usize {
        self as usize
    }
}

/// A governor clock over `tokio::time::Instant`, so paused-time tests are deterministic.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin: Instant,
}

impl TokioClock {
    /// A clock whose zero is now.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    type Instant = Nanos;
    fn now(&self) -> Nanos {
        Nanos::from(self.origin.elapsed())
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Nanos>>;

/// Budget settings.
#[derive(Clone)]
pub struct BudgetConfig {
    /// The tenant's hourly limit (default 10,000).
    pub hourly_limit: u32,
    /// Our fraction of it, 0 < share ≤ 1 (default 0.5).
    pub share: f64,
    /// Requests per second (default 10; clamped to 1..=50).
    pub per_second: u32,
    /// Fraction of our hourly share only Security/Audit callers may use (default 0.2).
    pub reserved_fraction: f64,
    /// Wall clock used to find the top of the hour (default `OffsetDateTime::now_utc`).
    pub wall_clock: fn() -> OffsetDateTime,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            hourly_limit: DEFAULT_HOURLY_LIMIT,
            share: 0.5,
            per_second: 10,
            reserved_fraction: 0.2,
            wall_clock: OffsetDateTime::now_utc,
        }
    }
}

impl std::fmt::Debug for BudgetConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetConfig")
            .field("hourly_limit", &self.hourly_limit)
            .field("share", &self.share)
            .field("per_second", &self.per_second)
            .field("reserved_fraction", &self.reserved_fraction)
            .finish_non_exhaustive()
    }
}

/// A plain snapshot of the budget, for the status page and metrics.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BudgetState {
    /// The tenant's hourly limit (configured, or as the server last reported).
    pub limit: u32,
    /// Our configured fraction.
    pub share: f64,
    /// Our hourly share in requests: `configured limit × share`, or `server limit × share` when
    /// the server reports a lower hourly limit.
    pub share_limit: u32,
    /// Requests of the share reserved for Security/Audit.
    pub reserved: u32,
    /// Per-second cap.
    pub per_second: u32,
    /// Requests spent in the current hourly window.
    pub spent_this_hour: u32,
    /// Requests we may still spend in this window (after server-reported limits).
    pub remaining: u32,
    /// When the window refills (wall clock).
    pub next_refill_at: OffsetDateTime,
    /// How long until the window refills.
    pub next_refill_in: Duration,
    /// Last `X-RateLimit-Remaining-Hour` (or `RateLimit-Remaining`) the server sent.
    pub server_remaining: Option<u32>,
    /// Last `X-RateLimit-Limit-Hour` the server sent.
    pub server_limit: Option<u32>,
    /// If the server said remaining 0: how long we are blocked.
    pub blocked_for: Option<Duration>,
    /// Requests spent since the budget was created.
    pub total_spent: u64,
    /// Requests spent this window, per priority (Security, Audit, Inventory, Bulk).
    pub spent_by_priority: [u32; 4],
    /// Callers currently waiting, per priority.
    pub waiting: [usize; 4],
}

#[derive(Debug)]
struct State {
    window_end: Instant,
    spent: u32,
    spent_by_priority: [u32; 4],
    total_spent: u64,
    /// (remaining allowance at observation, spent at observation, valid until)
    server_cap: Option<(u32, u32, Instant)>,
    server_remaining: Option<u32>,
    server_limit: Option<u32>,
    blocked_until: Option<Instant>,
    /// Rate-limit headers already warned about as absurd.
    absurd_warned: Vec<String>,
}

/// Rate-limit header values above this are not believed (the live hourly limit is 10,000).
const ABSURD_RATE_LIMIT: f64 = 1_000_000.0;

/// The shared request budget of one tenant. Create one per tenant and pass the same
/// `Arc<Budget>` to every client of that tenant.
pub struct Budget {
    cfg: BudgetConfig,
    share_limit: u32,
    reserved: u32,
    per_second: u32,
    per_second_cell: Limiter,
    hourly_cell: Limiter,
    bulk_cell: Limiter,
    state: Mutex<State>,
    waiting: [AtomicUsize; 4],
    granted: tokio::sync::Notify,
    wall_origin: OffsetDateTime,
    origin: Instant,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("state", &self.state())
            .finish()
    }
}

fn nz(v: u32) -> NonZeroU32 {
    NonZeroU32::new(v.max(1)).unwrap_or(NonZeroU32::MIN)
}

fn hourly_quota(per_hour: u32) -> Quota {
    let per_hour = per_hour.max(1);
    Quota::with_period(HOUR / per_hour)
        .unwrap_or_else(|| Quota::per_hour(nz(per_hour)))
        .allow_burst(nz(per_hour))
}

impl Budget {
    /// Create a budget. Invalid values are clamped (share to (0, 1], per-second to 1..=50).
    pub fn new(cfg: BudgetConfig) -> Self {
        let share = if cfg.share.is_finite() {
            cfg.share.clamp(0.0001, 1.0)
        } else {
            0.5
        };
        let reserved_fraction = if cfg.reserved_fraction.is_finite() {
            cfg.reserved_fraction.clamp(0.0, 0.9)
        } else {
            0.2
        };
        let cfg = BudgetConfig {
            share,
            reserved_fraction,
            ..cfg
        };
        // Truncation is intended: floor of a non-negative product bounded by hourly_limit.
        let share_limit = ((f64::from(cfg.hourly_limit) * share).floor() as u32).max(1);
        let reserved = ((f64::from(share_limit) * reserved_fraction).floor() as u32)
            .min(share_limit.saturating_sub(1));
        let per_second = cfg.per_second.clamp(1, GATEWAY_PER_SECOND);
        let clock = TokioClock::new();
        let now = Instant::now();
        let wall = (cfg.wall_clock)();
        let window_end = now + until_top_of_hour(wall);
        Self {
            share_limit,
            reserved,
            per_second,
            per_second_cell: RateLimiter::direct_with_clock(
                Quota::per_second(nz(per_second)),
                clock,
            ),
            hourly_cell: RateLimiter::direct_with_clock(hourly_quota(share_limit), clock),
            bulk_cell: RateLimiter::direct_with_clock(hourly_quota(share_limit - reserved), clock),
            state: Mutex::new(State {
                window_end,
                spent: 0,
                spent_by_priority: [0; 4],
                total_spent: 0,
                server_cap: None,
                server_remaining: None,
                server_limit: None,
                blocked_until: None,
                absurd_warned: Vec::new(),
            }),
            waiting: Default::default(),
            granted: tokio::sync::Notify::new(),
            wall_origin: wall,
            origin: now,
            cfg,
        }
    }

    /// The configuration in force (after clamping).
    pub fn config(&self) -> &BudgetConfig {
        &self.cfg
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means another thread panicked mid-update of plain counters.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait until one request of `priority` may be sent, and count it.
    ///
    /// While a more important caller is waiting, less important callers do not take tokens:
    /// they wait until a grant happens (or at most a second) and look again.
    pub async fn acquire(&self, priority: Priority) {
        // Decremented on drop, so a cancelled wait never leaves a phantom waiter behind.
        let _waiting = WaitGuard::new(&self.waiting[priority.idx()]);
        loop {
            let higher_waiting = Priority::ALL[..priority.idx()]
                .iter()
                .any(|p| self.waiting[p.idx()].load(Ordering::SeqCst) > 0);
            if higher_waiting {
                let notified = self.granted.notified();
                tokio::select! {
                    () = notified => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
            match self.try_acquire(priority) {
                Ok(()) => {
                    drop(_waiting);
                    self.granted.notify_waiters();
                    return;
                }
                Err(d) => {
                    crate::events::emit(crate::events::BudgetWaited { priority, wait: d });
                    tokio::time::sleep(d.max(Duration::from_millis(1))).await;
                }
            }
        }
    }

    /// Take one request now if allowed; otherwise return how long to wait before retrying.
    pub fn try_acquire(&self, priority: Priority) -> Result<(), Duration> {
        let now = Instant::now();
        let mut st = self.lock();
        self.roll(&mut st, now);
        if let Some(until) = st.blocked_until {
            if until > now {
                return Err(until - now);
            }
            st.blocked_until = None;
        }
        let (base, reserved) = self.base_allowance(&st);
        let mut cap = base;
        let mut refill = st.window_end;
        if let Some((allow, at_spent, valid_until)) = st.server_cap {
            if valid_until > now {
                cap = cap.min(at_spent.saturating_add(allow));
                refill = refill.min(valid_until);
            } else {
                st.server_cap = None;
            }
        }
        if !priority.uses_reserve() {
            cap = cap.min(base.saturating_sub(reserved));
        }
        if st.spent >= cap {
            return Err(refill.saturating_duration_since(now));
        }
        let clock_now = Nanos::from(now - self.origin);
        if let Err(nu) = self.per_second_cell.check() {
            return Err(nu.wait_time_from(clock_now));
        }
        if let Err(nu) = self.hourly_cell.check() {
            return Err(nu.wait_time_from(clock_now));
        }
        if !priority.uses_reserve()
            && let Err(nu) = self.bulk_cell.check()
        {
            return Err(nu.wait_time_from(clock_now));
        }
        st.spent += 1;
        st.spent_by_priority[priority.idx()] += 1;
        st.total_spent += 1;
        Ok(())
    }

    /// Counts `spent` requests as already spent this hour (by a previous run of this process,
    /// or by the replica that collected the source before this one), so that a restart or a
    /// handover does not spend the hour's share a second time. Never lowers the count.
    pub fn preload_spent(&self, spent: u32) {
        let now = Instant::now();
        let mut st = self.lock();
        self.roll(&mut st, now);
        if spent > st.spent {
            let extra = spent - st.spent;
            st.spent = spent;
            st.spent_by_priority[Priority::Bulk.idx()] += extra;
        }
    }

    /// Our hourly share and its reserved slice: from the configured limit, or from the
    /// server-reported hourly limit when it is lower.
    fn base_allowance(&self, st: &State) -> (u32, u32) {
        let base = match st.server_limit {
            Some(l) => self
                .share_limit
                .min(((f64::from(l) * self.cfg.share).floor() as u32).max(1)),
            None => self.share_limit,
        };
        let reserved = if base == self.share_limit {
            self.reserved
        } else {
            ((f64::from(base) * self.cfg.reserved_fraction).floor() as u32)
                .min(base.saturating_sub(1))
        };
        (base, reserved)
    }

    fn roll(&self, st: &mut State, now: Instant) {
        if now >= st.window_end {
            while st.window_end <= now {
                st.window_end += HOUR;
            }
            st.spent = 0;
            st.spent_by_priority = [0; 4];
        }
    }

    /// Feed the rate-limit headers of any response (including 429s) into the budget.
    ///
    /// Reads `X-RateLimit-Remaining-Hour` / `X-RateLimit-Limit-Hour`, else `RateLimit-Remaining`,
    /// and `RateLimit-Reset` (seconds). We never spend more than our share of what the server
    /// says remains; if it says 0, we wait until the reset (or the top of the hour).
    pub fn observe(&self, headers: &HeaderMap) {
        // A value that no gateway would send (0 as a limit, negative, or above a million) is
        // ignored with a warning rather than obeyed: one bad header must not halt a source.
        let num = |name: &str, zero_ok: bool| -> Option<u64> {
            let raw = headers.get(name)?.to_str().ok()?.trim();
            let v = raw.parse::<f64>().ok();
            match v {
                Some(v)
                    if v.is_finite()
                        && (0.0..=ABSURD_RATE_LIMIT).contains(&v)
                        && (zero_ok || v >= 1.0) =>
                {
                    Some(v as u64)
                }
                _ => {
                    self.warn_absurd(name, raw);
                    None
                }
            }
        };
        let limit_header = headers.contains_key("x-ratelimit-limit-hour");
        let limit = num("x-ratelimit-limit-hour", false);
        // The hour's remaining count means nothing beside an absurd limit.
        let hour_remaining = if limit_header && limit.is_none() {
            None
        } else {
            num("x-ratelimit-remaining-hour", true)
        };
        let generic_remaining = num("ratelimit-remaining", true);
        let reset = num("ratelimit-reset", true).map(|s| Duration::from_secs(s.min(2 * 3600)));
        if hour_remaining.is_none() && generic_remaining.is_none() {
            return;
        }
        let now = Instant::now();
        let mut st = self.lock();
        self.roll(&mut st, now);
        if let Some(l) = limit {
            st.server_limit = Some(u32::try_from(l).unwrap_or(u32::MAX));
        }
        let window_end = st.window_end;
        if let Some(r) = hour_remaining {
            let r32 = u32::try_from(r).unwrap_or(u32::MAX);
            st.server_remaining = Some(r32);
            let allow = (f64::from(r32) * self.cfg.share).floor() as u32;
            let valid_until = match (r32, reset) {
                (0, Some(d)) if generic_remaining == Some(0) => now + d,
                _ => window_end,
            };
            st.server_cap = Some((allow, st.spent, valid_until));
            if r32 == 0 {
                let until = valid_until.max(now + Duration::from_secs(1));
                st.blocked_until = Some(st.blocked_until.map_or(until, |b| b.max(until)));
            }
        } else if let Some(r) = generic_remaining {
            st.server_remaining = Some(u32::try_from(r).unwrap_or(u32::MAX));
        }
        if generic_remaining == Some(0) {
            let until = now
                + reset
                    .unwrap_or_else(|| window_end.saturating_duration_since(now))
                    .max(Duration::from_secs(1));
            st.blocked_until = Some(st.blocked_until.map_or(until, |b| b.max(until)));
        }
    }

    /// Warns about an absurd rate-limit header once per header name (then at debug level).
    fn warn_absurd(&self, name: &str, value: &str) {
        let value: String = value.chars().take(40).collect();
        let first = {
            let mut st = self.lock();
            if st.absurd_warned.iter().any(|n| n == name) {
                false
            } else {
                st.absurd_warned.push(name.to_string());
                true
            }
        };
        crate::events::emit(crate::events::RateLimitHeaderIgnored {
            header: name,
            value: &value,
            first,
        });
    }

    /// Time until the current hourly window ends (the top of the clock hour).
    pub fn until_window_end(&self) -> Duration {
        let now = Instant::now();
        let mut st = self.lock();
        self.roll(&mut st, now);
        st.window_end.saturating_duration_since(now)
    }

    /// A snapshot for the status page and metrics.
    pub fn state(&self) -> BudgetState {
        let now = Instant::now();
        let mut st = self.lock();
        self.roll(&mut st, now);
        let (base, reserved) = self.base_allowance(&st);
        let mut cap = base;
        if let Some((allow, at_spent, valid_until)) = st.server_cap
            && valid_until > now
        {
            cap = cap.min(at_spent.saturating_add(allow));
        }
        let next_refill_in = st.window_end.saturating_duration_since(now);
        let wall_now = self.wall_origin + (now - self.origin);
        BudgetState {
            limit: st.server_limit.unwrap_or(self.cfg.hourly_limit),
            share: self.cfg.share,
            share_limit: base,
            reserved,
            per_second: self.per_second,
            spent_this_hour: st.spent,
            remaining: cap.saturating_sub(st.spent),
            next_refill_at: wall_now + next_refill_in,
            next_refill_in,
            server_remaining: st.server_remaining,
            server_limit: st.server_limit,
            blocked_for: st.blocked_until.filter(|b| *b > now).map(|b| b - now),
            total_spent: st.total_spent,
            spent_by_priority: st.spent_by_priority,
            waiting: std::array::from_fn(|i| self.waiting[i].load(Ordering::SeqCst)),
        }
    }
}

struct WaitGuard<'a>(&'a AtomicUsize);

impl<'a> WaitGuard<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter)
    }
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Time from `wall` to the next top of the clock hour (never zero: at :00:00 exactly, one hour).
pub fn until_top_of_hour(wall: OffsetDateTime) -> Duration {
    let into_hour = u64::from(wall.minute()) * 60 + u64::from(wall.second());
    let nanos = Duration::from_nanos(u64::from(wall.nanosecond()));
    (HOUR - Duration::from_secs(into_hour))
        .saturating_sub(nanos)
        .max(Duration::from_millis(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use time::macros::datetime;

    fn top() -> OffsetDateTime {
        datetime!(2026-11-01 10:00:00 UTC)
    }

    fn cfg(limit: u32, share: f64, per_second: u32) -> BudgetConfig {
        BudgetConfig {
            hourly_limit: limit,
            share,
            per_second,
            reserved_fraction: 0.2,
            wall_clock: top,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn never_exceeds_share_in_window() {
        let b = Budget::new(cfg(1000, 0.05, 50)); // share 50, reserve 10
        let start = Instant::now();
        for _ in 0..40 {
            b.acquire(Priority::Bulk).await;
        }
        assert!(start.elapsed() < Duration::from_secs(5));
        // Bulk cannot use the reserve: the 41st bulk request waits for the next window.
        assert!(b.try_acquire(Priority::Bulk).is_err());
        // Security still can.
        for _ in 0..10 {
            b.acquire(Priority::Security).await;
        }
        assert!(b.try_acquire(Priority::Security).is_err());
        let s = b.state();
        assert_eq!(s.spent_this_hour, 50);
        assert_eq!(s.remaining, 0);
        assert_eq!(s.spent_by_priority, [10, 0, 0, 40]);
        // Waiting moves us into the next hour.
        b.acquire(Priority::Bulk).await;
        assert!(start.elapsed() >= Duration::from_secs(3599));
        assert_eq!(b.state().spent_this_hour, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn per_second_cap() {
        let b = Budget::new(cfg(10_000, 1.0, 5));
        let start = Instant::now();
        for _ in 0..20 {
            b.acquire(Priority::Inventory).await;
        }
        let el = start.elapsed();
        assert!(
            el >= Duration::from_millis(2900) && el <= Duration::from_secs(4),
            "{el:?}"
        );
        // Clamped to the gateway's 50/s.
        assert_eq!(Budget::new(cfg(10_000, 1.0, 500)).state().per_second, 50);
    }

    #[tokio::test(start_paused = true)]
    async fn a_preloaded_spend_counts_against_the_share() {
        let b = Budget::new(BudgetConfig {
            hourly_limit: 100,
            share: 0.5,
            reserved_fraction: 0.0,
            ..BudgetConfig::default()
        });
        b.preload_spent(48);
        b.preload_spent(10);
        let s = b.state();
        assert_eq!((s.spent_this_hour, s.remaining), (48, 2));
        assert!(b.try_acquire(Priority::Bulk).is_ok());
        assert!(b.try_acquire(Priority::Bulk).is_ok());
        assert!(b.try_acquire(Priority::Bulk).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn server_remaining_limits_us() {
        let b = Budget::new(cfg(10_000, 0.5, 50));
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-remaining-hour", HeaderValue::from_static("10"));
        h.insert("x-ratelimit-limit-hour", HeaderValue::from_static("10000"));
        b.observe(&h);
        // our share of 10 remaining is 5; Security may use all 5.
        for _ in 0..5 {
            assert!(b.try_acquire(Priority::Security).is_ok());
        }
        assert!(b.try_acquire(Priority::Security).is_err());
        let s = b.state();
        assert_eq!(s.server_remaining, Some(10));
        assert_eq!(s.remaining, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn absurd_rate_limit_headers_are_ignored() {
        // One `X-RateLimit-Limit-Hour: 0` once halted every request until the top of the
        // hour; a limit of 0, a negative count or one above a million is not believed.
        for (limit, remaining) in [("0", "0"), ("0", "9000"), ("-5", "10"), ("5000000", "0")] {
            let b = Budget::new(cfg(10_000, 1.0, 50));
            let mut h = HeaderMap::new();
            h.insert(
                "x-ratelimit-limit-hour",
                HeaderValue::from_str(limit).unwrap(),
            );
            h.insert(
                "x-ratelimit-remaining-hour",
                HeaderValue::from_str(remaining).unwrap(),
            );
            b.observe(&h);
            let s = b.state();
            assert_eq!(s.limit, 10_000, "limit {limit}");
            assert!(s.blocked_for.is_none(), "limit {limit}: {s:?}");
            let start = Instant::now();
            for _ in 0..100 {
                b.acquire(Priority::Bulk).await;
            }
            assert!(start.elapsed() < Duration::from_secs(3), "limit {limit}");
        }
        // A negative or absurd remaining count alone is ignored too; a true 0 still counts.
        let b = Budget::new(cfg(10_000, 1.0, 50));
        let mut h = HeaderMap::new();
        h.insert("ratelimit-remaining", HeaderValue::from_static("-1"));
        h.insert(
            "x-ratelimit-remaining-hour",
            HeaderValue::from_static("99999999"),
        );
        b.observe(&h);
        assert!(b.state().blocked_for.is_none());
        assert_eq!(b.state().server_remaining, None);
        h.insert("x-ratelimit-remaining-hour", HeaderValue::from_static("0"));
        h.insert("x-ratelimit-limit-hour", HeaderValue::from_static("10000"));
        b.observe(&h);
        assert!(b.state().blocked_for.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn server_zero_blocks_until_reset() {
        let b = Budget::new(cfg(10_000, 0.5, 50));
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-remaining-hour", HeaderValue::from_static("0"));
        h.insert("ratelimit-remaining", HeaderValue::from_static("0"));
        h.insert("ratelimit-reset", HeaderValue::from_static("120"));
        b.observe(&h);
        let start = Instant::now();
        b.acquire(Priority::Security).await;
        let el = start.elapsed();
        assert!(
            el >= Duration::from_secs(120) && el < Duration::from_secs(122),
            "{el:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn server_zero_without_reset_waits_for_top_of_hour() {
        fn half_past() -> OffsetDateTime {
            datetime!(2026-11-01 10:30:00 UTC)
        }
        let b = Budget::new(BudgetConfig {
            wall_clock: half_past,
            ..cfg(10_000, 0.5, 50)
        });
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-remaining-hour", HeaderValue::from_static("0"));
        b.observe(&h);
        assert!(b.state().blocked_for.is_some());
        let start = Instant::now();
        b.acquire(Priority::Security).await;
        let el = start.elapsed();
        assert!(
            el >= Duration::from_secs(1800) && el < Duration::from_secs(1802),
            "{el:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn priority_goes_first() {
        use std::sync::Arc;
        let b = Arc::new(Budget::new(cfg(10_000, 1.0, 1)));
        b.acquire(Priority::Bulk).await; // drain the per-second cell
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (i, p) in [Priority::Bulk, Priority::Bulk, Priority::Security]
            .into_iter()
            .enumerate()
        {
            let (b, order) = (b.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(i as u64)).await;
                b.acquire(p).await;
                order.lock().unwrap().push(p);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(order.lock().unwrap()[0], Priority::Security);
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_waiter_does_not_block_lower_priorities() {
        let b = Budget::new(cfg(10_000, 1.0, 1));
        b.acquire(Priority::Bulk).await; // drain the per-second cell
        // A Security wait that is cancelled half-way.
        let _ =
            tokio::time::timeout(Duration::from_millis(10), b.acquire(Priority::Security)).await;
        assert_eq!(b.state().waiting, [0, 0, 0, 0]);
        let start = Instant::now();
        b.acquire(Priority::Bulk).await;
        assert!(start.elapsed() <= Duration::from_secs(1));
    }

    #[test]
    fn top_of_hour() {
        assert_eq!(
            until_top_of_hour(datetime!(2026-11-01 10:59:30 UTC)),
            Duration::from_secs(30)
        );
        assert_eq!(until_top_of_hour(datetime!(2026-11-01 10:00:00 UTC)), HOUR);
    }
}
