//! `tags`: listed with `GET /api/v1/tags` (an envelope with no documented paging; a `next`
//! link is followed by page if one ever appears). Tags are the "device groups" filter.

use serde_json::Value;

use super::{StreamName, text, typed};
use crate::streams::fetch::s;
use std::sync::Arc;

use kandji_api::api::paths;
use kandji_api::paginate::PageNumber;

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
        values: typed(Table::Tags, vec![("name", text(s(v, "name")))]),
        raw: v.to_string(),
    })
}

pub async fn run(rt: &SourceRuntime) -> Result<RunReport, StreamError> {
    sweep::run(
        rt,
        SweepSpec {
            stream: StreamName::Tags,
            table: Table::Tags,
            template: paths::TAGS,
            style: Arc::new(PageNumber),
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
    name: "tags",
    interval: Duration::from_secs(60 * 360),
    priority: Priority::Inventory,
    category: "inventory",
    rank: 1,
    stage: Stage::Dimension,
    needs: None,
    output: Output::Table(Table::Tags),
    probes: &[probes::TAGS],
    calls: &[],
    cost: |_| 1.0,
    driver: Driver::OffsetSweep,
    run: |rt, _| Box::pin(run(rt)),
};
