//! Rendering of event-like records: threats, behavioral and vulnerability detections, audit events.

use serde_json::{Value, json};

use super::{model, os};
use crate::catalog::{self, Platform};
use crate::derive;
use crate::model::{AuditEvent, AuditKind, Behavioral, Tenant, Threat, VulnDet};
use crate::util::{hs, ts_naive_space, ts_naive_t, ts_z, uuid_of, uuid_u128};

pub fn threat_item(t: &Tenant, th: &Threat) -> Value {
    let (name, class) = catalog::THREATS[usize::from(th.kind) % catalog::THREATS.len()];
    let status = ["QUARANTINED", "NOT_QUARANTINED", "RELEASED"][usize::from(th.status % 3)];
    let d = t.any_device(th.device);
    let dname = d.map(|d| t.device_name(d)).unwrap_or_default();
    let platform = d.map(|d| d.platform).unwrap_or(Platform::Mac);
    let file_hash = format!(
        "{:016x}{:016x}{:016x}{:016x}",
        hs("fh", &[u64::from(th.kind), u64::from(th.file_no)]),
        hs("fh2", &[u64::from(th.kind)]),
        hs("fh3", &[u64::from(th.file_no)]),
        hs("fh4", &[u64::from(th.kind), 4])
    );
    json!({
        "threat_name": name,
        "classification": class,
        "status": status,
        "process_name": (["chmod", "curl", "bash", "Finder"][usize::from(th.file_no % 4)]),
        "process_owner": if th.file_no.is_multiple_of(2) { "root" } else { "user" },
        "device_name": dname,
        "device_id": t.device_id(th.device),
        "device_serial_number": t.serial(th.device, platform),
        "detection_date": ts_naive_t(th.ts),
        "date_of_quarantine": if th.status == 1 { String::new() } else { ts_naive_t(th.ts + 1_187_000) },
        "date_of_release": if th.status == 2 { ts_naive_space(th.ts + 86_400_000_000) } else { String::new() },
        "released_by": if th.status == 2 { format!("admin@{}.io", t.name) } else { String::new() },
        "release_note": if th.status == 2 { "False positive" } else { "" },
        "file_path": format!("/Users/Shared/{}/{}_{}", name.split(' ').next().unwrap_or(name).to_lowercase(), name.split(' ').next().unwrap_or(name).to_lowercase(), th.file_no),
        "file_hash": file_hash,
        "bundle_path": "",
        "blueprint_id": t.blueprint_id(th.blueprint),
        "blueprint_name": t.blueprint_name(th.blueprint),
        "library_item_id": uuid_of(t.library_item_uuid(0)),
        "library_item_name": catalog::LIBRARY_ITEMS[0].0,
        "malware_posture": "protect",
        "pup_posture": "protect",
    })
}

pub fn behavioral_item(t: &Tenant, b: &Behavioral) -> Value {
    let (tid, desc, class) = catalog::BD_RULES[usize::from(b.rule) % catalog::BD_RULES.len()];
    let d = t.any_device(b.device);
    let platform = d.map(|d| d.platform).unwrap_or(Platform::Mac);
    let proc_ = |n: &str, path: &str, pid: u64| json!({"name": n, "command_line": format!("{n} -c x"), "image_path": path, "pid": pid, "owner": "root", "sha256": format!("{:016x}{:016x}{:016x}{:016x}", hs(n, &[1]), hs(n, &[2]), hs(n, &[3]), hs(n, &[4]))});
    let mut id = uuid_of(b.id);
    id.make_ascii_uppercase();
    json!({
        "id": id,
        "threat_id": tid,
        "rule_version": 2,
        "description": desc,
        "classification": class,
        "informational_tags": if class == "suspicious" { json!(["discovery"]) } else { json!([]) },
        "malware_family": if class == "malicious" { json!(["Atomic"]) } else { json!([]) },
        "detection_date": crate::util::ts_plus(b.ts),
        "threat_status": (["detected", "informational", "blocked"][usize::from(b.status % 3)]),
        "device_info": {"id": t.device_id(b.device), "name": d.map(|d| t.device_name(d)).unwrap_or_default(), "serial_number": t.serial(b.device, platform)},
        "parent_process": proc_("zsh", "/bin/zsh", 7000 + u64::from(b.rule)),
        "target_process": proc_("curl", "/usr/bin/curl", 7700 + u64::from(b.rule)),
        "library_item": {"id": uuid_of(t.library_item_uuid(0)), "name": "Avert", "mal_posture_mode": "protect"},
        "blueprint": {"id": t.blueprint_id(b.blueprint), "name": t.blueprint_name(b.blueprint)},
    })
}

pub fn cve(i: u8) -> catalog::Cve {
    let table = catalog::cve_table();
    table[usize::from(i) % table.len()]
}

pub fn cve_published(i: u8) -> i64 {
    1_700_000_000_000_000 + (hs("cvepub", &[u64::from(i)]) % 40_000_000_000_000) as i64
}

/// A vulnerability detection with the REAL field names.
pub fn vuln_item(t: &Tenant, v: &VulnDet) -> Value {
    let (id, sw, bundle, sev, score, _) = cve(v.cve);
    let d = t.any_device(v.device);
    let (dname, platform, model_name, osv) = match d {
        Some(d) => (t.device_name(d), d.platform, model(d).name, os(d).version),
        None => (String::new(), Platform::Mac, "", ""),
    };
    let pubd = cve_published(v.cve);
    json!({
        "device_id": t.device_id(v.device),
        "device_name": dname,
        "device_serial_number": t.serial(v.device, platform),
        "device_model": model_name,
        "device_os_version": osv,
        "blueprint_id": t.blueprint_id(v.blueprint),
        "blueprint_name": t.blueprint_name(v.blueprint),
        "name": sw,
        "version": derive::app_version(usize::from(v.cve), 0),
        "path": format!("/Applications/{sw}.app"),
        "bundle_id": bundle,
        "cve_id": id,
        "description": format!("{id}: a flaw in {sw} allows code execution."),
        "cve_link": format!("https://nvd.nist.gov/vuln/detail/{id}"),
        "cvss_score": score,
        "severity": sev,
        "detection_datetime": ts_z(v.ts),
        "cve_published_at": ts_naive_t(pubd),
        "cve_modified_at": ts_naive_t(pubd + 86_400_000_000),
    })
}

/// `/audit/events` item.
pub fn audit_item(t: &Tenant, e: &AuditEvent) -> Value {
    let id = ulid::Ulid(e.ulid).to_string();
    let occurred = ts_z(e.ts);
    let admin = uuid_of(uuid_u128("admin", &[t.seed]));
    let dev = |idx: u32| -> (String, String) {
        let name = t
            .any_device(idx)
            .map(|d| t.device_name(d))
            .unwrap_or_default();
        (t.device_id(idx), name)
    };
    if e.kind == AuditKind::Scripted
        && let Some(s) = t.scripted_audit.get(e.target as usize)
    {
        return json!({
            "id": id,
            "action": s.action,
            "occurred_at": occurred,
            "actor_id": s.actor_id,
            "actor_type": s.actor_type,
            "target_id": s.target_id,
            "target_type": s.target_type,
            "target_component": s.target_component,
            "new_state": s.new_state,
            "metadata": s.metadata,
        });
    }
    let (action, actor_id, actor_type, target_id, target_type, component, new_state, metadata) =
        match e.kind {
            AuditKind::DeviceEnrolled { blueprint: bp } => {
                let (id, name) = dev(e.target);
                (
                    "create",
                    id.clone(),
                    "device",
                    id,
                    "device",
                    "device",
                    json!({"device_name": name, "blueprint_id": t.blueprint_id(bp), "blueprint_name": t.blueprint_name(bp)}),
                    json!({"event": "device_enrollment"}),
                )
            }
            AuditKind::DeviceDeleted => {
                let (id, name) = dev(e.target);
                (
                    "delete",
                    admin.clone(),
                    "user",
                    id,
                    "device",
                    "device",
                    json!({"device_name": name}),
                    json!({"event": "device_deleted"}),
                )
            }
            AuditKind::DeviceBlueprintChanged { from, to } => {
                let (id, name) = dev(e.target);
                (
                    "update",
                    admin.clone(),
                    "user",
                    id,
                    "device",
                    "blueprint",
                    json!({"device_name": name, "blueprint_id": t.blueprint_id(to), "previous_blueprint_id": t.blueprint_id(from)}),
                    json!({}),
                )
            }
            AuditKind::BlueprintUpdated => {
                let b = e.target as u16;
                (
                    "update",
                    admin.clone(),
                    "user",
                    t.blueprint_id(b),
                    "blueprint",
                    "library_items",
                    json!({"name": t.blueprint_name(b), "library_items_added": [], "library_items_removed": []}),
                    json!({}),
                )
            }
            AuditKind::LibraryItemUpdated => {
                let i = e.target as u16;
                (
                    "update",
                    admin.clone(),
                    "user",
                    uuid_of(t.library_item_uuid(i)),
                    "library_item",
                    "",
                    json!({"name": catalog::LIBRARY_ITEMS[usize::from(i) % catalog::LIBRARY_ITEMS.len()].0}),
                    json!({}),
                )
            }
            // A scripted event always has its entry (rendered above); never reached.
            AuditKind::Scripted => (
                "update",
                admin.clone(),
                "user",
                String::new(),
                "unknown",
                "",
                json!({}),
                json!({}),
            ),
            AuditKind::ApiTokenUpdated => (
                "update",
                admin.clone(),
                "user",
                uuid_of(uuid_u128("token", &[t.seed])),
                "api_token",
                "",
                json!({"name": "collector", "permissions": [{"path": "/api/v1/devices", "http_method": "GET"}, {"path": "/api/v1/audit/events", "http_method": "GET"}]}),
                json!({}),
            ),
            AuditKind::UserUpdated => {
                let u = e.target.min(t.users.len().saturating_sub(1) as u32);
                (
                    "update",
                    "directory-sync".to_owned(),
                    "kandji",
                    uuid_of(t.user_uuid(u)),
                    "user",
                    "",
                    json!({"email": t.user_email(u)}),
                    json!({}),
                )
            }
            AuditKind::BlueprintCreated | AuditKind::BlueprintParamsUpdated => {
                let b = e.target as u16;
                let created = e.kind == AuditKind::BlueprintCreated;
                (
                    if created { "create" } else { "update" },
                    admin.clone(),
                    "user",
                    t.blueprint_id(b),
                    "blueprint",
                    if created { "" } else { "parameters" },
                    if created {
                        json!({"name": t.blueprint_name(b), "description": "", "type": "classic"})
                    } else {
                        json!({"name": t.blueprint_name(b), "parameters": []})
                    },
                    if created {
                        json!({"source": null, "source_id": null})
                    } else {
                        json!({})
                    },
                )
            }
            AuditKind::BlueprintDeleted => (
                "delete",
                admin.clone(),
                "user",
                uuid_of(uuid_u128("gonebp", &[t.seed, u64::from(e.target)])),
                "blueprint",
                "",
                json!({"name": format!("Retired Blueprint {}", e.target)}),
                json!({}),
            ),
            AuditKind::LibraryItemCreated | AuditKind::LibraryItemDeleted => {
                let i = e.target as u16;
                let li = catalog::LIBRARY_ITEMS[usize::from(i) % catalog::LIBRARY_ITEMS.len()];
                let created = e.kind == AuditKind::LibraryItemCreated;
                (
                    if created { "create" } else { "delete" },
                    admin.clone(),
                    "user",
                    uuid_of(t.library_item_uuid(i)),
                    "library_item",
                    "",
                    json!({"name": li.0, "type": li.1, "active": created}),
                    if created {
                        json!({"source": null, "source_id": null})
                    } else {
                        json!({})
                    },
                )
            }
            AuditKind::SecretViewed { secret } => {
                let (id, name) = dev(e.target);
                let what = [
                    "filevault_recovery_key",
                    "recovery_lock_password",
                    "activation_lock_bypass_code",
                ][usize::from(secret) % 3];
                (
                    "view",
                    admin.clone(),
                    "user",
                    id,
                    "device",
                    what,
                    json!({"device_name": name}),
                    json!({}),
                )
            }
            AuditKind::MdmRemoved => {
                let (id, name) = dev(e.target);
                (
                    "delete",
                    id.clone(),
                    "device",
                    id,
                    "device",
                    "mdm_profile",
                    json!({"device_name": name}),
                    json!({"event": "mdm_removed"}),
                )
            }
            AuditKind::AdminCreated | AuditKind::AdminDeleted | AuditKind::TenantOwnerUpdated => {
                let who = uuid_of(uuid_u128("adminuser", &[t.seed, u64::from(e.target)]));
                let email = format!("admin{}@{}.io", e.target, t.name);
                let (action, component) = match e.kind {
                    AuditKind::AdminCreated => ("create", ""),
                    AuditKind::AdminDeleted => ("delete", ""),
                    _ => ("update", "tenant_owner"),
                };
                (
                    action,
                    admin.clone(),
                    "user",
                    who,
                    "admin_user",
                    component,
                    json!({"email": email}),
                    json!({}),
                )
            }
            AuditKind::ApiTokenCreated | AuditKind::ApiTokenDeleted => {
                let created = e.kind == AuditKind::ApiTokenCreated;
                (
                    if created { "create" } else { "delete" },
                    admin.clone(),
                    "user",
                    uuid_of(uuid_u128("token", &[t.seed, u64::from(e.target) + 1])),
                    "api_token",
                    "",
                    json!({"label": format!("integration {}", e.target), "description": null, "permissions": [{"http_method": "GET", "path": "/api/v1/devices"}]}),
                    if created {
                        json!({"source": null, "source_id": null})
                    } else {
                        json!({})
                    },
                )
            }
            AuditKind::DirectoryUserDeleted => {
                let u = e.target.min(t.users.len().saturating_sub(1) as u32);
                (
                    "delete",
                    "directory-sync".to_owned(),
                    "kandji",
                    uuid_of(t.user_uuid(u)),
                    "user",
                    "",
                    json!({"email": t.user_email(u)}),
                    json!({"source": "office365", "source_id": format!("{:x}", hs("dirsrc", &[t.seed, u64::from(u)]))}),
                )
            }
            AuditKind::EdrRemediated { threat } | AuditKind::EdrAdminAction { threat } => {
                let th = t.threats.get(threat as usize);
                let row = th.map(|th| threat_item(t, th)).unwrap_or(Value::Null);
                let by_admin = matches!(e.kind, AuditKind::EdrAdminAction { .. });
                (
                    if by_admin { "release" } else { "remediate" },
                    if by_admin {
                        admin.clone()
                    } else {
                        "EDR".to_owned()
                    },
                    if by_admin { "user" } else { "kandji" },
                    row["file_hash"].as_str().unwrap_or_default().to_owned(),
                    "file_detection",
                    "",
                    json!({"threat_status": if by_admin { "released" } else { "quarantined" }, "classification": row["classification"]}),
                    json!({"threat_id": row["file_hash"], "device_id": row["device_id"], "device_name": row["device_name"], "threat_name": row["threat_name"]}),
                )
            }
            AuditKind::EdrDetection { threat } => {
                let th = t.threats.get(threat as usize);
                let row = th.map(|th| threat_item(t, th)).unwrap_or(Value::Null);
                (
                    "detect",
                    "EDR".to_owned(),
                    "kandji",
                    row["file_hash"].as_str().unwrap_or_default().to_owned(),
                    "file_detection",
                    "",
                    json!({"threat_status": row["status"], "classification": row["classification"]}),
                    json!({"threat_id": row["file_hash"], "classification": row["classification"], "threat_status": row["status"], "device_id": row["device_id"], "device_name": row["device_name"], "file_path": row["file_path"], "threat_name": row["threat_name"]}),
                )
            }
            AuditKind::VulnDetection { vuln } | AuditKind::VulnRemediated { vuln } => {
                let v = t.vulns.get(vuln as usize);
                let (cid, _, _, sev, score, _) =
                    v.map(|v| cve(v.cve)).unwrap_or(("", "", "", "", 0.0, 0));
                (
                    if matches!(e.kind, AuditKind::VulnRemediated { .. }) {
                        "remediate"
                    } else {
                        "detect"
                    },
                    "VULNERABILITY_MANAGEMENT".to_owned(),
                    "kandji",
                    cid.to_owned(),
                    "vulnerability",
                    "",
                    json!({"vulnerability": {"id": cid, "severity": sev, "score": score}, "device": {"id": t.device_id(e.target)}}),
                    json!({"device_id": t.device_id(e.target)}),
                )
            }
        };
    json!({
        "id": id,
        "action": action,
        "occurred_at": occurred,
        "actor_id": actor_id,
        "actor_type": actor_type,
        "target_id": target_id,
        "target_type": target_type,
        "target_component": component,
        "new_state": new_state,
        "metadata": metadata,
    })
}
