//! Prism, the fleet-wide tables: full snapshots through the asynchronous CSV export and deltas
//! through cursor pages filtered on `last_changed_at`. Shared by `device_details` and `apps`.
//!
//! An export costs about three requests plus polls whatever the fleet size, and its rows arrive
//! in batches as the CSV streams, so memory stays flat in fleet size.

use std::time::Duration;

use futures::StreamExt;
use kandji_api::export::{ExportOptions, ExportRequest, RowBatches};
use serde_json::{Value, json};

use crate::engine::fetch::{self, q};
use crate::engine::{Scope, SourceRuntime, StreamError};

/// Rows per batch handed to the store.
pub const BATCH_ROWS: usize = 1_000;
/// How long an export may take before the run gives up (the next run starts a new one).
pub const EXPORT_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// The Prism filter arguments the source's filters push down.
pub fn pushdown(scope: &Scope) -> (Vec<String>, Vec<String>) {
    (scope.blueprint_ids.clone(), scope.families.clone())
}

/// Runs an export of `category` to completion and streams its rows, `BATCH_ROWS` at a time
/// (the client creates, polls with backoff up to a deadline, downloads the signed URL without
/// the bearer header and parses the CSV as it streams).
pub fn export(rt: &SourceRuntime, category: &str, scope: &Scope) -> RowBatches {
    let (blueprint_ids, device_families) = pushdown(scope);
    rt.client.export(
        ExportRequest {
            category: category.to_string(),
            blueprint_ids,
            device_families,
            ..ExportRequest::default()
        },
        ExportOptions {
            poll_initial: rt.export_poll,
            deadline: EXPORT_DEADLINE,
            batch_size: BATCH_ROWS,
            ..ExportOptions::default()
        },
    )
}

/// One page of a Prism cursor walk.
pub struct DeltaPage {
    pub rows: Vec<Value>,
    pub done: bool,
}

/// Walks `GET /prism/{category}` with `filter={"last_changed_at":{"gte": since}}` and the
/// cursor, calling `each` per page; returns the number of pages.
pub async fn deltas<F, Fut>(
    rt: &SourceRuntime,
    category: &str,
    since_ms: i64,
    scope: &Scope,
    mut each: F,
) -> Result<u64, StreamError>
where
    F: FnMut(DeltaPage) -> Fut,
    Fut: std::future::Future<Output = Result<(), StreamError>>,
{
    let (bps, fams) = pushdown(scope);
    let filter = json!({"last_changed_at": {"gte": fetch::rfc3339(since_ms)}}).to_string();
    let mut query = vec![q("filter", filter)];
    if !bps.is_empty() {
        query.push(q("blueprint_ids", bps.join(",")));
    }
    if !fams.is_empty() {
        query.push(q("device_families", fams.join(",")));
    }
    let mut pages = rt.client.prism(category, query, None);
    let mut n = 0u64;
    while let Some(page) = pages.next().await {
        let page = page?;
        n += 1;
        let done = page.next.is_none() || page.items.is_empty();
        let rows = page
            .items
            .into_iter()
            .map(|r| Value::Object(r.fields))
            .collect();
        each(DeltaPage { rows, done }).await?;
        if done {
            break;
        }
    }
    Ok(n)
}

/// The ms timestamp of a Prism row's `last_changed_at` (or `updated_at`).
pub fn changed_at(row: &Value) -> Option<i64> {
    fetch::ts(row, "last_changed_at").or_else(|| fetch::ts(row, "updated_at"))
}
