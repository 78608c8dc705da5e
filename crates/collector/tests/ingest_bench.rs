//! Throughput of the ingest pipeline alone: a Prism `apps` export CSV, already downloaded,
//! parsed and normalized (`AppRowMapper`, in the parser's thread) and stored (the writer),
//! with nothing waiting on the network or the simulator. First as a baseline (a first
//! load), then the same file again as a full snapshot compared set-wise (nothing changed).
//!
//! ```sh
//! KANDJI_BENCH_DEVICES=10000 cargo test --release -p kandji-collector --test ingest_bench \
//!   -- --ignored --nocapture
//! ```
//! Not a timed assertion: it prints the figures (BENCHMARKS.md records them).

mod common;

use std::time::Instant;

use futures::StreamExt;
use kandji_collector::store::{AppRowMapper, AppUpsert, Batch, Scope, Store, SweepEnd, Table};

async fn ingest(store: &Store, csv: &std::path::Path, sweep: i64) -> (u64, f64, u64) {
    let file = tokio::fs::File::open(csv).await.unwrap();
    let body = tokio_util_like(file);
    let t = Instant::now();
    let mut batches =
        kandji_api::export::parse_csv_stream_mapped(body, 5_000, 4, AppRowMapper::default());
    let mut rows = 0u64;
    let mut written = 0u64;
    while let Some(b) = batches.next().await {
        let b = b.unwrap();
        rows += b.len() as u64;
        let mut batch = Batch::new("acme", "apps", sweep, "apps");
        batch.apps.push(AppUpsert {
            sweep,
            started_at: sweep,
            rows: b,
        });
        written += store.commit_page(batch).await.unwrap().records();
    }
    let mut end = Batch::new("acme", "apps", sweep, "apps");
    end.sweep_ends.push(SweepEnd {
        table: Table::Apps,
        sweep,
        scope: Scope::All,
    });
    written += store.commit_page(end).await.unwrap().records();
    (rows, t.elapsed().as_secs_f64(), written)
}

/// A file as a stream of byte chunks (what the export download yields).
fn tokio_util_like(
    file: tokio::fs::File,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static {
    use tokio::io::AsyncReadExt;
    futures::stream::unfold(file, |mut f| async move {
        let mut buf = vec![0u8; 1 << 20];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run it with --release --ignored --nocapture"]
async fn apps_csv_parse_normalize_store_throughput() {
    let devices: usize = std::env::var("KANDJI_BENCH_DEVICES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let mut cfg = common::sim_config(devices, 1);
    cfg.churn = kandji_sim::Churn::none();
    cfg.app_richness = std::env::var("KANDJI_BENCH_APP_RICHNESS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let env = common::env(cfg).await;
    // Download the export once, to a file.
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("apps.csv");
    {
        let client = &env.rt.client;
        let e = client
            .create_export(&kandji_api::export::ExportRequest::category("apps"))
            .await
            .unwrap();
        let done = client
            .wait_export(
                e.id.as_deref().unwrap(),
                &kandji_api::export::ExportOptions {
                    poll_initial: std::time::Duration::from_millis(5),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let resp = client
            .download(done.signed_url.as_deref().unwrap())
            .await
            .unwrap();
        let bytes = resp.bytes().await.unwrap();
        std::fs::write(&csv, &bytes).unwrap();
    }
    let size = std::fs::metadata(&csv).unwrap().len();
    let store_dir = tempfile::tempdir().unwrap();
    let store = Store::open(store_dir.path()).unwrap();
    let (rows, secs, written) = ingest(&store, &csv, 1_800_000_000_000).await;
    println!(
        "first load: {rows} installs ({:.0} MB of CSV) in {secs:.2} s = {:.0} records/s ({written} written)",
        size as f64 / 1e6,
        rows as f64 / secs
    );
    let (rows2, secs2, written2) = ingest(&store, &csv, 1_800_000_100_000).await;
    println!(
        "same snapshot again (set-wise, unchanged): {rows2} installs in {secs2:.2} s = {:.0} records/s ({written2} written)",
        rows2 as f64 / secs2
    );
    assert_eq!(written2, 0, "an unchanged snapshot writes nothing");
    assert_eq!(rows, rows2);
}
