//! Devices: list items, details, apps, status (library items + parameters), activity, commands.

use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;

use super::lenient::{
    self, object_vec, opt_bool, opt_i64, opt_object, opt_string, opt_time, strings,
};
use super::{Model, impl_model};

lenient::open_enum! {
    /// `/devices` `platform`.
    Platform {
        /// macOS.
        Mac => ["mac", "macos"],
        /// iPhone.
        IPhone => ["iphone"],
        /// iPad.
        IPad => ["ipad"],
        /// Apple TV.
        AppleTv => ["appletv", "tvos"],
        /// Apple Vision.
        Vision => ["vision", "visionos"],
        /// Android (Iru manages Android devices).
        Android => ["android"],
        /// Windows (Iru manages Windows devices).
        Windows => ["windows"],
    }
}

lenient::open_enum! {
    /// Library-item / parameter status (upper case for most items, lower case for profiles).
    ItemStatus {
        /// Compliant.
        Pass => ["pass"],
        /// Audit failure.
        Error => ["error"],
        /// Not applicable to the device.
        Incompatible => ["incompatible"],
        /// Not yet reported.
        Pending => ["pending"],
        /// Fixed by the agent.
        Remediated => ["remediated"],
        /// Muted alert.
        Warning => ["warning"],
        /// Available in Self Service.
        Available => ["available"],
        /// Cached.
        Cached => ["cached"],
        /// Change pending.
        ChangePending => ["change_pending"],
        /// Downloading.
        Downloading => ["downloading"],
        /// Excluded by an assignment rule.
        Excluded => ["excluded"],
        /// Installing.
        Installing => ["installing"],
        /// Profile failed (lower case).
        Failed => ["failed"],
        /// Profile installed (lower case).
        Success => ["success"],
    }
}

impl ItemStatus {
    /// Whether this status counts as compliant.
    pub fn is_ok(&self) -> bool {
        matches!(self, Self::Pass | Self::Remediated | Self::Success)
    }
}

impl Default for ItemStatus {
    fn default() -> Self {
        Self::Other(String::new())
    }
}

impl Default for Platform {
    fn default() -> Self {
        Self::Other(String::new())
    }
}

/// The `user` of a device: an object when assigned, `""` when not (→ `None`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct DeviceUser {
    /// UUID (an integer in 2022 data; kept as string).
    #[serde(deserialize_with = "opt_string")]
    pub id: Option<String>,
    /// Email.
    #[serde(deserialize_with = "opt_string")]
    pub email: Option<String>,
    /// Name.
    #[serde(deserialize_with = "opt_string")]
    pub name: Option<String>,
    /// Archived in the directory.
    #[serde(deserialize_with = "opt_bool")]
    pub is_archived: Option<bool>,
}

/// One item of `GET /api/v1/devices` (also `GET /devices/{id}`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Device {
    /// Device UUID.
    #[serde(deserialize_with = "opt_string")]
    pub device_id: Option<String>,
    /// Name.
    #[serde(deserialize_with = "opt_string")]
    pub device_name: Option<String>,
    /// Model name.
    #[serde(deserialize_with = "opt_string")]
    pub model: Option<String>,
    /// Serial number.
    #[serde(deserialize_with = "opt_string")]
    pub serial_number: Option<String>,
    /// Platform (`Mac`, `iPhone`, `iPad`, `AppleTV`, `Android`, `Windows`, or other).
    #[serde(deserialize_with = "opt_platform")]
    pub platform: Option<Platform>,
    /// OS version.
    #[serde(deserialize_with = "opt_string")]
    pub os_version: Option<String>,
    /// Last agent check-in.
    #[serde(deserialize_with = "opt_time")]
    pub last_check_in: Option<OffsetDateTime>,
    /// Assigned user (None when `""`).
    #[serde(deserialize_with = "opt_object")]
    pub user: Option<DeviceUser>,
    /// Asset tag.
    #[serde(deserialize_with = "opt_string")]
    pub asset_tag: Option<String>,
    /// Blueprint id.
    #[serde(deserialize_with = "opt_string")]
    pub blueprint_id: Option<String>,
    /// Blueprint name.
    #[serde(deserialize_with = "opt_string")]
    pub blueprint_name: Option<String>,
    /// MDM enabled.
    #[serde(deserialize_with = "opt_bool")]
    pub mdm_enabled: Option<bool>,
    /// Agent installed.
    #[serde(deserialize_with = "opt_bool")]
    pub agent_installed: Option<bool>,
    /// Reported missing.
    #[serde(deserialize_with = "opt_bool")]
    pub is_missing: Option<bool>,
    /// Removed from management.
    #[serde(deserialize_with = "opt_bool")]
    pub is_removed: Option<bool>,
    /// Agent version.
    #[serde(deserialize_with = "opt_string")]
    pub agent_version: Option<String>,
    /// First enrollment.
    #[serde(deserialize_with = "opt_time")]
    pub first_enrollment: Option<OffsetDateTime>,
    /// Last enrollment.
    #[serde(deserialize_with = "opt_time")]
    pub last_enrollment: Option<OffsetDateTime>,
    /// Lost mode status.
    #[serde(deserialize_with = "opt_string")]
    pub lost_mode_status: Option<String>,
    /// Tag names.
    #[serde(deserialize_with = "strings")]
    pub tags: Vec<String>,
    /// The original JSON.
    #[serde(skip)]
    pub raw: Value,
}

fn opt_platform<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Platform>, D::Error> {
    Ok(Value::deserialize(d)
        .ok()
        .as_ref()
        .and_then(lenient::string_from_value)
        .map(|s| Platform::parse(&s)))
}

/// `details.general`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct DetailsGeneral {
    /// Device UUID.
    #[serde(deserialize_with = "opt_string")]
    pub device_id: Option<String>,
    /// Name.
    #[serde(deserialize_with = "opt_string")]
    pub device_name: Option<String>,
    /// Model.
    #[serde(deserialize_with = "opt_string")]
    pub model: Option<String>,
    /// Platform.
    #[serde(deserialize_with = "opt_string")]
    pub platform: Option<String>,
    /// OS version.
    #[serde(deserialize_with = "opt_string")]
    pub os_version: Option<String>,
    /// Last logged-in user.
    #[serde(deserialize_with = "opt_string")]
    pub last_user: Option<String>,
    /// Asset tag.
    #[serde(deserialize_with = "opt_string")]
    pub asset_tag: Option<String>,
    /// Assigned user (object or `""`).
    #[serde(deserialize_with = "opt_object")]
    pub assigned_user: Option<DeviceUser>,
    /// Blueprint name.
    #[serde(deserialize_with = "opt_string")]
    pub blueprint_name: Option<String>,
    /// Blueprint id.
    #[serde(deserialize_with = "opt_string")]
    pub blueprint_uuid: Option<String>,
    /// First enrollment.
    #[serde(deserialize_with = "opt_time")]
    pub first_enrollment: Option<OffsetDateTime>,
    /// Last enrollment.
    #[serde(deserialize_with = "opt_time")]
    pub last_enrollment: Option<OffsetDateTime>,
}

/// `details.mdm`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct DetailsMdm {
    /// MDM enabled (`"True"`).
    #[serde(deserialize_with = "opt_bool")]
    pub mdm_enabled: Option<bool>,
    /// Supervised.
    #[serde(deserialize_with = "opt_bool")]
    pub supervised: Option<bool>,
    /// MDM profile install date.
    #[serde(deserialize_with = "opt_time")]
    pub install_date: Option<OffsetDateTime>,
    /// Last MDM check-in.
    #[serde(deserialize_with = "opt_time")]
    pub last_check_in: Option<OffsetDateTime>,
}

/// `details.kandji_agent`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct DetailsAgent {
    /// Agent installed (`"True"`).
    #[serde(deserialize_with = "opt_bool")]
    pub agent_installed: Option<bool>,
    /// Agent version.
    #[serde(deserialize_with = "opt_string")]
    pub agent_version: Option<String>,
    /// Install date.
    #[serde(deserialize_with = "opt_time")]
    pub install_date: Option<OffsetDateTime>,
    /// Last agent check-in.
    #[serde(deserialize_with = "opt_time")]
    pub last_check_in: Option<OffsetDateTime>,
}

/// `details.filevault`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct DetailsFileVault {
    /// FileVault on.
    #[serde(deserialize_with = "opt_bool")]
    pub filevault_enabled: Option<bool>,
    /// Recovery key type.
    #[serde(deserialize_with = "opt_string")]
    pub filevault_recoverykey_type: Option<String>,
    /// Personal recovery key escrowed.
    #[serde(deserialize_with = "opt_bool")]
    pub filevault_prk_escrowed: Option<bool>,
    /// Regeneration required.
    #[serde(deserialize_with = "opt_bool")]
    pub filevault_regen_required: Option<bool>,
}

/// `details.hardware_overview`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct DetailsHardware {
    /// Marketing model name.
    #[serde(deserialize_with = "opt_string")]
    pub model_name: Option<String>,
    /// Model identifier.
    #[serde(deserialize_with = "opt_string")]
    pub model_identifier: Option<String>,
    /// CPU.
    #[serde(deserialize_with = "opt_string")]
    pub processor_name: Option<String>,
    /// Memory (e.g. `"16 GB"`).
    #[serde(deserialize_with = "opt_string")]
    pub memory: Option<String>,
    /// Serial number.
    #[serde(deserialize_with = "opt_string")]
    pub serial_number: Option<String>,
    /// UDID.
    #[serde(deserialize_with = "opt_string")]
    pub udid: Option<String>,
}

/// `details.network`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct DetailsNetwork {
    /// Local host name.
    #[serde(deserialize_with = "opt_string")]
    pub local_hostname: Option<String>,
    /// MAC address.
    #[serde(deserialize_with = "opt_string")]
    pub mac_address: Option<String>,
    /// IP address.
    #[serde(deserialize_with = "opt_string")]
    pub ip_address: Option<String>,
    /// Public IP.
    #[serde(deserialize_with = "opt_string")]
    pub public_ip: Option<String>,
}

/// One entry of `details.volumes`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Volume {
    /// Name.
    #[serde(deserialize_with = "opt_string")]
    pub name: Option<String>,
    /// Format.
    #[serde(deserialize_with = "opt_string")]
    pub format: Option<String>,
    /// e.g. `"19%"`.
    #[serde(deserialize_with = "opt_string")]
    pub percent_used: Option<String>,
    /// e.g. `"228.27 GB"`.
    #[serde(deserialize_with = "opt_string")]
    pub capacity: Option<String>,
    /// e.g. `"180 GB"`.
    #[serde(deserialize_with = "opt_string")]
    pub available: Option<String>,
    /// `"Yes"`/`"No"`.
    #[serde(deserialize_with = "opt_bool")]
    pub encrypted: Option<bool>,
}

/// `GET /api/v1/devices/{device_id}/details`: typed common sections; every section is also
/// reachable raw through [`DeviceDetails::section`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct DeviceDetails {
    /// `general`.
    #[serde(deserialize_with = "opt_object")]
    pub general: Option<DetailsGeneral>,
    /// `mdm`.
    #[serde(deserialize_with = "opt_object")]
    pub mdm: Option<DetailsMdm>,
    /// `kandji_agent`.
    #[serde(deserialize_with = "opt_object")]
    pub kandji_agent: Option<DetailsAgent>,
    /// `filevault`.
    #[serde(deserialize_with = "opt_object")]
    pub filevault: Option<DetailsFileVault>,
    /// `hardware_overview`.
    #[serde(deserialize_with = "opt_object")]
    pub hardware_overview: Option<DetailsHardware>,
    /// `network`.
    #[serde(deserialize_with = "opt_object")]
    pub network: Option<DetailsNetwork>,
    /// `volumes`.
    #[serde(deserialize_with = "object_vec")]
    pub volumes: Vec<Volume>,
    /// `tags`.
    #[serde(deserialize_with = "strings")]
    pub tags: Vec<String>,
    /// The original JSON.
    #[serde(skip)]
    pub raw: Value,
}

impl DeviceDetails {
    /// The device id (from `general.device_id`, else top-level `device_id`).
    pub fn device_id(&self) -> Option<String> {
        self.general
            .as_ref()
            .and_then(|g| g.device_id.clone())
            .or_else(|| {
                self.raw
                    .get("device_id")
                    .and_then(lenient::string_from_value)
            })
    }

    /// A raw section (`"activation_lock"`, `"users"`, `"installed_profiles"`, …); `None` if absent or empty.
    pub fn section(&self, name: &str) -> Option<&Value> {
        self.raw.get(name).filter(|v| match v {
            Value::Object(o) => !o.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Null => false,
            Value::String(s) => !s.is_empty(),
            _ => true,
        })
    }
}

/// One app of `GET /api/v1/devices/{device_id}/apps`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct App {
    /// Numeric string on Mac, UUID on iOS.
    #[serde(deserialize_with = "opt_string")]
    pub app_id: Option<String>,
    /// Name.
    #[serde(deserialize_with = "opt_string")]
    pub app_name: Option<String>,
    /// Bundle id.
    #[serde(deserialize_with = "opt_string")]
    pub bundle_id: Option<String>,
    /// Size in bytes (sent as a string).
    #[serde(deserialize_with = "opt_i64")]
    pub bundle_size: Option<i64>,
    /// `"True"`/`"False"`.
    #[serde(deserialize_with = "opt_bool")]
    pub app_store_vendable: Option<bool>,
    /// `"True"`/`"False"`/`""`.
    #[serde(deserialize_with = "opt_bool")]
    pub device_based_vpp: Option<bool>,
    /// `"Apple"`, `"Identified Developer"`, …
    #[serde(deserialize_with = "opt_string")]
    pub source: Option<String>,
    /// Process name.
    #[serde(deserialize_with = "opt_string")]
    pub process: Option<String>,
    /// Signature.
    #[serde(deserialize_with = "opt_string")]
    pub signature: Option<String>,
    /// Path.
    #[serde(deserialize_with = "opt_string")]
    pub path: Option<String>,
    /// Version.
    #[serde(deserialize_with = "opt_string")]
    pub version: Option<String>,
    /// Created.
    #[serde(deserialize_with = "opt_time")]
    pub creation_date: Option<OffsetDateTime>,
    /// Modified.
    #[serde(deserialize_with = "opt_time")]
    pub modification_date: Option<OffsetDateTime>,
    /// The original JSON.
    #[serde(skip)]
    pub raw: Value,
}

/// `GET /api/v1/devices/{device_id}/apps`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct DeviceApps {
    /// Device id.
    #[serde(deserialize_with = "opt_string")]
    pub device_id: Option<String>,
    /// Apps (raw kept per app).
    #[serde(skip)]
    pub apps: Vec<App>,
    /// The original JSON.
    #[serde(skip)]
    pub raw: Value,
}

impl Model for DeviceApps {
    fn set_raw(&mut self, raw: Value) {
        self.raw = raw;
    }
    fn finish(&mut self) {
        self.apps = models_in(&self.raw, "apps");
    }
}

/// Decode `raw[key]` as a list of models, skipping non-objects.
pub(crate) fn models_in<M: Model>(raw: &Value, key: &str) -> Vec<M> {
    raw.get(key)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|i| M::from_value(i.clone()).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// EDR status inside an EDR library item.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct EdrStatus {
    /// Status.
    #[serde(deserialize_with = "opt_string")]
    pub status: Option<String>,
    /// Malware posture.
    #[serde(deserialize_with = "opt_string")]
    pub malware_posture: Option<String>,
    /// PUP posture.
    #[serde(deserialize_with = "opt_string")]
    pub pup_posture: Option<String>,
    /// Human timestamp (`"Feb 27, 2024 at 7:34:21 AM"`).
    #[serde(deserialize_with = "opt_time")]
    pub last_baseline_scan: Option<OffsetDateTime>,
}

/// A library item's status on one device.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct LibraryItemStatus {
    /// Per-device row id (integer).
    #[serde(deserialize_with = "opt_i64")]
    pub id: Option<i64>,
    /// Library item UUID.
    #[serde(deserialize_with = "opt_string")]
    pub item_id: Option<String>,
    /// Name.
    #[serde(deserialize_with = "opt_string")]
    pub name: Option<String>,
    /// Type (`custom-script`, `custom-app`, …).
    #[serde(rename = "type", deserialize_with = "opt_string")]
    pub item_type: Option<String>,
    /// Status.
    pub status: ItemStatus,
    /// When reported.
    #[serde(deserialize_with = "opt_time")]
    pub reported_at: Option<OffsetDateTime>,
    /// Last audit log.
    #[serde(deserialize_with = "opt_string")]
    pub last_audit_log: Option<String>,
    /// Log.
    #[serde(deserialize_with = "opt_string")]
    pub log: Option<String>,
    /// EDR items only.
    #[serde(deserialize_with = "opt_object")]
    pub edr_status: Option<EdrStatus>,
}

/// A parameter's status on one device.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ParameterStatus {
    /// Parameter UUID.
    #[serde(deserialize_with = "opt_string")]
    pub item_id: Option<String>,
    /// Name.
    #[serde(deserialize_with = "opt_string")]
    pub name: Option<String>,
    /// Category.
    #[serde(deserialize_with = "opt_string")]
    pub category: Option<String>,
    /// Subcategory.
    #[serde(deserialize_with = "opt_string")]
    pub subcategory: Option<String>,
    /// Status.
    pub status: ItemStatus,
}

/// `GET /api/v1/devices/{device_id}/status`: library items and parameters.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct DeviceStatus {
    /// Device id.
    #[serde(deserialize_with = "opt_string")]
    pub device_id: Option<String>,
    /// Library items.
    #[serde(deserialize_with = "object_vec")]
    pub library_items: Vec<LibraryItemStatus>,
    /// Parameters.
    #[serde(deserialize_with = "object_vec")]
    pub parameters: Vec<ParameterStatus>,
    /// The original JSON.
    #[serde(skip)]
    pub raw: Value,
}

/// One entry of `/devices/{id}/activity`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct DeviceActivity {
    /// Integer id.
    #[serde(deserialize_with = "opt_i64")]
    pub id: Option<i64>,
    /// When.
    #[serde(deserialize_with = "opt_time")]
    pub created_at: Option<OffsetDateTime>,
    /// e.g. `enrollment`, `mdm_command_completed`.
    #[serde(deserialize_with = "opt_string")]
    pub action_type: Option<String>,
    /// Details.
    pub details: Value,
    /// The original JSON.
    #[serde(skip)]
    pub raw: Value,
}

/// One entry of `/devices/{id}/commands`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct DeviceCommand {
    /// Command UUID.
    #[serde(deserialize_with = "opt_string")]
    pub uuid: Option<String>,
    /// Command type.
    #[serde(deserialize_with = "opt_string")]
    pub command_type: Option<String>,
    /// 1 pending, 2 running, 3 completed, 4 failed, 5 NotNow.
    #[serde(deserialize_with = "opt_i64")]
    pub status: Option<i64>,
    /// Requested.
    #[serde(deserialize_with = "opt_time")]
    pub date_requested: Option<OffsetDateTime>,
    /// Completed.
    #[serde(deserialize_with = "opt_time")]
    pub date_completed: Option<OffsetDateTime>,
    /// The original JSON.
    #[serde(skip)]
    pub raw: Value,
}

impl_model!(
    Device,
    DeviceDetails,
    App,
    DeviceStatus,
    DeviceActivity,
    DeviceCommand
);
