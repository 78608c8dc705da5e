//! `envelope_events`: a DRF-envelope event feed (threats, behavioral detections), `limit` ≤ 1000
//! and `offset`, read from the stream's high-water mark.

use futures::StreamExt;
use kandji_api::api::caps;
use kandji_api::paginate::{self, DrfEnvelope};

use crate::store::Batch;
use crate::streams::StreamName;
use crate::streams::runtime::{RunReport, SourceRuntime, StreamError};

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
    F: FnMut(&mut Batch, &[serde_json::Value]) -> serde_json::Value,
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
            batch.checkpoint = Some(cp);
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
