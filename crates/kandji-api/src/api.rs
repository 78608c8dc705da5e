//! Typed endpoint methods on [`KandjiClient`].
//!
//! Paginated endpoints return a [`PageStream`]; pass `start = None` to begin, or a stored
//! [`Position`] (a page's `next`) to resume.

use std::sync::Arc;

use serde_json::Value;

use crate::budget::Priority;
use crate::client::{ApiRequest, KandjiClient, Query};
use crate::error::KandjiError;
use crate::models::{
    AdeDevice, AuditEvent, BehavioralDetection, Blueprint, Device, DeviceActivity, DeviceApps,
    DeviceCommand, DeviceDetails, DeviceStatus, Licensing, Model, PrismRow, Tag, Threat, User,
    VulnDetection, Vulnerability,
};
use crate::paginate::{
    AfterCursor, DrfEnvelope, NestedEnvelope, NextCursor, OffsetArray, PageNumber, PageSize,
    PageStream, PageStyle, Position, PrismCursor, typed, walk,
};

/// Endpoint path templates (also the keys of errors, logs and the permission matrix).
pub mod paths {
    /// Device list.
    pub const DEVICES: &str = "/api/v1/devices";
    /// One device.
    pub const DEVICE: &str = "/api/v1/devices/{device_id}";
    /// Device details.
    pub const DEVICE_DETAILS: &str = "/api/v1/devices/{device_id}/details";
    /// Device apps.
    pub const DEVICE_APPS: &str = "/api/v1/devices/{device_id}/apps";
    /// Device status (library items + parameters).
    pub const DEVICE_STATUS: &str = "/api/v1/devices/{device_id}/status";
    /// Device activity.
    pub const DEVICE_ACTIVITY: &str = "/api/v1/devices/{device_id}/activity";
    /// Device MDM commands.
    pub const DEVICE_COMMANDS: &str = "/api/v1/devices/{device_id}/commands";
    /// Audit log.
    pub const AUDIT_EVENTS: &str = "/api/v1/audit/events";
    /// EDR malware/PUP.
    pub const THREATS: &str = "/api/v1/threat-details";
    /// EDR behavioral detections.
    pub const BEHAVIORAL: &str = "/api/v1/behavioral-detections";
    /// Vulnerability detections.
    pub const VULN_DETECTIONS: &str = "/api/v1/vulnerability-management/detections";
    /// Vulnerabilities (by CVE).
    pub const VULNERABILITIES: &str = "/api/v1/vulnerability-management/vulnerabilities";
    /// Users.
    pub const USERS: &str = "/api/v1/users";
    /// Blueprints.
    pub const BLUEPRINTS: &str = "/api/v1/blueprints";
    /// Tags.
    pub const TAGS: &str = "/api/v1/tags";
    /// ADE devices.
    pub const ADE_DEVICES: &str = "/api/v1/integrations/apple/ade/devices";
    /// Licensing.
    pub const LICENSING: &str = "/api/v1/settings/licensing";
    /// A Prism category.
    pub const PRISM: &str = "/api/v1/prism/{category}";
    /// Prism count.
    pub const PRISM_COUNT: &str = "/api/v1/prism/count";
    /// Create a Prism export.
    pub const PRISM_EXPORT: &str = "/api/v1/prism/export";
    /// Poll a Prism export.
    pub const PRISM_EXPORT_ID: &str = "/api/v1/prism/export/{export_id}";
}

/// Documented maximum page sizes.
pub mod caps {
    /// `/devices` limit.
    pub const DEVICES: u32 = 300;
    /// Activity/commands limit.
    pub const DEVICE_HISTORY: u32 = 300;
    /// Audit limit.
    pub const AUDIT: u32 = 500;
    /// Threats / behavioral limit.
    pub const EDR: u32 = 1000;
    /// Vulnerability detections size.
    pub const VULN_DETECTIONS: u32 = 300;
    /// Vulnerabilities size.
    pub const VULNERABILITIES: u32 = 50;
    /// Blueprints limit.
    pub const BLUEPRINTS: u32 = 1000;
    /// Tags limit.
    pub const TAGS: u32 = 300;
    /// Prism limit.
    pub const PRISM: u32 = 300;
}

/// Percent-encode one path segment (ids are never allowed to add `/` or `..`).
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') {
            out.push(char::from(b));
        } else if b == b'.' && !(s == "." || s == "..") {
            out.push('.');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn with_id(template: &'static str, placeholder: &str, id: &str) -> String {
    template.replace(placeholder, &path_segment(id))
}

impl KandjiClient {
    fn pages<M: Model + Send + 'static>(
        &self,
        req: ApiRequest,
        style: impl PageStyle + 'static,
        start: Option<Position>,
    ) -> PageStream<M> {
        let endpoint = req.endpoint();
        typed(walk(self, req, Arc::new(style), start), endpoint)
    }

    async fn one<M: Model>(&self, req: ApiRequest) -> Result<M, KandjiError> {
        let endpoint = req.endpoint();
        let resp = self.send(&req).await?;
        M::from_value(resp.body).map_err(|message| KandjiError::Decode { endpoint, message })
    }

    /// `GET /api/v1/devices` (limit/offset over a bare array, 300 per page). `query` may hold
    /// filters and `ordering` (e.g. `("ordering", "serial_number")` for a stable order).
    pub fn devices(&self, query: Query, start: Option<Position>) -> PageStream<Device> {
        let req = ApiRequest::get(paths::DEVICES, Priority::Inventory).with_query(query);
        self.pages(req, OffsetArray::new(caps::DEVICES, caps::DEVICES), start)
    }

    /// `GET /api/v1/devices/{device_id}`.
    pub async fn device(&self, device_id: &str) -> Result<Device, KandjiError> {
        let p = with_id(paths::DEVICE, "{device_id}", device_id);
        self.one(ApiRequest::get_path(paths::DEVICE, p, Priority::Inventory))
            .await
    }

    /// `GET /api/v1/devices/{device_id}/details`.
    pub async fn device_details(&self, device_id: &str) -> Result<DeviceDetails, KandjiError> {
        let p = with_id(paths::DEVICE_DETAILS, "{device_id}", device_id);
        self.one(ApiRequest::get_path(
            paths::DEVICE_DETAILS,
            p,
            Priority::Bulk,
        ))
        .await
    }

    /// `GET /api/v1/devices/{device_id}/apps` (all apps in one response).
    pub async fn device_apps(&self, device_id: &str) -> Result<DeviceApps, KandjiError> {
        let p = with_id(paths::DEVICE_APPS, "{device_id}", device_id);
        self.one(ApiRequest::get_path(paths::DEVICE_APPS, p, Priority::Bulk))
            .await
    }

    /// `GET /api/v1/devices/{device_id}/status` (library items + parameters).
    pub async fn device_status(&self, device_id: &str) -> Result<DeviceStatus, KandjiError> {
        let p = with_id(paths::DEVICE_STATUS, "{device_id}", device_id);
        self.one(ApiRequest::get_path(
            paths::DEVICE_STATUS,
            p,
            Priority::Inventory,
        ))
        .await
    }

    /// `GET /api/v1/devices/{device_id}/activity` (nested envelope, 300 per page).
    pub fn device_activity(
        &self,
        device_id: &str,
        start: Option<Position>,
    ) -> PageStream<DeviceActivity> {
        let p = with_id(paths::DEVICE_ACTIVITY, "{device_id}", device_id);
        let req = ApiRequest::get_path(paths::DEVICE_ACTIVITY, p, Priority::Inventory);
        self.pages(
            req,
            NestedEnvelope::new("activity", caps::DEVICE_HISTORY, caps::DEVICE_HISTORY),
            start,
        )
    }

    /// `GET /api/v1/devices/{device_id}/commands` (nested envelope, 300 per page).
    pub fn device_commands(
        &self,
        device_id: &str,
        start: Option<Position>,
    ) -> PageStream<DeviceCommand> {
        let p = with_id(paths::DEVICE_COMMANDS, "{device_id}", device_id);
        let req = ApiRequest::get_path(paths::DEVICE_COMMANDS, p, Priority::Inventory);
        self.pages(
            req,
            NestedEnvelope::new("commands", caps::DEVICE_HISTORY, caps::DEVICE_HISTORY),
            start,
        )
    }

    /// `GET /api/v1/audit/events` (cursor from `next`, 500 per page). Pass
    /// `("sort_by","occurred_at")` for ascending order and/or `start_date`.
    pub fn audit_events(&self, query: Query, start: Option<Position>) -> PageStream<AuditEvent> {
        let req = ApiRequest::get(paths::AUDIT_EVENTS, Priority::Audit).with_query(query);
        self.pages(req, NextCursor::with_limit(caps::AUDIT, caps::AUDIT), start)
    }

    /// `GET /api/v1/threat-details` (DRF envelope, 1000 per page). Rows have no id: use [`Threat::key`].
    pub fn threats(&self, query: Query, start: Option<Position>) -> PageStream<Threat> {
        let req = ApiRequest::get(paths::THREATS, Priority::Security).with_query(query);
        self.pages(req, DrfEnvelope::new(caps::EDR, caps::EDR), start)
    }

    /// `GET /api/v1/behavioral-detections` (DRF envelope with `total_count`, 1000 per page).
    pub fn behavioral_detections(
        &self,
        query: Query,
        start: Option<Position>,
    ) -> PageStream<BehavioralDetection> {
        let req = ApiRequest::get(paths::BEHAVIORAL, Priority::Security).with_query(query);
        self.pages(req, DrfEnvelope::new(caps::EDR, caps::EDR), start)
    }

    /// `GET /api/v1/vulnerability-management/detections` (`after` cursor, 300 per page).
    pub fn vulnerability_detections(
        &self,
        query: Query,
        start: Option<Position>,
    ) -> PageStream<VulnDetection> {
        let req = ApiRequest::get(paths::VULN_DETECTIONS, Priority::Security).with_query(query);
        self.pages(
            req,
            AfterCursor::new(caps::VULN_DETECTIONS, caps::VULN_DETECTIONS),
            start,
        )
    }

    /// `GET /api/v1/vulnerability-management/vulnerabilities` (page/size, 50 per page).
    pub fn vulnerabilities(
        &self,
        query: Query,
        start: Option<Position>,
    ) -> PageStream<Vulnerability> {
        let req = ApiRequest::get(paths::VULNERABILITIES, Priority::Security).with_query(query);
        self.pages(
            req,
            PageSize::new(caps::VULNERABILITIES, caps::VULNERABILITIES),
            start,
        )
    }

    /// `GET /api/v1/users` (cursor from `next`, fixed 300 per page; `next` may name the web host).
    pub fn users(&self, query: Query, start: Option<Position>) -> PageStream<User> {
        let req = ApiRequest::get(paths::USERS, Priority::Inventory).with_query(query);
        self.pages(req, NextCursor::without_limit(), start)
    }

    /// `GET /api/v1/blueprints` (DRF envelope).
    pub fn blueprints(&self, query: Query, start: Option<Position>) -> PageStream<Blueprint> {
        let req = ApiRequest::get(paths::BLUEPRINTS, Priority::Inventory).with_query(query);
        self.pages(
            req,
            DrfEnvelope::new(caps::BLUEPRINTS, caps::BLUEPRINTS),
            start,
        )
    }

    /// `GET /api/v1/tags` (DRF envelope).
    pub fn tags(&self, query: Query, start: Option<Position>) -> PageStream<Tag> {
        let req = ApiRequest::get(paths::TAGS, Priority::Inventory).with_query(query);
        self.pages(req, DrfEnvelope::new(caps::TAGS, caps::TAGS), start)
    }

    /// `GET /api/v1/integrations/apple/ade/devices` (`page`, 300 per page).
    pub fn ade_devices(&self, query: Query, start: Option<Position>) -> PageStream<AdeDevice> {
        let req = ApiRequest::get(paths::ADE_DEVICES, Priority::Inventory).with_query(query);
        self.pages(req, PageNumber, start)
    }

    /// `GET /api/v1/settings/licensing`.
    pub async fn licensing(&self) -> Result<Licensing, KandjiError> {
        self.one(ApiRequest::get(paths::LICENSING, Priority::Inventory))
            .await
    }

    /// `GET /api/v1/prism/<category>` (Prism `cursor`, 300 per page). `query` may hold
    /// `blueprint_ids`, `device_families`, `filter` (JSON string).
    pub fn prism(
        &self,
        category: &str,
        query: Query,
        start: Option<Position>,
    ) -> PageStream<PrismRow> {
        let p = with_id(paths::PRISM, "{category}", category);
        let req = ApiRequest::get_path(paths::PRISM, p, Priority::Bulk).with_query(query);
        self.pages(req, PrismCursor::new(caps::PRISM, caps::PRISM), start)
    }

    /// `GET /api/v1/prism/count?category=<category>` → `(count, approximate)`.
    pub async fn prism_count(&self, category: &str) -> Result<(u64, bool), KandjiError> {
        let req = ApiRequest::get(paths::PRISM_COUNT, Priority::Bulk)
            .with_query([("category".to_string(), category.to_string())]);
        let endpoint = req.endpoint();
        let body = self.send(&req).await?.body;
        let count =
            crate::paginate::u64_field(&body, &["count"]).ok_or_else(|| KandjiError::Decode {
                endpoint,
                message: "no `count` in the response".into(),
            })?;
        let approximate = body
            .get("approximate")
            .and_then(crate::models::lenient::bool_from_value)
            .unwrap_or(false);
        Ok((count, approximate))
    }

    /// Send any GET (escape hatch for endpoints without a typed method); returns the raw JSON.
    pub async fn get_raw(
        &self,
        template: &'static str,
        path: String,
        query: Query,
        priority: Priority,
    ) -> Result<Value, KandjiError> {
        Ok(self
            .send(&ApiRequest::get_path(template, path, priority).with_query(query))
            .await?
            .body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded() {
        assert_eq!(path_segment("abc-123"), "abc-123");
        assert_eq!(path_segment("../x"), "..%2Fx");
        assert_eq!(path_segment(".."), "%2E%2E");
        assert_eq!(path_segment("a b?c"), "a%20b%3Fc");
    }
}
