//! Configuration types of the simulated tenant (see docs/SIM-CONTRACT.md).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The token with every permission, in the UUID format the real API uses.
pub const DEFAULT_TOKEN: &str = "5f3c8a1e-7b2d-4c9a-9e61-0d4b2f8a7c15";

/// Everything that shapes a simulated tenant.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub devices: usize,
    pub seed: u64,
    pub tenant: String,
    pub token: String,
    pub extra_tokens: Vec<TokenSpec>,
    pub hourly_limit: u32,
    pub per_second_limit: u32,
    pub retry_after: bool,
    pub export_polls: u32,
    pub licensed_edr: bool,
    pub licensed_vuln: bool,
    pub faults: Faults,
    pub clock: ClockConfig,
    pub churn: Churn,
    /// Extra "richness" points every device gets (0–100; 0 keeps the default fleet of about
    /// 100 apps per device): more apps per device, for benchmarks of bigger inventories.
    pub app_richness: u8,
    /// Prism categories this tenant refuses (`POST /prism/export` and `GET /prism/<c>`
    /// answer 400 `Invalid category: <c>`), as a tenant without a feature was measured to.
    pub refused_prism_categories: Vec<String>,
    /// The share of devices that are Android (Iru manages them): they appear on `/devices`,
    /// `/devices/{id}`, `/details` and `/apps` in the shapes of the spec's Android examples,
    /// and nowhere else (not in Prism, exports, ADE, library items or the security feeds).
    /// Assumed share.
    pub android_share: f64,
    /// The share of Windows devices: on `/devices` and `/devices/{id}` only (the spec has no
    /// Windows shapes for the rest). Assumed share.
    pub windows_share: f64,
    /// The `detail` of the 403 for an unlicensed feature. Kandji's text is not documented;
    /// [`LICENCE_TEXTS`] are the variants tests run.
    pub unlicensed_detail: String,
    /// A large tenant's dimensions: 350 blueprints (more than a page of 300), so the
    /// blueprint walk's later pages run in tests. Off by default (4 + 1 per 2,000 devices).
    pub large_tenant: bool,
    /// Send the rate-limit headers (`X-RateLimit-*`, `RateLimit-*`). The 2023 recordings
    /// have none, the 2024 ones all: a client must budget without them.
    pub rate_limit_headers: bool,
}

/// Plausible 403 texts for an unlicensed feature: one that says so, DRF's permission text
/// (which cannot be told from a missing permission), and one that names neither.
pub const LICENCE_TEXTS: [&str; 3] = [
    "This feature is not enabled for your tenant.",
    "You do not have permission to perform this action.",
    "Vulnerability Management is not available on your current plan.",
];

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            devices: 100,
            seed: 1,
            tenant: "acme".to_owned(),
            token: DEFAULT_TOKEN.to_owned(),
            extra_tokens: Vec::new(),
            hourly_limit: 10_000,
            per_second_limit: 50,
            retry_after: true,
            export_polls: 2,
            licensed_edr: true,
            licensed_vuln: true,
            faults: Faults::default(),
            clock: ClockConfig::default(),
            churn: Churn::default(),
            app_richness: 0,
            refused_prism_categories: Vec::new(),
            android_share: 0.03,
            windows_share: 0.02,
            unlicensed_detail: LICENCE_TEXTS[0].to_owned(),
            large_tenant: false,
            rate_limit_headers: true,
        }
    }
}

/// Fault injection knobs; all off by default. Applied to `/api/v1` routes only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Fraction of requests answered 500/502/503/504.
    pub error_rate: f64,
    /// Added to every response (real time).
    pub latency_ms: u64,
    /// Fraction whose connection is dropped before a complete response.
    pub reset_rate: f64,
    /// Fraction whose JSON body is cut off mid-way (status 200).
    pub truncate_rate: f64,
    /// Fraction answered 200 with an HTML (non-JSON) body.
    pub malformed_rate: f64,
    /// Every cursor issued before now is refused (`{"detail":"Invalid cursor"}`, 400 unless
    /// `cursor_refusal_404`). `/users` cursors are DRF's and never expire.
    pub expire_cursors: bool,
    /// The custom cursors (audit, Prism, vulnerability detections) are refused with 404, as
    /// DRF's `CursorPagination` refuses its own, instead of 400. Which one the live API sends
    /// for these is unknown, so tests run both.
    pub cursor_refusal_404: bool,
    /// The cursor endpoints (audit, Prism, vulnerability detections) serve at most this many
    /// items a page, whatever `limit`/`size` asked (0: their own caps). Assumed: a server may
    /// serve short pages, and a client must follow `next` rather than stop at one.
    pub page_cap: usize,
    /// The next N valid custom cursors presented are refused (as `expire_cursors` refuses, 400
    /// or 404), as if they expired between two pages of a walk.
    pub refuse_next_cursors: u32,
    /// The next N requests get 429 regardless of budget.
    pub storm_429: u32,
    /// The next N Prism exports created end `failed` with an `error_msg` (after their polls).
    pub failed_exports: u32,
    /// Signed export URLs have expired by the time they are used: S3 answers 403
    /// `AccessDenied` "Request has expired".
    pub expired_export_urls: bool,
}

/// The simulated clock: `now = start + speed * (tokio elapsed) + advanced`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClockConfig {
    pub start: OffsetDateTime,
    /// Simulated seconds per real second. The library default is `0.0`: the clock is
    /// frozen at `start` and only moves through `SimHandle::advance` (the CLI defaults to 1.0).
    pub speed: f64,
}

impl Default for ClockConfig {
    fn default() -> Self {
        Self {
            start: time::macros::datetime!(2026-11-01 00:00:00 UTC),
            speed: 0.0,
        }
    }
}

/// A token with a restricted set of permissions (`"GET /api/v1/devices/{device_id}/apps"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenSpec {
    pub token: String,
    pub allow: Vec<String>,
}

/// Rates of the live tenant, per simulated hour and per 1,000 devices (minimum one device).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Churn {
    pub enroll: f64,
    pub unenroll: f64,
    pub app_changes: f64,
    pub compliance_flips: f64,
    pub filevault_toggles: f64,
    pub os_updates: f64,
    pub blueprint_changes: f64,
    pub threats: f64,
    pub behavioral: f64,
    pub vulnerabilities: f64,
    /// Open vulnerability detections remediated per hour (per 1k devices).
    pub vuln_remediations: f64,
    pub admin_events: f64,
    /// The fraction of device-reported audit events (EDR and vulnerability detections) that
    /// a device reports late, after being offline: the event's `occurred_at` is up to
    /// `late_audit_max_hours` before the moment it appears in the feed, behind newer events
    /// already served. Assumed rate (laptops sleep and travel); the delay bound too.
    pub late_audit: f64,
    pub late_audit_max_hours: f64,
}

impl Default for Churn {
    fn default() -> Self {
        Self {
            enroll: 2.0,
            unenroll: 1.0,
            app_changes: 60.0,
            compliance_flips: 30.0,
            filevault_toggles: 2.0,
            os_updates: 6.0,
            blueprint_changes: 1.0,
            threats: 1.0,
            behavioral: 1.0,
            vulnerabilities: 3.0,
            vuln_remediations: 2.0,
            admin_events: 2.0,
            late_audit: 0.1,
            late_audit_max_hours: 6.0,
        }
    }
}

impl Churn {
    /// A static tenant: nothing changes when the clock moves.
    pub fn none() -> Self {
        Self {
            enroll: 0.0,
            unenroll: 0.0,
            app_changes: 0.0,
            compliance_flips: 0.0,
            filevault_toggles: 0.0,
            os_updates: 0.0,
            blueprint_changes: 0.0,
            threats: 0.0,
            behavioral: 0.0,
            vulnerabilities: 0.0,
            vuln_remediations: 0.0,
            admin_events: 0.0,
            late_audit: 0.0,
            late_audit_max_hours: 6.0,
        }
    }
}
