//! Deleting a source with "also purge collected data": every row collected from it goes, in
//! one transaction, and another source's rows (and the shared app versions' counts) stay right.

mod common;

use common::*;
use kandji_collector::engine::SourceRuntime;
use kandji_sim::Churn;

fn per_source(env: &Env, source: &str) -> Vec<(String, i64)> {
    let c = sql(&env.store);
    let tables: Vec<String> = c
        .prepare(
            "SELECT m.name FROM sqlite_master m WHERE m.type = 'table'
               AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE 'events_fts%'
               AND EXISTS (SELECT 1 FROM pragma_table_info(m.name) p WHERE p.name = 'source')
             ORDER BY m.name",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    tables
        .into_iter()
        .map(|t| {
            let n: i64 = c
                .query_row(
                    &format!("SELECT count(*) FROM \"{t}\" WHERE source = ?1"),
                    [source],
                    |r| r.get(0),
                )
                .unwrap();
            (t, n)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_removes_every_row_of_the_source_and_only_its() {
    let mut cfg = sim_config(40, 81);
    cfg.churn = Churn::none();
    let env = env(cfg).await;
    cycle(&env, &[]).await;
    // A second source on the same tenant and store.
    let mut beta = SourceRuntime::new(
        source_for(&env.sim, "beta"),
        env.store.clone(),
        env.stop.clone(),
    )
    .unwrap();
    beta.export_poll = env.rt.export_poll;
    beta.clock = env.rt.clock.clone();
    beta.follow_server_clock = false;
    for r in kandji_collector::engine::sync_once(&beta, &[]).await {
        r.result.unwrap();
    }
    let before_beta = per_source(&env, "beta");
    let acme_rows: i64 = per_source(&env, "acme").iter().map(|(_, n)| n).sum();
    assert!(acme_rows > 1000, "acme collected ({acme_rows} rows)");
    let installs_before = count(&env.store, "SELECT count(*) FROM app_installs");
    let fts_before = count(&env.store, "SELECT count(*) FROM events_fts");

    let purged = env.store.purge_source("acme").await.unwrap();
    assert!(purged as i64 >= acme_rows, "{purged} rows purged");
    for (t, n) in per_source(&env, "acme") {
        assert_eq!(n, 0, "{t} still holds acme rows");
    }
    assert_eq!(per_source(&env, "beta"), before_beta, "beta untouched");
    // Installs are keyed by device: acme's went with its devices, beta's stayed.
    let left = count(&env.store, "SELECT count(*) FROM app_installs");
    assert!(
        left > 0 && left < installs_before,
        "{left} of {installs_before}"
    );
    assert_eq!(
        count(
            &env.store,
            "SELECT count(*) FROM app_installs i LEFT JOIN app_devices d ON d.id = i.dev WHERE d.id IS NULL"
        ),
        0,
        "no install outlives its device"
    );
    // The shared versions count beta's live installs only.
    assert_eq!(
        count(
            &env.store,
            "SELECT count(*) FROM app_versions v WHERE v.installs !=
               (SELECT count(*) FROM app_installs i WHERE i.ver = v.id AND i.removed_at IS NULL)"
        ),
        0,
        "app_versions.installs matches the live installs"
    );
    // The search index followed the events.
    let fts_after = count(&env.store, "SELECT count(*) FROM events_fts");
    assert_eq!(
        fts_after,
        count(&env.store, "SELECT count(*) FROM events"),
        "events_fts has one row per event"
    );
    assert!(fts_after < fts_before);
    // Collecting it again works from a clean slate: it holds what beta holds.
    cycle(&env, &[]).await;
    for q in [
        "SELECT count(*) FROM devices WHERE source = '{}' AND removed_at IS NULL",
        "SELECT count(*) FROM events WHERE source = '{}'",
        "SELECT count(*) FROM app_installs i JOIN app_devices d ON d.id = i.dev WHERE d.source = '{}'",
    ] {
        assert_eq!(
            count(&env.store, &q.replace("{}", "acme")),
            count(&env.store, &q.replace("{}", "beta")),
            "{q}"
        );
    }
}
