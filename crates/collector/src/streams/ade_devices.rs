//! `ade_devices`: Automated Device Enrollment records, including devices not yet enrolled.
//! `GET /api/v1/integrations/apple/ade/devices`, paged by `page` (300 per page).
//! Filter pushed down: `blueprint_id` (one walk each); device types filter client-side.

use serde_json::Value;

use super::{StreamName, text, typed};
use crate::streams::fetch::{q, s, s2};
use std::sync::Arc;

use kandji_api::paginate::PageNumber;

use crate::streams::drivers::offset_sweep::{self as sweep, SweepSpec};
use crate::streams::runtime::{RunReport, Scope, SourceRuntime, StreamError};
use crate::store::{InvRow, Table};
use kandji_api::Priority;
use kandji_api::check::probes;
use super::spec::{Cost, Driver, Output, Stage, StreamSpec};
use std::time::Duration;

pub fn map(v: &Value) -> Option<InvRow> {
    let id = s(v, "id")?;
    let mdm_device_id = s2(v, "mdm_device", "id");
    Some(InvRow {
        key: id,
        device_id: mdm_device_id.clone(),
        values: typed(
            Table::AdeDevices,
            vec![
                ("serial_number", text(s(v, "serial_number"))),
                ("model", text(s(v, "model"))),
                ("device_family", text(s(v, "device_family"))),
                ("blueprint_id", text(s(v, "blueprint_id"))),
                ("user_id", text(s(v, "user_id"))),
                ("mdm_device_id", text(mdm_device_id)),
                ("profile_status", text(s(v, "profile_status"))),
            ],
        ),
        raw: v.to_string(),
    })
}

pub async fn run(rt: &SourceRuntime, scope: &Scope) -> Result<RunReport, StreamError> {
    let segments = if scope.blueprint_ids.is_empty() {
        vec![vec![]]
    } else {
        scope
            .blueprint_ids
            .iter()
            .map(|b| vec![q("blueprint_id", b)])
            .collect()
    };
    let platforms = scope.platforms.clone();
    let family_col = Table::AdeDevices.spec().col_index("device_family");
    sweep::run(
        rt,
        SweepSpec {
            stream: StreamName::AdeDevices,
            table: Table::AdeDevices,
            template: kandji_api::api::paths::ADE_DEVICES,
            style: Arc::new(PageNumber),
            segments,
            map,
            keep: Box::new(move |row| {
                platforms.is_empty()
                    || family_col
                        .and_then(|i| row.values.get(i))
                        .is_some_and(|v| match v {
                            rusqlite::types::Value::Text(f) => platforms.iter().any(|p| p == f),
                            _ => false,
                        })
            }),
            confirm: None,
        },
    )
    .await
}

/// The declaration.
pub static SPEC: StreamSpec = StreamSpec {
    name: "ade_devices",
    interval: Duration::from_secs(60 * 720),
    priority: Priority::Inventory,
    category: "inventory",
    rank: 8,
    stage: Stage::Collect,
    needs: None,
    output: Output::Table(Table::AdeDevices),
    probes: &[probes::ADE],
    calls: &[],
    cost: |c| Cost::pages(c.devices(), 300.0),
    driver: Driver::OffsetSweep,
    run: |rt, scope| Box::pin(run(rt, scope)),
};
