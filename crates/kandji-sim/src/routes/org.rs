//! Blueprints, tags, users, ADE, library, self-service, licensing.

use serde_json::{Value, json};

use super::{drf_links, limit_offset, make_cursor, not_found, page_links, read_cursor, url_with};
use crate::catalog;
use crate::derive;
use crate::model::{Device, Tenant};
use crate::render;
use crate::server::{Reply, Req, Shared};
use crate::util::{hs, parse_uuid, ts_space, ts_space_s, uuid_of, uuid_u128};

fn drf(sh: &Shared, req: &Req, rows: Vec<Value>, default: usize, cap: usize) -> Reply {
    let (limit, offset) = limit_offset(req, default, cap);
    let total = rows.len();
    let (next, previous) = drf_links(sh, req, total, limit, offset);
    let page: Vec<Value> = rows.into_iter().skip(offset).take(limit).collect();
    Reply::json(&json!({"count": total, "next": next, "previous": previous, "results": page}))
}

fn paged(sh: &Shared, req: &Req, rows: Vec<Value>, size: usize) -> Reply {
    let page = req.qn("page").unwrap_or(1).max(1);
    let total = rows.len();
    let (next, previous) = page_links(sh.base(), req, total, size, page);
    let results: Vec<Value> = rows
        .into_iter()
        .skip((page - 1) * size)
        .take(size)
        .collect();
    Reply::json(&json!({"count": total, "next": next, "previous": previous, "results": results}))
}

fn find_blueprint(t: &Tenant, id: &str) -> Option<u16> {
    let u = parse_uuid(id)?;
    (0..t.blueprints.len() as u16).find(|&b| t.blueprint_uuid(b) == u)
}

pub fn blueprints(sh: &Shared, req: &Req) -> Reply {
    let t = sh.tenant();
    let ids = req.list("id__in");
    let rows: Vec<Value> = (0..t.blueprints.len() as u16)
        .filter(|&b| req.q("id").is_none_or(|id| t.blueprint_id(b) == id))
        .filter(|&b| ids.is_empty() || ids.contains(&t.blueprint_id(b)))
        .filter(|&b| {
            req.q("name").is_none_or(|n| {
                t.blueprint_name(b)
                    .to_lowercase()
                    .contains(&n.to_lowercase())
            })
        })
        .map(|b| render::blueprint_item(&t, b))
        .collect();
    drf(sh, req, rows, 300, 1000)
}

/// Parameter templates (e.g. CIS benchmarks) that blueprints can start from.
pub fn blueprint_templates(sh: &Shared, req: &Req) -> Reply {
    let t = sh.tenant();
    let names = [
        (
            "CIS Level 1",
            "Center for Internet Security benchmark, level 1",
        ),
        (
            "CIS Level 2",
            "Center for Internet Security benchmark, level 2",
        ),
        ("NIST 800-53 Low", "NIST SP 800-53 low-impact baseline"),
        (
            "Kandji Level I",
            "A minimum level of security that is recommended for all businesses.",
        ),
    ];
    let rows: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, (n, d))| {
            let params: serde_json::Map<String, Value> = (0..catalog::PARAMETERS.len() as u16)
                .filter(|p| (usize::from(*p) + i) % (i + 2) == 0)
                .map(|p| (uuid_of(t.parameter_uuid(p)), json!({"mute": false, "daily": false})))
                .collect();
            json!({"id": uuid_of(uuid_u128("bptemplate", &[i as u64])), "name": n, "description": d, "params": params})
        })
        .collect();
    drf(sh, req, rows, 300, 300)
}

pub fn blueprint(sh: &Shared, req: &Req) -> Reply {
    let t = sh.tenant();
    match find_blueprint(&t, req.param(0)) {
        Some(b) => Reply::json(&render::blueprint_item(&t, b)),
        None => not_found(),
    }
}

pub fn blueprint_items(sh: &Shared, req: &Req) -> Reply {
    let t = sh.tenant();
    let Some(b) = find_blueprint(&t, req.param(0)) else {
        return not_found();
    };
    let rows: Vec<Value> = t.blueprints[usize::from(b)]
        .items
        .iter()
        .map(|&i| json!({"id": uuid_of(t.library_item_uuid(i)), "name": catalog::LIBRARY_ITEMS[usize::from(i)].0}))
        .collect();
    drf(sh, req, rows, 300, 300)
}

pub fn tags(sh: &Shared, req: &Req) -> Reply {
    let t = sh.tenant();
    let rows: Vec<Value> = (0..crate::model::TAG_COUNT)
        .filter(|&i| {
            req.q("search")
                .is_none_or(|s| catalog::TAG_NAMES[i].contains(s))
        })
        .map(|i| render::tag_item(&t, i))
        .collect();
    Reply::json(&json!({"count": rows.len(), "next": null, "previous": null, "results": rows}))
}

pub fn users(sh: &Shared, req: &Req) -> Reply {
    let t = sh.tenant();
    let start = match req.q("cursor") {
        Some(c) => match read_cursor(sh, c, 1) {
            Ok(f) => f[0].parse::<usize>().unwrap_or(0),
            Err(r) => return r,
        },
        None => 0,
    };
    let sel: Vec<u32> = (0..t.users.len() as u32)
        .filter(|&u| req.q("email").is_none_or(|e| t.user_email(u).contains(e)))
        .filter(|&u| req.q("id").is_none_or(|id| uuid_of(t.user_uuid(u)) == id))
        .filter(|&u| {
            req.q("archived")
                .is_none_or(|a| t.users[u as usize].archived == (a == "true" || a == "True"))
        })
        .collect();
    const PAGE: usize = 300;
    let rows: Vec<Value> = sel
        .iter()
        .skip(start)
        .take(PAGE)
        .map(|&u| render::user_item(&t, u))
        .collect();
    let web = format!("https://{}.kandji.io", t.name);
    let next = if start + PAGE < sel.len() {
        json!(url_with(
            &web,
            req,
            &[(
                "cursor",
                Some(make_cursor(sh, &[(start + PAGE).to_string()]))
            )]
        ))
    } else {
        Value::Null
    };
    let previous = if start > 0 {
        json!(url_with(
            &web,
            req,
            &[(
                "cursor",
                Some(make_cursor(sh, &[start.saturating_sub(PAGE).to_string()]))
            )]
        ))
    } else {
        Value::Null
    };
    Reply::json(&json!({"next": next, "previous": previous, "results": rows}))
}

pub fn user(sh: &Shared, req: &Req) -> Reply {
    let t = sh.tenant();
    let Some(id) = parse_uuid(req.param(0)) else {
        return not_found();
    };
    match (0..t.users.len() as u32).find(|&u| t.user_uuid(u) == id) {
        Some(u) => Reply::json(&render::user_item(&t, u)),
        None => not_found(),
    }
}

const ADE_TOKENS: u64 = 2;

fn ade_eligible(t: &Tenant, d: &Device) -> bool {
    hs("ade", &[t.seed, u64::from(d.idx)]) % 10 < 7
}

/// ADE records: enrolled devices (Some) and devices awaiting enrollment (None, k).
enum AdeRec<'a> {
    Enrolled(&'a Device),
    Awaiting(u32),
}

fn ade_records(t: &Tenant) -> Vec<AdeRec<'_>> {
    let mut v: Vec<AdeRec> = t
        .devices
        .iter()
        .filter(|d| ade_eligible(t, d))
        .map(AdeRec::Enrolled)
        .collect();
    let awaiting = (t.devices.len() / 20 + 2) as u32;
    v.extend((0..awaiting).map(AdeRec::Awaiting));
    v
}

fn ade_token_of(t: &Tenant, r: &AdeRec) -> u64 {
    match r {
        AdeRec::Enrolled(d) => hs("adetok", &[t.seed, u64::from(d.idx)]) % ADE_TOKENS,
        AdeRec::Awaiting(k) => u64::from(*k) % ADE_TOKENS,
    }
}

fn ade_item(t: &Tenant, r: &AdeRec, bp_object: bool) -> Value {
    let tok = ade_token_of(t, r);
    let (id, serial, platform, model, bp, user, mdm, assigned, status) = match r {
        AdeRec::Enrolled(d) => {
            let m = render::model(d);
            let mdm = json!({
                "id": t.device_id(d.idx), "enrolled_at": ts_space(d.first_enrollment), "name": t.device_name(d),
                "enrollment_status": 4, "deferred_install": false, "is_missing": d.missing, "is_removed": false,
            });
            (
                uuid_of(uuid_u128("ade", &[t.seed, u64::from(d.idx)])),
                t.serial(d.idx, d.platform),
                d.platform,
                m,
                d.blueprint,
                d.user.map(|u| uuid_of(t.user_uuid(u))),
                mdm,
                d.first_enrollment - 86_400_000_000,
                "assigned",
            )
        }
        AdeRec::Awaiting(k) => {
            let idx = 1_000_000_000 + *k;
            let p = crate::catalog::Platform::ALL[(*k % 3) as usize];
            (
                uuid_of(uuid_u128("adeawait", &[t.seed, u64::from(*k)])),
                t.serial(idx, p),
                p,
                &p.models()[(*k as usize) % p.models().len()],
                (*k % t.blueprints.len().max(1) as u32) as u16,
                None,
                Value::Null,
                t.start_us - (i64::from(*k) + 1) * 3_600_000_000,
                if k % 2 == 0 { "pushed" } else { "empty" },
            )
        }
    };
    let blueprint = if bp_object {
        json!({"id": t.blueprint_id(bp), "name": t.blueprint_name(bp), "color": "orange-300", "icon": "ss-attach"})
    } else {
        json!(t.blueprint_id(bp))
    };
    json!({
        "id": id,
        "serial_number": serial,
        "model": model.short,
        "description": model.ade_desc,
        "color": "SILVER",
        "asset_tag": "",
        "device_family": platform.name(),
        "os": platform.ade_os(),
        "blueprint_id": t.blueprint_id(bp),
        "blueprint": blueprint,
        "user_id": user,
        "user": user,
        "dep_account": {"id": uuid_of(t.ade_token_uuid(tok)), "server_name": format!("{} ABM {}", t.name, tok + 1)},
        "mdm_device": mdm,
        "device_assigned_by": format!("it@{}.io", t.name),
        "device_assigned_date": ts_space_s(assigned),
        "profile_status": status,
        "profile_assign_time": ts_space_s(assigned + 60_000_000),
        "profile_push_time": ts_space_s(assigned + 120_000_000),
        "last_assignment_status": "SUCCESS",
        "failed_assignment_attempts": 0,
        "assignment_status_received_at": ts_space(assigned + 60_500_000),
    })
}

fn ade_filter(t: &Tenant, req: &Req, r: &AdeRec, v: &Value) -> bool {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    req.q("blueprint_id").is_none_or(|b| s("blueprint_id") == b)
        && req.q("user_id").is_none_or(|u| s("user_id") == u)
        && req
            .q("dep_account")
            .is_none_or(|a| uuid_of(t.ade_token_uuid(ade_token_of(t, r))) == a)
        && req
            .q("device_family")
            .is_none_or(|f| s("device_family") == f)
        && req.q("model").is_none_or(|m| s("model").contains(m))
        && req.q("os").is_none_or(|o| s("os") == o)
        && req
            .q("profile_status")
            .is_none_or(|p| s("profile_status") == p)
        && req
            .q("serial_number")
            .is_none_or(|n| s("serial_number").contains(n))
}

fn ade_page(sh: &Shared, req: &Req, token: Option<u64>, bp_object: bool, web: bool) -> Reply {
    let t = sh.tenant();
    let recs = ade_records(&t);
    let rows: Vec<Value> = recs
        .iter()
        .filter(|r| token.is_none_or(|tk| ade_token_of(&t, r) == tk))
        .map(|r| (r, ade_item(&t, r, bp_object)))
        .filter(|(r, v)| ade_filter(&t, req, r, v))
        .map(|(_, v)| v)
        .collect();
    let host = if web {
        format!("https://{}.kandji.io", t.name)
    } else {
        sh.base().to_owned()
    };
    let page = req.qn("page").unwrap_or(1).max(1);
    let total = rows.len();
    let (next, previous) = page_links(&host, req, total, 300, page);
    let results: Vec<Value> = rows.into_iter().skip((page - 1) * 300).take(300).collect();
    Reply::json(&json!({"count": total, "next": next, "previous": previous, "results": results}))
}

/// Every ADE device record (truth `ade_devices`), as `/integrations/apple/ade/devices` serves them.
pub fn ade_all(t: &Tenant) -> Vec<Value> {
    ade_records(t)
        .iter()
        .map(|r| ade_item(t, r, false))
        .collect()
}

/// The tenant's MDM server public key (PEM), for Apple Business Manager.
pub fn ade_public_key(sh: &Shared, _req: &Req) -> Reply {
    let seed = sh.cfg.seed;
    let mut body = String::from("-----BEGIN CERTIFICATE-----\n");
    let mut raw = Vec::new();
    for k in 0..96u64 {
        raw.extend_from_slice(&hs("adepem", &[seed, k]).to_be_bytes());
    }
    for line in crate::util::b64(&raw).as_bytes().chunks(64) {
        body.push_str(&String::from_utf8_lossy(line));
        body.push('\n');
    }
    body.push_str("-----END CERTIFICATE-----");
    Reply {
        status: 200,
        body: bytes::Bytes::from(body),
        content_type: "application/x-x509-ca-cert",
        headers: Vec::new(),
    }
}

pub fn ade_devices(sh: &Shared, req: &Req) -> Reply {
    ade_page(sh, req, None, false, false)
}

pub fn ade_device(sh: &Shared, req: &Req) -> Reply {
    let t = sh.tenant();
    let id = req.param(0);
    ade_records(&t)
        .iter()
        .map(|r| ade_item(&t, r, false))
        .find(|v| v["id"] == id)
        .map(|v| Reply::json(&v))
        .unwrap_or_else(not_found)
}

fn token_idx(t: &Tenant, id: &str) -> Option<u64> {
    let u = parse_uuid(id)?;
    (0..ADE_TOKENS).find(|&k| t.ade_token_uuid(k) == u)
}

fn ade_token_item(t: &Tenant, k: u64) -> Value {
    let recs = ade_records(t);
    let mut counts = [0usize; 4];
    for r in recs.iter().filter(|r| ade_token_of(t, r) == k) {
        let p = match r {
            AdeRec::Enrolled(d) => d.platform,
            AdeRec::Awaiting(i) => crate::catalog::Platform::ALL[(*i % 3) as usize],
        };
        counts[p as usize] += 1;
    }
    let expiry = t.start_us + (200 - 190 * k as i64) * 86_400_000_000;
    json!({
        "id": uuid_of(t.ade_token_uuid(k)),
        "blueprint": {"id": t.blueprint_id(0), "name": t.blueprint_name(0), "color": "aqua-800", "icon": "ss-files"},
        "server_name": format!("{} ABM {}", t.name, k + 1),
        "server_uuid": uuid_of(uuid_u128("adeserver", &[t.seed, k])).to_uppercase(),
        "access_token_expiry": ts_space_s(expiry),
        "days_left": (expiry - t.now_us) / 86_400_000_000,
        "status": if k == 0 { "SUCCESS" } else { "BROKEN" },
        "status_reason": if k == 0 { "" } else { "Token expired" },
        "last_device_sync": ts_space(t.now_us - 3_600_000_000),
        "device_counts": {"Mac": counts[0], "iPhone": counts[1], "iPad": counts[2], "AppleTV": counts[3], "total": counts.iter().sum::<usize>()},
        "org_name": t.name, "org_email": format!("it@{}.io", t.name), "org_phone": "+1 555 0100",
        "org_address": "1 Infinite Loop", "phone": "+1 555 0100", "email": format!("it@{}.io", t.name),
        "defaults": {},
    })
}

pub fn ade_tokens(sh: &Shared, _req: &Req) -> Reply {
    let t = sh.tenant();
    let rows: Vec<Value> = (0..ADE_TOKENS).map(|k| ade_token_item(&t, k)).collect();
    Reply::json(&json!({"count": rows.len(), "next": null, "previous": null, "results": rows}))
}

pub fn ade_token(sh: &Shared, req: &Req) -> Reply {
    let t = sh.tenant();
    match token_idx(&t, req.param(0)) {
        Some(k) => Reply::json(&ade_token_item(&t, k)),
        None => not_found(),
    }
}

pub fn ade_token_devices(sh: &Shared, req: &Req) -> Reply {
    let k = {
        let t = sh.tenant();
        token_idx(&t, req.param(0))
    };
    match k {
        Some(k) => ade_page(sh, req, Some(k), true, true),
        None => not_found(),
    }
}

fn library_rows(t: &Tenant, kinds: &[&str]) -> Vec<(u16, Value)> {
    catalog::LIBRARY_ITEMS
        .iter()
        .enumerate()
        .filter(|(_, li)| kinds.contains(&li.1) || (kinds.contains(&"profile") && li.2))
        .map(|(i, li)| {
            let i = i as u16;
            let created = t.start_us - 400 * 86_400_000_000 + i64::from(i) * 86_400_000_000;
            (
                i,
                json!({
                    "id": uuid_of(t.library_item_uuid(i)),
                    "name": li.0,
                    "active": true,
                    "created_at": ts_space(created),
                    "updated_at": ts_space(created + 3_600_000_000),
                }),
            )
        })
        .collect()
}

fn ext(mut v: Value, extra: Value) -> Value {
    if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
    v
}

pub fn custom_apps(sh: &Shared, req: &Req) -> Reply {
    let t = sh.tenant();
    let rows: Vec<Value> = library_rows(&t, &["custom-app"])
        .into_iter()
        .map(|(i, v)| {
            ext(v, json!({
                "file_key": format!("companies/{}/library/custom_apps/app_{i}.pkg", t.name),
                "install_type": "package", "install_enforcement": "install_once", "audit_script": "", "preinstall_script": "",
                "postinstall_script": "", "unzip_location": "", "restart": false, "show_in_self_service": i % 2 == 0,
                "self_service_category_id": null, "self_service_recommended": false,
                "file_url": format!("https://kandji-prd-managed-library-items.s3.amazonaws.com/app_{i}.pkg?X-Amz-Expires=600&X-Amz-Signature=abc{i}"),
                "file_size": 1_048_576 * (u64::from(i) + 1), "file_updated": ts_space(t.start_us - 86_400_000_000),
                "sha256": format!("{:016x}{:016x}{:016x}{:016x}", hs("pkg", &[u64::from(i)]), 1, 2, 3),
            }))
        })
        .collect();
    if req.q("page").is_some() && req.q("limit").is_none() {
        paged(sh, req, rows, 300)
    } else {
        drf(sh, req, rows, 300, 300)
    }
}

pub fn ipa_apps(sh: &Shared, req: &Req) -> Reply {
    let t = sh.tenant();
    let rows: Vec<Value> = (0..3u64)
        .map(|k| {
            let created = t.start_us - 100 * 86_400_000_000 + k as i64 * 86_400_000_000;
            json!({
                "id": uuid_of(uuid_u128("ipa", &[t.seed, k])), "name": format!("In-house App {k}"), "active": true,
                "created_at": ts_space(created), "updated_at": ts_space(created),
                "app_version": format!("1.{k}.0"), "bundle_id": format!("com.{}.inhouse{k}", t.name),
                "file_url": format!("https://kandji-prd-managed-library-items.s3.amazonaws.com/ipa_{k}.ipa?X-Amz-Expires=600"),
                "install_enforcement": "install_once", "runs_on_iphone": true, "runs_on_ipad": true, "runs_on_mac": false, "runs_on_tv": false,
            })
        })
        .collect();
    if req.q("page").is_some() && req.q("limit").is_none() {
        paged(sh, req, rows, 300)
    } else {
        drf(sh, req, rows, 300, 300)
    }
}

pub fn custom_profiles(sh: &Shared, req: &Req) -> Reply {
    let t = sh.tenant();
    let rows: Vec<Value> = library_rows(&t, &["profile"])
        .into_iter()
        .map(|(i, v)| {
            let name = catalog::LIBRARY_ITEMS[usize::from(i)].0;
            let bits = catalog::LIBRARY_ITEMS[usize::from(i)].3;
            ext(v, json!({
                "profile": format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n<plist version=\"1.0\">\n<dict>\n\t<key>PayloadDisplayName</key>\n\t<string>{name}</string>\n</dict>\n</plist>"),
                "mdm_identifier": format!("com.kandji.profile.custom.{}", uuid_of(t.library_item_uuid(i))),
                "runs_on_mac": bits & 1 != 0, "runs_on_iphone": bits & 2 != 0, "runs_on_ipad": bits & 4 != 0, "runs_on_tv": bits & 8 != 0,
            }))
        })
        .collect();
    paged(sh, req, rows, 300)
}

pub fn custom_scripts(sh: &Shared, req: &Req) -> Reply {
    let t = sh.tenant();
    let rows: Vec<Value> = library_rows(&t, &["custom-script"])
        .into_iter()
        .map(|(i, v)| {
            ext(v, json!({
                "execution_frequency": "every_15_min", "restart": false,
                "script": format!("#!/bin/zsh\n# item {i}\necho \"hello\"\nexit 0\n"), "remediation_script": "",
                "show_in_self_service": false, "self_service_category_id": null, "self_service_recommended": false,
            }))
        })
        .collect();
    paged(sh, req, rows, 300)
}

fn find_item(t: &Tenant, id: &str) -> Option<u16> {
    let u = parse_uuid(id)?;
    (0..catalog::LIBRARY_ITEMS.len() as u16).find(|&i| t.library_item_uuid(i) == u)
}

pub fn item_status(sh: &Shared, req: &Req) -> Reply {
    let t = sh.tenant();
    let Some(item) = find_item(&t, req.param(0)) else {
        return not_found();
    };
    let computer = req.q("computer_id");
    let rows: Vec<Value> = t
        .devices
        .iter()
        .filter(|d| computer.is_none_or(|c| t.device_id(d.idx) == c))
        .filter(|d| derive::device_items(&t, d).contains(&item))
        .map(|d| {
            let mut v = render::library_item_row(&t, d, item, true);
            if let Some(o) = v.as_object_mut() {
                o.remove("item_id");
                o.remove("name");
                o.remove("rules_present");
            }
            v
        })
        .collect();
    drf(sh, req, rows, 300, 300)
}

pub fn item_activity(sh: &Shared, req: &Req) -> Reply {
    let t = sh.tenant();
    let Some(item) = find_item(&t, req.param(0)) else {
        return not_found();
    };
    const TYPES: [&str; 3] = [
        "library_item_edited",
        "library_item_assignment_changed",
        "library_item_created",
    ];
    let admin = uuid_of(uuid_u128("admin", &[t.seed]));
    let n = 3 + hs("iact", &[t.seed, u64::from(item)]) % 8;
    let rows: Vec<Value> = (0..n)
        .rev()
        .map(|k| {
            let ts = t.start_us - (n - k) as i64 * 86_400_000_000;
            let ty = if k == 0 { TYPES[2] } else { TYPES[(k % 2) as usize] };
            json!({
                "id": 1000 + u64::from(item) * 100 + k, "activity_time": ts_space(ts), "activity_type": ty,
                "details": if ty == TYPES[0] { json!({"changes": ["name"]}) } else { Value::Null },
                "user_email": format!("admin@{}.io", t.name), "user_id": admin,
            })
        })
        .filter(|v| req.q("activity_type").is_none_or(|a| v["activity_type"] == a))
        .collect();
    drf(sh, req, rows, 300, 300)
}

pub fn self_service(sh: &Shared, _req: &Req) -> Reply {
    let t = sh.tenant();
    let rows: Vec<Value> = ["Productivity", "Utilities", "Security", "Developer <Tools>"]
        .iter()
        .enumerate()
        .map(|(i, n)| json!({"id": uuid_of(uuid_u128("sscat", &[t.seed, i as u64])), "name": n}))
        .collect();
    Reply::json(&Value::Array(rows))
}

pub fn licensing(sh: &Shared, _req: &Req) -> Reply {
    let t = sh.tenant();
    Reply::json(&render::licensing(&t))
}
