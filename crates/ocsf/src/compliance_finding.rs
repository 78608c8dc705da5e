//! Compliance Finding (2003, Findings): a compliance item whose status flipped
//! (`compliance_status_changed`). Created when it starts failing, Closed when it passes again,
//! Updated otherwise. `finding_info.uid` is stable per (device, item).

use serde_json::{Value, json};

use crate::common::{Base, Raw, device_ref, finish, record_uid, severity_id, unknown_device};
use crate::config_state::passes;
use crate::{Context, EventRecord};

pub(crate) fn from_change(ctx: &Context<'_>, e: &EventRecord<'_>, uid: &str) -> Value {
    let key = e.raw.get("key").and_then(Value::as_str).unwrap_or(e.uid);
    let kind = key.split('|').nth(1).unwrap_or("item");
    let rel = e.related.unwrap_or(&Value::Null);
    let r = Raw::new(rel);
    let status = r.s("status").unwrap_or_default();
    let pass = passes(&status);
    let (status_id, status_name) = match pass {
        Some(true) => (1, "Pass"),
        Some(false) if status.eq_ignore_ascii_case("WARNING") => (2, "Warning"),
        Some(false) => (3, "Fail"),
        None => (0, "Unknown"),
    };
    let (activity_id, activity_name, finding_status) = match pass {
        Some(true) => (3, "Close", (4, "Resolved")),
        Some(false) => (1, "Create", (1, "New")),
        None => (2, "Update", (99, "Other")),
    };
    let name = r.s("name").unwrap_or_else(|| kind.to_string());
    let mut compliance = json!({
        "control": name,
        "status_id": status_id,
        "status": status_name,
        "standards": ["Kandji Blueprint"],
    });
    if !status.is_empty() {
        compliance["status_detail"] = json!(status);
    }
    if let Some(id) = r.s("item_id") {
        compliance["control_parameters"] = json!([{"name": "item_id", "value": id}]);
    }
    r.skip(&["last_audit_log"]);
    let base = Base {
        class_uid: 2003,
        class_name: "Compliance Finding",
        category_uid: 2,
        category_name: "Findings",
        activity_id,
        activity_name,
        severity_id: severity_id(e.severity),
        time: e.occurred_at,
        log_name: e.stream,
        uid,
        message: Some(e.summary.to_string()),
    };
    let mut m = base.build(ctx);
    m.insert("compliance".into(), compliance);
    m.insert(
        "finding_info".into(),
        json!({
            "uid": record_uid(ctx.source, "compliance_finding", key, 0),
            "title": format!("{kind} {name}"),
            "desc": e.summary,
            "types": [kind],
        }),
    );
    m.insert("status_id".into(), json!(finding_status.0));
    m.insert("status".into(), json!(finding_status.1));
    m.insert(
        "device".into(),
        device_ref(e.device_id, None).unwrap_or_else(unknown_device),
    );
    let mut unmapped = r.unmapped().unwrap_or_else(|| json!({}));
    unmapped["change"] = json!(e.event_type);
    unmapped["event_uid"] = json!(e.uid);
    finish(m, Some(unmapped))
}
