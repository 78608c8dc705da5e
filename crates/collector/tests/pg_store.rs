//! The PostgreSQL store on the machine's real PostgreSQL (127.0.0.1:5432, `test`; override
//! with `KANDJI_TEST_PG_URL`). A missing server skips these tests with a message, unless
//! `KANDJI_REQUIRE_SERVICES=1` (`.ci/run` sets it): then it fails them.
//!
//! Each test works in a schema of its own, dropped at the end, so tests run in parallel.
//! Lease times are the tests' own numbers (the store takes `now` from its caller), so
//! nothing here sleeps.

mod common;

use kandji_collector::store::pg::{Lease, PgConnect, PgStore, Replica, migrations};
use kandji_collector::store::{Batch, BatchOutcome, EventRow, Store, StoreError};

fn url() -> String {
    std::env::var("KANDJI_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh schema on the test database, with a name no other test uses.
fn schema(name: &str) -> String {
    format!(
        "kc_{name}_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

async fn open(schema: &str) -> PgStore {
    let mut c = PgConnect::new(&url());
    c.schema = Some(schema.to_string());
    c.pool_size = 4;
    PgStore::connect(&c)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL must answer at {} for this test: {e}", url()))
}

/// Whether PostgreSQL answers (else the test is skipped, or fails in CI).
async fn pg_answers(test: &str) -> bool {
    common::backend::pg_available(test).await
}

fn ev(uid: &str, at: i64, raw: &str) -> EventRow {
    EventRow {
        category: "security",
        event_type: "threat".into(),
        uid: uid.into(),
        occurred_at: at,
        device_id: Some("dev1".into()),
        user_id: None,
        severity: Some("high".into()),
        summary: format!("threat {uid}"),
        raw: raw.into(),
    }
}

/// The pages both backends get, in order.
fn pages(source: &str) -> Vec<Batch> {
    let mut out = Vec::new();
    let mut b = Batch::new(source, "threats", 10, "security");
    b.events = vec![
        ev("a", 1, r#"{"status":"QUARANTINED","z":1,"a":2}"#),
        ev("b", 2, r#"{"status":"QUARANTINED"}"#),
        ev("a", 1, r#"{"status":"QUARANTINED","z":1,"a":2}"#),
    ];
    b.checkpoint = Some(serde_json::json!({"cursor": "c1"}));
    out.push(b);
    // Collected again: one unchanged (a duplicate), one moved on (released), one new.
    let mut b = Batch::new(source, "threats", 20, "security");
    b.events = vec![
        ev("a", 1, r#"{"status":"QUARANTINED","z":1,"a":2}"#),
        ev("b", 2, r#"{"status":"RELEASED"}"#),
        ev("c", 3, r#"{"status":"QUARANTINED"}"#),
    ];
    b.checkpoint = Some(serde_json::json!("2026-01-01T00:00:00Z"));
    b.checkpoint_key = Some("threats".into());
    out.push(b);
    // A second part of the stream keeps the first part's key.
    let mut b = Batch::new(source, "threats", 30, "security");
    b.checkpoint = Some(serde_json::json!("2026-01-02T00:00:00Z"));
    b.checkpoint_key = Some("detections".into());
    out.push(b);
    out
}

/// The store rules are the same on both backends: the same pages give the same outcomes,
/// the same checkpoint and the same outbox.
#[tokio::test]
async fn events_and_checkpoints_follow_the_same_rules_on_both_backends() {
    if !pg_answers("events_and_checkpoints_follow_the_same_rules_on_both_backends").await {
        return;
    }
    let s = schema("rules");
    let pg = open(&s).await;
    let dir = tempfile::tempdir().unwrap();
    let lite = Store::open(dir.path()).unwrap();

    pg.register_sources(&["acme".to_string()]).await.unwrap();
    let r = pg
        .rebalance(&Replica::new("r1", 30_000), 1_000)
        .await
        .unwrap();
    let lease = r.held[0].clone();

    let mut on_pg: Vec<BatchOutcome> = Vec::new();
    let mut on_lite: Vec<BatchOutcome> = Vec::new();
    for b in pages("acme") {
        on_pg.push(pg.commit_page(&lease, &b).await.unwrap());
        on_lite.push(lite.commit_page(b).await.unwrap());
    }
    assert_eq!(on_pg, on_lite);
    assert_eq!(on_pg[0].events_inserted, 2);
    assert_eq!(on_pg[0].events_duplicate, 1);
    assert_eq!(
        (
            on_pg[1].events_inserted,
            on_pg[1].events_updated,
            on_pg[1].events_duplicate
        ),
        (1, 1, 1)
    );
    assert_eq!(
        pg.checkpoint("acme", "threats").await.unwrap(),
        lite.checkpoint("acme", "threats").await.unwrap()
    );
    assert_eq!(
        pg.checkpoint("acme", "threats").await.unwrap().unwrap(),
        serde_json::json!({"cursor": "c1", "threats": "2026-01-01T00:00:00Z", "detections": "2026-01-02T00:00:00Z"})
    );
    let lite_outbox = lite
        .outbox_batch("acme", Default::default(), 100)
        .await
        .unwrap();
    // Four outbox rows on both: two inserts, then an update and an insert (SQLite's seq
    // starts at 1, so its last row's seq is its count).
    assert_eq!(pg.outbox_len("acme").await.unwrap(), 4);
    assert_eq!(lite_outbox.last.map(|p| p.seq), Some(4));
    let keys = pg.event_keys("acme").await.unwrap();
    assert_eq!(
        keys.iter().map(|k| k.1.as_str()).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    // The raw text is kept as collected, key order included.
    let hash_a = kandji_collector::store::stable_hash(br#"{"status":"QUARANTINED","z":1,"a":2}"#);
    assert_eq!(keys[0].2, hash_a);
    pg.drop_schema(&s).await.unwrap();
}

#[tokio::test]
async fn a_bad_event_refuses_the_whole_page() {
    if !pg_answers("a_bad_event_refuses_the_whole_page").await {
        return;
    }
    let s = schema("bad");
    let pg = open(&s).await;
    pg.register_sources(&["acme".to_string()]).await.unwrap();
    let lease = pg
        .rebalance(&Replica::new("r1", 30_000), 0)
        .await
        .unwrap()
        .held[0]
        .clone();
    let mut b = Batch::new("acme", "threats", 10, "security");
    b.events = vec![ev("a", 1, "{}"), ev("b", 1, "{not json")];
    b.checkpoint = Some(serde_json::json!({"cursor": "c1"}));
    let err = pg.commit_page(&lease, &b).await.unwrap_err().to_string();
    assert!(err.contains("event b is not JSON"), "{err}");
    assert!(pg.event_keys("acme").await.unwrap().is_empty());
    assert_eq!(pg.checkpoint("acme", "threats").await.unwrap(), None);
    assert_eq!(pg.outbox_len("acme").await.unwrap(), 0);
    pg.drop_schema(&s).await.unwrap();
}

#[tokio::test]
async fn migrations_apply_once_when_replicas_start_together() {
    if !pg_answers("migrations_apply_once_when_replicas_start_together").await {
        return;
    }
    let s = schema("migrate");
    let (a, b, c) = tokio::join!(open(&s), open(&s), open(&s));
    for st in [&a, &b, &c] {
        assert_eq!(st.schema_version().await.unwrap(), migrations::latest());
    }
    // Reopening finds nothing to do.
    let d = open(&s).await;
    assert_eq!(d.schema_version().await.unwrap(), migrations::latest());
    d.drop_schema(&s).await.unwrap();
}

#[tokio::test]
async fn a_url_with_a_password_is_refused() {
    let c = PgConnect::new("postgres://kc:hunter2@127.0.0.1:5432/test");
    let err = PgStore::connect(&c).await.unwrap_err().to_string();
    assert!(err.contains("store_password_env"), "{err}");
    assert!(
        !err.contains("hunter2"),
        "the error shows the password: {err}"
    );
    let err = PgStore::connect(&PgConnect::new("mysql://x"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a PostgreSQL URL"), "{err}");
}

/// A replica paused past its lease wakes up and commits: the fencing check refuses it, and
/// the new owner's commits stand.
#[tokio::test]
async fn a_late_commit_under_a_lost_lease_is_fenced() {
    if !pg_answers("a_late_commit_under_a_lost_lease_is_fenced").await {
        return;
    }
    let s = schema("fence");
    let pg = open(&s).await;
    pg.register_sources(&["acme".to_string()]).await.unwrap();
    let a = Replica::new("a", 30_000);
    let b = Replica::new("b", 30_000);
    let old = pg.rebalance(&a, 0).await.unwrap().held[0].clone();
    // Before a's lease expires b gets nothing: the lease is taken.
    let rb = pg.rebalance(&b, 10_000).await.unwrap();
    assert!(rb.held.is_empty(), "{rb:?}");
    // a stops (SIGSTOP); past its expiry b takes the source, with the next token.
    let rb = pg.rebalance(&b, 31_000).await.unwrap();
    assert_eq!(rb.acquired, ["acme"]);
    let new = rb.held[0].clone();
    assert_eq!(new.token, old.token + 1);

    let mut page = Batch::new("acme", "threats", 10, "security");
    page.events = vec![ev("x", 1, "{}")];
    page.checkpoint = Some(serde_json::json!({"cursor": "from-a"}));
    match pg.commit_page(&old, &page).await {
        Err(StoreError::Fenced {
            held,
            current,
            owner,
            ..
        }) => {
            assert_eq!((held, current), (old.token, new.token));
            assert_eq!(owner.as_deref(), Some("b"));
        }
        other => panic!("the late commit was not fenced: {other:?}"),
    }
    assert!(pg.event_keys("acme").await.unwrap().is_empty());
    assert_eq!(pg.checkpoint("acme", "threats").await.unwrap(), None);
    // The budget sample is fenced the same way.
    assert!(matches!(
        pg.record_budget_sample(&old, 0, 10, 10_000, 5_000).await,
        Err(StoreError::Fenced { .. })
    ));
    // a wakes and ticks: it learns it lost the source.
    let ra = pg
        .rebalance_holding(&a, 32_000, Some(std::slice::from_ref(&old)))
        .await
        .unwrap();
    assert_eq!(ra.lost, ["acme"]);
    assert!(ra.held.is_empty());
    // The new owner commits.
    page.checkpoint = Some(serde_json::json!({"cursor": "from-b"}));
    pg.commit_page(&new, &page).await.unwrap();
    assert_eq!(
        pg.checkpoint("acme", "threats").await.unwrap().unwrap(),
        serde_json::json!({"cursor": "from-b"})
    );
    pg.drop_schema(&s).await.unwrap();
}

fn owners(
    rows: &[kandji_collector::store::pg::LeaseRow],
) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for r in rows {
        *m.entry(r.owner.clone().unwrap_or_else(|| "-".into()))
            .or_insert(0) += 1;
    }
    m
}

/// 30 sources over 3 replicas: 10 each. A fourth joins: 8, 8, 7, 7, with every source held
/// by exactly one replica, and the excess given back only by its owner.
#[tokio::test]
async fn sources_spread_evenly_and_rebalance_when_a_replica_joins() {
    if !pg_answers("sources_spread_evenly_and_rebalance_when_a_replica_joins").await {
        return;
    }
    let s = schema("spread");
    let pg = open(&s).await;
    let sources: Vec<String> = (0..30).map(|i| format!("tenant{i:02}")).collect();
    pg.register_sources(&sources).await.unwrap();
    let rs: Vec<Replica> = ["r1", "r2", "r3", "r4"]
        .iter()
        .map(|id| Replica::new(*id, 30_000))
        .collect();
    let mut now = 0;
    // Heartbeats first, so every replica counts the others from its first tick.
    for r in &rs[..3] {
        pg.join(r, now).await.unwrap();
    }
    for _ in 0..2 {
        now += 10_000;
        for r in &rs[..3] {
            let t = pg.rebalance(r, now).await.unwrap();
            for l in &t.over {
                pg.release(l).await.unwrap();
            }
        }
    }
    let m = owners(&pg.leases().await.unwrap());
    assert_eq!(m.get("r1"), Some(&10), "{m:?}");
    assert_eq!(m.get("r2"), Some(&10), "{m:?}");
    assert_eq!(m.get("r3"), Some(&10), "{m:?}");

    // r4 joins. Each replica gives back its excess between pages, and r4 takes it.
    let mut tokens_before = std::collections::BTreeMap::new();
    for l in pg.leases().await.unwrap() {
        tokens_before.insert(l.source.clone(), l.token);
    }
    pg.join(&rs[3], now).await.unwrap();
    for _ in 0..3 {
        now += 10_000;
        for r in &rs {
            let t = pg.rebalance(r, now).await.unwrap();
            for l in &t.over {
                pg.release(l).await.unwrap();
            }
        }
    }
    let rows = pg.leases().await.unwrap();
    let m = owners(&rows);
    let mut counts: Vec<usize> = m.values().copied().collect();
    counts.sort_unstable();
    assert_eq!(counts, [7, 7, 8, 8], "{m:?}");
    assert!(!m.contains_key("-"), "a source has no owner: {m:?}");
    // Only moved sources changed token; each moved once.
    let moved: Vec<_> = rows
        .iter()
        .filter(|l| l.token != tokens_before[&l.source])
        .collect();
    assert_eq!(moved.len(), m["r4"], "{moved:?}");
    assert!(
        moved
            .iter()
            .all(|l| l.token == tokens_before[&l.source] + 1)
    );
    pg.drop_schema(&s).await.unwrap();
}

/// A replica dies (no more ticks): within the TTL plus a tick the others hold all its
/// sources, 15 each. One that leaves in order frees its sources at once.
#[tokio::test]
async fn a_dead_replicas_sources_move_within_the_ttl() {
    if !pg_answers("a_dead_replicas_sources_move_within_the_ttl").await {
        return;
    }
    let s = schema("failover");
    let pg = open(&s).await;
    let sources: Vec<String> = (0..30).map(|i| format!("tenant{i:02}")).collect();
    pg.register_sources(&sources).await.unwrap();
    let ttl = 30_000;
    let tick = ttl / 3;
    let rs: Vec<Replica> = ["r1", "r2", "r3"]
        .iter()
        .map(|id| Replica::new(*id, ttl))
        .collect();
    let mut now = 0;
    for r in &rs {
        pg.join(r, now).await.unwrap();
    }
    now += tick;
    for _ in 0..3 {
        for r in &rs {
            pg.rebalance(r, now).await.unwrap();
        }
        now += tick;
    }
    let died_at = now;
    // r3 is killed: it never ticks again. Its leases expire at its last renewal + TTL.
    let mut moved_at = None;
    while now <= died_at + ttl + 2 * tick {
        for r in &rs[..2] {
            let t = pg.rebalance(r, now).await.unwrap();
            for l in &t.over {
                pg.release(l).await.unwrap();
            }
        }
        let m = owners(&pg.leases().await.unwrap());
        if m.get("r1") == Some(&15) && m.get("r2") == Some(&15) {
            moved_at = Some(now);
            break;
        }
        now += tick;
    }
    let moved_at = moved_at.expect("r3's sources never moved");
    // r3 last renewed at died_at - tick, so its leases expired at died_at - tick + ttl; the
    // next tick after that takes them.
    assert!(
        moved_at - (died_at - tick) <= ttl + tick,
        "took {} ms",
        moved_at - died_at
    );
    // r2 leaves in order: r1 takes everything on its next tick, well before any TTL.
    pg.leave(&rs[1]).await.unwrap();
    now += 1;
    pg.rebalance(&rs[0], now).await.unwrap();
    let m = owners(&pg.leases().await.unwrap());
    assert_eq!(m.get("r1"), Some(&30), "{m:?}");
    pg.drop_schema(&s).await.unwrap();
}

/// The new owner reads the hour's spend so far from the store, so a handover never spends
/// the budget twice.
#[tokio::test]
async fn the_hours_spend_survives_a_handover() {
    if !pg_answers("the_hours_spend_survives_a_handover").await {
        return;
    }
    let s = schema("budget");
    let pg = open(&s).await;
    pg.register_sources(&["acme".to_string()]).await.unwrap();
    let a = Replica::new("a", 30_000);
    let b = Replica::new("b", 30_000);
    let la: Lease = pg.rebalance(&a, 0).await.unwrap().held[0].clone();
    let hour = 0;
    pg.record_budget_sample(&la, hour, 1_200, 10_000, 5_000)
        .await
        .unwrap();
    // A lower count later in the hour never lowers it (the highest seen wins).
    pg.record_budget_sample(&la, hour, 900, 10_000, 5_000)
        .await
        .unwrap();
    let lb = pg.rebalance(&b, 40_000).await.unwrap().held[0].clone();
    assert_eq!(pg.budget_spent("acme", hour).await.unwrap(), 1_200);
    pg.record_budget_sample(&lb, hour, 1_250, 10_000, 5_000)
        .await
        .unwrap();
    assert_eq!(pg.budget_spent("acme", hour).await.unwrap(), 1_250);
    pg.drop_schema(&s).await.unwrap();
}

/// One tenant's event page reads one partition, through its index: never another tenant's
/// rows.
#[tokio::test]
async fn a_tenants_event_page_reads_one_partition_by_index() {
    if !pg_answers("a_tenants_event_page_reads_one_partition_by_index").await {
        return;
    }
    let s = schema("explain");
    let pg = open(&s).await;
    let sources = vec!["acme".to_string(), "globex".to_string()];
    pg.register_sources(&sources).await.unwrap();
    let held = pg
        .rebalance(&Replica::new("r1", 30_000), 0)
        .await
        .unwrap()
        .held;
    for lease in &held {
        for page in 0..4 {
            let mut b = Batch::new(&lease.source, "threats", 10, "security");
            b.events = (0..1_000)
                .map(|i| ev(&format!("{page}-{i}"), page * 1_000 + i, "{}"))
                .collect();
            pg.commit_page(lease, &b).await.unwrap();
        }
    }
    pg.analyze().await.unwrap();
    let plan = pg.explain_event_page("acme").await.unwrap();
    let partitions: std::collections::BTreeSet<&str> = plan
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| {
            w.strip_prefix("events_p")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    assert_eq!(partitions.len(), 1, "{plan}");
    assert!(plan.contains("Index Scan"), "{plan}");
    assert!(!plan.contains("Seq Scan"), "{plan}");
    assert!(!plan.contains("Sort"), "{plan}");
    pg.drop_schema(&s).await.unwrap();
}
