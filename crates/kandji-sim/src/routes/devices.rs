//! `/devices` and the per-device endpoints.

use serde_json::{Value, json};

use super::{limit_offset, not_found, url_with};
use crate::catalog::{self, Platform};
use crate::model::{Device, TAG_COUNT, Tenant};
use crate::render;
use crate::server::{Reply, Req, Shared};
use crate::util::{parse_uuid, uuid_of};

const ORDER_KEYS: &[&str] = &[
    "asset_tag",
    "blueprint_id",
    "device_id",
    "device_name",
    "last_check_in",
    "model",
    "platform",
    "os_version",
    "serial_number",
    "user",
];

fn tag_index_by_name(n: &str) -> Option<usize> {
    catalog::TAG_NAMES.iter().position(|t| *t == n)
}

fn contains(hay: &str, needle: &str) -> bool {
    hay.to_lowercase().contains(&needle.to_lowercase())
}

/// Does a device pass the `/devices` filters of the request?
fn passes(t: &Tenant, d: &Device, req: &Req) -> bool {
    for (k, v) in &req.query {
        let ok = match k.as_str() {
            "blueprint_id" => t.blueprint_id(d.blueprint) == *v,
            "platform" => d.platform.name() == v,
            "tag_name" => tag_index_by_name(v).is_some_and(|i| d.tags & (1 << i) != 0),
            "tag_name_in" => v
                .split(',')
                .any(|n| tag_index_by_name(n.trim()).is_some_and(|i| d.tags & (1 << i) != 0)),
            "tag_id" => {
                (0..TAG_COUNT).any(|i| d.tags & (1 << i) != 0 && uuid_of(t.tag_uuid(i)) == *v)
            }
            "tag_id_in" => v.split(',').any(|id| {
                (0..TAG_COUNT)
                    .any(|i| d.tags & (1 << i) != 0 && uuid_of(t.tag_uuid(i)) == id.trim())
            }),
            "device_id" => t.device_id(d.idx) == *v,
            "device_name" => contains(&t.device_name(d), v),
            "serial_number" => contains(&t.serial(d.idx, d.platform), v),
            "asset_tag" => t.asset_tag(d.idx) == *v,
            "mac_address" => t.mac_address(d.idx).eq_ignore_ascii_case(v),
            "model" => contains(render::model(d).name, v),
            "os_version" => render::os(d).version.contains(v.as_str()),
            "filevault_enabled" => {
                d.platform == Platform::Mac && (d.filevault == (v == "true" || v == "True"))
            }
            "user" => d
                .user
                .is_some_and(|u| contains(&t.user_name(u), v) || contains(&t.user_email(u), v)),
            "user_name" => d.user.is_some_and(|u| contains(&t.user_name(u), v)),
            "user_email" => d.user.is_some_and(|u| contains(&t.user_email(u), v)),
            "user_email_exact" => d.user.is_some_and(|u| t.user_email(u) == *v),
            "user_id" => d.user.is_some_and(|u| uuid_of(t.user_uuid(u)) == *v),
            _ => true,
        };
        if !ok {
            return false;
        }
    }
    true
}

fn order_key(t: &Tenant, d: &Device, k: &str) -> String {
    match k {
        "asset_tag" => t.asset_tag(d.idx),
        "blueprint_id" => t.blueprint_id(d.blueprint),
        "device_id" => t.device_id(d.idx),
        "device_name" => t.device_name(d),
        "last_check_in" => format!("{:020}", t.last_check_in(d)),
        "model" => render::model(d).name.to_owned(),
        "platform" => d.platform.name().to_owned(),
        "os_version" => render::os(d).version.to_owned(),
        "serial_number" => t.serial(d.idx, d.platform),
        "user" => d.user.map(|u| t.user_name(u)).unwrap_or_default(),
        _ => String::new(),
    }
}

/// The devices `/devices` would list for this request, in order.
pub fn select<'a>(t: &'a Tenant, req: &Req) -> Result<Vec<&'a Device>, Reply> {
    let mut v: Vec<&Device> = t.devices.iter().filter(|d| passes(t, d, req)).collect();
    let ordering = req.list("ordering");
    if !ordering.is_empty() {
        let mut keys: Vec<(&str, bool)> = Vec::new();
        for o in &ordering {
            let (name, desc) = match o.strip_prefix('-') {
                Some(n) => (n, true),
                None => (o.as_str(), false),
            };
            if !ORDER_KEYS.contains(&name) {
                return Err(Reply::json_status(
                    400,
                    &json!({"ordering": [format!("Invalid ordering field: {name}")]}),
                ));
            }
            keys.push((name, desc));
        }
        let mut keyed: Vec<(Vec<String>, &Device)> = v
            .into_iter()
            .map(|d| (keys.iter().map(|(k, _)| order_key(t, d, k)).collect(), d))
            .collect();
        keyed.sort_by(|a, b| {
            for (i, (_, desc)) in keys.iter().enumerate() {
                let c = a.0[i].cmp(&b.0[i]);
                let c = if *desc { c.reverse() } else { c };
                if c != std::cmp::Ordering::Equal {
                    return c;
                }
            }
            a.1.idx.cmp(&b.1.idx)
        });
        v = keyed.into_iter().map(|(_, d)| d).collect();
    }
    Ok(v)
}

pub fn list(sh: &Shared, req: &Req) -> Reply {
    let t = sh.tenant();
    let (limit, offset) = limit_offset(req, 300, 300);
    let mut sel = match select(&t, req) {
        Ok(s) => s,
        Err(r) => return r,
    };
    {
        let skips = crate::server::lock(&sh.listing_skips);
        if !skips.is_empty() {
            sel.retain(|d| !skips.contains(&t.device_id(d.idx)));
        }
    }
    let total = sel.len();
    let items: Vec<Value> = sel
        .iter()
        .skip(offset)
        .take(limit)
        .map(|d| render::device_item(&t, d))
        .collect();
    let next = if offset + limit < total {
        format!(
            "<{}>",
            url_with(
                sh.base(),
                req,
                &[
                    ("limit", Some(limit.to_string())),
                    ("offset", Some((offset + limit).to_string()))
                ]
            )
        )
    } else {
        "<None>".to_owned()
    };
    let prev = if offset > 0 {
        let p = offset.saturating_sub(limit);
        format!(
            "<{}>",
            url_with(
                sh.base(),
                req,
                &[
                    ("limit", Some(limit.to_string())),
                    ("offset", if p == 0 { None } else { Some(p.to_string()) })
                ]
            )
        )
    } else {
        "<None>".to_owned()
    };
    Reply::json(&Value::Array(items))
        .with_header("X-Total-Count", total.to_string())
        .with_header("X-Total-Pages", total.div_ceil(limit).max(1).to_string())
        .with_header(
            "Link",
            format!("{next}; rel=\"next\", {prev}; rel=\"prev\""),
        )
}

fn with_device(sh: &Shared, req: &Req, f: impl FnOnce(&Tenant, &Device) -> Reply) -> Reply {
    let t = sh.tenant();
    let Some(id) = parse_uuid(req.param(0)) else {
        return not_found();
    };
    match t.device_by_uuid(id) {
        Some(d) => f(&t, d),
        None => not_found(),
    }
}

pub fn one(sh: &Shared, req: &Req) -> Reply {
    with_device(sh, req, |t, d| Reply::json(&render::device_item(t, d)))
}

/// Android details have their own shape; Windows devices have none documented and are left
/// out (404, assumed), as Kandji leaves families out of endpoints that do not serve them.
pub fn details(sh: &Shared, req: &Req) -> Reply {
    with_device(sh, req, |t, d| match d.platform {
        crate::catalog::Platform::Android => Reply::json(&render::android_details(t, d)),
        crate::catalog::Platform::Windows => not_found(),
        _ => Reply::json(&render::device_details(t, d)),
    })
}

/// `{device_id, apps}` in one response, with the pagination headers the recorded answer
/// carries (`Link: <None>; …`, `X-Total-Count`, `X-Total-Pages: 1`).
pub fn apps(sh: &Shared, req: &Req) -> Reply {
    with_device(sh, req, |t, d| {
        let body = match d.platform {
            crate::catalog::Platform::Android => render::android_apps(t, d),
            crate::catalog::Platform::Windows => return not_found(),
            _ => render::device_apps(t, d),
        };
        let n = body["apps"].as_array().map_or(0, Vec::len);
        Reply::json(&body)
            .with_header("Link", r#"<None>; rel="next", <None>; rel="prev""#.into())
            .with_header("X-Total-Count", n.to_string())
            .with_header("X-Total-Pages", "1".into())
    })
}

pub fn library_items(sh: &Shared, req: &Req) -> Reply {
    with_device(sh, req, |t, d| {
        Reply::json(&render::device_library_items(t, d))
    })
}

pub fn parameters(sh: &Shared, req: &Req) -> Reply {
    with_device(sh, req, |t, d| {
        Reply::json(&render::device_parameters(t, d))
    })
}

pub fn status(sh: &Shared, req: &Req) -> Reply {
    with_device(sh, req, |t, d| Reply::json(&render::device_status(t, d)))
}

fn nested(sh: &Shared, req: &Req, key: &str, rows: Vec<Value>, device_id: String) -> Reply {
    let (limit, offset) = limit_offset(req, 300, 300);
    let total = rows.len();
    let (next, previous) = super::drf_links(sh, req, total, limit, offset);
    let page: Vec<Value> = rows.into_iter().skip(offset).take(limit).collect();
    Reply::json(&json!({
        "device_id": device_id,
        key: {"count": total, "next": next, "previous": previous, "results": page},
    }))
}

pub fn activity(sh: &Shared, req: &Req) -> Reply {
    with_device(sh, req, |t, d| {
        nested(
            sh,
            req,
            "activity",
            render::device_activity(t, d),
            t.device_id(d.idx),
        )
    })
}

pub fn commands(sh: &Shared, req: &Req) -> Reply {
    with_device(sh, req, |t, d| {
        nested(
            sh,
            req,
            "commands",
            render::device_commands(t, d),
            t.device_id(d.idx),
        )
    })
}

pub fn notes(sh: &Shared, req: &Req) -> Reply {
    with_device(sh, req, |t, d| Reply::json(&render::device_notes(t, d)))
}

/// A device secret in the spec's example shape, derived from the device so it is stable.
fn secret(sh: &Shared, req: &Req, f: fn(u64) -> Value) -> Reply {
    let seed = sh.cfg.seed;
    with_device(sh, req, |_, d| {
        Reply::json(&f(crate::util::h(&[seed, d.idx as u64, 0x5EC])))
    })
}

fn code(x: u64, groups: &[usize]) -> String {
    const A: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut v = x;
    groups
        .iter()
        .map(|n| {
            (0..*n)
                .map(|_| {
                    let c = A[(v % A.len() as u64) as usize] as char;
                    v = v.rotate_right(5) ^ 0x9E37_79B9;
                    c
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// `GET /devices/{id}/secrets/filevaultkey` (spec: `{key}`).
pub fn secret_filevaultkey(sh: &Shared, req: &Req) -> Reply {
    secret(sh, req, |x| json!({"key": code(x, &[4, 4, 4, 4, 4, 4])}))
}

/// `GET /devices/{id}/secrets/bypasscode` (spec: `{device_based_albc, user_based_albc}`).
pub fn secret_bypasscode(sh: &Shared, req: &Req) -> Reply {
    secret(sh, req, |x| {
        let c = code(x, &[5, 5, 4, 4, 4, 4]);
        json!({"device_based_albc": c, "user_based_albc": c})
    })
}

/// `GET /devices/{id}/secrets/unlockpin` (spec: `{pin}`).
pub fn secret_unlockpin(sh: &Shared, req: &Req) -> Reply {
    secret(sh, req, |x| json!({"pin": format!("{:06}", x % 1_000_000)}))
}

/// `GET /devices/{id}/secrets/recoverypassword` (spec: `{recovery_password}`).
pub fn secret_recoverypassword(sh: &Shared, req: &Req) -> Reply {
    secret(
        sh,
        req,
        |x| json!({"recovery_password": code(x, &[5, 5, 4, 4, 4, 4])}),
    )
}
