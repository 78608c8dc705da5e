//! Request cost, from the simulator's own counters: a full sweep of the fleet (devices,
//! details-equivalent, apps, posture) through bulk endpoints, not per device.

mod common;

use common::*;
use kandji_collector::streams::StreamName;
use kandji_sim::Churn;

const FULL_SWEEP: [StreamName; 5] = [
    StreamName::Blueprints,
    StreamName::Tags,
    StreamName::Devices,
    StreamName::DeviceDetails,
    StreamName::Apps,
];

async fn full_sweep_requests(devices: usize) -> (u64, i64) {
    let mut cfg = sim_config(devices, 13);
    cfg.churn = Churn::none();
    let env = env(cfg).await;
    env.sim.reset_stats();
    cycle(&env, &FULL_SWEEP).await;
    let total = env.sim.stats().total;
    let apps = count(
        &env.store,
        "SELECT count(*) FROM apps WHERE removed_at IS NULL",
    );
    (total, apps)
}

/// The short version CI runs: 2,000 devices. The /devices walk costs 7 pages here and 34 at
/// 10k; everything else (exports) does not grow with the fleet, so ≤ 73 here means ≤ 100 at 10k.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sweep_costs_a_bounded_number_of_requests() {
    let (requests, apps) = full_sweep_requests(2_000).await;
    assert!(
        apps > 100_000,
        "the sweep collected the fleet's apps ({apps})"
    );
    assert!(
        requests <= 73,
        "a full sweep of 2k devices took {requests} requests"
    );
}

/// The full claim: 10,000 devices in at most 100 requests. Long (1.5M app rows in a dev build):
/// `cargo test -p kandji-collector --test cost -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: 10k devices, ~1.5M app rows"]
async fn a_full_sweep_of_10k_devices_costs_at_most_100_requests() {
    let (requests, apps) = full_sweep_requests(10_000).await;
    assert!(apps > 1_000_000, "{apps}");
    assert!(
        requests <= 100,
        "a full sweep of 10k devices took {requests} requests"
    );
}

/// The client asks for gzip and the API's JSON arrives compressed: a full first cycle of
/// every stream sends a fraction of its JSON bytes on the wire (the export CSVs come from the
/// signed URL and are not counted). The figures go to BENCHMARKS.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_takes_gzip_and_a_sweep_moves_a_fraction_of_the_bytes() {
    let mut cfg = sim_config(1_000, 13);
    cfg.churn = Churn::none();
    let env = env(cfg).await;
    env.sim.reset_stats();
    cycle(&env, &[]).await;
    let s = env.sim.stats();
    println!(
        "full cycle, 1,000 devices: {} requests, {} bytes of JSON, {} on the wire ({:.1} %)",
        s.total,
        s.body_bytes_identity,
        s.body_bytes,
        100.0 * s.body_bytes as f64 / s.body_bytes_identity.max(1) as f64
    );
    assert!(s.body_bytes_identity > 100_000, "{s:?}");
    assert!(
        s.body_bytes * 3 < s.body_bytes_identity,
        "gzip: {} on the wire for {}",
        s.body_bytes,
        s.body_bytes_identity
    );
}
