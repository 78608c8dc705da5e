//! Guards against a tenant that behaves as the live API can: a record dated in the future,
//! a cursor that keeps expiring. Each runs against the simulator.

mod common;

use std::time::Duration;

use common::*;
use kandji_collector::engine::{FUTURE_SKEW_MS, MAX_CURSOR_RESTARTS, StreamError};
use kandji_collector::store::Batch;
use kandji_collector::streams::StreamName;
use kandji_sim::{ClockConfig, Faults};

fn audit_in_store(env: &Env) -> i64 {
    count(
        &env.store,
        "SELECT count(*) FROM events WHERE stream = 'audit_events'",
    )
}

fn audit_in_truth(env: &Env) -> usize {
    arr(env.sim.truth("audit_events")).len()
}

/// One audit event dated 9999-12-31 (and one in 2099) is stored and flagged, and the stream
/// keeps collecting what comes after it: the high-water mark never passes now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_future_dated_record_is_flagged_and_does_not_blind_the_stream() {
    let env = env(sim_config(20, 41)).await;
    cycle(&env, &[StreamName::AuditEvents]).await;
    let far = env
        .sim
        .inject_audit_event(time::macros::datetime!(9999-12-31 23:59:59 UTC));
    let near = env
        .sim
        .inject_audit_event(time::macros::datetime!(2099-01-01 00:00:00 UTC));
    assert!(!far.is_empty() && !near.is_empty());
    cycle(&env, &[StreamName::AuditEvents]).await;
    let cp = env
        .store
        .checkpoint("acme", "audit_events")
        .await
        .unwrap()
        .unwrap();
    let hwm = cp["hwm_ms"].as_i64().unwrap();
    assert!(hwm <= env.rt.now() + FUTURE_SKEW_MS, "{cp}");
    for id in [&far, &near] {
        let summary: String = sql(&env.store)
            .query_row(
                "SELECT summary FROM events WHERE stream = 'audit_events' AND uid = ?1",
                [id],
                |r| r.get(0),
            )
            .unwrap();
        assert!(summary.starts_with("[future-dated "), "{summary}");
    }
    // Later events are still collected, run after run.
    for _ in 0..3 {
        env.sim.advance(Duration::from_secs(6 * 3600));
        cycle(&env, &[StreamName::AuditEvents]).await;
        assert_eq!(audit_in_store(&env) as usize, audit_in_truth(&env));
    }
}

/// A store an earlier version blinded (its mark moved to 9999 by such a record) recovers:
/// the mark goes back to the newest stored event that is not in the future.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mark_already_in_the_future_is_brought_back() {
    let env = env(sim_config(20, 42)).await;
    cycle(&env, &[StreamName::AuditEvents]).await;
    let before = audit_in_store(&env);
    let mut b = Batch::new("acme", "audit_events", env.rt.now(), "audit");
    b.checkpoint = Some(serde_json::json!({
        "cursor": null, "start_ms": null, "hwm_ms": 253_402_300_799_000i64, "hwm_id": "ZZZ"
    }));
    env.store.commit_page(b).await.unwrap();
    env.sim.advance(Duration::from_secs(12 * 3600));
    cycle(&env, &[StreamName::AuditEvents]).await;
    assert!(audit_in_store(&env) > before);
    assert_eq!(audit_in_store(&env) as usize, audit_in_truth(&env));
    let cp = env
        .store
        .checkpoint("acme", "audit_events")
        .await
        .unwrap()
        .unwrap();
    assert!(cp["hwm_ms"].as_i64().unwrap() <= env.rt.now() + FUTURE_SKEW_MS);
}

/// Every cursor expires before it is used: the walk restarts a few times, then the stream
/// fails as `cursor_expiring`, keeping what it committed, instead of re-reading forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endlessly_expiring_cursor_fails_after_a_few_restarts_and_keeps_its_pages() {
    let mut cfg = sim_config(3000, 43);
    // A running clock: a cursor is refused once the clock has moved past its issue time.
    cfg.clock = ClockConfig {
        speed: 1.0,
        ..ClockConfig::default()
    };
    let env = env(cfg).await;
    env.sim.set_faults(Faults {
        expire_cursors: true,
        ..Faults::default()
    });
    env.sim.reset_stats();
    let err = env
        .rt
        .run_stream(StreamName::AuditEvents)
        .await
        .expect_err("a cursor that always expires fails the run");
    assert!(
        matches!(err, StreamError::CursorExpiring { restarts, .. } if restarts == MAX_CURSOR_RESTARTS + 1),
        "{err}"
    );
    assert_eq!(err.kind(), "cursor_expiring");
    let audit_requests: u64 = env
        .sim
        .stats()
        .endpoints
        .iter()
        .filter(|(k, _)| k.contains("audit"))
        .flat_map(|(_, v)| v.values())
        .sum();
    // Each restart is one good page and one refused cursor.
    assert!(
        audit_requests <= 2 * u64::from(MAX_CURSOR_RESTARTS + 1) + 1,
        "{audit_requests} requests"
    );
    // The pages read before each refusal are kept.
    assert!(audit_in_store(&env) >= 500, "{}", audit_in_store(&env));
    let (state, kind): (String, String) = sql(&env.store)
        .query_row(
            "SELECT state, last_error_kind FROM stream_status WHERE stream = 'audit_events'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (state.as_str(), kind.as_str()),
        ("failing", "cursor_expiring")
    );
    // Without the fault, the next run finishes the log.
    env.sim.set_faults(Faults::default());
    env.rt.run_stream(StreamName::AuditEvents).await.unwrap();
    assert_eq!(audit_in_store(&env) as usize, audit_in_truth(&env));
}
