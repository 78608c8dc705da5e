//! Stream status as the CLI, the console and the JSON API show it: one JSON object per stream,
//! with the troubleshooting hint for its last error.

use serde_json::{Value, json};

use crate::store::{Store, StoreError};

/// One row of `status` as JSON.
pub fn status_json(r: &crate::store::StatusRow) -> Value {
    let hint = r
        .last_error_kind
        .as_deref()
        .map(|k| crate::streams::error::hint(k, r.last_error_endpoint.as_deref()));
    let t = |v: Option<i64>| v.map(crate::streams::fetch::rfc3339);
    json!({
        "source": r.source,
        "stream": r.stream,
        "state": r.state,
        "last_success_at": t(r.last_success_at),
        "last_error_at": t(r.last_error_at),
        "last_error_kind": r.last_error_kind,
        "last_error": r.last_error_message,
        "last_error_endpoint": r.last_error_endpoint,
        "hint": hint,
        "records_total": r.records_total,
        "last_run_records": r.last_run_records,
        "last_run_requests": r.last_run_requests,
        "next_run_at": t(r.next_run_at),
        "checkpoint": r.checkpoint.as_deref().and_then(|s| serde_json::from_str::<Value>(s).ok()),
    })
}

/// The rows of `status` (and the console's and API's status).
pub async fn status_rows(store: &Store, only: Option<&str>) -> Result<Vec<Value>, StoreError> {
    Ok(store
        .stream_status(only)
        .await?
        .iter()
        .map(status_json)
        .collect())
}
