//! wiremock edge cases: retries and their timing, error mapping, pagination guards.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use kandji_api::retry::RetryPolicy;
use kandji_api::{KandjiError, PaginationProblem, Position};
use serde_json::{Value, json};
use tokio::time::Instant;
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn devices(n: usize, from: usize) -> Value {
    Value::Array(
        (from..from + n)
            .map(|i| json!({"device_id": format!("d{i}"), "user": ""}))
            .collect(),
    )
}

#[tokio::test]
async fn sends_honest_headers() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/settings/licensing"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header("accept", "application/json"))
        .and(header("cache-control", "no-cache"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"counts": {"computers_count": "3"}, "tenantOverLicenseLimit": "False"}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server.uri());
    let lic = c.licensing().await.unwrap();
    assert_eq!(lic.counts.unwrap().computers_count, Some(3));
    assert_eq!(lic.tenant_over_license_limit, Some(false));
    let reqs = server.received_requests().await.unwrap();
    let ua = reqs[0].headers.get("user-agent").unwrap().to_str().unwrap();
    assert!(ua.starts_with("kandji-collector/"), "{ua}");
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_exactly() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v1/settings/licensing"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "7")
                .set_body_json(json!({"message": "API rate limit exceeded"})),
        )
        .up_to_n_times(2)
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(path("/api/v1/settings/licensing"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server.uri());
    let t = Instant::now();
    c.licensing().await.unwrap();
    let el = t.elapsed();
    assert!(
        el >= Duration::from_secs(14) && el < Duration::from_millis(14_500),
        "{el:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn ratelimit_reset_used_when_no_retry_after() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v1/settings/licensing"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("ratelimit-reset", "30")
                .insert_header("ratelimit-remaining", "0"),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(path("/api/v1/settings/licensing"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&server)
        .await;
    let c = client(&server.uri());
    let t = Instant::now();
    c.licensing().await.unwrap();
    let el = t.elapsed();
    assert!(
        el >= Duration::from_secs(30) && el < Duration::from_millis(31_100),
        "{el:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn backoff_without_hint_grows_within_full_jitter_bounds() {
    // Without any server hint, each wait is uniform in [0, envelope] with envelopes 1,2,4,8 s.
    for _ in 0..5 {
        let server = MockServer::start().await;
        Mock::given(path("/api/v1/settings/licensing"))
            .respond_with(ResponseTemplate::new(429))
            .up_to_n_times(4)
            .mount(&server)
            .await;
        Mock::given(path("/api/v1/settings/licensing"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
            .mount(&server)
            .await;
        let c = client(&server.uri());
        let t = Instant::now();
        c.licensing().await.unwrap();
        let el = t.elapsed();
        assert!(el <= Duration::from_millis(15_100), "{el:?}");
    }
    // The envelopes themselves grow (backon exponential) and cap.
    let env: Vec<_> = RetryPolicy::default().envelopes().take(4).collect();
    assert_eq!(env, [1, 2, 4, 8].map(Duration::from_secs));
}

#[tokio::test(start_paused = true)]
async fn storm_of_429_gives_up_after_bounded_time() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v1/settings/licensing"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "10"))
        .mount(&server)
        .await;
    let retry = RetryPolicy {
        max_elapsed: Duration::from_secs(60),
        ..RetryPolicy::default()
    };
    let c = client_with(&server.uri(), TOKEN, big_budget(), retry);
    let t = Instant::now();
    let err = c.licensing().await.unwrap_err();
    assert!(
        matches!(err, KandjiError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(10)),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert_eq!(err.kind(), "rate_limited");
    assert!(t.elapsed() <= Duration::from_secs(60));
    let n = server.received_requests().await.unwrap().len();
    assert!((6..=7).contains(&n), "{n}");
}

#[tokio::test(start_paused = true)]
async fn burst_of_5xx_recovers() {
    let server = MockServer::start().await;
    for status in [500, 502, 503, 504] {
        Mock::given(path("/api/v1/settings/licensing"))
            .respond_with(
                ResponseTemplate::new(status).set_body_string("<html><h1>Bad Gateway</h1></html>"),
            )
            .up_to_n_times(1)
            .mount(&server)
            .await;
    }
    Mock::given(path("/api/v1/settings/licensing"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"counts": {}})))
        .mount(&server)
        .await;
    let c = client(&server.uri());
    c.licensing().await.unwrap();
    assert_eq!(server.received_requests().await.unwrap().len(), 5);
    let st = c.stats();
    assert_eq!(
        (st.attempts, st.ok, st.retries, st.server_errors, st.gave_up),
        (5, 1, 4, 4, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn truncated_json_is_retried_then_decode_error() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v1/devices"))
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"[{"device_id": "a", "devi"#))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(path("/api/v1/devices"))
        .respond_with(ResponseTemplate::new(200).set_body_json(devices(3, 0)))
        .mount(&server)
        .await;
    let c = client(&server.uri());
    let items = collect_items(c.devices(vec![], None)).await.unwrap();
    assert_eq!(items.len(), 3);

    let server = MockServer::start().await;
    Mock::given(path("/api/v1/devices"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>oops</html>"))
        .expect(4)
        .mount(&server)
        .await;
    let c = client(&server.uri());
    let err = collect_items(c.devices(vec![], None)).await.unwrap_err();
    assert!(
        matches!(err, KandjiError::Decode { ref endpoint, .. } if endpoint == "GET /api/v1/devices"),
        "{err:?}"
    );
}

#[tokio::test]
async fn error_statuses_are_typed_and_not_retried() {
    let server = MockServer::start().await;
    let cases: Vec<(&str, ResponseTemplate)> = vec![
        ("/api/v1/devices/x1", ResponseTemplate::new(401).set_body_json(json!({"detail": "Invalid token."}))),
        ("/api/v1/devices/x2", ResponseTemplate::new(403).set_body_json(json!({"detail": "You do not have permission to perform this action."}))),
        ("/api/v1/devices/x3", ResponseTemplate::new(403).set_body_json(json!({"detail": "This feature is not enabled for your tenant."}))),
        ("/api/v1/devices/x4", ResponseTemplate::new(404).set_body_string("<!doctype html><html><body><h1>Not Found</h1><p>The requested resource was not found.</p></body></html>")),
        ("/api/v1/devices/x5", ResponseTemplate::new(404).set_body_json(json!({"message": "no Route matched with those values", "request_id": "abc"}))),
        ("/api/v1/devices/x6", ResponseTemplate::new(400).set_body_json(json!(["Device is not in lost mode."]))),
        ("/api/v1/devices/x7", ResponseTemplate::new(400).set_body_json(json!({"dep_account": ["Enter a valid UUID."]}))),
        ("/api/v1/devices/x8", ResponseTemplate::new(415).set_body_json(json!("Unsupported"))),
    ];
    for (p, r) in cases {
        Mock::given(path(p)).respond_with(r).mount(&server).await;
    }
    let c = client(&server.uri());
    let e = |id: &'static str| {
        let c = c.clone();
        async move { c.device(id).await.unwrap_err() }
    };
    let ep = "GET /api/v1/devices/{device_id}".to_string();
    assert!(matches!(e("x1").await, KandjiError::Unauthorized { endpoint } if endpoint == ep));
    assert!(matches!(e("x2").await, KandjiError::PermissionDenied { endpoint } if endpoint == ep));
    assert!(matches!(e("x3").await, KandjiError::NotLicensed { .. }));
    assert!(
        matches!(e("x4").await, KandjiError::NotFound { message, .. } if message == "Not Found")
    );
    assert!(matches!(e("x5").await, KandjiError::NoRoute { .. }));
    assert!(
        matches!(e("x6").await, KandjiError::BadRequest { status: 400, message, .. } if message == "Device is not in lost mode.")
    );
    assert!(
        matches!(e("x7").await, KandjiError::BadRequest { message, .. } if message.contains("Enter a valid UUID"))
    );
    assert!(matches!(
        e("x8").await,
        KandjiError::BadRequest { status: 415, .. }
    ));
    for id in ["x1", "x2", "x3", "x4", "x5", "x6"] {
        assert!(!e(id).await.is_retryable());
    }
    // No retries: 8 + 6 requests in total.
    assert_eq!(server.received_requests().await.unwrap().len(), 14);
}

#[tokio::test]
async fn short_page_ends_offset_walk_and_resume_works() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v1/devices"))
        .and(query_param("offset", "0"))
        .and(query_param("limit", "300"))
        .respond_with(ResponseTemplate::new(200).set_body_json(devices(300, 0)))
        .mount(&server)
        .await;
    Mock::given(path("/api/v1/devices"))
        .and(query_param("offset", "300"))
        .respond_with(ResponseTemplate::new(200).set_body_json(devices(300, 300)))
        .mount(&server)
        .await;
    Mock::given(path("/api/v1/devices"))
        .and(query_param("offset", "600"))
        .respond_with(ResponseTemplate::new(200).set_body_json(devices(5, 600)))
        .mount(&server)
        .await;
    let c = client(&server.uri());
    let pages = collect(c.devices(vec![], None)).await.unwrap();
    assert_eq!(
        pages.iter().map(|p| p.items.len()).collect::<Vec<_>>(),
        [300, 300, 5]
    );
    assert_eq!(pages[0].next, Some(Position::Offset(300)));
    assert_eq!(pages[2].next, None);
    // Resume from a stored checkpoint.
    let rest = collect(c.devices(vec![], pages[0].next.clone()))
        .await
        .unwrap();
    assert_eq!(rest.len(), 2);
    assert_eq!(rest[0].items[0].device_id.as_deref(), Some("d300"));
    assert_eq!(rest[0].position, Some(Position::Offset(300)));
}

#[tokio::test]
async fn repeated_page_stops_loudly() {
    let server = MockServer::start().await;
    // A server that ignores offset: every page is the same.
    Mock::given(path("/api/v1/devices"))
        .respond_with(ResponseTemplate::new(200).set_body_json(devices(300, 0)))
        .mount(&server)
        .await;
    let c = client(&server.uri());
    let results: Vec<_> = c.devices(vec![], None).collect().await;
    assert_eq!(results.len(), 2);
    assert!(results[0].is_ok());
    assert!(matches!(
        results[1],
        Err(KandjiError::Pagination {
            problem: PaginationProblem::RepeatedPage { page_index: 1 },
            ..
        })
    ));
}

#[tokio::test]
async fn stuck_cursor_stops_loudly() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v1/audit/events"))
        .and(query_param_is_missing("cursor"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"results": [{"id": "01A"}], "next": "https://acme.api.kandji.io/api/v1/audit/events?cursor=c1&limit=500", "previous": null})))
        .mount(&server)
        .await;
    Mock::given(path("/api/v1/audit/events"))
        .and(query_param("cursor", "c1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"results": [{"id": "01B"}], "next": "https://acme.api.kandji.io/api/v1/audit/events?cursor=c1&limit=500", "previous": null})))
        .mount(&server)
        .await;
    let c = client(&server.uri());
    let results: Vec<_> = c.audit_events(vec![], None).collect().await;
    assert_eq!(results.len(), 2, "{results:?}");
    let err = results[1].as_ref().unwrap_err();
    assert!(
        matches!(
            err,
            KandjiError::Pagination {
                problem: PaginationProblem::StuckCursor { .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.kind(), "pagination");
}

#[tokio::test]
async fn next_url_on_web_host_is_rebuilt_against_base() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v1/users"))
        .and(query_param_is_missing("cursor"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "results": [{"id": "u1", "email": "a@x", "active": "True"}],
            "next": "https://acme.kandji.io/api/v1/users?cursor=cD0yMDI0", "previous": null})))
        .mount(&server)
        .await;
    Mock::given(path("/api/v1/users"))
        .and(query_param("cursor", "cD0yMDI0"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"results": [{"id": "u2", "archived": false}], "next": null, "previous": "x"}),
        ))
        .mount(&server)
        .await;
    let c = client(&server.uri());
    let pages = collect(c.users(vec![], None)).await.unwrap();
    assert_eq!(pages.len(), 2);
    assert_eq!(pages[0].next, Some(Position::Cursor("cD0yMDI0".into())));
    assert_eq!(pages[0].items[0].active, Some(true));
    assert_eq!(pages[1].items[0].id.as_deref(), Some("u2"));
    // Every request went to the configured base; users carry no limit param.
    for r in server.received_requests().await.unwrap() {
        assert!(r.url.query().unwrap_or("").find("limit").is_none());
    }
}

#[tokio::test]
async fn max_pages_bound() {
    let server = MockServer::start().await;
    // Prism: each page a new cursor; endless.
    for i in 0..5 {
        Mock::given(path("/api/v1/prism/apps"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [{"device_id": format!("d{i}")}], "cursor": format!("c{}", i + 1), "total": null})))
            .up_to_n_times(1)
            .mount(&server)
            .await;
    }
    let base = kandji_api::ApiBase::parse(&server.uri(), kandji_api::Region::Us, true).unwrap();
    let mut cfg = kandji_api::ClientConfig::new(base, TOKEN.to_string().into(), big_budget());
    cfg.max_pages = 3;
    cfg.pool_idle_timeout = None;
    let c = kandji_api::KandjiClient::new(cfg).unwrap();
    let results: Vec<_> = c.prism("apps", vec![], None).collect().await;
    assert_eq!(results.len(), 4);
    assert!(matches!(
        results[3],
        Err(KandjiError::Pagination {
            problem: PaginationProblem::TooManyPages { max_pages: 3 },
            ..
        })
    ));
}

/// A gateway answering `X-RateLimit-Limit-Hour: 0` (once measured halting every request until
/// the top of the hour) is not believed: the client's next requests go out at once.
#[tokio::test]
async fn a_zero_hourly_limit_header_does_not_halt_the_client() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v1/settings/licensing"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-ratelimit-limit-hour", "0")
                .insert_header("x-ratelimit-remaining-hour", "0")
                .set_body_json(json!({"counts": {"computers_count": "3"}})),
        )
        .expect(5)
        .mount(&server)
        .await;
    let c = client(&server.uri());
    let started = std::time::Instant::now();
    for _ in 0..5 {
        tokio::time::timeout(Duration::from_secs(5), c.licensing())
            .await
            .expect("a request waited on a zero limit")
            .expect("licensing");
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        c.budget().state().blocked_for.is_none(),
        "{:?}",
        c.budget().state()
    );
}
