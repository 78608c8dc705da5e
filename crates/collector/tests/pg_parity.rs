//! The two backends side by side: one collection (every stream, with churn) of two simulated
//! tenants made from the same seed, one into SQLite and one into PostgreSQL. Both stores must
//! equal the tenant's truth, and each other: the same rows, the same removals, the same events
//! (change events included, with their uids), the same outbox, the same records delivered.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::backend::{Backend, TestStore};
use common::{assert_snapshot_matches, sim_config, source_for};
use kandji_collector::engine::SourceRuntime;
use kandji_collector::store::Store;
use kandji_sim::{Churn, SimConfig, SimHandle};
use tokio_util::sync::CancellationToken;

struct Side {
    t: TestStore,
    sim: Arc<SimHandle>,
    rt: SourceRuntime,
}

async fn side(backend: Backend, cfg: SimConfig) -> Option<Side> {
    let t = TestStore::open(backend, "parity").await?;
    let sim = Arc::new(kandji_sim::spawn(cfg).await.expect("sim"));
    let mut rt = SourceRuntime::new(
        source_for(&sim, "acme"),
        t.store.clone(),
        CancellationToken::new(),
    )
    .expect("runtime");
    rt.export_poll = Duration::from_millis(5);
    let clock = sim.clone();
    rt.clock = Arc::new(move || (clock.now().unix_timestamp_nanos() / 1_000_000) as i64);
    rt.follow_server_clock = false;
    Some(Side { t, sim, rt })
}

/// One cycle; returns (stream, records) for each stream, failing on any error.
async fn cycle(s: &Side) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for r in kandji_collector::engine::sync_once(&s.rt, &[]).await {
        match &r.result {
            Ok(rep) => out.push((r.stream.to_string(), rep.records)),
            Err(e) => panic!("{:?}: stream {} failed: {e}", s.t.backend, r.stream),
        }
    }
    out.sort();
    out
}

/// What must be the same on both backends, as sorted text rows.
async fn contents(t: &TestStore) -> Vec<(String, BTreeSet<String>)> {
    let mut out = Vec::new();
    let q = |sql: &str| sql.to_string();
    let queries = [
        (
            "events",
            q(
                "SELECT stream || ' ' || uid || ' ' || event_type || ' ' || hash || ' ' || occurred_at || ' ' || summary FROM events",
            ),
        ),
        (
            "outbox",
            q("SELECT tbl || ' ' || count(*) FROM outbox GROUP BY tbl"),
        ),
        (
            "apps",
            q(
                "SELECT key || ' ' || coalesce(removed_at, -1) || ' ' || coalesce(name, '') || ' ' || coalesce(version, '') FROM apps",
            ),
        ),
        ("checkpoint_streams", q("SELECT stream FROM checkpoints")),
    ];
    for (name, sql) in queries {
        out.push((name.to_string(), t.strings(&sql).await));
    }
    for table in [
        "devices",
        "device_details",
        "compliance",
        "users",
        "blueprints",
        "tags",
        "ade_devices",
        "vuln_detections",
    ] {
        let sql = format!(
            "SELECT key || ' ' || hash || ' ' || coalesce(removed_at, -1) || ' ' || first_seen || ' ' || missing FROM {table}"
        );
        out.push((table.to_string(), t.strings(&sql).await));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_with_churn_stores_the_same_on_both_backends() {
    let mut cfg = sim_config(120, 77);
    cfg.churn = Churn {
        enroll: 30.0,
        unenroll: 30.0,
        app_changes: 300.0,
        compliance_flips: 150.0,
        vulnerabilities: 30.0,
        vuln_remediations: 30.0,
        ..Churn::default()
    };
    let Some(pg) = side(Backend::Postgres, cfg.clone()).await else {
        return;
    };
    let lite = side(Backend::Sqlite, cfg).await.expect("sqlite");
    assert_eq!(
        cycle(&lite).await,
        cycle(&pg).await,
        "first cycle: records per stream"
    );
    for round in 0..3 {
        for s in [&lite, &pg] {
            s.sim.advance(Duration::from_secs(6 * 3600));
        }
        assert_eq!(
            cycle(&lite).await,
            cycle(&pg).await,
            "churn round {round}: records per stream"
        );
    }
    for round in 0..2 {
        assert_eq!(
            cycle(&lite).await,
            cycle(&pg).await,
            "quiet round {round}: records per stream"
        );
    }
    assert_snapshot_matches(&lite.sim, &lite.t.snapshot().await);
    assert_snapshot_matches(&pg.sim, &pg.t.snapshot().await);
    let (a, b) = (contents(&lite.t).await, contents(&pg.t).await);
    for ((name, l), (_, p)) in a.iter().zip(&b) {
        let only_lite: Vec<_> = l.difference(p).take(5).collect();
        let only_pg: Vec<_> = p.difference(l).take(5).collect();
        assert!(
            only_lite.is_empty() && only_pg.is_empty(),
            "{name} differs ({} rows on SQLite, {} on PostgreSQL): only SQLite {only_lite:#?}, only PostgreSQL {only_pg:#?}",
            l.len(),
            p.len()
        );
    }
    let changes = lite
        .t
        .count("SELECT count(*) FROM events WHERE category = 'change'")
        .await;
    assert!(changes > 50, "the churn made change events: {changes}");
    // The outputs read the same records from both.
    let drain = |store: Store| async move {
        let mut all = Vec::new();
        let mut pos = Default::default();
        loop {
            let b = store.outbox_batch("acme", pos, 400).await.expect("batch");
            if b.items.is_empty() && b.last.is_none() {
                break;
            }
            for (_, item) in b.items {
                all.push(match item {
                    kandji_collector::store::OutboxItem::Row(r) => {
                        format!("{} {} {}", r.table.name(), r.key, r.raw)
                    }
                    kandji_collector::store::OutboxItem::Event(e) => {
                        format!("event {} {} {}", e.stream, e.uid, e.raw)
                    }
                });
            }
            pos = b.last.expect("a position");
        }
        all.sort();
        all
    };
    // The same records, each in its newest version (a record written twice before delivery
    // is read once per batch it falls in, and batch edges follow outbox order).
    let (l, p) = (
        drain(lite.t.store.clone()).await,
        drain(pg.t.store.clone()).await,
    );
    let (l, p): (BTreeSet<String>, BTreeSet<String>) =
        (l.into_iter().collect(), p.into_iter().collect());
    assert!(l.len() > 10_000, "records delivered: {}", l.len());
    let only_l: Vec<_> = l.difference(&p).take(3).collect();
    let only_p: Vec<_> = p.difference(&l).take(3).collect();
    assert!(
        only_l.is_empty() && only_p.is_empty(),
        "the delivered records differ: only SQLite {only_l:#?}, only PostgreSQL {only_p:#?}"
    );
    pg.t.finish().await;
}
