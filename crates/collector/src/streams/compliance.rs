//! `compliance`: library items and parameters per device, from `GET /devices/{id}/status`
//! (both in one call). Only for devices that changed — the audit feed or a Prism delta queued
//! them, or their check-in moved past our last read — plus a rolling rotation of the
//! least-recently read devices, all within a per-run cap so the spend stays proportional to
//! change, not to fleet size.

use serde_json::Value;

use super::{StreamName, int, text, typed};
use crate::streams::fetch::{s, ts};
use crate::streams::runtime::{RunReport, Scope, SourceRuntime, StreamError};
use super::drivers::per_device::{self, PerDevice};
use crate::store::{InvRow, Table};
use kandji_api::Priority;
use kandji_api::check::probes;
use super::spec::{Driver, Output, Stage, StreamSpec};
use std::time::Duration;

pub const TEMPLATE: &str = "/api/v1/devices/{device_id}/status";
/// Devices read per run at most.
pub const MAX_PER_RUN: usize = 60;

pub fn rows(device_id: &str, body: &Value) -> Vec<InvRow> {
    let mut out = Vec::new();
    for (kind, list) in [
        ("library_item", "library_items"),
        ("parameter", "parameters"),
    ] {
        for item in body
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(item_id) = s(item, "item_id").or_else(|| s(item, "id")) else {
                continue;
            };
            out.push(InvRow {
                key: format!("{device_id}|{kind}|{item_id}"),
                device_id: Some(device_id.to_string()),
                values: typed(
                    Table::Compliance,
                    vec![
                        ("kind", text(Some(kind.to_string()))),
                        ("item_id", text(Some(item_id))),
                        ("name", text(s(item, "name"))),
                        ("status", text(s(item, "status"))),
                        ("reported_at", int(ts(item, "reported_at"))),
                    ],
                ),
                raw: item.to_string(),
            });
        }
    }
    out
}

pub async fn run(rt: &SourceRuntime, scope: &Scope) -> Result<RunReport, StreamError> {
    per_device::run(
        rt,
        scope,
        PerDevice {
            stream: StreamName::Compliance,
            template: TEMPLATE,
            table: Table::Compliance,
            max_per_run: MAX_PER_RUN,
            rows,
        },
    )
    .await
}

/// The declaration.
pub static SPEC: StreamSpec = StreamSpec {
    name: "compliance",
    interval: Duration::from_secs(60 * 15),
    priority: Priority::Inventory,
    category: "compliance",
    rank: 11,
    stage: Stage::Collect,
    needs: Some(Table::Devices),
    output: Output::Table(Table::Compliance),
    probes: &[probes::DEVICES, probes::DEVICE_STATUS],
    calls: &[],
    cost: |c| (MAX_PER_RUN as f64).min(c.devices()),
    driver: Driver::PerDevice,
    run: |rt, scope| Box::pin(run(rt, scope)),
};
