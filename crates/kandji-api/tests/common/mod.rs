#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use kandji_api::retry::RetryPolicy;
use kandji_api::{
    ApiBase, Budget, BudgetConfig, ClientConfig, KandjiClient, KandjiError, Page, PageStream,
    Region,
};
use time::OffsetDateTime;
use time::macros::datetime;

pub const TOKEN: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

pub fn top_of_hour() -> OffsetDateTime {
    datetime!(2026-11-01 00:00:00 UTC)
}

pub fn big_budget() -> Arc<Budget> {
    Arc::new(Budget::new(BudgetConfig {
        hourly_limit: 1_000_000,
        share: 1.0,
        per_second: 50,
        reserved_fraction: 0.0,
        reserve_for_others: 0.0,
        wall_clock: top_of_hour,
    }))
}

pub fn client_with(
    base: &str,
    token: &str,
    budget: Arc<Budget>,
    retry: RetryPolicy,
) -> KandjiClient {
    let base = ApiBase::parse(base, Region::Us, true).expect("base");
    let mut cfg = ClientConfig::new(base, token.to_string().into(), budget);
    // No reqwest timers under paused time (they would be auto-advanced while awaiting IO).
    cfg.connect_timeout = None;
    cfg.request_timeout = None;
    cfg.pool_idle_timeout = None;
    cfg.retry = retry;
    KandjiClient::new(cfg).expect("client")
}

pub fn client(base: &str) -> KandjiClient {
    client_with(base, TOKEN, big_budget(), fast_retry())
}

pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_elapsed: Duration::from_secs(600),
        ..RetryPolicy::default()
    }
}

pub async fn collect<T>(s: PageStream<T>) -> Result<Vec<Page<T>>, KandjiError> {
    s.try_collect().await
}

pub async fn collect_items<T>(s: PageStream<T>) -> Result<Vec<T>, KandjiError> {
    Ok(collect(s)
        .await?
        .into_iter()
        .flat_map(|p| p.items)
        .collect())
}

/// The collector's streams as the permission check sees them (name, priority, probes): a
/// fixture mirroring the stream declarations in `kandji-collector`, which this crate does not
/// know.
#[allow(dead_code)]
pub fn probe_sets(names: &[&'static str]) -> Vec<kandji_api::check::ProbeSet<'static>> {
    use kandji_api::Priority;
    use kandji_api::check::{ProbeSet, probes};
    let all: [(&str, Priority, &'static [kandji_api::check::EndpointSpec]); 12] = [
        ("devices", Priority::Inventory, &[probes::DEVICES]),
        (
            "device_details",
            Priority::Bulk,
            &[probes::PRISM_DEVICE_INFO],
        ),
        ("apps", Priority::Bulk, &[probes::PRISM_APPS]),
        (
            "compliance",
            Priority::Inventory,
            &[probes::DEVICES, probes::DEVICE_STATUS],
        ),
        ("audit_events", Priority::Audit, &[probes::AUDIT]),
        ("threats", Priority::Security, &[probes::THREATS]),
        (
            "behavioral_detections",
            Priority::Security,
            &[probes::BEHAVIORAL],
        ),
        (
            "vulnerability_detections",
            Priority::Security,
            &[probes::VULNS],
        ),
        ("users", Priority::Inventory, &[probes::USERS]),
        ("blueprints", Priority::Inventory, &[probes::BLUEPRINTS]),
        ("tags", Priority::Inventory, &[probes::TAGS]),
        ("ade_devices", Priority::Inventory, &[probes::ADE]),
    ];
    all.iter()
        .filter(|(n, _, _)| names.is_empty() || names.contains(n))
        .map(|&(stream, priority, endpoints)| ProbeSet {
            stream,
            priority,
            endpoints,
        })
        .collect()
}
