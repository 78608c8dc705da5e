//! Many tenants in one simulator process: each has its own token, hourly budget, clock and
//! ground truth, so a hundred-tenant test needs one process.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use kandji_sim::SimConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_tenants_in_one_process_are_independent() {
    let base = SimConfig {
        hourly_limit: 50,
        ..static_config(5, 11)
    };
    let sims = kandji_sim::spawn_tenants(base, 100, [127, 0, 0, 1].into())
        .await
        .unwrap();
    assert_eq!(sims.len(), 100);
    let c = client();
    let tokens: BTreeSet<&str> = sims.iter().map(|s| s.token()).collect();
    let names: BTreeSet<&str> = sims.iter().map(|s| s.tenant()).collect();
    let urls: BTreeSet<String> = sims.iter().map(|s| s.base_url()).collect();
    assert_eq!((tokens.len(), names.len(), urls.len()), (100, 100, 100));

    // Own ground truth: every tenant's devices are its own.
    let mut fleets = BTreeSet::new();
    for s in &sims {
        let r = get(&c, s, "/api/v1/devices?limit=300", Some(s.token())).await;
        assert_eq!(r.status, 200);
        let ids: Vec<String> = r
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["device_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids.len(), 5);
        fleets.insert(ids);
    }
    assert_eq!(fleets.len(), 100, "100 different fleets");

    // Own token: tenant 1's token is refused by tenant 0.
    let r = get(&c, &sims[0], "/api/v1/devices", Some(sims[1].token())).await;
    assert_eq!(r.status, 401);

    // Own budget: spending tenant 0's hour leaves tenant 1's untouched.
    let remaining = |r: &Resp| {
        r.header("X-RateLimit-Remaining-Hour")
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap()
    };
    let mut last = None;
    for _ in 0..10 {
        let r = get(
            &c,
            &sims[0],
            "/api/v1/devices?limit=1",
            Some(sims[0].token()),
        )
        .await;
        last = Some(remaining(&r));
    }
    let one = get(
        &c,
        &sims[1],
        "/api/v1/devices?limit=1",
        Some(sims[1].token()),
    )
    .await;
    assert!(
        remaining(&one) > last.unwrap(),
        "tenant 1 has its own hour: {} vs {:?}",
        remaining(&one),
        last
    );
    // Own counters: tenant 1 saw its two requests, tenant 0 its own twelve.
    assert_eq!(
        sims[1].stats().total,
        2,
        "tenant 1 counted only its own requests"
    );
    assert!(sims[0].stats().total >= 11, "{}", sims[0].stats().total);

    // Own clock: advancing tenant 0 moves only its time.
    let before = sims[1].now();
    sims[0].advance(Duration::from_secs(7 * 86_400));
    assert!(sims[0].now() - sims[1].now() > time::Duration::days(6));
    assert!(sims[1].now() - before < time::Duration::hours(1));
    for s in sims {
        s.shutdown().await;
    }
}
