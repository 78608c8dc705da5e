//! Audit events, EDR threats and behavioral detections, vulnerability detections.

use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;

use super::lenient::{
    f64_from_value, first_of, opt_f64, opt_i64, opt_object, opt_string, opt_time,
    string_from_value, strings, time_from_value,
};
use super::{Model, impl_model};

/// One audit log event (`GET /api/v1/audit/events`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct AuditEvent {
    /// ULID (sorts by time).
    #[serde(deserialize_with = "opt_string")]
    pub id: Option<String>,
    /// `create|update|delete|detect|…`.
    #[serde(deserialize_with = "opt_string")]
    pub action: Option<String>,
    /// When.
    #[serde(deserialize_with = "opt_time")]
    pub occurred_at: Option<OffsetDateTime>,
    /// Actor id.
    #[serde(deserialize_with = "opt_string")]
    pub actor_id: Option<String>,
    /// `user`, `api_token`, `kandji`, …
    #[serde(deserialize_with = "opt_string")]
    pub actor_type: Option<String>,
    /// Target id.
    #[serde(deserialize_with = "opt_string")]
    pub target_id: Option<String>,
    /// `blueprint`, `device`, `file_detection`, …
    #[serde(deserialize_with = "opt_string")]
    pub target_type: Option<String>,
    /// Target component.
    #[serde(deserialize_with = "opt_string")]
    pub target_component: Option<String>,
    /// New state (any JSON).
    pub new_state: Value,
    /// Metadata (any JSON).
    pub metadata: Value,
    /// The original JSON.
    #[serde(skip)]
    pub raw: Value,
}

/// One malware/PUP detection (`GET /api/v1/threat-details`). Rows have no id: see [`Threat::key`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Threat {
    /// Threat name.
    #[serde(deserialize_with = "opt_string")]
    pub threat_name: Option<String>,
    /// `MALWARE` | `PUP`.
    #[serde(deserialize_with = "opt_string")]
    pub classification: Option<String>,
    /// `QUARANTINED`, …
    #[serde(deserialize_with = "opt_string")]
    pub status: Option<String>,
    /// Process.
    #[serde(deserialize_with = "opt_string")]
    pub process_name: Option<String>,
    /// Process owner.
    #[serde(deserialize_with = "opt_string")]
    pub process_owner: Option<String>,
    /// Device name.
    #[serde(deserialize_with = "opt_string")]
    pub device_name: Option<String>,
    /// Device id.
    #[serde(deserialize_with = "opt_string")]
    pub device_id: Option<String>,
    /// Device serial.
    #[serde(deserialize_with = "opt_string")]
    pub device_serial_number: Option<String>,
    /// Detection time (naive, UTC).
    #[serde(deserialize_with = "opt_time")]
    pub detection_date: Option<OffsetDateTime>,
    /// Quarantined at.
    #[serde(deserialize_with = "opt_time")]
    pub date_of_quarantine: Option<OffsetDateTime>,
    /// Released at.
    #[serde(deserialize_with = "opt_time")]
    pub date_of_release: Option<OffsetDateTime>,
    /// File path.
    #[serde(deserialize_with = "opt_string")]
    pub file_path: Option<String>,
    /// SHA-256.
    #[serde(deserialize_with = "opt_string")]
    pub file_hash: Option<String>,
    /// Blueprint id.
    #[serde(deserialize_with = "opt_string")]
    pub blueprint_id: Option<String>,
    /// Blueprint name.
    #[serde(deserialize_with = "opt_string")]
    pub blueprint_name: Option<String>,
    /// The original JSON.
    #[serde(skip)]
    pub raw: Value,
}

impl Threat {
    /// A stable synthesized key: `device_id|file_hash|file_path|detection_date` (raw string of
    /// the date, so formatting differences in our parser cannot change it).
    pub fn key(&self) -> String {
        let raw_date = self
            .raw
            .get("detection_date")
            .and_then(string_from_value)
            .unwrap_or_default();
        format!(
            "{}|{}|{}|{}",
            self.device_id.as_deref().unwrap_or_default(),
            self.file_hash.as_deref().unwrap_or_default(),
            self.file_path.as_deref().unwrap_or_default(),
            raw_date
        )
    }
}

/// `{id, name, serial_number}` of a detection's device.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct DetectionDevice {
    /// Device id.
    #[serde(deserialize_with = "opt_string")]
    pub id: Option<String>,
    /// Name.
    #[serde(deserialize_with = "opt_string")]
    pub name: Option<String>,
    /// Serial.
    #[serde(deserialize_with = "opt_string")]
    pub serial_number: Option<String>,
}

/// A process of a behavioral detection.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ProcessInfo {
    /// Name.
    #[serde(deserialize_with = "opt_string")]
    pub name: Option<String>,
    /// Command line.
    #[serde(deserialize_with = "opt_string")]
    pub command_line: Option<String>,
    /// Image path.
    #[serde(deserialize_with = "opt_string")]
    pub image_path: Option<String>,
    /// PID.
    #[serde(deserialize_with = "opt_i64")]
    pub pid: Option<i64>,
    /// Owner.
    #[serde(deserialize_with = "opt_string")]
    pub owner: Option<String>,
    /// SHA-256.
    #[serde(deserialize_with = "opt_string")]
    pub sha256: Option<String>,
}

/// `{id, name}` reference.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct NamedRef {
    /// Id.
    #[serde(deserialize_with = "opt_string")]
    pub id: Option<String>,
    /// Name.
    #[serde(deserialize_with = "opt_string")]
    pub name: Option<String>,
}

/// One behavioral detection (`GET /api/v1/behavioral-detections`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct BehavioralDetection {
    /// Upper-case UUID.
    #[serde(deserialize_with = "opt_string")]
    pub id: Option<String>,
    /// e.g. `KTI_BD_0163`.
    #[serde(deserialize_with = "opt_string")]
    pub threat_id: Option<String>,
    /// Rule version.
    #[serde(deserialize_with = "opt_string")]
    pub rule_version: Option<String>,
    /// Description.
    #[serde(deserialize_with = "opt_string")]
    pub description: Option<String>,
    /// `malicious` | `suspicious`.
    #[serde(deserialize_with = "opt_string")]
    pub classification: Option<String>,
    /// Tags.
    #[serde(deserialize_with = "strings")]
    pub informational_tags: Vec<String>,
    /// Malware families.
    #[serde(deserialize_with = "strings")]
    pub malware_family: Vec<String>,
    /// When.
    #[serde(deserialize_with = "opt_time")]
    pub detection_date: Option<OffsetDateTime>,
    /// `detected|informational|blocked|…`.
    #[serde(deserialize_with = "opt_string")]
    pub threat_status: Option<String>,
    /// Device.
    #[serde(deserialize_with = "opt_object")]
    pub device_info: Option<DetectionDevice>,
    /// Parent process.
    #[serde(deserialize_with = "opt_object")]
    pub parent_process: Option<ProcessInfo>,
    /// Target process.
    #[serde(deserialize_with = "opt_object")]
    pub target_process: Option<ProcessInfo>,
    /// Blueprint.
    #[serde(deserialize_with = "opt_object")]
    pub blueprint: Option<NamedRef>,
    /// Library item.
    #[serde(deserialize_with = "opt_object")]
    pub library_item: Option<NamedRef>,
    /// The original JSON.
    #[serde(skip)]
    pub raw: Value,
}

/// One row of `GET /api/v1/vulnerability-management/detections` (device × software × CVE).
///
/// Both the documented and the observed field names are mapped: `description`/`cve_description`,
/// `severity`/`cvss_severity`, `detection_datetime`/`first_detection_date`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct VulnDetection {
    /// Device id.
    #[serde(deserialize_with = "opt_string")]
    pub device_id: Option<String>,
    /// Device name.
    #[serde(deserialize_with = "opt_string")]
    pub device_name: Option<String>,
    /// Device serial.
    #[serde(deserialize_with = "opt_string")]
    pub device_serial_number: Option<String>,
    /// Device model.
    #[serde(deserialize_with = "opt_string")]
    pub device_model: Option<String>,
    /// OS version.
    #[serde(deserialize_with = "opt_string")]
    pub device_os_version: Option<String>,
    /// Blueprint id.
    #[serde(deserialize_with = "opt_string")]
    pub blueprint_id: Option<String>,
    /// Blueprint name.
    #[serde(deserialize_with = "opt_string")]
    pub blueprint_name: Option<String>,
    /// Software name.
    #[serde(deserialize_with = "opt_string")]
    pub name: Option<String>,
    /// Software version.
    #[serde(deserialize_with = "opt_string")]
    pub version: Option<String>,
    /// Path.
    #[serde(deserialize_with = "opt_string")]
    pub path: Option<String>,
    /// Bundle id.
    #[serde(deserialize_with = "opt_string")]
    pub bundle_id: Option<String>,
    /// CVE.
    #[serde(deserialize_with = "opt_string")]
    pub cve_id: Option<String>,
    /// CVE link.
    #[serde(deserialize_with = "opt_string")]
    pub cve_link: Option<String>,
    /// CVSS score.
    #[serde(deserialize_with = "opt_f64")]
    pub cvss_score: Option<f64>,
    /// `description` or `cve_description`.
    #[serde(skip)]
    pub description: Option<String>,
    /// `severity` or `cvss_severity`.
    #[serde(skip)]
    pub severity: Option<String>,
    /// `detection_datetime` or `first_detection_date`.
    #[serde(skip)]
    pub detection_datetime: Option<OffsetDateTime>,
    /// `latest_detection_date`.
    #[serde(deserialize_with = "opt_time")]
    pub latest_detection_date: Option<OffsetDateTime>,
    /// CVE published.
    #[serde(deserialize_with = "opt_time")]
    pub cve_published_at: Option<OffsetDateTime>,
    /// CVE modified.
    #[serde(deserialize_with = "opt_time")]
    pub cve_modified_at: Option<OffsetDateTime>,
    /// The original JSON.
    #[serde(skip)]
    pub raw: Value,
}

impl VulnDetection {
    /// Synthesized id: `device_id-bundle_id-cve_id` (bundle id falls back to name, then path).
    pub fn key(&self) -> String {
        let software = self
            .bundle_id
            .as_deref()
            .or(self.name.as_deref())
            .or(self.path.as_deref())
            .unwrap_or_default();
        format!(
            "{}-{}-{}",
            self.device_id.as_deref().unwrap_or_default(),
            software,
            self.cve_id.as_deref().unwrap_or_default()
        )
    }
}

impl Model for VulnDetection {
    fn set_raw(&mut self, raw: Value) {
        self.raw = raw;
    }
    fn finish(&mut self) {
        let Some(obj) = self.raw.as_object() else {
            return;
        };
        self.description =
            first_of(obj, &["description", "cve_description"]).and_then(string_from_value);
        self.severity = first_of(obj, &["severity", "cvss_severity"]).and_then(string_from_value);
        self.detection_datetime = first_of(obj, &["detection_datetime", "first_detection_date"])
            .and_then(time_from_value);
        if self.cvss_score.is_none() {
            self.cvss_score = first_of(obj, &["score", "cvss"]).and_then(f64_from_value);
        }
    }
}

/// One CVE of `GET /api/v1/vulnerability-management/vulnerabilities`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Vulnerability {
    /// CVE id.
    #[serde(deserialize_with = "opt_string")]
    pub cve_id: Option<String>,
    /// Severity.
    #[serde(deserialize_with = "opt_string")]
    pub severity: Option<String>,
    /// CVSS score.
    #[serde(deserialize_with = "opt_f64")]
    pub cvss_score: Option<f64>,
    /// KEV score.
    #[serde(deserialize_with = "opt_f64")]
    pub kev_score: Option<f64>,
    /// Link.
    #[serde(deserialize_with = "opt_string")]
    pub cve_link: Option<String>,
    /// First detection.
    #[serde(deserialize_with = "opt_time")]
    pub first_detection_date: Option<OffsetDateTime>,
    /// Latest detection.
    #[serde(deserialize_with = "opt_time")]
    pub latest_detection_date: Option<OffsetDateTime>,
    /// Affected devices.
    #[serde(deserialize_with = "opt_i64")]
    pub device_count: Option<i64>,
    /// Software names.
    #[serde(deserialize_with = "strings")]
    pub software: Vec<String>,
    /// `Active`, …
    #[serde(deserialize_with = "opt_string")]
    pub status: Option<String>,
    /// The original JSON.
    #[serde(skip)]
    pub raw: Value,
}

impl_model!(AuditEvent, Threat, BehavioralDetection, Vulnerability);
