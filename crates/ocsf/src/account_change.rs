//! Account Change (3001, IAM): audit events on Kandji admin users and API tokens.

use serde_json::{Value, json};

use crate::common::{Base, Raw, finish, severity_id};
use crate::{Context, EventRecord};

/// Whether an audit target is an account (admin user or API token).
pub(crate) fn is_account(target_type: &str) -> bool {
    matches!(
        target_type,
        "api_token" | "api_tokens" | "admin" | "admin_user" | "tenant_user" | "access_token"
    )
}

fn activity(action: &str) -> (i64, &'static str) {
    match action.to_ascii_lowercase().as_str() {
        "create" | "add" | "invite" => (1, "Create"),
        "enable" | "activate" => (2, "Enable"),
        "password_change" => (3, "Password Change"),
        "password_reset" => (4, "Password Reset"),
        "disable" | "deactivate" | "revoke" => (5, "Disable"),
        "delete" | "remove" => (6, "Delete"),
        "lock" => (9, "Lock"),
        "unlock" => (12, "Unlock"),
        _ => (99, "Other"),
    }
}

pub(crate) fn from_event(ctx: &Context<'_>, e: &EventRecord<'_>, uid: &str) -> Value {
    let r = Raw::new(e.raw);
    let action = r.s("action").unwrap_or_default();
    let target_type = r.s("target_type").unwrap_or_default();
    let (activity_id, activity_name) = activity(&action);
    let new_state = r.get("new_state").cloned().unwrap_or(Value::Null);
    let mut user = json!({
        "uid": r.s("target_id").unwrap_or_else(|| "unknown".into()),
        "type_id": if target_type == "api_token" || target_type == "access_token" { 3 } else { 2 },
        "type": if target_type == "api_token" || target_type == "access_token" { "System" } else { "Admin" },
    });
    if let Some(n) = ["name", "email", "title"]
        .iter()
        .find_map(|k| new_state.get(*k).and_then(Value::as_str))
    {
        user["name"] = json!(n);
    }
    if let Some(em) = new_state.get("email").and_then(Value::as_str) {
        user["email_addr"] = json!(em);
    }
    r.skip(&["id", "occurred_at", "target_component"]);
    let base = Base {
        class_uid: 3001,
        class_name: "Account Change",
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
    m.insert("user".into(), user);
    if let Some(id) = r.s("actor_id") {
        let kind = r.s("actor_type").unwrap_or_default();
        m.insert(
            "actor".into(),
            json!({"user": {"uid": id, "name": id, "type": kind}}),
        );
    }
    m.insert("status_id".into(), json!(1));
    m.insert("status".into(), json!("Success"));
    let mut u = r.unmapped().unwrap_or_else(|| json!({}));
    if !new_state.is_null() {
        u["new_state"] = new_state;
    }
    u["event_type"] = json!(e.event_type);
    u["action"] = json!(action);
    finish(m, Some(u))
}
