//! Entity Management (3004, IAM): Kandji audit events that are not about admins, API tokens,
//! EDR or vulnerabilities, and the device and directory-user lifecycle change events
//! (enrolled/removed → Enroll 6 / Unenroll 7, OS updated, blueprint changed, user reassigned →
//! Update 3, directory user added/removed → Create 1 / Delete 4).

use serde_json::{Value, json};

use crate::common::{Base, Raw, finish, severity_id};
use crate::{Context, EventRecord};

pub(crate) fn activity(action: &str) -> (i64, &'static str) {
    match action.to_ascii_lowercase().as_str() {
        "create" | "add" | "created" | "assign" => (1, "Create"),
        "read" | "view" | "access" | "reveal" | "get" => (2, "Read"),
        "update" | "edit" | "modify" | "updated" | "change" => (3, "Update"),
        "delete" | "remove" | "deleted" | "removed" => (4, "Delete"),
        "move" => (5, "Move"),
        "enroll" | "enrolled" => (6, "Enroll"),
        "unenroll" | "unenrolled" => (7, "Unenroll"),
        "enable" => (8, "Enable"),
        "disable" => (9, "Disable"),
        "activate" => (10, "Activate"),
        "deactivate" => (11, "Deactivate"),
        "suspend" => (12, "Suspend"),
        "resume" => (13, "Resume"),
        _ => (99, "Other"),
    }
}

/// `managed_entity.type_id`: 1 Device, 2 User, 3 Group, 4 Organization, 5 Policy, 99 Other.
fn entity_type(t: &str) -> (i64, &'static str) {
    match t {
        "device" | "devices" | "computer" => (1, "Device"),
        "user" | "users" | "directory_user" => (2, "User"),
        "tag" | "group" => (3, "Group"),
        "blueprint" | "library_item" | "parameter" | "profile" => (5, "Policy"),
        _ => (99, "Other"),
    }
}

fn actor(raw: &Value) -> Option<Value> {
    let id = raw.get("actor_id").and_then(Value::as_str)?;
    let kind = raw
        .get("actor_type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (type_id, type_name) = match kind {
        "user" | "admin" => (1, "User"),
        "api_token" | "kandji" | "system" => (3, "System"),
        _ => (99, "Other"),
    };
    Some(json!({"user": {"uid": id, "type_id": type_id, "type": type_name, "name": id}}))
}

pub(crate) fn from_audit(ctx: &Context<'_>, e: &EventRecord<'_>, uid: &str) -> Value {
    let r = Raw::new(e.raw);
    let action = r.s("action").unwrap_or_default();
    let target_type = r.s("target_type").unwrap_or_default();
    let (activity_id, activity_name) = activity(&action);
    let (type_id, type_name) = entity_type(&target_type);
    let mut entity = json!({"type": target_type, "type_id": type_id});
    let _ = type_name;
    if let Some(id) = r.s("target_id") {
        entity["uid"] = json!(id);
    }
    let new_state = r.get("new_state").cloned();
    let name = new_state.as_ref().and_then(|n| {
        ["name", "device_name", "email", "title"]
            .iter()
            .find_map(|k| n.get(*k).and_then(Value::as_str))
            .map(str::to_string)
    });
    entity["name"] = json!(
        r.s("target_component")
            .or(name)
            .or_else(|| r.s("target_id"))
            .unwrap_or_else(|| target_type.clone())
    );
    r.skip(&["id", "occurred_at", "actor_id", "actor_type"]);
    let base = Base {
        class_uid: 3004,
        class_name: "Entity Management",
        category_uid: 3,
        category_name: "Identity & Access Management",
        activity_id,
        activity_name,
        severity_id: severity_id(e.severity),
        time: e.occurred_at,
        log_name: e.stream,
        uid,
        message: Some(e.summary.to_string()),
    };
    let mut m = base.build(ctx);
    m.insert("entity".into(), entity.clone());
    if let Some(ns) = new_state.filter(|n| n.as_object().is_some_and(|o| !o.is_empty())) {
        let mut res = entity;
        res["data"] = ns;
        m.insert("entity_result".into(), res);
    }
    if let Some(a) = actor(e.raw) {
        m.insert("actor".into(), a);
    }
    if let Some(d) = e.device_id {
        m.insert(
            "device".into(),
            json!({"uid": d, "type_id": 0, "type": "Unknown"}),
        );
    }
    m.insert("status_id".into(), json!(1));
    m.insert("status".into(), json!("Success"));
    m.insert("activity_name".into(), json!(activity_name));
    let mut u = r.unmapped().unwrap_or_else(|| json!({}));
    u["event_type"] = json!(e.event_type);
    u["event_uid"] = json!(e.uid);
    finish(m, Some(u))
}

pub(crate) fn from_change(ctx: &Context<'_>, e: &EventRecord<'_>, uid: &str) -> Value {
    let table = e
        .raw
        .get("table")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let key = e.raw.get("key").and_then(Value::as_str).unwrap_or_default();
    let (activity_id, activity_name) = match e.event_type {
        "device_enrolled" => (6, "Enroll"),
        "device_removed" => (7, "Unenroll"),
        "user_added" => (1, "Create"),
        "user_removed" => (4, "Delete"),
        "os_updated" | "blueprint_changed" | "user_reassigned" => (3, "Update"),
        _ => (99, "Other"),
    };
    let (type_id, type_name) = match table {
        "devices" | "device_details" | "ade_devices" => (1, "Device"),
        "users" => (2, "User"),
        "blueprints" | "compliance" => (5, "Policy"),
        "tags" => (3, "Group"),
        _ => (99, "Other"),
    };
    let name = e.related.and_then(|r| {
        ["device_name", "email", "name"]
            .iter()
            .find_map(|k| r.get(*k).and_then(Value::as_str))
            .map(str::to_string)
    });
    let mut entity = json!({
        "uid": key,
        "type_id": type_id,
        "type": type_name,
        "name": name.unwrap_or_else(|| key.to_string()),
    });
    if type_id == 1 {
        entity["device"] =
            json!({"uid": e.device_id.unwrap_or(key), "type_id": 0, "type": "Unknown"});
    }
    let base = Base {
        class_uid: 3004,
        class_name: "Entity Management",
        category_uid: 3,
        category_name: "Identity & Access Management",
        activity_id,
        activity_name,
        severity_id: severity_id(e.severity),
        time: e.occurred_at,
        log_name: e.stream,
        uid,
        message: Some(e.summary.to_string()),
    };
    let mut m = base.build(ctx);
    m.insert("entity".into(), entity.clone());
    if let Some(rel) = e.related {
        let mut res = entity;
        res["data"] = rel.clone();
        m.insert("entity_result".into(), res);
    }
    if let Some(d) = e.device_id {
        m.insert(
            "device".into(),
            json!({"uid": d, "type_id": 0, "type": "Unknown"}),
        );
    }
    let unmapped = json!({"change": e.event_type, "event_uid": e.uid, "table": table});
    finish(m, Some(unmapped))
}
