//! Prism categories, count and export.

use serde_json::{Value, json};

use super::{make_cursor, not_found, read_cursor};
use crate::prism::{self, Filter, Pos, Query};
use crate::server::{Export, Reply, Req, Shared, lock};
use crate::util::{hs, ts_date, ts_plus, uuid_of, uuid_u128};

fn query_of(req: &Req, category: &str) -> Result<Query, Reply> {
    let raw = req.q("filter").unwrap_or("").to_owned();
    let filter = Filter::parse(Some(&raw)).map_err(|e| Reply::detail(400, &e))?;
    Ok(Query {
        category: category.to_owned(),
        blueprint_ids: req.list("blueprint_ids"),
        device_families: req.list("device_families"),
        filter_raw: raw,
        filter,
    })
}

/// `prism::count`, memoised per query while the tenant is unchanged (same simulated minute).
fn cached_count(sh: &Shared, t: &crate::model::Tenant, q: &Query) -> Option<u64> {
    let key = (q.hash(), t.step);
    if let Some(v) = lock(&sh.count_cache).get(&key) {
        return *v;
    }
    let v = prism::count(t, q);
    let mut cache = lock(&sh.count_cache);
    if cache.len() > 256 {
        cache.clear();
    }
    cache.insert(key, v);
    v
}

/// 400 for a filter key that is not one of the category's columns (assumed: the live API
/// most likely refuses it rather than matching nothing). `app_name` is taken for `apps`, as
/// the 2026 export example writes it.
fn unknown_filter_key(t: &crate::model::Tenant, cat: &str, f: &Filter) -> Option<Reply> {
    if f.is_empty() || !prism::is_category(cat) {
        return None;
    }
    let mut columns = prism::columns(t, cat);
    columns.push("app_name".into());
    f.unknown_key(&columns)
        .map(|k| Reply::detail(400, &format!("Invalid filter key: {k}")))
}

fn invalid_category(c: &str) -> Reply {
    Reply::detail(400, &format!("Invalid category: {c}"))
}

pub fn category(sh: &Shared, req: &Req) -> Reply {
    let cat = req.param(0).to_owned();
    let Some((_, total_null)) = prism::CATEGORIES.iter().find(|(n, _)| *n == cat) else {
        return invalid_category(&cat);
    };
    if sh.cfg.refused_prism_categories.contains(&cat) {
        return invalid_category(&cat);
    }
    let q = match query_of(req, &cat) {
        Ok(q) => q,
        Err(r) => return r,
    };
    if let Some(r) = unknown_filter_key(&sh.tenant(), &cat, &q.filter) {
        return r;
    }
    let qh = q.hash().to_string();
    let limit = req
        .qn("limit")
        .filter(|&n| n > 0)
        .unwrap_or(300)
        .clamp(1, super::page_cap(sh, 300));
    let start = match req.q("cursor") {
        Some(c) if !c.is_empty() => match read_cursor(sh, c, 3) {
            Ok(f) if f[0] == qh => Some(Pos {
                dev: f[1].parse().unwrap_or(0),
                row: f[2].parse().unwrap_or(0),
            }),
            Ok(_) => return super::refused_cursor(sh),
            Err(r) => return r,
        },
        _ => None,
    };
    let offset = if start.is_some() {
        0
    } else {
        req.qn("offset").unwrap_or(0)
    };
    let t = sh.tenant();
    let (data, next) = prism::page(&t, &q, start, offset, limit);
    let total = if *total_null {
        None
    } else {
        cached_count(sh, &t, &q)
    };
    let cursor = next.map(|p| make_cursor(sh, &[qh, p.dev.to_string(), p.row.to_string()]));
    Reply::json(&json!({
        "offset": if start.is_some() { Value::Null } else { json!(offset) },
        "limit": limit,
        "total": total,
        "data": data,
        "cursor": cursor,
    }))
}

pub fn count(sh: &Shared, req: &Req) -> Reply {
    let cat = req.q("category").unwrap_or("").to_owned();
    if !prism::is_category(&cat) {
        return invalid_category(&cat);
    }
    let q = match query_of(req, &cat) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let t = sh.tenant();
    let (n, approx) = match cached_count(sh, &t, &q) {
        Some(n) => (n, false),
        None => {
            let unfiltered = Query {
                filter: Filter::default(),
                filter_raw: String::new(),
                ..q
            };
            (prism::count(&t, &unfiltered).unwrap_or(0), true)
        }
    };
    Reply::json(&json!({"count": n, "approximate": approx}))
}

fn export_json(sh: &Shared, e: &Export, tenant: &str) -> Value {
    let done = e.polls >= sh.cfg.export_polls;
    let failed = done && e.fails;
    let done = done && !e.fails;
    let file = format!(
        "export-{}-{}-{}.csv",
        ts_date(e.created_at),
        e.category,
        e.id
    );
    let tenant_id = uuid_of(uuid_u128("tenant", &[sh.cfg.seed]));
    json!({
        "id": e.id,
        "status": if done { "success" } else if failed { "failed" } else { "pending" },
        "category": e.category,
        "args": e.args,
        "error_msg": if failed { json!("Export failed: the report could not be generated. Please try again.") } else { Value::Null },
        "path": if done { json!(format!("visibility-export-prd/{tenant_id}/{file}")) } else { Value::Null },
        "signed_url": if done {
            json!(format!(
                "{}/__sim/export/{}.csv?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ASIASIMULATED%2F20261101%2Fus-west-2%2Fs3%2Faws4_request&X-Amz-Date=20261101T000000Z&X-Amz-Expires=172800&X-Amz-SignedHeaders=host&X-Amz-Signature={}",
                sh.base(), e.id, e.signature
            ))
        } else { Value::Null },
        "created_at": ts_plus(e.created_at),
        "updated_at": ts_plus(e.created_at + if done { 1_042_000 } else { 0 }),
        "tenant": tenant,
    })
}

pub fn export_post(sh: &Shared, req: &Req) -> Reply {
    let body: Value = match serde_json::from_slice(&req.body) {
        Ok(v) => v,
        Err(_) if req.body.is_empty() => json!({}),
        Err(e) => return Reply::detail(400, &format!("JSON parse error - {e}")),
    };
    let cat = body
        .get("category")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if (!prism::is_category(&cat) && !prism::EXPORT_ONLY.contains(&cat.as_str()))
        || sh.cfg.refused_prism_categories.contains(&cat)
    {
        return invalid_category(&cat);
    }
    let filter = body.get("filter").cloned().unwrap_or(json!({}));
    if !filter.is_null() {
        match Filter::from_value(&filter) {
            Err(e) => return Reply::detail(400, &e),
            Ok(f) => {
                if let Some(r) = unknown_filter_key(&sh.tenant(), &cat, &f) {
                    return r;
                }
            }
        }
    }
    let arr = |k: &str| {
        body.get(k)
            .cloned()
            .filter(Value::is_array)
            .unwrap_or(json!([]))
    };
    let args = json!({
        "filter": filter,
        "columns": arr("columns"),
        "sort_by": body.get("sort_by").cloned().unwrap_or(json!("")),
        "blueprint_ids": arr("blueprint_ids"),
        "device_families": arr("device_families"),
    });
    let n = sh.next_cursor_serial();
    let id = uuid_of(uuid_u128("export", &[sh.cfg.seed, n]));
    let e = Export {
        id: id.clone(),
        category: cat,
        args,
        created_at: sh.clock.now_us(),
        polls: 0,
        fails: {
            let mut f = lock(&sh.faults);
            let fails = f.faults.failed_exports > 0;
            f.faults.failed_exports = f.faults.failed_exports.saturating_sub(1);
            fails
        },
        signature: format!(
            "{:016x}{:016x}",
            hs(&id, &[sh.cfg.seed]),
            hs(&id, &[sh.cfg.seed, 1])
        ),
    };
    let tenant = sh.cfg.tenant.clone();
    let mut v = export_json(sh, &e, &tenant);
    if let Some(o) = v.as_object_mut() {
        o.remove("tenant");
    }
    lock(&sh.exports).insert(id, e);
    Reply::json(&v)
}

pub fn export_get(sh: &Shared, req: &Req) -> Reply {
    let mut ex = lock(&sh.exports);
    let Some(e) = ex.get_mut(req.param(0)) else {
        return not_found();
    };
    e.polls += 1;
    let e = e.clone();
    drop(ex);
    let mut v = export_json(sh, &e, "");
    if let Some(o) = v.as_object_mut() {
        o.remove("tenant");
    }
    Reply::json(&v)
}
