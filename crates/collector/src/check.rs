//! The permission check for a configured source: which streams its token can collect.
//!
//! Each stream's endpoints are probed once at minimal cost (`limit=1`); the answer per stream
//! is ok, missing permission (with the checkbox to tick in Kandji → Access → API token), not
//! licensed, or another error. The licence counts size the fleet for the planner.

use std::fmt::Write as _;

use kandji_api::KandjiError;
use serde_json::Value;
use tokio::sync::watch;

use crate::config::Source;
use crate::engine::fetch::{self, q};
use crate::engine::{SourceRuntime, status};
use crate::planner::{self, FleetSize};
use crate::store::Store;
use crate::streams::{Priority, StreamName};

/// One stream's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Ok,
    MissingPermission {
        endpoint: String,
        permission: String,
    },
    NotLicensed {
        endpoint: String,
    },
    Unauthorized,
    Error {
        endpoint: String,
        message: String,
    },
}

#[derive(Debug, Clone)]
pub struct Report {
    pub source: String,
    pub matrix: Vec<(StreamName, Access)>,
    pub fleet: Option<FleetSize>,
    pub plan: Option<planner::Plan>,
}

impl Report {
    pub fn all_ok(&self) -> bool {
        self.matrix.iter().all(|(_, a)| *a == Access::Ok)
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "source {}:", self.source);
        if let Some(f) = self.fleet {
            let _ = writeln!(s, "  fleet: {} devices", f.devices);
        }
        for (stream, access) in &self.matrix {
            let line = match access {
                Access::Ok => "✓".to_string(),
                Access::MissingPermission { permission, .. } => format!(
                    "✗ missing permission: tick '{permission}' in Kandji → Access → API token, or this stream stays empty"
                ),
                Access::NotLicensed { .. } => {
                    "✗ not licensed: the tenant lacks this feature (EDR / Vulnerability Management)"
                        .into()
                }
                Access::Unauthorized => "✗ unauthorized: the token is invalid or revoked".into(),
                Access::Error { message, .. } => format!("✗ {message}"),
            };
            let _ = writeln!(s, "  {:<26} {line}", stream.as_str());
        }
        if let Some(p) = &self.plan {
            let _ = writeln!(
                s,
                "  plan: about {:.0} requests/hour of a {:.0} share; a full sweep costs about {:.0}",
                p.total_per_hour, p.share_per_hour, p.full_sweep_requests
            );
            match &p.verdict {
                planner::Verdict::Ok => {}
                planner::Verdict::Warn(m) => {
                    let _ = writeln!(s, "  warning: {m}");
                }
                planner::Verdict::Refuse(m) => {
                    let _ = writeln!(s, "  refused: {m}");
                }
            }
        }
        s
    }
}

/// The endpoint each stream needs, probed with the cheapest query.
pub fn probe(stream: StreamName) -> (&'static str, Vec<(String, String)>) {
    match stream {
        StreamName::Devices => ("/api/v1/devices", vec![q("limit", 1)]),
        StreamName::DeviceDetails => ("/api/v1/prism/device_information", vec![q("limit", 1)]),
        StreamName::Apps => ("/api/v1/prism/apps", vec![q("limit", 1)]),
        StreamName::Compliance => ("/api/v1/devices/{device_id}/status", vec![]),
        StreamName::AuditEvents => ("/api/v1/audit/events", vec![q("limit", 1)]),
        StreamName::Threats => ("/api/v1/threat-details", vec![q("limit", 1)]),
        StreamName::BehavioralDetections => ("/api/v1/behavioral-detections", vec![q("limit", 1)]),
        StreamName::VulnerabilityDetections => (
            "/api/v1/vulnerability-management/detections",
            vec![q("size", 1)],
        ),
        StreamName::Users => ("/api/v1/users", vec![]),
        StreamName::Blueprints => ("/api/v1/blueprints", vec![q("limit", 1)]),
        StreamName::Tags => ("/api/v1/tags", vec![]),
        StreamName::AdeDevices => ("/api/v1/integrations/apple/ade/devices", vec![q("page", 1)]),
    }
}

fn classify(e: &KandjiError, template: &str) -> Access {
    let endpoint = format!("GET {template}");
    match e {
        KandjiError::Unauthorized { .. } => Access::Unauthorized,
        KandjiError::PermissionDenied { .. } => Access::MissingPermission {
            permission: status::permission_name(&endpoint),
            endpoint,
        },
        KandjiError::NotLicensed { .. } => Access::NotLicensed { endpoint },
        other => Access::Error {
            endpoint,
            message: other.to_string(),
        },
    }
}

/// Probes the source's streams (one request each, plus the licence counts).
pub async fn run_with(rt: &SourceRuntime) -> anyhow::Result<Report> {
    let mut matrix = Vec::new();
    // A device id for the per-device probe.
    let any_device: Option<String> = fetch::get(
        rt,
        "/api/v1/devices",
        "/api/v1/devices".into(),
        vec![q("limit", 1)],
        Priority::Inventory,
    )
    .await
    .ok()
    .and_then(|b| {
        fetch::items(&b)
            .first()
            .and_then(|d| fetch::s(d, "device_id"))
    });
    for &stream in &rt.source.streams {
        let (template, query) = probe(stream);
        let path = match (stream, &any_device) {
            (StreamName::Compliance, Some(d)) => format!("/api/v1/devices/{d}/status"),
            (StreamName::Compliance, None) => {
                matrix.push((stream, Access::Ok));
                continue;
            }
            _ => template.to_string(),
        };
        let access = match fetch::get(rt, template, path, query, Priority::Inventory).await {
            Ok(_) => Access::Ok,
            Err(e) => classify(&e, template),
        };
        let unauthorized = access == Access::Unauthorized;
        matrix.push((stream, access));
        if unauthorized {
            // Every other probe would fail the same way: don't spend on them.
            for &rest in rt.source.streams.iter().skip(matrix.len()) {
                matrix.push((rest, Access::Unauthorized));
            }
            break;
        }
    }
    let fleet = fetch::get(
        rt,
        "/api/v1/settings/licensing",
        "/api/v1/settings/licensing".into(),
        vec![],
        Priority::Inventory,
    )
    .await
    .ok()
    .map(|b| {
        let counts = b.get("counts").cloned().unwrap_or(Value::Null);
        let n = |k: &str| counts.get(k).and_then(Value::as_u64).unwrap_or(0);
        let devices = n("computers_count")
            .max(n("macos_count") + n("ios_count") + n("ipados_count") + n("tvos_count"));
        FleetSize {
            devices,
            users: devices,
        }
    });
    let plan = fleet.map(|f| {
        planner::plan(
            f,
            &rt.source.streams,
            &rt.source.intervals,
            rt.source.hourly_limit,
            rt.source.budget_share,
            &planner::Assumptions::default(),
        )
    });
    Ok(Report {
        source: rt.name().to_string(),
        matrix,
        fleet,
        plan,
    })
}

/// Probes a configured source without a store of its own.
pub async fn run(source: &Source) -> anyhow::Result<Report> {
    let dir = std::env::temp_dir().join(format!("kandji-check-{}", std::process::id()));
    let store = Store::open(&dir)?;
    let (_tx, rx) = watch::channel(false);
    let rt = SourceRuntime::new(source.clone(), store, rx)?;
    let report = run_with(&rt).await;
    let _ = std::fs::remove_dir_all(&dir);
    report
}
