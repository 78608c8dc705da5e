//! `device_details`: device details and security posture from Prism — `device_information`
//! plus the posture categories `filevault`, `application_firewall`, `gatekeeper_and_xprotect`,
//! `startup_settings` and `installed_profiles`. A full export of each category every
//! [`FULL_EXPORT_EVERY`](crate::planner::FULL_EXPORT_EVERY) (which also finds rows that went
//! away), and cursor pages filtered on `last_changed_at` in between. A posture value that
//! changes (FileVault, firewall, Gatekeeper, SIP) becomes a change event, and a device that
//! changed is queued for a compliance re-read.

use futures::StreamExt;
use serde_json::{Value, json};

use super::prism::{self, DeltaPage};
use super::{StreamName, int, text, typed};
use crate::engine::fetch::s;
use crate::engine::sweep::load_checkpoint;
use crate::engine::{RunReport, Scope, SourceRuntime, StreamError};
use crate::planner::{DETAIL_CATEGORIES, FULL_EXPORT_EVERY};
use crate::store::{InvRow, Scope as StoreScope, SweepEnd, Table, Upsert};

/// Rows changed this long before the last read are read again.
pub const OVERLAP_MS: i64 = 15 * 60 * 1000;

/// The posture value a category's change events follow.
pub fn posture(category: &str, row: &Value) -> Option<String> {
    let field = match category {
        "filevault" => "status",
        "application_firewall" => "status",
        "gatekeeper_and_xprotect" => "gatekeeper_status",
        "startup_settings" => "sip",
        _ => return None,
    };
    s(row, field)
}

pub fn map(category: &str, row: &Value) -> Option<InvRow> {
    let device_id = s(row, "device_id")?;
    let key = match category {
        "installed_profiles" => format!(
            "{category}|{device_id}|{}",
            s(row, "payload_uuid")
                .or_else(|| s(row, "payload_identifier"))
                .unwrap_or_default()
        ),
        _ => format!("{category}|{device_id}"),
    };
    Some(InvRow {
        key,
        device_id: Some(device_id),
        values: typed(
            Table::DeviceDetails,
            vec![
                ("category", text(Some(category.to_string()))),
                ("last_changed_at", int(prism::changed_at(row))),
                ("posture", text(posture(category, row))),
            ],
        ),
        raw: row.to_string(),
    })
}

/// One Prism category as a stream collects it.
pub struct Category<'a> {
    pub stream: StreamName,
    pub name: &'a str,
    pub table: Table,
    pub map: fn(&str, &Value) -> Option<InvRow>,
}

/// Streams one category: full export or deltas, resuming from `cp` (the category's part of
/// the checkpoint). Shared with `apps`.
pub async fn category(
    rt: &SourceRuntime,
    scope: &Scope,
    cat: Category<'_>,
    cp: &Value,
    report: &mut RunReport,
) -> Result<Value, StreamError> {
    let Category {
        stream,
        name: category,
        table,
        map,
    } = cat;
    let started = rt.now();
    let last_full = cp.get("last_full_ms").and_then(Value::as_i64);
    let hwm = cp.get("hwm_ms").and_then(Value::as_i64);
    let full_due = match (last_full, hwm) {
        (Some(f), Some(_)) => started - f >= FULL_EXPORT_EVERY.as_millis() as i64,
        _ => true,
    };
    let keep = |r: &InvRow| scope.has_device(r.device_id.as_deref());
    let scope_of_sweep = match table {
        Table::DeviceDetails => StoreScope::Column("category", category.to_string()),
        _ => StoreScope::All,
    };
    if full_due {
        let sweep = started;
        let mut batches = prism::export(rt, category, scope);
        report.pages += 1;
        while let Some(rows) = batches.next().await {
            let rows: Vec<Value> = rows?.into_iter().map(|r| Value::Object(r.fields)).collect();
            let mut batch = rt.batch(stream);
            batch.upserts.push(Upsert {
                table,
                sweep,
                started_at: sweep,
                rows: rows
                    .iter()
                    .filter_map(|r| map(category, r))
                    .filter(keep)
                    .collect(),
            });
            let out = rt.commit(batch).await?;
            report.records += out.records();
            if rt.stopping() {
                // Rows so far are committed; the checkpoint is not, so the next run exports again.
                return Err(StreamError::Shutdown);
            }
        }
        // The whole snapshot is in: close the sweep and move the checkpoint in one commit.
        let next = json!({"last_full_ms": started, "hwm_ms": started});
        let mut batch = rt.batch(stream);
        batch.sweep_ends.push(SweepEnd {
            table,
            sweep,
            scope: scope_of_sweep,
        });
        let mut all = cp_all(rt, stream).await?;
        all[category] = next.clone();
        batch.checkpoint = Some(all);
        let out = rt.commit(batch).await?;
        report.records += out.records();
        return Ok(next);
    }
    let since = hwm.unwrap_or(started) - OVERLAP_MS;
    let pages = prism::deltas(rt, category, since, scope, |page: DeltaPage| async move {
        let rows: Vec<InvRow> = page
            .rows
            .iter()
            .filter_map(|r| map(category, r))
            .filter(keep)
            .collect();
        let mut batch = rt.batch(stream);
        for r in &rows {
            if let Some(d) = &r.device_id {
                batch.refresh.push((d.clone(), format!("prism:{category}")));
            }
        }
        batch.upserts.push(Upsert {
            table,
            sweep: 0,
            started_at: started,
            rows,
        });
        if page.done {
            let mut all = cp_all(rt, stream).await?;
            all[category] = json!({"last_full_ms": last_full, "hwm_ms": started});
            batch.checkpoint = Some(all);
        }
        rt.commit(batch).await?;
        Ok(())
    })
    .await?;
    report.pages += pages;
    Ok(json!({"last_full_ms": last_full, "hwm_ms": started}))
}

/// The stream's whole checkpoint (one entry per category).
async fn cp_all(rt: &SourceRuntime, stream: StreamName) -> Result<Value, StreamError> {
    Ok(load_checkpoint(&rt.store, rt.name(), stream)
        .await?
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({})))
}

pub async fn run(rt: &SourceRuntime, scope: &Scope) -> Result<RunReport, StreamError> {
    let stream = StreamName::DeviceDetails;
    let mut report = RunReport::default();
    for cat in DETAIL_CATEGORIES {
        let cp = cp_all(rt, stream).await?;
        let this = cp.get(cat).cloned().unwrap_or(Value::Null);
        let c = Category {
            stream,
            name: cat,
            table: Table::DeviceDetails,
            map,
        };
        category(rt, scope, c, &this, &mut report).await?;
        if rt.stopping() {
            return Err(StreamError::Shutdown);
        }
    }
    Ok(report)
}
