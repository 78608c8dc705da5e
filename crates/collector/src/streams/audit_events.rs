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

/// Who did it, as the feed names them: the API gives an id and a type, never an e-mail
/// (the explorer puts an admin's e-mail in place of [`actor_label`] when it knows one).
pub fn actor_label(actor_type: &str, actor_id: &str) -> String {
    match (actor_type, actor_id) {
        ("kandji", "EDR") => "Kandji EDR".into(),
        ("kandji", "VULNERABILITY_MANAGEMENT") => "Kandji Vulnerability Management".into(),
        ("kandji", "directory-sync") => "Kandji directory sync".into(),
        ("kandji", id) if !id.is_empty() => format!("Kandji ({id})"),
        ("api_token", id) => format!("API token {id}").trim_end().to_string(),
        ("", "") => "someone".into(),
        (t, id) => format!("{} {id}", words(t)).trim_end().to_string(),
    }
}

/// The summary with the actor's e-mail in place of "user <id>", when it leads with that.
pub fn with_actor(summary: &str, actor_id: &str, email: &str) -> Option<String> {
    summary
        .strip_prefix(&actor_label("user", actor_id))
        .filter(|rest| rest.is_empty() || rest.starts_with(' '))
        .map(|rest| format!("{email}{rest}"))
}

/// `admin_user` → "admin user", `api_token` → "API token".
fn words(snake: &str) -> String {
    match snake {
        "api_token" => "API token".into(),
        "mdm_profile" => "MDM profile".into(),
        other => other.replace('_', " "),
    }
}

/// The action as a past-tense verb.
fn past(action: &str) -> String {
    match action {
        "create" => "created".into(),
        "update" => "updated".into(),
        "delete" => "deleted".into(),
        "detect" => "detected".into(),
        "remediate" => "remediated".into(),
        "release" => "released".into(),
        "view" => "viewed".into(),
        other => other.replace('_', " "),
    }
}

/// One sentence from the event: who, the action, the kind of object and its name, and the
/// part changed ("user 8d21… updated blueprint “Engineering” (library items)"). This is the
/// stored summary: the explorer lists it, the search finds its words, and OCSF sends it as
/// `message`.
pub fn summary(v: &Value) -> String {
    let actor = actor_label(
        &s(v, "actor_type").unwrap_or_default(),
        &s(v, "actor_id").unwrap_or_default(),
    );
    let action = past(&s(v, "action").unwrap_or_else(|| "changed".into()));
    let target_type = s(v, "target_type").unwrap_or_default();
    // A detection is named by its threat, and happened on a device.
    let keys: &[&str] = if target_type == "file_detection" {
        &["threat_name", "name"]
    } else {
        &["name", "device_name", "email", "label", "title"]
    };
    let on_device = (target_type == "file_detection")
        .then(|| s2(v, "metadata", "device_name").or_else(|| s2(v, "new_state", "device_name")))
        .flatten();
    let name = keys
        .iter()
        .find_map(|k| s2(v, "new_state", k).or_else(|| s2(v, "metadata", k)))
        .or_else(|| {
            v.get("new_state")
                .and_then(|n| n.get("vulnerability"))
                .and_then(|x| s(x, "id"))
        })
        .or_else(|| s(v, "target_id"));
    let component = s(v, "target_component").filter(|c| !c.is_empty() && *c != target_type);
    // A device enrolling, or removing its MDM profile, is its own actor.
    let itself = !target_type.is_empty()
        && s(v, "actor_type").as_deref() == Some(target_type.as_str())
        && s(v, "actor_id").is_some()
        && s(v, "actor_id") == s(v, "target_id");
    if itself {
        let n = name.filter(|n| !n.is_empty()).map(|n| format!(" “{n}”"));
        let verb = match (s(v, "action").as_deref(), &component) {
            (Some("create"), _) if target_type == "device" => "enrolled".to_string(),
            (Some("delete"), Some(c)) => format!("removed its {}", words(c)),
            (_, Some(c)) => format!("{action} its {}", words(c)),
            (_, None) => format!("{action} itself"),
        };
        return format!("{}{} {verb}", words(&target_type), n.unwrap_or_default());
    }
    let mut out = format!("{actor} {action}");
    if !target_type.is_empty() {
        out.push(' ');
        out.push_str(&words(&target_type));
    }
    if let Some(n) = name.filter(|n| !n.is_empty()) {
        out.push_str(&format!(" “{n}”"));
    }
    if let Some(d) = on_device {
        out.push_str(&format!(" on “{d}”"));
    }
    if let Some(c) = component {
        out.push_str(&format!(" ({})", words(&c)));
    }
    out
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
    Some(EventRow {
        category: if security { "security" } else { "audit" },
        event_type: format!("{target_type}.{action}"),
        uid: id,
        occurred_at,
        device_id: device_of(v),
        user_id: (actor_type == "user").then(|| actor_id.clone()),
        severity: Some(severity),
        summary: summary(v),
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
    calls: &[],
    cost: |c| Cost::pages(c.assumptions.audit_events_per_hour as f64 * c.hours(), 500.0),
    driver: Driver::CursorEvents,
    run: |rt, scope| Box::pin(run(rt, scope)),
};

#[cfg(test)]
mod summary_tests {
    use super::summary;
    use serde_json::json;

    #[test]
    fn a_summary_says_who_did_what_to_which_object() {
        let cases = [
            (
                json!({"action": "update", "actor_type": "user", "actor_id": "cf40",
                       "target_type": "blueprint", "target_component": "library_items",
                       "new_state": {"name": "demo"}}),
                "user cf40 updated blueprint “demo” (library items)",
            ),
            (
                json!({"action": "create", "actor_type": "device", "actor_id": "d1",
                       "target_id": "d1", "target_type": "device", "target_component": "device",
                       "new_state": {"device_name": "Mac-7"}}),
                "device “Mac-7” enrolled",
            ),
            (
                json!({"action": "delete", "actor_type": "device", "actor_id": "d1",
                       "target_id": "d1", "target_type": "device",
                       "target_component": "mdm_profile", "new_state": {"device_name": "Mac-7"}}),
                "device “Mac-7” removed its MDM profile",
            ),
            (
                json!({"action": "create", "actor_type": "user", "actor_id": "cf40",
                       "target_type": "api_token", "target_id": "t1",
                       "new_state": {"label": "SIEM"}}),
                "user cf40 created API token “SIEM”",
            ),
            (
                json!({"action": "detect", "actor_type": "kandji",
                       "actor_id": "VULNERABILITY_MANAGEMENT", "target_type": "vulnerability",
                       "target_id": "CVE-2026-1",
                       "new_state": {"vulnerability": {"id": "CVE-2026-1"}}}),
                "Kandji Vulnerability Management detected vulnerability “CVE-2026-1”",
            ),
            (
                json!({"action": "detect", "actor_type": "kandji", "actor_id": "EDR",
                       "target_type": "file_detection", "target_id": "ab12",
                       "metadata": {"threat_name": "EICAR", "device_name": "Mac-7"}}),
                "Kandji EDR detected file detection “EICAR” on “Mac-7”",
            ),
            (
                json!({"action": "view", "actor_type": "user", "actor_id": "cf40",
                       "target_type": "device", "target_id": "d1",
                       "target_component": "filevault_recovery_key",
                       "new_state": {"device_name": "Mac-7"}}),
                "user cf40 viewed device “Mac-7” (filevault recovery key)",
            ),
            // Whatever the feed leaves out, the sentence still reads.
            (json!({}), "someone changed"),
        ];
        for (v, want) in cases {
            assert_eq!(summary(&v), want, "{v}");
        }
    }

    #[test]
    fn an_e_mail_takes_the_place_of_the_actor_id() {
        use super::with_actor;
        let s = "user cf40 updated blueprint “demo”";
        assert_eq!(
            with_actor(s, "cf40", "a@acme.io").as_deref(),
            Some("a@acme.io updated blueprint “demo”")
        );
        // Not this actor, or an id that only starts the same: unchanged.
        assert_eq!(with_actor(s, "cf4", "a@acme.io"), None);
        assert_eq!(with_actor("Kandji EDR detected x", "cf40", "a@acme.io"), None);
        // Summaries stored before the sentences ("user <id> update blueprint …") too.
        assert_eq!(
            with_actor("user cf40 update blueprint demo", "cf40", "a@acme.io").as_deref(),
            Some("a@acme.io update blueprint demo")
        );
    }
}
