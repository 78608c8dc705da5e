//! `audit_events`: the audit log. `GET /api/v1/audit/events`, `limit` ≤ 500, ascending by
//! `occurred_at`, paged by the cursor in `next`. The checkpoint keeps the cursor and an
//! (`occurred_at`, `id`) high-water mark; when there is no cursor (caught up) or the cursor has
//! expired, the walk restarts at `start_date` = high-water mark minus an overlap, and the ULID
//! `id` dedups what the overlap reads again.
//!
//! The audit feed also picks the devices to re-fetch: every event naming a device queues it
//! for `compliance` (and so for its details), so per-device calls follow change, not fleet size.

use std::sync::Arc;

use kandji_api::api::{caps, paths};
use kandji_api::paginate::NextCursor;
use serde_json::Value;

use super::StreamName;
use super::drivers::cursor_events::{self, CursorFeed, LateWindow};
use crate::streams::fetch::{self, q, s, s2, ts};
use crate::streams::runtime::{RunReport, Scope, SourceRuntime, StreamError};
use crate::store::EventRow;
use kandji_api::Priority;
use kandji_api::check::probes;
use super::spec::{Cost, Driver, Output, Stage, StreamSpec};
use std::time::Duration;

/// Events re-read behind the high-water mark when restarting by date.
pub const OVERLAP_MS: i64 = 10 * 60 * 1000;
/// How late an event may arrive (its `occurred_at` behind the newest event read) and still
/// be collected: the hourly deep walk re-reads this far back.
pub const LATE_WINDOW_MS: i64 = 24 * 3600 * 1000;
/// How often the deep walk runs.
pub const LATE_EVERY_MS: i64 = 3600 * 1000;

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
    cursor_events::run(
        rt,
        scope,
        CursorFeed {
            stream: StreamName::AuditEvents,
            template: paths::AUDIT_EVENTS,
            style: Arc::new(NextCursor::with_limit(caps::AUDIT, caps::AUDIT)),
            overlap_ms: OVERLAP_MS,
            sorted: true,
            query: |from| {
                let mut query = vec![q("sort_by", "occurred_at")];
                if let Some(start) = from {
                    query.push(q("start_date", fetch::rfc3339(start)));
                }
                query
            },
            map,
            // Every event naming a device queues it for a compliance (and details) re-read.
            findings: None,
            late: Some(LateWindow {
                window_ms: LATE_WINDOW_MS,
                every_ms: LATE_EVERY_MS,
            }),
            refresh: Some(|ev| {
                ev.device_id
                    .clone()
                    .map(|d| (d, format!("audit:{}", ev.event_type)))
            }),
        },
    )
    .await
}

/// The declaration.
pub static SPEC: StreamSpec = StreamSpec {
    name: "audit_events",
    interval: Duration::from_secs(60),
    priority: Priority::Audit,
    category: "audit",
    rank: 3,
    stage: Stage::Collect,
    needs: None,
    output: Output::Events,
    probes: &[probes::AUDIT],
    cost: |c| Cost::pages(c.assumptions.audit_events_per_hour as f64 * c.hours(), 500.0),
    driver: Driver::CursorEvents,
    run: |rt, scope| Box::pin(run(rt, scope)),
};
