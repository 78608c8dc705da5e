//! Retry policy: exponential backoff with full jitter (envelope from `backon`), honouring
//! `Retry-After` (seconds or HTTP date), then `RateLimit-Reset`, then the top of the clock hour
//! when the server says the hourly budget is exhausted.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use rand::Rng;
use reqwest::header::HeaderMap;
use time::OffsetDateTime;

/// How requests are retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// First backoff envelope (default 1 s).
    pub min_delay: Duration,
    /// Largest backoff envelope (default 60 s).
    pub max_delay: Duration,
    /// Envelope growth factor (default 2).
    pub factor: f32,
    /// Give up when the next wait would pass this much time since the first attempt (default 10 min).
    pub max_elapsed: Duration,
    /// Give up after this many attempts (default 50).
    pub max_attempts: u32,
    /// A 200 whose body is not JSON at all is retried this many times (default 3).
    pub decode_retries: u32,
    /// Honoured server hints (Retry-After …) are capped at this (default 1 h + 1 min).
    pub max_hint: Duration,
    /// A host that cannot be reached at all (refused, no DNS, TLS, connect timeout) is tried
    /// this many times (default 3) …
    pub unreachable_attempts: u32,
    /// … within this long (default 30 s), then the request fails as `Unreachable`. A host
    /// that answers, even with errors, gets the longer budget above.
    pub unreachable_max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            factor: 2.0,
            max_elapsed: Duration::from_secs(600),
            max_attempts: 50,
            decode_retries: 3,
            max_hint: Duration::from_secs(3660),
            unreachable_attempts: 3,
            unreachable_max_elapsed: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The backoff envelopes (no jitter): `min, min*f, min*f², …` capped at `max_delay`.
    pub fn envelopes(&self) -> impl Iterator<Item = Duration> + use<> {
        ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_factor(self.factor.max(1.0))
            .without_max_times()
            .build()
    }
}

/// Full jitter: a uniformly random wait in `[0, envelope]`.
pub fn full_jitter(envelope: Duration) -> Duration {
    let ms = u64::try_from(envelope.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(0..=ms))
}

/// A server-provided hint for how long to wait, from the response headers.
///
/// Order: `Retry-After` (seconds or HTTP date, relative to `now`), then `RateLimit-Reset`
/// (only for a 429, or when `RateLimit-Remaining` is 0), then `until_hour` when
/// `X-RateLimit-Remaining-Hour` is 0.
pub fn server_hint(
    status: u16,
    headers: &HeaderMap,
    now: OffsetDateTime,
    until_hour: Duration,
) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ra) = get("retry-after").and_then(|v| parse_retry_after(v, now)) {
        return Some(ra);
    }
    let reset = get("ratelimit-reset").and_then(|v| v.parse::<u64>().ok());
    let remaining = get("ratelimit-remaining").and_then(|v| v.parse::<u64>().ok());
    if let Some(r) = reset
        && (status == 429 || remaining == Some(0))
    {
        return Some(Duration::from_secs(r));
    }
    if get("x-ratelimit-remaining-hour").and_then(|v| v.parse::<u64>().ok()) == Some(0) {
        return Some(until_hour);
    }
    None
}

/// Parse `Retry-After`: delta-seconds or an HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`).
pub fn parse_retry_after(value: &str, now: OffsetDateTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e7)));
    }
    let at = parse_http_date(v)?;
    let diff = at - now;
    Some(if diff.is_positive() {
        diff.unsigned_abs()
    } else {
        Duration::ZERO
    })
}

/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) and RFC 850-ish variants.
pub fn parse_http_date(v: &str) -> Option<OffsetDateTime> {
    let parts: Vec<&str> = v.split([' ', ',', '-']).filter(|p| !p.is_empty()).collect();
    // [Sun, 06, Nov, 1994, 08:49:37, GMT]
    if parts.len() < 5 {
        return None;
    }
    let (day, mon, year, hms) = (parts[1], parts[2], parts[3], parts[4]);
    let mut year: i32 = year.parse().ok()?;
    if year < 100 {
        year += if year < 70 { 2000 } else { 1900 };
    }
    let human = format!("{mon} {day}, {year} {hms}");
    crate::time::parse_timestamp(&human)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use time::macros::datetime;

    #[test]
    fn retry_after_forms() {
        let now = datetime!(2015-10-21 07:27:00 UTC);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[test]
    fn hint_order() {
        let now = datetime!(2026-01-01 00:00:00 UTC);
        let hour = Duration::from_secs(1234);
        let mut h = HeaderMap::new();
        assert_eq!(server_hint(429, &h, now, hour), None);
        h.insert("x-ratelimit-remaining-hour", HeaderValue::from_static("0"));
        assert_eq!(server_hint(429, &h, now, hour), Some(hour));
        h.insert("ratelimit-reset", HeaderValue::from_static("30"));
        assert_eq!(
            server_hint(429, &h, now, hour),
            Some(Duration::from_secs(30))
        );
        h.insert("retry-after", HeaderValue::from_static("5"));
        assert_eq!(
            server_hint(429, &h, now, hour),
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn envelopes_grow_and_cap() {
        let p = RetryPolicy::default();
        let e: Vec<_> = p.envelopes().take(8).collect();
        assert_eq!(e[0], Duration::from_secs(1));
        assert_eq!(e[1], Duration::from_secs(2));
        assert_eq!(e[5], Duration::from_secs(32));
        assert_eq!(e[7], Duration::from_secs(60));
        for _ in 0..100 {
            assert!(full_jitter(Duration::from_secs(4)) <= Duration::from_secs(4));
        }
    }
}
