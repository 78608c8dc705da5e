//! `compliance`: library items and parameters per device, from `GET /devices/{id}/status`
//! (both in one call). Only for devices that changed — the audit feed or a Prism delta queued
//! them, or their check-in moved past our last read — plus a rolling rotation of the
//! least-recently read devices, all within a per-run cap so the spend stays proportional to
//! change, not to fleet size.

use kandji_api::KandjiError;
use serde_json::Value;

use super::{StreamName, int, text, typed};
use crate::engine::fetch::{self, s, ts};
use crate::engine::{RunReport, Scope, SourceRuntime, StreamError};
use crate::store::{Batch, InvRow, Scope as StoreScope, SweepEnd, Table, Upsert};

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

/// The devices to read this run, most urgent first: queued, then check-in moved, then the
/// least recently read.
async fn pick(rt: &SourceRuntime, cap: usize) -> Result<Vec<(String, bool)>, StreamError> {
    Ok(rt.store.compliance_candidates(rt.name(), cap).await?)
}

pub async fn run(rt: &SourceRuntime, scope: &Scope) -> Result<RunReport, StreamError> {
    let source = rt.name().to_string();
    let stream = StreamName::Compliance;
    let mut report = RunReport::default();
    for (device_id, _queued) in pick(rt, MAX_PER_RUN).await? {
        if !scope.has_device(Some(&device_id)) {
            continue;
        }
        let path = format!("/api/v1/devices/{device_id}/status");
        let now = rt.now();
        let mut batch = Batch::new(&source, stream.as_str(), now, stream.category());
        batch.refreshed.push(device_id.clone());
        match fetch::get(rt, TEMPLATE, path, vec![], stream.priority()).await {
            Ok(body) => {
                report.pages += 1;
                batch.upserts.push(Upsert {
                    table: Table::Compliance,
                    sweep: now,
                    started_at: now,
                    rows: rows(&device_id, &body),
                });
                batch.sweep_ends.push(SweepEnd {
                    table: Table::Compliance,
                    sweep: now,
                    scope: StoreScope::Device(device_id.clone()),
                });
            }
            // The device went away between the list and this read: the devices sweep marks it.
            Err(KandjiError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let out = rt.commit(batch).await?;
        report.records += out.records();
        if rt.stopping() {
            return Err(StreamError::Shutdown);
        }
    }
    Ok(report)
}
