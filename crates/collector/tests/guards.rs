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

async fn audit_checkpoint(env: &Env) -> serde_json::Value {
    env.store
        .checkpoint("acme", "audit_events")
        .await
        .unwrap()
        .expect("an audit checkpoint")
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
    let cp = audit_checkpoint(&env).await;
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
    let cp = audit_checkpoint(&env).await;
    assert!(cp["hwm_ms"].as_i64().unwrap() <= env.rt.now() + FUTURE_SKEW_MS);
}

/// Every cursor expires before it is used: the walk restarts a few times, then the stream
/// fails as `cursor_expiring`, keeping what it committed, instead of re-reading forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endlessly_expiring_cursor_fails_after_a_few_restarts_and_keeps_its_pages() {
    endlessly_expiring_cursor(false).await;
}

/// The same when the API refuses cursors with 404 (DRF's `CursorPagination` answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endlessly_expiring_cursor_refused_with_404_fails_after_a_few_restarts() {
    endlessly_expiring_cursor(true).await;
}

async fn endlessly_expiring_cursor(refusal_404: bool) {
    let mut cfg = sim_config(3000, 43);
    // A running clock: a cursor is refused once the clock has moved past its issue time.
    cfg.clock = ClockConfig {
        speed: 1.0,
        ..ClockConfig::default()
    };
    let env = env(cfg).await;
    env.sim.set_faults(Faults {
        expire_cursors: true,
        cursor_refusal_404: refusal_404,
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

/// A tenant that refuses one Prism category: the stream collects the other five, says
/// `degraded` naming the category and the API's answer, and asks again a day later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_prism_category_degrades_the_stream_and_the_others_go_on() {
    let mut cfg = sim_config(25, 44);
    cfg.refused_prism_categories = vec!["filevault".into()];
    let env = env(cfg).await;
    cycle(&env, &[StreamName::Devices, StreamName::DeviceDetails]).await;
    let state = |env: &Env| -> (String, String, String) {
        sql(&env.store)
            .query_row(
                "SELECT state, last_error_kind, last_error_message FROM stream_status
                 WHERE stream = 'device_details'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap()
    };
    let (st, kind, msg) = state(&env);
    assert_eq!(
        (st.as_str(), kind.as_str()),
        ("degraded", "category_unavailable")
    );
    assert!(
        msg.contains("filevault") && msg.contains("Invalid category"),
        "{msg}"
    );
    let per_category = |cat: &str| {
        count(
            &env.store,
            &format!(
                "SELECT count(*) FROM device_details WHERE category = '{cat}' AND removed_at IS NULL"
            ),
        )
    };
    assert_eq!(per_category("filevault"), 0);
    assert_eq!(per_category("device_information"), 25);
    // The posture categories cover the devices they apply to (Macs).
    for cat in [
        "application_firewall",
        "gatekeeper_and_xprotect",
        "startup_settings",
    ] {
        assert!(per_category(cat) > 0, "{cat}");
    }
    // Within the day it is not asked again; the state still says what is missing.
    env.sim.advance(Duration::from_secs(2 * 3600));
    cycle(&env, &[StreamName::DeviceDetails]).await;
    let (st, _, msg) = state(&env);
    assert_eq!(st, "degraded");
    assert!(msg.contains("asked again after"), "{msg}");
    // A day later it is asked again (and refused again, freshly).
    env.sim.advance(Duration::from_secs(23 * 3600));
    cycle(&env, &[StreamName::DeviceDetails]).await;
    let (st, _, msg) = state(&env);
    assert_eq!(st, "degraded");
    assert!(
        !msg.contains("asked again after") && msg.contains("Invalid category"),
        "{msg}"
    );
    // The source's badge shows the worst state of its streams.
    let states: Vec<String> = sql(&env.store)
        .prepare("SELECT state FROM stream_status")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        kandji_collector::web::model::overall(&states, true),
        "degraded"
    );
}

/// In the daemon's first cycle, compliance (which reads the device list) runs after the
/// devices stream's first run, so it collects at once rather than 0 for 15 minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_cycle_runs_compliance_after_devices() {
    let mut cfg = sim_config(40, 45);
    cfg.churn = kandji_sim::Churn::none();
    let sim = std::sync::Arc::new(kandji_sim::spawn(cfg).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let store = kandji_collector::store::Store::open(dir.path()).unwrap();
    let mut source = source_for(&sim, "acme");
    source.streams = vec![StreamName::Compliance, StreamName::Devices];
    let stop = tokio_util::sync::CancellationToken::new();
    let rt = std::sync::Arc::new(
        kandji_collector::engine::SourceRuntime::new(source, store.clone(), stop.clone()).unwrap(),
    );
    let notifies = [StreamName::Compliance, StreamName::Devices]
        .into_iter()
        .map(|s| (s, std::sync::Arc::new(tokio::sync::Notify::new())))
        .collect();
    let task = tokio::spawn(kandji_collector::engine::source_loop(rt, notifies));
    let done = async {
        loop {
            let n = count(
                &store,
                "SELECT count(*) FROM stream_status WHERE stream = 'compliance'
                   AND last_success_at IS NOT NULL",
            );
            if n > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), done)
        .await
        .expect("compliance ran");
    let first_run_records = count(
        &store,
        "SELECT last_run_records FROM stream_status WHERE stream = 'compliance'",
    );
    assert!(
        first_run_records > 0,
        "compliance's first run collected nothing"
    );
    stop.cancel();
    task.await.unwrap();
}

/// Shutdown asked for while a stream waits: it returns at once as `Shutdown` (the page in
/// flight committed or not started) and its state goes back to `pending`.
async fn stops_within_5s(
    env: &Env,
    rt: &kandji_collector::engine::SourceRuntime,
    stream: StreamName,
) {
    let run = rt.run_stream(stream);
    tokio::pin!(run);
    // Let it get into its wait.
    let early = tokio::time::timeout(Duration::from_secs(2), &mut run).await;
    assert!(early.is_err(), "{stream} did not wait: {early:?}");
    let asked = std::time::Instant::now();
    env.stop.cancel();
    let r = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .unwrap_or_else(|_| panic!("{stream} still running 5 s after shutdown"));
    assert!(matches!(r, Err(StreamError::Shutdown)), "{stream}: {r:?}");
    assert!(asked.elapsed() < Duration::from_secs(5));
    let state: String = sql(&env.store)
        .query_row(
            "SELECT state FROM stream_status WHERE stream = ?1",
            [stream.as_str()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(state, "pending", "{stream}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_interrupts_an_export_poll() {
    let mut cfg = sim_config(10, 46);
    cfg.export_polls = 1_000_000; // never ready
    let mut env = env(cfg).await;
    env.rt.export_poll = Duration::from_millis(200);
    let rt = std::mem::replace(
        &mut env.rt,
        kandji_collector::engine::SourceRuntime::new(
            source_for(&env.sim, "unused"),
            env.store.clone(),
            tokio_util::sync::CancellationToken::new(),
        )
        .unwrap(),
    );
    stops_within_5s(&env, &rt, StreamName::Apps).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_interrupts_a_retry_sleep() {
    let mut cfg = sim_config(10, 47);
    // Every request answers 429 with a long Retry-After: the client sleeps on it.
    cfg.faults.storm_429 = 1_000_000;
    let env = env(cfg).await;
    stops_within_5s(&env, &env.rt, StreamName::Devices).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_interrupts_a_budget_wait() {
    let env = env(sim_config(700, 48)).await;
    let mut source = source_for(&env.sim, "acme");
    // A share of 2 requests an hour: the devices walk (3 pages of 300) waits an hour for its
    // third.
    source.hourly_limit = 2;
    let rt =
        kandji_collector::engine::SourceRuntime::new(source, env.store.clone(), env.stop.clone())
            .unwrap();
    stops_within_5s(&env, &rt, StreamName::Devices).await;
}

/// "Now" for every window is the tenant's clock (its `Date` header), whichever way and
/// however far it is from this host's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn now_follows_the_tenants_clock_both_ways() {
    for start in [
        time::macros::datetime!(2024-03-01 12:00:00 UTC),
        time::macros::datetime!(2031-07-01 12:00:00 UTC),
    ] {
        let mut cfg = sim_config(10, 49);
        cfg.clock = ClockConfig { start, speed: 0.0 };
        let mut env = env(cfg).await;
        env.rt.follow_server_clock = true;
        env.rt.clock = std::sync::Arc::new(kandji_collector::store::now_ms);
        env.rt.run_stream(StreamName::Tags).await.unwrap();
        let sim_ms = (env.sim.now().unix_timestamp_nanos() / 1_000_000) as i64;
        let skew = (env.rt.now() - sim_ms).abs();
        assert!(
            skew < 2_000,
            "{start}: engine now is {skew} ms from the tenant's"
        );
    }
}

/// A tenant whose clock is a month behind this host's: Prism and threat deltas still find
/// every change, because their windows follow the tenant's clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deltas_follow_a_tenant_whose_clock_differs_from_the_hosts() {
    let mut cfg = sim_config(30, 50);
    cfg.clock = ClockConfig {
        start: time::OffsetDateTime::now_utc() - time::Duration::days(30),
        speed: 0.0,
    };
    let mut env = env(cfg).await;
    env.rt.follow_server_clock = true;
    env.rt.clock = std::sync::Arc::new(kandji_collector::store::now_ms);
    let streams = [
        StreamName::Blueprints,
        StreamName::Tags,
        StreamName::Devices,
        StreamName::DeviceDetails,
        StreamName::Apps,
        StreamName::Threats,
        StreamName::AuditEvents,
    ];
    cycle(&env, &streams).await;
    // A few seconds over 2 h a step: the `Date` header has one-second resolution, so the
    // third step is past the 6 h full export (which also finds removed apps) on either clock.
    for _ in 0..3 {
        env.sim.advance(Duration::from_secs(2 * 3600 + 5));
        cycle(&env, &streams).await;
    }
    // A device is marked removed after two consecutive sweeps missed it: one more sweep, at
    // the same tenant time, settles a removal the last step saw once.
    cycle(&env, &[StreamName::Devices]).await;
    for cat in ["devices", "apps", "threats", "audit_events"] {
        let truth = match cat {
            // One entry per device with its apps (on Apple devices: what Prism lists).
            "apps" => truth_app_keys(&env.sim).len() as i64,
            _ => arr(env.sim.truth(cat)).len() as i64,
        };
        let stored = match cat {
            "devices" => count(
                &env.store,
                "SELECT count(*) FROM devices WHERE removed_at IS NULL",
            ),
            "apps" => count(
                &env.store,
                "SELECT count(*) FROM app_installs WHERE removed_at IS NULL",
            ),
            s => count(
                &env.store,
                &format!("SELECT count(*) FROM events WHERE stream = '{s}'"),
            ),
        };
        assert_eq!(stored, truth, "{cat}");
    }
}

async fn plant_checkpoint(env: &Env, stream: &str, value: serde_json::Value) {
    let mut b = Batch::new("acme", stream, env.rt.now(), "inventory");
    b.checkpoint = Some(value);
    env.store.commit_page(b).await.unwrap();
}

/// A `/users` cursor in the checkpoint that the API no longer takes (DRF answers 404
/// "Invalid cursor") restarts the walk; it does not fail the stream run after run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_cursor_refused_with_404_restarts_the_walk() {
    let env = env(sim_config(900, 47)).await;
    plant_checkpoint(
        &env,
        "users",
        serde_json::json!({"sweep": 1, "started_at": 0, "segment": 0,
            "pos": {"kind": "cursor", "value": "bz0tMQ=="}, "done": false}),
    )
    .await;
    env.sim.reset_stats();
    env.rt
        .run_stream(StreamName::Users)
        .await
        .expect("the walk restarts");
    let refused = env.sim.stats().endpoints["GET /api/v1/users"]
        .get("404")
        .copied()
        .unwrap_or(0);
    assert_eq!(refused, 1, "the planted cursor was sent and refused once");
    let stored = store_set(&env.store, "SELECT key FROM users WHERE removed_at IS NULL");
    let truth: std::collections::BTreeSet<String> = arr(env.sim.truth("users"))
        .iter()
        .map(|u| str_of(u, "id"))
        .collect();
    assert_eq!(stored, truth);
}

/// A page-number checkpoint past the end of the list (it shrank since): DRF answers 404
/// "Invalid page.", which ends the walk; the next sweep collects everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_past_the_end_ends_the_walk() {
    let env = env(sim_config(60, 48)).await;
    plant_checkpoint(
        &env,
        "ade_devices",
        serde_json::json!({"sweep": 1, "started_at": 0, "segment": 0,
            "pos": {"kind": "page", "value": 99}, "done": false}),
    )
    .await;
    env.sim.reset_stats();
    env.rt
        .run_stream(StreamName::AdeDevices)
        .await
        .expect("a page past the end is the end of the walk");
    let invalid = env.sim.stats().endpoints["GET /api/v1/integrations/apple/ade/devices"]
        .get("404")
        .copied()
        .unwrap_or(0);
    assert_eq!(invalid, 1, "page 99 was asked for and refused");
    env.rt.run_stream(StreamName::AdeDevices).await.unwrap();
    let stored = store_set(
        &env.store,
        "SELECT key FROM ade_devices WHERE removed_at IS NULL",
    );
    let truth: std::collections::BTreeSet<String> = arr(env.sim.truth("ade_devices"))
        .iter()
        .map(|u| str_of(u, "id"))
        .collect();
    assert!(!truth.is_empty());
    assert_eq!(stored, truth);
}

/// Devices that were offline report audit events late: dated up to 20 h before events already
/// read. The hourly deep walk (24 h behind the mark) collects every one, once; nothing is
/// duplicated and the deep walks' re-reads make no output records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_audit_events_are_collected_once() {
    use kandji_collector::streams::audit_events::LATE_WINDOW_MS;
    let mut cfg = sim_config(300, 49);
    cfg.churn = kandji_sim::Churn {
        threats: 200.0,
        vulnerabilities: 200.0,
        late_audit: 1.0,
        late_audit_max_hours: 20.0,
        ..kandji_sim::Churn::none()
    };
    const { assert!(20 * 3600 * 1000 < LATE_WINDOW_MS) };
    let env = env(cfg).await;
    cycle(&env, &[StreamName::AuditEvents]).await;
    let outbox = || {
        count(
            &env.store,
            "SELECT count(*) FROM outbox WHERE tbl = 'events'",
        )
    };
    for _ in 0..30 {
        env.sim.advance(Duration::from_secs(3600));
        cycle(&env, &[StreamName::AuditEvents]).await;
    }
    let truth: std::collections::BTreeSet<String> = arr(env.sim.truth("audit_events"))
        .iter()
        .map(|e| str_of(e, "id"))
        .collect();
    let stored = store_set(
        &env.store,
        "SELECT uid FROM events WHERE stream = 'audit_events'",
    );
    let missing = truth.difference(&stored).count();
    assert_eq!(
        missing,
        0,
        "{missing} of {} late events not collected",
        truth.len()
    );
    assert_eq!(stored.len(), truth.len());
    // One output record per event: the re-reads were duplicates, not news.
    assert_eq!(outbox() as usize, truth.len());
    // An hour later the deep walk re-reads the day again: still one record per event.
    env.sim.advance(Duration::from_secs(3600));
    cycle(&env, &[StreamName::AuditEvents]).await;
    let events = count(
        &env.store,
        "SELECT count(*) FROM events WHERE stream = 'audit_events'",
    );
    assert!(events as usize > truth.len());
    assert_eq!(outbox(), events);
}

/// How late an audit event can be and still be collected: events arrive up to 48 h late,
/// the collector syncs hourly; each event's lateness is measured when it first appears in
/// the feed (its `occurred_at` behind the tenant's clock). Every event up to 23 h late (the
/// 24 h window less the hour between deep walks) is collected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn how_late_an_audit_event_can_be_and_still_be_collected() {
    let mut cfg = sim_config(300, 50);
    cfg.churn = kandji_sim::Churn {
        threats: 200.0,
        vulnerabilities: 200.0,
        late_audit: 1.0,
        late_audit_max_hours: 48.0,
        ..kandji_sim::Churn::none()
    };
    let env = env(cfg).await;
    cycle(&env, &[StreamName::AuditEvents]).await;
    let ids = |env: &Env| -> std::collections::BTreeMap<String, i64> {
        arr(env.sim.truth("audit_events"))
            .iter()
            .map(|e| {
                let at = time::OffsetDateTime::parse(
                    &str_of(e, "occurred_at"),
                    &time::format_description::well_known::Rfc3339,
                )
                .expect("occurred_at")
                .unix_timestamp();
                (str_of(e, "id"), at)
            })
            .collect()
    };
    let mut seen = ids(&env);
    let mut lateness: std::collections::BTreeMap<String, i64> = Default::default();
    for _ in 0..72 {
        env.sim.advance(Duration::from_secs(3600));
        let now = env.sim.now().unix_timestamp();
        for (id, at) in ids(&env) {
            if let std::collections::btree_map::Entry::Vacant(v) = seen.entry(id.clone()) {
                v.insert(at);
                lateness.insert(id, now - at);
            }
        }
        cycle(&env, &[StreamName::AuditEvents]).await;
    }
    let stored = store_set(
        &env.store,
        "SELECT uid FROM events WHERE stream = 'audit_events'",
    );
    let hours = |s: i64| s as f64 / 3600.0;
    let (mut max_collected, mut min_missed, mut missed) = (0i64, i64::MAX, 0);
    for (id, late) in &lateness {
        if stored.contains(id) {
            max_collected = max_collected.max(*late);
        } else {
            min_missed = min_missed.min(*late);
            missed += 1;
        }
    }
    println!(
        "{} events arrived late (up to {:.1} h); collected up to {:.1} h late; {missed} missed, the least late of them {:.1} h",
        lateness.len(),
        hours(lateness.values().copied().max().unwrap_or(0)),
        hours(max_collected),
        hours(if missed > 0 { min_missed } else { 0 })
    );
    assert!(lateness.len() > 1000);
    assert!(
        missed == 0 || min_missed > 23 * 3600,
        "an event {:.1} h late was missed",
        hours(min_missed)
    );
    assert!(max_collected > 20 * 3600, "{:.1} h", hours(max_collected));
}

/// A tenant without EDR, whatever its 403 says: with a text that names the licence the
/// threats stream is `not_licensed`; with DRF's permission text or an unknown one it says "not
/// licensed or not permitted" (state `missing_permission`, kind `not_licensed_or_denied`, a
/// hint naming both causes) instead of guessing. Either way the other streams run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlicensed_feature_is_reported_by_what_the_403_can_tell() {
    for (i, text) in kandji_sim::LICENCE_TEXTS.iter().enumerate() {
        let mut cfg = sim_config(20, 51);
        cfg.licensed_edr = false;
        cfg.unlicensed_detail = (*text).to_string();
        let env = env(cfg).await;
        let results = kandji_collector::engine::sync_once(
            &env.rt,
            &[StreamName::Devices, StreamName::Threats],
        )
        .await;
        for r in &results {
            if r.stream == StreamName::Devices {
                assert!(r.result.is_ok(), "devices still run");
            }
        }
        let (state, kind, message): (String, String, String) = sql(&env.store)
            .query_row(
                "SELECT state, last_error_kind, last_error_message FROM stream_status
                 WHERE stream = 'threats'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        if i == 0 {
            assert_eq!(
                (state.as_str(), kind.as_str()),
                ("not_licensed", "not_licensed")
            );
        } else {
            assert_eq!(
                (state.as_str(), kind.as_str()),
                ("missing_permission", "not_licensed_or_denied"),
                "{text}"
            );
            assert!(
                message.contains("not licensed or not permitted"),
                "{message}"
            );
            let hint =
                kandji_collector::engine::status::hint(&kind, Some("GET /api/v1/threat-details"));
            assert!(
                hint.contains("permission") && hint.contains("feature"),
                "{hint}"
            );
        }
    }
}

/// The 2023 recordings carry no rate-limit headers: without them the collector still collects
/// everything, pacing from its own count, and never meets a 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_without_rate_limit_headers_is_collected_without_a_429() {
    let mut cfg = sim_config(120, 52);
    cfg.rate_limit_headers = false;
    let env = env(cfg).await;
    for _ in 0..3 {
        cycle(&env, &[]).await;
    }
    assert_matches_truth(&env);
    let refused: u64 = env
        .sim
        .stats()
        .endpoints
        .values()
        .filter_map(|m| m.get("429"))
        .sum();
    assert_eq!(refused, 0);
}

/// A clock that runs backwards (an NTP step, or the tenant's `Date` re-read at one-second
/// resolution) must not make a first apps export look older than itself: its rows were once
/// stamped before the snapshot began, and the snapshot's end marked them all removed (5,000
/// `app_removed` events from a kill -9 variant of the crash test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_that_steps_back_removes_nothing_from_a_first_snapshot() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};
    let mut env = env(sim_config(100, 71)).await;
    let start = (env.sim.now().unix_timestamp_nanos() / 1_000_000) as i64;
    let t = Arc::new(AtomicI64::new(start));
    // Every reading is 7 ms behind the one before (all within the minute the engine holds).
    env.rt.clock = Arc::new(move || t.fetch_sub(7, Ordering::Relaxed));
    cycle(&env, &[StreamName::Devices, StreamName::Apps]).await;
    let truth = truth_app_keys(&env.sim);
    assert!(
        truth.len() > 5_000,
        "two batches at least ({})",
        truth.len()
    );
    let live = store_set(&env.store, "SELECT key FROM apps WHERE removed_at IS NULL");
    assert_eq!(live.len(), truth.len(), "every install is live");
    assert_eq!(
        count(
            &env.store,
            "SELECT count(*) FROM events WHERE event_type = 'app_removed'"
        ),
        0,
        "a first snapshot removes nothing"
    );
}

/// A large tenant (350 blueprints over two pages, 2,500 tags in one answer) is collected
/// whole, and a tag filter naming a tag far down the list resolves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_tenants_blueprints_and_tags_are_collected_whole() {
    let mut cfg = sim_config(30, 83);
    cfg.large_tenant = true;
    let env = env(cfg).await;
    cycle(&env, &[StreamName::Blueprints, StreamName::Tags]).await;
    assert_eq!(
        count(
            &env.store,
            "SELECT count(*) FROM blueprints WHERE removed_at IS NULL"
        ),
        350
    );
    assert_eq!(
        count(
            &env.store,
            "SELECT count(*) FROM tags WHERE removed_at IS NULL"
        ),
        2_500
    );
    assert_eq!(
        count(
            &env.store,
            "SELECT count(*) FROM tags WHERE json_extract(raw, '$.name') = 'team-2500'"
        ),
        1
    );
}
