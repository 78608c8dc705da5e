//! EDR (threats, behavioral detections) and vulnerability management.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{drf_links, limit_offset, make_cursor, not_found, read_cursor, url_with};
use crate::catalog;
use crate::model::Tenant;
use crate::prism::Filter;
use crate::render;
use crate::server::{Reply, Req, Shared};
use crate::util::{parse_ts, ts_naive_t, ts_z};

const DAY: i64 = 86_400_000_000;

fn sort_rows(
    rows: &mut [Value],
    sort: Option<&str>,
    allowed: &[&str],
    default: &str,
) -> Result<(), Reply> {
    let s = sort.unwrap_or(default);
    let (k, desc) = match s.strip_prefix('-') {
        Some(k) => (k, true),
        None => (s, false),
    };
    if !allowed.contains(&k) {
        return Err(Reply::detail(400, &format!("Invalid sort_by: {s}")));
    }
    let get = |v: &Value| -> String {
        let x = if k == "device_name" && v.get("device_info").is_some() {
            &v["device_info"]["name"]
        } else if (k == "parent_process_name" || k == "target_process_name")
            && v.get("parent_process").is_some()
        {
            &v[k.trim_end_matches("_name")]["name"]
        } else if k == "status" && v.get("threat_status").is_some() {
            &v["threat_status"]
        } else {
            &v[k]
        };
        x.as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| x.to_string())
    };
    rows.sort_by(|a, b| {
        let c = get(a).cmp(&get(b));
        if desc { c.reverse() } else { c }
    });
    Ok(())
}

pub fn threats(sh: &Shared, req: &Req) -> Reply {
    let t = sh.tenant();
    let now = t.now_us;
    let since = req.qn("date_range").map(|d| now - d as i64 * DAY);
    let mut rows: Vec<Value> = t
        .threats
        .iter()
        .filter(|th| th.ts <= now && since.is_none_or(|s| th.ts >= s))
        .map(|th| render::threat_item(&t, th))
        .filter(|v| {
            let s = |k: &str| v[k].as_str().unwrap_or("").to_owned();
            req.q("classification")
                .is_none_or(|c| s("classification").eq_ignore_ascii_case(c))
                && req.q("device_id").is_none_or(|d| s("device_id") == d)
                && req
                    .q("status")
                    .is_none_or(|st| s("status").eq_ignore_ascii_case(st))
                && req.q("term").is_none_or(|term| {
                    let term = term.to_lowercase();
                    ["device_name", "file_hash", "file_path"]
                        .iter()
                        .any(|k| s(k).to_lowercase().contains(&term))
                })
        })
        .collect();
    if let Err(r) = sort_rows(
        &mut rows,
        req.q("sort_by"),
        &[
            "threat_name",
            "classification",
            "device_name",
            "process_name",
            "process_owner",
            "detection_date",
            "status",
        ],
        "-detection_date",
    ) {
        return r;
    }
    let malware = rows
        .iter()
        .filter(|v| v["classification"] == "MALWARE")
        .count();
    let pup = rows.len() - malware;
    let (limit, offset) = limit_offset(req, 100, 1000);
    let total = rows.len();
    let (next, previous) = drf_links(sh, req, total, limit, offset);
    let page: Vec<Value> = rows.into_iter().skip(offset).take(limit).collect();
    Reply::json(&json!({
        "count": total, "next": next, "previous": previous,
        "malware_count": malware, "pup_count": pup, "results": page,
    }))
}

pub fn behavioral(sh: &Shared, req: &Req) -> Reply {
    let t = sh.tenant();
    let now = t.now_us;
    let since = req.qn("date_range").map(|d| now - d as i64 * DAY);
    let from = req.q("detection_date_from").and_then(parse_ts);
    let to = req
        .q("detection_date_to")
        .and_then(parse_ts)
        .map(|v| v + DAY - 1);
    let tags = req.list("informational_tags");
    let mut rows: Vec<Value> = t
        .behavioral
        .iter()
        .filter(|b| {
            b.ts <= now
                && since.is_none_or(|s| b.ts >= s)
                && from.is_none_or(|f| b.ts >= f)
                && to.is_none_or(|x| b.ts <= x)
        })
        .map(|b| render::behavioral_item(&t, b))
        .filter(|v| {
            let s = |k: &str| v[k].as_str().unwrap_or("").to_owned();
            let status = req.q("status").or(req.q("threat_status"));
            req.q("threat_id").is_none_or(|x| s("threat_id") == x)
                && req
                    .q("classification")
                    .is_none_or(|c| s("classification").eq_ignore_ascii_case(c))
                && status.is_none_or(|st| s("threat_status").eq_ignore_ascii_case(st))
                && req
                    .q("device_id")
                    .is_none_or(|d| v["device_info"]["id"] == d)
                && req.q("malware_family").is_none_or(|m| {
                    v["malware_family"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|x| x == m))
                })
                && req
                    .q("parent_process_name")
                    .is_none_or(|p| v["parent_process"]["name"] == p)
                && req
                    .q("target_process_name")
                    .is_none_or(|p| v["target_process"]["name"] == p)
                && (tags.is_empty()
                    || v["informational_tags"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|x| tags.iter().any(|tg| x == tg.as_str()))))
                && req
                    .q("term")
                    .is_none_or(|term| v.to_string().to_lowercase().contains(&term.to_lowercase()))
        })
        .collect();
    if let Err(r) = sort_rows(
        &mut rows,
        req.q("sort_by"),
        &[
            "threat_id",
            "classification",
            "device_name",
            "parent_process_name",
            "target_process_name",
            "detection_date",
            "status",
        ],
        "-detection_date",
    ) {
        return r;
    }
    let malicious = rows
        .iter()
        .filter(|v| v["classification"] == "malicious")
        .count();
    let suspicious = rows.len() - malicious;
    let (limit, offset) = limit_offset(req, 100, 1000);
    let total = rows.len();
    let (next, previous) = drf_links(sh, req, total, limit, offset);
    let page: Vec<Value> = rows.into_iter().skip(offset).take(limit).collect();
    Reply::json(&json!({
        "total_count": total, "next": next, "previous": previous,
        "malicious_count": malicious, "suspicious_count": suspicious, "results": page,
    }))
}

/// Accept the documented (spec) names as aliases of the real ones.
fn vuln_filter(raw: Option<&str>) -> Result<Filter, Reply> {
    let mut f = Filter::parse(raw).map_err(|e| Reply::detail(400, &e))?;
    for c in &mut f.clauses {
        let real = match c.0.as_str() {
            "cve_description" => "description",
            "cvss_severity" => "severity",
            "first_detection_date" | "latest_detection_date" => "detection_datetime",
            _ => continue,
        };
        c.0 = real.to_owned();
    }
    Ok(f)
}

pub fn vuln_detections(sh: &Shared, req: &Req) -> Reply {
    let t = sh.tenant();
    let size = req
        .qn("size")
        .filter(|&n| n > 0)
        .unwrap_or(300)
        .clamp(1, super::page_cap(sh, 300));
    let filter = match vuln_filter(req.q("filter")) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let raw = req.q("filter").unwrap_or("").to_owned();
    let qh = crate::util::hs(&raw, &[7]).to_string();
    let start = match req.q("after") {
        Some(c) if !c.is_empty() => match read_cursor(sh, c, 2) {
            Ok(f) if f[0] == qh => f[1].parse::<usize>().unwrap_or(0),
            Ok(_) => return super::refused_cursor(sh),
            Err(r) => return r,
        },
        _ => 0,
    };
    let since = filter
        .clauses
        .iter()
        .filter(|(k, op, _)| k == "detection_datetime" && (op == "gte" || op == "gt"))
        .filter_map(|(_, _, v)| v.as_str().and_then(parse_ts))
        .max();
    let mut results = Vec::new();
    let mut next_pos = None;
    for (i, v) in t.vulns.iter().enumerate().skip(start) {
        if since.is_some_and(|s| v.ts < s) || !v.open() || t.device_pos(v.device).is_none() {
            continue;
        }
        let row = render::vuln_item(&t, v);
        if !filter.matches(&row) {
            continue;
        }
        if results.len() == size {
            next_pos = Some(i);
            break;
        }
        results.push(row);
    }
    let next = next_pos
        .map(|p| {
            json!(url_with(
                sh.base(),
                req,
                &[
                    ("size", Some(size.to_string())),
                    ("after", Some(make_cursor(sh, &[qh.clone(), p.to_string()])))
                ]
            ))
        })
        .unwrap_or(Value::Null);
    Reply::json(&json!({"next": next, "previous": null, "results": results}))
}

struct CveAgg {
    devices: BTreeMap<u32, i64>,
    first: i64,
    latest: i64,
}

fn aggregate(t: &Tenant) -> BTreeMap<u8, CveAgg> {
    let mut m: BTreeMap<u8, CveAgg> = BTreeMap::new();
    for v in &t.vulns {
        if !v.open() || t.device_pos(v.device).is_none() {
            continue;
        }
        let a = m.entry(v.cve).or_insert(CveAgg {
            devices: BTreeMap::new(),
            first: v.ts,
            latest: v.ts,
        });
        a.devices.entry(v.device).or_insert(v.ts);
        a.first = a.first.min(v.ts);
        a.latest = a.latest.max(v.ts);
    }
    m
}

fn page_size(req: &Req) -> (usize, usize) {
    (
        req.qn("page").unwrap_or(1).max(1),
        req.qn("size").filter(|&n| n > 0).unwrap_or(50).clamp(1, 50),
    )
}

fn ps_reply(rows: Vec<Value>, page: usize, size: usize) -> Reply {
    let total = rows.len();
    let results: Vec<Value> = rows
        .into_iter()
        .skip((page - 1) * size)
        .take(size)
        .collect();
    Reply::json(&json!({"total": total, "page": page, "size": size, "results": results}))
}

/// One row per detected CVE (the `/vulnerabilities` items).
pub fn cve_rows(t: &Tenant) -> Vec<Value> {
    aggregate(t)
        .iter()
        .map(|(&c, a)| {
            let (id, sw, _, sev, score, kev) = render::cve(c);
            json!({
                "cve_id": id, "severity": sev, "cvss_score": score, "kev_score": kev,
                "cve_link": format!("https://nvd.nist.gov/vuln/detail/{id}"),
                "first_detection_date": ts_z(a.first), "latest_detection_date": ts_z(a.latest),
                "device_count": a.devices.len(), "software": [sw], "status": "Active",
            })
        })
        .collect()
}

pub fn vulnerabilities(sh: &Shared, req: &Req) -> Reply {
    let t = sh.tenant();
    let filter = match Filter::parse(req.q("filter")) {
        Ok(f) => f,
        Err(e) => return Reply::detail(400, &e),
    };
    let mut rows: Vec<Value> = cve_rows(&t)
        .into_iter()
        .filter(|r| filter.matches(r))
        .collect();
    let allowed = [
        "age",
        "cve_id",
        "cvss_score",
        "device_count",
        "known_exploit",
        "software",
        "severity",
        "status",
    ];
    if let Some(s) = req.q("sort_by") {
        let (k, desc) = s.strip_prefix('-').map(|k| (k, true)).unwrap_or((s, false));
        if !allowed.contains(&k) {
            return Reply::detail(400, &format!("Invalid sort_by: {s}"));
        }
        let k = match k {
            "age" => "first_detection_date",
            "known_exploit" => "kev_score",
            k => k,
        };
        rows.sort_by(|a, b| {
            let c = match (a[k].as_f64(), b[k].as_f64()) {
                (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
                _ => a[k].to_string().cmp(&b[k].to_string()),
            };
            if desc { c.reverse() } else { c }
        });
    }
    let (page, size) = page_size(req);
    ps_reply(rows, page, size)
}

fn find_cve(id: &str) -> Option<u8> {
    catalog::cve_table()
        .iter()
        .position(|c| c.0.eq_ignore_ascii_case(id))
        .map(|p| p as u8)
}

pub fn vulnerability(sh: &Shared, req: &Req) -> Reply {
    let t = sh.tenant();
    let Some(c) = find_cve(req.param(0)) else {
        return not_found();
    };
    let agg = aggregate(&t);
    let a = agg.get(&c);
    let (id, sw, _, sev, score, kev) = render::cve(c);
    let pubd = render::cve_published(c);
    Reply::json(&json!({
        "cve_id": id, "description": format!("{id}: a flaw in {sw} allows code execution."),
        "cve_link": format!("https://nvd.nist.gov/vuln/detail/{id}"), "cvss_score": score, "severity": sev,
        "kev_score": kev, "epss_score": 0.0123,
        "cve_published_at": ts_naive_t(pubd), "cve_modified_at": ts_naive_t(pubd + DAY),
        "first_detection_date": a.map(|a| ts_z(a.first)), "latest_detection_date": a.map(|a| ts_z(a.latest)),
        "device_count": a.map(|a| a.devices.len()).unwrap_or(0), "software_count": 1,
    }))
}

pub fn cve_devices(sh: &Shared, req: &Req) -> Reply {
    let t = sh.tenant();
    let Some(c) = find_cve(req.param(0)) else {
        return not_found();
    };
    let (_, sw, _, _, _, _) = render::cve(c);
    let agg = aggregate(&t);
    let rows: Vec<Value> = agg
        .get(&c)
        .map(|a| {
            a.devices
                .iter()
                .filter_map(|(&idx, &ts)| {
                    let d = &t.devices[t.device_pos(idx)?];
                    Some(json!({
                        "device_id": t.device_id(idx), "name": t.device_name(d), "serial_number": t.serial(idx, d.platform),
                        "model": render::model(d).name, "os_version": render::os(d).version,
                        "blueprint_id": t.blueprint_id(d.blueprint), "blueprint_name": t.blueprint_name(d.blueprint),
                        "assigned_user": d.user.map(|u| t.user_name(u)).unwrap_or_default(), "no_of_installs": 1,
                        "software_summary": {"name": sw, "version": crate::derive::app_version(usize::from(c), 0), "path": format!("/Applications/{sw}.app"), "detection_date": ts_z(ts)},
                    }))
                })
                .collect()
        })
        .unwrap_or_default();
    let (page, size) = page_size(req);
    ps_reply(rows, page, size)
}

pub fn cve_software(sh: &Shared, req: &Req) -> Reply {
    let t = sh.tenant();
    let Some(c) = find_cve(req.param(0)) else {
        return not_found();
    };
    let (_, sw, bundle, _, _, _) = render::cve(c);
    let agg = aggregate(&t);
    let rows: Vec<Value> = agg
        .get(&c)
        .map(|a| {
            let bps: BTreeMap<u16, ()> = a
                .devices
                .keys()
                .filter_map(|&i| t.device_pos(i).map(|p| (t.devices[p].blueprint, ())))
                .collect();
            let blueprints: Vec<Value> =
                bps.keys().map(|&b| json!({"id": t.blueprint_id(b), "name": t.blueprint_name(b)})).collect();
            vec![json!({
                "name": sw, "bundle_id": bundle, "type": null, "num_devices": a.devices.len(), "num_versions": 1,
                "blueprints": blueprints,
                "software_versions": [{"version": crate::derive::app_version(usize::from(c), 0), "devices_impacted": a.devices.len(), "latest_detection_date": ts_z(a.latest), "blueprints": blueprints}],
            })]
        })
        .unwrap_or_default();
    let (page, size) = page_size(req);
    ps_reply(rows, page, size)
}
