//! The explorer's reads: events (keyset pages), devices, a device, users, apps, and the
//! devices CSV. The console's pages and JSON API share them, so both show the same thing.
//!
//! Every query here was written with its plan, and `tests` below assert each plan (`EXPLAIN
//! QUERY PLAN`): pages pick their rows through an index in the sort order (no temp B-tree for
//! the sort, no scan of a big table per row); per-device counts read a covering index or the
//! writer's counters (`devices.app_count`, `app_versions.installs`). Statistics are never
//! gathered (`ANALYZE`), so SQLite's choice does not depend on the data: the plans tested
//! on a small store are the plans of a big one.

use std::collections::HashMap;

use rusqlite::types::Value as Sql;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

pub const PAGE: usize = 50;

pub(super) fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

pub(super) fn opt(s: &Option<String>) -> Option<&str> {
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

/// Quotes each word so user text is never FTS5 syntax; control characters (a NUL byte ends
/// an FTS5 string early and made the search a 500) separate words.
pub fn fts_query(q: &str) -> Option<String> {
    let words: Vec<String> = q
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

pub(super) fn like(q: &str) -> String {
    let text: String = q.chars().filter(|c| !c.is_control()).collect();
    format!("%{}%", text.trim().replace(['%', '_'], ""))
}

impl EventFilter {
    /// What is wrong with the filter's dates, in words for the user: a date that does not
    /// parse (`2026-13-45`) or a range that ends before it starts. A bad date was once
    /// ignored, so the page listed everything as if no range had been asked for.
    pub fn problem(&self) -> Option<String> {
        let mut bounds = [None, None];
        for (i, (name, v)) in [("from", &self.from), ("to", &self.to)]
            .into_iter()
            .enumerate()
        {
            if let Some(s) = opt(v) {
                match parse_time(s) {
                    Some(t) => bounds[i] = Some(t),
                    None => {
                        return Some(format!(
                            "{name} {s:?} is not a date: use 2026-11-01, 2026-11-01T09:30 or an \
                             RFC 3339 time"
                        ));
                    }
                }
            }
        }
        match bounds {
            [Some(a), Some(b)] if a > b => {
                Some("the range ends (to) before it starts (from)".into())
            }
            _ => None,
        }
    }
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
    /// The keyset cursor of a "Newer" page: `occurred_at:seq` of the first row of the page
    /// the user is on. Wins over `after`.
    pub before: Option<String>,
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
    /// The device's name, from the inventory (lists show it, with the id on hover).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
    /// The e-mail of the admin who did an audit event, when the collector knows it (the API
    /// names actors by id only): the console then leads the summary with it, in place of
    /// "user <id>" (see [`Store::actor_emails`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

/// An admin's e-mail from the audit feed itself: the newest `admin_user` create or update
/// event about that id (by `events_type_time`: admin changes are few).
pub(crate) const ADMIN_EMAIL_SQL: &str = "SELECT json_extract(raw, '$.new_state.email') FROM events
     WHERE event_type IN ('admin_user.create', 'admin_user.update') AND +source = ?1
       AND json_extract(raw, '$.target_id') = ?2
       AND json_extract(raw, '$.new_state.email') IS NOT NULL
     ORDER BY occurred_at DESC LIMIT 1";

/// A directory user's e-mail, should an actor id be one.
pub(crate) const USER_EMAIL_SQL: &str =
    "SELECT email FROM users WHERE source = ?1 AND key = ?2 AND email IS NOT NULL AND email != ''";

/// The e-mail the collector knows for an actor id: an admin's, from the feed's own admin
/// changes, else a directory user's.
fn actor_email(c: &Connection, source: &str, id: &str) -> Result<Option<String>, StoreError> {
    let email: Option<String> = c
        .prepare_cached(ADMIN_EMAIL_SQL)?
        .query_row(params![source, id], |r| r.get(0))
        .optional()?
        .flatten();
    if email.is_some() {
        return Ok(email);
    }
    Ok(c.prepare_cached(USER_EMAIL_SQL)?
        .query_row(params![source, id], |r| r.get(0))
        .optional()?)
}

pub(crate) const DEVICE_NAME_SQL: &str = "SELECT device_name FROM devices
     WHERE source = ?1 AND device_id = ?2 ORDER BY first_seen DESC LIMIT 1";

/// The newest name the inventory has for a device (by `devices_device`).
fn device_name(
    c: &Connection,
    source: &str,
    device_id: &str,
) -> Result<Option<String>, StoreError> {
    let mut st = c.prepare_cached(DEVICE_NAME_SQL)?;
    Ok(st
        .query_row(params![source, device_id], |r| {
            r.get::<_, Option<String>>(0)
        })
        .optional()?
        .flatten()
        .filter(|n| !n.is_empty()))
}

/// Fills in each event's device name (one indexed lookup per distinct device of the page).
fn name_devices(c: &Connection, events: &mut [EventView]) -> Result<(), StoreError> {
    let mut seen: HashMap<(String, String), Option<String>> = HashMap::new();
    for e in events.iter_mut() {
        let Some(id) = e.device_id.clone() else {
            continue;
        };
        let key = (e.source.clone(), id);
        if !seen.contains_key(&key) {
            let n = device_name(c, &key.0, &key.1)?;
            seen.insert(key.clone(), n);
        }
        e.device_name = seen.get(&key).cloned().flatten();
    }
    Ok(())
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct EventPage {
    pub events: Vec<EventView>,
    /// The cursor of the next (older) page.
    pub next: Option<String>,
    /// The cursor of the previous (newer) page; none on the first page.
    pub prev: Option<String>,
}

/// A keyset cursor `occurred_at:seq`.
pub(super) fn cursor(c: &Option<String>) -> Option<(i64, i64)> {
    let (a, b) = opt(c)?.split_once(':')?;
    Some((a.parse::<i64>().ok()?, b.parse::<i64>().ok()?))
}

/// The SQL and parameters of one page of events, newest first.
/// A search whose term matches more events than this walks the events newest first and
/// probes the matches, rather than sorting every match by time.
const FTS_WALK_AT: i64 = 5_000;

/// Whether the search `q` matches more than [`FTS_WALK_AT`] events (counted up to that, by
/// streaming the full-text index: under a millisecond).
fn fts_frequent(c: &Connection, f: &EventFilter) -> Result<bool, StoreError> {
    let Some(q) = opt(&f.q).and_then(fts_query) else {
        return Ok(false);
    };
    let n: i64 = c
        .prepare_cached(
            "SELECT count(*) FROM (SELECT rowid FROM events_fts WHERE events_fts MATCH ?1 LIMIT ?2)",
        )?
        .query_row(params![q, FTS_WALK_AT + 1], |r| r.get(0))?;
    Ok(n > FTS_WALK_AT)
}

/// A page of events as SQL. With a search, a rare term's matches are looked up by id and
/// sorted (few rows); a frequent one's (`frequent`) are probed while the time index is
/// walked newest first (`+seq` keeps SQLite from the id lookups), so neither sorts
/// thousands of rows.
pub(crate) fn events_sql(f: &EventFilter, limit: usize, frequent: bool) -> (String, Vec<Sql>) {
    events_sql_at(f, keyset_of(f), limit, frequent)
}

/// [`events_sql`] for one [`Keyset`] part.
pub(crate) fn events_sql_at(
    f: &EventFilter,
    keyset: Keyset,
    limit: usize,
    frequent: bool,
) -> (String, Vec<Sql>) {
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
            " AND {}seq IN (SELECT rowid FROM events_fts WHERE events_fts MATCH ?{})",
            if frequent { "+" } else { "" },
            p.len()
        ));
    }
    match keyset {
        Keyset::Newest => {}
        Keyset::Older(t, s) => {
            p.push(Sql::Integer(t));
            p.push(Sql::Integer(s));
            sql.push_str(&format!(
                " AND (occurred_at, seq) < (?{}, ?{})",
                p.len() - 1,
                p.len()
            ));
        }
        Keyset::NewerSameTime(t, s) => {
            p.push(Sql::Integer(t));
            p.push(Sql::Integer(s));
            sql.push_str(&format!(
                " AND occurred_at = ?{} AND seq > ?{}",
                p.len() - 1,
                p.len()
            ));
        }
        Keyset::NewerLater(t) => {
            p.push(Sql::Integer(t));
            sql.push_str(&format!(" AND occurred_at > ?{}", p.len()));
        }
    }
    p.push(Sql::Integer(limit as i64 + 1));
    let dir = match keyset {
        Keyset::NewerSameTime(..) | Keyset::NewerLater(_) => "ASC",
        _ => "DESC",
    };
    sql.push_str(&format!(
        " ORDER BY occurred_at {dir}, seq {dir} LIMIT ?{}",
        p.len()
    ));
    (sql, p)
}

/// Which rows a page of events reads, by its keyset cursor on `(occurred_at, seq)`.
///
/// "Older" walks the time index down from a page's last row. "Newer" walks it up from the
/// page's first row in two seeks: the rest of that row's instant (`occurred_at = t AND seq >
/// s`), then later instants. One row-value `> (t, s)` seeks on `occurred_at` only, and then
/// skips every event of that instant below `s`: a first sync stamps thousands of change
/// events with one instant, and that walk took 14 ms at 50k devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keyset {
    Newest,
    Older(i64, i64),
    NewerSameTime(i64, i64),
    NewerLater(i64),
}

pub(super) fn keyset_of(f: &EventFilter) -> Keyset {
    match (cursor(&f.before), cursor(&f.after)) {
        (Some((t, s)), _) => Keyset::NewerSameTime(t, s),
        (None, Some((t, s))) => Keyset::Older(t, s),
        (None, None) => Keyset::Newest,
    }
}

/// An event's list columns, from a row whose first ten are `seq, source, stream, category,
/// event_type, occurred_at, device_id, user_id, severity, summary` (every event query's).
fn event_view(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventView> {
    Ok(EventView {
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
        device_name: None,
        actor: None,
    })
}

fn event_rows(
    c: &Connection,
    f: &EventFilter,
    keyset: Keyset,
    limit: usize,
    frequent: bool,
) -> Result<Vec<(i64, EventView)>, StoreError> {
    let (sql, p) = events_sql_at(f, keyset, limit, frequent);
    let mut st = c.prepare_cached(&sql)?;
    let rows = st
        .query_map(params_from_iter(p), |r| {
            let at: i64 = r.get(5)?;
            Ok((at, event_view(r)?))
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

fn events(c: &Connection, f: &EventFilter, limit: usize) -> Result<EventPage, StoreError> {
    let frequent = fts_frequent(c, f)?;
    let keyset = keyset_of(f);
    let mut raw = event_rows(c, f, keyset, limit, frequent)?;
    if let Keyset::NewerSameTime(t, _) = keyset
        && raw.len() <= limit
    {
        let rest = event_rows(c, f, Keyset::NewerLater(t), limit - raw.len(), frequent)?;
        raw.extend(rest);
    }
    let more = raw.len() > limit;
    raw.truncate(limit);
    let at = |e: Option<&(i64, EventView)>| e.map(|(t, e)| format!("{t}:{}", e.seq));
    let (next, prev) = if cursor(&f.before).is_some() {
        raw.reverse();
        // A newer page always has an older one: the page it was reached from.
        (at(raw.last()), if more { at(raw.first()) } else { None })
    } else {
        let prev = if cursor(&f.after).is_some() {
            at(raw.first())
        } else {
            None
        };
        (if more { at(raw.last()) } else { None }, prev)
    };
    let mut events: Vec<EventView> = raw.into_iter().map(|(_, e)| e).collect();
    name_devices(c, &mut events)?;
    Ok(EventPage { events, next, prev })
}

#[derive(Debug, Clone, Serialize)]
pub struct EventDetail {
    pub event: EventView,
    pub uid: String,
    pub collected_at: String,
    /// The raw record, pretty-printed.
    pub raw: String,
    /// The same detection as recorded by another stream (an audit `vulnerability.detect` and
    /// the vulnerability stream's `vulnerability.detected`; `file_detection.detect` and a
    /// threat), matched on the device and a CVE id or file hash.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<RelatedEvent>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RelatedEvent {
    pub event: EventView,
    /// What both records name: a CVE id or a SHA-256.
    pub matched_on: String,
}

/// The device's other events, newest first, through `events_device_time`: the candidates
/// for [`EventDetail::related`].
pub(crate) const DEVICE_EVENTS_RAW_SQL: &str =
    "SELECT seq, source, stream, category, event_type, occurred_at, device_id, user_id,
            severity, summary, raw FROM events
     WHERE device_id = ?1 AND source = ?2 AND seq <> ?3
     ORDER BY occurred_at DESC, seq DESC LIMIT 500";

/// The identifiers that name one detection across streams: CVE ids and SHA-256 hashes, from
/// anywhere in the record (upper-cased, so the two streams' spellings meet).
pub fn detection_keys(v: &serde_json::Value) -> Vec<String> {
    fn is_cve(s: &str) -> bool {
        let u = s.to_ascii_uppercase();
        let mut parts = u.splitn(3, '-');
        parts.next() == Some("CVE")
            && parts
                .next()
                .is_some_and(|y| y.len() == 4 && y.bytes().all(|b| b.is_ascii_digit()))
            && parts
                .next()
                .is_some_and(|n| n.len() >= 4 && n.bytes().all(|b| b.is_ascii_digit()))
    }
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::String(s) => {
                let s = s.trim();
                if is_cve(s) || (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())) {
                    let k = s.to_ascii_uppercase();
                    if !out.contains(&k) {
                        out.push(k);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            serde_json::Value::Object(o) => o.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut out);
    out
}

fn related(
    c: &Connection,
    e: &EventView,
    raw: &serde_json::Value,
) -> Result<Vec<RelatedEvent>, StoreError> {
    let Some(device) = e.device_id.as_deref() else {
        return Ok(Vec::new());
    };
    let keys = detection_keys(raw);
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut st = c.prepare_cached(DEVICE_EVENTS_RAW_SQL)?;
    let mut rows = st.query(params![device, e.source, e.seq])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let stream: String = r.get(2)?;
        if stream == e.stream {
            continue;
        }
        let other: String = r.get(10)?;
        let Ok(other) = serde_json::from_str::<serde_json::Value>(&other) else {
            continue;
        };
        let Some(k) = detection_keys(&other)
            .into_iter()
            .find(|k| keys.contains(k))
        else {
            continue;
        };
        out.push(RelatedEvent {
            event: EventView {
                stream,
                ..event_view(r)?
            },
            matched_on: k,
        });
    }
    Ok(out)
}

pub(crate) const EVENT_SQL: &str =
    "SELECT seq, source, stream, category, event_type, occurred_at, device_id, user_id,
            severity, summary, uid, collected_at, raw FROM events WHERE seq = ?1";

fn event(c: &Connection, seq: i64) -> Result<Option<EventDetail>, StoreError> {
    let mut found = c
        .query_row(EVENT_SQL, [seq], |r| {
            let raw: String = r.get(12)?;
            let pretty = serde_json::from_str::<serde_json::Value>(&raw)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or(raw);
            Ok(EventDetail {
                event: event_view(r)?,
                uid: r.get(10)?,
                collected_at: rfc3339(r.get(11)?),
                raw: pretty,
                related: Vec::new(),
            })
        })
        .optional()?;
    if let Some(d) = found.as_mut() {
        name_devices(c, std::slice::from_mut(&mut d.event))?;
        if let Ok(raw) = serde_json::from_str::<serde_json::Value>(&d.raw) {
            d.related = related(c, &d.event, &raw)?;
        }
    }
    Ok(found)
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

impl DeviceView {
    /// The tags, one per chip: `tags` holds them as the API gave them (a JSON array of names,
    /// or of `{name}` objects); anything else is one tag as written.
    pub fn tag_list(&self) -> Vec<String> {
        match serde_json::from_str::<serde_json::Value>(&self.tags) {
            Ok(serde_json::Value::Array(items)) => items
                .iter()
                .filter_map(|t| match t {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Object(o) => {
                        o.get("name").and_then(|n| n.as_str()).map(str::to_owned)
                    }
                    _ => None,
                })
                .filter(|s| !s.is_empty())
                .collect(),
            _ if self.tags.trim().is_empty() || self.tags.trim() == "null" => Vec::new(),
            _ => vec![self.tags.clone()],
        }
    }
}

/// The devices page's sort keys and the column each sorts by (each has an index).
pub(super) const DEVICE_SORTS: [(&str, &str); 8] = [
    ("name", "device_name"),
    ("platform", "platform"),
    ("model", "model"),
    ("os", "os_version"),
    ("blueprint", "blueprint_name"),
    ("user", "user_email"),
    ("checkin", "last_check_in"),
    ("apps", "app_count"),
];

pub fn device_sorts() -> Vec<&'static str> {
    DEVICE_SORTS.iter().map(|(k, _)| *k).collect()
}

/// The columns of a device row, with its per-device counts (from a covering index, and the
/// writer's app counter).
const DEVICE_COLUMNS: &str = "d.source, d.key, d.device_name, d.serial_number, d.platform,
    d.model, d.os_version, d.blueprint_name, d.tags, coalesce(d.user_email, d.user_name),
    d.last_check_in,
    (SELECT count(*) FROM compliance c WHERE c.source = d.source AND c.device_id = d.key
       AND c.removed_at IS NULL AND lower(c.status) IN ('pass', 'passed', 'success', 'ok')),
    (SELECT count(*) FROM compliance c WHERE c.source = d.source AND c.device_id = d.key
       AND c.removed_at IS NULL AND lower(c.status) IN ('fail', 'failed', 'error', 'failure')),
    (SELECT x.posture FROM device_details x WHERE x.source = d.source
       AND x.key = 'filevault|' || d.key),
    d.app_count";

fn device_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceView> {
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
}

/// Devices matching the filter, sorted; `limit` None means all of them (the CSV). The page
/// is picked in the sort key's index order and only its rows' counts are computed, so a page
/// costs the same on 100 or 100,000 devices.
pub(crate) fn devices_sql(f: &DeviceFilter, limit: Option<usize>) -> (String, Vec<Sql>) {
    let col = DEVICE_SORTS
        .iter()
        .find(|(k, _)| Some(*k) == opt(&f.sort))
        .map_or("device_name", |(_, c)| c);
    let dir = if opt(&f.dir) == Some("desc") {
        "DESC"
    } else {
        "ASC"
    };
    let mut filter = String::new();
    let mut p: Vec<Sql> = Vec::new();
    if let Some(v) = opt(&f.source) {
        p.push(Sql::Text(v.into()));
        filter.push_str(&format!(" AND d.source = ?{}", p.len()));
    }
    if let Some(v) = opt(&f.platform) {
        p.push(Sql::Text(v.into()));
        filter.push_str(&format!(" AND d.platform = ?{}", p.len()));
    }
    if let Some(v) = opt(&f.blueprint) {
        p.push(Sql::Text(v.into()));
        filter.push_str(&format!(" AND d.blueprint_name = ?{}", p.len()));
    }
    // Text searches match in the covering search index first (a search that matches nothing
    // costs an index scan, not a read of every device), then the page walks the sort index.
    let mut search = String::new();
    if let Some(v) = opt(&f.tag) {
        p.push(Sql::Text(like(v)));
        search.push_str(&format!(" AND s.tags LIKE ?{}", p.len()));
    }
    if let Some(v) = opt(&f.q) {
        p.push(Sql::Text(like(v)));
        let n = p.len();
        search.push_str(&format!(
            " AND (s.device_name LIKE ?{n} OR s.serial_number LIKE ?{n} OR s.user_email LIKE ?{n}
               OR s.user_name LIKE ?{n} OR s.key LIKE ?{n} OR s.model LIKE ?{n})"
        ));
    }
    if !search.is_empty() {
        filter.push_str(&format!(
            " AND d.rowid IN (SELECT s.rowid FROM devices s INDEXED BY devices_search
               WHERE s.removed_at IS NULL{search})"
        ));
    }
    // The sort column's index (a source filter reads it too, skipping other sources).
    let index = format!(
        "devices_by_{}",
        match col {
            "device_name" => "name",
            "os_version" => "os",
            "blueprint_name" => "blueprint",
            "user_email" => "user",
            "last_check_in" => "checkin",
            "app_count" => "apps",
            other => other,
        }
    );
    let order = format!("d.{col} {dir}, d.key {dir}");
    let page = match limit {
        Some(l) => {
            p.push(Sql::Integer(l as i64));
            let n = p.len();
            p.push(Sql::Integer((f.page.unwrap_or(0) * l) as i64));
            format!(" LIMIT ?{n} OFFSET ?{}", n + 1)
        }
        None => String::new(),
    };
    let sql = format!(
        "SELECT {DEVICE_COLUMNS} FROM devices d INDEXED BY {index}
         WHERE d.removed_at IS NULL{filter} ORDER BY {order}{page}"
    );
    (sql, p)
}

fn devices(
    c: &Connection,
    f: &DeviceFilter,
    limit: Option<usize>,
) -> Result<Vec<DeviceView>, StoreError> {
    let (sql, p) = devices_sql(f, limit);
    let mut st = c.prepare_cached(&sql)?;
    let rows = st
        .query_map(params_from_iter(p), device_row)?
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
    /// The raw inventory record, pretty-printed (the page's raw view; the API has its own).
    #[serde(skip)]
    pub raw: String,
}

pub(crate) const DEVICE_RAW_SQL: &str =
    "SELECT raw FROM devices WHERE source = ?1 AND key = ?2 AND removed_at IS NULL";

pub(crate) const DEVICE_SQL: &str =
    "SELECT {COLS} FROM devices d WHERE d.source = ?1 AND d.key = ?2 AND d.removed_at IS NULL";
pub(crate) const DEVICE_DETAILS_SQL: &str =
    "SELECT category, coalesce(posture, '') FROM device_details
     WHERE source = ?1 AND device_id = ?2 AND removed_at IS NULL ORDER BY category";
pub(crate) const DEVICE_APPS_SQL: &str = "SELECT coalesce(v.name, ''), coalesce(v.bundle_id, ''),
        coalesce(v.version, ''), coalesce(v.path, '')
     FROM app_devices d JOIN app_installs i ON i.dev = d.id AND i.removed_at IS NULL
     JOIN app_versions v ON v.id = i.ver
     WHERE d.source = ?1 AND d.device_id = ?2 ORDER BY v.name LIMIT 2000";
pub(crate) const DEVICE_COMPLIANCE_SQL: &str = "SELECT coalesce(kind, ''), coalesce(name, ''),
        coalesce(status, ''), reported_at, raw
     FROM compliance WHERE source = ?1 AND device_id = ?2 AND removed_at IS NULL
     ORDER BY status, name";

fn device(c: &Connection, source: &str, id: &str) -> Result<Option<DeviceDetail>, StoreError> {
    let Some(device) = c
        .prepare_cached(&DEVICE_SQL.replace("{COLS}", DEVICE_COLUMNS))?
        .query_row(params![source, id], device_row)
        .optional()?
    else {
        return Ok(None);
    };
    let details = c
        .prepare_cached(DEVICE_DETAILS_SQL)?
        .query_map(params![source, id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let apps = c
        .prepare_cached(DEVICE_APPS_SQL)?
        .query_map(params![source, id], |r| {
            Ok(AppView {
                name: r.get(0)?,
                bundle_id: r.get(1)?,
                version: r.get(2)?,
                path: r.get(3)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let compliance = c
        .prepare_cached(DEVICE_COMPLIANCE_SQL)?
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
    let raw: String = c
        .prepare_cached(DEVICE_RAW_SQL)?
        .query_row(params![source, id], |r| r.get(0))
        .optional()?
        .unwrap_or_default();
    let raw = serde_json::from_str::<serde_json::Value>(&raw)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or(raw);
    Ok(Some(DeviceDetail {
        device,
        details,
        apps,
        compliance,
        events,
        raw,
    }))
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

pub(crate) const USERS_SQL: &str = "SELECT source, key, coalesce(email, ''), coalesce(name, ''),
        coalesce(department, ''), coalesce(active, 0), coalesce(device_count, 0)
     FROM users INDEXED BY users_live_email
     WHERE removed_at IS NULL AND (email LIKE ?1 OR name LIKE ?1 OR key LIKE ?1)
     ORDER BY email, key LIMIT ?2 OFFSET ?3";

fn users(c: &Connection, q: Option<&str>, page: usize) -> Result<Vec<UserView>, StoreError> {
    let rows = c
        .prepare_cached(USERS_SQL)?
        .query_map(
            params![like(q.unwrap_or("")), PAGE as i64, (page * PAGE) as i64],
            |r| {
                Ok(UserView {
                    source: r.get(0)?,
                    id: r.get(1)?,
                    email: r.get(2)?,
                    name: r.get(3)?,
                    department: r.get(4)?,
                    active: r.get::<_, i64>(5)? != 0,
                    devices: r.get(6)?,
                })
            },
        )?
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

/// Versions of matching apps with their install counts: a scan of the distinct versions
/// (thousands), never of the installs.
pub(crate) const APPS_SQL: &str = "SELECT coalesce(name, ''), coalesce(bundle_id, ''),
        coalesce(version, ''), sum(installs)
     FROM app_versions
     WHERE installs > 0 AND (name LIKE ?1 OR bundle_id LIKE ?1) AND (?2 IS NULL OR version = ?2)
     GROUP BY name, bundle_id, version ORDER BY name, version DESC LIMIT 500";

/// Every app version the fleet has, for the apps landing page: a scan of `app_versions`,
/// which holds one row per distinct version (not per install), so it stays small.
pub(crate) const APP_OVERVIEW_SQL: &str = "SELECT coalesce(bundle_id, ''), coalesce(name, ''),
        coalesce(version, ''), installs
     FROM app_versions WHERE installs > 0";

/// One app across the fleet (all its versions).
#[derive(Debug, Clone, Serialize)]
pub struct AppGroup {
    pub name: String,
    pub bundle_id: String,
    /// Installs over every version.
    pub installs: i64,
    /// Distinct versions in the fleet.
    pub versions: usize,
    /// The newest version seen in the fleet (by version order, not by date).
    pub newest: String,
    /// Installs of an older version than `newest`.
    pub outdated: i64,
}

/// The apps landing page: the most installed apps, apps with several versions in the fleet,
/// and apps with installs older than the newest version the fleet has.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AppsOverview {
    pub top: Vec<AppGroup>,
    pub several_versions: Vec<AppGroup>,
    pub outdated: Vec<AppGroup>,
    /// Distinct apps in the fleet.
    pub apps: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum VersionPart {
    // Text sorts before numbers: "1.0b" < "1.0.1".
    Text(String),
    Num(u64),
}

/// A version string's sort key: runs of digits compare as numbers ("10.2" > "9.14").
fn version_key(v: &str) -> Vec<VersionPart> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let flush = |cur: &mut String, out: &mut Vec<VersionPart>| {
        if cur.is_empty() {
            return;
        }
        out.push(match cur.parse::<u64>() {
            Ok(n) => VersionPart::Num(n),
            Err(_) => VersionPart::Text(cur.to_ascii_lowercase()),
        });
        cur.clear();
    };
    for ch in v.chars() {
        if !ch.is_alphanumeric() {
            flush(&mut cur, &mut out);
        } else if cur
            .chars()
            .last()
            .is_some_and(|l| l.is_ascii_digit() != ch.is_ascii_digit())
        {
            flush(&mut cur, &mut out);
            cur.push(ch);
        } else {
            cur.push(ch);
        }
    }
    flush(&mut cur, &mut out);
    out
}

fn apps_overview(c: &Connection, n: usize) -> Result<AppsOverview, StoreError> {
    let mut st = c.prepare_cached(APP_OVERVIEW_SQL)?;
    let mut rows = st.query([])?;
    let mut versions = Vec::new();
    while let Some(r) = rows.next()? {
        versions.push((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?));
    }
    Ok(overview_of(versions, n))
}

/// The apps landing page from every (bundle id, name, version, installs) of the fleet.
pub(super) fn overview_of(rows: Vec<(String, String, String, i64)>, n: usize) -> AppsOverview {
    let mut by_app: HashMap<String, (String, Vec<(String, i64)>)> = HashMap::new();
    for (bundle, name, version, installs) in rows {
        // Apps without a bundle id (Android, Windows) are grouped by name.
        let key = if bundle.is_empty() {
            name.clone()
        } else {
            bundle
        };
        let e = by_app
            .entry(key)
            .or_insert_with(|| (name.clone(), Vec::new()));
        if e.0.is_empty() {
            e.0 = name;
        }
        match e.1.iter_mut().find(|(v, _)| *v == version) {
            Some(x) => x.1 += installs,
            None => e.1.push((version, installs)),
        }
    }
    let groups: Vec<AppGroup> = by_app
        .into_iter()
        .map(|(bundle_id, (name, versions))| {
            let installs = versions.iter().map(|(_, n)| n).sum();
            let newest = versions
                .iter()
                .max_by_key(|(v, _)| version_key(v))
                .map(|(v, _)| v.clone())
                .unwrap_or_default();
            let on_newest: i64 = versions
                .iter()
                .filter(|(v, _)| *v == newest)
                .map(|(_, n)| n)
                .sum();
            AppGroup {
                name,
                bundle_id,
                installs,
                versions: versions.len(),
                newest,
                outdated: installs - on_newest,
            }
        })
        .collect();
    let pick = |mut v: Vec<AppGroup>, key: fn(&AppGroup) -> (i64, i64)| {
        v.sort_by(|a, b| {
            key(b)
                .cmp(&key(a))
                .then_with(|| a.name.cmp(&b.name))
                .then_with(|| a.bundle_id.cmp(&b.bundle_id))
        });
        v.truncate(n);
        v
    };
    AppsOverview {
        apps: groups.len(),
        top: pick(groups.clone(), |g| (g.installs, 0)),
        several_versions: pick(
            groups.iter().filter(|g| g.versions > 1).cloned().collect(),
            |g| (g.versions as i64, g.installs),
        ),
        outdated: pick(
            groups.into_iter().filter(|g| g.outdated > 0).collect(),
            |g| (g.outdated, g.installs),
        ),
    }
}

fn apps(c: &Connection, q: &str, version: Option<&str>) -> Result<Vec<AppSummary>, StoreError> {
    let rows = c
        .prepare_cached(APPS_SQL)?
        .query_map(params![like(q), version], |r| {
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

/// The devices with an app (at a version), the first 1,000 by name: a walk of the devices
/// in name order (`app_devices_name`), each probed for the app's install by its key, which
/// stops at 1,000 (an app on every device costs 1,000 probes, a rare one a probe per
/// device); then the devices table's name for those only.
pub(crate) const APP_DEVICES_SQL: &str = "SELECT x.source, x.device_id,
        coalesce(dev.device_name, x.name, ''), coalesce(x.version, '')
     FROM (SELECT d.source, d.device_id, d.name, v.version
           FROM app_devices d INDEXED BY app_devices_name
           JOIN app_installs i ON i.dev = d.id AND i.removed_at IS NULL
             AND i.title = (SELECT t.id FROM app_titles t WHERE t.ident = ?1)
           JOIN app_versions v ON v.id = i.ver AND v.bundle_id = ?1
             AND (?2 IS NULL OR v.version = ?2)
           ORDER BY d.name, d.device_id LIMIT 1000) x
     LEFT JOIN devices dev ON dev.source = x.source AND dev.key = x.device_id
     ORDER BY x.name, x.device_id";

fn app_devices(
    c: &Connection,
    bundle_id: &str,
    version: Option<&str>,
) -> Result<Vec<AppDevice>, StoreError> {
    let rows = c
        .prepare_cached(APP_DEVICES_SQL)?
        .query_map(params![bundle_id, version], |r| {
            Ok(AppDevice {
                source: r.get(0)?,
                device_id: r.get(1)?,
                device_name: r.get(2)?,
                version: r.get(3)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

fn explain(c: &Connection, sql: &str, p: Vec<Sql>) -> Result<Vec<String>, StoreError> {
    let mut st = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
    let rows = st
        .query_map(params_from_iter(p), |r| r.get::<_, String>(3))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

impl Store {
    /// SQLite's plan for a page of events (`EXPLAIN QUERY PLAN`, one line per step).
    pub async fn explain_events(&self, f: EventFilter) -> Result<Vec<String>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.explain_events(f).await;
        }
        self.read(move |c| {
            let (sql, p) = events_sql(&f, PAGE, fts_frequent(c, &f)?);
            explain(c, &sql, p)
        })
        .await
    }

    /// SQLite's plan for a page of devices.
    pub async fn explain_devices(&self, f: DeviceFilter) -> Result<Vec<String>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.explain_devices(f).await;
        }
        self.read(move |c| {
            let (sql, p) = devices_sql(&f, Some(PAGE));
            explain(c, &sql, p)
        })
        .await
    }

    /// The e-mails the collector knows for `(source, actor id)` pairs (the audit feed names
    /// its actors by id): an admin's from the feed's own admin changes, else a directory
    /// user's. Pairs it knows nothing about are left out.
    pub async fn actor_emails(
        &self,
        pairs: Vec<(String, String)>,
    ) -> Result<HashMap<(String, String), String>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.actor_emails(pairs).await;
        }
        self.read(move |c| {
            let mut out = HashMap::new();
            for (source, id) in pairs {
                if out.contains_key(&(source.clone(), id.clone())) {
                    continue;
                }
                if let Some(e) = actor_email(c, &source, &id)? {
                    out.insert((source, id), e);
                }
            }
            Ok(out)
        })
        .await
    }

    /// One page of events, newest first (keyset: `after` is the previous page's cursor).
    pub async fn events_page(&self, f: EventFilter, limit: usize) -> Result<EventPage, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.events_page(f, limit).await;
        }
        self.read(move |c| events(c, &f, limit)).await
    }

    pub async fn event(&self, seq: i64) -> Result<Option<EventDetail>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.event(seq).await;
        }
        self.read(move |c| event(c, seq)).await
    }

    /// One page of devices.
    pub async fn devices_page(&self, f: DeviceFilter) -> Result<Vec<DeviceView>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.devices_page(f).await;
        }
        self.read(move |c| devices(c, &f, Some(PAGE))).await
    }

    /// Every device the filter matches, in its sort order, one at a time through `tx` (the
    /// CSV export streams them). Stops early when the receiver goes away.
    pub async fn stream_devices(
        &self,
        f: DeviceFilter,
        tx: tokio::sync::mpsc::Sender<DeviceView>,
    ) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return pg.stream_devices(f, tx).await;
        }
        self.read(move |c| {
            let (sql, p) = devices_sql(&f, None);
            let mut st = c.prepare(&sql)?;
            let mut rows = st.query(params_from_iter(p))?;
            while let Some(r) = rows.next()? {
                if tx.blocking_send(device_row(r)?).is_err() {
                    break;
                }
            }
            Ok(())
        })
        .await
    }

    pub async fn device(&self, source: &str, id: &str) -> Result<Option<DeviceDetail>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.device(source, id).await;
        }
        let (source, id) = (source.to_string(), id.to_string());
        self.read(move |c| device(c, &source, &id)).await
    }

    pub async fn users_page(
        &self,
        q: Option<String>,
        page: usize,
    ) -> Result<Vec<UserView>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.users_page(q, page).await;
        }
        self.read(move |c| users(c, q.as_deref(), page)).await
    }

    /// The apps landing page: the `n` most installed apps, those with the most versions in
    /// the fleet, and those with the most installs behind the fleet's newest version.
    pub async fn apps_overview(&self, n: usize) -> Result<AppsOverview, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.apps_overview(n).await;
        }
        self.read(move |c| apps_overview(c, n)).await
    }

    /// "Which devices have app X (at version Y)": versions matching `q` with device counts,
    /// and (with `bundle_id`) the devices of one app.
    pub async fn apps_search(
        &self,
        q: String,
        version: Option<String>,
        bundle_id: Option<String>,
    ) -> Result<(Vec<AppSummary>, Vec<AppDevice>), StoreError> {
        if let Some(pg) = self.pg() {
            return pg.apps_search(q, version, bundle_id).await;
        }
        self.read(move |c| {
            let v = version.as_deref();
            let summary = apps(c, &q, v)?;
            let devices = match &bundle_id {
                Some(b) => app_devices(c, b, v)?,
                None => Vec::new(),
            };
            Ok((summary, devices))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    //! Every explorer query's plan, on a store with rows in every table it reads.
    use super::*;

    fn plan(c: &Connection, sql: &str, p: Vec<Sql>) -> Vec<String> {
        let mut st = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        st.query_map(params_from_iter(p), |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// No scan of a big table (`SCAN apps…`, `SCAN compliance`, `SCAN events`, a devices
    /// scan without an index) and no sort of a whole table.
    fn assert_indexed(what: &str, lines: &[String]) {
        for l in lines {
            let scan_big = [
                "app_installs",
                "compliance",
                "events",
                "app_devices",
                "device_details",
            ]
            .iter()
            .any(|t| {
                l.split_whitespace().take(2).eq(["SCAN", t])
                    && !l.contains("USING")
                    && !l.contains("VIRTUAL TABLE")
            });
            assert!(!scan_big, "{what}: a table scan: {l}\n{lines:#?}");
            assert!(
                !l.starts_with("SCAN d") || l.contains("INDEX"),
                "{what}: devices scanned without an index: {l}\n{lines:#?}"
            );
        }
    }

    #[test]
    fn detection_keys_are_cve_ids_and_sha256_hashes_from_anywhere() {
        let sha = "a".repeat(64);
        let v = serde_json::json!({
            "new_state": {"vulnerability": {"id": "cve-2024-12345"}},
            "metadata": {"threat_id": sha, "note": "CVE-24-1", "n": 3},
            "list": ["CVE-2023-0001", "not-a-key"]
        });
        let mut k = detection_keys(&v);
        k.sort();
        assert_eq!(
            k,
            [
                "A".repeat(64),
                "CVE-2023-0001".into(),
                "CVE-2024-12345".into()
            ]
        );
        assert!(detection_keys(&serde_json::json!({"id": "b".repeat(63)})).is_empty());
    }

    #[test]
    fn newer_pages_retrace_older_ones_across_an_instant_shared_by_many_events() {
        let (_d, c) = store();
        // 130 events at one instant (a first sync's change events), 70 at later instants,
        // 40 at earlier ones.
        let mut seq = 0;
        for (n, at) in [(40, None), (130, Some(5_000)), (70, None)] {
            for i in 0..n {
                seq += 1;
                let t = at.unwrap_or(if seq < 100 { 1_000 + i } else { 9_000 + i });
                c.execute(
                    "INSERT INTO events (seq, source, stream, category, event_type, uid,
                       occurred_at, hash, collected_at, updated_at, summary, raw)
                     VALUES (?1, 'acme', 'feed', 'audit', 'e', ?1, ?2, 0, ?2, ?2, '', '{}')",
                    params![seq, t],
                )
                .unwrap();
            }
        }
        let seqs = |p: &EventPage| p.events.iter().map(|e| e.seq).collect::<Vec<_>>();
        let mut page = events(&c, &EventFilter::default(), 50).unwrap();
        let mut down = vec![seqs(&page)];
        while let Some(next) = page.next.clone() {
            let f = EventFilter {
                after: Some(next),
                ..Default::default()
            };
            page = events(&c, &f, 50).unwrap();
            down.push(seqs(&page));
        }
        assert_eq!(down.iter().map(Vec::len).sum::<usize>(), 240);
        let mut back = down.len() - 1;
        while let Some(prev) = page.prev.clone() {
            let f = EventFilter {
                before: Some(prev),
                ..Default::default()
            };
            page = events(&c, &f, 50).unwrap();
            back -= 1;
            assert_eq!(seqs(&page), down[back], "newer page {back}");
        }
        assert_eq!(back, 0);
    }

    #[test]
    fn an_actor_has_an_e_mail_once_the_feed_has_said_it() {
        let (_d, c) = store();
        let add = |seq: i64, t: i64, typ: &str, raw: serde_json::Value| {
            c.execute(
                "INSERT INTO events (seq, source, stream, category, event_type, uid, occurred_at,
                   hash, collected_at, updated_at, summary, raw)
                 VALUES (?1, 'acme', 'feed', 'audit', ?2, ?1, ?3, 0, ?3, ?3, '', ?4)",
                params![seq, typ, t, raw.to_string()],
            )
            .unwrap();
        };
        let admin = |target: &str, email: &str| {
            serde_json::json!({"target_type": "admin_user", "target_id": target,
                "new_state": {"email": email}})
        };
        // a1 was created as a@acme.io, then renamed; o1 was never seen; u1 is a directory
        // user; d1's change names no e-mail.
        add(1, 1_000, "admin_user.create", admin("a1", "a@acme.io"));
        add(2, 2_000, "admin_user.update", admin("a1", "a.new@acme.io"));
        add(
            3,
            3_000,
            "admin_user.update",
            serde_json::json!({"target_id": "d1"}),
        );
        add(
            4,
            4_000,
            "blueprint.update",
            admin("o1", "not-an-admin-change@acme.io"),
        );
        c.execute(
            "INSERT INTO users (source, key, hash, first_seen, last_seen, email, raw)
             VALUES ('acme', 'u1', 0, 0, 0, 'u@acme.io', '{}')",
            [],
        )
        .unwrap();
        let got: Vec<_> = ["a1", "o1", "u1", "d1"]
            .iter()
            .map(|id| actor_email(&c, "acme", id).unwrap())
            .collect();
        assert_eq!(
            got,
            [
                Some("a.new@acme.io".to_string()),
                None,
                Some("u@acme.io".to_string()),
                None
            ]
        );
        assert_eq!(actor_email(&c, "other", "a1").unwrap(), None, "per source");
        let lines = plan(
            &c,
            ADMIN_EMAIL_SQL,
            vec![Sql::Text("acme".into()), Sql::Text("a1".into())],
        );
        assert_indexed("admin e-mail", &lines);
        assert!(
            lines.iter().any(|l| l.contains("events_type_time")),
            "admin changes are found by their type: {lines:#?}"
        );
    }

    #[test]
    fn versions_compare_by_their_numbers() {
        assert!(version_key("10.2") > version_key("9.14"));
        assert!(version_key("128.0.1") > version_key("128.0"));
        assert!(version_key("1.0.1") > version_key("1.0b"));
        assert!(version_key("2.0") == version_key("2-0"));
    }

    #[test]
    fn the_apps_overview_ranks_installs_versions_and_outdated_installs() {
        let (_d, c) = store();
        let add = |id: i64, bundle: &str, name: &str, version: &str, installs: i64| {
            c.execute(
                "INSERT INTO app_versions (id, title, name, bundle_id, version, path, installs, fields)
                 VALUES (?1, 1, ?2, ?3, ?4, '', ?5, ?1)",
                params![id, name, bundle, version, installs],
            )
            .unwrap();
        };
        add(1, "org.mozilla.firefox", "Firefox", "128.0", 30);
        add(2, "org.mozilla.firefox", "Firefox", "99.1", 12);
        add(3, "org.mozilla.firefox", "Firefox", "127.2", 8);
        add(4, "com.tinyspeck.slackmacgap", "Slack", "4.41", 45);
        add(5, "com.apple.Safari", "Safari", "18.1", 10);
        add(6, "com.apple.Safari", "Safari", "18.2", 0);
        let o = apps_overview(&c, 10).unwrap();
        assert_eq!(o.apps, 3);
        let top: Vec<_> = o
            .top
            .iter()
            .map(|a| (a.name.as_str(), a.installs))
            .collect();
        assert_eq!(top, [("Firefox", 50), ("Slack", 45), ("Safari", 10)]);
        assert_eq!(
            o.several_versions.len(),
            1,
            "an uninstalled version does not count"
        );
        assert_eq!(o.several_versions[0].versions, 3);
        let ff = &o.outdated[0];
        assert_eq!((ff.newest.as_str(), ff.outdated), ("128.0", 20));
        assert_eq!(o.outdated.len(), 1);
        assert_eq!(apps_overview(&c, 1).unwrap().top.len(), 1);
    }

    fn store() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let c = Connection::open(dir.path().join(super::super::FILE_NAME)).unwrap();
        (dir, c)
    }

    #[test]
    fn every_devices_sort_reads_its_index_in_order_without_a_sort() {
        let (_d, c) = store();
        for (sort, _) in DEVICE_SORTS {
            for dir in ["asc", "desc"] {
                for source in [None, Some("acme".to_string())] {
                    for q in [None, Some("mac".to_string())] {
                        let f = DeviceFilter {
                            sort: Some(sort.into()),
                            dir: Some(dir.into()),
                            source: source.clone(),
                            q: q.clone(),
                            ..Default::default()
                        };
                        let (sql, p) = devices_sql(&f, Some(PAGE));
                        let lines = plan(&c, &sql, p);
                        let what =
                            format!("devices sort={sort} dir={dir} source={source:?} q={q:?}");
                        assert_indexed(&what, &lines);
                        assert!(
                            !lines.iter().any(|l| l.contains("TEMP B-TREE")),
                            "{what}: sorts in a temp B-tree: {lines:#?}"
                        );
                        assert!(
                            lines.iter().any(|l| l.contains("devices_")),
                            "{what}: {lines:#?}"
                        );
                        // The per-row counts: the covering index and the unique key.
                        assert!(
                            lines
                                .iter()
                                .any(|l| l.contains("COVERING INDEX compliance_live_status")),
                            "{what}: {lines:#?}"
                        );
                    }
                }
            }
        }
        // The CSV: all devices, same plan without the limit.
        let (sql, p) = devices_sql(&DeviceFilter::default(), None);
        let lines = plan(&c, &sql, p);
        assert_indexed("devices csv", &lines);
        assert!(
            !lines.iter().any(|l| l.contains("TEMP B-TREE")),
            "{lines:#?}"
        );
    }

    #[test]
    fn device_page_users_apps_and_events_plans_use_indexes() {
        let (_d, c) = store();
        let text = |s: &str| Sql::Text(s.into());
        let cases: Vec<(&str, String, Vec<Sql>)> = vec![
            (
                "device",
                DEVICE_SQL.replace("{COLS}", DEVICE_COLUMNS),
                vec![text("acme"), text("d1")],
            ),
            (
                "device details",
                DEVICE_DETAILS_SQL.into(),
                vec![text("acme"), text("d1")],
            ),
            (
                "device apps",
                DEVICE_APPS_SQL.into(),
                vec![text("acme"), text("d1")],
            ),
            (
                "device compliance",
                DEVICE_COMPLIANCE_SQL.into(),
                vec![text("acme"), text("d1")],
            ),
            (
                "users",
                USERS_SQL.into(),
                vec![text("%a%"), Sql::Integer(50), Sql::Integer(0)],
            ),
            ("apps", APPS_SQL.into(), vec![text("%Firefox%"), Sql::Null]),
            (
                "app devices",
                APP_DEVICES_SQL.into(),
                vec![text("org.mozilla.firefox"), Sql::Null],
            ),
            ("event", EVENT_SQL.into(), vec![Sql::Integer(1)]),
            ("apps overview", APP_OVERVIEW_SQL.into(), vec![]),
            (
                "device events raw",
                DEVICE_EVENTS_RAW_SQL.into(),
                vec![text("d1"), text("acme"), Sql::Integer(1)],
            ),
            (
                "device raw",
                DEVICE_RAW_SQL.into(),
                vec![text("acme"), text("d1")],
            ),
            (
                "device name",
                DEVICE_NAME_SQL.into(),
                vec![text("acme"), text("d1")],
            ),
        ];
        for (what, sql, p) in cases {
            let lines = plan(&c, &sql, p);
            assert_indexed(what, &lines);
            if what == "users" {
                assert!(
                    lines.iter().any(|l| l.contains("users_live_email"))
                        && !lines.iter().any(|l| l.contains("TEMP B-TREE")),
                    "{what}: {lines:#?}"
                );
            }
            if what == "device events raw" {
                assert!(
                    lines.iter().any(|l| l.contains("events_device_time"))
                        && !lines.iter().any(|l| l.contains("TEMP B-TREE")),
                    "{what}: {lines:#?}"
                );
            }
            if what == "device name" {
                assert!(
                    lines.iter().any(|l| l.contains("devices_device"))
                        && !lines.iter().any(|l| l.contains("TEMP B-TREE")),
                    "{what}: {lines:#?}"
                );
            }
            if what == "device apps" {
                assert!(
                    lines.iter().any(|l| l.contains("PRIMARY KEY (dev=?)")),
                    "{what}: {lines:#?}"
                );
            }
            if what == "app devices" {
                assert!(
                    lines
                        .iter()
                        .any(|l| l.contains("USING INDEX app_devices_name"))
                        && lines
                            .iter()
                            .any(|l| l.contains("PRIMARY KEY (dev=? AND title=?)")),
                    "{what}: {lines:#?}"
                );
            }
        }
        // Event pages: every filter the explorer offers, newest first, through an index.
        let filters = [
            EventFilter::default(),
            EventFilter {
                source: Some("acme".into()),
                ..Default::default()
            },
            EventFilter {
                category: Some("audit".into()),
                ..Default::default()
            },
            EventFilter {
                event_type: Some("device_enrolled".into()),
                ..Default::default()
            },
            EventFilter {
                device: Some("d1".into()),
                ..Default::default()
            },
            EventFilter {
                user: Some("u1".into()),
                ..Default::default()
            },
            EventFilter {
                after: Some("1700000000000:5".into()),
                ..Default::default()
            },
            EventFilter {
                before: Some("1700000000000:5".into()),
                ..Default::default()
            },
            EventFilter {
                category: Some("audit".into()),
                before: Some("1700000000000:5".into()),
                ..Default::default()
            },
            EventFilter {
                q: Some("blueprint".into()),
                ..Default::default()
            },
        ];
        // "Newer" reads in two parts; each has its plan.
        for f in filters
            .iter()
            .filter(|f| f.before.is_some())
            .cloned()
            .collect::<Vec<_>>()
        {
            let (sql, p) = events_sql_at(&f, Keyset::NewerLater(1_700_000_000_000), PAGE, false);
            let lines = plan(&c, &sql, p);
            assert_indexed(&format!("events newer, later {f:?}"), &lines);
            assert!(
                !lines.iter().any(|l| l.contains("TEMP B-TREE")),
                "events newer, later {f:?}: {lines:#?}"
            );
            let (sql, p) = events_sql(&f, PAGE, false);
            let lines = plan(&c, &sql, p);
            assert!(
                lines.iter().any(|l| l.contains("occurred_at=? AND seq>?")),
                "the rest of the instant seeks on both columns: {lines:#?}"
            );
        }
        for f in filters {
            let (sql, p) = events_sql(&f, PAGE, false);
            let lines = plan(&c, &sql, p);
            assert_indexed(&format!("events {f:?}"), &lines);
            if f.q.is_none() {
                assert!(
                    !lines.iter().any(|l| l.contains("TEMP B-TREE")),
                    "events {f:?}: {lines:#?}"
                );
            } else {
                // A frequent term walks the time index and sorts nothing.
                let (sql, p) = events_sql(&f, PAGE, true);
                let lines = plan(&c, &sql, p);
                assert_indexed(&format!("events frequent {f:?}"), &lines);
                assert!(
                    lines.iter().any(|l| l.contains("USING INDEX events_time"))
                        && !lines.iter().any(|l| l.contains("TEMP B-TREE")),
                    "events frequent {f:?}: {lines:#?}"
                );
            }
        }
    }
}

#[cfg(test)]
mod tag_tests {
    use super::DeviceView;

    fn with_tags(tags: &str) -> DeviceView {
        DeviceView {
            source: String::new(),
            id: String::new(),
            name: String::new(),
            serial: String::new(),
            platform: String::new(),
            model: String::new(),
            os_version: String::new(),
            blueprint: String::new(),
            tags: tags.into(),
            user: String::new(),
            last_check_in: None,
            compliance_pass: 0,
            compliance_fail: 0,
            filevault: String::new(),
            apps: 0,
        }
    }

    #[test]
    fn tags_become_chips_whatever_their_json_shape() {
        assert_eq!(
            with_tags(r#"["Finance","<b>bold-tag</b>"]"#).tag_list(),
            ["Finance", "<b>bold-tag</b>"]
        );
        assert_eq!(
            with_tags(r#"[{"name":"Eng"},{"id":1}]"#).tag_list(),
            ["Eng"]
        );
        assert!(with_tags("").tag_list().is_empty());
        assert!(with_tags("[]").tag_list().is_empty());
        assert!(with_tags("null").tag_list().is_empty());
        assert_eq!(with_tags("legacy").tag_list(), ["legacy"]);
    }
}
