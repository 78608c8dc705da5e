//! JSON rendering of tenant objects, with the live API's quirks.

mod events;
pub use events::{audit_item, behavioral_item, cve, cve_published, threat_item, vuln_item};

use serde_json::{Value, json};

use crate::catalog::{self, Platform};
use crate::derive::{self, AppInst};
use crate::model::{Device, Tenant};
use crate::util::{
    h, hs, pick, ts_date, ts_human, ts_plus, ts_profile, ts_space, ts_space_s, ts_z, uuid_of,
    uuid_u128,
};

fn tf(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

pub fn user_obj(t: &Tenant, d: &Device) -> Value {
    match d.user {
        Some(u) => json!({
            "email": t.user_email(u),
            "name": t.user_name(u),
            "id": uuid_of(t.user_uuid(u)),
            "is_archived": t.users[u as usize].archived,
        }),
        None => json!(""),
    }
}

pub fn os(d: &Device) -> &'static catalog::OsVersion {
    let l = d.platform.os_versions();
    &l[usize::from(d.os).min(l.len() - 1)]
}

pub fn model(d: &Device) -> &'static catalog::Model {
    let l = d.platform.models();
    &l[usize::from(d.model).min(l.len() - 1)]
}

pub fn agent_version(d: &Device) -> &'static str {
    if d.agent { "5.2.1 (6102)" } else { "" }
}

/// One `/devices` list item (also `/devices/{id}` and truth `devices`).
pub fn device_item(t: &Tenant, d: &Device) -> Value {
    let o = os(d);
    let rsr = d.platform != Platform::AppleTv
        && hs("rsr", &[t.seed, u64::from(d.idx)]).is_multiple_of(10);
    let mut v = json!({
        "device_id": t.device_id(d.idx),
        "device_name": t.device_name(d),
        "model": model(d).name,
        "serial_number": t.serial(d.idx, d.platform),
        "platform": d.platform.name(),
        "os_version": o.version,
        "supplemental_build_version": if rsr { format!("{}a", o.build) } else { o.build.to_owned() },
        "supplemental_os_version_extra": if rsr { "(a)" } else { "" },
        "last_check_in": ts_z(t.last_check_in(d)),
        "user": user_obj(t, d),
        "asset_tag": t.asset_tag(d.idx),
        "blueprint_id": t.blueprint_id(d.blueprint),
        "blueprint_name": t.blueprint_name(d.blueprint),
        "mdm_enabled": true,
        "agent_installed": d.agent,
        "is_missing": d.missing,
        "is_removed": false,
        "agent_version": agent_version(d),
        "first_enrollment": ts_space(d.first_enrollment),
        "last_enrollment": ts_space(d.last_enrollment),
        "lost_mode_status": "",
        "tags": t.tag_names(d),
    });
    // With Android or Windows management on, every device carries their fields, blank where
    // they do not apply (spec: "All visible fields … will be present for all device types").
    if t.android_share > 0.0 || t.windows_share > 0.0 {
        let (api, patch, full) = match d.platform {
            Platform::Android => (o.marketing, o.build, ""),
            Platform::Windows => ("", "", o.build),
            _ => ("", "", ""),
        };
        v["api_level"] = json!(api);
        v["security_patch_level"] = json!(patch);
        v["full_software_version"] = json!(full);
    }
    if !d.platform.is_apple() {
        v["supplemental_build_version"] = json!("");
        v["supplemental_os_version_extra"] = json!("");
    }
    v
}

/// `/devices/{id}/details` of an Android device, in the spec example's shape: `general`,
/// `cellular`, `hardware`, `management`, `security`, `tags`; no `mdm`, `volumes` or
/// `hardware_overview`.
pub fn android_details(t: &Tenant, d: &Device) -> Value {
    let (seed, i) = (t.seed, u64::from(d.idx));
    let m = model(d);
    let o = os(d);
    let cap = capacity(d);
    let avail = cap * (100 - used_pct(t, d)) as f64 / 100.0;
    let mac: Vec<String> = (0..6)
        .map(|k| format!("{:02x}", hs("wmac", &[seed, i, k]) % 256))
        .collect();
    json!({
        "cellular": {"imei": format!("35{:013}", hs("imei", &[seed, i]) % 10_000_000_000_000), "meid": ""},
        "general": {
            "api_level": o.marketing,
            "asset_tag": t.asset_tag(d.idx),
            "assigned_user": match user_obj(t, d) { Value::String(_) => Value::Null, u => u },
            "blueprint_name": t.blueprint_name(d.blueprint),
            "blueprint_uuid": t.blueprint_id(d.blueprint),
            "device_id": t.device_id(d.idx),
            "device_name": t.device_name(d),
            "enterprise_device_id": format!("{:016x}", hs("edid", &[seed, i])),
            "enterprise_id": format!("LC{:08x}", hs("eid", &[seed]) % 0xFFFF_FFFF),
            "first_enrollment": ts_space(d.first_enrollment),
            "last_enrollment": ts_space(d.last_enrollment),
            "manufacturer": m.short,
            "model_name": m.name,
            "os_build": format!("{}.{}.013", m.processor, o.build.replace('-', "").get(2..8).unwrap_or("241205")),
            "os_version": o.version,
            "platform": "Android",
            "security_patch_level": o.build,
            "serial_number": t.serial(d.idx, d.platform),
        },
        "hardware": {
            "available_capacity": format!("{avail:.2}"),
            "total_capacity": format!("{cap:.2}"),
            "total_ram": m.memory,
            "wifi_mac_address": mac.join(":"),
        },
        "management": {
            "management_mode": if hs("byod", &[seed, i]).is_multiple_of(4) { "PROFILE_OWNER" } else { "DEVICE_OWNER" },
            "ownership": if hs("byod", &[seed, i]).is_multiple_of(4) { "PERSONALLY_OWNED" } else { "COMPANY_OWNED" },
        },
        "security": {
            "android_debug_bridge_enabled": null,
            "developer_mode_enabled": null,
            "device_posture": if hs("posture", &[seed, i]).is_multiple_of(12) { "POTENTIALLY_COMPROMISED" } else { "SECURE" },
            "encryption_status": "ACTIVE_PER_USER",
            "has_google_play_protect": true,
            "has_passcode": !hs("pass", &[seed, i]).is_multiple_of(15),
            "is_encrypted": true,
            "unknown_app_sources_enabled": null,
        },
        "tags": t.tag_names(d),
    })
}

/// `/devices/{id}/apps` of an Android device, in the spec example's shape.
pub fn android_apps(t: &Tenant, d: &Device) -> Value {
    let apps: Vec<Value> = catalog::ANDROID_APPS
        .iter()
        .enumerate()
        .filter(|(k, a)| a.2 == "SYSTEM_APP_FACTORY_VERSION" || hs("aapp", &[t.seed, u64::from(d.idx), *k as u64]).is_multiple_of(2))
        .map(|(k, (name, package, source, version))| {
            let hv = hs("apk", &[t.seed, k as u64]);
            json!({
                "application_source": source,
                "display_name": name,
                "installer_package_name": if *source == "INSTALLED_FROM_PLAY_STORE" { "com.android.vending" } else { "" },
                "package_name": package,
                "sha1_hashes": [format!("{:016x}{:016x}{:08x}", hv, h(&[hv, 1]), h(&[hv, 2]) as u32)],
                "sha256_hash": format!("{:016x}{:016x}{:016x}{:016x}", hv, h(&[hv, 3]), h(&[hv, 4]), h(&[hv, 5])),
                "version_name": version,
            })
        })
        .collect();
    json!({"apps": apps, "device_id": t.device_id(d.idx)})
}

fn capacity(d: &Device) -> f64 {
    model(d).capacity_gb
}

fn used_pct(t: &Tenant, d: &Device) -> u64 {
    10 + hs("used", &[t.seed, u64::from(d.idx)]) % 80
}

/// `/devices/{id}/details`.
pub fn device_details(t: &Tenant, d: &Device) -> Value {
    let seed = t.seed;
    let i = u64::from(d.idx);
    let m = model(d);
    let o = os(d);
    let mac = d.platform == Platform::Mac;
    let name = t.device_name(d);
    let cap = capacity(d);
    let pct = used_pct(t, d);
    let avail = cap * (100 - pct) as f64 / 100.0;
    let last_user = match d.user {
        Some(u) => catalog::FIRST_NAMES[usize::from(t.users[u as usize].first)].to_lowercase(),
        None => String::new(),
    };
    let boot_mins = 1 + hs("boot", &[seed, i]) % 50_000;
    let time_since_boot = match boot_mins {
        0..60 => format!("{boot_mins} minutes ago"),
        60..1440 => format!("{} hours ago", boot_mins / 60),
        1440..43200 => format!("{} days ago", boot_mins / 1440),
        _ => "1 month ago".to_owned(),
    };
    let ade = hs("ade", &[seed, i]) % 10 < 7;
    let profiles: Vec<Value> = derive::device_items(t, d)
        .into_iter()
        .filter(|&it| catalog::LIBRARY_ITEMS[usize::from(it)].2)
        .map(|it| {
            let li = catalog::LIBRARY_ITEMS[usize::from(it)];
            let id = uuid_of(t.library_item_uuid(it));
            json!({
                "name": li.0,
                "uuid": id,
                "verified": "verified",
                "identifier": format!("com.kandji.profile.custom.{id}"),
                "organization": "Kandji, Inc.",
                "payload_types": [format!("com.apple.{}", li.1.trim_start_matches("profile-"))],
                "install_date": ts_profile(derive::status_reported_at(t, d, false, it)),
            })
        })
        .collect();
    let regular_users: Vec<Value> = if mac {
        let n = 1 + hs("nusers", &[seed, i]) % 3;
        (0..n)
            .map(|k| {
                let uname = if k == 0 && !last_user.is_empty() { last_user.clone() } else { format!("user{k}") };
                json!({"username": uname, "uid": (501 + k).to_string(), "path": format!("/Users/{uname}"), "admin": if k == 0 { "Yes" } else { "No" }, "name": ""})
            })
            .collect()
    } else {
        Vec::new()
    };
    let system_users: Vec<Value> = if mac {
        vec![
            json!({"username": "_lp", "uid": "26", "path": "/var/spool/cups", "admin": "No"}),
            json!({"username": "root", "uid": "0", "path": "/var/root", "admin": "Yes"}),
        ]
    } else {
        Vec::new()
    };
    let cellular = if d.platform == Platform::IPhone {
        json!({"voice_roaming": "False", "data_roaming": "False", "cellular_technology": "GSM and CDMA", "subscriptions": []})
    } else {
        json!({})
    };
    json!({
        "general": {
            "device_id": t.device_id(d.idx),
            "device_name": name,
            "last_enrollment": ts_space(d.last_enrollment),
            "first_enrollment": ts_space(d.first_enrollment),
            "model": m.name,
            "platform": d.platform.name(),
            "os_version": o.version,
            "supplemental_build_version": o.build,
            "supplemental_os_version_extra": "",
            "system_version": if mac { format!("{} ({})", o.version, o.build) } else { String::new() },
            "boot_volume": if mac { "Macintosh HD" } else { "" },
            "time_since_boot": if mac { time_since_boot } else { String::new() },
            "last_user": last_user,
            "asset_tag": t.asset_tag(d.idx),
            "assigned_user": user_obj(t, d),
            "blueprint_name": t.blueprint_name(d.blueprint),
            "blueprint_uuid": t.blueprint_id(d.blueprint),
        },
        "mdm": {
            "mdm_enabled": "True",
            "supervised": tf(ade || !mac),
            "install_date": ts_space(d.last_enrollment - 93_000),
            "last_check_in": ts_space(t.last_check_in(d)),
            "mdm_enabled_user": if mac { json!([t.device_name(d)]) } else { json!([]) },
        },
        "activation_lock": {
            "bypass_code_failed": false,
            "user_activation_lock_enabled": false,
            "device_activation_lock_enabled": hs("al", &[seed, i]).is_multiple_of(4),
            "activation_lock_allowed_while_supervised": false,
            "activation_lock_supported": true,
        },
        "filevault": if mac {
            json!({
                "filevault_enabled": d.filevault,
                "filevault_recoverykey_type": if d.filevault { "Personal" } else { "" },
                "filevault_prk_escrowed": d.filevault,
                "filevault_next_rotation": "",
                "filevault_regen_required": false,
            })
        } else { json!({}) },
        "lost_mode": {},
        // JSON booleans (Kandji's support scripts compare them with `true`), and `{}` for a
        // device not enrolled through ADE (HAR entry 1).
        "automated_device_enrollment": if ade {
            json!({"auto_enroll_eligible": true, "auto_enrolled": true})
        } else {
            json!({})
        },
        "kandji_agent": if mac {
            json!({
                "agent_installed": tf(d.agent),
                "install_date": ts_space_s(d.last_enrollment + 600_000_000),
                "last_check_in": ts_z(t.last_check_in(d)),
                "agent_version": agent_version(d),
            })
        } else { json!({}) },
        "hardware_overview": {
            "model_name": m.short,
            "model_identifier": m.model_id,
            "processor_name": m.processor,
            "processor_speed": "",
            "number_of_processors": if mac { "1" } else { "" },
            "total_number_of_cores": m.cores.to_string(),
            "memory": m.memory,
            "udid": uuid_of(uuid_u128("udid", &[seed, i])),
            "serial_number": t.serial(d.idx, d.platform),
        },
        "volumes": [{
            "name": if mac { "Macintosh HD" } else { "Data" },
            "format": if mac { "APFS (Encrypted)" } else { "APFS" },
            "percent_used": format!("{pct}%"),
            "identifier": "disk3s1",
            "capacity": format!("{cap:.2} GB"),
            "available": format!("{avail:.2} GB"),
            "encrypted": if d.filevault || !mac { "Yes" } else { "No" },
        }],
        "network": {
            "local_hostname": name.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect::<String>(),
            "mac_address": t.mac_address(d.idx),
            "ip_address": format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255),
            "public_ip": if hs("pub", &[seed, i]).is_multiple_of(2) { format!("203.0.113.{}", i % 250) } else { String::new() },
        },
        "recovery_information": {
            "recovery_lock_enabled": false,
            "firmware_password_exist": false,
            "firmware_password_pending": false,
            "password_rotation_scheduled": null,
            "password_escrowed": false,
        },
        "users": {"regular_users": regular_users, "system_users": system_users},
        "installed_profiles": profiles,
        "apple_business_manager": if ade {
            json!({
                "model": m.short,
                "color": "SILVER",
                "description": m.ade_desc,
                "serial_number": t.serial(d.idx, d.platform),
                "device_family": d.platform.name(),
                "os": d.platform.ade_os(),
                "device_assigned_date": ts_space_s(d.first_enrollment - 86_400_000_000),
                "device_assigned_by": format!("it@{}.io", t.name),
            })
        } else { json!({}) },
        "security_information": {"remote_desktop_enabled": false},
        "cellular": cellular,
        "tags": t.tag_names(d),
    })
}

fn bundle_size(t: &Tenant, app: usize) -> u64 {
    1_000_000 + hs("bsize", &[t.seed, app as u64]) % 900_000_000
}

/// One `/devices/{id}/apps` entry.
pub fn app_item(t: &Tenant, d: &Device, a: &AppInst) -> Value {
    let app = usize::from(a.app);
    let meta = derive::app_meta(app);
    let mac = meta.mac;
    json!({
        "app_id": if mac { (10_000 + app).to_string() } else { uuid_of(uuid_u128("iosapp", &[t.seed, app as u64])) },
        "app_name": meta.name,
        "bundle_id": meta.bundle_id,
        "bundle_size": bundle_size(t, app).to_string(),
        "app_store_vendable": if mac { "" } else { tf(app % 2 == 0) },
        "device_based_vpp": if mac { "" } else { tf(app % 3 == 0) },
        "source": meta.source,
        "process": if mac { meta.name.clone() } else { String::new() },
        "signature": if !mac { String::new() } else if meta.team_id.is_empty() { "Software Signing, Apple Code Signing Certification Authority, Apple Root CA".to_owned() } else { format!("Developer ID Application: {} ({}), Developer ID Certification Authority, Apple Root CA", meta.vendor, meta.team_id) },
        // As recorded (`2022-09-19T12:28:40.525133Z`), not the space form.
        "creation_date": crate::util::ts_z(a.installed_at),
        "modification_date": crate::util::ts_z(a.changed_at),
        "path": meta.path,
        "version": derive::app_version(app, a.ver),
        "device_id": t.device_id(d.idx),
    })
}

pub fn device_apps(t: &Tenant, d: &Device) -> Value {
    let apps: Vec<Value> = derive::device_apps(t, d)
        .iter()
        .map(|a| {
            let mut v = app_item(t, d, a);
            if let Some(o) = v.as_object_mut() {
                o.remove("device_id");
            }
            v
        })
        .collect();
    json!({"device_id": t.device_id(d.idx), "apps": apps})
}

fn item_row_id(t: &Tenant, d: &Device, item: u16) -> u64 {
    (h(&[t.seed, u64::from(d.idx), u64::from(item)]) % 90_000_000) + 1000
}

fn edr_status(t: &Tenant, d: &Device) -> Value {
    let ls = d.last_enrollment + 3_600_000_000;
    json!({
        "status": "enabled",
        "malware_posture": "Protect",
        "pup_posture": if hs("pup", &[t.seed, u64::from(d.idx)]).is_multiple_of(2) { "Protect" } else { "Detect" },
        "last_baseline_scan": ts_human(ls),
        "next_baseline_scan": ts_human(ls + 27 * 86_400_000_000),
        "baseline_scan_runtime": "Kandji checked 339,254 files in 3 minutes, 41 seconds.",
    })
}

/// A per-device library item status row (full shape for `/library-items`).
pub fn library_item_row(t: &Tenant, d: &Device, item: u16, full: bool) -> Value {
    let li = catalog::LIBRARY_ITEMS[usize::from(item)];
    let status = derive::item_status(t, d, item);
    let reported = derive::status_reported_at(t, d, false, item);
    let pending = matches!(status, "PENDING" | "pending" | "AVAILABLE");
    let log = if pending {
        Value::Null
    } else {
        json!(format!(
            "Executing audit script\nAudit of {} finished: {status}",
            li.0
        ))
    };
    let mut v = json!({
        "id": item_row_id(t, d, item),
        "item_id": uuid_of(t.library_item_uuid(item)),
        "name": li.0,
        "type": li.1,
        "status": status,
        "reported_at": if pending { Value::Null } else { json!(crate::util::ts_z_s(reported)) },
        "log": log,
        "last_audit_log": if pending { Value::Null } else { json!("Executing audit script") },
    });
    if full && let Some(o) = v.as_object_mut() {
        o.insert(
            "last_audit_run".into(),
            if pending {
                Value::Null
            } else {
                json!(ts_space(reported))
            },
        );
        o.insert("control_log".into(), Value::Null);
        o.insert("control_reported_at".into(), Value::Null);
        o.insert(
            "computer".into(),
            json!({"id": t.device_id(d.idx), "name": t.device_name(d)}),
        );
        o.insert(
            "blueprint".into(),
            json!({"id": t.blueprint_id(d.blueprint), "name": t.blueprint_name(d.blueprint)}),
        );
        o.insert("rules_present".into(), json!(false));
        if li.1 == "threat-security-policy" {
            o.insert("edr_status".into(), edr_status(t, d));
        }
    }
    v
}

pub fn parameter_row(t: &Tenant, d: &Device, p: u16) -> Value {
    let (name, cat, sub) = catalog::PARAMETERS[usize::from(p)];
    json!({
        "item_id": uuid_of(t.parameter_uuid(p)),
        "name": name,
        "category": cat,
        "subcategory": sub,
        "status": derive::param_status(t, d, p),
    })
}

pub fn device_library_items(t: &Tenant, d: &Device) -> Value {
    let rows: Vec<Value> = derive::device_items(t, d)
        .into_iter()
        .map(|i| library_item_row(t, d, i, true))
        .collect();
    json!({"device_id": t.device_id(d.idx), "library_items": rows})
}

pub fn device_parameters(t: &Tenant, d: &Device) -> Value {
    let rows: Vec<Value> = derive::device_params(t, d)
        .into_iter()
        .map(|p| parameter_row(t, d, p))
        .collect();
    json!({"device_id": t.device_id(d.idx), "parameters": rows})
}

pub fn device_status(t: &Tenant, d: &Device) -> Value {
    let items: Vec<Value> = derive::device_items(t, d)
        .into_iter()
        .map(|i| library_item_row(t, d, i, false))
        .collect();
    let params: Vec<Value> = derive::device_params(t, d)
        .into_iter()
        .map(|p| parameter_row(t, d, p))
        .collect();
    json!({"device_id": t.device_id(d.idx), "library_items": items, "parameters": params})
}

/// Device activity rows (derived: enrollment plus a few events).
pub fn device_activity(t: &Tenant, d: &Device) -> Vec<Value> {
    let n = 1 + hs("nact", &[t.seed, u64::from(d.idx)]) % 12;
    let computer = json!({"id": t.device_id(d.idx), "name": t.device_name(d), "is_removed": false});
    let bp = json!({"id": t.blueprint_id(d.blueprint), "name": t.blueprint_name(d.blueprint), "is_removed": false});
    let mut rows: Vec<Value> = (0..n)
        .map(|k| {
            let hv = h(&[t.seed, u64::from(d.idx), k, 0xAC7]);
            let ts = d.last_enrollment + (k as i64) * 3_600_000_000 + (hv % 3_000_000_000) as i64;
            let (action, details) = if k == 0 {
                ("enrollment", json!({"blueprint_name": t.blueprint_name(d.blueprint), "enrollment_type": "ADE"}))
            } else if k % 3 == 0 {
                ("name_changed", json!({"old_name": format!("Mac-{k}"), "new_name": t.device_name(d)}))
            } else {
                ("mdm_command_completed", json!({"command_type": "DeviceInformation", "status": "Acknowledged"}))
            };
            json!({
                "id": 40_000 + (hv % 1_000_000),
                "created_at": ts_z(ts.min(t.now_us)),
                "action_type": action,
                "details": details,
                "computer": computer,
                "blueprint": if k == 0 { bp.clone() } else { Value::Null },
                "external_token": null,
                "user": null,
            })
        })
        .collect();
    rows.reverse();
    rows
}

pub fn device_commands(t: &Tenant, d: &Device) -> Vec<Value> {
    const TYPES: [&str; 6] = [
        "DeviceInformation",
        "InstalledApplicationList",
        "ProfileList",
        "SecurityInfo",
        "CertificateList",
        "InstallProfile",
    ];
    let n = 2 + hs("ncmd", &[t.seed, u64::from(d.idx)]) % 20;
    (0..n)
        .map(|k| {
            let hv = h(&[t.seed, u64::from(d.idx), k, 0xC0D]);
            let ts = (d.last_enrollment + (k as i64) * 900_000_000).min(t.now_us);
            let ty = TYPES[pick(hv, TYPES.len())];
            let status = [3, 3, 3, 3, 4, 1, 5][pick(hv >> 8, 7)];
            json!({
                "uuid": uuid_of(uuid_u128("cmd", &[t.seed, u64::from(d.idx), k])),
                "command_type": ty,
                "request_type": ty,
                "status": status,
                "attempts": 1,
                "date_requested": ts_z(ts),
                "date_completed": if status == 3 || status == 4 { json!(ts_z(ts + 1_100_000)) } else { json!("") },
                "last_pushed": ts_z(ts + 370_000),
                "error_chain": if status == 4 { json!([{"error_code": 12021, "error_domain": "MCMDMErrorDomain", "localized_description": "The device is locked"}]) } else { json!([]) },
                "metadata": {},
                "user": null,
                "priority": 0,
                "request_requires_network_tether": false,
            })
        })
        .collect()
}

pub fn device_notes(t: &Tenant, d: &Device) -> Value {
    let n = hs("notes", &[t.seed, u64::from(d.idx)]) % 3;
    let rows: Vec<Value> = (0..n)
        .map(|k| {
            let ts = d.first_enrollment + (k as i64 + 1) * 86_400_000_000;
            json!({
                "note_id": uuid_of(uuid_u128("note", &[t.seed, u64::from(d.idx), k])),
                "created_at": ts_space(ts),
                "updated_at": ts_space(ts),
                "author": format!("it@{}.io", t.name),
                "content": if k == 1 { "<p>Replaced battery <script>alert(1)</script></p>".to_owned() } else { format!("<p>Note {k}</p>") },
            })
        })
        .collect();
    Value::Array(rows)
}

pub fn user_item(t: &Tenant, u: u32) -> Value {
    let user = &t.users[u as usize];
    let hv = hs("uattr", &[t.seed, u64::from(u)]);
    json!({
        "id": uuid_of(t.user_uuid(u)),
        "email": t.user_email(u),
        "name": t.user_name(u),
        "active": !user.archived,
        "archived": user.archived,
        "department": if hv.is_multiple_of(4) { Value::Null } else { json!(catalog::DEPARTMENTS[pick(hv >> 3, catalog::DEPARTMENTS.len())]) },
        "job_title": if hv.is_multiple_of(5) { Value::Null } else { json!(catalog::JOB_TITLES[pick(hv >> 9, catalog::JOB_TITLES.len())]) },
        "deprecated_user_id": t.user_legacy_id(u).to_string(),
        "device_count": t.user_devices.get(u as usize).copied().unwrap_or(0),
        "created_at": ts_z(user.created_at),
        "updated_at": ts_z(user.created_at + 31_000),
        "integration": {"id": 634, "uuid": uuid_of(uuid_u128("integration", &[t.seed])), "name": t.name, "type": "office365"},
    })
}

pub fn blueprint_item(t: &Tenant, b: u16) -> Value {
    let bp = &t.blueprints[usize::from(b)];
    let params: serde_json::Map<String, Value> = bp
        .params
        .iter()
        .map(|&p| {
            (
                uuid_of(t.parameter_uuid(p)),
                json!({"mute": false, "daily": false}),
            )
        })
        .collect();
    let computers = t.devices.iter().filter(|d| d.blueprint == b).count();
    let hv = hs("bpmeta", &[t.seed, u64::from(b)]);
    json!({
        "id": t.blueprint_id(b),
        "name": bp.name,
        "icon": catalog::BLUEPRINT_ICONS[pick(hv, catalog::BLUEPRINT_ICONS.len())],
        "color": catalog::BLUEPRINT_COLORS[pick(hv >> 8, catalog::BLUEPRINT_COLORS.len())],
        "description": if b == 0 { String::new() } else { format!("{} devices.\n\nReview before changing.", bp.name) },
        "params": params,
        "computers_count": computers,
        "enrollment_code": {"code": format!("{:06}", hv % 1_000_000), "is_active": true},
        "type": if b % 3 == 2 { "map" } else { "classic" },
    })
}

pub fn tag_item(t: &Tenant, i: usize) -> Value {
    json!({"id": uuid_of(t.tag_uuid(i)), "name": t.tag_name(i)})
}

pub fn licensing(t: &Tenant) -> Value {
    let c = |p: Platform| t.devices.iter().filter(|d| d.platform == p).count();
    let mac = c(Platform::Mac);
    let ios = c(Platform::IPhone);
    let ipad = c(Platform::IPad);
    let tv = c(Platform::AppleTv);
    let max = (t.devices.len() as u64 * 12 / 10).max(10);
    json!({
        "counts": {"computers_count": t.devices.len(), "ios_count": ios, "ipados_count": ipad, "macos_count": mac, "tvos_count": tv},
        "limits": {"plan_type": "single_limit", "max_devices": max, "max_devices_per_platform": {"ios_ipados": 0, "macos": 0}},
        "tenantOverLicenseLimit": false,
    })
}

pub fn date_only(us: i64) -> String {
    ts_date(us)
}

pub fn plus(us: i64) -> String {
    ts_plus(us)
}
