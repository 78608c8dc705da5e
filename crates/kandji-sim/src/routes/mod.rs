//! The `/api/v1` route table and shared paging helpers.

use serde_json::Value;

use crate::server::{Reply, Req, Shared, lock};
use crate::util::{b64, qenc, unb64};

pub mod ade;
pub mod audit;
pub mod devices;
pub mod org;
pub mod prism;
pub mod security;

/// Which licence an endpoint needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum License {
    None,
    Edr,
    Vuln,
}

pub type Handler = fn(&Shared, &Req) -> Reply;

pub struct Route {
    pub method: &'static str,
    pub template: &'static str,
    pub handler: Handler,
    pub license: License,
}

const fn get(template: &'static str, handler: Handler) -> Route {
    Route {
        method: "GET",
        template,
        handler,
        license: License::None,
    }
}

/// Every served endpoint. Permission keys are `"<METHOD> <template>"`.
pub fn table() -> Vec<Route> {
    let mut v = vec![
        get("/api/v1/devices", devices::list),
        get("/api/v1/devices/{device_id}", devices::one),
        get("/api/v1/devices/{device_id}/details", devices::details),
        get("/api/v1/devices/{device_id}/apps", devices::apps),
        get(
            "/api/v1/devices/{device_id}/library-items",
            devices::library_items,
        ),
        get(
            "/api/v1/devices/{device_id}/parameters",
            devices::parameters,
        ),
        get("/api/v1/devices/{device_id}/status", devices::status),
        get("/api/v1/devices/{device_id}/activity", devices::activity),
        get("/api/v1/devices/{device_id}/commands", devices::commands),
        get("/api/v1/devices/{device_id}/notes", devices::notes),
        // Device secrets: served with their permissions (a token holds them only when its
        // allow list names them), 404 for an unknown device after the permission check.
        get(
            "/api/v1/devices/{device_id}/secrets/filevaultkey",
            devices::secret_filevaultkey,
        ),
        get(
            "/api/v1/devices/{device_id}/secrets/bypasscode",
            devices::secret_bypasscode,
        ),
        get(
            "/api/v1/devices/{device_id}/secrets/unlockpin",
            devices::secret_unlockpin,
        ),
        get(
            "/api/v1/devices/{device_id}/secrets/recoverypassword",
            devices::secret_recoverypassword,
        ),
        get("/api/v1/blueprints", org::blueprints),
        get("/api/v1/blueprints/templates/", org::blueprint_templates),
        get("/api/v1/blueprints/{blueprint_id}", org::blueprint),
        get(
            "/api/v1/blueprints/{blueprint_id}/list-library-items",
            org::blueprint_items,
        ),
        get("/api/v1/tags", org::tags),
        get("/api/v1/users", org::users),
        get("/api/v1/users/{user_id}", org::user),
        get("/api/v1/integrations/apple/ade", ade::ade_tokens),
        get(
            "/api/v1/integrations/apple/ade/public_key/",
            ade::ade_public_key,
        ),
        get("/api/v1/integrations/apple/ade/devices", ade::ade_devices),
        get(
            "/api/v1/integrations/apple/ade/devices/{device_id}",
            ade::ade_device,
        ),
        get(
            "/api/v1/integrations/apple/ade/{ade_token_id}",
            ade::ade_token,
        ),
        get(
            "/api/v1/integrations/apple/ade/{ade_token_id}/devices",
            ade::ade_token_devices,
        ),
        get("/api/v1/library/custom-apps", org::custom_apps),
        get("/api/v1/library/ipa-apps", org::ipa_apps),
        get("/api/v1/library/custom-profiles", org::custom_profiles),
        get("/api/v1/library/custom-scripts", org::custom_scripts),
        get(
            "/api/v1/library/library-items/{library_item_id}/status",
            org::item_status,
        ),
        get(
            "/api/v1/library/library-items/{library_item_id}/activity",
            org::item_activity,
        ),
        get("/api/v1/self-service/categories", org::self_service),
        get("/api/v1/settings/licensing", org::licensing),
        get("/api/v1/audit/events", audit::events),
        get("/api/v1/prism/count", prism::count),
        get("/api/v1/prism/export/{export_id}", prism::export_get),
        Route {
            method: "POST",
            template: "/api/v1/prism/export",
            handler: prism::export_post,
            license: License::None,
        },
        get("/api/v1/prism/{category}", prism::category),
    ];
    for (t, hd, lic) in [
        (
            "/api/v1/threat-details",
            security::threats as Handler,
            License::Edr,
        ),
        (
            "/api/v1/behavioral-detections",
            security::behavioral,
            License::Edr,
        ),
        (
            "/api/v1/vulnerability-management/detections",
            security::vuln_detections,
            License::Vuln,
        ),
        (
            "/api/v1/vulnerability-management/vulnerabilities",
            security::vulnerabilities,
            License::Vuln,
        ),
        (
            "/api/v1/vulnerability-management/vulnerabilities/{cve_id}",
            security::vulnerability,
            License::Vuln,
        ),
        (
            "/api/v1/vulnerability-management/vulnerabilities/{cve_id}/devices",
            security::cve_devices,
            License::Vuln,
        ),
        (
            "/api/v1/vulnerability-management/vulnerabilities/{cve_id}/software",
            security::cve_software,
            License::Vuln,
        ),
    ] {
        v.push(Route {
            method: "GET",
            template: t,
            handler: hd,
            license: lic,
        });
    }
    v
}

/// All permission keys (for documentation and the CLI's default token listing).
pub fn permission_keys() -> Vec<String> {
    table()
        .iter()
        .map(|r| format!("{} {}", r.method, r.template))
        .collect()
}

/// Build a URL on `host` for `path` with the request's query, overriding some keys.
pub fn url_with(host: &str, req: &Req, set: &[(&str, Option<String>)]) -> String {
    let mut pairs: Vec<(String, String)> = req
        .query
        .iter()
        .filter(|(k, _)| !set.iter().any(|(s, _)| s == k))
        .cloned()
        .collect();
    for (k, v) in set {
        if let Some(v) = v {
            pairs.push(((*k).to_owned(), v.clone()));
        }
    }
    let qs: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", qenc(k), qenc(v)))
        .collect();
    if qs.is_empty() {
        format!("{host}{}", req.path)
    } else {
        format!("{host}{}?{}", req.path, qs.join("&"))
    }
}

/// DRF limit/offset links.
pub fn drf_links(
    sh: &Shared,
    req: &Req,
    total: usize,
    limit: usize,
    offset: usize,
) -> (Value, Value) {
    let next = if offset + limit < total {
        Value::String(url_with(
            sh.base(),
            req,
            &[
                ("limit", Some(limit.to_string())),
                ("offset", Some((offset + limit).to_string())),
            ],
        ))
    } else {
        Value::Null
    };
    let previous = if offset > 0 {
        let p = offset.saturating_sub(limit);
        let off = if p == 0 { None } else { Some(p.to_string()) };
        Value::String(url_with(
            sh.base(),
            req,
            &[("limit", Some(limit.to_string())), ("offset", off)],
        ))
    } else {
        Value::Null
    };
    (next, previous)
}

/// DRF's `PageNumberPagination` page: absent is page 1, `last` the last page; anything else
/// must be an integer from 1 to the page count (page 1 always exists, even empty), else
/// 404 `{"detail":"Invalid page."}`. That covers `page=0`, `page=-1`, `page=abc` and a page
/// past the end. An empty `page=` is page 1 (DRF ≥ 3.11: `query_params.get(…) or 1`).
pub fn drf_page(req: &Req, total: usize, size: usize) -> Result<usize, Reply> {
    let pages = total.div_ceil(size.max(1)).max(1);
    let invalid = || Reply::detail(404, "Invalid page.");
    let raw = match req.q("page") {
        None | Some("") => return Ok(1),
        Some(r) => r,
    };
    if raw == "last" {
        return Ok(pages);
    }
    // Django's `validate_number`: an integer, or a float with no fraction ("2.0").
    let n = raw
        .trim()
        .parse::<i64>()
        .ok()
        .or_else(|| {
            raw.trim()
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite() && f.fract() == 0.0)
                .map(|f| f as i64)
        })
        .ok_or_else(invalid)?;
    if n < 1 || n as usize > pages {
        return Err(invalid());
    }
    Ok(n as usize)
}

/// Page-number links (`page`, 1-based). `host` may be the web host.
pub fn page_links(host: &str, req: &Req, total: usize, size: usize, page: usize) -> (Value, Value) {
    let next = if page * size < total {
        Value::String(url_with(
            host,
            req,
            &[("page", Some((page + 1).to_string()))],
        ))
    } else {
        Value::Null
    };
    let previous = if page > 1 {
        Value::String(url_with(
            host,
            req,
            &[(
                "page",
                if page == 2 {
                    None
                } else {
                    Some((page - 1).to_string())
                },
            )],
        ))
    } else {
        Value::Null
    };
    (next, previous)
}

/// `limit` and `offset` with a default and a hard cap (values above the cap are clamped).
///
/// DRF's `LimitOffsetPagination`: a `limit` that is not a positive integer (`0`, `-5`, `abc`)
/// is the default limit, and an `offset` that is not a non-negative integer is 0.
pub fn limit_offset(req: &Req, default: usize, cap: usize) -> (usize, usize) {
    let limit = req
        .qn("limit")
        .filter(|&l| l > 0)
        .unwrap_or(default)
        .clamp(1, cap);
    (limit, req.qn("offset").unwrap_or(0))
}

/// An opaque cursor: base64 of the fields plus an issue serial and simulated time.
pub fn make_cursor(sh: &Shared, fields: &[String]) -> String {
    let serial = sh.next_cursor_serial();
    let now = sh.clock.now_us();
    let mut s = fields.join("|");
    s.push_str(&format!("|{serial}|{now}"));
    b64(s.as_bytes())
}

/// A cursor endpoint's largest page: `cap`, or the `page_cap` fault knob's if smaller.
pub fn page_cap(sh: &Shared, cap: usize) -> usize {
    match lock(&sh.faults).faults.page_cap {
        0 => cap,
        n => n.min(cap),
    }
}

/// The answer to a custom cursor the simulator refuses: 400 `{"detail":"Invalid cursor"}`,
/// or 404 with the `cursor_refusal_404` knob.
pub fn refused_cursor(sh: &Shared) -> Reply {
    let status = if lock(&sh.faults).faults.cursor_refusal_404 {
        404
    } else {
        400
    };
    Reply::detail(status, "Invalid cursor")
}

/// Decode a custom cursor; `Err` is the refusal to send (see [`refused_cursor`]).
pub fn read_cursor(sh: &Shared, c: &str, n_fields: usize) -> Result<Vec<String>, Reply> {
    let bad = || refused_cursor(sh);
    let raw = unb64(c).ok_or_else(bad)?;
    let s = String::from_utf8(raw).map_err(|_| bad())?;
    let parts: Vec<String> = s.split('|').map(str::to_owned).collect();
    if parts.len() != n_fields + 2 {
        return Err(bad());
    }
    let serial: u64 = parts[n_fields].parse().map_err(|_| bad())?;
    let issued: i64 = parts[n_fields + 1].parse().map_err(|_| bad())?;
    if !sh.cursor_ok(serial, issued) {
        return Err(bad());
    }
    Ok(parts[..n_fields].to_vec())
}

pub fn parse_uuid_param(s: &str) -> Option<u128> {
    crate::util::parse_uuid(s)
}

pub fn not_found() -> Reply {
    Reply::detail(404, "Not found.")
}
