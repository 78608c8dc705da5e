//! `apps`: application inventory. A full Prism export of `apps` by default (a few requests
//! for the whole fleet, which also finds removed apps), and Prism cursor pages filtered on
//! `last_changed_at` for deltas in between. Per-device `/devices/{id}/apps` is not used: at one
//! request per device it costs the fleet size every cycle, which the planner refuses.

use serde_json::Value;

use super::device_details::{Category, category};
use super::{StreamName, text, typed};
use crate::engine::fetch::s;
use crate::engine::sweep::load_checkpoint;
use crate::engine::{RunReport, Scope, SourceRuntime, StreamError};
use crate::store::{InvRow, Table};

pub fn map(_category: &str, row: &Value) -> Option<InvRow> {
    let device_id = s(row, "device_id")?;
    let ident = s(row, "bundle_id")
        .or_else(|| s(row, "path"))
        .or_else(|| s(row, "name"))
        .or_else(|| s(row, "app_name"))?;
    Some(InvRow {
        key: format!("{device_id}|{ident}"),
        device_id: Some(device_id),
        values: typed(
            Table::Apps,
            vec![
                ("name", text(s(row, "name").or_else(|| s(row, "app_name")))),
                ("bundle_id", text(s(row, "bundle_id"))),
                (
                    "version",
                    text(s(row, "short_version").or_else(|| s(row, "version"))),
                ),
                ("path", text(s(row, "path"))),
            ],
        ),
        raw: row.to_string(),
    })
}

pub async fn run(rt: &SourceRuntime, scope: &Scope) -> Result<RunReport, StreamError> {
    let stream = StreamName::Apps;
    let mut report = RunReport::default();
    let cp = load_checkpoint(&rt.store, rt.name(), stream)
        .await?
        .unwrap_or(Value::Null);
    let this = cp.get("apps").cloned().unwrap_or(Value::Null);
    let c = Category {
        stream,
        name: "apps",
        table: Table::Apps,
        map,
    };
    category(rt, scope, c, &this, &mut report).await?;
    Ok(report)
}
