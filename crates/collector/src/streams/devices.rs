//! `devices`: the device list. `GET /api/v1/devices`, a bare array paged by `limit` ≤ 300 and
//! `offset`, in a stable `ordering`. A full sweep each cycle; a device is marked removed only
//! after 2 consecutive sweeps missed it (offsets shift when devices enroll mid-walk).
//! Filters pushed down: `blueprint_id`, `platform` (one walk each), `tag_id_in`.

use serde_json::Value;

use super::{StreamName, flag, int, text, typed};
use crate::streams::fetch::{b, q, s, ts};
use std::sync::Arc;

use kandji_api::api::{caps, paths};
use kandji_api::paginate::OffsetArray;

use crate::streams::drivers::offset_sweep::{self as sweep, Confirm, OverlappingOffset, SweepSpec};
use crate::streams::runtime::{RunReport, Scope, SourceRuntime, StreamError};
use crate::store::{InvRow, Table};
use kandji_api::Priority;
use kandji_api::check::{calls, probes};
use super::spec::{Cost, Driver, Output, Stage, StreamSpec};
use std::time::Duration;

pub fn map(v: &Value) -> Option<InvRow> {
    let id = s(v, "device_id")?;
    let user = v.get("user").filter(|u| u.is_object());
    let tags = v
        .get("tags")
        .filter(|t| t.is_array())
        .map(|t| t.to_string());
    Some(InvRow {
        key: id.clone(),
        device_id: Some(id),
        values: typed(
            Table::Devices,
            vec![
                ("device_name", text(s(v, "device_name"))),
                ("serial_number", text(s(v, "serial_number"))),
                ("platform", text(s(v, "platform"))),
                ("model", text(s(v, "model"))),
                ("os_version", text(s(v, "os_version"))),
                ("blueprint_id", text(s(v, "blueprint_id"))),
                ("blueprint_name", text(s(v, "blueprint_name"))),
                ("user_id", text(user.and_then(|u| s(u, "id")))),
                ("user_email", text(user.and_then(|u| s(u, "email")))),
                ("user_name", text(user.and_then(|u| s(u, "name")))),
                ("asset_tag", text(s(v, "asset_tag"))),
                ("tags", text(tags)),
                ("last_check_in", int(ts(v, "last_check_in"))),
                ("mdm_enabled", flag(b(v, "mdm_enabled"))),
                ("agent_installed", flag(b(v, "agent_installed"))),
            ],
        ),
        raw: v.to_string(),
    })
}

/// One walk per blueprint × platform the filters name (or one walk for everything).
pub fn segments(scope: &Scope) -> Vec<Vec<(String, String)>> {
    let bps: Vec<Option<&String>> = if scope.blueprint_ids.is_empty() {
        vec![None]
    } else {
        scope.blueprint_ids.iter().map(Some).collect()
    };
    let plats: Vec<Option<&String>> = if scope.platforms.is_empty() {
        vec![None]
    } else {
        scope.platforms.iter().map(Some).collect()
    };
    let mut out = Vec::new();
    for bp in &bps {
        for p in &plats {
            let mut query = vec![q("ordering", "device_id")];
            if let Some(bp) = bp {
                query.push(q("blueprint_id", bp));
            }
            if let Some(p) = p {
                query.push(q("platform", p));
            }
            if !scope.tag_ids.is_empty() {
                query.push(q("tag_id_in", scope.tag_ids.join(",")));
            }
            out.push(query);
        }
    }
    out
}

/// Whether a device that still exists is one the source's filters collect: its blueprint,
/// platform and (by name or id) tags, as the walk's segments ask the API.
fn in_scope(rt: &SourceRuntime, scope: &Scope) -> Box<dyn Fn(&InvRow) -> bool + Send + Sync> {
    let blueprints = scope.blueprint_ids.clone();
    let platforms = scope.platforms.clone();
    let tags: Vec<String> = if scope.tag_ids.is_empty() {
        Vec::new()
    } else {
        scope
            .tag_ids
            .iter()
            .cloned()
            .chain(rt.source.filters.tags.iter().cloned())
            .collect()
    };
    Box::new(move |row: &InvRow| {
        let col = |name: &str| match Table::Devices
            .spec()
            .col_index(name)
            .and_then(|i| row.values.get(i))
        {
            Some(rusqlite::types::Value::Text(t)) => t.clone(),
            _ => String::new(),
        };
        (blueprints.is_empty() || blueprints.contains(&col("blueprint_id")))
            && (platforms.is_empty() || platforms.contains(&col("platform")))
            && (tags.is_empty() || {
                let have = col("tags");
                tags.iter().any(|t| have.contains(&format!("\"{t}\"")))
            })
    })
}

pub async fn run(rt: &SourceRuntime, scope: &Scope) -> Result<RunReport, StreamError> {
    sweep::run(
        rt,
        SweepSpec {
            stream: StreamName::Devices,
            table: Table::Devices,
            template: paths::DEVICES,
            style: Arc::new(OverlappingOffset {
                inner: OffsetArray::new(caps::DEVICES, caps::DEVICES),
                overlap: 5,
            }),
            segments: segments(scope),
            map,
            keep: Box::new(|_| true),
            // Removal needs evidence: `GET /devices/{id}` answers 404.
            confirm: Some(Confirm {
                template: paths::DEVICE,
                in_scope: in_scope(rt, scope),
            }),
        },
    )
    .await
}

/// The declaration.
pub static SPEC: StreamSpec = StreamSpec {
    name: "devices",
    interval: Duration::from_secs(60 * 15),
    priority: Priority::Inventory,
    category: "inventory",
    rank: 2,
    stage: Stage::DeviceList,
    needs: None,
    output: Output::Table(Table::Devices),
    probes: &[probes::DEVICES],
    calls: &[calls::DEVICE],
    cost: |c| Cost::pages(c.devices(), 300.0),
    driver: Driver::OffsetSweep,
    run: |rt, scope| Box::pin(run(rt, scope)),
};
