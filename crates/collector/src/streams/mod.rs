//! The streams: one file each, declaring its endpoint, pagination, checkpoint, schedule,
//! filters and mapping to rows. This module holds the names and the shared declarations.

use std::time::Duration;

/// A stream's name. The names are part of the CLI and the config: never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StreamName {
    Devices,
    DeviceDetails,
    Apps,
    Compliance,
    AuditEvents,
    Threats,
    BehavioralDetections,
    VulnerabilityDetections,
    Users,
    Blueprints,
    Tags,
    AdeDevices,
}

/// Who goes first when the budget is tight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    Security,
    Audit,
    Inventory,
    Bulk,
}

impl StreamName {
    pub const ALL: [StreamName; 12] = [
        StreamName::Devices,
        StreamName::DeviceDetails,
        StreamName::Apps,
        StreamName::Compliance,
        StreamName::AuditEvents,
        StreamName::Threats,
        StreamName::BehavioralDetections,
        StreamName::VulnerabilityDetections,
        StreamName::Users,
        StreamName::Blueprints,
        StreamName::Tags,
        StreamName::AdeDevices,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StreamName::Devices => "devices",
            StreamName::DeviceDetails => "device_details",
            StreamName::Apps => "apps",
            StreamName::Compliance => "compliance",
            StreamName::AuditEvents => "audit_events",
            StreamName::Threats => "threats",
            StreamName::BehavioralDetections => "behavioral_detections",
            StreamName::VulnerabilityDetections => "vulnerability_detections",
            StreamName::Users => "users",
            StreamName::Blueprints => "blueprints",
            StreamName::Tags => "tags",
            StreamName::AdeDevices => "ade_devices",
        }
    }

    pub fn parse(s: &str) -> Option<StreamName> {
        let s = s.trim();
        StreamName::ALL.into_iter().find(|n| n.as_str() == s)
    }

    /// Defaults that fit the budget share: audit about a minute, security five minutes,
    /// inventory 15–60 minutes, bulk exports 6–24 hours.
    pub fn default_interval(self) -> Duration {
        let mins = |m: u64| Duration::from_secs(m * 60);
        match self {
            StreamName::AuditEvents => Duration::from_secs(60),
            StreamName::Threats | StreamName::BehavioralDetections => mins(5),
            StreamName::VulnerabilityDetections => mins(60),
            StreamName::Devices => mins(15),
            StreamName::Compliance => mins(15),
            StreamName::Apps => mins(60),
            StreamName::DeviceDetails => mins(60),
            StreamName::Users | StreamName::Blueprints | StreamName::Tags => mins(360),
            StreamName::AdeDevices => mins(720),
        }
    }

    pub fn priority(self) -> Priority {
        match self {
            StreamName::Threats
            | StreamName::BehavioralDetections
            | StreamName::VulnerabilityDetections => Priority::Security,
            StreamName::AuditEvents => Priority::Audit,
            StreamName::Apps | StreamName::DeviceDetails => Priority::Bulk,
            _ => Priority::Inventory,
        }
    }

    /// The category its records are counted under.
    pub fn category(self) -> &'static str {
        match self {
            StreamName::AuditEvents => "audit",
            StreamName::Threats
            | StreamName::BehavioralDetections
            | StreamName::VulnerabilityDetections => "security",
            StreamName::Apps => "apps",
            StreamName::Compliance => "compliance",
            StreamName::Users => "users",
            _ => "inventory",
        }
    }
}

impl std::fmt::Display for StreamName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

pub fn names() -> Vec<&'static str> {
    StreamName::ALL.iter().map(|s| s.as_str()).collect()
}

mod ade_devices;
mod apps;
mod audit_events;
mod behavioral_detections;
mod blueprints;
mod compliance;
pub use compliance::MAX_PER_RUN as COMPLIANCE_MAX_PER_RUN;
mod device_details;
mod devices;
mod prism;
mod tags;
mod threats;
mod users;
mod vulnerability_detections;

use crate::engine::{RunReport, Scope, SourceRuntime, StreamError};

/// The device an audit event names, if any (the rule the filters and the refresh queue use).
pub use audit_events::device_of as audit_device_of;

/// Runs one stream once.
pub async fn run(
    rt: &SourceRuntime,
    scope: &Scope,
    stream: StreamName,
) -> Result<RunReport, StreamError> {
    match stream {
        StreamName::Devices => devices::run(rt, scope).await,
        StreamName::DeviceDetails => device_details::run(rt, scope).await,
        StreamName::Apps => apps::run(rt, scope).await,
        StreamName::Compliance => compliance::run(rt, scope).await,
        StreamName::AuditEvents => audit_events::run(rt, scope).await,
        StreamName::Threats => threats::run(rt, scope).await,
        StreamName::BehavioralDetections => behavioral_detections::run(rt, scope).await,
        StreamName::VulnerabilityDetections => vulnerability_detections::run(rt, scope).await,
        StreamName::Users => users::run(rt).await,
        StreamName::Blueprints => blueprints::run(rt).await,
        StreamName::Tags => tags::run(rt).await,
        StreamName::AdeDevices => ade_devices::run(rt, scope).await,
    }
}

/// Builds a row's typed values in the table's column order from (column, value) pairs;
/// columns not given are NULL.
pub(crate) fn typed(
    table: crate::store::Table,
    pairs: Vec<(&'static str, rusqlite::types::Value)>,
) -> Vec<rusqlite::types::Value> {
    let spec = table.spec();
    let mut out = vec![rusqlite::types::Value::Null; spec.columns.len()];
    for (name, v) in pairs {
        if let Some(i) = spec.col_index(name) {
            out[i] = v;
        }
    }
    out
}

pub(crate) fn text(v: Option<String>) -> rusqlite::types::Value {
    v.map_or(rusqlite::types::Value::Null, rusqlite::types::Value::Text)
}

pub(crate) fn int(v: Option<i64>) -> rusqlite::types::Value {
    v.map_or(
        rusqlite::types::Value::Null,
        rusqlite::types::Value::Integer,
    )
}

pub(crate) fn flag(v: Option<bool>) -> rusqlite::types::Value {
    int(v.map(i64::from))
}

/// Walks a DRF-envelope event endpoint (threats, behavioral detections) with `limit` ≤ 1000
/// and `offset`. `each` maps a page's items into the batch and returns the checkpoint that
/// holds once the walk completes; pages before the last commit with no checkpoint change,
/// so a crash re-reads the window and the event uids dedup it.
pub(crate) async fn envelope_events<F>(
    rt: &SourceRuntime,
    stream: StreamName,
    template: &'static str,
    query: Vec<(String, String)>,
    mut each: F,
) -> Result<RunReport, StreamError>
where
    F: FnMut(&mut crate::store::Batch, &[serde_json::Value]) -> serde_json::Value,
{
    use futures::StreamExt;
    use kandji_api::api::caps;
    use kandji_api::paginate::{self, DrfEnvelope};

    let req = kandji_api::ApiRequest::get(
        template,
        crate::engine::fetch::api_priority(stream.priority()),
    )
    .with_query(query);
    let style = std::sync::Arc::new(DrfEnvelope::new(caps::EDR, caps::EDR));
    let mut pages = paginate::walk(&rt.client, req, style, None);
    let mut report = RunReport::default();
    while let Some(page) = pages.next().await {
        let page = page?;
        report.pages += 1;
        let mut batch = rt.batch(stream);
        let cp = each(&mut batch, &page.items);
        if page.next.is_none() {
            batch.checkpoint = Some(cp);
        }
        let out = rt.commit(batch).await?;
        report.records += out.records();
        if page.next.is_none() {
            return Ok(report);
        }
        if rt.stopping() {
            return Err(StreamError::Shutdown);
        }
    }
    Ok(report)
}
