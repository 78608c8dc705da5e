//! A host that cannot be reached fails fast, as `Unreachable`, naming the host and the cause;
//! a host that answers, even with errors, keeps the longer retry budget.

mod common;

use std::time::{Duration, Instant};

use common::*;
use kandji_api::KandjiError;
use kandji_api::check::ProbeResult;
use kandji_api::retry::RetryPolicy;

/// A loopback port nothing listens on (bound, then closed).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A client with the default retry policy for a port nothing listens on.
fn refusing_client() -> (u16, kandji_api::KandjiClient) {
    let port = closed_port();
    let c = client_with(
        &format!("http://127.0.0.1:{port}"),
        TOKEN,
        big_budget(),
        RetryPolicy::default(),
    );
    (port, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_fails_after_three_tries_naming_the_host() {
    let (port, c) = refusing_client();
    let t = Instant::now();
    let err = c.device("d1").await.unwrap_err();
    let took = t.elapsed();
    match &err {
        KandjiError::Unreachable { host, message, .. } => {
            assert_eq!(host, &format!("127.0.0.1:{port}"));
            assert!(!message.is_empty());
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert_eq!(err.kind(), "unreachable");
    assert!(err.to_string().contains("unreachable"), "{err}");
    assert_eq!(c.stats().attempts, 3);
    // Waits of at most 1 s and 2 s (full jitter) between the three tries.
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_against_a_refusing_host_tries_one_probe_and_reports_every_row() {
    let (_, c) = refusing_client();
    let t = Instant::now();
    let report = c.check(&probe_sets(&[])).await;
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    assert_eq!(c.stats().attempts, 3, "only the first probe is tried");
    assert!(report.endpoints.len() > 5);
    for e in &report.endpoints {
        assert!(
            matches!(
                &e.result,
                ProbeResult::Other(KandjiError::Unreachable { .. })
            ),
            "{}: {:?}",
            e.endpoint,
            e.result
        );
        assert_eq!(e.result.status(), "unreachable");
    }
    assert!(matches!(
        report.licensing,
        Err(KandjiError::Unreachable { .. })
    ));
}

/// A host that accepts connections and never answers: `check` gives up at its deadline.
#[tokio::test(start_paused = true)]
async fn check_against_a_silent_host_ends_at_its_deadline() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            open.push(s);
        }
    });
    let c = client_with(
        &format!("http://{addr}"),
        TOKEN,
        big_budget(),
        RetryPolicy::default(),
    );
    let t = tokio::time::Instant::now();
    let report = c.check(&probe_sets(&["devices", "users"])).await;
    assert!(
        t.elapsed() <= kandji_api::check::CHECK_REACH_DEADLINE + Duration::from_secs(1),
        "{:?}",
        t.elapsed()
    );
    for e in &report.endpoints {
        match &e.result {
            ProbeResult::Other(KandjiError::Unreachable { message, .. }) => {
                assert!(message.contains("no answer within"), "{message}");
            }
            other => panic!("{}: {other:?}", e.endpoint),
        }
    }
    hold.abort();
}
