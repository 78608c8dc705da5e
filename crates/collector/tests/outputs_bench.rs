//! Output throughput, per sink. A benchmark, not a timed test: run it in release with
//!
//! ```text
//! cargo test --release -p kandji-collector --test outputs_bench -- --ignored --nocapture
//! ```
//!
//! It fills a store from a simulated tenant (1,000 devices), then drains the whole outbox into
//! each sink in turn (receivers on loopback) and prints records/s. Results: BENCHMARKS.md.

mod common;
mod receivers;

use std::time::{Duration, Instant};

use common::*;
use kandji_collector::outputs::config::{Format, OtlpEncoding, SinkKind, SinkSpec};
use kandji_collector::outputs::{Output, Pacing, SourceInfo};
use receivers::*;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run in release with --ignored --nocapture"]
async fn output_throughput() {
    let env = env(sim_config(1000, 3)).await;
    let t = Instant::now();
    cycle(&env, &kandji_collector::streams::StreamName::ALL).await;
    let outbox = count(&env.store, "SELECT COUNT(*) FROM outbox");
    println!("collected {outbox} outbox records in {:.1?}", t.elapsed());
    let (_rx, base) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let info = SourceInfo {
        source: "acme".into(),
        tenant: "acme".into(),
    };
    let webhook = |format, gzip, batch| {
        SinkKind::Webhook {
            url: format!("{base}/hook").parse().unwrap(),
            gzip,
            auth: Some((
                "Authorization".into(),
                "Bearer hook-token".to_string().into(),
            )),
            hmac_secret: Some(SECRET.to_string().into()),
            timeout: Duration::from_secs(30),
        }
        .with(format, batch)
    };
    let otlp = |encoding, gzip| {
        SinkKind::Otlp {
            endpoint: format!("{base}/v1/logs").parse().unwrap(),
            encoding,
            gzip,
            headers: vec![],
            secret_headers: vec![],
            timeout: Duration::from_secs(30),
        }
        .with(Format::Ocsf, 500)
    };
    let ndjson = |format| {
        SinkKind::Ndjson {
            path: Some(dir.path().join(format!("{format:?}.ndjson"))),
            rotate_bytes: 256 << 20,
            rotate_every: None,
            keep_files: 100,
        }
        .with(format, 1000)
    };
    let cases: Vec<(&str, (SinkKind, Format, usize))> = vec![
        ("ndjson file, raw", ndjson(Format::Raw)),
        ("ndjson file, ocsf", ndjson(Format::Ocsf)),
        (
            "webhook, ocsf, gzip + hmac, batch 500",
            webhook(Format::Ocsf, true, 500),
        ),
        (
            "webhook, raw, no gzip + hmac, batch 500",
            webhook(Format::Raw, false, 500),
        ),
        (
            "otlp protobuf, ocsf, gzip, batch 500",
            otlp(OtlpEncoding::Protobuf, true),
        ),
        (
            "otlp json, ocsf, gzip, batch 500",
            otlp(OtlpEncoding::Json, true),
        ),
    ];
    println!("| sink | records | seconds | records/s |");
    println!("|---|---:|---:|---:|");
    for (i, (label, (kind, format, batch))) in cases.into_iter().enumerate() {
        let spec = SinkSpec {
            name: format!("bench-{i}"),
            format,
            batch_size: batch,
            kind,
        };
        let out = Output::new(env.store.clone(), info.clone(), spec, Pacing::default()).unwrap();
        let sd = CancellationToken::new();
        let t = Instant::now();
        let n = out.drain(&sd).await.unwrap();
        let secs = t.elapsed().as_secs_f64();
        println!("| {label} | {n} | {secs:.2} | {:.0} |", n as f64 / secs);
    }
}

trait With {
    fn with(self, f: Format, batch: usize) -> (SinkKind, Format, usize);
}

impl With for SinkKind {
    fn with(self, f: Format, batch: usize) -> (SinkKind, Format, usize) {
        (self, f, batch)
    }
}

/// The store's write path with the outbox (one extra insert per new row version): inventory
/// rows/s through `Store::write`, 1,000-row batches, first inserts then changed versions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run in release with --ignored --nocapture"]
async fn store_write_throughput_with_outbox() {
    use kandji_collector::store::{Batch, InvRow, Store, Table, Upsert};
    use rusqlite::types::Value as V;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let pad = "x".repeat(900);
    for round in 0..2 {
        let t = Instant::now();
        let mut rows_total = 0;
        for b in 0..200 {
            let mut batch = Batch::new("acme", "apps", 1_700_000_000_000 + round, "apps");
            let rows = (0..1000)
                .map(|i| {
                    let dev = format!("dev-{b}");
                    InvRow {
                        key: format!("{dev}|com.example.app{i}"),
                        device_id: Some(dev),
                        values: vec![
                            V::Text(format!("App {i}")),
                            V::Text(format!("com.example.app{i}")),
                            V::Text(format!("1.{round}")),
                            V::Text(format!("/Applications/App {i}.app")),
                        ],
                        raw: format!(
                            "{{\"name\":\"App {i}\",\"bundle_id\":\"com.example.app{i}\",\"version\":\"1.{round}\",\"pad\":\"{pad}\"}}"
                        ),
                    }
                })
                .collect::<Vec<_>>();
            rows_total += rows.len();
            batch.upserts.push(Upsert {
                table: Table::Apps,
                sweep: 0,
                started_at: 0,
                rows,
            });
            store.commit_page(batch).await.unwrap();
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "| store write, {} | {rows_total} | {secs:.2} | {:.0} |",
            if round == 0 {
                "new rows"
            } else {
                "changed rows"
            },
            rows_total as f64 / secs
        );
    }
    let outbox = count(&store, "SELECT COUNT(*) FROM outbox");
    // 200k new rows, 200k changed rows, and the 200k `app_updated` events the changes raise.
    assert_eq!(outbox, 600_000);
}
