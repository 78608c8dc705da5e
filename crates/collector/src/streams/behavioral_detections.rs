//! `behavioral_detections`: EDR behavioral detections. `GET /api/v1/behavioral-detections`, a
//! DRF envelope with `total_count`, paged by `limit` ≤ 1000 and `offset`, filtered by
//! `detection_date_from` (a date): the day before the newest detection seen, so the window
//! overlaps, and the detection `id` dedups.

use serde_json::Value;

use super::StreamName;
use kandji_api::api::paths;

use crate::streams::fetch::{self, q, s, s2, ts};
use super::drivers::envelope_events;
use crate::streams::runtime::{RunReport, Scope, SourceRuntime, StreamError};
use crate::store::EventRow;
use kandji_api::Priority;
use kandji_api::check::probes;
use super::spec::{Driver, Output, Stage, StreamSpec};
use std::time::Duration;

pub fn map(v: &Value) -> Option<EventRow> {
    let id = s(v, "id")?;
    let occurred_at = ts(v, "detection_date")?;
    let classification = s(v, "classification").unwrap_or_else(|| "unknown".into());
    Some(EventRow {
        category: "security",
        event_type: format!(
            "behavioral_detection.{}",
            classification.to_ascii_lowercase()
        ),
        uid: id.to_ascii_uppercase(),
        occurred_at,
        device_id: s2(v, "device_info", "id"),
        user_id: None,
        severity: Some(
            if classification.eq_ignore_ascii_case("malicious") {
                "high"
            } else {
                "medium"
            }
            .into(),
        ),
        summary: format!(
            "{} {} on {} ({}): {}",
            classification,
            s(v, "threat_id").unwrap_or_default(),
            s2(v, "device_info", "name").unwrap_or_default(),
            s(v, "threat_status").unwrap_or_default(),
            s(v, "description").unwrap_or_default()
        ),
        raw: v.to_string(),
    })
}

fn date(ms: i64) -> String {
    fetch::rfc3339(ms).chars().take(10).collect()
}

pub async fn run(rt: &SourceRuntime, scope: &Scope) -> Result<RunReport, StreamError> {
    let stream = StreamName::BehavioralDetections;
    let stored = envelope_events::checkpoint(rt, stream).await?.hwm_ms;
    let mut hwm = rt.sane_hwm(stream, stored).await?;
    // The first run reads everything; later runs from the day before the newest detection.
    let mut query = vec![q("sort_by", "detection_date")];
    if let Some(ms) = hwm {
        query.push(q("detection_date_from", date(ms - 86_400_000)));
    }
    envelope_events::run(rt, stream, paths::BEHAVIORAL, query, |batch, items| {
        for item in items {
            if let Some(mut ev) = map(item) {
                if !rt.flag_if_future(stream, &mut ev) {
                    hwm = Some(hwm.map_or(ev.occurred_at, |h| h.max(ev.occurred_at)));
                }
                if scope.has_device(ev.device_id.as_deref()) {
                    batch.events.push(ev);
                }
            }
        }
        envelope_events::Checkpoint {
            hwm_ms: hwm,
            ..Default::default()
        }
    })
    .await
}

/// The declaration.
pub static SPEC: StreamSpec = StreamSpec {
    name: "behavioral_detections",
    interval: Duration::from_secs(60 * 5),
    priority: Priority::Security,
    category: "security",
    rank: 5,
    stage: Stage::Collect,
    needs: None,
    output: Output::Events,
    probes: &[probes::BEHAVIORAL],
    calls: &[],
    cost: |_| 1.0,
    driver: Driver::EnvelopeEvents,
    run: |rt, scope| Box::pin(run(rt, scope)),
};
