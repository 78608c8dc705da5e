//! The console's reads: events (keyset pages), devices, users, apps and chart series. Pages
//! and the JSON API share these, so both show the same thing.

use rusqlite::types::Value as Sql;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use serde::{Deserialize, Serialize};

use crate::engine::fetch::rfc3339;
use crate::store::StoreError;

pub const PAGE: usize = 50;

fn opt(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Parses a time filter: RFC 3339, `2026-11-01`, or a `datetime-local` value.
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    let full = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else if s.len() == 16 {
        format!("{s}:00Z")
    } else if s.len() == 19 {
        format!("{s}Z")
    } else {
        s.to_string()
    };
    kandji_api::parse_timestamp(&full).map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// Quotes each word so user text is never FTS5 syntax.
pub fn fts_query(q: &str) -> Option<String> {
    let words: Vec<String> = q
        .split_whitespace()
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct EventFilter {
    pub source: Option<String>,
    pub category: Option<String>,
    pub event_type: Option<String>,
    pub device: Option<String>,
    pub user: Option<String>,
    pub severity: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub q: Option<String>,
    /// The keyset cursor: `occurred_at:seq` of the last row of the previous page.
    pub after: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventView {
    pub seq: i64,
    pub source: String,
    pub stream: String,
    pub category: String,
    pub event_type: String,
    pub occurred_at: String,
    pub device_id: Option<String>,
    pub user_id: Option<String>,
    pub severity: Option<String>,
    pub summary: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventPage {
    pub events: Vec<EventView>,
    /// The cursor of the next (older) page.
    pub next: Option<String>,
}

/// The SQL and parameters of one page of events, newest first.
pub fn events_sql(f: &EventFilter, limit: usize) -> (String, Vec<Sql>) {
    let mut sql = String::from(
        "SELECT seq, source, stream, category, event_type, occurred_at, device_id, user_id,
                severity, summary FROM events WHERE 1 = 1",
    );
    let mut p: Vec<Sql> = Vec::new();
    let eq = |col: &str, v: Option<&str>, sql: &mut String, p: &mut Vec<Sql>| {
        if let Some(v) = v {
            p.push(Sql::Text(v.to_string()));
            sql.push_str(&format!(" AND {col} = ?{}", p.len()));
        }
    };
    eq("source", opt(&f.source), &mut sql, &mut p);
    eq("category", opt(&f.category), &mut sql, &mut p);
    eq("event_type", opt(&f.event_type), &mut sql, &mut p);
    eq("device_id", opt(&f.device), &mut sql, &mut p);
    eq("user_id", opt(&f.user), &mut sql, &mut p);
    eq("severity", opt(&f.severity), &mut sql, &mut p);
    if let Some(t) = opt(&f.from).and_then(parse_time) {
        p.push(Sql::Integer(t));
        sql.push_str(&format!(" AND occurred_at >= ?{}", p.len()));
    }
    if let Some(t) = opt(&f.to).and_then(parse_time) {
        p.push(Sql::Integer(t));
        sql.push_str(&format!(" AND occurred_at < ?{}", p.len()));
    }
    if let Some(q) = opt(&f.q).and_then(fts_query) {
        p.push(Sql::Text(q));
        sql.push_str(&format!(
            " AND seq IN (SELECT rowid FROM events_fts WHERE events_fts MATCH ?{})",
            p.len()
        ));
    }
    if let Some((t, s)) = opt(&f.after).and_then(|c| {
        let (a, b) = c.split_once(':')?;
        Some((a.parse::<i64>().ok()?, b.parse::<i64>().ok()?))
    }) {
        p.push(Sql::Integer(t));
        p.push(Sql::Integer(s));
        sql.push_str(&format!(
            " AND (occurred_at, seq) < (?{}, ?{})",
            p.len() - 1,
            p.len()
        ));
    }
    p.push(Sql::Integer(limit as i64 + 1));
    sql.push_str(&format!(
        " ORDER BY occurred_at DESC, seq DESC LIMIT ?{}",
        p.len()
    ));
    (sql, p)
}

pub fn events(c: &Connection, f: &EventFilter, limit: usize) -> Result<EventPage, StoreError> {
    let (sql, p) = events_sql(f, limit);
    let mut st = c.prepare(&sql)?;
    let mut raw: Vec<(i64, EventView)> = st
        .query_map(params_from_iter(p), |r| {
            let at: i64 = r.get(5)?;
            Ok((
                at,
                EventView {
                    seq: r.get(0)?,
                    source: r.get(1)?,
                    stream: r.get(2)?,
                    category: r.get(3)?,
                    event_type: r.get(4)?,
                    occurred_at: rfc3339(at),
                    device_id: r.get(6)?,
                    user_id: r.get(7)?,
                    severity: r.get(8)?,
                    summary: r.get(9)?,
                },
            ))
        })?
        .collect::<Result<_, _>>()?;
    let next = if raw.len() > limit {
        raw.truncate(limit);
        raw.last().map(|(t, e)| format!("{t}:{}", e.seq))
    } else {
        None
    };
    Ok(EventPage {
        events: raw.into_iter().map(|(_, e)| e).collect(),
        next,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct EventDetail {
    pub event: EventView,
    pub uid: String,
    pub collected_at: String,
    /// The raw record, pretty-printed.
    pub raw: String,
}

pub fn event(c: &Connection, seq: i64) -> Result<Option<EventDetail>, StoreError> {
    Ok(c.query_row(
        "SELECT seq, source, stream, category, event_type, occurred_at, device_id, user_id,
                severity, summary, uid, collected_at, raw FROM events WHERE seq = ?1",
        [seq],
        |r| {
            let raw: String = r.get(12)?;
            let pretty = serde_json::from_str::<serde_json::Value>(&raw)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or(raw);
            Ok(EventDetail {
                event: EventView {
                    seq: r.get(0)?,
                    source: r.get(1)?,
                    stream: r.get(2)?,
                    category: r.get(3)?,
                    event_type: r.get(4)?,
                    occurred_at: rfc3339(r.get(5)?),
                    device_id: r.get(6)?,
                    user_id: r.get(7)?,
                    severity: r.get(8)?,
                    summary: r.get(9)?,
                },
                uid: r.get(10)?,
                collected_at: rfc3339(r.get(11)?),
                raw: pretty,
            })
        },
    )
    .optional()?)
}

/// Distinct values for the explorer's filter menus.
pub fn distinct(c: &Connection, sql: &str) -> Result<Vec<String>, StoreError> {
    let mut st = c.prepare(sql)?;
    let v = st
        .query_map([], |r| r.get::<_, Option<String>>(0))?
        .filter_map(|r| r.ok().flatten())
        .collect();
    Ok(v)
}

/// The event types in the store, by a skip-scan of the type index: one seek per distinct
/// type, not one step per event.
pub fn event_types(c: &Connection) -> Result<Vec<String>, StoreError> {
    distinct(
        c,
        "WITH RECURSIVE t(v) AS (
           SELECT (SELECT min(event_type) FROM events)
           UNION ALL
           SELECT (SELECT min(event_type) FROM events WHERE event_type > t.v)
           FROM t WHERE t.v IS NOT NULL)
         SELECT v FROM t WHERE v IS NOT NULL",
    )
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct DeviceFilter {
    pub source: Option<String>,
    pub q: Option<String>,
    pub platform: Option<String>,
    pub blueprint: Option<String>,
    pub tag: Option<String>,
    pub sort: Option<String>,
    pub dir: Option<String>,
    pub page: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceView {
    pub source: String,
    pub id: String,
    pub name: String,
    pub serial: String,
    pub platform: String,
    pub model: String,
    pub os_version: String,
    pub blueprint: String,
    pub tags: String,
    pub user: String,
    pub last_check_in: Option<String>,
    pub compliance_pass: i64,
    pub compliance_fail: i64,
    pub filevault: String,
    pub apps: i64,
}

const DEVICE_SORTS: [(&str, &str); 8] = [
    ("name", "d.device_name"),
    ("platform", "d.platform"),
    ("model", "d.model"),
    ("os", "d.os_version"),
    ("blueprint", "d.blueprint_name"),
    ("user", "d.user_email"),
    ("checkin", "d.last_check_in"),
    ("apps", "apps"),
];

pub fn device_sorts() -> Vec<&'static str> {
    DEVICE_SORTS.iter().map(|(k, _)| *k).collect()
}

/// Devices matching the filter; `limit` None means all (CSV export).
pub fn devices(
    c: &Connection,
    f: &DeviceFilter,
    limit: Option<usize>,
) -> Result<Vec<DeviceView>, StoreError> {
    const APPS: &str = "(SELECT count(*) FROM apps a WHERE a.source = d.source
        AND a.device_id = d.key AND a.removed_at IS NULL)";
    let sort = DEVICE_SORTS
        .iter()
        .find(|(k, _)| Some(*k) == opt(&f.sort))
        .map_or("name", |(k, _)| k);
    let by_apps = sort == "apps";
    let col = DEVICE_SORTS
        .iter()
        .find(|(k, _)| *k == sort)
        .map_or("d.device_name", |(_, c)| c);
    let dir = if opt(&f.dir) == Some("desc") {
        "DESC"
    } else {
        "ASC"
    };
    // The page is chosen first (filter, sort, limit) and the per-device counts are computed
    // for its rows only, so a page costs the same on 100 or 100,000 devices.
    let mut inner = format!(
        "SELECT d.*{} FROM devices d WHERE d.removed_at IS NULL",
        if by_apps {
            format!(", {APPS} AS apps")
        } else {
            String::new()
        }
    );
    let mut p: Vec<Sql> = Vec::new();
    if let Some(v) = opt(&f.source) {
        p.push(Sql::Text(v.into()));
        inner.push_str(&format!(" AND d.source = ?{}", p.len()));
    }
    if let Some(v) = opt(&f.platform) {
        p.push(Sql::Text(v.into()));
        inner.push_str(&format!(" AND d.platform = ?{}", p.len()));
    }
    if let Some(v) = opt(&f.blueprint) {
        p.push(Sql::Text(v.into()));
        inner.push_str(&format!(" AND d.blueprint_name = ?{}", p.len()));
    }
    if let Some(v) = opt(&f.tag) {
        p.push(Sql::Text(format!("%{}%", v.replace(['%', '_'], ""))));
        inner.push_str(&format!(" AND d.tags LIKE ?{}", p.len()));
    }
    if let Some(v) = opt(&f.q) {
        p.push(Sql::Text(format!("%{}%", v.replace(['%', '_'], ""))));
        let n = p.len();
        inner.push_str(&format!(
            " AND (d.device_name LIKE ?{n} OR d.serial_number LIKE ?{n} OR d.user_email LIKE ?{n}
               OR d.user_name LIKE ?{n} OR d.key LIKE ?{n} OR d.model LIKE ?{n})"
        ));
    }
    inner.push_str(&format!(" ORDER BY {col} {dir}, d.key"));
    if let Some(l) = limit {
        p.push(Sql::Integer(l as i64));
        inner.push_str(&format!(" LIMIT ?{}", p.len()));
        p.push(Sql::Integer((f.page.unwrap_or(0) * l) as i64));
        inner.push_str(&format!(" OFFSET ?{}", p.len()));
    }
    let sql = format!(
        "SELECT d.source, d.key, d.device_name, d.serial_number, d.platform, d.model, d.os_version,
           d.blueprint_name, d.tags, coalesce(d.user_email, d.user_name), d.last_check_in,
           (SELECT count(*) FROM compliance c WHERE c.source = d.source AND c.device_id = d.key
              AND c.removed_at IS NULL AND lower(c.status) IN ('pass', 'passed', 'success', 'ok')),
           (SELECT count(*) FROM compliance c WHERE c.source = d.source AND c.device_id = d.key
              AND c.removed_at IS NULL AND lower(c.status) IN ('fail', 'failed', 'error', 'failure')),
           (SELECT x.posture FROM device_details x WHERE x.source = d.source
              AND x.key = 'filevault|' || d.key),
           {} AS apps
         FROM ({inner}) d ORDER BY {col} {dir}, d.key",
        if by_apps { "d.apps" } else { APPS }
    );
    let mut st = c.prepare(&sql)?;
    let rows = st
        .query_map(params_from_iter(p), |r| {
            let s = |i: usize| r.get::<_, Option<String>>(i).map(Option::unwrap_or_default);
            Ok(DeviceView {
                source: s(0)?,
                id: s(1)?,
                name: s(2)?,
                serial: s(3)?,
                platform: s(4)?,
                model: s(5)?,
                os_version: s(6)?,
                blueprint: s(7)?,
                tags: s(8)?,
                user: s(9)?,
                last_check_in: r.get::<_, Option<i64>>(10)?.map(rfc3339),
                compliance_pass: r.get(11)?,
                compliance_fail: r.get(12)?,
                filevault: s(13)?,
                apps: r.get(14)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

#[derive(Debug, Clone, Serialize)]
pub struct AppView {
    pub name: String,
    pub bundle_id: String,
    pub version: String,
    pub path: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ComplianceView {
    pub kind: String,
    pub name: String,
    pub status: String,
    pub reported_at: Option<String>,
    pub log: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceDetail {
    pub device: DeviceView,
    pub details: Vec<(String, String)>,
    pub apps: Vec<AppView>,
    pub compliance: Vec<ComplianceView>,
    pub events: Vec<EventView>,
}

pub fn device(c: &Connection, source: &str, id: &str) -> Result<Option<DeviceDetail>, StoreError> {
    let f = DeviceFilter {
        source: Some(source.into()),
        ..Default::default()
    };
    // One device: filter on its key through the same query.
    let mut list = devices_by_key(c, &f, id)?;
    let Some(device) = list.pop() else {
        return Ok(None);
    };
    let mut st = c.prepare(
        "SELECT category, coalesce(posture, ''), raw FROM device_details
         WHERE source = ?1 AND device_id = ?2 AND removed_at IS NULL ORDER BY category",
    )?;
    let details = st
        .query_map(params![source, id], |r| {
            let cat: String = r.get(0)?;
            let posture: String = r.get(1)?;
            Ok((cat, posture))
        })?
        .collect::<Result<_, _>>()?;
    let mut st = c.prepare(
        "SELECT coalesce(name, ''), coalesce(bundle_id, ''), coalesce(version, ''), coalesce(path, '')
         FROM apps WHERE source = ?1 AND device_id = ?2 AND removed_at IS NULL ORDER BY name LIMIT 2000",
    )?;
    let apps = st
        .query_map(params![source, id], |r| {
            Ok(AppView {
                name: r.get(0)?,
                bundle_id: r.get(1)?,
                version: r.get(2)?,
                path: r.get(3)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut st = c.prepare(
        "SELECT coalesce(kind, ''), coalesce(name, ''), coalesce(status, ''), reported_at, raw
         FROM compliance WHERE source = ?1 AND device_id = ?2 AND removed_at IS NULL
         ORDER BY status, name",
    )?;
    let compliance = st
        .query_map(params![source, id], |r| {
            let raw: String = r.get(4)?;
            let log = serde_json::from_str::<serde_json::Value>(&raw)
                .ok()
                .and_then(|v| v.get("log").and_then(|l| l.as_str()).map(str::to_string))
                .unwrap_or_default();
            let log: String = log.chars().take(400).collect();
            Ok(ComplianceView {
                kind: r.get(0)?,
                name: r.get(1)?,
                status: r.get(2)?,
                reported_at: r.get::<_, Option<i64>>(3)?.map(rfc3339),
                log,
            })
        })?
        .collect::<Result<_, _>>()?;
    let events = events(
        c,
        &EventFilter {
            source: Some(source.into()),
            device: Some(id.into()),
            ..Default::default()
        },
        100,
    )?
    .events;
    Ok(Some(DeviceDetail {
        device,
        details,
        apps,
        compliance,
        events,
    }))
}

fn devices_by_key(
    c: &Connection,
    f: &DeviceFilter,
    id: &str,
) -> Result<Vec<DeviceView>, StoreError> {
    let all = devices(
        c,
        &DeviceFilter {
            q: Some(id.to_string()),
            ..f.clone()
        },
        Some(50),
    )?;
    Ok(all.into_iter().filter(|d| d.id == id).collect())
}

#[derive(Debug, Clone, Serialize)]
pub struct UserView {
    pub source: String,
    pub id: String,
    pub email: String,
    pub name: String,
    pub department: String,
    pub active: bool,
    pub devices: i64,
}

pub fn users(c: &Connection, q: Option<&str>, page: usize) -> Result<Vec<UserView>, StoreError> {
    let like = format!("%{}%", q.unwrap_or("").trim().replace(['%', '_'], ""));
    let mut st = c.prepare(
        "SELECT source, key, coalesce(email, ''), coalesce(name, ''), coalesce(department, ''),
                coalesce(active, 0), coalesce(device_count, 0)
         FROM users WHERE removed_at IS NULL AND (email LIKE ?1 OR name LIKE ?1 OR key LIKE ?1)
         ORDER BY email LIMIT ?2 OFFSET ?3",
    )?;
    let rows = st
        .query_map(params![like, PAGE as i64, (page * PAGE) as i64], |r| {
            Ok(UserView {
                source: r.get(0)?,
                id: r.get(1)?,
                email: r.get(2)?,
                name: r.get(3)?,
                department: r.get(4)?,
                active: r.get::<_, i64>(5)? != 0,
                devices: r.get(6)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

#[derive(Debug, Clone, Serialize)]
pub struct AppSummary {
    pub name: String,
    pub bundle_id: String,
    pub version: String,
    pub devices: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AppDevice {
    pub source: String,
    pub device_id: String,
    pub device_name: String,
    pub version: String,
}

/// "Which devices have app X (at version Y)": versions of matching apps with device counts.
pub fn apps(c: &Connection, q: &str, version: Option<&str>) -> Result<Vec<AppSummary>, StoreError> {
    let like = format!("%{}%", q.trim().replace(['%', '_'], ""));
    let mut st = c.prepare(
        "SELECT coalesce(name, ''), coalesce(bundle_id, ''), coalesce(version, ''), count(*)
         FROM apps WHERE removed_at IS NULL AND (name LIKE ?1 OR bundle_id LIKE ?1)
           AND (?2 IS NULL OR version = ?2)
         GROUP BY name, bundle_id, version ORDER BY name, version DESC LIMIT 500",
    )?;
    let rows = st
        .query_map(params![like, version], |r| {
            Ok(AppSummary {
                name: r.get(0)?,
                bundle_id: r.get(1)?,
                version: r.get(2)?,
                devices: r.get(3)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

pub fn app_devices(
    c: &Connection,
    bundle_id: &str,
    version: Option<&str>,
) -> Result<Vec<AppDevice>, StoreError> {
    let mut st = c.prepare(
        "SELECT a.source, a.device_id, coalesce(d.device_name, ''), coalesce(a.version, '')
         FROM apps a LEFT JOIN devices d ON d.source = a.source AND d.key = a.device_id
         WHERE a.removed_at IS NULL AND a.bundle_id = ?1 AND (?2 IS NULL OR a.version = ?2)
         ORDER BY d.device_name LIMIT 1000",
    )?;
    let rows = st
        .query_map(params![bundle_id, version], |r| {
            Ok(AppDevice {
                source: r.get(0)?,
                device_id: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                device_name: r.get(2)?,
                version: r.get(3)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Budget use per hour over the last 24 h: (hour ms, requests, hourly limit, share).
pub fn budget_series(
    c: &Connection,
    source: &str,
    since: i64,
) -> Result<Vec<(i64, i64, i64, i64)>, StoreError> {
    let mut st = c.prepare(
        "SELECT hour, requests, coalesce(limit_hour, 10000), coalesce(share, 0) FROM budget_samples
         WHERE source = ?1 AND hour >= ?2 ORDER BY hour",
    )?;
    let rows = st
        .query_map(params![source, since], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Records per hour per category over the last 24 h: (hour ms, category, records).
pub fn record_series(
    c: &Connection,
    source: &str,
    since: i64,
) -> Result<Vec<(i64, String, i64)>, StoreError> {
    let mut st = c.prepare(
        "SELECT hour, category, records FROM record_samples
         WHERE source = ?1 AND hour >= ?2 ORDER BY hour, category",
    )?;
    let rows = st
        .query_map(params![source, since], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Live devices and users of a source (the planner's fleet size).
pub fn fleet(c: &Connection, source: &str) -> Result<(u64, u64), StoreError> {
    let d: i64 = c.query_row(
        "SELECT count(*) FROM devices WHERE source = ?1 AND removed_at IS NULL",
        [source],
        |r| r.get(0),
    )?;
    let u: i64 = c.query_row(
        "SELECT count(*) FROM users WHERE source = ?1 AND removed_at IS NULL",
        [source],
        |r| r.get(0),
    )?;
    Ok((d.max(0) as u64, u.max(0) as u64))
}
