//! Every kind of audit event the feed carries (the spec's list: blueprint and library-item
//! lifecycle, sensitive-data access, MDM removal, admin and tenant-owner changes, API tokens,
//! directory users, vulnerability and EDR detections, remediations and admin actions) is
//! collected and maps to its OCSF class and activity: a table of what each must become.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use kandji_collector::outputs::{Format, SourceInfo};
use kandji_collector::streams::StreamName;
use kandji_sim::Churn;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_audit_kind_is_collected_and_maps_to_its_ocsf_class() {
    let mut cfg = sim_config(300, 53);
    cfg.churn = Churn {
        admin_events: 600.0,
        threats: 100.0,
        vulnerabilities: 100.0,
        vuln_remediations: 100.0,
        ..Churn::default()
    };
    let env = env(cfg).await;
    env.sim.advance(Duration::from_secs(12 * 3600));
    cycle(&env, &[StreamName::AuditEvents]).await;
    let info = SourceInfo {
        source: "acme".into(),
        tenant: "acme".into(),
    };
    let (records, _, _) = kandji_collector::outputs::outbox::read_batch(
        &env.store,
        &info,
        Format::Ocsf,
        kandji_collector::store::OutboxPos::default(),
        10_000_000,
    )
    .await
    .unwrap();
    let raw_types = store_set(
        &env.store,
        "SELECT event_type || char(31) || uid FROM events WHERE stream = 'audit_events'",
    );
    let type_of: BTreeMap<String, String> = raw_types
        .iter()
        .filter_map(|r| r.split_once('\u{1f}'))
        .map(|(t, u)| (u.to_string(), t.to_string()))
        .collect();
    // event type → the (class, activity) pairs its events mapped to.
    let mut got: BTreeMap<String, BTreeSet<(i64, i64)>> = BTreeMap::new();
    // event type → its first OCSF event (in outbox order: deterministic for a seed and a frozen
    // clock), the golden one.
    let mut golden: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for r in &records {
        let ev = &r.body;
        let by_uid = ev["unmapped"]["event_uid"]
            .as_str()
            .or_else(|| ev["finding_info"]["uid"].as_str())
            .and_then(|u| type_of.get(u));
        let Some(t) = ev["unmapped"]["event_type"]
            .as_str()
            .map(str::to_string)
            .or_else(|| by_uid.cloned())
        else {
            continue;
        };
        golden.entry(t.clone()).or_insert_with(|| ev.clone());
        got.entry(t.clone()).or_default().insert((
            ev["class_uid"].as_i64().unwrap(),
            ev["activity_id"].as_i64().unwrap(),
        ));
    }
    let want: &[(&str, i64, i64)] = &[
        ("blueprint.create", 3004, 1),
        ("blueprint.update", 3004, 3),
        ("blueprint.delete", 3004, 4),
        ("library_item.create", 3004, 1),
        ("library_item.update", 3004, 3),
        ("library_item.delete", 3004, 4),
        ("device.create", 3004, 1),
        ("device.view", 3004, 2),
        ("device.delete", 3004, 4),
        ("device.update", 3004, 3),
        ("user.update", 3004, 3),
        ("user.delete", 3004, 4),
        ("admin_user.create", 3001, 1),
        ("admin_user.delete", 3001, 6),
        ("api_token.create", 3001, 1),
        ("api_token.delete", 3001, 6),
        ("vulnerability.detect", 2002, 1),
        ("vulnerability.remediate", 2002, 3),
    ];
    let mut wrong = Vec::new();
    for (t, class, activity) in want {
        match got.get(*t) {
            None => wrong.push(format!("{t}: no event collected")),
            Some(s) if !s.iter().all(|&(c, a)| c == *class && a == *activity) => {
                wrong.push(format!("{t}: {s:?}, want ({class}, {activity})"))
            }
            _ => {}
        }
    }
    // Kinds whose activity depends on more than the action: the class is what is fixed.
    for (t, class) in [
        ("admin_user.update", 3001),
        ("api_token.update", 3001),
        ("file_detection.detect", 2004),
        ("file_detection.remediate", 2004),
        ("file_detection.release", 2004),
    ] {
        match got.get(t) {
            None => wrong.push(format!("{t}: no event collected")),
            Some(s) if !s.iter().all(|&(c, _)| c == class) => {
                wrong.push(format!("{t}: {s:?}, want class {class}"))
            }
            _ => {}
        }
    }
    assert!(wrong.is_empty(), "{}\nall: {got:?}", wrong.join("\n"));
    // A golden OCSF event per audit kind: the whole mapping, field by field, reviewed once and
    // kept (`cargo insta review` after an intended change).
    for (t, ev) in &golden {
        insta::assert_json_snapshot!(format!("audit_{}", t.replace('.', "_")), ev, {
            ".metadata.uid" => "[uid]",
            ".metadata.product.version" => "[version]",
            ".metadata.product.feature.version" => "[version]",
            ".metadata.processed_time" => "[processed]",
        });
    }
    assert!(
        golden.len() >= 23,
        "{} audit kinds have a golden event",
        golden.len()
    );
    // The feed's metadata keeps its source fields.
    let with_source = count(
        &env.store,
        "SELECT count(*) FROM events WHERE stream = 'audit_events'
           AND json_extract(raw, '$.metadata.source') IS NOT NULL",
    );
    assert!(with_source > 0, "directory deletions carry metadata.source");
}
