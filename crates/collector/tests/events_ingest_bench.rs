//! What the event search index costs on the write path: the same events inserted into three
//! stores side by side in one run, one with the index as shipped (migration 7: the summary
//! and the record's leaf values through `json_tree`), one indexing the raw JSON text instead
//! (what searching keys and all would cost), and one with no search index at all.
//!
//! ```sh
//! KANDJI_BENCH_EVENTS=200000 cargo test --release -p kandji-collector \
//!   --test events_ingest_bench -- --ignored --nocapture
//! ```
//! Not a timed assertion: it prints the figures (BENCHMARKS.md records them).

use std::time::Instant;

use kandji_collector::store::Store;
use rusqlite::params;

/// A vulnerability detection or an audit event, shaped as the API sends them.
fn record(i: u64) -> (String, &'static str, &'static str, String) {
    let dev = format!("{:08x}-1c0d-4b5e-9f00-{:012x}", i % 5_000, i % 5_000);
    if i.is_multiple_of(2) {
        let raw = serde_json::json!({
            "device_id": dev,
            "device_name": format!("MacBook-{}", i % 5_000),
            "device_serial_number": format!("C02{:08}", i % 5_000),
            "device_model": "MacBook Pro (14-inch, 2023)",
            "device_os_version": "15.1.1",
            "blueprint_id": format!("bp-{}", i % 12),
            "blueprint_name": format!("Blueprint {}", i % 12),
            "name": "Firefox",
            "version": format!("128.0.{}", i % 7),
            "path": "/Applications/Firefox.app",
            "bundle_id": "org.mozilla.firefox",
            "cve_id": format!("CVE-2026-{:05}", i % 4_000),
            "description": "A flaw in Firefox allows code execution.",
            "cve_link": format!("https://nvd.nist.gov/vuln/detail/CVE-2026-{:05}", i % 4_000),
            "cvss_score": 7.5,
            "severity": "High",
            "detection_datetime": "2026-11-30T10:00:00Z",
            "cve_published_at": "2026-11-01T00:00:00",
            "cve_modified_at": "2026-11-02T00:00:00"
        })
        .to_string();
        (
            raw,
            "vulnerability_detections",
            "security",
            format!("CVE on {dev}"),
        )
    } else {
        let raw = serde_json::json!({
            "id": format!("01JNGZW47KZKPXE1JW{i:08}"),
            "action": "update",
            "occurred_at": "2026-11-30T10:00:00.253454Z",
            "actor_id": "cf40d6e7-20cb-4da9-84a1-9ad0b7003ca5",
            "actor_type": "user",
            "target_id": format!("449ec92a-186a-44f2-9421-{i:012}"),
            "target_type": "blueprint",
            "target_component": "library_items",
            "new_state": {
                "name": format!("Blueprint {}", i % 12),
                "library_items_added": [{"id": "c7a5871a-1683-432f-87d4-30bbd404eb85", "name": "GitHub"}],
                "library_items_removed": [],
                "library_items_scoped": [
                    {"id": "6c3c34cf-36c4-4812-bd3f-712d66458c80", "name": "Apple Configurator"},
                    {"id": "1af36ec2-111d-4ec4-bc3b-170facf1408b", "name": "Apple Developer"}
                ]
            },
            "metadata": {}
        })
        .to_string();
        (
            raw,
            "audit_events",
            "audit",
            format!("user cf40 updated blueprint {}", i % 12),
        )
    }
}

fn insert(path: &std::path::Path, n: u64) -> f64 {
    let mut c = rusqlite::Connection::open(path).unwrap();
    c.pragma_update(None, "synchronous", "NORMAL").unwrap();
    let t = Instant::now();
    for chunk in 0..n.div_ceil(500) {
        // One transaction per page of 500, as the writer commits a page.
        let tx = c.transaction().unwrap();
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO events (source, stream, category, event_type, uid, occurred_at,
                       device_id, severity, hash, collected_at, updated_at, summary, raw)
                     VALUES ('acme', ?1, ?2, 'e', ?3, ?4, ?5, 'high', 0, ?4, ?4, ?6, ?7)",
                )
                .unwrap();
            for i in chunk * 500..((chunk + 1) * 500).min(n) {
                let (raw, stream, category, summary) = record(i);
                st.execute(params![
                    stream,
                    category,
                    format!("uid-{i}"),
                    1_790_000_000_000i64 + i as i64,
                    format!("dev-{}", i % 5_000),
                    summary,
                    raw
                ])
                .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    t.elapsed().as_secs_f64()
}

#[test]
#[ignore = "a benchmark: run it with --release --ignored --nocapture"]
fn what_the_search_index_costs_per_event() {
    let n: u64 = std::env::var("KANDJI_BENCH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    let setups: [(&str, &str); 3] = [
        ("as shipped: summary + leaf values (json_tree)", ""),
        (
            "summary + raw JSON text",
            "DROP TRIGGER events_ai;
             CREATE TRIGGER events_ai AFTER INSERT ON events BEGIN
               INSERT INTO events_fts(rowid, summary, vals) VALUES (new.seq, new.summary, new.raw);
             END;",
        ),
        (
            "no search index",
            "DROP TRIGGER events_ai; DROP TRIGGER events_ad; DROP TRIGGER events_au;",
        ),
    ];
    let mut took = Vec::new();
    // Twice round, interleaved, so a noisy moment does not land on one setup only.
    for round in 0..2 {
        for (i, (name, sql)) in setups.iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            let path = Store::open(dir.path()).unwrap().path().to_path_buf();
            if !sql.is_empty() {
                rusqlite::Connection::open(&path)
                    .unwrap()
                    .execute_batch(sql)
                    .unwrap();
            }
            let secs = insert(&path, n);
            if round == 0 {
                took.push((name.to_string(), secs));
            } else {
                took[i].1 = took[i].1.min(secs);
            }
        }
    }
    let base = took[2].1;
    println!("{n} events, one transaction per 500 (best of two rounds):");
    for (name, secs) in &took {
        println!(
            "{name:<48} {secs:>6.2} s  {:>8.0} events/s  {:.2}× the unindexed time",
            n as f64 / secs,
            secs / base
        );
    }
}
