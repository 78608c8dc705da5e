//! Automated Device Enrollment: tokens, devices (page style, 300 per page), public key.

use serde_json::{Value, json};

use super::{not_found, page_links};
use crate::model::{Device, Tenant};
use crate::render;
use crate::server::{Reply, Req, Shared};
use crate::util::{hs, parse_uuid, ts_z, ts_z_s, uuid_of, uuid_u128};

const ADE_TOKENS: u64 = 2;

/// Automated Device Enrollment is Apple's: Android and Windows devices are never in it.
fn ade_eligible(t: &Tenant, d: &Device) -> bool {
    d.platform.is_apple() && hs("ade", &[t.seed, u64::from(d.idx)]) % 10 < 7
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
                "id": t.device_id(d.idx), "enrolled_at": ts_z(d.first_enrollment), "name": t.device_name(d),
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
        "device_assigned_date": ts_z_s(assigned),
        "profile_status": status,
        "profile_assign_time": ts_z_s(assigned + 60_000_000),
        "profile_push_time": ts_z_s(assigned + 120_000_000),
        "last_assignment_status": "SUCCESS",
        "failed_assignment_attempts": 0,
        "assignment_status_received_at": ts_z(assigned + 60_500_000),
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
    let total = rows.len();
    let page = match super::drf_page(req, total, 300) {
        Ok(p) => p,
        Err(r) => return r,
    };
    // The live API's ADE links end the path in a slash (`…/ade/devices/?page=2`).
    let slashed = Req {
        params: Vec::new(),
        query: req.query.clone(),
        body: bytes::Bytes::new(),
        path: format!("{}/", req.path.trim_end_matches('/')),
    };
    let (next, previous) = page_links(&host, &slashed, total, 300, page);
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
        "access_token_expiry": ts_z_s(expiry),
        "days_left": (expiry - t.now_us) / 86_400_000_000,
        "status": if k == 0 { "SUCCESS" } else { "BROKEN" },
        "status_reason": if k == 0 { "" } else { "Token expired" },
        "last_device_sync": ts_z(t.now_us - 3_600_000_000),
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
