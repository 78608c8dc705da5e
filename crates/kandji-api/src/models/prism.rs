//! Prism rows (generic map + common fields) and the export object.

use serde::Deserialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::lenient::{self, first_of, opt_string, opt_time, string_from_value, time_from_value};
use super::{Model, impl_model};

lenient::open_enum! {
    /// Prism export status.
    ExportStatus {
        /// Queued or running.
        Pending => ["pending", "running", "in_progress", "processing", "queued"],
        /// Done; `signed_url` should be set.
        Success => ["success", "succeeded", "complete", "completed", "done"],
        /// Failed; see `error_msg`.
        Failed => ["failed", "error"],
    }
}

impl Default for ExportStatus {
    fn default() -> Self {
        Self::Other(String::new())
    }
}

/// `POST /api/v1/prism/export` and `GET /api/v1/prism/export/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct PrismExport {
    /// Export id (UUID).
    #[serde(deserialize_with = "opt_string")]
    pub id: Option<String>,
    /// Status.
    pub status: ExportStatus,
    /// Category.
    #[serde(deserialize_with = "opt_string")]
    pub category: Option<String>,
    /// Error message when failed.
    #[serde(deserialize_with = "opt_string")]
    pub error_msg: Option<String>,
    /// Storage path.
    #[serde(deserialize_with = "opt_string")]
    pub path: Option<String>,
    /// Presigned download URL (valid 48 h). Fetch WITHOUT the bearer header.
    #[serde(deserialize_with = "opt_string")]
    pub signed_url: Option<String>,
    /// Created.
    #[serde(deserialize_with = "opt_time")]
    pub created_at: Option<OffsetDateTime>,
    /// Updated.
    #[serde(deserialize_with = "opt_time")]
    pub updated_at: Option<OffsetDateTime>,
    /// The original JSON.
    #[serde(skip)]
    pub raw: Value,
}

impl_model!(PrismExport);

/// One Prism row (from `GET /api/v1/prism/<category>` or an export CSV): every column in
/// `fields`, plus the common fields typed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PrismRow {
    /// All columns (CSV rows: every value is a string; empty cells are `""`).
    pub fields: Map<String, Value>,
    /// `device_id`.
    pub device_id: Option<String>,
    /// `device__name`.
    pub device_name: Option<String>,
    /// `device__family`.
    pub device_family: Option<String>,
    /// `device__user_email`.
    pub user_email: Option<String>,
    /// `serial_number`.
    pub serial_number: Option<String>,
    /// `blueprint_id`.
    pub blueprint_id: Option<String>,
    /// `blueprint_name`.
    pub blueprint_name: Option<String>,
    /// `created_at`.
    pub created_at: Option<OffsetDateTime>,
    /// `updated_at`.
    pub updated_at: Option<OffsetDateTime>,
    /// `last_changed_at`.
    pub last_changed_at: Option<OffsetDateTime>,
    /// `last_collected_at`.
    pub last_collected_at: Option<OffsetDateTime>,
}

impl PrismRow {
    /// Build from a map of columns. Column names are looked up as given and in normalized
    /// form (lower case, spaces → `_`), so `"Device ID"` also fills `device_id`.
    pub fn from_map(fields: Map<String, Value>) -> Self {
        let norm: Map<String, Value> = fields
            .iter()
            .map(|(k, v)| {
                (
                    k.trim().to_ascii_lowercase().replace([' ', '-'], "_"),
                    v.clone(),
                )
            })
            .collect();
        let s = |keys: &[&str]| first_of(&norm, keys).and_then(string_from_value);
        let t = |keys: &[&str]| first_of(&norm, keys).and_then(time_from_value);
        Self {
            device_id: s(&["device_id", "device__id"]),
            device_name: s(&["device__name", "device_name"]),
            device_family: s(&["device__family", "device_family"]),
            user_email: s(&["device__user_email", "user_email"]),
            serial_number: s(&["serial_number", "device__serial_number"]),
            blueprint_id: s(&["blueprint_id"]),
            blueprint_name: s(&["blueprint_name"]),
            created_at: t(&["created_at"]),
            updated_at: t(&["updated_at"]),
            last_changed_at: t(&["last_changed_at"]),
            last_collected_at: t(&["last_collected_at"]),
            fields,
        }
    }

    /// A column as a string (`None` for empty/missing).
    pub fn get_str(&self, key: &str) -> Option<String> {
        self.fields.get(key).and_then(string_from_value)
    }

    /// The row as a JSON object.
    pub fn to_value(&self) -> Value {
        Value::Object(self.fields.clone())
    }
}

impl<'de> Deserialize<'de> for PrismRow {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Object(m) => Self::from_map(m),
            _ => Self::default(),
        })
    }
}

impl Model for PrismRow {
    fn set_raw(&mut self, _raw: Value) {}
}
