//! Users, blueprints, tags, ADE devices, licensing.

use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;

use super::impl_model;
use super::lenient::{opt_bool, opt_i64, opt_object, opt_string, opt_time};
use super::security::NamedRef;

/// The directory integration of a user.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct UserIntegration {
    /// Integer id (as string).
    #[serde(deserialize_with = "opt_string")]
    pub id: Option<String>,
    /// UUID.
    #[serde(deserialize_with = "opt_string")]
    pub uuid: Option<String>,
    /// Name.
    #[serde(deserialize_with = "opt_string")]
    pub name: Option<String>,
    /// e.g. `office365`.
    #[serde(rename = "type", deserialize_with = "opt_string")]
    pub kind: Option<String>,
}

/// A directory user (`GET /api/v1/users`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct User {
    /// UUID.
    #[serde(deserialize_with = "opt_string")]
    pub id: Option<String>,
    /// Email.
    #[serde(deserialize_with = "opt_string")]
    pub email: Option<String>,
    /// Name.
    #[serde(deserialize_with = "opt_string")]
    pub name: Option<String>,
    /// Active.
    #[serde(deserialize_with = "opt_bool")]
    pub active: Option<bool>,
    /// Archived.
    #[serde(deserialize_with = "opt_bool")]
    pub archived: Option<bool>,
    /// Department.
    #[serde(deserialize_with = "opt_string")]
    pub department: Option<String>,
    /// Job title.
    #[serde(deserialize_with = "opt_string")]
    pub job_title: Option<String>,
    /// Legacy integer id (string).
    #[serde(deserialize_with = "opt_string")]
    pub deprecated_user_id: Option<String>,
    /// Assigned devices.
    #[serde(deserialize_with = "opt_i64")]
    pub device_count: Option<i64>,
    /// Created.
    #[serde(deserialize_with = "opt_time")]
    pub created_at: Option<OffsetDateTime>,
    /// Updated.
    #[serde(deserialize_with = "opt_time")]
    pub updated_at: Option<OffsetDateTime>,
    /// Integration.
    #[serde(deserialize_with = "opt_object")]
    pub integration: Option<UserIntegration>,
    /// The original JSON.
    #[serde(skip)]
    pub raw: Value,
}

/// A blueprint's enrollment code.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct EnrollmentCode {
    /// Code.
    #[serde(deserialize_with = "opt_string")]
    pub code: Option<String>,
    /// Active.
    #[serde(deserialize_with = "opt_bool")]
    pub is_active: Option<bool>,
}

/// A blueprint (`GET /api/v1/blueprints`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Blueprint {
    /// UUID.
    #[serde(deserialize_with = "opt_string")]
    pub id: Option<String>,
    /// Name.
    #[serde(deserialize_with = "opt_string")]
    pub name: Option<String>,
    /// Description.
    #[serde(deserialize_with = "opt_string")]
    pub description: Option<String>,
    /// Icon.
    #[serde(deserialize_with = "opt_string")]
    pub icon: Option<String>,
    /// Color.
    #[serde(deserialize_with = "opt_string")]
    pub color: Option<String>,
    /// Enabled parameters `{<uuid>: {mute, daily, details?}}` (raw).
    pub params: Value,
    /// Device count.
    #[serde(deserialize_with = "opt_i64")]
    pub computers_count: Option<i64>,
    /// `classic` | `map`.
    #[serde(rename = "type", deserialize_with = "opt_string")]
    pub kind: Option<String>,
    /// Enrollment code.
    #[serde(deserialize_with = "opt_object")]
    pub enrollment_code: Option<EnrollmentCode>,
    /// The original JSON.
    #[serde(skip)]
    pub raw: Value,
}

/// A tag (`GET /api/v1/tags`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Tag {
    /// UUID.
    #[serde(deserialize_with = "opt_string")]
    pub id: Option<String>,
    /// Name.
    #[serde(deserialize_with = "opt_string")]
    pub name: Option<String>,
    /// The original JSON.
    #[serde(skip)]
    pub raw: Value,
}

/// The enrolled device of an ADE record (`null` while awaiting enrollment).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct AdeMdmDevice {
    /// Kandji device id.
    #[serde(deserialize_with = "opt_string")]
    pub id: Option<String>,
    /// Enrolled at.
    #[serde(deserialize_with = "opt_time")]
    pub enrolled_at: Option<OffsetDateTime>,
    /// Name.
    #[serde(deserialize_with = "opt_string")]
    pub name: Option<String>,
    /// Enrollment status.
    #[serde(deserialize_with = "opt_string")]
    pub enrollment_status: Option<String>,
    /// Missing.
    #[serde(deserialize_with = "opt_bool")]
    pub is_missing: Option<bool>,
    /// Removed.
    #[serde(deserialize_with = "opt_bool")]
    pub is_removed: Option<bool>,
}

/// The ADE token of a record.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct DepAccount {
    /// Id.
    #[serde(deserialize_with = "opt_string")]
    pub id: Option<String>,
    /// Server name.
    #[serde(deserialize_with = "opt_string")]
    pub server_name: Option<String>,
}

/// An Automated Device Enrollment record (`GET /api/v1/integrations/apple/ade/devices`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct AdeDevice {
    /// Record id.
    #[serde(deserialize_with = "opt_string")]
    pub id: Option<String>,
    /// Serial.
    #[serde(deserialize_with = "opt_string")]
    pub serial_number: Option<String>,
    /// Model.
    #[serde(deserialize_with = "opt_string")]
    pub model: Option<String>,
    /// Description.
    #[serde(deserialize_with = "opt_string")]
    pub description: Option<String>,
    /// Color.
    #[serde(deserialize_with = "opt_string")]
    pub color: Option<String>,
    /// Asset tag.
    #[serde(deserialize_with = "opt_string")]
    pub asset_tag: Option<String>,
    /// `iPad, iPhone, iPod, Mac, AppleTV, Vision`.
    #[serde(deserialize_with = "opt_string")]
    pub device_family: Option<String>,
    /// `iOS, iPadOS, OSX, tvOS, visionOS`.
    #[serde(deserialize_with = "opt_string")]
    pub os: Option<String>,
    /// Blueprint id.
    #[serde(deserialize_with = "opt_string")]
    pub blueprint_id: Option<String>,
    /// Blueprint.
    #[serde(deserialize_with = "opt_object")]
    pub blueprint: Option<NamedRef>,
    /// User id.
    #[serde(deserialize_with = "opt_string")]
    pub user_id: Option<String>,
    /// ADE token.
    #[serde(deserialize_with = "opt_object")]
    pub dep_account: Option<DepAccount>,
    /// Enrolled device, `None` while awaiting enrollment.
    #[serde(deserialize_with = "opt_object")]
    pub mdm_device: Option<AdeMdmDevice>,
    /// Assigned by.
    #[serde(deserialize_with = "opt_string")]
    pub device_assigned_by: Option<String>,
    /// Assigned at.
    #[serde(deserialize_with = "opt_time")]
    pub device_assigned_date: Option<OffsetDateTime>,
    /// `assigned|empty|pushed|removed`.
    #[serde(deserialize_with = "opt_string")]
    pub profile_status: Option<String>,
    /// Profile assigned at.
    #[serde(deserialize_with = "opt_time")]
    pub profile_assign_time: Option<OffsetDateTime>,
    /// Profile pushed at.
    #[serde(deserialize_with = "opt_time")]
    pub profile_push_time: Option<OffsetDateTime>,
    /// Last assignment status.
    #[serde(deserialize_with = "opt_string")]
    pub last_assignment_status: Option<String>,
    /// Failed attempts.
    #[serde(deserialize_with = "opt_i64")]
    pub failed_assignment_attempts: Option<i64>,
    /// The original JSON.
    #[serde(skip)]
    pub raw: Value,
}

/// Licence counts.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
#[serde(default)]
pub struct LicenseCounts {
    /// All computers.
    #[serde(deserialize_with = "opt_i64")]
    pub computers_count: Option<i64>,
    /// iOS.
    #[serde(deserialize_with = "opt_i64")]
    pub ios_count: Option<i64>,
    /// iPadOS.
    #[serde(deserialize_with = "opt_i64")]
    pub ipados_count: Option<i64>,
    /// macOS.
    #[serde(deserialize_with = "opt_i64")]
    pub macos_count: Option<i64>,
    /// tvOS.
    #[serde(deserialize_with = "opt_i64")]
    pub tvos_count: Option<i64>,
}

/// Licence limits.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
#[serde(default)]
pub struct LicenseLimits {
    /// Plan.
    #[serde(deserialize_with = "opt_string")]
    pub plan_type: Option<String>,
    /// Max devices.
    #[serde(deserialize_with = "opt_i64")]
    pub max_devices: Option<i64>,
}

/// `GET /api/v1/settings/licensing`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Licensing {
    /// Counts.
    #[serde(deserialize_with = "opt_object")]
    pub counts: Option<LicenseCounts>,
    /// Limits.
    #[serde(deserialize_with = "opt_object")]
    pub limits: Option<LicenseLimits>,
    /// Over the limit.
    #[serde(rename = "tenantOverLicenseLimit", deserialize_with = "opt_bool")]
    pub tenant_over_license_limit: Option<bool>,
    /// The original JSON.
    #[serde(skip)]
    pub raw: Value,
}

impl_model!(User, Blueprint, Tag, AdeDevice, Licensing);
