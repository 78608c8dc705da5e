//! End-to-end against the simulated tenant (`kandji-sim`), under paused time.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures::{StreamExt, TryStreamExt};
use kandji_api::check::ProbeResult;
use kandji_api::export::{ExportOptions, ExportRequest};
use kandji_api::retry::RetryPolicy;
use kandji_api::{Budget, BudgetConfig, KandjiClient, KandjiError, Position};
use kandji_sim::{Churn, Faults, SimConfig, SimHandle, TokenSpec};
use serde_json::Value;

async fn sim(cfg: SimConfig) -> SimHandle {
    kandji_sim::spawn(cfg).await.expect("sim")
}

fn static_cfg(devices: usize) -> SimConfig {
    SimConfig {
        devices,
        churn: Churn::none(),
        ..SimConfig::default()
    }
}

fn sim_client(s: &SimHandle) -> KandjiClient {
    client_with(&s.base_url(), s.token(), big_budget(), fast_retry())
}

/// The tenant's Apple devices: the ones Prism and its exports list (Android and Windows
/// devices are on `/devices` only).
fn apple_ids(s: &SimHandle) -> BTreeSet<String> {
    s.truth("devices")
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| !matches!(d["platform"].as_str(), Some("Android" | "Windows")))
        .filter_map(|d| d["device_id"].as_str().map(str::to_owned))
        .collect()
}

fn truth_set(s: &SimHandle, cat: &str, key: &str) -> BTreeSet<String> {
    s.truth(cat)
        .as_array()
        .expect("truth array")
        .iter()
        .map(|v| match v.pointer(key) {
            Some(Value::String(x)) => x.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        })
        .collect()
}

fn no_429(s: &SimHandle) -> bool {
    s.stats()
        .endpoints
        .values()
        .all(|codes| !codes.contains_key("429"))
}

#[tokio::test(start_paused = true)]
async fn every_endpoint_matches_truth() {
    let s = sim(static_cfg(650)).await;
    let c = sim_client(&s);

    // Devices: 3 pages of limit/offset over a bare array.
    let pages = collect(c.devices(vec![], None)).await.unwrap();
    assert_eq!(pages.len(), 3);
    let ids: BTreeSet<String> = pages
        .iter()
        .flat_map(|p| p.items.iter().filter_map(|d| d.device_id.clone()))
        .collect();
    assert_eq!(ids, truth_set(&s, "devices", "/device_id"));
    let first = pages[0].items[0].device_id.clone().unwrap();

    // Per-device single objects.
    let det = c.device_details(&first).await.unwrap();
    assert_eq!(det.device_id().as_deref(), Some(first.as_str()));
    let apps = c.device_apps(&first).await.unwrap();
    assert!(!apps.apps.is_empty());
    let st = c.device_status(&first).await.unwrap();
    assert!(!st.library_items.is_empty() || !st.parameters.is_empty());
    assert_eq!(
        c.device(&first).await.unwrap().device_id.as_deref(),
        Some(first.as_str())
    );
    let _acts = collect_items(c.device_activity(&first, None))
        .await
        .unwrap();
    let _cmds = collect_items(c.device_commands(&first, None))
        .await
        .unwrap();

    // Envelopes and cursors.
    let users = collect_items(c.users(vec![], None)).await.unwrap();
    assert_eq!(
        users
            .iter()
            .filter_map(|u| u.id.clone())
            .collect::<BTreeSet<_>>(),
        truth_set(&s, "users", "/id")
    );
    let bps = collect_items(c.blueprints(vec![], None)).await.unwrap();
    assert_eq!(bps.len(), s.truth("blueprints").as_array().unwrap().len());
    let tags = collect_items(c.tags(vec![], None)).await.unwrap();
    assert_eq!(tags.len(), s.truth("tags").as_array().unwrap().len());
    let ade = collect_items(c.ade_devices(vec![], None)).await.unwrap();
    assert_eq!(
        ade.iter()
            .filter_map(|a| a.id.clone())
            .collect::<BTreeSet<_>>(),
        truth_set(&s, "ade_devices", "/id")
    );
    let audit = collect_items(c.audit_events(vec![("sort_by".into(), "occurred_at".into())], None))
        .await
        .unwrap();
    assert_eq!(
        audit
            .iter()
            .filter_map(|e| e.id.clone())
            .collect::<BTreeSet<_>>(),
        truth_set(&s, "audit_events", "/id")
    );
    let threats = collect_items(c.threats(vec![], None)).await.unwrap();
    assert_eq!(threats.len(), s.truth("threats").as_array().unwrap().len());
    let keys: HashSet<String> = threats.iter().map(|t| t.key()).collect();
    assert_eq!(keys.len(), threats.len(), "threat keys are unique");
    let bd = collect_items(c.behavioral_detections(vec![], None))
        .await
        .unwrap();
    assert_eq!(
        bd.iter()
            .filter_map(|b| b.id.clone())
            .collect::<BTreeSet<_>>(),
        truth_set(&s, "behavioral_detections", "/id")
    );
    let vd = collect_items(c.vulnerability_detections(vec![], None))
        .await
        .unwrap();
    assert_eq!(
        vd.len(),
        s.truth("vulnerability_detections")
            .as_array()
            .unwrap()
            .len()
    );
    let vkeys: HashSet<String> = vd.iter().map(|v| v.key()).collect();
    assert_eq!(vkeys.len(), vd.len(), "vuln keys are unique");
    let vulns = collect_items(c.vulnerabilities(vec![], None))
        .await
        .unwrap();
    assert_eq!(
        vulns.len(),
        s.truth("vulnerabilities").as_array().unwrap().len()
    );
    let lic = c.licensing().await.unwrap();
    assert!(lic.counts.is_some());

    // Prism GET (cursor) and count.
    let prism = collect_items(c.prism("device_information", vec![], None))
        .await
        .unwrap();
    assert_eq!(
        prism
            .iter()
            .filter_map(|r| r.device_id.clone())
            .collect::<BTreeSet<_>>(),
        apple_ids(&s)
    );
    let (count, _) = c.prism_count("device_information").await.unwrap();
    assert_eq!(count as usize, apple_ids(&s).len());
    assert!(count < 650 && count > 550, "{count}");
    assert!(no_429(&s));
    s.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn prism_export_cycle_against_sim() {
    let s = sim(static_cfg(12)).await;
    let c = sim_client(&s);
    let opts = ExportOptions {
        poll_initial: Duration::from_secs(1),
        batch_size: 5,
        ..ExportOptions::default()
    };
    let rows: Vec<_> = c
        .export(ExportRequest::category("device_information"), opts.clone())
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    let rows: Vec<_> = rows.into_iter().flatten().collect();
    assert_eq!(rows.len(), 12);
    let ids: BTreeSet<String> = rows.iter().filter_map(|r| r.device_id.clone()).collect();
    assert_eq!(ids, apple_ids(&s));
    // Apps export: as many rows as the Prism GET walk.
    let exported: usize = c
        .export(ExportRequest::category("apps"), opts)
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .iter()
        .map(Vec::len)
        .sum();
    let walked = collect_items(c.prism("apps", vec![], None))
        .await
        .unwrap()
        .len();
    assert_eq!(exported, walked);
    // Invalid category.
    let err = c
        .create_export(&ExportRequest::category("application_firewal"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, KandjiError::BadRequest { status: 400, .. }),
        "{err:?}"
    );
    s.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn churn_during_walks() {
    let s = sim(SimConfig {
        devices: 700,
        ..SimConfig::default()
    })
    .await;
    let c = sim_client(&s);
    let before = truth_set(&s, "devices", "/device_id");
    let mut stream = c.devices(vec![], None);
    let mut seen = Vec::new();
    while let Some(page) = stream.next().await {
        seen.extend(page.unwrap().items.into_iter().filter_map(|d| d.device_id));
        s.advance(Duration::from_secs(6 * 3600)); // enrollments/unenrollments between pages
    }
    let after = truth_set(&s, "devices", "/device_id");
    let seen_set: BTreeSet<String> = seen.iter().cloned().collect();
    // Offset paging can miss at most one device that stayed enrolled per device removed
    // before the walk's position (NOTES §11.3); nothing else is lost.
    let stable: BTreeSet<_> = before.intersection(&after).cloned().collect();
    let removed = before.difference(&after).count();
    let missed = stable.difference(&seen_set).count();
    assert!(removed > 0, "churn should have removed devices");
    assert!(
        missed <= removed,
        "missed {missed} stable devices with {removed} removals"
    );

    // Audit log, ascending, with new events appearing between pages: ids stay unique and
    // every event of the initial truth is seen.
    let initial = truth_set(&s, "audit_events", "/id");
    let mut stream = c.audit_events(vec![("sort_by".into(), "occurred_at".into())], None);
    let mut ids = Vec::new();
    while let Some(page) = stream.next().await {
        ids.extend(page.unwrap().items.into_iter().filter_map(|e| e.id));
        s.advance(Duration::from_secs(3600));
    }
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "duplicate audit ids");
    assert!(initial.is_subset(&unique));
    s.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn resume_from_checkpoint() {
    let s = sim(static_cfg(400)).await;
    let c = sim_client(&s);
    // Audit: take one page, stop, resume from its `next`.
    let q = || vec![("sort_by".to_string(), "occurred_at".to_string())];
    let first = c.audit_events(q(), None).next().await.unwrap().unwrap();
    let checkpoint: Position = first
        .next
        .clone()
        .expect("more than one page of audit events");
    let stored = serde_json::to_string(&checkpoint).unwrap();
    let restored: Position = serde_json::from_str(&stored).unwrap();
    let rest = collect_items(c.audit_events(q(), Some(restored)))
        .await
        .unwrap();
    let all: BTreeSet<String> = first
        .items
        .into_iter()
        .chain(rest)
        .filter_map(|e| e.id)
        .collect();
    assert_eq!(all, truth_set(&s, "audit_events", "/id"));
    // Devices from an offset.
    let rest = collect_items(c.devices(vec![], Some(Position::Offset(300))))
        .await
        .unwrap();
    assert_eq!(rest.len(), 100);
    // Prism from a cursor.
    let first = c
        .prism("device_information", vec![], None)
        .next()
        .await
        .unwrap()
        .unwrap();
    let rest = collect_items(c.prism("device_information", vec![], first.next.clone()))
        .await
        .unwrap();
    assert_eq!(first.items.len() + rest.len(), apple_ids(&s).len());
    s.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn budget_share_is_never_exceeded_across_concurrent_streams() {
    let s = sim(SimConfig {
        devices: 400,
        hourly_limit: 1000,
        ..static_cfg(400)
    })
    .await;
    let budget = Arc::new(Budget::new(BudgetConfig {
        hourly_limit: 1000,
        share: 0.05,
        per_second: 10,
        reserved_fraction: 0.2,
        reserve_for_others: 0.1,
        wall_clock: top_of_hour, // = the sim's start instant
    }));
    let mk = || client_with(&s.base_url(), s.token(), budget.clone(), fast_retry());
    let (c1, c2, c3, c4) = (mk(), mk(), mk(), mk());
    let run = async move {
        let walkers = vec![
            tokio::spawn(async move {
                loop {
                    let _ = collect(c1.devices(vec![], None)).await;
                }
            }),
            tokio::spawn(async move {
                loop {
                    let _ = collect(c2.audit_events(vec![], None)).await;
                }
            }),
            tokio::spawn(async move {
                loop {
                    let _ = collect(c3.prism("device_information", vec![], None)).await;
                }
            }),
            tokio::spawn(async move {
                loop {
                    let _ = collect(c4.threats(vec![], None)).await;
                }
            }),
        ];
        futures::future::join_all(walkers).await
    };
    // 50 virtual minutes: all inside the first hourly window.
    let _ = tokio::time::timeout(Duration::from_secs(50 * 60), run).await;
    let stats = s.stats();
    assert!(
        stats.total <= 50,
        "sim saw {} requests; share is 50",
        stats.total
    );
    assert!(stats.total >= 45, "budget should be used: {}", stats.total);
    assert!(no_429(&s), "{stats:?}");
    let st = budget.state();
    assert_eq!(st.share_limit, 50);
    assert!(st.spent_this_hour <= 50);
    // Security (threats) got its reserve: bulk/inventory alone may use only 40.
    assert!(
        st.spent_by_priority[2] + st.spent_by_priority[3] <= 40,
        "{st:?}"
    );
    s.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn faults_are_survived() {
    let s = sim(static_cfg(900)).await;
    s.set_faults(Faults {
        error_rate: 0.15,
        reset_rate: 0.05,
        truncate_rate: 0.1,
        malformed_rate: 0.05,
        storm_429: 3,
        ..Faults::default()
    });
    let c = client_with(
        &s.base_url(),
        s.token(),
        big_budget(),
        RetryPolicy {
            max_elapsed: Duration::from_secs(3600),
            decode_retries: 10,
            ..RetryPolicy::default()
        },
    );
    let ids: BTreeSet<String> = collect_items(c.devices(vec![], None))
        .await
        .unwrap()
        .into_iter()
        .filter_map(|d| d.device_id)
        .collect();
    assert_eq!(ids, truth_set(&s, "devices", "/device_id"));
    let users = collect_items(c.users(vec![], None)).await.unwrap();
    assert_eq!(users.len(), s.truth("users").as_array().unwrap().len());
    s.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn storm_429_honours_retry_after() {
    let s = sim(static_cfg(10)).await;
    s.set_faults(Faults {
        storm_429: 4,
        ..Faults::default()
    });
    let c = sim_client(&s);
    let t = tokio::time::Instant::now();
    c.licensing().await.unwrap();
    // The sim sends Retry-After: 1 (per-second window) for each of the 4 storm replies.
    assert!(t.elapsed() >= Duration::from_secs(4), "{:?}", t.elapsed());
    s.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn permission_matrix_licensing_and_revocation() {
    let limited = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee".to_string();
    let s = sim(SimConfig {
        licensed_edr: false,
        extra_tokens: vec![TokenSpec {
            token: limited.clone(),
            allow: vec![
                "GET /api/v1/devices".into(),
                "GET /api/v1/threat-details".into(),
                "GET /api/v1/settings/licensing".into(),
                "GET /api/v1/prism/{category}".into(),
            ],
        }],
        ..static_cfg(20)
    })
    .await;
    let c = client_with(&s.base_url(), &limited, big_budget(), fast_retry());
    let report = c.check(&probe_sets(&[])).await;
    let row = |e: &str| &report.get(e).unwrap_or_else(|| panic!("{e}")).result;
    assert!(matches!(row("GET /api/v1/devices"), ProbeResult::Ok));
    assert!(
        matches!(row("GET /api/v1/devices/{device_id}/status"), ProbeResult::MissingPermission { permission_name } if permission_name == "Device Status")
    );
    assert!(
        matches!(row("GET /api/v1/users"), ProbeResult::MissingPermission { permission_name } if permission_name == "List users")
    );
    assert!(
        matches!(row("GET /api/v1/blueprints"), ProbeResult::MissingPermission { permission_name } if permission_name == "List Blueprints")
    );
    assert!(
        matches!(row("GET /api/v1/integrations/apple/ade/devices"), ProbeResult::MissingPermission { permission_name } if permission_name == "List ADE devices")
    );
    assert!(
        matches!(row("GET /api/v1/audit/events"), ProbeResult::MissingPermission { permission_name } if permission_name == "GET /api/v1/audit/events")
    );
    assert!(
        matches!(row("GET /api/v1/threat-details"), ProbeResult::NotLicensed),
        "{:?}",
        row("GET /api/v1/threat-details")
    );
    assert!(matches!(row("GET /api/v1/prism/apps"), ProbeResult::Ok));
    assert!(report.licensing.is_ok());
    assert!(report.runnable().iter().any(|s| s == "devices"));
    assert!(!report.runnable().iter().any(|s| s == "compliance"));

    // Full token: everything but EDR is Ok.
    let full = sim_client(&s).check(&probe_sets(&[])).await;
    for e in &full.endpoints {
        let edr = e
            .streams
            .iter()
            .any(|s| s == "threats" || s == "behavioral_detections");
        assert_eq!(
            e.result.status(),
            if edr { "not_licensed" } else { "ok" },
            "{}",
            e.endpoint
        );
    }

    s.revoke_token(&limited);
    let err = c.licensing().await.unwrap_err();
    assert!(matches!(err, KandjiError::Unauthorized { .. }), "{err:?}");
    // Unknown route → NoRoute.
    let err = c
        .get_raw(
            "/api/v1/nope",
            "/api/v1/nope".into(),
            vec![],
            kandji_api::Priority::Inventory,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            KandjiError::NoRoute { .. } | KandjiError::Unauthorized { .. }
        ),
        "{err:?}"
    );
    s.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn expired_cursor_is_a_typed_error() {
    let s = sim(static_cfg(400)).await;
    let c = sim_client(&s);
    let first = c
        .prism("device_information", vec![], None)
        .next()
        .await
        .unwrap()
        .unwrap();
    s.set_faults(Faults {
        expire_cursors: true,
        ..Faults::default()
    });
    let err = collect(c.prism("device_information", vec![], first.next.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, KandjiError::BadRequest { status: 400, ref message, .. } if message.contains("cursor")),
        "{err:?}"
    );
    s.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn adapts_to_server_remaining_when_the_tenant_limit_is_lower_than_configured() {
    // We believe the tenant has 10,000/h; the server says 30. Our share (50 %) of what the
    // server reports remaining must keep us under the real limit: no 429, ever.
    let s = sim(SimConfig {
        hourly_limit: 30,
        ..static_cfg(400)
    })
    .await;
    let budget = Arc::new(Budget::new(BudgetConfig {
        wall_clock: top_of_hour,
        ..BudgetConfig::default()
    }));
    let c = client_with(&s.base_url(), s.token(), budget.clone(), fast_retry());
    let run = async {
        loop {
            let _ = collect(c.devices(vec![], None)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(30 * 60), run).await;
    let total = s.stats().total;
    assert!(no_429(&s), "{:?}", s.stats());
    // Our share is 50 % of the server's 30; Inventory may not touch the 20 % reserve: 12.
    assert_eq!(total, 12);
    let st = budget.state();
    assert_eq!(st.server_limit, Some(30));
    assert_eq!((st.share_limit, st.reserved), (15, 3));
    assert!(st.server_remaining.is_some());
    assert_eq!(st.remaining, 3); // only the Security/Audit reserve is left
    s.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn storm_without_retry_after_uses_ratelimit_reset() {
    let s = sim(SimConfig {
        retry_after: false,
        ..static_cfg(10)
    })
    .await;
    s.set_faults(Faults {
        storm_429: 3,
        ..Faults::default()
    });
    let c = sim_client(&s);
    let t = tokio::time::Instant::now();
    c.licensing().await.unwrap();
    assert!(t.elapsed() >= Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(c.stats().rate_limited, 3);
    s.shutdown().await;
}

/// Android devices decode through the same typed calls: the device, its details and its apps
/// (the spec's Android shapes), with the platform kept.
#[tokio::test(start_paused = true)]
async fn android_devices_decode() {
    let s = sim(static_cfg(300)).await;
    let c = sim_client(&s);
    let devices = collect_items(c.devices(vec![], None)).await.unwrap();
    let android = devices
        .iter()
        .find(|d| d.platform == Some(kandji_api::models::Platform::Android))
        .expect("an Android device among 300");
    let id = android.device_id.clone().unwrap();
    let det = c.device_details(&id).await.unwrap();
    assert_eq!(det.raw["general"]["platform"], "Android");
    let apps = c.device_apps(&id).await.unwrap();
    assert!(!apps.apps.is_empty());
    assert!(apps.raw["apps"][0]["package_name"].is_string());
    s.shutdown().await;
}

/// An export that ends `failed`, or whose signed URL has expired, is made again, up to
/// `attempts` whole cycles; after that the error says what happened and how often.
#[tokio::test(start_paused = true)]
async fn failed_and_expired_exports_are_retried_a_bounded_number_of_times() {
    let s = sim(static_cfg(20)).await;
    let c = sim_client(&s);
    let opts = ExportOptions {
        poll_initial: Duration::from_millis(10),
        poll_max: Duration::from_millis(10),
        ..ExportOptions::default()
    };
    let exports = |s: &SimHandle| -> u64 {
        s.stats().endpoints["POST /api/v1/prism/export"]
            .values()
            .sum()
    };
    // One failure: the second export delivers every row.
    s.set_faults(Faults {
        failed_exports: 1,
        ..Faults::default()
    });
    let rows: usize = c
        .export(ExportRequest::category("device_information"), opts.clone())
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .iter()
        .map(Vec::len)
        .sum();
    assert_eq!(rows, apple_ids(&s).len());
    assert_eq!(exports(&s), 2);
    // Failing every time: three exports, then a clear error.
    s.reset_stats();
    s.set_faults(Faults {
        failed_exports: 10,
        ..Faults::default()
    });
    let err = c
        .export(ExportRequest::category("device_information"), opts.clone())
        .try_collect::<Vec<_>>()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, KandjiError::ExportFailed { message, attempts: 3, .. }
            if message.contains("could not be generated")),
        "{err}"
    );
    assert_eq!(exports(&s), 3);
    // Expired signed URLs: three exports, then an error naming the expiry.
    s.reset_stats();
    s.set_faults(Faults {
        expired_export_urls: true,
        ..Faults::default()
    });
    let err = c
        .export(ExportRequest::category("device_information"), opts)
        .try_collect::<Vec<_>>()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, KandjiError::ExportFailed { message, attempts: 3, .. }
            if message.contains("expired")),
        "{err}"
    );
    assert_eq!(exports(&s), 3);
    s.shutdown().await;
}

/// A 403 is classified by its text and by the endpoint's family: the licence text says "not
/// licensed"; on a licence-gated family (EDR, Vulnerability Management) any other text is
/// "not licensed or not permitted", never a guess, unless another endpoint of the family
/// settles it; elsewhere it is a missing permission.
#[tokio::test(start_paused = true)]
async fn forbidden_answers_are_classified_by_text_and_family() {
    for (i, text) in kandji_sim::LICENCE_TEXTS.iter().enumerate() {
        let s = sim(SimConfig {
            licensed_edr: false,
            unlicensed_detail: (*text).to_string(),
            ..static_cfg(20)
        })
        .await;
        let report = sim_client(&s).check(&probe_sets(&[])).await;
        let row = &report.get("GET /api/v1/threat-details").unwrap().result;
        if i == 0 {
            assert!(matches!(row, ProbeResult::NotLicensed), "{text}: {row:?}");
        } else {
            assert!(
                matches!(row, ProbeResult::NotLicensedOrDenied { permission_name } if !permission_name.is_empty()),
                "{text}: {row:?}"
            );
        }
        s.shutdown().await;
    }
    // A licensed tenant, a token without the EDR and users permissions: the EDR row cannot
    // tell (DRF's permission text on a gated family), the users row can.
    let limited = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee".to_string();
    let s = sim(SimConfig {
        extra_tokens: vec![TokenSpec {
            token: limited.clone(),
            allow: vec![
                "GET /api/v1/devices".into(),
                "GET /api/v1/settings/licensing".into(),
            ],
        }],
        ..static_cfg(20)
    })
    .await;
    let c = client_with(&s.base_url(), &limited, big_budget(), fast_retry());
    let report = c.check(&probe_sets(&[])).await;
    let row = |e: &str| &report.get(e).unwrap().result;
    assert!(matches!(
        row("GET /api/v1/threat-details"),
        ProbeResult::NotLicensedOrDenied { .. }
    ));
    assert!(matches!(
        row("GET /api/v1/users"),
        ProbeResult::MissingPermission { .. }
    ));
    assert_eq!(
        row("GET /api/v1/threat-details").status(),
        "not_licensed_or_denied"
    );
    // With behavioral detections readable, EDR is licensed: the threats 403 is a permission.
    let partial = "bbbbbbbb-bbbb-cccc-dddd-eeeeeeeeeeee".to_string();
    s.shutdown().await;
    let s = sim(SimConfig {
        extra_tokens: vec![TokenSpec {
            token: partial.clone(),
            allow: vec![
                "GET /api/v1/devices".into(),
                "GET /api/v1/behavioral-detections".into(),
            ],
        }],
        ..static_cfg(20)
    })
    .await;
    let c = client_with(&s.base_url(), &partial, big_budget(), fast_retry());
    let report = c.check(&probe_sets(&[])).await;
    assert!(
        matches!(&report.get("GET /api/v1/threat-details").unwrap().result,
            ProbeResult::MissingPermission { permission_name } if !permission_name.is_empty()),
        "{:?}",
        report.get("GET /api/v1/threat-details").unwrap().result
    );
    s.shutdown().await;
}
