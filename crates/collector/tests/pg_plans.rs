//! The explorer's queries keep their plans on PostgreSQL, checked with `EXPLAIN` on a store
//! with three tenants' worth of rows and fresh statistics: a page of events or devices walks
//! an index in its sort order (no sort of the table, no sequential scan of a big table), and
//! one tenant's page reads one partition only.

mod common;

use common::backend::{Backend, TestStore};
use kandji_collector::store::{
    Batch, DeviceFilter, EventFilter, EventRow, InvRow, Scope, Store, SweepEnd, Table, Upsert,
};
use rusqlite::types::Value;

const SOURCES: [&str; 3] = ["acme", "globex", "initech"];
const DEVICES: usize = 3_000;
const EVENTS: usize = 30_000;

fn device(i: usize) -> InvRow {
    let spec = Table::Devices.spec();
    let mut values = vec![Value::Null; spec.columns.len()];
    let mut set = |c: &str, v: Value| values[spec.col_index(c).expect("column")] = v;
    set("device_name", Value::Text(format!("Mac {i:05}")));
    set(
        "platform",
        Value::Text(["Mac", "iPhone", "iPad"][i % 3].into()),
    );
    set("model", Value::Text(format!("Model {}", i % 17)));
    set("os_version", Value::Text(format!("15.{}", i % 7)));
    set(
        "blueprint_name",
        Value::Text(format!("Blueprint {}", i % 9)),
    );
    set("user_email", Value::Text(format!("user{i}@acme.io")));
    set("serial_number", Value::Text(format!("C02X{i:06}")));
    set(
        "last_check_in",
        Value::Integer(1_700_000_000_000 + i as i64),
    );
    let id = format!("dev-{i:05}");
    InvRow {
        key: id.clone(),
        device_id: Some(id.clone()),
        values,
        raw: format!(r#"{{"device_id":"{id}","device_name":"Mac {i:05}"}}"#),
    }
}

async fn load(store: &Store) {
    for src in SOURCES {
        for (p, chunk) in (0..DEVICES).collect::<Vec<_>>().chunks(1_000).enumerate() {
            let mut b = Batch::new(src, "devices", 1_000, "inventory");
            b.upserts.push(Upsert {
                table: Table::Devices,
                sweep: 1,
                started_at: 1_000,
                rows: chunk.iter().map(|i| device(*i)).collect(),
            });
            if (p + 1) * 1_000 >= DEVICES {
                b.sweep_ends.push(SweepEnd {
                    table: Table::Devices,
                    sweep: 1,
                    scope: Scope::All,
                });
            }
            store.commit_page(b).await.expect("devices");
        }
        for chunk in (0..EVENTS).collect::<Vec<_>>().chunks(2_000) {
            let mut b = Batch::new(src, "audit_events", 2_000, "audit");
            b.events = chunk
                .iter()
                .map(|i| EventRow {
                    category: "audit",
                    event_type: ["blueprint.update", "device.enroll", "admin_user.update"][i % 3]
                        .into(),
                    uid: format!("e{i}"),
                    occurred_at: 1_700_000_000_000 + (*i as i64) * 1_000,
                    device_id: Some(format!("dev-{:05}", i % DEVICES)),
                    user_id: None,
                    severity: Some("info".into()),
                    summary: format!("event {i} about CVE-2024-{:04}", i % 500),
                    raw: format!(r#"{{"id":"e{i}","n":{i}}}"#),
                })
                .collect();
            store.commit_page(b).await.expect("events");
        }
    }
}

/// No sequential scan of a big table, and no sort of one.
fn assert_walks_an_index(what: &str, plan: &[String]) {
    let text = plan.join("\n");
    for t in ["events", "devices"] {
        assert!(
            !plan.iter().any(|l| l.contains(&format!("Seq Scan on {t}"))),
            "{what}: a sequential scan of {t}:\n{text}"
        );
    }
    assert!(
        !plan
            .iter()
            .any(|l| l.trim_start().starts_with("->  Sort") || l.starts_with("Sort")),
        "{what}: a sort:\n{text}"
    );
    assert!(text.contains("Index"), "{what}: no index:\n{text}");
}

fn partitions(plan: &[String], table: &str) -> std::collections::BTreeSet<String> {
    plan.iter()
        .flat_map(|l| l.split_whitespace())
        .filter(|w| {
            w.strip_prefix(&format!("{table}_p"))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explorer_pages_walk_an_index_and_one_tenant_reads_one_partition() {
    let Some(t) = TestStore::open(Backend::Postgres, "pg_plans").await else {
        return;
    };
    load(&t.store).await;
    t.store.pg().expect("pg").analyze().await.expect("analyze");
    let s = &t.store;
    // Events: one tenant (newest, older pages, a type, a device), every tenant.
    let one = EventFilter {
        source: Some("acme".into()),
        ..Default::default()
    };
    let plan = s.explain_events(one.clone()).await.expect("plan");
    assert_walks_an_index("a tenant's events", &plan);
    assert_eq!(partitions(&plan, "events").len(), 1, "{plan:#?}");
    let older = EventFilter {
        after: Some(format!("{}:{}", 1_700_000_000_000i64 + 15_000_000, 5)),
        ..one.clone()
    };
    assert_walks_an_index(
        "an older page",
        &s.explain_events(older).await.expect("plan"),
    );
    let by_device = EventFilter {
        device: Some("dev-00042".into()),
        ..one.clone()
    };
    let plan = s.explain_events(by_device).await.expect("plan");
    assert_walks_an_index("a device's events", &plan);
    assert_eq!(partitions(&plan, "events").len(), 1, "{plan:#?}");
    let all = s
        .explain_events(EventFilter::default())
        .await
        .expect("plan");
    assert_walks_an_index("every tenant's events", &all);
    // Devices, by each sort key, one tenant and all.
    for sort in kandji_collector::store::device_sorts() {
        for dir in ["asc", "desc"] {
            let f = DeviceFilter {
                source: Some("globex".into()),
                sort: Some(sort.into()),
                dir: Some(dir.into()),
                ..Default::default()
            };
            let plan = s.explain_devices(f.clone()).await.expect("plan");
            assert_walks_an_index(&format!("a tenant's devices by {sort} {dir}"), &plan);
            assert_eq!(partitions(&plan, "devices").len(), 1, "{plan:#?}");
            let plan = s
                .explain_devices(DeviceFilter { source: None, ..f })
                .await
                .expect("plan");
            assert_walks_an_index(&format!("every tenant's devices by {sort} {dir}"), &plan);
        }
    }
    // And the pages answer, newest first, in name order.
    let page = s.events_page(one, 50).await.expect("page");
    assert_eq!(page.events.len(), 50);
    assert!(page.events[0].occurred_at > page.events[49].occurred_at);
    let devices = s
        .devices_page(DeviceFilter {
            source: Some("initech".into()),
            ..Default::default()
        })
        .await
        .expect("devices");
    assert_eq!(devices[0].name, "Mac 00000");
    let found = s
        .events_page(
            EventFilter {
                q: Some("2024-0042".into()),
                source: Some("acme".into()),
                ..Default::default()
            },
            50,
        )
        .await
        .expect("search");
    assert!(
        !found.events.is_empty() && found.events.iter().all(|e| e.summary.contains("2024-0042"))
    );
    t.finish().await;
}
