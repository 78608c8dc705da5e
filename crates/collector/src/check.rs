//! The permission check for a configured source: which streams its token can collect.
//!
//! The client probes each endpoint the source's streams need once, at minimal cost, and
//! reports a matrix; this module turns it into per-stream answers the CLI and the console
//! show ("threats ✗: tick 'GET /api/v1/threat-details' in Kandji → Access → API token"), and
//! sizes the fleet from the licence counts for the planner.

use std::fmt::Write as _;

use kandji_api::check::{CheckReport, PrivilegeFinding, PrivilegeProbe, ProbeResult, ProbeSet};
use tokio_util::sync::CancellationToken;

use crate::config::Source;
use crate::planner::fleet_size;
use crate::planner::{self, FleetSize};
use crate::store::Store;
use crate::streams::StreamName;
use crate::streams::runtime::SourceRuntime;

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
    /// A 403 that does not say whether the permission or the licence is missing.
    NotLicensedOrDenied {
        endpoint: String,
        permission: String,
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
    /// The privilege review (`check --privileges`, "Review token"), when asked for.
    pub privileges: Option<Vec<PrivilegeProbe>>,
}

/// One stream's answer: its first endpoint that is not Ok decides.
fn access(report: &CheckReport, stream: StreamName) -> Access {
    for e in report
        .endpoints
        .iter()
        .filter(|e| e.streams.iter().any(|s| s == stream.as_str()))
    {
        let endpoint = e.endpoint.clone();
        match &e.result {
            ProbeResult::Ok | ProbeResult::Untested { .. } => continue,
            ProbeResult::MissingPermission { permission_name } => {
                return Access::MissingPermission {
                    endpoint,
                    permission: permission_name.clone(),
                };
            }
            ProbeResult::NotLicensed => return Access::NotLicensed { endpoint },
            ProbeResult::NotLicensedOrDenied { permission_name } => {
                return Access::NotLicensedOrDenied {
                    endpoint,
                    permission: permission_name.clone(),
                };
            }
            ProbeResult::Other(kandji_api::KandjiError::Unauthorized { .. }) => {
                return Access::Unauthorized;
            }
            ProbeResult::Other(err) => {
                return Access::Error {
                    endpoint,
                    message: err.to_string(),
                };
            }
        }
    }
    Access::Ok
}

impl Report {
    pub fn all_ok(&self) -> bool {
        self.matrix.iter().all(|(_, a)| *a == Access::Ok)
    }

    /// The streams this token can collect.
    pub fn runnable(&self) -> Vec<StreamName> {
        self.matrix
            .iter()
            .filter(|(_, a)| *a == Access::Ok)
            .map(|(s, _)| *s)
            .collect()
    }

    /// The privileges the token holds that the collector does not need.
    pub fn unneeded_privileges(&self) -> Vec<&PrivilegeProbe> {
        self.privileges
            .iter()
            .flatten()
            .filter(|p| p.finding == PrivilegeFinding::Granted)
            .collect()
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
                    "✗ tick '{permission}' in Kandji → Access → API token, or this stream stays empty"
                ),
                Access::NotLicensed { .. } => {
                    "✗ not licensed: the tenant lacks this feature (EDR or Vulnerability Management)"
                        .into()
                }
                Access::NotLicensedOrDenied { permission, .. } => {
                    format!("✗ {}", not_licensed_or_denied(permission))
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
        if let Some(ps) = &self.privileges {
            s.push_str(&render_privileges(ps));
        }
        s
    }
}

/// Probes the source's streams with its runtime's client (spending from its budget).
pub async fn run_with(rt: &SourceRuntime) -> Report {
    let wants: Vec<ProbeSet<'_>> = rt
        .source
        .streams
        .iter()
        .map(|s| ProbeSet {
            stream: s.as_str(),
            priority: s.priority(),
            endpoints: s.spec().probes,
        })
        .collect();
    let report = rt.client.check(&wants).await;
    let matrix = rt
        .source
        .streams
        .iter()
        .map(|s| (*s, access(&report, *s)))
        .collect();
    let fleet = report.licensing.as_ref().ok().map(fleet_size);
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
    Report {
        source: rt.name().to_string(),
        matrix,
        fleet,
        plan,
        privileges: None,
    }
}

/// The privilege review as text: one line per sensitive endpoint.
pub fn render_privileges(ps: &[PrivilegeProbe]) -> String {
    let mut s = String::from(
        "  privileges the collector does not need (safe probes: GET, nil device id):\n",
    );
    for p in ps {
        let line = match &p.finding {
            PrivilegeFinding::NotGranted => "✓ not granted".to_string(),
            PrivilegeFinding::Granted => format!("⚠ {}", p.warning().unwrap_or_default()),
            PrivilegeFinding::Unknown { reason } => format!("? could not tell: {reason}"),
        };
        let _ = writeln!(s, "    {:<30} {line}", p.reads);
    }
    s
}

/// Looks for privileges the collector does not need (see
/// [`kandji_api::KandjiClient::review_privileges`]), spending from the source's budget.
pub async fn review_with(rt: &SourceRuntime) -> Vec<PrivilegeProbe> {
    let found = rt.client.review_privileges().await;
    let granted: Vec<&str> = found
        .iter()
        .filter(|p| p.finding == PrivilegeFinding::Granted)
        .map(|p| p.reads.as_str())
        .collect();
    if granted.is_empty() {
        tracing::info!(source = %rt.name(), "privilege review: no unneeded privilege");
    } else {
        tracing::warn!(source = %rt.name(), granted = %granted.join(", "),
            "privilege review: the token holds privileges the collector does not need");
    }
    found
}

/// The [`crate::store::Store::source_fact`] key of the last privilege review.
pub const PRIVILEGE_REVIEW: &str = "privilege_review";

/// The last privilege review as kept in the store.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StoredReview {
    /// When it ran (ms).
    pub at: i64,
    /// (request sent, what it reads, finding: `granted`, `not_granted` or `unknown`, detail).
    pub probes: Vec<(String, String, String, String)>,
}

impl StoredReview {
    pub fn of(at: i64, probes: &[PrivilegeProbe]) -> StoredReview {
        StoredReview {
            at,
            probes: probes
                .iter()
                .map(|p| {
                    let (finding, detail) = match &p.finding {
                        PrivilegeFinding::Granted => ("granted", p.warning().unwrap_or_default()),
                        PrivilegeFinding::NotGranted => ("not_granted", String::new()),
                        PrivilegeFinding::Unknown { reason } => ("unknown", reason.clone()),
                    };
                    (
                        p.request.clone(),
                        p.reads.clone(),
                        finding.to_string(),
                        detail,
                    )
                })
                .collect(),
        }
    }

    /// What the token can read that the collector does not need.
    pub fn granted(&self) -> Vec<String> {
        self.probes
            .iter()
            .filter(|p| p.2 == "granted")
            .map(|p| p.1.clone())
            .collect()
    }
}

/// Reviews the source's privileges with its runtime and keeps the result in its store.
pub async fn review_and_keep(
    rt: &SourceRuntime,
) -> Result<Vec<PrivilegeProbe>, crate::store::StoreError> {
    let probes = review_with(rt).await;
    let at = crate::store::now_ms();
    let kept = serde_json::to_string(&StoredReview::of(at, &probes)).unwrap_or_default();
    rt.store
        .set_source_fact(rt.name(), PRIVILEGE_REVIEW, kept, at)
        .await?;
    Ok(probes)
}

/// Probes a configured source with a throwaway store (and reviews its privileges when asked).
pub async fn run(source: &Source, privileges: bool) -> anyhow::Result<Report> {
    let dir = std::env::temp_dir().join(format!("kandji-check-{}", std::process::id()));
    let store = Store::open(&dir)?;
    let rt = SourceRuntime::new(source.clone(), store, CancellationToken::new())?;
    let mut report = run_with(&rt).await;
    if privileges {
        report.privileges = Some(review_with(&rt).await);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(report)
}

/// What a 403 that does not name its cause tells the user.
pub fn not_licensed_or_denied(permission: &str) -> String {
    format!(
        "403: not licensed or not permitted: tick '{permission}' in Kandji → Access → API \
         token; if it is ticked, the tenant lacks this feature (EDR or Vulnerability Management)"
    )
}
