//! Kandji/Iru records → OCSF 1.8.0 events.
//!
//! Pure functions: a record as the collector stores it (raw Kandji JSON plus the store's
//! context) goes in, one OCSF event as JSON comes out. One module per OCSF class.
//!
//! | Kandji record | OCSF class |
//! |---|---|
//! | `devices` rows | Device Inventory Info 5001 |
//! | `apps` rows | Software Inventory Info 5020 |
//! | `compliance` and `device_details` rows (snapshots) | Device Config State 5002 |
//! | `users` rows | User Inventory Info 5003 |
//! | `vuln_detections` rows, `vulnerability_detections` events | Vulnerability Finding 2002 |
//! | `threats`, `behavioral_detections` events | Detection Finding 2004 |
//! | change `compliance_status_changed` | Compliance Finding 2003 |
//! | change `filevault_toggled`, `firewall_toggled`, `gatekeeper_toggled`, `posture_changed` | Device Config State Change 5019 |
//! | change `device_enrolled` / `device_removed` | Entity Management 3004, Enroll (6) / Unenroll (7) |
//! | change `os_updated`, `blueprint_changed`, `user_reassigned` | Entity Management 3004, Update (3), entity = the device |
//! | change `user_added` / `user_removed` | Entity Management 3004, Create (1) / Delete (4), entity = the user |
//! | change `app_installed` / `app_removed` / `app_updated` | Software Inventory Info 5020, Log (1), `unmapped.change` says which |
//! | change `vulnerability_detected` / `vulnerability_resolved` | Vulnerability Finding 2002, Create (1) / Close (3) |
//! | audit events on admins and API tokens | Account Change 3001 |
//! | audit events on `file_detection` (EDR) | Detection Finding 2004 |
//! | audit events on vulnerabilities | Vulnerability Finding 2002 |
//! | other audit events | Entity Management 3004 |
//! | the collector's `health` records (state changes) | Application Error 6008 |
//!
//! `blueprints`, `tags` and `ade_devices` rows have no OCSF class: they are dimensions, kept raw.
//!
//! Every event carries the base event's required attributes (`class_uid`, `category_uid`,
//! `activity_id`, `type_uid`, `severity_id`, `time`, `metadata` with `product`, `version`,
//! `tenant_uid` and a stable `uid`). Raw fields with no OCSF attribute land in `unmapped`.

mod account_change;
mod application_error;
mod common;
mod compliance_finding;
mod config_state;
mod config_state_change;
mod detection_finding;
mod device_inventory;
mod entity_management;
mod software_inventory;
mod user_inventory;
mod vulnerability_finding;

pub use common::{inventory_uid, parse_time, record_uid, severity_id};

use serde_json::Value;

/// The OCSF schema version events are written against.
pub const OCSF_VERSION: &str = "1.8.0";

/// Where a record comes from.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The collector's source name.
    pub source: &'a str,
    /// The tenant (Kandji subdomain), `metadata.tenant_uid`.
    pub tenant_uid: &'a str,
    /// The collector's version, `metadata.product.version`.
    pub collector_version: &'a str,
}

/// An inventory row as the store holds it.
#[derive(Debug, Clone, Copy)]
pub struct InventoryRecord<'a> {
    pub table: &'a str,
    pub key: &'a str,
    pub device_id: Option<&'a str>,
    /// The row's raw Kandji JSON.
    pub raw: &'a Value,
    /// The store's hash of `raw`: a new version of the row has a new hash.
    pub hash: i64,
    /// When the row was last written (ms since the epoch).
    pub observed_at: i64,
    /// When the row was marked removed, if it was.
    pub removed_at: Option<i64>,
}

/// An audit, security or change event as the store holds it.
#[derive(Debug, Clone, Copy)]
pub struct EventRecord<'a> {
    pub stream: &'a str,
    pub category: &'a str,
    pub event_type: &'a str,
    pub uid: &'a str,
    pub occurred_at: i64,
    pub device_id: Option<&'a str>,
    pub user_id: Option<&'a str>,
    pub severity: Option<&'a str>,
    pub summary: &'a str,
    pub raw: &'a Value,
    pub hash: i64,
    /// For change events: the current raw JSON of the row the change is about, if known.
    pub related: Option<&'a Value>,
}

#[derive(Debug, Clone, Copy)]
pub enum Record<'a> {
    Inventory(InventoryRecord<'a>),
    Event(EventRecord<'a>),
}

impl Record<'_> {
    /// A stable id for this version of the record: the same record delivered twice has the
    /// same id (receivers dedupe on it); a changed record has a new one.
    pub fn uid(&self, ctx: &Context<'_>) -> String {
        match self {
            Record::Inventory(r) => inventory_uid(ctx.source, r.table, r.key, r.hash, r.removed_at),
            Record::Event(e) => record_uid(ctx.source, e.stream, e.uid, e.hash),
        }
    }
}

/// The OCSF event for a record, or `None` for records with no OCSF class (dimensions).
pub fn map(ctx: &Context<'_>, record: &Record<'_>) -> Option<Value> {
    let uid = record.uid(ctx);
    match record {
        Record::Inventory(r) => match r.table {
            "devices" => Some(device_inventory::from_row(ctx, r, &uid)),
            "apps" => Some(software_inventory::from_row(ctx, r, &uid)),
            "compliance" | "device_details" => Some(config_state::from_row(ctx, r, &uid)),
            "users" => Some(user_inventory::from_row(ctx, r, &uid)),
            "vuln_detections" => Some(vulnerability_finding::from_row(ctx, r, &uid)),
            _ => None,
        },
        Record::Event(e) => Some(map_event(ctx, e, &uid)),
    }
}

fn map_event(ctx: &Context<'_>, e: &EventRecord<'_>, uid: &str) -> Value {
    match e.stream {
        "health" => application_error::from_health(ctx, e, uid),
        "threats" | "behavioral_detections" => detection_finding::from_event(ctx, e, uid),
        "vulnerability_detections" => vulnerability_finding::from_event(ctx, e, uid),
        "audit_events" => {
            let target = e
                .raw
                .get("target_type")
                .and_then(Value::as_str)
                .unwrap_or_default();
            match target {
                "file_detection" | "behavioral_detection" | "threat" => {
                    detection_finding::from_event(ctx, e, uid)
                }
                t if t.starts_with("vulnerabilit") => {
                    vulnerability_finding::from_event(ctx, e, uid)
                }
                t if account_change::is_account(t) => account_change::from_event(ctx, e, uid),
                _ => entity_management::from_audit(ctx, e, uid),
            }
        }
        _ => map_change(ctx, e, uid),
    }
}

fn map_change(ctx: &Context<'_>, e: &EventRecord<'_>, uid: &str) -> Value {
    match e.event_type {
        "compliance_status_changed" => compliance_finding::from_change(ctx, e, uid),
        "filevault_toggled" | "firewall_toggled" | "gatekeeper_toggled" | "posture_changed" => {
            config_state_change::from_change(ctx, e, uid)
        }
        "app_installed" | "app_removed" | "app_updated" => {
            software_inventory::from_change(ctx, e, uid)
        }
        "vulnerability_detected" | "vulnerability_resolved" => {
            vulnerability_finding::from_event(ctx, e, uid)
        }
        _ => entity_management::from_change(ctx, e, uid),
    }
}
