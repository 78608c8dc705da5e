//! Backoff timing under paused time, read from the client's own `retrying` log events:
//! waits honour Retry-After / RateLimit-Reset exactly, and otherwise stay within full-jitter
//! bounds that grow exponentially.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::json;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

#[derive(Clone, Default)]
struct Waits(Arc<Mutex<Vec<u64>>>);

struct WaitVisitor(Option<u64>);
impl Visit for WaitVisitor {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "wait_ms" {
            self.0 = Some(value);
        }
    }
    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Waits {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut v = WaitVisitor(None);
        event.record(&mut v);
        let is_retry = event.metadata().fields().field("server_hint").is_some();
        if let (Some(ms), true) = (v.0, is_retry) {
            self.0.lock().unwrap().push(ms);
        }
    }
}

async fn waits_for(responses: Vec<ResponseTemplate>) -> Vec<u64> {
    waits_with(responses, fast_retry()).await
}

async fn waits_with(
    responses: Vec<ResponseTemplate>,
    retry: kandji_api::retry::RetryPolicy,
) -> Vec<u64> {
    let waits = Waits::default();
    let subscriber = tracing_subscriber::registry().with(waits.clone());
    let _g = tracing::subscriber::set_default(subscriber);
    let server = MockServer::start().await;
    for r in responses {
        Mock::given(path("/api/v1/settings/licensing"))
            .respond_with(r)
            .up_to_n_times(1)
            .mount(&server)
            .await;
    }
    Mock::given(path("/api/v1/settings/licensing"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&server)
        .await;
    let c = client_with(&server.uri(), TOKEN, big_budget(), retry);
    let t = tokio::time::Instant::now();
    c.licensing().await.unwrap();
    let w = waits.0.lock().unwrap().clone();
    // The waits are the whole elapsed (virtual) time.
    let total: u64 = w.iter().sum();
    let el = t.elapsed().as_millis() as u64;
    assert!(
        el >= total && el <= total + 50,
        "elapsed {el} vs waits {w:?}"
    );
    w
}

#[tokio::test(start_paused = true)]
async fn server_hints_are_exact() {
    let w = waits_for(vec![
        ResponseTemplate::new(429).insert_header("retry-after", "3"),
        ResponseTemplate::new(503).insert_header("retry-after", "5"),
        ResponseTemplate::new(429).insert_header("ratelimit-reset", "11"),
        ResponseTemplate::new(429)
            .insert_header("retry-after", "2")
            .insert_header("ratelimit-reset", "40"),
    ])
    .await;
    assert_eq!(w, [3000, 5000, 11_000, 2000]);
}

#[tokio::test(start_paused = true)]
async fn hourly_exhaustion_waits_for_top_of_hour() {
    // The test budget's wall clock is exactly the top of an hour: next window in 3600 s.
    let long = kandji_api::retry::RetryPolicy {
        max_elapsed: Duration::from_secs(7200),
        ..fast_retry()
    };
    let w = waits_with(
        vec![ResponseTemplate::new(429).insert_header("x-ratelimit-remaining-hour", "0")],
        long,
    )
    .await;
    assert_eq!(w.len(), 1);
    assert!((3_599_000..=3_600_000).contains(&w[0]), "{w:?}");
}

#[tokio::test(start_paused = true)]
async fn hourly_exhaustion_beyond_max_elapsed_gives_up_at_once() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v1/settings/licensing"))
        .respond_with(ResponseTemplate::new(429).insert_header("x-ratelimit-remaining-hour", "0"))
        .mount(&server)
        .await;
    let c = client(&server.uri()); // max_elapsed 10 min
    let t = tokio::time::Instant::now();
    let err = c.licensing().await.unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(1));
    match err {
        kandji_api::KandjiError::RateLimited {
            retry_after: Some(d),
            ..
        } => assert!(d > Duration::from_secs(3500)),
        other => panic!("{other:?}"),
    }
    // The budget learned it too: it reports the block for the status page.
    assert!(c.budget().state().blocked_for.is_some());
    assert_eq!(c.budget().state().server_remaining, Some(0));
}

#[tokio::test(start_paused = true)]
async fn jittered_waits_grow_within_bounds() {
    let envelopes = [1000u64, 2000, 4000, 8000, 16_000];
    let mut max_seen = [0u64; 5];
    for _ in 0..24 {
        let w = waits_for((0..5).map(|_| ResponseTemplate::new(500)).collect()).await;
        assert_eq!(w.len(), 5);
        for (i, ms) in w.iter().enumerate() {
            assert!(*ms <= envelopes[i], "wait {i} = {ms} > {}", envelopes[i]);
            max_seen[i] = max_seen[i].max(*ms);
        }
    }
    // Full jitter is uniform in [0, envelope]: over 24 runs the largest wait of attempt i
    // exceeds the previous envelope (probability of failure 2^-24 per attempt).
    for i in 1..5 {
        assert!(
            max_seen[i] > envelopes[i - 1],
            "attempt {i}: max {} not above {}",
            max_seen[i],
            envelopes[i - 1]
        );
    }
}
