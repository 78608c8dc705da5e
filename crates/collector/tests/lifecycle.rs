//! Lifecycles against a churning tenant: vulnerability detections open, are remediated and
//! close, and a removed device's detections close with it; every removal reaches the outbox.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use kandji_collector::streams::StreamName;
use kandji_sim::Churn;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vulnerability_detections_open_and_close_with_the_tenant() {
    let mut cfg = sim_config(200, 61);
    cfg.churn = Churn {
        vulnerabilities: 40.0,
        vuln_remediations: 40.0,
        enroll: 5.0,
        unenroll: 5.0,
        ..Churn::none()
    };
    let env = env(cfg).await;
    let streams = [
        StreamName::Blueprints,
        StreamName::Tags,
        StreamName::Devices,
        StreamName::VulnerabilityDetections,
    ];
    cycle(&env, &streams).await;
    let first = truth_vuln_keys(&env.sim);
    assert!(!first.is_empty(), "the tenant has detections");
    // A simulated day in steps of two hours: full walks (every six) close what was fixed.
    for _ in 0..12 {
        env.sim.advance(Duration::from_secs(2 * 3600));
        cycle(&env, &streams).await;
    }
    // Settle: one more full walk, and a second devices sweep for removals seen once.
    env.sim.advance(Duration::from_secs(7 * 3600));
    cycle(&env, &streams).await;
    cycle(&env, &[StreamName::Devices]).await;
    cycle(&env, &[StreamName::VulnerabilityDetections]).await;

    let truth = truth_vuln_keys(&env.sim);
    let open = store_set(
        &env.store,
        "SELECT key FROM vuln_detections WHERE removed_at IS NULL",
    );
    assert_eq!(open, truth, "the open detections are the tenant's");
    let closed = store_set(
        &env.store,
        "SELECT key FROM vuln_detections WHERE removed_at IS NOT NULL",
    );
    assert!(
        !closed.is_empty(),
        "a day of remediations closed some detections"
    );
    assert!(closed.is_disjoint(&truth), "a closed detection is not open");
    // Each closure is one `vulnerability_resolved` event: one per detection closed now, and
    // one before each reopening (a CVE detected again on the same app); and one outbox row.
    let resolved = count(
        &env.store,
        "SELECT count(*) FROM events WHERE event_type = 'vulnerability_resolved'",
    );
    let reopened = count(
        &env.store,
        "SELECT count(*) FROM events WHERE event_type = 'vulnerability_detected'
           AND category = 'change'",
    );
    if resolved != closed.len() as i64 + reopened {
        let ev = store_set(
            &env.store,
            "SELECT uid FROM events WHERE event_type = 'vulnerability_resolved'",
        );
        let keys: std::collections::BTreeMap<String, usize> =
            ev.iter().fold(Default::default(), |mut m, u| {
                let k = u.split(':').nth(1).unwrap_or_default().to_string();
                *m.entry(k).or_default() += 1;
                m
            });
        let twice: Vec<_> = keys.iter().filter(|(_, n)| **n > 1).take(3).collect();
        let not_closed: Vec<_> = keys
            .keys()
            .filter(|k| !closed.contains(*k))
            .take(3)
            .collect();
        panic!(
            "{resolved} close events, {} closed, {reopened} reopened; closed twice {twice:?}, \
             closed but open {not_closed:?}",
            closed.len()
        );
    }
    let without_outbox = count(
        &env.store,
        "SELECT count(*) FROM vuln_detections v WHERE removed_at IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.tbl = 'vuln_detections'
                           AND o.ref = v.key AND o.seq > 0)",
    );
    assert_eq!(without_outbox, 0, "every closure reaches the outputs");
    // Some closed because their device was removed.
    let of_removed = count(
        &env.store,
        "SELECT count(*) FROM vuln_detections v JOIN devices d
           ON d.source = v.source AND d.key = v.device_id
         WHERE v.removed_at IS NOT NULL AND d.removed_at IS NOT NULL",
    );
    let removed_devices = count(
        &env.store,
        "SELECT count(*) FROM devices WHERE removed_at IS NOT NULL",
    );
    assert!(removed_devices > 0, "devices were removed");
    eprintln!(
        "open {} closed {} (of removed devices {of_removed}); removed devices {removed_devices}",
        open.len(),
        closed.len()
    );
    // No live device has a detection marked closed for its removal.
    let wrong = count(
        &env.store,
        "SELECT count(*) FROM vuln_detections v JOIN devices d
           ON d.source = v.source AND d.key = v.device_id
         WHERE v.removed_at IS NULL AND d.removed_at IS NOT NULL",
    );
    assert_eq!(wrong, 0, "a removed device's detections are closed");
}

fn live_devices(env: &Env) -> BTreeSet<String> {
    store_set(
        &env.store,
        "SELECT key FROM devices WHERE removed_at IS NULL",
    )
}

/// Removal needs evidence: a live device two sweeps in a row did not list (as offset shifts
/// between page fetches make a walk miss devices) is asked for by id and kept; a device that
/// really left answers 404 and is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_the_walk_missed_twice_is_kept_when_it_still_exists() {
    let mut cfg = sim_config(700, 63);
    cfg.churn = Churn::none();
    let env = env(cfg).await;
    cycle(&env, &[StreamName::Devices]).await;
    let all = live_devices(&env);
    assert_eq!(all.len(), 700);
    let missed: Vec<String> = all.iter().take(35).cloned().collect();
    env.sim.skip_in_listings(&missed);
    let gone = env.sim.unenroll_burst(100, 3);
    env.sim.reset_stats();
    for _ in 0..3 {
        cycle(&env, &[StreamName::Devices]).await;
    }
    env.sim.skip_in_listings(&[]);
    let live = live_devices(&env);
    for d in &missed {
        assert!(live.contains(d), "{d}: a live device was marked removed");
    }
    let truth = truth_device_ids(&env.sim);
    assert_eq!(live, truth, "only the devices that left are removed");
    for d in &gone {
        assert!(!live.contains(d), "{d} left the tenant");
    }
    // The evidence costs one request per device a sweep would have removed, per sweep that
    // would have removed it.
    let by_id = env
        .sim
        .stats()
        .endpoints
        .get("GET /api/v1/devices/{device_id}")
        .map(|m| m.values().sum::<u64>())
        .unwrap_or(0);
    assert!(by_id > 0 && by_id <= 3 * (35 + 3), "{by_id} requests by id");
    assert_eq!(
        count(
            &env.store,
            "SELECT count(*) FROM events WHERE event_type = 'device_removed'"
        ),
        3
    );
}

/// A burst of unenrolments ahead of the walk (every later device shifts left between two page
/// fetches), two sweeps in a row: the devices that left are removed, and no other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_unenrolments_during_walks_removes_no_live_device() {
    let mut cfg = sim_config(700, 64);
    cfg.churn = Churn::none();
    let mut env = env(cfg).await;
    cycle(&env, &[StreamName::Devices]).await;
    let gone = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    for _ in 0..2 {
        let (sim, gone, fired) = (
            env.sim.clone(),
            gone.clone(),
            std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
        );
        env.rt.on_commit = Some(std::sync::Arc::new(move |stream, _| {
            if stream == "devices" && !fired.swap(true, std::sync::atomic::Ordering::SeqCst) {
                // After the first page: 12 devices ahead of the walk's position leave.
                gone.lock().unwrap().extend(sim.unenroll_burst(0, 12));
            }
        }));
        cycle(&env, &[StreamName::Devices]).await;
    }
    env.rt.on_commit = None;
    cycle(&env, &[StreamName::Devices]).await;
    cycle(&env, &[StreamName::Devices]).await;
    let truth = truth_device_ids(&env.sim);
    assert_eq!(
        live_devices(&env),
        truth,
        "no false removal, every real one"
    );
    let removed = store_set(
        &env.store,
        "SELECT key FROM devices WHERE removed_at IS NOT NULL",
    );
    let gone: BTreeSet<String> = gone.lock().unwrap().iter().cloned().collect();
    assert_eq!(gone.len(), 24);
    assert_eq!(removed, gone);
}

/// An uninstall reaches the store within an hour on the default schedule: the hourly `apps`
/// run is a full export (deltas cannot see a removal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uninstall_is_seen_by_the_next_hourly_apps_run() {
    let mut cfg = sim_config(150, 65);
    cfg.churn = Churn {
        app_changes: 400.0,
        ..Churn::none()
    };
    let env = env(cfg).await;
    cycle(&env, &[]).await;
    let installs = |env: &Env| truth_app_keys(&env.sim);
    let before = installs(&env);
    env.sim.advance(Duration::from_secs(61 * 60));
    let after = installs(&env);
    let uninstalled: BTreeSet<_> = before.difference(&after).cloned().collect();
    assert!(!uninstalled.is_empty(), "the hour uninstalled apps");
    cycle(&env, &[StreamName::Apps]).await;
    let live = store_set(&env.store, "SELECT key FROM apps WHERE removed_at IS NULL");
    assert_eq!(live, after, "the store's installs are the tenant's");
    let removed = count(
        &env.store,
        "SELECT count(*) FROM events WHERE event_type = 'app_removed'",
    );
    assert_eq!(
        removed as usize,
        uninstalled.len(),
        "one app_removed per uninstall"
    );
}

/// Heavy churn (enrolments and unenrolments, app installs and uninstalls, compliance flips,
/// detections found and remediated), then convergence: the store equals the truth, an NDJSON
/// sink's last word on every row is the store's state (a removal for every removed row, and
/// none left standing for a live one), a removal never shares an id with a live version, and
/// every device lifecycle event is one the tenant's history explains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_heavy_churn_every_lifecycle_change_reaches_the_store_and_the_sink() {
    heavy_churn(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_heavy_churn_with_refused_cursors_answered_400() {
    heavy_churn(Some(Dialect::Refusal400)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_heavy_churn_with_refused_cursors_answered_404() {
    heavy_churn(Some(Dialect::Refusal404)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_heavy_churn_without_rate_limit_headers() {
    heavy_churn(Some(Dialect::NoRateLimitHeaders)).await;
}

async fn heavy_churn(dialect: Option<Dialect>) {
    use kandji_collector::outputs::{Output, Pacing, SinkKind, SinkSpec, SourceInfo};
    use std::collections::BTreeMap;

    let mut cfg = sim_config(100, 66);
    cfg.churn = Churn {
        enroll: 40.0,
        unenroll: 40.0,
        app_changes: 400.0,
        compliance_flips: 200.0,
        vulnerabilities: 40.0,
        vuln_remediations: 40.0,
        ..Churn::default()
    };
    assert!(cfg.churn.late_audit > 0.0, "late audit events are on");
    if let Some(d) = dialect {
        d.apply(&mut cfg);
    }
    let env = env(cfg).await;
    // One NDJSON sink, raw records, drained after every cycle as a running output would be:
    // a row's removal must reach it as its own record, after its live versions were read.
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("out.ndjson");
    let spec = SinkSpec {
        name: "file".into(),
        format: kandji_collector::outputs::Format::Raw,
        batch_size: 500,
        kind: SinkKind::Ndjson {
            path: Some(path.clone()),
            rotate_bytes: 0,
            rotate_every: None,
            keep_files: 1,
        },
    };
    let info = SourceInfo {
        source: "acme".into(),
        tenant: "acme".into(),
    };
    let out = Output::new(env.store.clone(), info, spec, Pacing::default()).expect("output");
    let drain = || async {
        out.drain(&tokio_util::sync::CancellationToken::new())
            .await
            .expect("drain");
    };
    cycle(&env, &[]).await;
    drain().await;
    let initial = live_devices(&env);
    for _ in 0..3 {
        env.sim.advance(Duration::from_secs(6 * 3600));
        cycle(&env, &[]).await;
        drain().await;
    }
    // Quiet: removals reach their second sweep, compliance's rotation covers the fleet.
    for _ in 0..3 {
        cycle(&env, &[]).await;
        drain().await;
    }
    assert_matches_truth(&env);
    let removed_truth: BTreeSet<String> = arr(env.sim.truth("removed_devices"))
        .iter()
        .map(|d| str_of(d, "device_id"))
        .collect();
    let removed = store_set(
        &env.store,
        "SELECT key FROM devices WHERE removed_at IS NOT NULL",
    );
    assert!(!removed.is_empty(), "the churn removed devices");
    // Removed rows included: exactly the devices that left the tenant after the first sync
    // (one that enrolled and left between two syncs was never seen).
    let seen = store_set(&env.store, "SELECT key FROM devices");
    let left: BTreeSet<String> = removed_truth.intersection(&seen).cloned().collect();
    assert_eq!(
        removed, left,
        "the store removed exactly the devices that left"
    );

    let text = std::fs::read_to_string(&path).expect("the sink wrote");
    // Per (table, key): the states in delivery order, and every id.
    let mut last: BTreeMap<(String, String), bool> = BTreeMap::new();
    let mut live_ids: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    let mut removal_ids: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json line");
        let id = str_of(&v, "id");
        // A row written twice before delivery is read twice in its latest version: the same
        // id, which receivers dedupe on.
        if !ids.insert(id.clone()) {
            continue;
        }
        if v["kind"] != "inventory" {
            continue;
        }
        let k = (str_of(&v, "table"), str_of(&v, "key"));
        let gone = !v["removed_at"].is_null();
        last.insert(k.clone(), gone);
        if gone {
            removal_ids.entry(k).or_default().insert(id);
        } else {
            live_ids.entry(k).or_default().insert(id);
        }
    }
    let mut checked = 0;
    for table in [
        "devices",
        "apps",
        "compliance",
        "device_details",
        "vuln_detections",
        "users",
    ] {
        let rows = store_set(
            &env.store,
            &format!(
                "SELECT key || char(31) || (removed_at IS NOT NULL) FROM {table} WHERE source = 'acme'"
            ),
        );
        for r in rows {
            let (key, gone) = r.split_once('\u{1f}').expect("row");
            let k = (table.to_string(), key.to_string());
            assert_eq!(
                last.get(&k),
                Some(&(gone == "1")),
                "{table} {key}: the sink's last record says {}, the store {}",
                match last.get(&k) {
                    Some(true) => "removed",
                    Some(false) => "live",
                    None => "nothing",
                },
                if gone == "1" { "removed" } else { "live" }
            );
            checked += 1;
        }
    }
    assert!(checked > 1000, "{checked} rows checked");
    let removals: usize = removal_ids.values().map(BTreeSet::len).sum();
    assert!(removals > 0, "removals reached the sink");
    for (k, gone) in &removal_ids {
        if let Some(live) = live_ids.get(k) {
            assert!(
                live.is_disjoint(gone),
                "{k:?}: a removal shares a live version's id"
            );
        }
    }
    // Every device lifecycle event is explained by the tenant's history.
    let enrolled = store_set(
        &env.store,
        "SELECT device_id FROM events WHERE event_type = 'device_enrolled'",
    );
    assert!(
        enrolled.is_disjoint(&initial),
        "a device of the first sync was reported enrolled"
    );
    let said_removed = store_set(
        &env.store,
        "SELECT device_id FROM events WHERE event_type = 'device_removed'",
    );
    assert_eq!(
        said_removed, removed,
        "one device_removed per removed device"
    );
    assert_every_change_event_is_explained(&env, &removed);
    if let Some(d) = dialect {
        d.assert_exercised(&env.sim, &env.store);
    }
}

/// Every change event in the store is one the simulator's history explains: an app event by
/// a change to that app on that device (or, for a removal, the device's removal), a
/// compliance event by a status set on that item, a posture, OS or blueprint event by that
/// change to the device, a closed detection by its remediation or its device's removal.
fn assert_every_change_event_is_explained(env: &Env, removed: &BTreeSet<String>) {
    let mut history: BTreeSet<(String, String)> = BTreeSet::new();
    for e in arr(env.sim.truth("history")) {
        let (device, kind, subject) = (
            str_of(&e, "device_id"),
            str_of(&e, "kind"),
            str_of(&e, "subject"),
        );
        let key = if subject.is_empty() {
            device
        } else {
            format!("{device}|{subject}")
        };
        history.insert((kind, key));
    }
    assert!(!history.is_empty(), "the churn left a history");
    let open = truth_vuln_keys(&env.sim);
    let raws = store_set(
        &env.store,
        "SELECT raw FROM events WHERE category = 'change' ORDER BY seq",
    );
    let events: Vec<(String, String, String)> = raws
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_str(r).expect("event raw");
            (
                str_of(&v, "event_type"),
                str_of(&v, "key"),
                str_of(&v, "device_id"),
            )
        })
        .collect();
    let reopened: BTreeSet<&str> = events
        .iter()
        .filter(|(t, _, _)| t == "vulnerability_detected")
        .map(|(_, k, _)| k.as_str())
        .collect();
    let has = |kind: &str, key: &str| history.contains(&(kind.to_string(), key.to_string()));
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for (event_type, key, device) in &events {
        *counts.entry(event_type.as_str()).or_default() += 1;
        let explained = match event_type.as_str() {
            "device_enrolled" | "device_removed" => true, // checked above, exactly
            "app_installed" => has("app_install", key),
            "app_removed" => has("app_remove", key) || removed.contains(device),
            "app_updated" => ["app_install", "app_remove", "app_update"]
                .iter()
                .any(|k| has(k, key)),
            "compliance_status_changed" => has("status", key),
            "filevault_toggled" => has("filevault", device),
            "os_updated" => has("os", device),
            "blueprint_changed" => has("blueprint", device),
            // Closed: remediated (not open at the end, or reopened later) or its device left.
            "vulnerability_resolved" => {
                removed.contains(device) || !open.contains(key) || reopened.contains(key.as_str())
            }
            "vulnerability_detected" => !removed.contains(device),
            _ => false,
        };
        assert!(
            explained,
            "{event_type} on {key} (device {device}) is not in the tenant's history"
        );
    }
    for t in ["app_installed", "app_removed", "compliance_status_changed"] {
        assert!(
            counts.get(t).is_some_and(|&n| n > 0),
            "no {t} event: {counts:?}"
        );
    }
}
