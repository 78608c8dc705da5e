//! Steady state: with the default schedules, an hour of collection after the first sync
//! spends at most 10 % of the tenant's hourly budget, measured by the simulator's counters.
//! The hour is simulated: the tenant's clock and the engine's clock advance minute by minute,
//! and each stream runs whenever its interval says it is due.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use kandji_collector::engine::next_due;
use kandji_collector::streams::StreamName;

async fn steady_hour_requests(devices: usize) -> u64 {
    let env = env(sim_config(devices, 17)).await;
    cycle(&env, &[]).await;
    let mut last: BTreeMap<StreamName, i64> =
        StreamName::ALL.iter().map(|s| (*s, env.rt.now())).collect();
    env.sim.reset_stats();
    for _minute in 0..60 {
        env.sim.advance(Duration::from_secs(60));
        for stream in kandji_collector::engine::cycle_order() {
            let now = env.rt.now();
            if now >= next_due(last.get(&stream).copied(), stream.default_interval(), now) {
                env.rt.run_stream(stream).await.expect("stream run");
                last.insert(stream, now);
            }
        }
    }
    env.sim.stats().total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hour_of_default_schedules_stays_within_ten_percent_of_the_budget() {
    let requests = steady_hour_requests(1_000).await;
    eprintln!("steady state, 1k devices: {requests} requests in one simulated hour");
    assert!(
        requests > 60,
        "the audit stream alone polls every minute ({requests})"
    );
    assert!(
        requests <= 1_000,
        "{requests} requests/hour is over 10 % of 10,000"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: 10k devices"]
async fn an_hour_of_default_schedules_for_10k_devices_stays_within_ten_percent() {
    let requests = steady_hour_requests(10_000).await;
    eprintln!("steady state, 10k devices: {requests} requests in one simulated hour");
    assert!(requests <= 1_000, "{requests}");
}
