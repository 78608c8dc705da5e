//! Fidelity: after convergence the store equals the simulator's ground truth, for every
//! stream, with no missing rows and no duplicates; removed devices are marked.

mod common;

use std::time::Duration;

use common::*;
use kandji_sim::Churn;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_tenant_is_collected_completely_in_one_cycle() {
    let mut cfg = sim_config(60, 7);
    cfg.churn = Churn::none();
    let env = env(cfg).await;
    cycle(&env, &[]).await;
    assert_matches_truth(&env);

    // A second cycle changes nothing and duplicates nothing.
    let before = count(&env.store, "SELECT count(*) FROM events");
    cycle(&env, &[]).await;
    assert_eq!(
        count(&env.store, "SELECT count(*) FROM events"),
        before,
        "a quiet tenant yields no new events"
    );
    assert_matches_truth(&env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_tenant_converges_to_its_truth_with_removals_marked() {
    live_tenant_converges(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_tenant_converges_when_refused_cursors_get_400() {
    live_tenant_converges(Some(Dialect::Refusal400)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_tenant_converges_when_refused_cursors_get_404() {
    live_tenant_converges(Some(Dialect::Refusal404)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_tenant_converges_without_rate_limit_headers() {
    live_tenant_converges(Some(Dialect::NoRateLimitHeaders)).await;
}

/// Churn (late audit events included) over a day, then quiet cycles: the store equals the
/// truth, under the default dialect or `dialect`.
async fn live_tenant_converges(dialect: Option<Dialect>) {
    let mut cfg = sim_config(80, 11);
    if let Some(d) = dialect {
        d.apply(&mut cfg);
    }
    assert!(cfg.churn.late_audit > 0.0, "late audit events are on");
    let env = env(cfg).await;
    cycle(&env, &[]).await;
    for _ in 0..3 {
        env.sim.advance(Duration::from_secs(6 * 3600));
        cycle(&env, &[]).await;
    }
    // Quiet period: two more cycles without tenant changes let removals reach 2 sweeps and
    // compliance read every queued device.
    cycle(&env, &[]).await;
    cycle(&env, &[]).await;
    assert_matches_truth(&env);
    let removed = arr(env.sim.truth("removed_devices"));
    assert!(
        !removed.is_empty(),
        "the churn should have unenrolled some devices"
    );
    for d in &removed {
        let id = str_of(d, "device_id");
        let marked = count(
            &env.store,
            &format!("SELECT count(*) FROM devices WHERE key = '{id}' AND removed_at IS NOT NULL"),
        );
        assert_eq!(marked, 1, "removed device {id} is marked removed");
    }
    assert!(
        count(
            &env.store,
            "SELECT count(*) FROM events WHERE category = 'change' AND event_type = 'device_enrolled'"
        ) > 0,
        "devices enrolled after the baseline are change events"
    );
    assert!(
        count(
            &env.store,
            "SELECT count(*) FROM events WHERE event_type = 'device_removed'"
        ) >= removed.len() as i64
    );
    if let Some(d) = dialect {
        d.assert_exercised(&env.sim, &env.store);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_refuses_a_schedule_that_would_overspend_and_says_why() {
    let cfg = sim_config(200, 2);
    let sim = kandji_sim::spawn(cfg).await.expect("sim");
    let dir = tempfile::tempdir().expect("dir");
    let store = kandji_collector::store::Store::open(dir.path()).expect("store");
    let mut source = source_for(&sim, "greedy");
    source.budget_share = 0.001; // 10 requests/hour
    let stop = tokio_util::sync::CancellationToken::new();
    let daemon = tokio::spawn(kandji_collector::engine::run_config_sources(
        store.clone(),
        vec![source],
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();
    daemon.await.expect("daemon");
    let msg: String = common::sql(&store)
        .query_row(
            "SELECT last_error_message FROM stream_status WHERE source = 'greedy' AND stream = 'devices'",
            [],
            |r| r.get(0),
        )
        .expect("status row");
    assert!(
        msg.contains("planner refused") && msg.contains("requests/hour"),
        "{msg}"
    );
    let kind: String = common::sql(&store)
        .query_row(
            "SELECT last_error_kind FROM stream_status WHERE source = 'greedy' AND stream = 'devices'",
            [],
            |r| r.get(0),
        )
        .expect("status row");
    assert_eq!(kind, "plan_refused");
    assert_eq!(
        count(&store, "SELECT count(*) FROM devices"),
        0,
        "nothing was collected"
    );
    assert!(sim.stats().total <= 1, "only the licensing probe was spent");
}
