//! Every stream's `map`, on the API's own examples (`tests/fixtures/streams/*.json`, copied
//! from `openapi.yaml`; see the README there), and every change-event rule of the
//! inventory tables (`store::tables::{created, changed, removed}`).

use kandji_collector::store::tables::{self, Change};
use kandji_collector::store::{AppInstall, InvRow, Table};
use kandji_collector::streams::{
    ade_devices, audit_events, behavioral_detections, blueprints, compliance, device_details,
    devices, tags, threats, users, vulnerability_detections,
};
use rusqlite::types::Value as Sql;
use serde_json::{Value, json};

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/streams/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The records of a fixture: a DRF envelope's `results`, a Prism page's `data`, or a list.
fn records(name: &str) -> Vec<Value> {
    let v = fixture(name);
    let list = v
        .get("results")
        .or_else(|| v.get("data"))
        .cloned()
        .unwrap_or(v);
    match list {
        Value::Array(a) => a,
        other => panic!("{name}: not a list of records: {other}"),
    }
}

/// A typed column of a row, by name.
fn col(table: Table, values: &[Sql], name: &str) -> Sql {
    let i = table
        .spec()
        .col_index(name)
        .unwrap_or_else(|| panic!("{} has no column {name}", table.name()));
    values[i].clone()
}

fn t(s: &str) -> Sql {
    Sql::Text(s.to_string())
}

fn raw_is(row: &InvRow, record: &Value) {
    let raw: Value = serde_json::from_str(&row.raw).expect("raw is JSON");
    assert_eq!(&raw, record, "the raw JSON keeps the record as it came");
}

#[test]
fn devices_map_the_list_fields() {
    let rec = &records("devices")[0];
    let row = devices::map(rec).expect("a device");
    let c = |n| col(Table::Devices, &row.values, n);
    assert_eq!(row.key, "4820db3b-dec7-40b2-9c8f-eb771ac1a250");
    assert_eq!(row.device_id.as_deref(), Some(row.key.as_str()));
    assert_eq!(c("device_name"), t("iPad"));
    assert_eq!(c("serial_number"), t("GG7FF8QSQ1GH"));
    assert_eq!(c("platform"), t("iPad"));
    assert_eq!(c("os_version"), t("16.1.1"));
    assert_eq!(c("blueprint_name"), t("_testing_ipados"));
    assert_eq!(c("last_check_in"), Sql::Integer(1_674_078_386_879));
    assert_eq!(c("mdm_enabled"), Sql::Integer(1));
    assert_eq!(c("agent_installed"), Sql::Integer(1));
    assert_eq!(c("tags"), t("[]"));
    // The example's `user` is "" (no user): no user columns, not an error.
    assert_eq!(c("user_id"), Sql::Null);
    assert_eq!(c("asset_tag"), Sql::Null, "an empty string is absent");
    raw_is(&row, rec);

    // The live API's user object (HAR: graph-kandji-fetch-devices).
    let mut with_user = rec.clone();
    with_user["user"] = json!({"id": 30515, "email": "a@b.io", "name": "A B"});
    let row = devices::map(&with_user).expect("a device");
    let c = |n| col(Table::Devices, &row.values, n);
    assert_eq!(c("user_id"), t("30515"), "a numeric id is read as text");
    assert_eq!(c("user_email"), t("a@b.io"));
    assert!(devices::map(&json!({"device_name": "no id"})).is_none());
}

#[test]
fn ade_devices_key_on_the_ade_id_and_name_the_mdm_device() {
    let rec = &records("ade_devices")[0];
    let row = ade_devices::map(rec).expect("an ADE device");
    let c = |n| col(Table::AdeDevices, &row.values, n);
    assert_eq!(row.key, "aca3e9f7-48d9-44a5-9007-25bc0b1d451f");
    assert_eq!(
        row.device_id.as_deref(),
        Some("782f4054-b971-4bec-850b-7bf13ce806fe")
    );
    assert_eq!(c("serial_number"), t("C02FL5YXQ6LC"));
    assert_eq!(c("device_family"), t("Mac"));
    assert_eq!(c("profile_status"), t("assigned"));
    assert_eq!(
        c("mdm_device_id"),
        t("782f4054-b971-4bec-850b-7bf13ce806fe")
    );
    raw_is(&row, rec);
    // Not enrolled yet: no MDM device.
    let mut unenrolled = rec.clone();
    unenrolled["mdm_device"] = Value::Null;
    assert_eq!(ade_devices::map(&unenrolled).expect("row").device_id, None);
}

#[test]
fn blueprints_tags_and_users_map_their_fields() {
    let bps = records("blueprints");
    let row = blueprints::map(&bps[0]).expect("a blueprint");
    assert_eq!(row.key, "b38787e4-401c-4c4b-86dc-f1cca2072531");
    assert_eq!(
        col(Table::Blueprints, &row.values, "name"),
        t("auto_app_testing")
    );
    assert_eq!(
        col(Table::Blueprints, &row.values, "computers_count"),
        Sql::Integer(0)
    );
    assert_eq!(row.device_id, None);

    let tag = tags::map(&records("tags")[0]).expect("a tag");
    assert_eq!(tag.key, "71dd53f1-104e-41a2-82ca-43a375b7f63d");
    assert_eq!(col(Table::Tags, &tag.values, "name"), t("accuhive_01"));

    let u = &records("users")[0];
    let row = users::map(u).expect("a user");
    let c = |n| col(Table::Users, &row.values, n);
    assert_eq!(row.key, "69c009ca-1f78-4bdf-bb93-08d6d39041db");
    assert_eq!(c("email"), t("test_user_01@accuhive.io"));
    assert_eq!(c("active"), Sql::Integer(1));
    assert_eq!(c("archived"), Sql::Integer(0));
    assert_eq!(c("department"), Sql::Null, "null stays absent");
    assert_eq!(c("device_count"), Sql::Integer(2));
    raw_is(&row, u);
    for (name, map) in [
        ("blueprint", blueprints::map as fn(&Value) -> Option<InvRow>),
        ("tag", tags::map),
        ("user", users::map),
    ] {
        assert!(map(&json!({"name": "x"})).is_none(), "a {name} with no id");
    }
}

#[test]
fn compliance_rows_are_one_per_library_item_and_parameter() {
    let body = fixture("compliance");
    let device = "77883d40-5656-4a24-9d70-49b6e751a923";
    let rows = compliance::rows(device, &body);
    assert_eq!(rows.len(), 8 + 1, "8 library items and 1 parameter");
    let zoom = &rows[0];
    assert_eq!(
        zoom.key,
        format!("{device}|library_item|4a98cb3d-3b55-46bf-829d-7dd7bd6ed832")
    );
    let c = |r: &InvRow, n| col(Table::Compliance, &r.values, n);
    assert_eq!(c(zoom, "kind"), t("library_item"));
    assert_eq!(c(zoom, "name"), t("zoom"));
    assert_eq!(c(zoom, "status"), t("PASS"));
    assert_eq!(c(zoom, "reported_at"), Sql::Integer(1_620_762_319_000));
    let param = rows.last().expect("the parameter");
    assert_eq!(
        param.key,
        format!("{device}|parameter|1e4be748-e072-4c1f-b1ff-a98f076b8e8e")
    );
    assert_eq!(c(param, "kind"), t("parameter"));
    assert!(rows.iter().all(|r| r.device_id.as_deref() == Some(device)));
    // An item without an id is skipped, not stored under an empty key.
    let odd = json!({"library_items": [{"name": "no id", "status": "PASS"}], "parameters": []});
    assert!(compliance::rows(device, &odd).is_empty());
}

#[test]
fn device_details_rows_are_per_category_with_a_posture() {
    let fv = &records("prism_filevault")[0];
    let row = device_details::map("filevault", fv).expect("a filevault row");
    let c = |r: &InvRow, n| col(Table::DeviceDetails, &r.values, n);
    assert_eq!(row.key, "filevault|aa79459d-8566-4655-b09a-8f5c6bcf8b43");
    assert_eq!(c(&row, "category"), t("filevault"));
    // FileVault's posture follows `status` (false, as its CSV writes it).
    assert_eq!(c(&row, "posture"), t("false"));
    // No last_changed_at: updated_at instead.
    assert_eq!(c(&row, "last_changed_at"), Sql::Integer(1_733_841_574_740));

    let info = &records("prism_device_information")[0];
    let row = device_details::map("device_information", info).expect("a row");
    assert_eq!(
        c(&row, "posture"),
        Sql::Null,
        "device_information has no posture"
    );

    // Installed profiles: one row per profile.
    let p = &records("prism_installed_profiles")[0];
    let row = device_details::map("installed_profiles", p).expect("a profile");
    assert_eq!(
        row.key,
        "installed_profiles|aa79459d-8566-4655-b09a-8f5c6bcf8b43|e9643534-3ef3-5b97-84be-779edbca63bf"
    );
    assert!(device_details::map("filevault", &json!({"status": true})).is_none());
}

#[test]
fn prism_apps_rows_become_installs_keyed_by_device_and_bundle() {
    let apps = records("prism_apps");
    let first = AppInstall::from_json(apps[0].as_object().expect("object")).expect("an install");
    assert_eq!(
        first.key(),
        "aa79459d-8566-4655-b09a-8f5c6bcf8b43|com.agilebits.onepassword7"
    );
    let v = first.typed();
    assert_eq!(col(Table::Apps, &v, "name"), t("1Password 7"));
    assert_eq!(col(Table::Apps, &v, "version"), t("7.9.11"));
    assert_eq!(
        col(Table::Apps, &v, "path"),
        t("/Applications/1Password 7.app")
    );
    // Two apps of one device are two installs.
    let second = AppInstall::from_json(apps[1].as_object().expect("object")).expect("install");
    assert_ne!(first.key(), second.key());
    // An install with no bundle id is keyed by its path.
    let mut no_bundle = apps[0].clone();
    no_bundle["bundle_id"] = Value::Null;
    let by_path = AppInstall::from_json(no_bundle.as_object().expect("object")).expect("install");
    assert_eq!(
        by_path.key(),
        "aa79459d-8566-4655-b09a-8f5c6bcf8b43|/Applications/1Password 7.app"
    );
}

#[test]
fn audit_events_map_type_actor_and_device() {
    let evs = records("audit_events");
    let e = audit_events::map(&evs[0]).expect("an event");
    assert_eq!(e.uid, "01JNGZW47KZKPXE1JWCFE4PHDW");
    assert_eq!(e.category, "audit");
    assert_eq!(e.event_type, "blueprint.update");
    assert_eq!(e.occurred_at, 1_741_105_795_253);
    assert_eq!(
        e.user_id.as_deref(),
        Some("cf40d6e7-20cb-4da9-84a1-9ad0b7003ca5")
    );
    assert_eq!(e.device_id, None, "a blueprint change names no device");
    assert_eq!(e.severity.as_deref(), Some("informational"));
    // The summary names the part changed (`target_component`, in words).
    assert!(e.summary.contains("(library items)"), "{}", e.summary);
    assert!(
        e.summary.contains("“demo”"),
        "and the object's name: {}",
        e.summary
    );
    // Every example maps, each with its own uid.
    let uids: std::collections::BTreeSet<String> = evs
        .iter()
        .map(|v| audit_events::map(v).expect("maps").uid)
        .collect();
    assert_eq!(uids.len(), evs.len());
    let token = evs
        .iter()
        .filter_map(audit_events::map)
        .find(|e| e.event_type == "api_token.update")
        .expect("the api token change");
    assert_eq!(token.category, "audit");

    // A detection logged by EDR against a device (the simulator's shape of the live feed).
    let detection = json!({
        "id": "01JX", "action": "detect", "actor_type": "system", "actor_id": "EDR",
        "target_type": "file_detection", "target_id": "f-1",
        "occurred_at": "2025-03-04T16:29:55.253454Z",
        "metadata": {"device_id": "dev-1", "classification": "MALWARE"}
    });
    let e = audit_events::map(&detection).expect("a detection");
    assert_eq!(e.category, "security");
    assert_eq!(e.severity.as_deref(), Some("high"));
    assert_eq!(e.device_id.as_deref(), Some("dev-1"));
    assert_eq!(e.user_id, None, "a system actor is not a user");
    // A device as the target.
    let device = json!({"id": "x", "action": "delete", "target_type": "device",
        "target_id": "dev-2", "occurred_at": "2025-03-04T16:29:55Z"});
    assert_eq!(
        audit_events::map(&device)
            .expect("event")
            .device_id
            .as_deref(),
        Some("dev-2")
    );
    assert!(audit_events::map(&json!({"id": "no time"})).is_none());
}

#[test]
fn threats_map_to_security_events_keyed_without_an_id() {
    let rec = &records("threats")[0];
    let e = threats::map(rec).expect("a threat");
    assert_eq!(e.category, "security");
    assert_eq!(e.event_type, "threat.malware");
    assert_eq!(e.severity.as_deref(), Some("high"));
    assert_eq!(e.occurred_at, 1_682_097_793_883);
    assert_eq!(
        e.device_id.as_deref(),
        Some("df1badd0-1dc9-448b-9b2a-c614a844c69e")
    );
    assert_eq!(e.uid, threats::key(rec));
    assert!(
        e.uid
            .starts_with("df1badd0-1dc9-448b-9b2a-c614a844c69e|2ab79665")
    );
    assert!(e.summary.contains("QUARANTINED") && e.summary.contains("malware_5"));
    // A status change (quarantined → released) keeps the key: the stored event updates.
    let mut released = rec.clone();
    released["status"] = json!("RELEASED");
    assert_eq!(threats::key(&released), e.uid);
    let mut pup = rec.clone();
    pup["classification"] = json!("PUP");
    assert_eq!(
        threats::map(&pup).expect("pup").severity.as_deref(),
        Some("medium")
    );
}

#[test]
fn behavioral_detections_map_with_an_upper_case_uid() {
    let recs = records("behavioral_detections");
    let e = behavioral_detections::map(&recs[0]).expect("a detection");
    assert_eq!(e.uid, "CC80F462-1F4D-4A04-9380-C21743DFC308");
    assert_eq!(e.event_type, "behavioral_detection.malicious");
    assert_eq!(e.severity.as_deref(), Some("high"));
    assert_eq!(e.occurred_at, 1_741_455_330_462);
    assert_eq!(
        e.device_id.as_deref(),
        Some("ddfc3341-f319-4ef0-bf9a-80791b15a79a")
    );
    let mut lower = recs[0].clone();
    lower["id"] = json!("cc80f462-1f4d-4a04-9380-c21743dfc308");
    assert_eq!(
        behavioral_detections::map(&lower).expect("maps").uid,
        e.uid,
        "the id's case does not make a second detection"
    );
    for r in &recs {
        assert!(behavioral_detections::map(r).is_some());
    }
}

#[test]
fn vulnerability_detections_map_to_one_event_per_device_app_and_cve() {
    let rec = &records("vulnerability_detections")[0];
    let e = vulnerability_detections::map(rec).expect("a detection");
    assert_eq!(e.uid, "abcd-com.microsoft-CVE-2024-12345");
    assert_eq!(e.event_type, "vulnerability.detected");
    assert_eq!(e.severity.as_deref(), Some("low"));
    assert_eq!(e.occurred_at, 1_697_213_700_000);
    assert!(
        e.summary
            .starts_with("CVE-2024-12345 (low) in Example 1.0.0")
    );
    let mut no_bundle = rec.clone();
    no_bundle["bundle_id"] = Value::Null;
    assert_eq!(
        vulnerability_detections::uid(&no_bundle),
        "abcd-/path/to/app-CVE-2024-12345"
    );
    assert!(vulnerability_detections::map(&json!({"device_id": "x"})).is_none());
}

// --- Change-event rules -------------------------------------------------------------------

fn device_row() -> InvRow {
    let mut rec = records("devices")[0].clone();
    rec["user"] = json!({"id": "u1", "email": "ada@acme.io", "name": "Ada"});
    devices::map(&rec).expect("a device")
}

fn with(table: Table, values: &[Sql], changes: &[(&str, Sql)]) -> Vec<Sql> {
    let mut out = values.to_vec();
    for (name, v) in changes {
        let i = table.spec().col_index(name).expect("column");
        out[i] = v.clone();
    }
    out
}

fn types(changes: &[Change]) -> Vec<&'static str> {
    changes.iter().map(|c| c.event_type).collect()
}

#[test]
fn a_device_enrols_changes_and_is_removed() {
    let d = device_row();
    let enrolled = tables::created(Table::Devices, &d.key, &d.values).expect("news");
    assert_eq!(enrolled.event_type, "device_enrolled");
    assert_eq!(enrolled.summary, "Device enrolled: iPad");
    let removed = tables::removed(Table::Devices, &d.key, &d.values).expect("news");
    assert_eq!(
        (removed.event_type, removed.severity),
        ("device_removed", "low")
    );

    let os = with(Table::Devices, &d.values, &[("os_version", t("17.0"))]);
    let c = tables::changed(Table::Devices, &d.key, &d.values, &os);
    assert_eq!(types(&c), ["os_updated"]);
    assert_eq!(c[0].summary, "OS updated on iPad: 16.1.1 → 17.0");

    let moved = with(
        Table::Devices,
        &d.values,
        &[("blueprint_id", t("bp-2")), ("blueprint_name", t("Sales"))],
    );
    let c = tables::changed(Table::Devices, &d.key, &d.values, &moved);
    assert_eq!(types(&c), ["blueprint_changed"]);
    assert!(c[0].summary.ends_with("_testing_ipados → Sales"));

    let unassigned = with(
        Table::Devices,
        &d.values,
        &[("user_id", Sql::Null), ("user_email", Sql::Null)],
    );
    let c = tables::changed(Table::Devices, &d.key, &d.values, &unassigned);
    assert_eq!(types(&c), ["user_reassigned"]);
    assert!(c[0].summary.ends_with("ada@acme.io → (unassigned)"));

    // All three at once: three events, in a fixed order.
    let all = with(
        Table::Devices,
        &moved,
        &[("os_version", t("17.0")), ("user_id", t("u2"))],
    );
    assert_eq!(
        types(&tables::changed(Table::Devices, &d.key, &d.values, &all)),
        ["os_updated", "blueprint_changed", "user_reassigned"]
    );
    // A check-in or a name change alone is not a change event.
    let noise = with(
        Table::Devices,
        &d.values,
        &[
            ("last_check_in", Sql::Integer(1)),
            ("device_name", t("iPad 2")),
        ],
    );
    assert!(tables::changed(Table::Devices, &d.key, &d.values, &noise).is_empty());
}

#[test]
fn an_app_installs_updates_and_is_removed() {
    let app = AppInstall::from_json(records("prism_apps")[0].as_object().expect("object"))
        .expect("install");
    let (key, v) = (app.key(), app.typed());
    let c = tables::created(Table::Apps, &key, &v).expect("news");
    assert_eq!(c.event_type, "app_installed");
    assert_eq!(
        c.summary,
        "App installed: 1Password 7 7.9.11 on device aa79459d-8566-4655-b09a-8f5c6bcf8b43"
    );
    let newer = with(Table::Apps, &v, &[("version", t("8.0.0"))]);
    let c = tables::changed(Table::Apps, &key, &v, &newer);
    assert_eq!(types(&c), ["app_updated"]);
    assert!(c[0].summary.contains("7.9.11 → 8.0.0"));
    let moved = with(Table::Apps, &v, &[("path", t("/Applications/Other.app"))]);
    assert!(tables::changed(Table::Apps, &key, &v, &moved).is_empty());
    let r = tables::removed(Table::Apps, &key, &v).expect("news");
    assert_eq!(r.event_type, "app_removed");
}

#[test]
fn a_compliance_item_changing_status_is_news_and_failing_is_medium() {
    let rows = compliance::rows("dev", &fixture("compliance"));
    let item = &rows[0];
    assert!(
        tables::created(Table::Compliance, &item.key, &item.values).is_none(),
        "a new item is not news"
    );
    assert!(tables::removed(Table::Compliance, &item.key, &item.values).is_none());
    for (status, severity) in [
        ("FAILED", "medium"),
        ("ERROR", "medium"),
        ("incompatible", "medium"),
        ("WARNING", "medium"),
        ("PENDING", "informational"),
    ] {
        let next = with(Table::Compliance, &item.values, &[("status", t(status))]);
        let c = tables::changed(Table::Compliance, &item.key, &item.values, &next);
        assert_eq!(types(&c), ["compliance_status_changed"], "{status}");
        assert_eq!(c[0].severity, severity, "{status}");
        assert_eq!(
            c[0].summary,
            format!("Compliance library_item 'zoom': PASS → {status}")
        );
    }
    let later = with(
        Table::Compliance,
        &item.values,
        &[("reported_at", Sql::Integer(9))],
    );
    assert!(tables::changed(Table::Compliance, &item.key, &item.values, &later).is_empty());
}

#[test]
fn a_posture_change_is_news_but_a_first_posture_is_not() {
    let fv = device_details::map("filevault", &records("prism_filevault")[0]).expect("row");
    let on = with(Table::DeviceDetails, &fv.values, &[("posture", t("true"))]);
    let c = tables::changed(Table::DeviceDetails, &fv.key, &fv.values, &on);
    assert_eq!(types(&c), ["filevault_toggled"]);
    assert_eq!(c[0].severity, "low");
    assert_eq!(
        c[0].summary,
        "filevault changed on device aa79459d-8566-4655-b09a-8f5c6bcf8b43: false → true"
    );
    // Each category's own event type.
    for (category, event) in [
        ("application_firewall", "firewall_toggled"),
        ("gatekeeper_and_xprotect", "gatekeeper_toggled"),
        ("startup_settings", "posture_changed"),
    ] {
        let old = with(
            Table::DeviceDetails,
            &fv.values,
            &[("category", t(category)), ("posture", t("a"))],
        );
        let new = with(Table::DeviceDetails, &old, &[("posture", t("b"))]);
        assert_eq!(
            types(&tables::changed(Table::DeviceDetails, &fv.key, &old, &new)),
            [event]
        );
    }
    // A posture seen for the first time (none before) is not a toggle.
    let none = with(Table::DeviceDetails, &fv.values, &[("posture", Sql::Null)]);
    assert!(tables::changed(Table::DeviceDetails, &fv.key, &none, &on).is_empty());
    assert!(tables::created(Table::DeviceDetails, &fv.key, &fv.values).is_none());
}

#[test]
fn users_come_and_go_and_dimensions_are_not_news() {
    let u = users::map(&records("users")[0]).expect("user");
    assert_eq!(
        tables::created(Table::Users, &u.key, &u.values)
            .expect("news")
            .summary,
        "Directory user added: test_user_01@accuhive.io"
    );
    assert_eq!(
        tables::removed(Table::Users, &u.key, &u.values)
            .expect("news")
            .event_type,
        "user_removed"
    );
    let renamed = with(Table::Users, &u.values, &[("name", t("Ada"))]);
    assert!(tables::changed(Table::Users, &u.key, &u.values, &renamed).is_empty());

    let bp = blueprints::map(&records("blueprints")[0]).expect("bp");
    let tag = tags::map(&records("tags")[0]).expect("tag");
    let ade = ade_devices::map(&records("ade_devices")[0]).expect("ade");
    for (table, row) in [
        (Table::Blueprints, &bp),
        (Table::Tags, &tag),
        (Table::AdeDevices, &ade),
    ] {
        assert!(tables::created(table, &row.key, &row.values).is_none());
        assert!(tables::removed(table, &row.key, &row.values).is_none());
    }
}

#[test]
fn a_vulnerability_detection_opens_and_closes() {
    let rec = &records("vulnerability_detections")[0];
    let row = vulnerability_detections::row(rec).expect("an open detection");
    assert_eq!(
        row.key, "abcd-com.microsoft-CVE-2024-12345",
        "keyed like its event"
    );
    assert_eq!(row.device_id.as_deref(), Some("abcd"));
    let c = |n| col(Table::VulnDetections, &row.values, n);
    assert_eq!(c("cve_id"), t("CVE-2024-12345"));
    assert_eq!(c("software"), t("Example"));
    assert_eq!(c("severity"), t("low"));
    assert_eq!(c("cvss_score"), Sql::Real(3.2));
    assert_eq!(c("detected_at"), Sql::Integer(1_697_213_700_000));
    let key = row.key.as_str();
    // New: the feed's own event says so; the table adds nothing.
    assert!(tables::created(Table::VulnDetections, key, &row.values).is_none());
    let closed = tables::removed(Table::VulnDetections, key, &row.values).expect("news");
    assert_eq!(closed.event_type, "vulnerability_resolved");
    assert_eq!(
        closed.summary,
        format!("Vulnerability no longer detected: CVE-2024-12345 in {key}")
    );
    let back = tables::reappeared(Table::VulnDetections, key, &row.values).expect("news");
    assert_eq!(back.event_type, "vulnerability_detected");
    // Other tables' reappearance is their creation.
    let d = device_row();
    assert_eq!(
        tables::reappeared(Table::Devices, &d.key, &d.values)
            .expect("news")
            .event_type,
        "device_enrolled"
    );
    assert!(vulnerability_detections::row(&json!({"device_id": "x"})).is_none());
}
