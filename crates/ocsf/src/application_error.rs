//! Application Error (6008, Application Activity): the collector's own health records (stream
//! `health`), one per change of a source's or a stream's state.
//!
//! Why this class: OCSF describes Application Error as the events that "describe issues with
//! an application that generates OCSF events", which is what the collector is when a stream
//! fails, its token is refused or the tenant's budget runs out. A recovery is the same class
//! with `status_id` 1 (Success) and severity Informational, so a SIEM rule that opens on a
//! Failure closes on the Success of the same `unmapped.subject`. A change into a bad state is
//! activity 1 (General Error); a recovery is 99 (Other, `activity_name` "Recovered").
//! `metadata.product` names the collector, not Kandji: the collector is what reports.

use serde_json::{Value, json};

use crate::common::{Base, finish, severity_id};
use crate::{Context, EventRecord};

pub(crate) fn from_health(ctx: &Context<'_>, e: &EventRecord<'_>, uid: &str) -> Value {
    let state = e
        .raw
        .get("state")
        .and_then(Value::as_str)
        .unwrap_or(e.event_type);
    let healthy = state == "healthy";
    let (activity_id, activity_name) = if healthy {
        (99, "Recovered")
    } else {
        (1, "General Error")
    };
    let base = Base {
        class_uid: 6008,
        class_name: "Application Error",
        category_uid: 6,
        category_name: "Application Activity",
        activity_id,
        activity_name,
        severity_id: severity_id(e.severity),
        time: e.occurred_at,
        log_name: e.stream,
        uid,
        message: Some(e.summary.to_string()),
    };
    let mut m = base.build(ctx);
    if let Some(meta) = m.get_mut("metadata") {
        meta["product"] = json!({
            "name": "kandji-collector",
            "vendor_name": "kandji-collector",
            "feature": {"name": "health", "version": ctx.collector_version},
        });
    }
    m.insert("status_id".into(), json!(if healthy { 1 } else { 2 }));
    m.insert(
        "status".into(),
        json!(if healthy { "Success" } else { "Failure" }),
    );
    m.insert("status_code".into(), json!(state));
    if let Some(d) = e.raw.get("message").and_then(Value::as_str) {
        m.insert("status_detail".into(), json!(d));
    }
    let pick = |k: &str| e.raw.get(k).cloned().unwrap_or(Value::Null);
    let unmapped = json!({
        "subject": pick("subject"),
        "kind": pick("kind"),
        "stream": pick("stream"),
        "state": state,
        "previous": pick("previous"),
    });
    finish(m, Some(unmapped))
}
