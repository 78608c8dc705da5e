//! `cursor_events`: an event feed paged by an opaque cursor (audit, vulnerabilities), read from
//! a high-water mark minus an overlap; the events' uids dedup what the overlap reads again.
//!
//! One restart rule: a cursor the API refuses (400 or 404, it expired between pages or runs)
//! restarts the walk without it, at most [`MAX_CURSOR_RESTARTS`](super::super::runtime::MAX_CURSOR_RESTARTS)
//! times per run. A feed sorted by time restarts from its mark; an unsorted one re-runs the
//! query the cursor came from (its mark may be past rows the walk has not reached).
//!
//! A feed whose events can arrive late (the audit feed: a device that was offline reports
//! events dated hours back) also walks from a [`LateWindow`] behind the mark every so often,
//! so an event up to that late is still collected, once.
//!
//! A feed of findings that can go away (vulnerability detections) also keeps them as an
//! inventory table ([`Findings`]): every so often a walk reads the whole feed as a sweep of
//! that table, so a finding it no longer lists is closed (the table's removal event) and one
//! that comes back reopens.

use std::sync::Arc;

use futures::StreamExt;
use kandji_api::paginate::{self, PageStyle};
use kandji_api::{ApiRequest, Position};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store::{EventRow, InvRow, Scope as StoreScope, SweepEnd, Table, Upsert};
use crate::streams::StreamName;
use crate::streams::runtime::{CursorRestarts, RunReport, Scope, SourceRuntime, StreamError};

/// The checkpoint: the cursor of a walk in progress and the lower bound it was issued for,
/// and the (time, uid) high-water mark.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The walk's cursor (`after` in the vulnerability feed's first checkpoints).
    #[serde(default, alias = "after")]
    pub cursor: Option<String>,
    /// The lower bound (ms) of the query the cursor belongs to (`start_ms` in the audit feed's
    /// first checkpoints).
    #[serde(default, alias = "start_ms")]
    pub from_ms: Option<i64>,
    /// The newest event's time (ms) seen, never in the future.
    #[serde(default)]
    pub hwm_ms: Option<i64>,
    /// The newest event's uid, the tie-break among events of one millisecond.
    #[serde(default)]
    pub hwm_id: Option<String>,
    /// When the last full walk of a [`Findings`] feed ended (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_full_ms: Option<i64>,
    /// The full walk in progress (its sweep id, ms), resumed by its cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<i64>,
    /// When the last walk that reached [`LateWindow::window_ms`] behind the mark began (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_deep_ms: Option<i64>,
    /// The deep walk in progress (when it began, ms), resumed by its cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deep: Option<i64>,
}

/// Findings kept as an inventory table beside the feed's events.
pub struct Findings {
    pub table: Table,
    /// A full walk (a sweep of the table) at least this often.
    pub full_every_ms: i64,
    /// A finding's row in the table.
    pub row: fn(&Value) -> Option<InvRow>,
}

/// A bounded re-read for events that arrive late (a device that was offline reports them
/// with an `occurred_at` before events already read): at least every `every_ms`, a walk starts
/// `window_ms` behind the mark instead of the overlap. The uids dedup what it reads again, so
/// it costs requests, not duplicates; an event later than `window_ms` is not collected.
#[derive(Debug, Clone, Copy)]
pub struct LateWindow {
    pub window_ms: i64,
    pub every_ms: i64,
}

/// The device an event queues for a refresh, and why.
pub type RefreshRule = fn(&EventRow) -> Option<(String, String)>;

/// What a stream configures.
pub struct CursorFeed {
    pub stream: StreamName,
    pub template: &'static str,
    pub style: Arc<dyn PageStyle>,
    /// Re-read behind the mark when a walk starts from it.
    pub overlap_ms: i64,
    /// Whether the feed is sorted by event time (a restart may then start from the mark).
    pub sorted: bool,
    /// The query of a walk from `from` (ms; `None`: the whole feed).
    pub query: fn(Option<i64>) -> Vec<(String, String)>,
    pub map: fn(&Value) -> Option<EventRow>,
    /// A device to queue for a refresh, and why, for an event (the audit feed's rule).
    pub refresh: Option<RefreshRule>,
    /// Findings that open and close (vulnerability detections).
    pub findings: Option<Findings>,
    /// The re-read for late events (the audit feed).
    pub late: Option<LateWindow>,
}

pub async fn run(
    rt: &SourceRuntime,
    scope: &Scope,
    feed: CursorFeed,
) -> Result<RunReport, StreamError> {
    let stream = feed.stream;
    let mut cp: Checkpoint = super::load(rt, stream, None).await?;
    // 0 was the audit feed's "no mark yet".
    let stored = cp.hwm_ms.filter(|h| *h > 0);
    let sane = rt.sane_hwm(stream, stored).await?;
    if sane != stored {
        // The cursor and the tie-break belong to the blinded walk.
        cp.cursor = None;
        cp.hwm_id = None;
    }
    cp.hwm_ms = sane;
    let from_mark = |cp: &Checkpoint| cp.hwm_ms.map(|h| h - feed.overlap_ms);
    // A cursor resumes the exact query it came from; without one, the walk starts from the
    // mark (the first run reads the whole feed).
    if cp.cursor.is_none() {
        cp.from_ms = from_mark(&cp);
        cp.sweep = None;
        cp.deep = None;
        // A deep walk is due: from the late window behind the mark.
        if let (Some(late), Some(hwm)) = (feed.late, cp.hwm_ms)
            && cp
                .last_deep_ms
                .is_none_or(|t| rt.now() - t >= late.every_ms)
        {
            cp.deep = Some(rt.now());
            cp.from_ms = Some(hwm - late.window_ms.max(feed.overlap_ms));
        }
        // A full walk is due: the whole feed, as a sweep of the findings' table.
        if let Some(f) = &feed.findings
            && cp
                .last_full_ms
                .is_none_or(|t| rt.now() - t >= f.full_every_ms)
        {
            cp.sweep = Some(rt.now());
            cp.from_ms = None;
        }
    }
    // Events before this were read by earlier walks: a deep walk's re-reads of them queue no
    // refreshes (what it finds there is late, and old).
    let news_from = cp.hwm_ms.map_or(i64::MIN, |h| h - feed.overlap_ms);
    let mut restarts = CursorRestarts::default();
    let mut report = RunReport::default();
    'walk: loop {
        let req =
            ApiRequest::get(feed.template, stream.priority()).with_query((feed.query)(cp.from_ms));
        let mut pages = paginate::walk(
            &rt.client,
            req,
            feed.style.clone(),
            cp.cursor.clone().map(Position::Cursor),
        );
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(p) => p,
                Err(e) if cp.cursor.is_some() && e.is_refused_cursor() => {
                    restarts.restart(rt, stream, &e)?;
                    cp.cursor = None;
                    if feed.sorted && cp.sweep.is_none() {
                        cp.from_ms = match (cp.deep, feed.late) {
                            // A deep walk stays deep.
                            (Some(_), Some(l)) => {
                                cp.hwm_ms.map(|h| h - l.window_ms.max(feed.overlap_ms))
                            }
                            _ => from_mark(&cp),
                        };
                    }
                    continue 'walk;
                }
                Err(e) => return Err(e.into()),
            };
            report.pages += 1;
            let empty = page.items.is_empty();
            let mut batch = rt.batch(stream);
            let mut found = Vec::new();
            for item in &page.items {
                let Some(mut ev) = (feed.map)(item) else {
                    tracing::warn!(source = %rt.name(), stream = %stream,
                        "event without an id or a time skipped");
                    continue;
                };
                let future = rt.flag_if_future(stream, &mut ev);
                let mark = (
                    cp.hwm_ms.unwrap_or(i64::MIN),
                    cp.hwm_id.as_deref().unwrap_or(""),
                );
                if !future && (ev.occurred_at, ev.uid.as_str()) > mark {
                    cp.hwm_ms = Some(ev.occurred_at);
                    cp.hwm_id = Some(ev.uid.clone());
                }
                if !scope.has_device(ev.device_id.as_deref()) {
                    continue;
                }
                if let Some(refresh) = feed.refresh.and_then(|f| f(&ev))
                    && (cp.deep.is_none() || ev.occurred_at >= news_from)
                {
                    batch.refresh.push(refresh);
                }
                if let Some(row) = feed.findings.as_ref().and_then(|f| (f.row)(item)) {
                    found.push(row);
                }
                batch.events.push(ev);
            }
            cp.cursor = match page.next {
                Some(Position::Cursor(c)) => Some(c),
                _ => None,
            };
            // Caught up: no cursor, or an empty page (a cursor may stay valid to poll later).
            let done = cp.cursor.is_none() || empty;
            if let Some(f) = &feed.findings {
                // A full walk's rows belong to its sweep; a delta's are news or updates.
                let sweep = cp.sweep.unwrap_or(0);
                batch.upserts.push(Upsert {
                    table: f.table,
                    sweep,
                    started_at: cp.sweep.unwrap_or(batch.now),
                    rows: found,
                });
                if done && let Some(sweep) = cp.sweep {
                    batch.sweep_ends.push(SweepEnd {
                        table: f.table,
                        sweep,
                        scope: StoreScope::All,
                    });
                }
            }
            let saved = Checkpoint {
                cursor: if done { None } else { cp.cursor.clone() },
                from_ms: if done { None } else { cp.from_ms },
                last_full_ms: match (done, cp.sweep) {
                    (true, Some(sweep)) => Some(sweep),
                    _ => cp.last_full_ms,
                },
                sweep: if done { None } else { cp.sweep },
                // A walk of the whole feed reaches further back than any window.
                last_deep_ms: match (done, cp.deep, cp.from_ms) {
                    (true, Some(at), _) => Some(at),
                    (true, None, None) if feed.late.is_some() => Some(batch.now),
                    _ => cp.last_deep_ms,
                },
                deep: if done { None } else { cp.deep },
                ..cp.clone()
            };
            batch.checkpoint = Some(super::save(&saved));
            let out = rt.commit(batch).await?;
            report.records += out.records();
            if done {
                return Ok(report);
            }
            if rt.stopping() {
                return Err(StreamError::Shutdown);
            }
        }
        return Ok(report);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_checkpoints_of_both_feeds_read_as_the_typed_one() {
        let audit: Checkpoint = serde_json::from_value(serde_json::json!({
            "cursor": "c1", "start_ms": 5, "hwm_ms": 9, "hwm_id": "01J"
        }))
        .unwrap();
        assert_eq!(
            audit,
            Checkpoint {
                cursor: Some("c1".into()),
                from_ms: Some(5),
                hwm_ms: Some(9),
                hwm_id: Some("01J".into()),
                ..Checkpoint::default()
            }
        );
        let vulns: Checkpoint = serde_json::from_value(serde_json::json!({
            "hwm_ms": 9, "after": "a1", "from_ms": 3
        }))
        .unwrap();
        assert_eq!(vulns.cursor.as_deref(), Some("a1"));
        assert_eq!(vulns.from_ms, Some(3));
        let caught_up: Checkpoint =
            serde_json::from_value(serde_json::json!({"hwm_ms": 9})).unwrap();
        assert_eq!(caught_up.cursor, None);
    }

    #[test]
    fn a_checkpoint_of_another_shape_is_reset_not_misread() {
        let cp: Checkpoint = super::super::parse(
            "s",
            StreamName::ALL[0],
            None,
            Some(serde_json::json!({"hwm_ms": "not a number"})),
        );
        assert_eq!(cp, Checkpoint::default());
    }
}
