//! Blueprints, tags, users, ADE, library, self-service, licensing.

use serde_json::{Value, json};

use super::{drf_links, limit_offset, not_found, page_links, url_with};
use crate::catalog;
use crate::derive;
use crate::model::Tenant;
use crate::render;
use crate::server::{Reply, Req, Shared};
use crate::util::{hs, parse_uuid, ts_z, uuid_of, uuid_u128};

fn drf(sh: &Shared, req: &Req, rows: Vec<Value>, default: usize, cap: usize) -> Reply {
    let (limit, offset) = limit_offset(req, default, cap);
    let total = rows.len();
    let (next, previous) = drf_links(sh, req, total, limit, offset);
    let page: Vec<Value> = rows.into_iter().skip(offset).take(limit).collect();
    Reply::json(&json!({"count": total, "next": next, "previous": previous, "results": page}))
}

fn paged(sh: &Shared, req: &Req, rows: Vec<Value>, size: usize) -> Reply {
    let total = rows.len();
    let page = match super::drf_page(req, total, size) {
        Ok(p) => p,
        Err(r) => return r,
    };
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
    // One envelope with every tag: `/tags` documents no paging parameters (NOTES, style F),
    // so even thousands come in one answer with `next: null`.
    let rows: Vec<Value> = (0..t.n_tags)
        .filter(|&i| req.q("search").is_none_or(|s| t.tag_name(i).contains(s)))
        .map(|i| render::tag_item(&t, i))
        .collect();
    Reply::json(&json!({"count": rows.len(), "next": null, "previous": null, "results": rows}))
}

/// A DRF `CursorPagination` cursor: base64 of a query string with `o` (offset), `r`
/// (reverse) and `p` (position), as `cD0yOTE0Mw==` is `p=29143`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct DrfCursor {
    reverse: bool,
    position: Option<u32>,
}

impl DrfCursor {
    /// DRF's `decode_cursor`: an empty cursor decodes to the first page; anything that does
    /// not decode (bad base64, a non-integer field, a negative offset) is `None`, which DRF
    /// answers with 404 `{"detail":"Invalid cursor"}`.
    fn decode(c: &str) -> Option<Self> {
        let raw = crate::util::unb64(c.trim())?;
        let qs = String::from_utf8(raw).ok()?;
        let mut out = Self::default();
        for pair in qs.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "o" => {
                    v.parse::<u32>().ok()?;
                }
                "r" => out.reverse = v.parse::<u8>().ok()? != 0,
                "p" => out.position = Some(v.parse().ok()?),
                _ => {}
            }
        }
        Some(out)
    }

    /// DRF's `encode_cursor` (keys in its order: `o`, `r`, `p`).
    fn encode(self) -> String {
        let mut qs = Vec::new();
        if self.reverse {
            qs.push("r=1".to_string());
        }
        if let Some(p) = self.position {
            qs.push(format!("p={p}"));
        }
        crate::util::b64(qs.join("&").as_bytes())
    }
}

/// `/users`: DRF cursor pagination, 300 a page, ordered by the user's position. Its cursors
/// carry a position, not an issue time, so they never expire.
pub fn users(sh: &Shared, req: &Req) -> Reply {
    let t = sh.tenant();
    let cur = match req.q("cursor") {
        None => DrfCursor::default(),
        Some(c) => match DrfCursor::decode(c) {
            Some(c) => c,
            None => return Reply::detail(404, "Invalid cursor"),
        },
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
    let page: Vec<u32> = match (cur.reverse, cur.position) {
        (false, p) => sel
            .iter()
            .copied()
            .filter(|&u| p.is_none_or(|p| u > p))
            .take(PAGE)
            .collect(),
        (true, p) => {
            let before: Vec<u32> = sel
                .iter()
                .copied()
                .filter(|&u| p.is_none_or(|p| u < p))
                .collect();
            before[before.len().saturating_sub(PAGE)..].to_vec()
        }
    };
    let web = format!("https://{}.kandji.io", t.name);
    let link = |c: DrfCursor| json!(url_with(&web, req, &[("cursor", Some(c.encode()))]));
    let next = match page.last() {
        Some(&last) if sel.iter().any(|&u| u > last) => link(DrfCursor {
            reverse: false,
            position: Some(last),
        }),
        _ => Value::Null,
    };
    let previous = match page.first() {
        Some(&first) if sel.iter().any(|&u| u < first) => link(DrfCursor {
            reverse: true,
            position: Some(first),
        }),
        _ => Value::Null,
    };
    let rows: Vec<Value> = page.iter().map(|&u| render::user_item(&t, u)).collect();
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
                    "created_at": ts_z(created),
                    "updated_at": ts_z(created + 3_600_000_000),
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
                "file_size": 1_048_576 * (u64::from(i) + 1), "file_updated": ts_z(t.start_us - 86_400_000_000),
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
                "created_at": ts_z(created), "updated_at": ts_z(created),
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
                "id": 1000 + u64::from(item) * 100 + k, "activity_time": ts_z(ts), "activity_type": ty,
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
