//! Device Config State Change (5019, Discovery): posture toggles derived by diffing Prism rows
//! (`filevault_toggled`, `firewall_toggled`, `gatekeeper_toggled`, `posture_changed`).

use serde_json::{Value, json};

use crate::common::{Base, Raw, device_ref, finish, severity_id, unknown_device};
use crate::software_inventory::prism_device as device_of_prism_row;
use crate::{Context, EventRecord};

pub(crate) fn from_change(ctx: &Context<'_>, e: &EventRecord<'_>, uid: &str) -> Value {
    let key = e.raw.get("key").and_then(Value::as_str).unwrap_or_default();
    let category = key.split('|').next().unwrap_or("posture");
    let (device, enabled, unmapped) = match e.related {
        Some(rel) => {
            let r = Raw::new(rel);
            let d = device_of_prism_row(&r, e.device_id);
            let en = r.b("status");
            (d, en, r.unmapped())
        }
        None => (
            device_ref(e.device_id, None).unwrap_or_else(unknown_device),
            None,
            None,
        ),
    };
    let (state_id, state) = match enabled {
        Some(true) => (2, "Enabled"),
        Some(false) => (1, "Disabled"),
        None => (99, "Other"),
    };
    let base = Base {
        class_uid: 5019,
        class_name: "Device Config State Change",
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
    m.insert("device".into(), device);
    m.insert("state_id".into(), json!(state_id));
    m.insert("state".into(), json!(state));
    let mut u = unmapped.unwrap_or_else(|| json!({}));
    u["change"] = json!(e.event_type);
    u["setting"] = json!(category);
    u["event_uid"] = json!(e.uid);
    finish(m, Some(u))
}
