//! `envelope_events`: a DRF-envelope event feed (threats, behavioral detections), `limit` ≤ 1000
//! and `offset`, read from the stream's high-water mark.

use futures::StreamExt;
use kandji_api::api::caps;
use kandji_api::paginate::{self, DrfEnvelope};

use serde::{Deserialize, Serialize};

use crate::store::Batch;
use crate::streams::StreamName;
use crate::streams::runtime::{RunReport, SourceRuntime, StreamError};

/// The checkpoint: a feed read by date keeps the newest event's time (`hwm_ms`); one read by a
/// day range (threats: `date_range` days back) keeps when the last walk completed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hwm_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_ms: Option<i64>,
}

/// The stream's checkpoint, typed (see [`super::load`]).
pub async fn checkpoint(rt: &SourceRuntime, stream: StreamName) -> Result<Checkpoint, StreamError> {
    super::load(rt, stream, None).await
}

/// Walks a DRF-envelope event endpoint (threats, behavioral detections) with `limit` ≤ 1000
/// and `offset`. `each` maps a page's items into the batch and returns the checkpoint that
/// holds once the walk completes; pages before the last commit with no checkpoint change,
/// so a crash re-reads the window and the event uids dedup it.
pub async fn run<F>(
    rt: &SourceRuntime,
    stream: StreamName,
    template: &'static str,
    query: Vec<(String, String)>,
    mut each: F,
) -> Result<RunReport, StreamError>
where
    F: FnMut(&mut Batch, &[serde_json::Value]) -> Checkpoint,
{
    let req = kandji_api::ApiRequest::get(template, stream.priority()).with_query(query);
    let style = std::sync::Arc::new(DrfEnvelope::new(caps::EDR, caps::EDR));
    let mut pages = paginate::walk(&rt.client, req, style, None);
    let mut report = RunReport::default();
    while let Some(page) = pages.next().await {
        let page = page?;
        report.pages += 1;
        let mut batch = rt.batch(stream);
        let cp = each(&mut batch, &page.items);
        if page.next.is_none() {
            batch.checkpoint = Some(super::save(&cp));
        }
        let out = rt.commit(batch).await?;
        report.records += out.records();
        if page.next.is_none() {
            return Ok(report);
        }
        if rt.stopping() {
            return Err(StreamError::Shutdown);
        }
    }
    Ok(report)
}
