//! Filters (blueprints by name or id, tags, device types) are pushed down to the API and
//! applied the same way to per-device rows and to events that name a device.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use kandji_collector::config::FilterConfig;
use kandji_collector::engine::SourceRuntime;
use kandji_sim::Churn;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blueprint_and_device_type_filter_scopes_every_stream() {
    let mut cfg = sim_config(150, 29);
    cfg.churn = Churn::none();
    let base = env(cfg).await;
    let devices = arr(base.sim.truth("devices"));
    // The blueprint with the most Macs, by name.
    let mut counts = std::collections::BTreeMap::new();
    for d in devices.iter().filter(|d| d["platform"] == "Mac") {
        *counts.entry(str_of(d, "blueprint_name")).or_insert(0) += 1;
    }
    let (blueprint, _) = counts
        .iter()
        .max_by_key(|(_, n)| **n)
        .expect("a blueprint with Macs");
    let expected: BTreeSet<String> = devices
        .iter()
        .filter(|d| d["platform"] == "Mac" && str_of(d, "blueprint_name") == *blueprint)
        .map(|d| str_of(d, "device_id"))
        .collect();
    assert!(!expected.is_empty() && expected.len() < devices.len());

    let mut source = source_for(&base.sim, "filtered");
    source.filters = FilterConfig {
        blueprints: vec![blueprint.clone()],
        tags: vec![],
        device_types: vec!["Mac".into()],
    };
    let rx = CancellationToken::new();
    let mut rt = SourceRuntime::new(source, base.store.clone(), rx).expect("runtime");
    rt.export_poll = Duration::from_millis(5);
    for r in kandji_collector::engine::sync_once(&rt, &[]).await {
        if let Err(e) = &r.result {
            panic!("{} failed: {e}", r.stream);
        }
    }
    let q = |sql: &str| store_set(&base.store, &sql.replace("$S", "'filtered'"));
    assert_eq!(
        q("SELECT key FROM devices WHERE source = $S AND removed_at IS NULL"),
        expected
    );
    for table in ["apps", "compliance", "device_details"] {
        let devs = q(&format!(
            "SELECT DISTINCT device_id FROM {table} WHERE source = $S"
        ));
        assert!(!devs.is_empty(), "{table} collected something");
        assert!(
            devs.is_subset(&expected),
            "{table} holds only in-scope devices"
        );
    }
    let event_devices =
        q("SELECT DISTINCT device_id FROM events WHERE source = $S AND device_id IS NOT NULL");
    assert!(
        event_devices.is_subset(&expected),
        "events naming a device are filtered too"
    );
    // Events that name no device (admin, blueprint changes) are kept.
    let all_audit = arr(base.sim.truth("audit_events"));
    let deviceless = all_audit
        .iter()
        .filter(|e| kandji_collector::streams::audit_device_of(e).is_none())
        .count() as i64;
    assert_eq!(
        count(
            &base.store,
            "SELECT count(*) FROM events WHERE source = 'filtered' AND stream = 'audit_events' AND device_id IS NULL"
        ),
        deviceless
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_blueprint_name_fails_loudly_instead_of_collecting_everything() {
    let mut cfg = sim_config(20, 3);
    cfg.churn = Churn::none();
    let base = env(cfg).await;
    let mut source = source_for(&base.sim, "typo");
    source.filters.blueprints = vec!["Enginering Macs".into()];
    let rx = CancellationToken::new();
    let rt = SourceRuntime::new(source, base.store.clone(), rx).expect("runtime");
    let results = kandji_collector::engine::sync_once(&rt, &[]).await;
    let devices = results
        .iter()
        .find(|r| r.stream == kandji_collector::streams::StreamName::Devices)
        .expect("devices ran");
    let err = devices.result.as_ref().expect_err("must fail").to_string();
    assert!(err.contains("Enginering Macs"), "{err}");
    // Its own kind and hint, not "the API returned data the collector could not use".
    let e = devices.result.as_ref().unwrap_err();
    assert_eq!(e.kind(), "unknown_filter");
    assert!(kandji_collector::engine::status::hint(e.kind(), None).contains("filters"));
    assert_eq!(
        count(
            &base.store,
            "SELECT count(*) FROM devices WHERE source = 'typo'"
        ),
        0
    );
}

/// Android and Windows are device types to filter on: a source filtered to them stores
/// exactly the tenant's Android and Windows devices, each with its platform, and maps them to
/// OCSF with their own device and OS types.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn android_and_windows_devices_are_stored_mapped_and_filtered() {
    let mut cfg = sim_config(300, 14);
    cfg.churn = Churn::none();
    let base = env(cfg).await;
    let devices = arr(base.sim.truth("devices"));
    let expected: BTreeSet<String> = devices
        .iter()
        .filter(|d| d["platform"] == "Android" || d["platform"] == "Windows")
        .map(|d| str_of(d, "device_id"))
        .collect();
    assert!(expected.len() >= 4, "{} of 300", expected.len());
    let mut source = source_for(&base.sim, "others");
    source.filters.device_types = vec!["Android".into(), "Windows".into()];
    let rt =
        SourceRuntime::new(source, base.store.clone(), CancellationToken::new()).expect("runtime");
    for r in
        kandji_collector::engine::sync_once(&rt, &[kandji_collector::streams::StreamName::Devices])
            .await
    {
        if let Err(e) = &r.result {
            panic!("{} failed: {e}", r.stream);
        }
    }
    let q = |sql: &str| store_set(&base.store, sql);
    assert_eq!(
        q("SELECT key FROM devices WHERE source = 'others' AND removed_at IS NULL"),
        expected
    );
    assert_eq!(
        q("SELECT DISTINCT platform FROM devices WHERE source = 'others'"),
        BTreeSet::from(["Android".to_string(), "Windows".to_string()])
    );
    // OCSF: Android is a mobile device (or tablet) with OS type 201, Windows a laptop or
    // desktop with OS type 100.
    let info = kandji_collector::outputs::SourceInfo {
        source: "others".into(),
        tenant: "acme".into(),
    };
    let (records, _, _) = kandji_collector::outputs::outbox::read_batch(
        &base.store,
        &info,
        kandji_collector::outputs::Format::Ocsf,
        kandji_collector::store::OutboxPos::default(),
        100_000,
    )
    .await
    .unwrap();
    let mut seen = BTreeSet::new();
    for r in &records {
        let ev = &r.body;
        if ev["class_uid"] != 5001 {
            continue;
        }
        let os = ev["device"]["os"]["type_id"].as_i64().unwrap();
        let ty = ev["device"]["type_id"].as_i64().unwrap();
        match ev["device"]["os"]["name"].as_str().unwrap() {
            "Android" => assert!(os == 201 && [4, 5].contains(&ty), "{ev}"),
            "Windows" => assert!(os == 100 && [2, 3].contains(&ty), "{ev}"),
            p => panic!("{p}: {ev}"),
        }
        seen.insert(os);
    }
    assert_eq!(seen, BTreeSet::from([100, 201]));
}
