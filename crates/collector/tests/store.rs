//! The store's write path: upserts, change events, sweeps and exactly-once batches, on both
//! backends (each case runs once on SQLite and once on PostgreSQL).

mod common;

use common::backend::{Backend, TestStore};
use kandji_collector::store::Upsert;
use kandji_collector::store::{Batch, EventRow, InvRow, Scope, Store, SweepEnd, Table};
use rusqlite::types::Value;

fn device(id: &str, name: &str, os: &str, bp: &str) -> InvRow {
    let spec = Table::Devices.spec();
    let mut values = vec![Value::Null; spec.columns.len()];
    let set = |values: &mut Vec<Value>, c: &str, v: &str| {
        let i = spec.col_index(c).expect("column");
        values[i] = Value::Text(v.to_string());
    };
    set(&mut values, "device_name", name);
    set(&mut values, "os_version", os);
    set(&mut values, "blueprint_id", bp);
    set(&mut values, "blueprint_name", bp);
    InvRow {
        key: id.to_string(),
        device_id: Some(id.to_string()),
        values,
        raw: format!(
            r#"{{"device_id":"{id}","device_name":"{name}","os_version":"{os}","bp":"{bp}"}}"#
        ),
    }
}

fn sweep_batch(now: i64, sweep: i64, rows: Vec<InvRow>, last: bool) -> Batch {
    let mut b = Batch::new("acme", "devices", now, "inventory");
    b.upserts.push(Upsert {
        table: Table::Devices,
        sweep,
        // Pages of one sweep share its start: the tests' sweeps start on multiples of 10.
        started_at: now - now % 10,
        rows,
    });
    if last {
        b.sweep_ends.push(SweepEnd {
            table: Table::Devices,
            sweep,
            scope: Scope::All,
        });
    }
    b.checkpoint = Some(serde_json::json!({"sweep": sweep, "done": last}));
    b
}

/// A read-only connection to the store's file (the test's own SQL, beside the store's API).
fn sql(store: &Store) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(store.path(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("read-only connection")
}

on_both_backends!(
    devices_removed_only_after_two_missed_sweeps_with_change_events,
    a_missed_then_seen_device_resets_its_miss_count,
    events_dedup_on_uid_and_keep_newest_state,
    a_failed_batch_commits_nothing_not_even_its_checkpoint,
    reopening_keeps_data_and_schema_version,
    a_device_new_after_the_baseline_is_an_enrolment_even_mid_sweep,
);

async fn devices_removed_only_after_two_missed_sweeps_with_change_events(b: Backend) {
    let Some(t) = TestStore::open(
        b,
        "devices_removed_only_after_two_missed_sweeps_with_change_events",
    )
    .await
    else {
        return;
    };
    let store = t.store.clone();

    let out = store
        .commit_page(sweep_batch(
            1_000,
            1,
            vec![
                device("a", "A", "15.0", "bp1"),
                device("b", "B", "15.0", "bp1"),
            ],
            true,
        ))
        .await
        .expect("write");
    assert_eq!(out.inserted, 2);
    assert_eq!(
        t.count("SELECT count(*) FROM events WHERE event_type = 'device_enrolled'")
            .await,
        0,
        "the first sweep is a baseline, not news"
    );

    // Sweep 2: b is missing once, a changed OS and blueprint.
    let out = store
        .commit_page(sweep_batch(
            2_000,
            2,
            vec![device("a", "A", "15.1", "bp2")],
            true,
        ))
        .await
        .expect("write");
    assert_eq!(out.updated, 1);
    assert_eq!(out.removed, 0, "one missed sweep is not enough");
    assert_eq!(
        t.count("SELECT count(*) FROM events WHERE event_type = 'os_updated'")
            .await,
        1
    );
    assert_eq!(
        t.count("SELECT count(*) FROM events WHERE event_type = 'blueprint_changed'")
            .await,
        1
    );

    // Sweep 3: b missing a second time in a row -> removed.
    let out = store
        .commit_page(sweep_batch(
            3_000,
            3,
            vec![device("a", "A", "15.1", "bp2")],
            true,
        ))
        .await
        .expect("write");
    assert_eq!(out.unchanged, 1);
    assert_eq!(out.removed, 1);
    assert_eq!(
        t.count("SELECT count(*) FROM devices WHERE removed_at IS NOT NULL AND key = 'b'")
            .await,
        1
    );
    assert_eq!(
        t.count("SELECT count(*) FROM events WHERE event_type = 'device_removed'")
            .await,
        1
    );

    // b comes back: enrolled again, removed_at cleared.
    store
        .commit_page(sweep_batch(
            4_000,
            4,
            vec![
                device("a", "A", "15.1", "bp2"),
                device("b", "B", "15.0", "bp1"),
            ],
            true,
        ))
        .await
        .expect("write");
    assert_eq!(
        t.count("SELECT count(*) FROM devices WHERE removed_at IS NULL")
            .await,
        2
    );
    assert_eq!(
        t.count("SELECT count(*) FROM events WHERE event_type = 'device_enrolled'")
            .await,
        1,
        "b coming back is an enrolment"
    );
    let cp = store.checkpoint("acme", "devices").await.expect("cp");
    assert_eq!(cp, Some(serde_json::json!({"sweep": 4, "done": true})));
    t.finish().await;
}

async fn a_missed_then_seen_device_resets_its_miss_count(b: Backend) {
    let Some(t) = TestStore::open(b, "a_missed_then_seen_device_resets_its_miss_count").await
    else {
        return;
    };
    let store = t.store.clone();
    store
        .commit_page(sweep_batch(
            1,
            1,
            vec![device("a", "A", "1", "x"), device("b", "B", "1", "x")],
            true,
        ))
        .await
        .expect("w");
    store
        .commit_page(sweep_batch(2, 2, vec![device("a", "A", "1", "x")], true))
        .await
        .expect("w");
    store
        .commit_page(sweep_batch(
            3,
            3,
            vec![device("a", "A", "1", "x"), device("b", "B", "1", "x")],
            true,
        ))
        .await
        .expect("w");
    let out = store
        .commit_page(sweep_batch(4, 4, vec![device("a", "A", "1", "x")], true))
        .await
        .expect("w");
    assert_eq!(out.removed, 0, "misses must be consecutive");
    t.finish().await;
}

async fn events_dedup_on_uid_and_keep_newest_state(b: Backend) {
    let Some(t) = TestStore::open(b, "events_dedup_on_uid_and_keep_newest_state").await else {
        return;
    };
    let store = t.store.clone();
    let ev = |status: &str| EventRow {
        category: "security",
        event_type: "threat".into(),
        uid: "dev1|hash|/tmp/x|2026-01-01".into(),
        occurred_at: 5,
        device_id: Some("dev1".into()),
        user_id: None,
        severity: Some("high".into()),
        summary: format!("EICAR {status}"),
        raw: format!(r#"{{"status":"{status}"}}"#),
    };
    let mut b = Batch::new("acme", "threats", 10, "security");
    b.events = vec![ev("QUARANTINED"), ev("QUARANTINED")];
    let out = store.commit_page(b).await.expect("write");
    assert_eq!((out.events_inserted, out.events_duplicate), (1, 1));
    let mut b = Batch::new("acme", "threats", 11, "security");
    b.events = vec![ev("RELEASED")];
    let out = store.commit_page(b).await.expect("write");
    assert_eq!(out.events_updated, 1);
    assert_eq!(t.count("SELECT count(*) FROM events").await, 1);
    // Full-text search finds the newest state only.
    let search = |q: &str| kandji_collector::store::EventFilter {
        q: Some(q.into()),
        ..Default::default()
    };
    let found = store
        .events_page(search("RELEASED"), 50)
        .await
        .expect("search");
    assert_eq!(found.events.len(), 1);
    let found = store
        .events_page(search("QUARANTINED"), 50)
        .await
        .expect("search");
    assert_eq!(found.events.len(), 0);
    t.finish().await;
}

async fn a_failed_batch_commits_nothing_not_even_its_checkpoint(b: Backend) {
    let Some(t) =
        TestStore::open(b, "a_failed_batch_commits_nothing_not_even_its_checkpoint").await
    else {
        return;
    };
    let store = t.store.clone();
    let mut bad = device("a", "A", "1", "x");
    bad.values.pop(); // wrong column count: the batch must fail as a whole
    let mut b = sweep_batch(1, 1, vec![device("z", "Z", "1", "x"), bad], true);
    b.events.push(EventRow {
        category: "audit",
        event_type: "x".into(),
        uid: "u1".into(),
        occurred_at: 1,
        device_id: None,
        user_id: None,
        severity: None,
        summary: "s".into(),
        raw: "{}".into(),
    });
    assert!(store.commit_page(b).await.is_err());
    assert_eq!(t.count("SELECT count(*) FROM devices").await, 0);
    assert_eq!(t.count("SELECT count(*) FROM events").await, 0);
    assert_eq!(t.count("SELECT count(*) FROM checkpoints").await, 0);
    t.finish().await;
}

async fn reopening_keeps_data_and_schema_version(b: Backend) {
    let Some(t) = TestStore::open(b, "reopening_keeps_data").await else {
        return;
    };
    t.store
        .commit_page(sweep_batch(1, 1, vec![device("a", "A", "1", "x")], true))
        .await
        .expect("w");
    let t = t.reopened().await;
    assert_eq!(t.count("SELECT count(*) FROM devices").await, 1);
    match b {
        Backend::Sqlite => {}
        Backend::Postgres => {
            let pg = t.store.pg().expect("pg");
            assert_eq!(
                pg.schema_version().await.expect("version"),
                kandji_collector::store::pg::migrations::latest()
            );
        }
    }
    t.finish().await;
}

#[tokio::test]
async fn a_reopened_sqlite_store_keeps_its_schema_version_and_wal() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(dir.path()).expect("open");
        store
            .commit_page(sweep_batch(1, 1, vec![device("a", "A", "1", "x")], true))
            .await
            .expect("w");
    }
    let store = Store::open(dir.path()).expect("reopen");
    let c = sql(&store);
    assert_eq!(
        c.query_row("SELECT count(*) FROM devices", [], |r| r.get::<_, i64>(0))
            .expect("q"),
        1
    );
    assert_eq!(
        c.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
            .expect("q"),
        i64::from(kandji_collector::store::schema::latest_version())
    );
    assert_eq!(
        c.query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0))
            .expect("q"),
        "wal"
    );
}

async fn a_device_new_after_the_baseline_is_an_enrolment_even_mid_sweep(b: Backend) {
    let Some(t) = TestStore::open(
        b,
        "a_device_new_after_the_baseline_is_an_enrolment_even_mid_sweep",
    )
    .await
    else {
        return;
    };
    let store = t.store.clone();
    // Baseline over two pages: no events for either page.
    store
        .commit_page(sweep_batch(10, 1, vec![device("a", "A", "1", "x")], false))
        .await
        .expect("w");
    store
        .commit_page(sweep_batch(11, 1, vec![device("b", "B", "1", "x")], true))
        .await
        .expect("w");
    assert_eq!(t.count("SELECT count(*) FROM events").await, 0);
    // Sweep 2 started at 20: c is new.
    store
        .commit_page(sweep_batch(
            20,
            2,
            vec![device("a", "A", "1", "x"), device("c", "C", "1", "x")],
            false,
        ))
        .await
        .expect("w");
    assert_eq!(
        t.count("SELECT count(*) FROM events WHERE event_type = 'device_enrolled'")
            .await,
        1
    );
    t.finish().await;
}

#[cfg(unix)]
#[tokio::test]
async fn the_store_file_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let mode = std::fs::metadata(store.path())
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}
