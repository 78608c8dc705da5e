//! Prism ("Visibility") rows, filters and cursor paging.

use serde_json::{Map, Value, json};

use crate::catalog::{self, Platform};
use crate::derive;
use crate::model::{Device, Tenant};
use crate::render::{model, os};
use crate::util::{chance, hs, parse_ts, pick, ts_plus, uuid_of, uuid_u128};

/// Every Prism category (GET `/prism/<category>`), and whether `total` is null.
pub const CATEGORIES: &[(&str, bool)] = &[
    ("activation_lock", false),
    ("apps", false),
    ("application_firewall", true),
    ("cellular", true),
    ("certificates", true),
    ("desktop_and_screensaver", false),
    ("device_information", false),
    ("filevault", true),
    ("gatekeeper_and_xprotect", true),
    ("installed_profiles", false),
    ("kernel_extensions", false),
    ("launch_agents_and_daemons", false),
    ("local_users", false),
    ("startup_settings", false),
    ("system_extensions", false),
    ("transparency_database", false),
];

/// Export also accepts this (Microsoft compliance partner data).
pub const EXPORT_ONLY: &[&str] = &["ms_compliance"];

pub fn is_category(c: &str) -> bool {
    CATEGORIES.iter().any(|(n, _)| *n == c)
}

fn mac(d: &Device) -> bool {
    d.platform == Platform::Mac
}

/// Number of rows a device has in a category (cheap; no rendering).
pub fn row_count(t: &Tenant, cat: &str, d: &Device) -> usize {
    let i = u64::from(d.idx);
    match cat {
        "device_information" | "activation_lock" => 1,
        "desktop_and_screensaver"
        | "filevault"
        | "application_firewall"
        | "gatekeeper_and_xprotect"
        | "startup_settings" => usize::from(mac(d)),
        "apps" => usize::from(d.app_count),
        "installed_profiles" => derive::device_items(t, d)
            .iter()
            .filter(|&&it| catalog::LIBRARY_ITEMS[usize::from(it)].2)
            .count(),
        "local_users" if mac(d) => 3 + (hs("nusers", &[t.seed, i]) % 3) as usize,
        "system_extensions" if mac(d) => 1 + (hs("nsx", &[t.seed, i]) % 2) as usize,
        "launch_agents_and_daemons" if mac(d) => 2 + (hs("nla", &[t.seed, i]) % 3) as usize,
        "transparency_database" if mac(d) => 2 + (hs("ntcc", &[t.seed, i]) % 2) as usize,
        "certificates" => 1 + (hs("ncert", &[t.seed, i]) % 2) as usize,
        "cellular" => usize::from(
            d.platform == Platform::IPhone
                || (d.platform == Platform::IPad && model(d).name.contains("Cellular")),
        ),
        "kernel_extensions" => usize::from(mac(d) && !model(d).apple_silicon),
        _ => 0,
    }
}

/// Device-level fields shared by every row of a device.
fn device_common(t: &Tenant, d: &Device) -> Map<String, Value> {
    let mut m = Map::new();
    let (uid, uname, uemail) = match d.user {
        Some(u) => (
            json!(t.user_legacy_id(u).to_string()),
            json!(t.user_name(u)),
            json!(t.user_email(u)),
        ),
        None => (json!(""), Value::Null, Value::Null),
    };
    let tags = t.tag_names(d);
    m.insert("device_id".into(), json!(t.device_id(d.idx)));
    m.insert("device__name".into(), json!(t.device_name(d)));
    m.insert("device__family".into(), json!(d.platform.family()));
    m.insert("device__user_id".into(), uid);
    m.insert("device__user_name".into(), uname);
    m.insert("device__user_email".into(), uemail);
    m.insert("blueprint_id".into(), json!(t.blueprint_id(d.blueprint)));
    m.insert(
        "blueprint_name".into(),
        json!(t.blueprint_name(d.blueprint)),
    );
    m.insert(
        "tags".into(),
        if tags.is_empty() {
            Value::Null
        } else {
            json!(tags)
        },
    );
    m.insert("asset_tag".into(), json!(t.asset_tag(d.idx)));
    m.insert("serial_number".into(), json!(t.serial(d.idx, d.platform)));
    m.insert("model_id".into(), json!(model(d).model_id));
    m.insert("count".into(), Value::Null);
    m.insert(
        "last_collected_at".into(),
        json!(ts_plus(t.last_check_in(d))),
    );
    m
}

fn with_times(base: &Map<String, Value>, created: i64, changed: i64) -> Map<String, Value> {
    let mut m = base.clone();
    m.insert("created_at".into(), json!(ts_plus(created)));
    let ch = json!(ts_plus(changed));
    m.insert("updated_at".into(), ch.clone());
    m.insert("last_changed_at".into(), ch);
    m
}

fn common(t: &Tenant, d: &Device, created: i64, changed: i64) -> Map<String, Value> {
    with_times(&device_common(t, d), created, changed)
}

fn ext(mut m: Map<String, Value>, v: Value) -> Value {
    if let Value::Object(o) = v {
        m.extend(o);
    }
    Value::Object(m)
}

fn device_information(t: &Tenant, d: &Device) -> Value {
    let m = model(d);
    let o = os(d);
    let base = common(t, d, d.first_enrollment, d.changed_at);
    let lc = t.last_check_in(d);
    let macd = mac(d);
    ext(
        base,
        json!({
            "agent_installed": if macd { json!(d.agent) } else { Value::Null },
            "agent_version": if macd { json!(crate::render::agent_version(d)) } else { Value::Null },
            "apple_silicon": if macd { json!(m.apple_silicon) } else { Value::Null },
            "battery_health": if macd && m.short.contains("Book") { json!("Normal") } else { Value::Null },
            "cellular_technology": if d.platform == Platform::IPhone { "GSM and CDMA" } else { "" },
            "data_roaming": false,
            "device_capacity": m.capacity_gb,
            "display_os_version": o.version,
            "first_enrollment_date": ts_plus(d.first_enrollment),
            "last_enrollment_date": ts_plus(d.last_enrollment),
            "host_name": if macd { json!(t.device_name(d)) } else { Value::Null },
            "local_hostname": if macd { json!(format!("{}-{}", m.short.replace(' ', "-"), d.idx)) } else { Value::Null },
            "hotspot": false,
            "last_checkin": ts_plus(lc),
            "last_checkin_agent": if macd { json!(ts_plus(lc)) } else { Value::Null },
            "last_checkin_mdm": ts_plus(lc),
            "lost_mode_status": null,
            "marketing_name": o.marketing,
            "mdm_enabled": true,
            "model": m.short,
            "model_name": m.name,
            "os_build": o.build,
            "os_version": o.version,
            "shared_ipad": if d.platform == Platform::IPad { json!(false) } else { Value::Null },
            "supplemental_build_version": o.build,
            "supplemental_os_version_extra": null,
        }),
    )
}

/// One Prism `apps` row. Built from a flat list of pairs (one bulk map build) because this is
/// the hottest path of exports: ~10 M rows at 100k devices.
fn app_row(t: &Tenant, base: &Map<String, Value>, a: &derive::AppInst) -> Value {
    let app = usize::from(a.app);
    let meta = derive::app_meta_ref(app);
    let ver = derive::app_version(app, a.ver);
    let ios = !meta.mac;
    let copyright = if app % 3 == 0 {
        format!("Copyright © 2025 {}\nAll rights reserved.", meta.vendor)
    } else {
        format!("Copyright © 2024 {}. All rights reserved.", meta.vendor)
    };
    let flag = |b: bool| if ios { Value::Bool(b) } else { Value::Null };
    let s = |x: &str| Value::String(x.to_owned());
    let changed = json!(ts_plus(a.changed_at.max(a.installed_at)));
    let mut v: Vec<(String, Value)> = Vec::with_capacity(base.len() + 48);
    v.extend(base.iter().map(|(k, x)| (k.clone(), x.clone())));
    let fields: [(&str, Value); 39] = [
        ("created_at", json!(ts_plus(a.installed_at))),
        ("updated_at", changed.clone()),
        ("last_changed_at", changed),
        ("ad_hoc_code_signed", Value::Null),
        ("app_clip", flag(false)),
        ("app_store_vendable", flag(app % 2 == 0)),
        ("apple_scriptable", Value::Null),
        ("beta_app", flag(false)),
        (
            "bundle_display_name",
            if ios { s(&meta.name) } else { Value::Null },
        ),
        ("bundle_id", s(&meta.bundle_id)),
        ("bundle_name", s(&meta.name)),
        ("bundle_region", s("en")),
        (
            "bundle_size",
            if ios {
                json!(1_000_000 + hs("bsize", &[t.seed, app as u64]) % 900_000_000)
            } else {
                Value::Null
            },
        ),
        ("bundle_type", s("APPL")),
        ("category", s(meta.category)),
        (
            "compiler",
            if ios {
                Value::Null
            } else {
                s("com.apple.compilers.llvm.clang.1_0")
            },
        ),
        ("copyright", Value::String(copyright)),
        ("developer_name", s(&meta.vendor)),
        ("device_based_vpp", flag(app % 3 == 0)),
        ("download_canceled", flag(false)),
        ("download_failed", flag(false)),
        ("download_paused", flag(false)),
        ("download_waiting", flag(false)),
        ("dynamic_size", Value::Null),
        ("environment_variables", Value::Null),
        ("executable", if ios { Value::Null } else { s(&meta.name) }),
        ("external_version_identifier", Value::Null),
        ("has_update_available", flag(a.ver < 2)),
        ("info", Value::Null),
        ("installing", flag(false)),
        (
            "minimum_system_version",
            s(if ios { "16.0" } else { "12.0" }),
        ),
        ("name", s(&meta.name)),
        ("obtained_from", s(meta.source)),
        ("path", s(&meta.path)),
        ("short_version", s(&derive::app_build(&ver))),
        (
            "signature",
            if ios {
                Value::Null
            } else {
                Value::String(format!(
                    "Developer ID Application: {} ({}), Developer ID Certification Authority, Apple Root CA",
                    meta.vendor, meta.team_id
                ))
            },
        ),
        ("team_id", s(&meta.team_id)),
        ("validated", Value::Null),
        ("version", Value::String(ver)),
    ];
    v.extend(fields.into_iter().map(|(k, x)| (k.to_owned(), x)));
    Value::Object(v.into_iter().collect())
}

/// Rows of a device from row `from` on, skipping (without rendering) app rows that changed before
/// `since`; each with its row index.
pub fn rows_from(
    t: &Tenant,
    cat: &str,
    d: &Device,
    from: usize,
    since: Option<i64>,
) -> Vec<(usize, Value)> {
    if cat == "apps" {
        let base = device_common(t, d);
        return derive::device_apps(t, d)
            .iter()
            .enumerate()
            .skip(from)
            .filter(|(_, a)| since.is_none_or(|s| a.changed_at.max(a.installed_at) >= s))
            .map(|(k, a)| (k, app_row(t, &base, a)))
            .collect();
    }
    rows(t, cat, d).into_iter().enumerate().skip(from).collect()
}

/// All rows of a device in a category.
pub fn rows(t: &Tenant, cat: &str, d: &Device) -> Vec<Value> {
    let n = row_count(t, cat, d);
    if n == 0 {
        return Vec::new();
    }
    let i = u64::from(d.idx);
    let seed = t.seed;
    let ch = d.changed_at;
    let fe = d.first_enrollment;
    match cat {
        "device_information" => vec![device_information(t, d)],
        // The spec's examples for these two are copies of device_information (SOURCE.md):
        // the columns below are assumed, taken from the /details sections of the same name.
        "activation_lock" => vec![ext(common(t, d, fe, ch), json!({
            "activation_lock_allowed_while_supervised": false,
            "activation_lock_supported": true,
            "bypass_code_failed": false,
            "device_activation_lock_enabled": hs("al", &[seed, i]).is_multiple_of(4),
            "user_activation_lock_enabled": false,
        }))],
        "desktop_and_screensaver" => {
            let idle = [300, 600, 1200][(hs("ss", &[seed, i]) % 3) as usize];
            let delay = [0, 5, 60][(hs("ssd", &[seed, i]) % 3) as usize];
            vec![ext(common(t, d, fe, ch), json!({
                "screensaver_enabled": true,
                "screensaver_idle_time_seconds": idle,
                "screensaver_require_password": !hs("ssp", &[seed, i]).is_multiple_of(10),
                "screensaver_password_delay_seconds": delay,
                "desktop_picture": "/System/Library/Desktop Pictures/Sonoma.heic",
            }))]
        }
        "apps" => {
            let base = device_common(t, d);
            derive::device_apps(t, d).iter().map(|a| app_row(t, &base, a)).collect()
        }
        "filevault" => vec![ext(common(t, d, fe, ch), json!({
            "status": d.filevault,
            "key_type": if d.filevault { json!("personal") } else { Value::Null },
            "key_escrowed": d.filevault,
            "regeneration_needed": if d.filevault { json!(false) } else { Value::Null },
            "scheduled_key_rotation": null,
        }))],
        "application_firewall" => {
            let on = !hs("fw", &[seed, i]).is_multiple_of(4);
            vec![ext(common(t, d, fe, ch), json!({
                "status": on, "block_all_incoming": false, "logging": true, "logging_option": "throttled",
                "stealth_mode": on && i % 2 == 0, "allow_signed_applications": true, "unloading": false, "version": "1.7",
            }))]
        }
        "gatekeeper_and_xprotect" => vec![ext(common(t, d, fe, ch), json!({
            "gatekeeper_status": true, "trusted_developers": true, "gatekeeper_version": "8.0",
            "gatekeeper_opaque_version": "94", "xprotect_version": "5283", "malware_removal_tool_version": "1.93",
        }))],
        "startup_settings" => vec![ext(common(t, d, fe, ch), json!({
            "sip": true, "ssv": true, "secure_boot_level": "full", "external_boot_level": "allowed",
            "bootstrap_token_escrowed": true, "bootstrap_token_auth": false, "kext_requires_bst": true,
            "software_update_requires_bst": true, "any_signed_os": null, "mdm_manages_kext": null, "user_manages_kext": null,
        }))],
        "installed_profiles" => derive::device_items(t, d)
            .into_iter()
            .filter(|&it| catalog::LIBRARY_ITEMS[usize::from(it)].2)
            .map(|it| {
                let li = catalog::LIBRARY_ITEMS[usize::from(it)];
                let id = uuid_of(t.library_item_uuid(it));
                ext(common(t, d, fe, ch), json!({
                    "profile_display_name": li.0,
                    "profile_description": null,
                    "organization": "Kandji, Inc.",
                    "payload_identifier": format!("com.kandji.profile.custom.{id}"),
                    "payload_uuid": id,
                    "managed": true, "signed": true, "removable": false, "removal_passcode": false, "encrypted": false,
                    "profile_data": [{"display_name": li.0, "identifier": format!("com.kandji.profile.custom.{id}.payload"), "organization": "Kandji, Inc.", "type": format!("com.apple.{}", li.1.trim_start_matches("profile-")), "uuid": uuid_of(uuid_u128("payload", &[seed, u64::from(it)])), "version": 1}],
                }))
            })
            .collect(),
        "local_users" => (0..n)
            .map(|k| {
                let system = k >= n - 2;
                let (uname, uid, home) = if system {
                    if k == n - 2 { ("daemon".to_owned(), 1, "/var/root".to_owned()) } else { ("_lp".to_owned(), 26, "/var/spool/cups".to_owned()) }
                } else {
                    let u = format!("user{k}");
                    let h = format!("/Users/{u}");
                    (u, 501 + k as i64, h)
                };
                ext(common(t, d, fe, ch), json!({
                    "username": uname, "uid": uid, "type": if !system && k == 0 { "Admin" } else { "Standard" },
                    "generated_uid": uuid_of(uuid_u128("guid", &[seed, i, k as u64])).to_uppercase(),
                    "home_directory": home, "shell": if system { "/usr/bin/false" } else { "/bin/zsh" },
                    "secure_token": if system { Value::Null } else { json!(true) }, "filevault_user": !system && d.filevault,
                    "volume_owner": !system && k == 0, "logged_in": !system && k == 0, "hidden_user": system,
                    "full_name": if system { "System Services".to_owned() } else { format!("User {k}") },
                    "directory": "/Local/Default", "failed_login_time": null, "failed_logins": null,
                    "home_folder_secure": true, "logged_in_time": null, "mobile_account": false,
                    "password_last_set": null, "user_created_at": null,
                }))
            })
            .collect(),
        "system_extensions" => (0..n)
            .map(|k| ext(common(t, d, fe, ch), json!({
                "identifier": if k == 0 { "io.kandji.KandjiAgent.ESF" } else { "com.crowdstrike.falcon.Agent" },
                "team_id": if k == 0 { "P3FGV63VK7" } else { "X9E956P446" },
                "state": "activated_enabled",
                "name": if k == 0 { "Kandji ESF Extension" } else { "Falcon Sensor" },
                "short_version": "1.8.24", "bundle_version": "779", "bundle_path": "/Applications/Utilities/..",
                "path": "/Applications/Utilities/..", "categories": "com.apple.system_extension.endpoint_security",
                "is_mdm_managed": true,
            })))
            .collect(),
        "launch_agents_and_daemons" => (0..n)
            .map(|k| {
                let label = ["com.microsoft.update.agent", "io.kandji.agent", "com.google.keystone.daemon", "com.docker.vmnetd", "com.example.<script>x</script>"][k % 5];
                ext(common(t, d, fe, ch), json!({
                    "path": format!("/Library/LaunchAgents/{label}.plist"), "file_name": format!("{label}.plist"),
                    "label": label, "program": null, "program_arguments": format!("/usr/local/bin/{label}, --daemon"),
                    "run_at_load": true, "is_loaded": true, "disabled": false, "is_disabled": false, "keep_alive": false,
                    "domain": {"system_agent": {"disabled_users": [], "loaded_users": [{"uid": 501.0, "username": "user0"}]}},
                    "service_domain": "System Agent", "group_name": null, "pid": null, "process_type": null,
                    "queue_directories": null, "root_directory": null, "standard_error_path": null, "standard_out_path": null,
                    "start_interval": 7200, "start_on_mount": null, "user_agent_local_user": null,
                    "user_agent_local_user_id": null, "user_name": null, "watch_paths": null, "working_directory": null,
                }))
            })
            .collect(),
        "transparency_database" => (0..n)
            .map(|k| ext(common(t, d, fe, ch), json!({
                "service": (["BluetoothAlways", "ScreenCapture", "SystemPolicyAllFiles"][k % 3]),
                "application": (["com.okta.mobile", "us.zoom.xos", "com.microsoft.teams2"][k % 3]),
                "client_type": "Bundle Identifier", "status": if k % 2 == 0 { "Allowed" } else { "Denied" },
                "status_reason": "User Consent", "last_modified": ts_plus(fe + 3_600_000_000 * (k as i64 + 1)),
                "local_user": "user0",
            })))
            .collect(),
        "certificates" => (0..n)
            .map(|k| ext(common(t, d, fe, ch), json!({
                "common_name": if k == 0 { "com.apple.kerberos.kdc".to_owned() } else { format!("{} Device CA", t.name) },
                "identity_certificate": k == 0,
            })))
            .collect(),
        "cellular" => vec![ext(common(t, d, fe, ch), json!({
            "cellular_technology": "GSM and CDMA", "data_roaming_enabled": false, "voice_roaming_enabled": false,
            "personal_hotspot_enabled": false, "modem_firmware_version": "6.21.01",
            "imei_slot_1": format!("35 {:06} {:06} {}", i % 1_000_000, hs("imei", &[seed, i]) % 1_000_000, i % 10),
            "imei_slot_2": null, "meid": format!("3567{:010}", hs("meid", &[seed, i]) % 10_000_000_000),
            "iccid_slot_1": format!("8901{:015}", hs("iccid", &[seed, i]) % 1_000_000_000_000_000), "iccid_slot_2": null,
            "eid_slot_1": null, "eid_slot_2": null, "phone_number_slot_1": null, "phone_number_slot_2": null,
            "slot_1": "CTSubscriptionSlotOne", "slot_2": null,
            "carrier_settings_version_slot_1": null, "carrier_settings_version_slot_2": null,
            "current_carrier_network_slot_1": null, "current_carrier_network_slot_2": null,
            "current_mcc_slot_1": null, "current_mcc_slot_2": null, "current_mnc_slot_1": null, "current_mnc_slot_2": null,
            "is_data_preferred_slot_1": null, "is_data_preferred_slot_2": null, "is_roaming_slot_1": null, "is_roaming_slot_2": null,
            "is_voice_preferred_slot_1": null, "is_voice_preferred_slot_2": null, "label_id_slot_1": null, "label_id_slot_2": null,
            "label_slot_1": null, "label_slot_2": null,
            "subscriber_carrier_network_slot_1": null, "subscriber_carrier_network_slot_2": null,
        }))],
        "kernel_extensions" => vec![ext(common(t, d, fe, ch), json!({
            "bundle_id": "com.example.driver.legacy", "name": "LegacyDriver", "version": "2.1.0",
            "team_id": "ABCDE12345", "path": "/Library/Extensions/LegacyDriver.kext", "loaded": chance(hs("kext", &[seed, i]), 0.5),
            "mdm_managed": false,
        }))],
        _ => Vec::new(),
    }
}

/// A parsed Prism filter: `{key: {op: value}}` (AND of all clauses).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub clauses: Vec<(String, String, Value)>,
}

pub const OPS: &[&str] = &[
    "eq", "in", "not_in", "like", "not_like", "lt", "gt", "lte", "gte", "is_null",
];

impl Filter {
    pub fn parse(s: Option<&str>) -> Result<Filter, String> {
        let Some(s) = s.filter(|s| !s.trim().is_empty()) else {
            return Ok(Filter::default());
        };
        let v: Value = serde_json::from_str(s).map_err(|e| format!("Invalid filter: {e}"))?;
        Self::from_value(&v)
    }

    pub fn from_value(v: &Value) -> Result<Filter, String> {
        let mut f = Filter::default();
        let Some(o) = v.as_object() else {
            return Err("Invalid filter: expected an object".into());
        };
        for (k, ops) in o {
            if k == "blueprint__id" || k == "device__family" {
                return Err(format!("Invalid filter key: {k}"));
            }
            let Some(ops) = ops.as_object() else {
                return Err(format!("Invalid filter for {k}"));
            };
            if ops.contains_key("in") && ops.contains_key("not_in") {
                return Err(format!(
                    "Invalid filter for {k}: in and not_in cannot be combined on one attribute"
                ));
            }
            for (op, val) in ops {
                if op == "or" {
                    // `{"updated_at": {"or": [{"lt": a}, {"gt": b}]}}`: any of the clauses
                    // (the documented way to exclude a time window).
                    let Some(alts) = val.as_array().filter(|a| !a.is_empty()) else {
                        return Err(format!(
                            "Invalid filter for {k}: or takes a list of conditions"
                        ));
                    };
                    for alt in alts {
                        let ok = alt.as_object().is_some_and(|o| {
                            !o.is_empty() && o.keys().all(|op| OPS.contains(&op.as_str()))
                        });
                        if !ok {
                            return Err(format!(
                                "Invalid filter for {k}: or takes a list of conditions"
                            ));
                        }
                    }
                } else if !OPS.contains(&op.as_str()) {
                    return Err(format!("Invalid filter operator: {op}"));
                }
                f.clauses.push((k.clone(), op.clone(), val.clone()));
            }
        }
        Ok(f)
    }

    pub fn is_empty(&self) -> bool {
        self.clauses.is_empty()
    }

    /// Lower time bound on `last_changed_at`/`updated_at`, for skipping unchanged devices.
    pub fn changed_since(&self) -> Option<i64> {
        self.clauses
            .iter()
            .filter(|(k, op, _)| {
                (k == "last_changed_at" || k == "updated_at") && (op == "gte" || op == "gt")
            })
            .filter_map(|(_, _, v)| v.as_str().and_then(parse_ts))
            .max()
    }

    /// Device ids the filter restricts to (eq/in on device_id).
    pub fn device_ids(&self) -> Option<Vec<String>> {
        for (k, op, v) in &self.clauses {
            if k == "device_id" {
                match op.as_str() {
                    "eq" => return v.as_str().map(|s| vec![s.to_owned()]),
                    "in" => {
                        return v.as_array().map(|a| {
                            a.iter()
                                .filter_map(|x| x.as_str().map(str::to_owned))
                                .collect()
                        });
                    }
                    _ => {}
                }
            }
        }
        None
    }

    pub fn matches(&self, row: &Value) -> bool {
        self.clauses
            .iter()
            .all(|(k, op, v)| clause(row.get(k).unwrap_or(&Value::Null), op, v))
    }

    /// A key that is not one of the category's columns: the live API most likely refuses
    /// it (assumed) rather than matching nothing.
    pub fn unknown_key(&self, columns: &[String]) -> Option<&str> {
        self.clauses
            .iter()
            .map(|(k, _, _)| k.as_str())
            .find(|k| !columns.iter().any(|c| c == k))
    }
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn cmp(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    if let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) {
        return x.partial_cmp(&y);
    }
    let (sa, sb) = (as_text(a)?, as_text(b)?);
    if let (Some(x), Some(y)) = (parse_ts(&sa), parse_ts(&sb)) {
        return Some(x.cmp(&y));
    }
    Some(sa.cmp(&sb))
}

fn loose_eq(a: &Value, b: &Value) -> bool {
    a == b || matches!((as_text(a), as_text(b)), (Some(x), Some(y)) if x == y)
}

fn clause(val: &Value, op: &str, arg: &Value) -> bool {
    use std::cmp::Ordering::*;
    match op {
        "eq" => loose_eq(val, arg),
        "in" => arg
            .as_array()
            .is_some_and(|a| a.iter().any(|x| loose_eq(val, x))),
        "not_in" => arg
            .as_array()
            .is_none_or(|a| !a.iter().any(|x| loose_eq(val, x))),
        "like" | "not_like" => {
            // A list (documented) matches when the value contains any of them.
            let needles: Vec<String> = match arg {
                Value::Array(a) => a.iter().filter_map(as_text).collect(),
                other => as_text(other).into_iter().collect(),
            };
            let hit = as_text(val).is_some_and(|x| {
                let x = x.to_lowercase();
                needles.iter().any(|y| x.contains(&y.to_lowercase()))
            });
            if op == "like" { hit } else { !hit }
        }
        "or" => arg.as_array().is_some_and(|alts| {
            alts.iter().any(|alt| {
                alt.as_object()
                    .is_some_and(|o| o.iter().all(|(op, v)| clause(val, op, v)))
            })
        }),
        "lt" => cmp(val, arg) == Some(Less),
        "gt" => cmp(val, arg) == Some(Greater),
        "lte" => matches!(cmp(val, arg), Some(Less | Equal)),
        "gte" => matches!(cmp(val, arg), Some(Greater | Equal)),
        "is_null" => {
            let want = arg.as_bool().unwrap_or(true);
            let is_null = val.is_null() || val.as_str() == Some("");
            is_null == want
        }
        _ => false,
    }
}

/// The query part a cursor is bound to.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub category: String,
    pub blueprint_ids: Vec<String>,
    pub device_families: Vec<String>,
    pub filter_raw: String,
    pub filter: Filter,
}

impl Query {
    pub fn hash(&self) -> u64 {
        let mut parts: Vec<u64> = Vec::new();
        for s in std::iter::once(&self.category)
            .chain(self.blueprint_ids.iter())
            .chain(std::iter::once(&"|".to_owned()))
            .chain(self.device_families.iter())
            .chain(std::iter::once(&self.filter_raw))
        {
            parts.push(hs(s, &[parts.len() as u64]));
        }
        hs("query", &parts)
    }

    /// Does a device pass the device-level parts of the query?
    pub fn device_ok(
        &self,
        t: &Tenant,
        d: &Device,
        since: Option<i64>,
        ids: &Option<Vec<u128>>,
    ) -> bool {
        // Prism reports Apple devices only (no Android or Windows shapes are documented).
        if !d.platform.is_apple() {
            return false;
        }
        if !self.blueprint_ids.is_empty()
            && !self
                .blueprint_ids
                .iter()
                .any(|b| *b == t.blueprint_id(d.blueprint))
        {
            return false;
        }
        if !self.device_families.is_empty()
            && !self
                .device_families
                .iter()
                .any(|f| f == d.platform.family() || f == d.platform.name())
        {
            return false;
        }
        if let Some(s) = since
            && d.changed_at < s
        {
            return false;
        }
        if let Some(ids) = ids
            && !ids.contains(&t.device_uuid(d.idx))
        {
            return false;
        }
        true
    }

    pub fn prefilter_ids(&self) -> Option<Vec<u128>> {
        self.filter.device_ids().map(|v| {
            v.iter()
                .filter_map(|s| crate::util::parse_uuid(s))
                .collect()
        })
    }
}

/// Total number of matching rows; `None` when not cheaply known.
pub fn count(t: &Tenant, q: &Query) -> Option<u64> {
    let since = q.filter.changed_since();
    let ids = q.prefilter_ids();
    let mut n = 0u64;
    let expensive =
        q.category == "apps" && !q.filter.is_empty() && since.is_none() && ids.is_none();
    if expensive {
        return None;
    }
    for d in &t.devices {
        if !q.device_ok(t, d, since, &ids) {
            continue;
        }
        if q.filter.is_empty() {
            n += row_count(t, &q.category, d) as u64;
        } else {
            n += rows(t, &q.category, d)
                .iter()
                .filter(|r| q.filter.matches(r))
                .count() as u64;
        }
    }
    Some(n)
}

/// Position in a category walk: device idx and row within the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub dev: u32,
    pub row: usize,
}

/// One page of rows starting at `start` (cursor) or after skipping `offset` rows.
pub fn page(
    t: &Tenant,
    q: &Query,
    start: Option<Pos>,
    offset: usize,
    limit: usize,
) -> (Vec<Value>, Option<Pos>) {
    let since = q.filter.changed_since();
    let ids = q.prefilter_ids();
    let mut out = Vec::with_capacity(limit.min(300));
    let mut skip = if start.is_some() { 0 } else { offset };
    let first = match start {
        Some(p) => t.devices.partition_point(|d| d.idx < p.dev),
        None => 0,
    };
    for d in &t.devices[first..] {
        if !q.device_ok(t, d, since, &ids) {
            continue;
        }
        let row0 = match start {
            Some(p) if p.dev == d.idx => p.row,
            _ => 0,
        };
        if q.filter.is_empty() {
            let n = row_count(t, &q.category, d);
            if row0 >= n {
                continue;
            }
            if skip >= n - row0 {
                skip -= n - row0;
                continue;
            }
        }
        for (k, r) in rows_from(t, &q.category, d, row0, since) {
            if !q.filter.matches(&r) {
                continue;
            }
            if skip > 0 {
                skip -= 1;
                continue;
            }
            if out.len() == limit {
                return (out, Some(Pos { dev: d.idx, row: k }));
            }
            out.push(r);
        }
    }
    (out, None)
}

/// Column order for CSV exports: the row keys, common ones first.
pub fn columns(t: &Tenant, cat: &str) -> Vec<String> {
    let probe = t
        .devices
        .iter()
        .filter(|d| d.platform.is_apple())
        .find(|d| row_count(t, cat, d) > 0)
        .map(|d| rows(t, cat, d));
    match probe.and_then(|r| r.into_iter().next()) {
        Some(Value::Object(o)) => o.keys().cloned().collect(),
        _ => vec![
            "device_id".into(),
            "device__name".into(),
            "serial_number".into(),
        ],
    }
}

pub fn ms_compliance_row(t: &Tenant, d: &Device) -> Value {
    let hv = hs("msc", &[t.seed, u64::from(d.idx)]);
    ext(
        common(t, d, d.first_enrollment, d.changed_at),
        json!({
            "compliance_state": (["compliant", "compliant", "noncompliant", "unknown"][pick(hv, 4)]),
            "azure_ad_device_id": uuid_of(uuid_u128("aad", &[t.seed, u64::from(d.idx)])),
            "last_reported_at": ts_plus(t.last_check_in(d)),
        }),
    )
}
