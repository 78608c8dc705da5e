//! Device Config State (5002, Discovery): compliance snapshots (per-device parameters and
//! library-item statuses) and Prism posture rows (FileVault, firewall, Gatekeeper, …).

use serde_json::{Value, json};

use crate::common::{Base, Raw, device_ref, finish, unknown_device};
use crate::software_inventory::prism_device as device_of_prism_row;
use crate::{Context, InventoryRecord};

/// Whether a Kandji compliance status meets its criteria.
pub(crate) fn passes(status: &str) -> Option<bool> {
    match status.to_ascii_uppercase().as_str() {
        "PASS" | "SUCCESS" | "COMPLIANT" | "REMEDIATED" | "TRUE" => Some(true),
        "ERROR" | "FAILED" | "FAIL" | "INCOMPATIBLE" | "WARNING" | "NONCOMPLIANT" | "FALSE" => {
            Some(false)
        }
        _ => None,
    }
}

pub(crate) fn from_row(ctx: &Context<'_>, row: &InventoryRecord<'_>, uid: &str) -> Value {
    let r = Raw::new(row.raw);
    let (device, assessment) = if row.table == "compliance" {
        // key: device|kind|item_id
        let kind = row.key.split('|').nth(1).unwrap_or("item");
        let status = r.s("status").unwrap_or_default();
        let mut a = json!({
            "name": r.s("name").unwrap_or_else(|| kind.to_string()),
            "meets_criteria": passes(&status).unwrap_or(false),
            "category": kind,
        });
        if let Some(id) = r.s("item_id") {
            a["uid"] = json!(id);
        }
        if let Some(log) = r.s("log") {
            a["desc"] = json!(log);
        }
        r.skip(&["last_audit_log"]);
        let device = device_ref(row.device_id, None).unwrap_or_else(unknown_device);
        (device, a)
    } else {
        // device_details: key category|device; the row is one Prism category for a device.
        let category = row.key.split('|').next().unwrap_or("posture");
        let device = device_of_prism_row(&r, row.device_id);
        let enabled = r.b("status");
        let mut a = json!({
            "name": category,
            "category": "posture",
            "meets_criteria": enabled.unwrap_or(false),
        });
        if let Some(v) = r.s("version") {
            a["desc"] = json!(format!("{category} version {v}"));
        }
        (device, a)
    };
    let time = r.t("reported_at").unwrap_or(row.observed_at);
    let base = Base {
        class_uid: 5002,
        class_name: "Device Config State",
        category_uid: 5,
        category_name: "Discovery",
        activity_id: 2,
        activity_name: "Collect",
        severity_id: 1,
        time,
        log_name: row.table,
        uid,
        message: None,
    };
    let mut m = base.build(ctx);
    m.insert("device".into(), device);
    m.insert("assessments".into(), json!([assessment]));
    let mut unmapped = r.unmapped();
    if let Some(at) = row.removed_at {
        let u = unmapped.get_or_insert_with(|| json!({}));
        u["removed_at"] = json!(at);
    }
    finish(m, unmapped)
}
