//! Crash safety: `kill -9` of the collector at arbitrary points of a sync, then a restart,
//! leaves a store equal to the tenant's truth — nothing lost, nothing duplicated, and no
//! change event made up by a first snapshot that was cut and redone.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use kandji_collector::store::Store;
use kandji_sim::Churn;

fn kill_points() -> Vec<Duration> {
    // A fixed pseudo-random spread over the first seconds of a sync (deterministic).
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..4)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Duration::from_millis(50 + x % 1150)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_mid_sync_then_restart_loses_and_duplicates_nothing() {
    kill_and_restart(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_with_refused_cursors_answered_400() {
    kill_and_restart(Some(Dialect::Refusal400)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_with_refused_cursors_answered_404() {
    kill_and_restart(Some(Dialect::Refusal404)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_without_rate_limit_headers() {
    kill_and_restart(Some(Dialect::NoRateLimitHeaders)).await;
}

/// Kills at fixed points, then restarts to completion. Under a cursor-refusing dialect the
/// tenant's clock moves a minute after every kill, so the restarted process finds every
/// checkpointed cursor refused.
async fn kill_and_restart(dialect: Option<Dialect>) {
    let mut cfg = sim_config(120, 21);
    cfg.churn = Churn::none();
    if let Some(d) = dialect {
        d.apply(&mut cfg);
        // Short pages, so that the kills land between a walk's pages and the restart resumes
        // from a checkpointed cursor the tenant then refuses.
        cfg.faults.page_cap = 3;
    }
    cfg.faults.latency_ms = 25; // every request takes a while: a sync lasts seconds, not ms
    let sim = kandji_sim::spawn(cfg).await.expect("sim");
    let dir = tempfile::tempdir().expect("dir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, sim.token()).expect("token");
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[[sources]]\nname = \"acme\"\nendpoint = {:?}\ntoken_file = {token_file:?}\n\
             allow_custom_endpoint = true\nper_second = 50\n",
            dir.path().join("data"),
            sim.base_url()
        ),
    )
    .expect("config");
    let sync = move || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kandji-collector"));
        c.args(["--config", &config.display().to_string(), "sync", "--once"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    let mut killed_mid_run = 0;
    for at in kill_points() {
        let sync = sync.clone();
        let finished = tokio::task::spawn_blocking(move || {
            let mut child = sync().spawn().expect("spawn");
            std::thread::sleep(at);
            let done = child.try_wait().expect("try_wait").is_some();
            let _ = child.kill(); // SIGKILL: no destructor, no flush, no graceful shutdown
            let _ = child.wait();
            done
        })
        .await
        .expect("join");
        if !finished {
            killed_mid_run += 1;
        }
        if dialect.and_then(Dialect::refusal_status).is_some() {
            sim.advance(Duration::from_secs(60));
        }
    }
    assert!(
        killed_mid_run >= 3,
        "the kills must land inside syncs ({killed_mid_run})"
    );
    // Restart and let it finish; compliance reads at most 60 devices a run, so run until the
    // rotation has covered the fleet.
    for _ in 0..3 {
        let sync = sync.clone();
        let status = tokio::task::spawn_blocking(move || sync().status().expect("run"))
            .await
            .expect("join");
        assert!(status.success());
    }
    let store = Store::open(&dir.path().join("data")).expect("store");
    assert_store_matches(&sim, &store);
    // The kills landed inside first snapshots (apps, details, compliance): on a tenant with no
    // churn, a first snapshot redone after a crash is still a baseline, not news.
    let changes = store_set(
        &store,
        "SELECT event_type || ' ' || uid FROM events WHERE category = 'change'",
    );
    assert!(
        changes.is_empty(),
        "{} change events after kills on a tenant with no churn, e.g. {:?}",
        changes.len(),
        changes.iter().take(3).collect::<Vec<_>>()
    );
    if let Some(d) = dialect {
        d.assert_exercised(&sim, &store);
    }
}
