//! `users`: directory users. `GET /api/v1/users`, 300 per page, paged by a cursor taken from
//! `next` (which the API returns on the web host; only the cursor is kept). A full sweep each
//! run; the sweep marks users that left the directory.

use serde_json::Value;

use super::{StreamName, flag, int, text, typed};
use crate::streams::fetch::{b, s};
use std::sync::Arc;

use kandji_api::api::paths;
use kandji_api::paginate::NextCursor;

use crate::streams::drivers::offset_sweep::{self as sweep, SweepSpec};
use crate::streams::runtime::{RunReport, SourceRuntime, StreamError};
use crate::store::{InvRow, Table};
use kandji_api::Priority;
use kandji_api::check::probes;
use super::spec::{Cost, Driver, Output, Stage, StreamSpec};
use std::time::Duration;

pub fn map(v: &Value) -> Option<InvRow> {
    let id = s(v, "id")?;
    Some(InvRow {
        key: id,
        device_id: None,
        values: typed(
            Table::Users,
            vec![
                ("email", text(s(v, "email"))),
                ("name", text(s(v, "name"))),
                ("active", flag(b(v, "active"))),
                ("archived", flag(b(v, "archived"))),
                ("department", text(s(v, "department"))),
                ("job_title", text(s(v, "job_title"))),
                (
                    "device_count",
                    int(v.get("device_count").and_then(Value::as_i64)),
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
            stream: StreamName::Users,
            table: Table::Users,
            template: paths::USERS,
            style: Arc::new(NextCursor::without_limit()),
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
    name: "users",
    interval: Duration::from_secs(60 * 360),
    priority: Priority::Inventory,
    category: "users",
    rank: 7,
    stage: Stage::Collect,
    needs: None,
    output: Output::Table(Table::Users),
    probes: &[probes::USERS],
    calls: &[],
    cost: |c| Cost::pages(c.users(), 300.0),
    driver: Driver::OffsetSweep,
    run: |rt, _| Box::pin(run(rt)),
};
