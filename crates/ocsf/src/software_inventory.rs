//! Software Inventory Info (5020, Discovery): one event per (device, app) row version, and the
//! app change events (installed/removed/updated) as Log (1) activities.

use serde_json::{Value, json};

use crate::common::{Base, Raw, device_ref, device_type, finish, os, severity_id, unknown_device};
use crate::{Context, EventRecord, InventoryRecord};

fn package(r: &Raw<'_>) -> Value {
    let name = r
        .s("name")
        .or_else(|| r.s("bundle_name"))
        .or_else(|| r.s("app_name"))
        .unwrap_or_else(|| "unknown".into());
    let version = r
        .s("version")
        .or_else(|| r.s("short_version"))
        .unwrap_or_else(|| "unknown".into());
    let mut p = json!({"name": name, "version": version, "type_id": 1, "type": "Application"});
    if let Some(b) = r.s("bundle_id") {
        p["uid"] = json!(b);
    }
    if let Some(v) = r.s("developer_name") {
        p["vendor_name"] = json!(v);
    }
    if let Some(path) = r.s("path") {
        p["path"] = json!(path);
    }
    if let Some(t) = r.t("created_at") {
        p["install_time"] = json!(t);
    }
    p
}

/// The device of a Prism row (`device__name`, `device__family`, `model_id`, …).
pub(crate) fn prism_device(r: &Raw<'_>, device_id: Option<&str>) -> Value {
    let family = r.s("device__family");
    let model = r.s("model_id");
    let (type_id, type_name) = device_type(family.as_deref(), model.as_deref());
    let mut d = json!({"type_id": type_id, "type": type_name});
    if let Some(id) = r.s("device_id").or_else(|| device_id.map(str::to_string)) {
        d["uid"] = json!(id);
    }
    if let Some(n) = r.s("device__name") {
        d["name"] = json!(n);
    }
    if let Some(m) = model {
        d["model"] = json!(m);
    }
    if family.is_some() {
        d["os"] = os(family.as_deref(), None, None);
    }
    if let Some(sn) = r.s("serial_number") {
        d["hw_info"] = json!({"serial_number": sn});
    }
    if let Some(bp) = r.s("blueprint_name") {
        let mut g = json!({"name": bp, "type": "blueprint"});
        if let Some(id) = r.s("blueprint_id") {
            g["uid"] = json!(id);
        }
        d["groups"] = json!([g]);
    }
    let mut owner = json!({});
    if let Some(e) = r.s("device__user_email") {
        owner["email_addr"] = json!(e);
    }
    if let Some(n) = r.s("device__user_name") {
        owner["full_name"] = json!(n.clone());
        owner["name"] = json!(n);
    }
    if let Some(u) = r.s("device__user_id") {
        owner["uid"] = json!(u);
    }
    if owner.as_object().is_some_and(|m| !m.is_empty()) {
        d["owner"] = owner;
    }
    d
}

pub(crate) fn from_row(ctx: &Context<'_>, row: &InventoryRecord<'_>, uid: &str) -> Value {
    let r = Raw::new(row.raw);
    let pkg = package(&r);
    let device = prism_device(&r, row.device_id);
    let base = Base {
        class_uid: 5020,
        class_name: "Software Inventory Info",
        category_uid: 5,
        category_name: "Discovery",
        activity_id: 2,
        activity_name: "Collect",
        severity_id: 1,
        time: row.observed_at,
        log_name: "apps",
        uid,
        message: None,
    };
    let mut m = base.build(ctx);
    m.insert("device".into(), device);
    m.insert("package".into(), pkg);
    let mut unmapped = r.unmapped();
    if let Some(at) = row.removed_at {
        let u = unmapped.get_or_insert_with(|| json!({}));
        u["removed_at"] = json!(at);
    }
    finish(m, unmapped)
}

/// `app_installed` / `app_removed` / `app_updated` change events.
pub(crate) fn from_change(ctx: &Context<'_>, e: &EventRecord<'_>, uid: &str) -> Value {
    let base = Base {
        class_uid: 5020,
        class_name: "Software Inventory Info",
        category_uid: 5,
        category_name: "Discovery",
        activity_id: 1,
        activity_name: "Log",
        severity_id: severity_id(e.severity),
        time: e.occurred_at,
        log_name: e.stream,
        uid,
        message: Some(e.summary.to_string()),
    };
    let mut m = base.build(ctx);
    let (device, pkg) = match e.related {
        Some(rel) => {
            let r = Raw::new(rel);
            (prism_device(&r, e.device_id), package(&r))
        }
        None => {
            let bundle = e
                .raw
                .get("key")
                .and_then(Value::as_str)
                .and_then(|k| k.split('|').nth(1))
                .unwrap_or("unknown");
            (
                device_ref(e.device_id, None).unwrap_or_else(unknown_device),
                json!({"name": bundle, "version": "unknown", "uid": bundle, "type_id": 1, "type": "Application"}),
            )
        }
    };
    m.insert("device".into(), device);
    m.insert("package".into(), pkg);
    let unmapped = json!({"change": e.event_type, "event_uid": e.uid, "change_raw": e.raw});
    finish(m, Some(unmapped))
}
