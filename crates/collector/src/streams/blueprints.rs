//! `blueprints`: listed with `GET /api/v1/blueprints` (DRF envelope, `limit` ≤ 1000). A filter
//! dimension: blueprint names in the config resolve to ids against this table.

use serde_json::Value;

use super::{StreamName, int, text, typed};
use crate::streams::fetch::s;
use std::sync::Arc;

use kandji_api::api::{caps, paths};
use kandji_api::paginate::DrfEnvelope;

use crate::streams::drivers::offset_sweep::{self as sweep, SweepSpec};
use crate::streams::runtime::{RunReport, SourceRuntime, StreamError};
use crate::store::{InvRow, Table};
use kandji_api::Priority;
use kandji_api::check::probes;
use super::spec::{Driver, Output, Stage, StreamSpec};
use std::time::Duration;

pub fn map(v: &Value) -> Option<InvRow> {
    let id = s(v, "id")?;
    Some(InvRow {
        key: id,
        device_id: None,
        values: typed(
            Table::Blueprints,
            vec![
                ("name", text(s(v, "name"))),
                (
                    "computers_count",
                    int(v.get("computers_count").and_then(Value::as_i64)),
                ),
            ],
        ),
        raw: v.to_string(),
    })
}

pub async fn run(rt: &SourceRuntime) -> Result<RunReport, StreamError> {
    sweep::run(
        rt,
        SweepSpec {
            stream: StreamName::Blueprints,
            table: Table::Blueprints,
            template: paths::BLUEPRINTS,
            style: Arc::new(DrfEnvelope::new(caps::BLUEPRINTS, caps::BLUEPRINTS)),
            segments: vec![vec![]],
            map,
            keep: Box::new(|_| true),
            confirm: None,
        },
    )
    .await
}

/// The declaration.
pub static SPEC: StreamSpec = StreamSpec {
    name: "blueprints",
    interval: Duration::from_secs(60 * 360),
    priority: Priority::Inventory,
    category: "inventory",
    rank: 0,
    stage: Stage::Dimension,
    needs: None,
    output: Output::Table(Table::Blueprints),
    probes: &[probes::BLUEPRINTS],
    calls: &[],
    cost: |_| 1.0,
    driver: Driver::OffsetSweep,
    run: |rt, _| Box::pin(run(rt)),
};
