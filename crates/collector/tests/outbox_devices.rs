//! The outbox of app installs: a device's first batch is one outbox row, yet an output
//! reads every install exactly once, in batches that never exceed its size, also when a
//! device's installs span two store batches and when a batch ends inside a device.

use std::collections::BTreeMap;

use kandji_collector::outputs::{self, Format, SourceInfo};
use kandji_collector::store::{Batch, InvRow, OutboxPos, Scope, Store, SweepEnd, Table, Upsert};
use rusqlite::types::Value;

fn app(device: &str, i: usize) -> InvRow {
    let raw = serde_json::json!({
        "device_id": device,
        "device__name": format!("Mac {device}"),
        "bundle_id": format!("com.example.app{i}"),
        "name": format!("App {i}"),
        "version": "1.0",
        "created_at": "2026-11-02 06:40:01.754776+00:00",
        "last_changed_at": "2026-11-02 06:40:01.754776+00:00",
        "updated_at": "2026-11-02 06:40:01.754776+00:00",
    });
    InvRow {
        key: format!("{device}|com.example.app{i}"),
        device_id: Some(device.to_string()),
        values: vec![Value::Null; Table::Apps.spec().columns.len()],
        raw: raw.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_install_is_read_once_in_batches_no_larger_than_asked() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // Three devices of 150 installs, committed 100 rows at a time: two devices span a batch
    // boundary.
    let rows: Vec<InvRow> = ["d1", "d2", "d3"]
        .iter()
        .flat_map(|d| (0..150).map(move |i| app(d, i)))
        .collect();
    let sweep = 1_800_000_000_000;
    let n = rows.len();
    for (k, chunk) in rows.chunks(100).enumerate() {
        let mut b = Batch::new("acme", "apps", sweep + k as i64 * 10, "apps");
        b.upserts.push(Upsert {
            table: Table::Apps,
            sweep,
            started_at: sweep,
            rows: chunk.to_vec(),
        });
        store.commit_page(b).await.unwrap();
    }
    let mut end = Batch::new("acme", "apps", sweep + 1000, "apps");
    end.sweep_ends.push(SweepEnd {
        table: Table::Apps,
        sweep,
        scope: Scope::All,
    });
    store.commit_page(end).await.unwrap();
    let info = SourceInfo {
        source: "acme".into(),
        tenant: "acme".into(),
    };
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut pos = OutboxPos::default();
    let mut reads = 0;
    loop {
        let (records, last, _) = outputs::outbox::read_batch(&store, &info, Format::Raw, pos, 40)
            .await
            .unwrap();
        let Some(last) = last else { break };
        assert!(records.len() <= 40, "a batch of {}", records.len());
        for r in records {
            *seen.entry(r.record_key).or_default() += 1;
        }
        assert!(last > pos, "the position moves");
        pos = last;
        reads += 1;
        assert!(reads < 1000);
    }
    assert_eq!(seen.len(), n, "every install");
    assert!(
        seen.values().all(|c| *c == 1),
        "read twice: {:?}",
        seen.iter()
            .filter(|(_, c)| **c > 1)
            .take(5)
            .collect::<Vec<_>>()
    );
    assert!(reads >= n / 40);
    // The outbox holds a handful of rows for 450 installs.
    let rows: i64 = rusqlite::Connection::open(store.path())
        .unwrap()
        .query_row("SELECT count(*) FROM outbox WHERE tbl = 'apps'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(rows <= 10, "{rows} outbox rows");
}
