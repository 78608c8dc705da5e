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

fn row(table: Table, key: &str, device: &str) -> InvRow {
    InvRow {
        key: key.to_string(),
        device_id: Some(device.to_string()),
        values: vec![Value::Null; table.spec().columns.len()],
        raw: serde_json::json!({"device_id": device, "key": key}).to_string(),
    }
}

async fn sweep(store: &Store, table: Table, stream: &'static str, at: i64, rows: Vec<InvRow>) {
    let mut b = Batch::new("acme", stream, at, stream);
    b.upserts.push(Upsert {
        table,
        sweep: at,
        started_at: at,
        rows,
    });
    b.sweep_ends.push(SweepEnd {
        table,
        sweep: at,
        scope: Scope::All,
    });
    store.commit_page(b).await.unwrap();
}

/// Every output record after `pos`: (table or stream, key, id).
async fn records_after(store: &Store, mut pos: OutboxPos) -> Vec<(String, String, String)> {
    let info = SourceInfo {
        source: "acme".into(),
        tenant: "acme".into(),
    };
    let mut out = Vec::new();
    loop {
        let (records, last, _) = outputs::outbox::read_batch(store, &info, Format::Raw, pos, 100)
            .await
            .unwrap();
        let Some(last) = last else { break };
        out.extend(records.into_iter().map(|r| (r.kind, r.record_key, r.id)));
        pos = last;
    }
    out
}

/// A removed device takes its apps, details and compliance rows with it, and the outputs hear
/// of every one of those removals, each under an id of its own (not the live version's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_device_tells_the_outputs_of_every_row_it_takes_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let t0 = 1_800_000_000_000;
    let devices =
        |keys: &[&str]| -> Vec<InvRow> { keys.iter().map(|k| row(Table::Devices, k, k)).collect() };
    sweep(
        &store,
        Table::Devices,
        "devices",
        t0,
        devices(&["d1", "d2"]),
    )
    .await;
    sweep(
        &store,
        Table::Compliance,
        "compliance",
        t0 + 1,
        vec![
            row(Table::Compliance, "d1|library_item|a", "d1"),
            row(Table::Compliance, "d1|parameter|b", "d1"),
            row(Table::Compliance, "d2|parameter|b", "d2"),
        ],
    )
    .await;
    let mut details = Batch::new("acme", "device_details", t0 + 2, "device_details");
    details.upserts.push(Upsert {
        table: Table::DeviceDetails,
        sweep: 0,
        started_at: t0 + 2,
        rows: vec![row(Table::DeviceDetails, "filevault|d1", "d1")],
    });
    store.commit_page(details).await.unwrap();
    let mut apps = Batch::new("acme", "apps", t0 + 3, "apps");
    apps.upserts.push(Upsert {
        table: Table::Apps,
        sweep: t0 + 3,
        started_at: t0 + 3,
        rows: vec![app("d1", 1), app("d1", 2), app("d2", 1)],
    });
    store.commit_page(apps).await.unwrap();
    let live = records_after(&store, OutboxPos::default()).await;
    let live_device_id = live
        .iter()
        .find(|(k, key, _)| k == "devices" && key == "d1")
        .map(|(_, _, id)| id.clone())
        .expect("d1's live record");
    let mut end = OutboxPos::default();
    {
        let info = SourceInfo {
            source: "acme".into(),
            tenant: "acme".into(),
        };
        loop {
            let (_, last, _) = outputs::outbox::read_batch(&store, &info, Format::Raw, end, 100)
                .await
                .unwrap();
            let Some(last) = last else { break };
            end = last;
        }
    }
    // Two full sweeps without d1: it is removed.
    sweep(&store, Table::Devices, "devices", t0 + 10, devices(&["d2"])).await;
    sweep(&store, Table::Devices, "devices", t0 + 20, devices(&["d2"])).await;
    let removals = records_after(&store, end).await;
    let got: std::collections::BTreeSet<(String, String)> = removals
        .iter()
        .map(|(k, key, _)| (k.clone(), key.clone()))
        .collect();
    let want: std::collections::BTreeSet<(String, String)> = [
        ("devices", "d1"),
        ("compliance", "d1|library_item|a"),
        ("compliance", "d1|parameter|b"),
        ("device_details", "filevault|d1"),
        ("apps", "d1|com.example.app1"),
        ("apps", "d1|com.example.app2"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    // Besides the rows: the change event `device_removed` (its uid has the table's prefix).
    assert!(
        got.iter()
            .any(|(_, key)| key.starts_with("devices:d1:device_removed:")),
        "{got:?}"
    );
    let rows_only: std::collections::BTreeSet<(String, String)> = got
        .iter()
        .filter(|(_, key)| !key.contains(':'))
        .cloned()
        .collect();
    assert_eq!(rows_only, want, "one removal record for each row d1 took");
    let removal_id = removals
        .iter()
        .find(|(k, key, _)| k == "devices" && key == "d1")
        .map(|(_, _, id)| id.clone())
        .expect("d1's removal");
    assert_ne!(removal_id, live_device_id, "a removal has an id of its own");
    // d2's rows are untouched.
    assert!(!got.iter().any(|(_, key)| key.contains("d2")), "{got:?}");
}
