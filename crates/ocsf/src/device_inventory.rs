//! Device Inventory Info (5001, Discovery): one event per `devices` row version.

use serde_json::{Value, json};

use crate::common::{Base, Raw, device_type, finish, os};
use crate::{Context, InventoryRecord};

/// The OCSF `device` object from a Kandji device (list or details shape). Takes the fields it
/// maps from `r`.
pub(crate) fn device_object(r: &Raw<'_>, fallback_uid: Option<&str>) -> Value {
    let platform = r.s("platform");
    let model = r.s("model");
    let (type_id, type_name) = device_type(platform.as_deref(), model.as_deref());
    let mut d = json!({"type_id": type_id, "type": type_name});
    let uid = r
        .s("device_id")
        .or_else(|| fallback_uid.map(str::to_string));
    if let Some(u) = uid {
        d["uid"] = json!(u);
    }
    if let Some(n) = r.s("device_name") {
        d["name"] = json!(n.clone());
        d["hostname"] = json!(n);
    }
    if let Some(m) = model {
        d["model"] = json!(m);
    }
    let build = r.s("supplemental_build_version");
    d["os"] = os(platform.as_deref(), r.s("os_version"), build);
    if let Some(sn) = r.s("serial_number") {
        d["hw_info"] = json!({"serial_number": sn});
    }
    if let Some(t) = r.t("last_check_in") {
        d["last_seen_time"] = json!(t);
    }
    if let Some(t) = r.t("first_enrollment") {
        d["first_seen_time"] = json!(t);
    }
    if let Some(m) = r.b("mdm_enabled") {
        d["is_managed"] = json!(m);
    }
    if let Some(bp) = r.s("blueprint_name") {
        let mut g = json!({"name": bp, "type": "blueprint"});
        if let Some(id) = r.s("blueprint_id") {
            g["uid"] = json!(id);
        }
        d["groups"] = json!([g]);
    }
    if let Some(user) = r.get("user").filter(|u| u.is_object()) {
        let mut o = json!({});
        if let Some(id) = user.get("id").and_then(Value::as_str) {
            o["uid"] = json!(id);
        }
        if let Some(e) = user.get("email").and_then(Value::as_str) {
            o["email_addr"] = json!(e);
        }
        if let Some(n) = user.get("name").and_then(Value::as_str) {
            o["full_name"] = json!(n);
            o["name"] = json!(n);
        }
        if o.as_object().is_some_and(|m| !m.is_empty()) {
            d["owner"] = o;
        }
    }
    d
}

pub(crate) fn from_row(ctx: &Context<'_>, row: &InventoryRecord<'_>, uid: &str) -> Value {
    let r = Raw::new(row.raw);
    let device = device_object(&r, row.device_id.or(Some(row.key)));
    let base = Base {
        class_uid: 5001,
        class_name: "Device Inventory Info",
        category_uid: 5,
        category_name: "Discovery",
        activity_id: 2,
        activity_name: "Collect",
        severity_id: 1,
        time: row.observed_at,
        log_name: "devices",
        uid,
        message: None,
    };
    let mut m = base.build(ctx);
    m.insert("device".into(), device);
    let mut unmapped = r.unmapped();
    if let Some(at) = row.removed_at {
        let u = unmapped.get_or_insert_with(|| json!({}));
        u["removed_at"] = json!(at);
    }
    finish(m, unmapped)
}
