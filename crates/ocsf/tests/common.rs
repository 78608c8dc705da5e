//! Fixture loading shared by the tests.
#![allow(dead_code)]

use ocsf::{Context, EventRecord, InventoryRecord, Record};
use serde_json::Value;

pub struct Fixture {
    pub name: String,
    pub class_uid: i64,
    pub record: Value,
}

pub fn fixtures() -> Vec<Fixture> {
    let text = include_str!("fixtures/records.json");
    let all: Vec<Value> = serde_json::from_str(text).unwrap();
    all.into_iter()
        .map(|f| Fixture {
            name: f["name"].as_str().unwrap().to_string(),
            class_uid: f["class_uid"].as_i64().unwrap(),
            record: f["record"].clone(),
        })
        .collect()
}

pub const CTX: Context<'static> = Context {
    source: "acme",
    tenant_uid: "acme",
    collector_version: "0.1.0",
};

fn s(v: &Value, k: &str) -> Option<&'static str> {
    v.get(k)
        .and_then(Value::as_str)
        .map(|s| &*Box::leak(s.to_string().into_boxed_str()))
}

/// Maps a fixture record (leaking its strings: tests only).
pub fn map(f: &Fixture) -> Option<Value> {
    let r: &'static Value = Box::leak(Box::new(f.record.clone()));
    let rec = if r["kind"] == "inventory" {
        Record::Inventory(InventoryRecord {
            table: s(r, "table").unwrap(),
            key: s(r, "key").unwrap(),
            device_id: s(r, "device_id"),
            raw: &r["raw"],
            hash: r["hash"].as_i64().unwrap(),
            observed_at: r["observed_at"].as_i64().unwrap(),
            removed_at: r["removed_at"].as_i64(),
        })
    } else {
        Record::Event(EventRecord {
            stream: s(r, "stream").unwrap(),
            category: s(r, "category").unwrap(),
            event_type: s(r, "event_type").unwrap(),
            uid: s(r, "uid").unwrap(),
            occurred_at: r["occurred_at"].as_i64().unwrap(),
            device_id: s(r, "device_id"),
            user_id: s(r, "user_id"),
            severity: s(r, "severity"),
            summary: s(r, "summary").unwrap(),
            raw: &r["raw"],
            hash: r["hash"].as_i64().unwrap(),
            related: r.get("related").filter(|v| !v.is_null()),
        })
    };
    ocsf::map(&CTX, &rec)
}
