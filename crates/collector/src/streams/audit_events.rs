//! `audit_events`: the audit log. `GET /api/v1/audit/events`, `limit` ≤ 500, ascending by
//! `occurred_at`, paged by the cursor in `next`. The checkpoint keeps the cursor and an
//! (`occurred_at`, `id`) high-water mark; when there is no cursor (caught up) or the cursor has
//! expired, the walk restarts at `start_date` = high-water mark minus an overlap, and the ULID
//! `id` dedups what the overlap reads again.
//!
//! The audit feed also picks the devices to re-fetch: every event naming a device queues it
//! for `compliance` (and so for its details), so per-device calls follow change, not fleet size.

use std::sync::Arc;

use futures::StreamExt;
use kandji_api::api::{caps, paths};
use kandji_api::paginate::{self, NextCursor};
use kandji_api::{ApiRequest, KandjiError, Position};
use serde_json::{Value, json};

use super::StreamName;
use crate::engine::fetch::{self, api_priority, q, s, s2, ts};
use crate::engine::sweep::load_checkpoint;
use crate::engine::{CursorRestarts, RunReport, Scope, SourceRuntime, StreamError};
use crate::store::EventRow;

/// Events re-read behind the high-water mark when restarting by date.
pub const OVERLAP_MS: i64 = 10 * 60 * 1000;

/// The device an audit event is about, if any.
pub fn device_of(v: &Value) -> Option<String> {
    let target_type = s(v, "target_type").unwrap_or_default();
    if (target_type == "device" || target_type == "computer")
        && let Some(id) = s(v, "target_id")
    {
        return Some(id);
    }
    for container in ["metadata", "new_state"] {
        if let Some(c) = v.get(container) {
            for key in ["device_id", "computer_id"] {
                if let Some(id) = s(c, key) {
                    return Some(id);
                }
            }
            if let Some(id) = s2(c, "device", "id") {
                return Some(id);
            }
        }
    }
    None
}

pub fn map(v: &Value) -> Option<EventRow> {
    let id = s(v, "id")?;
    let occurred_at = ts(v, "occurred_at")?;
    let action = s(v, "action").unwrap_or_else(|| "unknown".into());
    let target_type = s(v, "target_type").unwrap_or_else(|| "unknown".into());
    let actor_type = s(v, "actor_type").unwrap_or_default();
    let actor_id = s(v, "actor_id").unwrap_or_default();
    let security = matches!(target_type.as_str(), "file_detection" | "vulnerability")
        || matches!(actor_id.as_str(), "EDR" | "VULNERABILITY_MANAGEMENT");
    let severity = v
        .get("new_state")
        .and_then(|n| n.get("vulnerability"))
        .and_then(|x| s(x, "severity"))
        .or_else(|| {
            s2(v, "metadata", "classification").map(|c| match c.to_ascii_lowercase().as_str() {
                "malware" | "malicious" => "high".to_string(),
                _ => "medium".to_string(),
            })
        })
        .map(|x| x.to_ascii_lowercase())
        .unwrap_or_else(|| {
            if security {
                "medium".into()
            } else {
                "informational".into()
            }
        });
    let name = ["name", "device_name", "email", "title"]
        .iter()
        .find_map(|k| s2(v, "new_state", k).or_else(|| s2(v, "metadata", k)));
    let target = s(v, "target_component")
        .or(name)
        .or_else(|| s(v, "target_id"))
        .unwrap_or_default();
    Some(EventRow {
        category: if security { "security" } else { "audit" },
        event_type: format!("{target_type}.{action}"),
        uid: id,
        occurred_at,
        device_id: device_of(v),
        user_id: (actor_type == "user").then(|| actor_id.clone()),
        severity: Some(severity),
        summary: format!("{actor_type} {actor_id} {action} {target_type} {target}"),
        raw: v.to_string(),
    })
}

pub async fn run(rt: &SourceRuntime, scope: &Scope) -> Result<RunReport, StreamError> {
    let source = rt.name().to_string();
    let stream = StreamName::AuditEvents;
    let cp = load_checkpoint(&rt.store, &source, stream).await?;
    let get = |k: &str| cp.as_ref().and_then(|c| c.get(k)).cloned();
    let mut cursor: Option<String> = get("cursor").and_then(|v| v.as_str().map(str::to_string));
    let mut start_ms: Option<i64> = get("start_ms").and_then(|v| v.as_i64());
    let stored_hwm = get("hwm_ms").and_then(|v| v.as_i64());
    let sane = rt.sane_hwm(stream, stored_hwm).await?;
    let mut hwm_ms = sane.unwrap_or(0);
    let mut hwm_id = get("hwm_id")
        .and_then(|v| v.as_str().map(str::to_string))
        .filter(|_| sane == stored_hwm)
        .unwrap_or_default();
    if sane != stored_hwm {
        // The cursor belongs to the blinded walk.
        cursor = None;
    }
    let mut restarts = CursorRestarts::default();
    let mut report = RunReport::default();
    'walk: loop {
        // A cursor resumes the exact query it came from; without one, restart by date (the
        // first run reads the whole retained log, about a year).
        if cursor.is_none() {
            start_ms = (hwm_ms > 0).then(|| hwm_ms - OVERLAP_MS);
        }
        let mut query = vec![q("sort_by", "occurred_at")];
        if let Some(start) = start_ms {
            query.push(q("start_date", fetch::rfc3339(start)));
        }
        let req =
            ApiRequest::get(paths::AUDIT_EVENTS, api_priority(stream.priority())).with_query(query);
        let style = Arc::new(NextCursor::with_limit(caps::AUDIT, caps::AUDIT));
        let mut pages =
            paginate::walk(&rt.client, req, style, cursor.clone().map(Position::Cursor));
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(p) => p,
                Err(e @ KandjiError::BadRequest { .. }) if cursor.is_some() => {
                    // Restart from the high-water mark, a few times per run at most.
                    restarts.restart(rt, stream, &e)?;
                    cursor = None;
                    continue 'walk;
                }
                Err(e) => return Err(e.into()),
            };
            report.pages += 1;
            let empty = page.items.is_empty();
            let mut batch = rt.batch(stream);
            for item in &page.items {
                let Some(mut ev) = map(item) else {
                    tracing::warn!(source = %source, "audit event without id or occurred_at skipped");
                    continue;
                };
                let future = rt.flag_if_future(stream, &mut ev);
                if !future && (ev.occurred_at, ev.uid.as_str()) > (hwm_ms, hwm_id.as_str()) {
                    hwm_ms = ev.occurred_at;
                    hwm_id = ev.uid.clone();
                }
                if !scope.has_device(ev.device_id.as_deref()) {
                    continue;
                }
                if let Some(d) = &ev.device_id {
                    batch
                        .refresh
                        .push((d.clone(), format!("audit:{}", ev.event_type)));
                }
                batch.events.push(ev);
            }
            cursor = match page.next {
                Some(Position::Cursor(c)) => Some(c),
                _ => None,
            };
            batch.checkpoint = Some(json!({
                "cursor": cursor, "start_ms": start_ms, "hwm_ms": hwm_ms, "hwm_id": hwm_id
            }));
            let out = rt.commit(batch).await?;
            report.records += out.records();
            // Caught up: no cursor, or an empty page (a cursor may stay valid to poll later).
            if cursor.is_none() || empty {
                return Ok(report);
            }
            if rt.stopping() {
                return Err(StreamError::Shutdown);
            }
        }
        return Ok(report);
    }
}
