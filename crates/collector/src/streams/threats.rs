//! `threats`: EDR malware/PUP detections. `GET /api/v1/threat-details`, a DRF envelope paged by
//! `limit` ≤ 1000 and `offset`, whose only time filter is `date_range` in whole days. Each run
//! reads an overlapping window (the days since the last success, plus one) newest first, and
//! rows, which have no id, dedup on a stable synthesized key
//! (device_id, file_hash, file_path, detection_date). A row seen again with a new status
//! (quarantined → released) updates the stored event.

use serde_json::Value;

use super::StreamName;
use kandji_api::api::paths;

use crate::streams::fetch::{self, q, s, ts};
use super::drivers::envelope_events;
use crate::streams::runtime::{RunReport, Scope, SourceRuntime, StreamError};
use crate::store::EventRow;
use kandji_api::Priority;
use kandji_api::check::probes;
use super::spec::{Driver, Output, Stage, StreamSpec};
use std::time::Duration;

/// Days the first run reads back (EDR keeps about a year).
pub const BACKFILL_DAYS: i64 = 365;

/// The stable key of a threat row (it has no id).
pub fn key(v: &Value) -> String {
    let detection = fetch::ts(v, "detection_date")
        .map(|t| t.to_string())
        .or_else(|| s(v, "detection_date"))
        .unwrap_or_default();
    format!(
        "{}|{}|{}|{}",
        s(v, "device_id").unwrap_or_default(),
        s(v, "file_hash").unwrap_or_default(),
        s(v, "file_path").unwrap_or_default(),
        detection
    )
}

pub fn map(v: &Value) -> Option<EventRow> {
    let occurred_at = ts(v, "detection_date")?;
    let classification = s(v, "classification").unwrap_or_else(|| "UNKNOWN".into());
    let status = s(v, "status").unwrap_or_default();
    Some(EventRow {
        category: "security",
        event_type: format!("threat.{}", classification.to_ascii_lowercase()),
        uid: key(v),
        occurred_at,
        device_id: s(v, "device_id"),
        user_id: None,
        severity: Some(
            if classification.eq_ignore_ascii_case("malware") {
                "high"
            } else {
                "medium"
            }
            .into(),
        ),
        summary: format!(
            "{classification} {} on {} ({status}) {}",
            s(v, "threat_name").unwrap_or_default(),
            s(v, "device_name").unwrap_or_default(),
            s(v, "file_path").unwrap_or_default()
        ),
        raw: v.to_string(),
    })
}

pub async fn run(rt: &SourceRuntime, scope: &Scope) -> Result<RunReport, StreamError> {
    let source = rt.name().to_string();
    let stream = StreamName::Threats;
    let cp = envelope_events::checkpoint(rt, stream).await?;
    let started = rt.now();
    let last = cp.last_success_ms;
    let days = match last {
        Some(ms) => ((started - ms) / 86_400_000 + 2).clamp(1, 365),
        None => BACKFILL_DAYS,
    };
    let query = vec![q("date_range", days), q("sort_by", "-detection_date")];
    envelope_events::run(rt, stream, paths::THREATS, query, |batch, items| {
        for item in items {
            match map(item) {
                Some(ev) if scope.has_device(ev.device_id.as_deref()) => batch.events.push(ev),
                Some(_) => {}
                None => {
                    tracing::warn!(source = %source, "threat row without a detection date skipped")
                }
            }
        }
        envelope_events::Checkpoint {
            last_success_ms: Some(started),
            ..Default::default()
        }
    })
    .await
}

/// The declaration.
pub static SPEC: StreamSpec = StreamSpec {
    name: "threats",
    interval: Duration::from_secs(60 * 5),
    priority: Priority::Security,
    category: "security",
    rank: 4,
    stage: Stage::Collect,
    needs: None,
    output: Output::Events,
    probes: &[probes::THREATS],
    calls: &[],
    cost: |_| 1.0,
    driver: Driver::EnvelopeEvents,
    run: |rt, scope| Box::pin(run(rt, scope)),
};
