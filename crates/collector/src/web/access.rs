//! What the permission check found, kept in the source's status table: a stream the token
//! may not read (or the tenant has no licence for) stays listed as `missing permission: tick
//! 'X'` (or `not licensed`) whether or not it was chosen, so the badge, the worst state of
//! the source's streams, never says healthy over it. "Re-check permissions" and every token
//! rotation probe again and update the rows.

use crate::check::{self, Access};
use crate::store::{Store, StoreError, StreamOutcome};
use crate::streams::StreamName;
use crate::streams::runtime::SourceRuntime;
use crate::streams::source::Source;
use tokio_util::sync::CancellationToken;

/// The states a stream gets from the check rather than from a run.
pub const ACCESS_STATES: [&str; 2] = ["missing_permission", "not_licensed"];

/// Whether a stream in `state` shows in its source's table and badge even when not chosen.
pub fn is_access_state(state: &str) -> bool {
    ACCESS_STATES.contains(&state)
}

/// Records the check's answers: a stream the token cannot read gets its state and what to
/// tick; one it can read again, and that is not chosen, leaves the table.
pub async fn record(
    store: &Store,
    source: &str,
    report: &check::Report,
    chosen: &[StreamName],
) -> Result<(), StoreError> {
    let rows = store.stream_status(Some(source)).await?;
    for (stream, access) in &report.matrix {
        let outcome = match access {
            Access::MissingPermission {
                endpoint,
                permission,
            } => Some(StreamOutcome::Failure {
                state: "missing_permission",
                kind: "permission_denied",
                message: format!(
                    "missing permission: tick '{permission}' in Kandji → Access → API token"
                ),
                endpoint: Some(endpoint.clone()),
                next_run_at: 0,
            }),
            Access::NotLicensedOrDenied {
                endpoint,
                permission,
            } => Some(StreamOutcome::Failure {
                state: "missing_permission",
                kind: "not_licensed_or_denied",
                message: check::not_licensed_or_denied(permission),
                endpoint: Some(endpoint.clone()),
                next_run_at: 0,
            }),
            Access::NotLicensed { endpoint } => Some(StreamOutcome::Failure {
                state: "not_licensed",
                kind: "not_licensed",
                message: "not licensed: the tenant lacks this feature (EDR or Vulnerability \
                          Management)"
                    .into(),
                endpoint: Some(endpoint.clone()),
                next_run_at: 0,
            }),
            _ => None,
        };
        match outcome {
            Some(o) => store.record_stream_run(source, stream.as_str(), o).await?,
            None => {
                let was_refused = rows
                    .iter()
                    .any(|r| r.stream == stream.as_str() && is_access_state(&r.state));
                if was_refused && !chosen.contains(stream) {
                    store
                        .set_stream_state(source, stream.as_str(), "disabled")
                        .await?;
                } else if was_refused && *access == Access::Ok {
                    // Chosen and readable again: its next run says how it went.
                    store
                        .set_stream_state(source, stream.as_str(), "pending")
                        .await?;
                }
            }
        }
    }
    Ok(())
}

/// Probes every stream with the source's current token and records the answers.
pub async fn recheck(store: &Store, source: &Source) -> Result<check::Report, String> {
    let chosen = source.streams.clone();
    let mut all = source.clone();
    all.streams = StreamName::ALL.to_vec();
    let rt = SourceRuntime::new(all, store.clone(), CancellationToken::new())
        .map_err(|e| e.to_string())?;
    let report = check::run_with(&rt).await;
    record(store, &source.name, &report, &chosen)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(source = %source.name, runnable = report.runnable().len(),
        of = report.matrix.len(), "permissions re-checked");
    Ok(report)
}
