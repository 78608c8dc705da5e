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
    /// Fraction of the tenant's hourly limit kept for the other tools that hold tokens on the
    /// tenant (default 0.1: 1,000 of 10,000). We never bring the tenant's remaining requests
    /// below it, and Inventory/Bulk also leave what the other tools are on course to spend
    /// by the end of the hour, so they do not start getting 429s because of us. 0 turns
    /// yielding off (only our share and the server's counts limit us).
    pub reserve_for_others: f64,
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
            reserve_for_others: 0.1,
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
            .field("reserve_for_others", &self.reserve_for_others)
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
    /// What the other tools on the tenant spent in the server's current hour: the tenant's
    /// use (`X-RateLimit-Limit-Hour − X-RateLimit-Remaining-Hour`) minus our requests the
    /// server counted. `None` until a response carried the headers.
    pub others_this_hour: Option<u32>,
    /// Their pace, requests per hour (the higher of the hour's average and the last 10
    /// minutes'), once a minute of observations exists.
    pub others_per_hour: Option<f64>,
    /// Requests kept for the other tools: never spent by us.
    pub reserve_for_others: u32,
    /// Whether the other tools' spend is what holds us back now (we are yielding to them).
    pub yielding: bool,
    /// When the tenant as a whole (us and them) is on course to run out before the hour
    /// ends: how long until it does, at the current pace.
    pub exhaustion_in: Option<Duration>,
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
    /// Who else spends: tracked against the server's hourly window.
    others: Others,
}

/// The other tools' spend, tracked per server window.
#[derive(Debug)]
struct Others {
    /// Our responses the server counted in its current window (every answer but a 429).
    answered: u32,
    /// The last `X-RateLimit-Remaining-Hour`, to see the server's window turn over.
    last_remaining: Option<u32>,
    /// Our window rolled since the last observation (the server's has too, at about the
    /// same time).
    rolled: bool,
    /// When this server window's tracking started.
    since: Instant,
    /// The latest estimate.
    spent: Option<u32>,
    /// (when, their spend) over the last 10 minutes, for their pace.
    history: std::collections::VecDeque<(Instant, u32)>,
    /// (room for Security/Audit, room for the rest, our spend then, valid until): how far
    /// the tenant's remaining requests let us go while keeping the reserve (and, for the
    /// rest, what the other tools are on course to spend).
    room: Option<(u32, u32, u32, Instant)>,
    /// The tenant's remaining requests and total pace (per second) at the last observation.
    tenant: Option<(u32, f64)>,
}

impl Others {
    fn new(now: Instant) -> Self {
        Self {
            answered: 0,
            last_remaining: None,
            rolled: false,
            since: now,
            spent: None,
            history: std::collections::VecDeque::new(),
            room: None,
            tenant: None,
        }
    }

    /// Their pace in requests per second, once a minute of observations exists.
    fn pace(&self, now: Instant) -> Option<f64> {
        let spent = f64::from(self.spent?);
        let mut best: Option<f64> = None;
        let elapsed = now.saturating_duration_since(self.since).as_secs_f64();
        if elapsed >= 60.0 {
            best = Some(spent / elapsed);
        }
        if let (Some((t0, s0)), Some((t1, s1))) = (self.history.front(), self.history.back()) {
            let span = t1.saturating_duration_since(*t0).as_secs_f64();
            if span >= 60.0 {
                let recent = f64::from(s1.saturating_sub(*s0)) / span;
                best = Some(best.map_or(recent, |b| b.max(recent)));
            }
        }
        best
    }
}

/// How long a caller held back only by the other tools' spend waits before looking again
/// (their pace may drop; Security/Audit responses keep the picture fresh).
const YIELD_RECHECK: Duration = Duration::from_secs(30);

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
        let reserve_for_others = if cfg.reserve_for_others.is_finite() {
            cfg.reserve_for_others.clamp(0.0, 0.9)
        } else {
            0.1
        };
        let cfg = BudgetConfig {
            share,
            reserved_fraction,
            reserve_for_others,
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
                // Their spend counts from the top of the hour, as the server's does.
                others: Others::new((window_end.checked_sub(HOUR)).unwrap_or(now).min(now)),
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
        if let Some((room_first, room_rest, at_spent, valid_until)) = st.others.room {
            if valid_until > now {
                let room = if priority.uses_reserve() {
                    room_first
                } else {
                    room_rest
                };
                if st.spent >= at_spent.saturating_add(room) {
                    // Held back by the other tools' spend: look again soon.
                    return Err(refill.saturating_duration_since(now).min(YIELD_RECHECK));
                }
            } else {
                st.others.room = None;
            }
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
        // The server counted those too: they are not the other tools'.
        st.others.answered = st.others.answered.max(spent);
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
            st.others.rolled = true;
            st.others.room = None;
        }
    }

    /// Feed the rate-limit headers of any response (including 429s) into the budget.
    ///
    /// Reads `X-RateLimit-Remaining-Hour` / `X-RateLimit-Limit-Hour`, else `RateLimit-Remaining`,
    /// and `RateLimit-Reset` (seconds). We never spend more than our share of what the server
    /// says remains; if it says 0, we wait until the reset (or the top of the hour).
    pub fn observe(&self, headers: &HeaderMap) {
        self.observe_response(200, headers);
    }

    /// [`Budget::observe`], knowing the response's status: every answer but a 429 counts
    /// against the tenant's hour, which is how the other tools' spend is told apart from ours.
    pub fn observe_response(&self, status: u16, headers: &HeaderMap) {
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
            self.track_others(&mut st, now, status, r32, valid_until);
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

    /// Updates the other tools' spend and the room they leave us from one observation of the
    /// tenant's remaining hourly requests.
    fn track_others(
        &self,
        st: &mut State,
        now: Instant,
        status: u16,
        remaining: u32,
        valid_until: Instant,
    ) {
        let limit = st.server_limit.unwrap_or(self.cfg.hourly_limit);
        let o = &mut st.others;
        // The server's window turned over: ours rolled meanwhile, or its count went up by
        // more than answers arriving out of order explain (concurrent requests' responses
        // can carry counts a few apart in either order).
        let jitter = (limit / 20).max(32);
        if o.last_remaining
            .is_some_and(|last| remaining > last.saturating_add(jitter))
            || o.rolled
        {
            o.answered = 0;
            o.history.clear();
            o.since = if o.rolled {
                st.window_end.checked_sub(HOUR).unwrap_or(now).min(now)
            } else {
                now
            };
            o.rolled = false;
        }
        o.last_remaining = Some(remaining);
        if status != 429 {
            o.answered = o.answered.saturating_add(1);
        }
        let used = limit.saturating_sub(remaining);
        let theirs = used.saturating_sub(o.answered);
        o.spent = Some(theirs);
        o.history.push_back((now, theirs));
        while o
            .history
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > Duration::from_secs(600))
        {
            o.history.pop_front();
        }
        let left = st.window_end.saturating_duration_since(now).as_secs_f64();
        let pace = o.pace(now);
        let reserve = self.reserve_requests(limit);
        let room_first = remaining.saturating_sub(reserve);
        let ahead = pace.map_or(0.0, |p| p * left).ceil() as u32;
        let room_rest = room_first.saturating_sub(ahead);
        // A reserve of 0 turns yielding off (the figure is still kept).
        o.room = (self.cfg.reserve_for_others > 0.0).then_some((
            room_first,
            room_rest,
            st.spent,
            valid_until,
        ));
        let ours_elapsed = now.saturating_duration_since(o.since).as_secs_f64();
        let ours_pace = (ours_elapsed >= 60.0).then(|| f64::from(o.answered) / ours_elapsed);
        o.tenant = match (pace, ours_pace) {
            (Some(p), Some(q)) => Some((remaining, p + q)),
            _ => None,
        };
    }

    fn reserve_requests(&self, limit: u32) -> u32 {
        (f64::from(limit) * self.cfg.reserve_for_others).floor() as u32
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
        let limit = st.server_limit.unwrap_or(self.cfg.hourly_limit);
        let room = st.others.room.filter(|r| r.3 > now);
        // Held back now by what the other tools need (Inventory/Bulk wait for them).
        let yielding = room.is_some_and(|(_, rest, at, _)| at.saturating_add(rest) <= st.spent);
        let exhaustion_in = st.others.tenant.and_then(|(remaining, pace)| {
            (pace > 0.0 && f64::from(remaining) < pace * next_refill_in.as_secs_f64())
                .then(|| Duration::from_secs_f64(f64::from(remaining) / pace))
        });
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
            others_this_hour: st.others.spent,
            others_per_hour: st.others.pace(now).map(|p| p * 3600.0),
            reserve_for_others: self.reserve_requests(limit),
            yielding,
            exhaustion_in,
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

    /// The share tests run without a reserve for other tools (the reserve's own tests set it).
    fn cfg(limit: u32, share: f64, per_second: u32) -> BudgetConfig {
        BudgetConfig {
            hourly_limit: limit,
            share,
            per_second,
            reserved_fraction: 0.2,
            reserve_for_others: 0.0,
            wall_clock: top,
        }
    }

    fn with_reserve(limit: u32, share: f64) -> BudgetConfig {
        BudgetConfig {
            reserve_for_others: 0.1,
            ..cfg(limit, share, 50)
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

    fn hour_headers(limit: u32, remaining: u32) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            "x-ratelimit-limit-hour",
            HeaderValue::from_str(&limit.to_string()).unwrap(),
        );
        h.insert(
            "x-ratelimit-remaining-hour",
            HeaderValue::from_str(&remaining.to_string()).unwrap(),
        );
        h
    }

    /// A tenant as the server counts it: our requests and the other tools' in one hour.
    struct Tenant {
        limit: u32,
        used: u32,
    }

    impl Tenant {
        /// One of our requests: counted, and its response observed.
        fn ours(&mut self, b: &Budget, p: Priority) -> bool {
            if b.try_acquire(p).is_err() {
                return false;
            }
            self.used += 1;
            b.observe_response(200, &hour_headers(self.limit, self.limit - self.used));
            true
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_other_tools_spend_is_the_tenants_use_minus_ours() {
        let b = Budget::new(with_reserve(10_000, 0.5));
        let mut t = Tenant {
            limit: 10_000,
            used: 0,
        };
        assert_eq!(
            b.state().others_this_hour,
            None,
            "unknown before any header"
        );
        for minute in 0..20 {
            for _ in 0..10 {
                assert!(t.ours(&b, Priority::Inventory), "minute {minute}");
            }
            t.used += 100; // the other tools: 100 a minute, 6,000 an hour
            tokio::time::advance(Duration::from_secs(60)).await;
        }
        assert!(t.ours(&b, Priority::Inventory));
        let s = b.state();
        assert_eq!(s.others_this_hour, Some(2_000));
        assert_eq!(s.spent_this_hour, 201);
        assert!(!s.yielding, "{s:?}");
        let pace = s.others_per_hour.unwrap();
        assert!((pace - 6_000.0).abs() < 6_000.0 * 0.05, "{pace}");
        // A 429 is not counted by the server: it stays ours, not theirs.
        b.observe_response(429, &hour_headers(10_000, 10_000 - t.used));
        assert_eq!(b.state().others_this_hour, Some(2_000));
    }

    #[tokio::test(start_paused = true)]
    async fn we_yield_to_heavy_spenders_and_keep_the_reserve_but_security_goes_first() {
        // Share 1.0 of 10,000, reserve 10 % (1,000). The others spend 100 a minute.
        let b = Budget::new(with_reserve(10_000, 1.0));
        let mut t = Tenant {
            limit: 10_000,
            used: 0,
        };
        for _ in 0..10 {
            assert!(t.ours(&b, Priority::Bulk));
            t.used += 100;
            tokio::time::advance(Duration::from_secs(60)).await;
        }
        // 50 minutes left at 6,000/h: 5,000 more of theirs are coming; 8,990 remain, 1,000
        // reserved: Bulk may take about 2,990 more, Security 7,990. (While Bulk spends, the
        // others are idle, so their pace and what is coming shrink a little: up to ~4,000.)
        let mut bulk = 0;
        while t.ours(&b, Priority::Bulk) {
            bulk += 1;
            if bulk % 40 == 0 {
                tokio::time::advance(Duration::from_secs(1)).await;
            }
        }
        assert!((2_900..=4_000).contains(&bulk), "bulk took {bulk}");
        assert!(b.state().yielding);
        // Bulk waits only a little before it looks again.
        let wait = b.try_acquire(Priority::Bulk).unwrap_err();
        assert!(wait <= YIELD_RECHECK, "{wait:?}");
        let mut security = 0;
        while t.ours(&b, Priority::Security) {
            security += 1;
            if security % 40 == 0 {
                tokio::time::advance(Duration::from_secs(1)).await;
            }
        }
        let remaining = t.limit - t.used;
        assert!(
            (1_000..=1_001).contains(&remaining),
            "Security stops at the reserve: {remaining} left (bulk {bulk}, security {security})"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_tenant_on_course_to_run_out_is_seen_ahead() {
        let b = Budget::new(cfg(10_000, 0.5, 50));
        let mut t = Tenant {
            limit: 10_000,
            used: 0,
        };
        // Ten minutes at 300 a minute (others) + 10 (ours): 18,600 an hour, beyond 10,000.
        for _ in 0..10 {
            for _ in 0..10 {
                assert!(t.ours(&b, Priority::Audit));
            }
            t.used += 300;
            tokio::time::advance(Duration::from_secs(60)).await;
        }
        t.ours(&b, Priority::Audit);
        let eta = b.state().exhaustion_in.expect("on course to run out");
        // 6,899 left at ~310 a minute: about 22 minutes.
        assert!(
            eta > Duration::from_secs(19 * 60) && eta < Duration::from_secs(25 * 60),
            "{eta:?}"
        );
        // A calm tenant is not.
        let calm = Budget::new(cfg(10_000, 0.5, 50));
        let mut t = Tenant {
            limit: 10_000,
            used: 0,
        };
        for _ in 0..10 {
            t.ours(&calm, Priority::Audit);
            t.used += 20;
            tokio::time::advance(Duration::from_secs(60)).await;
        }
        t.ours(&calm, Priority::Audit);
        assert_eq!(calm.state().exhaustion_in, None);
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
