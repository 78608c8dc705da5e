//! The explorer's reads on PostgreSQL: SQLite's `store/explorer.rs` queries, with the same
//! results and their own plans (checked with `EXPLAIN` in `tests/pg_store.rs`).
//!
//! Event pages are keyset pages on `(occurred_at, seq)` walked through `events_time`
//! (one source: one partition) or `events_all_time` (every source: a merge of the partitions'
//! index scans, never a sort of the table). Device pages walk a sort index: `devices_src_*`
//! for one source, `devices_by_*` for all. NULLs sort first, as in SQLite, and the indexes
//! are built that way so that both directions walk them.

use std::collections::HashMap;

use tokio_postgres::{Client, Row};

use super::super::StoreError;
use super::super::explorer::{
    AppDevice, AppSummary, AppView, AppsOverview, ComplianceView, DEVICE_SORTS, DeviceDetail,
    DeviceFilter, DeviceView, EventDetail, EventFilter, EventPage, EventView, Keyset, PAGE,
    RelatedEvent, UserView, cursor, detection_keys, keyset_of, like, opt, overview_of, parse_time,
    rfc3339,
};
use super::PgStore;
use super::search;
use super::values::{Param, refs};

/// `like` for PostgreSQL, whose LIKE treats `\` as an escape.
fn like_pg(q: &str) -> String {
    like(q).replace('\\', "\\\\")
}

const EVENT_LIST_COLS: &str = "seq, source, stream, category, event_type, occurred_at, device_id,
    user_id, severity, summary";

fn event_view(r: &Row) -> EventView {
    EventView {
        seq: r.get(0),
        source: r.get(1),
        stream: r.get(2),
        category: r.get(3),
        event_type: r.get(4),
        occurred_at: rfc3339(r.get(5)),
        device_id: r.get(6),
        user_id: r.get(7),
        severity: r.get(8),
        summary: r.get(9),
        device_name: None,
        actor: None,
    }
}

/// One page of events as SQL, SQLite's `events_sql_at` in PostgreSQL's terms.
fn events_sql(f: &EventFilter, keyset: Keyset, limit: usize) -> (String, Vec<Param>) {
    let mut sql = format!("SELECT {EVENT_LIST_COLS} FROM events WHERE TRUE");
    let mut p: Vec<Param> = Vec::new();
    let mut eq = |col: &str, v: Option<&str>, sql: &mut String| {
        if let Some(v) = v {
            p.push(Box::new(v.to_string()));
            sql.push_str(&format!(" AND {col} = ${}", p.len()));
        }
    };
    eq("source", opt(&f.source), &mut sql);
    eq("category", opt(&f.category), &mut sql);
    eq("event_type", opt(&f.event_type), &mut sql);
    eq("device_id", opt(&f.device), &mut sql);
    eq("user_id", opt(&f.user), &mut sql);
    eq("severity", opt(&f.severity), &mut sql);
    if let Some(t) = opt(&f.from).and_then(parse_time) {
        p.push(Box::new(t));
        sql.push_str(&format!(" AND occurred_at >= ${}", p.len()));
    }
    if let Some(t) = opt(&f.to).and_then(parse_time) {
        p.push(Box::new(t));
        sql.push_str(&format!(" AND occurred_at < ${}", p.len()));
    }
    if let Some(q) = opt(&f.q) {
        match search::query(q) {
            Some(tsq) => {
                p.push(Box::new(tsq));
                sql.push_str(&format!(
                    " AND search @@ to_tsquery('simple', ${})",
                    p.len()
                ));
            }
            // Words with no letters or digits: FTS5 finds nothing for them either.
            None => sql.push_str(" AND FALSE"),
        }
    }
    match keyset {
        Keyset::Newest => {}
        Keyset::Older(t, s) => {
            p.push(Box::new(t));
            p.push(Box::new(s));
            sql.push_str(&format!(
                " AND (occurred_at, seq) < (${}, ${})",
                p.len() - 1,
                p.len()
            ));
        }
        Keyset::NewerSameTime(t, s) => {
            p.push(Box::new(t));
            p.push(Box::new(s));
            sql.push_str(&format!(
                " AND occurred_at = ${} AND seq > ${}",
                p.len() - 1,
                p.len()
            ));
        }
        Keyset::NewerLater(t) => {
            p.push(Box::new(t));
            sql.push_str(&format!(" AND occurred_at > ${}", p.len()));
        }
    }
    p.push(Box::new(limit as i64 + 1));
    let dir = match keyset {
        Keyset::NewerSameTime(..) | Keyset::NewerLater(_) => "ASC",
        _ => "DESC",
    };
    sql.push_str(&format!(
        " ORDER BY occurred_at {dir}, seq {dir} LIMIT ${}",
        p.len()
    ));
    (sql, p)
}

/// The devices page's SQL, SQLite's `devices_sql` in PostgreSQL's terms.
fn devices_sql(f: &DeviceFilter, limit: Option<usize>) -> (String, Vec<Param>) {
    let col = DEVICE_SORTS
        .iter()
        .find(|(k, _)| Some(*k) == opt(&f.sort))
        .map_or("device_name", |(_, c)| c);
    let (dir, nulls) = if opt(&f.dir) == Some("desc") {
        ("DESC", "NULLS LAST")
    } else {
        ("ASC", "NULLS FIRST")
    };
    let mut filter = String::new();
    let mut p: Vec<Param> = Vec::new();
    if let Some(v) = opt(&f.source) {
        p.push(Box::new(v.to_string()));
        filter.push_str(&format!(" AND d.source = ${}", p.len()));
    }
    if let Some(v) = opt(&f.platform) {
        p.push(Box::new(v.to_string()));
        filter.push_str(&format!(" AND d.platform = ${}", p.len()));
    }
    if let Some(v) = opt(&f.blueprint) {
        p.push(Box::new(v.to_string()));
        filter.push_str(&format!(" AND d.blueprint_name = ${}", p.len()));
    }
    if let Some(v) = opt(&f.tag) {
        p.push(Box::new(like_pg(v)));
        filter.push_str(&format!(" AND d.tags ILIKE ${}", p.len()));
    }
    if let Some(v) = opt(&f.q) {
        p.push(Box::new(like_pg(v)));
        let n = p.len();
        filter.push_str(&format!(
            " AND (d.device_name ILIKE ${n} OR d.serial_number ILIKE ${n} OR d.user_email ILIKE ${n}
               OR d.user_name ILIKE ${n} OR d.key ILIKE ${n} OR d.model ILIKE ${n})"
        ));
    }
    let page = match limit {
        Some(l) => {
            p.push(Box::new(l as i64));
            let n = p.len();
            p.push(Box::new((f.page.unwrap_or(0) * l) as i64));
            format!(" LIMIT ${n} OFFSET ${}", n + 1)
        }
        None => String::new(),
    };
    let sql = format!(
        "SELECT {DEVICE_COLUMNS} FROM devices d
         WHERE d.removed_at IS NULL{filter}
         ORDER BY d.{col} {dir} {nulls}, d.key {dir}{page}"
    );
    (sql, p)
}

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

fn device_row(r: &Row) -> DeviceView {
    let s = |i: usize| r.get::<_, Option<String>>(i).unwrap_or_default();
    DeviceView {
        source: s(0),
        id: s(1),
        name: s(2),
        serial: s(3),
        platform: s(4),
        model: s(5),
        os_version: s(6),
        blueprint: s(7),
        tags: s(8),
        user: s(9),
        last_check_in: r.get::<_, Option<i64>>(10).map(rfc3339),
        compliance_pass: r.get(11),
        compliance_fail: r.get(12),
        filevault: s(13),
        apps: r.get(14),
    }
}

impl PgStore {
    async fn event_rows(
        &self,
        c: &Client,
        f: &EventFilter,
        keyset: Keyset,
        limit: usize,
    ) -> Result<Vec<(i64, EventView)>, StoreError> {
        let (sql, p) = events_sql(f, keyset, limit);
        Ok(c.query(&sql, &refs(&p))
            .await
            .map_err(|e| self.err(e))?
            .iter()
            .map(|r| (r.get::<_, i64>(5), event_view(r)))
            .collect())
    }

    async fn name_devices(&self, c: &Client, events: &mut [EventView]) -> Result<(), StoreError> {
        let mut seen: HashMap<(String, String), Option<String>> = HashMap::new();
        for e in events.iter_mut() {
            let Some(id) = e.device_id.clone() else {
                continue;
            };
            let key = (e.source.clone(), id);
            if !seen.contains_key(&key) {
                let n: Option<String> = c
                    .query_opt(
                        "SELECT device_name FROM devices WHERE source = $1 AND device_id = $2
                         ORDER BY first_seen DESC LIMIT 1",
                        &[&key.0, &key.1],
                    )
                    .await
                    .map_err(|e| self.err(e))?
                    .and_then(|r| r.get::<_, Option<String>>(0))
                    .filter(|n| !n.is_empty());
                seen.insert(key.clone(), n);
            }
            e.device_name = seen.get(&key).cloned().flatten();
        }
        Ok(())
    }

    async fn events_on(
        &self,
        c: &Client,
        f: &EventFilter,
        limit: usize,
    ) -> Result<EventPage, StoreError> {
        let keyset = keyset_of(f);
        let mut raw = self.event_rows(c, f, keyset, limit).await?;
        if let Keyset::NewerSameTime(t, _) = keyset
            && raw.len() <= limit
        {
            let rest = self
                .event_rows(c, f, Keyset::NewerLater(t), limit - raw.len())
                .await?;
            raw.extend(rest);
        }
        let more = raw.len() > limit;
        raw.truncate(limit);
        let at = |e: Option<&(i64, EventView)>| e.map(|(t, e)| format!("{t}:{}", e.seq));
        let (next, prev) = if cursor(&f.before).is_some() {
            raw.reverse();
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
        self.name_devices(c, &mut events).await?;
        Ok(EventPage { events, next, prev })
    }

    pub(crate) async fn events_page(
        &self,
        f: EventFilter,
        limit: usize,
    ) -> Result<EventPage, StoreError> {
        let c = self.client().await?;
        self.events_on(&c, &f, limit).await
    }

    pub(crate) async fn event(&self, seq: i64) -> Result<Option<EventDetail>, StoreError> {
        let c = self.client().await?;
        let Some(r) = c
            .query_opt(
                &format!(
                    "SELECT {EVENT_LIST_COLS}, uid, collected_at, raw::TEXT FROM events WHERE seq = $1"
                ),
                &[&seq],
            )
            .await
            .map_err(|e| self.err(e))?
        else {
            return Ok(None);
        };
        let raw: String = r.get(12);
        let pretty = serde_json::from_str::<serde_json::Value>(&raw)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or(raw);
        let mut d = EventDetail {
            event: event_view(&r),
            uid: r.get(10),
            collected_at: rfc3339(r.get(11)),
            raw: pretty,
            related: Vec::new(),
        };
        self.name_devices(&c, std::slice::from_mut(&mut d.event))
            .await?;
        if let Ok(raw) = serde_json::from_str::<serde_json::Value>(&d.raw) {
            d.related = self.related(&c, &d.event, &raw).await?;
        }
        Ok(Some(d))
    }

    async fn related(
        &self,
        c: &Client,
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
        let rows = c
            .query(
                &format!(
                    "SELECT {EVENT_LIST_COLS}, raw::TEXT FROM events
                     WHERE source = $2 AND device_id = $1 AND seq <> $3
                     ORDER BY occurred_at DESC, seq DESC LIMIT 500"
                ),
                &[&device, &e.source, &e.seq],
            )
            .await
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for r in rows {
            let stream: String = r.get(2);
            if stream == e.stream {
                continue;
            }
            let Ok(other) = serde_json::from_str::<serde_json::Value>(&r.get::<_, String>(10))
            else {
                continue;
            };
            let Some(k) = detection_keys(&other)
                .into_iter()
                .find(|k| keys.contains(k))
            else {
                continue;
            };
            out.push(RelatedEvent {
                event: event_view(&r),
                matched_on: k,
            });
        }
        Ok(out)
    }

    pub(crate) async fn devices_page(
        &self,
        f: DeviceFilter,
    ) -> Result<Vec<DeviceView>, StoreError> {
        let c = self.client().await?;
        let (sql, p) = devices_sql(&f, Some(PAGE));
        Ok(c.query(&sql, &refs(&p))
            .await
            .map_err(|e| self.err(e))?
            .iter()
            .map(device_row)
            .collect())
    }

    pub(crate) async fn stream_devices(
        &self,
        f: DeviceFilter,
        tx: tokio::sync::mpsc::Sender<DeviceView>,
    ) -> Result<(), StoreError> {
        use futures::StreamExt;
        let mut c = self.client().await?;
        let t = c.transaction().await.map_err(|e| self.err(e))?;
        let (sql, p) = devices_sql(&f, None);
        let stream = t.query_raw(&sql, refs(&p)).await.map_err(|e| self.err(e))?;
        futures::pin_mut!(stream);
        while let Some(r) = stream.next().await {
            let r = r.map_err(|e| self.err(e))?;
            if tx.send(device_row(&r)).await.is_err() {
                break;
            }
        }
        Ok(())
    }

    pub(crate) async fn device(
        &self,
        source: &str,
        id: &str,
    ) -> Result<Option<DeviceDetail>, StoreError> {
        let c = self.client().await?;
        let Some(r) = c
            .query_opt(
                &format!(
                    "SELECT {DEVICE_COLUMNS}, d.raw::TEXT FROM devices d
                     WHERE d.source = $1 AND d.key = $2 AND d.removed_at IS NULL"
                ),
                &[&source, &id],
            )
            .await
            .map_err(|e| self.err(e))?
        else {
            return Ok(None);
        };
        let device = device_row(&r);
        let raw: String = r.get(15);
        let details = c
            .query(
                "SELECT category, coalesce(posture, '') FROM device_details
                 WHERE source = $1 AND device_id = $2 AND removed_at IS NULL
                 ORDER BY category NULLS FIRST",
                &[&source, &id],
            )
            .await
            .map_err(|e| self.err(e))?
            .iter()
            .map(|r| (r.get::<_, Option<String>>(0).unwrap_or_default(), r.get(1)))
            .collect();
        let apps = c
            .query(
                "SELECT coalesce(v.name, ''), coalesce(v.bundle_id, ''),
                        coalesce(v.version, ''), coalesce(v.path, '')
                 FROM app_devices d
                 JOIN app_installs i ON i.source = d.source AND i.dev = d.id AND i.removed_at IS NULL
                 JOIN app_versions v ON v.source = i.source AND v.id = i.ver
                 WHERE d.source = $1 AND d.device_id = $2 ORDER BY v.name NULLS FIRST LIMIT 2000",
                &[&source, &id],
            )
            .await
            .map_err(|e| self.err(e))?
            .iter()
            .map(|r| AppView {
                name: r.get(0),
                bundle_id: r.get(1),
                version: r.get(2),
                path: r.get(3),
            })
            .collect();
        let compliance = c
            .query(
                "SELECT coalesce(kind, ''), coalesce(name, ''), coalesce(status, ''), reported_at,
                        raw::TEXT
                 FROM compliance WHERE source = $1 AND device_id = $2 AND removed_at IS NULL
                 ORDER BY status NULLS FIRST, name NULLS FIRST",
                &[&source, &id],
            )
            .await
            .map_err(|e| self.err(e))?
            .iter()
            .map(|r| {
                let raw: String = r.get(4);
                let log = serde_json::from_str::<serde_json::Value>(&raw)
                    .ok()
                    .and_then(|v| v.get("log").and_then(|l| l.as_str()).map(str::to_string))
                    .unwrap_or_default();
                ComplianceView {
                    kind: r.get(0),
                    name: r.get(1),
                    status: r.get(2),
                    reported_at: r.get::<_, Option<i64>>(3).map(rfc3339),
                    log: log.chars().take(400).collect(),
                }
            })
            .collect();
        let events = self
            .events_on(
                &c,
                &EventFilter {
                    source: Some(source.into()),
                    device: Some(id.into()),
                    ..Default::default()
                },
                100,
            )
            .await?
            .events;
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

    pub(crate) async fn users_page(
        &self,
        q: Option<String>,
        page: usize,
    ) -> Result<Vec<UserView>, StoreError> {
        let c = self.client().await?;
        let pattern = like_pg(q.as_deref().unwrap_or(""));
        Ok(c.query(
            "SELECT source, key, coalesce(email, ''), coalesce(name, ''),
                    coalesce(department, ''), coalesce(active, 0), coalesce(device_count, 0)
             FROM users
             WHERE removed_at IS NULL AND (email ILIKE $1 OR name ILIKE $1 OR key ILIKE $1)
             ORDER BY email NULLS FIRST, key LIMIT $2 OFFSET $3",
            &[&pattern, &(PAGE as i64), &((page * PAGE) as i64)],
        )
        .await
        .map_err(|e| self.err(e))?
        .iter()
        .map(|r| UserView {
            source: r.get(0),
            id: r.get(1),
            email: r.get(2),
            name: r.get(3),
            department: r.get(4),
            active: r.get::<_, i64>(5) != 0,
            devices: r.get(6),
        })
        .collect())
    }

    pub(crate) async fn apps_overview(&self, n: usize) -> Result<AppsOverview, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT coalesce(bundle_id, ''), coalesce(name, ''), coalesce(version, ''), installs
                 FROM app_versions WHERE installs > 0",
                &[],
            )
            .await
            .map_err(|e| self.err(e))?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        Ok(overview_of(rows, n))
    }

    pub(crate) async fn apps_search(
        &self,
        q: String,
        version: Option<String>,
        bundle_id: Option<String>,
    ) -> Result<(Vec<AppSummary>, Vec<AppDevice>), StoreError> {
        let c = self.client().await?;
        let summary = c
            .query(
                "SELECT coalesce(name, ''), coalesce(bundle_id, ''), coalesce(version, ''),
                        sum(installs)::BIGINT
                 FROM app_versions
                 WHERE installs > 0 AND (name ILIKE $1 OR bundle_id ILIKE $1)
                   AND ($2::TEXT IS NULL OR version = $2)
                 GROUP BY name, bundle_id, version
                 ORDER BY name NULLS FIRST, version DESC NULLS LAST LIMIT 500",
                &[&like_pg(&q), &version],
            )
            .await
            .map_err(|e| self.err(e))?
            .iter()
            .map(|r| AppSummary {
                name: r.get(0),
                bundle_id: r.get(1),
                version: r.get(2),
                devices: r.get(3),
            })
            .collect();
        let devices = match &bundle_id {
            None => Vec::new(),
            Some(b) => c
                .query(
                    "SELECT x.source, x.device_id, coalesce(dev.device_name, x.name, ''),
                            coalesce(x.version, '')
                     FROM (SELECT d.source, d.device_id, d.name, v.version
                           FROM app_titles t
                           JOIN app_installs i ON i.source = t.source AND i.title = t.id
                             AND i.removed_at IS NULL
                           JOIN app_devices d ON d.source = i.source AND d.id = i.dev
                           JOIN app_versions v ON v.source = i.source AND v.id = i.ver
                             AND v.bundle_id = $1 AND ($2::TEXT IS NULL OR v.version = $2)
                           WHERE t.ident = $1
                           ORDER BY d.name NULLS FIRST, d.device_id LIMIT 1000) x
                     LEFT JOIN devices dev ON dev.source = x.source AND dev.key = x.device_id
                     ORDER BY x.name NULLS FIRST, x.device_id",
                    &[b, &version],
                )
                .await
                .map_err(|e| self.err(e))?
                .iter()
                .map(|r| AppDevice {
                    source: r.get(0),
                    device_id: r.get(1),
                    device_name: r.get(2),
                    version: r.get(3),
                })
                .collect(),
        };
        Ok((summary, devices))
    }

    pub(crate) async fn actor_emails(
        &self,
        pairs: Vec<(String, String)>,
    ) -> Result<HashMap<(String, String), String>, StoreError> {
        let c = self.client().await?;
        let mut out = HashMap::new();
        for (source, id) in pairs {
            if out.contains_key(&(source.clone(), id.clone())) {
                continue;
            }
            let admin: Option<String> = c
                .query_opt(
                    "SELECT raw -> 'new_state' ->> 'email' FROM events
                     WHERE event_type IN ('admin_user.create', 'admin_user.update') AND source = $1
                       AND raw ->> 'target_id' = $2
                       AND raw -> 'new_state' ->> 'email' IS NOT NULL
                     ORDER BY occurred_at DESC LIMIT 1",
                    &[&source, &id],
                )
                .await
                .map_err(|e| self.err(e))?
                .and_then(|r| r.get(0));
            let email = match admin {
                Some(e) => Some(e),
                None => c
                    .query_opt(
                        "SELECT email FROM users WHERE source = $1 AND key = $2
                           AND email IS NOT NULL AND email <> ''",
                        &[&source, &id],
                    )
                    .await
                    .map_err(|e| self.err(e))?
                    .map(|r| r.get(0)),
            };
            if let Some(e) = email {
                out.insert((source, id), e);
            }
        }
        Ok(out)
    }

    async fn explain(&self, sql: &str, p: Vec<Param>) -> Result<Vec<String>, StoreError> {
        let c = self.client().await?;
        Ok(c.query(&format!("EXPLAIN {sql}"), &refs(&p))
            .await
            .map_err(|e| self.err(e))?
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect())
    }

    /// PostgreSQL's plan for a page of events (`EXPLAIN`, one line per line of its text).
    pub(crate) async fn explain_events(&self, f: EventFilter) -> Result<Vec<String>, StoreError> {
        let (sql, p) = events_sql(&f, keyset_of(&f), PAGE);
        self.explain(&sql, p).await
    }

    /// PostgreSQL's plan for a page of devices.
    pub(crate) async fn explain_devices(&self, f: DeviceFilter) -> Result<Vec<String>, StoreError> {
        let (sql, p) = devices_sql(&f, Some(PAGE));
        self.explain(&sql, p).await
    }
}
