//! `per_device`: one request per device, for the devices that changed (the refresh queue, a
//! check-in past the last read) and a rotation of the least recently read, within a per-run
//! cap so the spend follows change, not fleet size (compliance).
//!
//! No checkpoint: the store's refresh queue and each device's last read are the state, and
//! each device's rows commit with its dequeue.

use kandji_api::KandjiError;
use kandji_api::api::path_segment;
use serde_json::Value;

use crate::store::{Batch, InvRow, Scope as StoreScope, SweepEnd, Table, Upsert};
use crate::streams::StreamName;
use crate::streams::fetch;
use crate::streams::runtime::{RunReport, Scope, SourceRuntime, StreamError};

/// What a stream configures.
pub struct PerDevice {
    pub stream: StreamName,
    /// The endpoint, with `{device_id}`.
    pub template: &'static str,
    pub table: Table,
    /// Devices read per run at most.
    pub max_per_run: usize,
    /// A device's rows from its answer.
    pub rows: fn(&str, &Value) -> Vec<InvRow>,
}

pub async fn run(
    rt: &SourceRuntime,
    scope: &Scope,
    spec: PerDevice,
) -> Result<RunReport, StreamError> {
    let stream = spec.stream;
    let mut report = RunReport::default();
    // Most urgent first: queued, then check-in moved, then the least recently read.
    let picked = rt
        .store
        .compliance_candidates(rt.name(), spec.max_per_run)
        .await?;
    for (device_id, _queued) in picked {
        if !scope.has_device(Some(&device_id)) {
            continue;
        }
        let path = spec
            .template
            .replace("{device_id}", &path_segment(&device_id));
        let now = rt.now();
        let mut batch = Batch::new(rt.name(), stream.as_str(), now, stream.category());
        batch.collected_at = rt.host_now();
        batch.refreshed.push(device_id.clone());
        match fetch::get(rt, spec.template, path, vec![], stream.priority()).await {
            Ok(body) => {
                report.pages += 1;
                batch.upserts.push(Upsert {
                    table: spec.table,
                    sweep: now,
                    started_at: now,
                    rows: (spec.rows)(&device_id, &body),
                });
                batch.sweep_ends.push(SweepEnd {
                    table: spec.table,
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
