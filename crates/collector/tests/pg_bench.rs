//! Event pages committed to PostgreSQL and to SQLite, side by side in one run (a ratio, since
//! these machines are noisy). Ignored: run it with
//!
//! ```sh
//! KANDJI_BENCH_EVENTS=200000 cargo test --release -p kandji-collector --test pg_bench -- --ignored --nocapture
//! ```
//!
//! Each round commits the same pages (1,000 audit-sized events each, with a checkpoint) to a
//! fresh store of each kind, alternating which goes first.

use std::time::Instant;

use kandji_collector::store::pg::{PgConnect, PgStore, Replica};
use kandji_collector::store::{Batch, EventRow, Store};

fn pages(source: &str, n: usize) -> Vec<Batch> {
    let raw = |i: usize| {
        format!(
            r#"{{"id":"{i:08x}-7d1c-4e0b-9a57-3f2d","action":"update","occurred_at":"2026-11-30T12:{:02}:00Z","actor_id":"8d21c0de-1111-2222-3333-444455556666","actor_type":"admin_user","target_id":"013094ee-aaaa-bbbb-cccc-ddddeeeeffff","target_type":"blueprint","target_component":"library items","new_state":{{"name":"Engineering","items":{}}}}}"#,
            i % 60,
            i % 97
        )
    };
    (0..n.div_ceil(1_000))
        .map(|p| {
            let mut b = Batch::new(source, "audit_events", 1_000 + p as i64, "audit");
            b.events = (p * 1_000..((p + 1) * 1_000).min(n))
                .map(|i| EventRow {
                    category: "audit",
                    event_type: "blueprint.update".into(),
                    uid: format!("{i:08x}"),
                    occurred_at: i as i64,
                    device_id: None,
                    user_id: None,
                    severity: None,
                    summary: format!("user 8d21… updated blueprint “Engineering” ({i})"),
                    raw: raw(i),
                })
                .collect();
            b.checkpoint = Some(serde_json::json!({"cursor": p}));
            b
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn event_pages_postgres_against_sqlite() {
    let n: usize = std::env::var("KANDJI_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let url = std::env::var("KANDJI_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let mut ratios = Vec::new();
    for round in 0..3 {
        let batches = pages("acme", n);
        let schema = format!("kc_bench_{}_{round}", std::process::id());
        let mut c = PgConnect::new(&url);
        c.schema = Some(schema.clone());
        let pg = PgStore::connect(&c).await.expect("PostgreSQL");
        pg.register_sources(&["acme".to_string()]).await.unwrap();
        let lease = pg
            .rebalance(&Replica::new("bench", 60_000), 0)
            .await
            .unwrap()
            .held[0]
            .clone();
        let dir = tempfile::tempdir().unwrap();
        let lite = Store::open(dir.path()).unwrap();

        let run_pg = async {
            let t = Instant::now();
            for b in &batches {
                pg.commit_page(&lease, b).await.unwrap();
            }
            t.elapsed()
        };
        let run_lite = async {
            let t = Instant::now();
            for b in &batches {
                lite.commit_page(b.clone()).await.unwrap();
            }
            t.elapsed()
        };
        let (pg_t, lite_t) = if round % 2 == 0 {
            let p = run_pg.await;
            (p, run_lite.await)
        } else {
            let l = run_lite.await;
            (run_pg.await, l)
        };
        let rate = |d: std::time::Duration| n as f64 / d.as_secs_f64();
        println!(
            "round {round}: {n} events — PostgreSQL {:.0}/s ({:.2} s), SQLite {:.0}/s ({:.2} s), SQLite/PostgreSQL {:.2}",
            rate(pg_t),
            pg_t.as_secs_f64(),
            rate(lite_t),
            lite_t.as_secs_f64(),
            pg_t.as_secs_f64() / lite_t.as_secs_f64()
        );
        ratios.push(pg_t.as_secs_f64() / lite_t.as_secs_f64());
        assert_eq!(pg.event_keys("acme").await.unwrap().len(), n);
        pg.drop_schema(&schema).await.unwrap();
    }
    ratios.sort_by(f64::total_cmp);
    println!("median SQLite/PostgreSQL time ratio: {:.2}", ratios[1]);
}
