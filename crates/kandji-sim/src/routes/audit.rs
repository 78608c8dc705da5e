//! `/audit/events`: cursor paging with `sort_by`, `start_date`, `end_date`.

use serde_json::{Value, json};

use super::{make_cursor, read_cursor, url_with};
use crate::model::{AuditEvent, Tenant};
use crate::render;
use crate::server::{Reply, Req, Shared};
use crate::util::parse_ts;

const DAY: i64 = 86_400_000_000;

fn key(e: &AuditEvent, by_id: bool) -> (i64, u128) {
    if by_id { (0, e.ulid) } else { (e.ts, e.ulid) }
}

/// Indices of the events matching the date range, in the requested order.
pub fn ordered(t: &Tenant, sort: &str, start: Option<i64>, end: Option<i64>) -> Vec<usize> {
    let by_id = sort.trim_start_matches('-') == "id";
    let mut v: Vec<usize> = (0..t.audit.len())
        .filter(|&i| {
            start.is_none_or(|s| t.audit[i].ts >= s) && end.is_none_or(|e| t.audit[i].ts <= e)
        })
        .collect();
    if by_id {
        v.sort_by_key(|&i| t.audit[i].ulid);
    }
    if sort.starts_with('-') {
        v.reverse();
    }
    v
}

fn parse_bound(s: Option<&str>, end: bool) -> Result<Option<i64>, Reply> {
    match s {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => {
            let v = parse_ts(s).ok_or_else(|| Reply::detail(400, &format!("Invalid date: {s}")))?;
            Ok(Some(if end && s.trim().len() == 10 {
                v + DAY - 1
            } else {
                v
            }))
        }
    }
}

pub fn events(sh: &Shared, req: &Req) -> Reply {
    let t = sh.tenant();
    let limit = req
        .qn("limit")
        .filter(|&n| n > 0)
        .unwrap_or(100)
        .clamp(1, super::page_cap(sh, 500));
    let sort = req.q("sort_by").unwrap_or("occurred_at").to_owned();
    if !["occurred_at", "-occurred_at", "id", "-id"].contains(&sort.as_str()) {
        return Reply::detail(400, &format!("Invalid sort_by: {sort}"));
    }
    let by_id = sort.trim_start_matches('-') == "id";
    let desc = sort.starts_with('-');
    let (start, end) = match (
        parse_bound(req.q("start_date"), false),
        parse_bound(req.q("end_date"), true),
    ) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let order = ordered(&t, &sort, start, end);
    // Position of the first event after (or the block before) the cursor key.
    let (from, to) = match req.q("cursor") {
        None => (0, limit.min(order.len())),
        Some(c) => {
            let f = match read_cursor(sh, c, 4) {
                Ok(f) => f,
                Err(r) => return r,
            };
            if f[0] != sort {
                return super::refused_cursor(sh);
            }
            let k: (i64, u128) = (f[2].parse().unwrap_or(0), f[3].parse().unwrap_or(0));
            let after = |i: usize| {
                let ek = key(&t.audit[i], by_id);
                if desc { ek < k } else { ek > k }
            };
            let p = order.partition_point(|&i| !after(i));
            if f[1] == "a" {
                (p, (p + limit).min(order.len()))
            } else {
                let q = order.partition_point(|&i| {
                    let ek = key(&t.audit[i], by_id);
                    if desc { ek > k } else { ek < k }
                });
                (q.saturating_sub(limit), q)
            }
        }
    };
    let page = &order[from..to];
    let results: Vec<Value> = page
        .iter()
        .map(|&i| render::audit_item(&t, &t.audit[i]))
        .collect();
    let cur = |dir: &str, i: usize| {
        let k = key(&t.audit[i], by_id);
        make_cursor(
            sh,
            &[
                sort.clone(),
                dir.to_owned(),
                k.0.to_string(),
                k.1.to_string(),
            ],
        )
    };
    let next = match page.last() {
        Some(&last) if to < order.len() => {
            json!(url_with(
                sh.base(),
                req,
                &[
                    ("limit", Some(limit.to_string())),
                    ("cursor", Some(cur("a", last)))
                ]
            ))
        }
        _ => Value::Null,
    };
    let previous = match page.first() {
        Some(&first) if from > 0 => {
            json!(url_with(
                sh.base(),
                req,
                &[
                    ("limit", Some(limit.to_string())),
                    ("cursor", Some(cur("b", first)))
                ]
            ))
        }
        _ => Value::Null,
    };
    Reply::json(&json!({"results": results, "next": next, "previous": previous}))
}
