//! Full sweeps of listed endpoints (devices, users, blueprints, tags, ADE devices).
//!
//! A sweep walks every page of one or more segments (a segment is one filtered walk, e.g. one
//! blueprint × platform) with the client's pagination walker. Each page's rows commit with the
//! checkpoint `{sweep, segment, pos, done}`, so a crash resumes the same sweep at the same page.
//! The last page also closes the sweep: rows it did not see count a miss, and rows past their
//! table's threshold are marked removed.
//!
//! Offsets shift when rows leave mid-walk, so a miss is not evidence enough for a table that
//! [`Confirm`]s: before its sweep ends, each row it would remove is asked for by id, and only
//! a 404 (or an answer outside the source's filters) lets it go. Removals are rare, so this
//! costs a request per real removal; a burst of unenrolments ahead of the walk costs one per
//! device it hid, and removes none of them.

use std::sync::Arc;

use futures::StreamExt;
use kandji_api::api::path_segment;
use kandji_api::paginate::{self, PageStyle, Parsed};
use kandji_api::{ApiRequest, KandjiError, Position, Query};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store::{self, InvRow, SweepEnd, Table, Upsert};
use crate::streams::StreamName;
use crate::streams::fetch;
use crate::streams::runtime::{CursorRestarts, RunReport, SourceRuntime, StreamError};

/// `limit`/`offset` over a bare array, re-reading `overlap` items at each page boundary: when a
/// device unenrols mid-walk every later device shifts one place left, and without the overlap
/// the one at the boundary would be skipped. Duplicates are harmless (upserts).
#[derive(Debug)]
pub struct OverlappingOffset {
    pub inner: paginate::OffsetArray,
    pub overlap: u64,
}

impl PageStyle for OverlappingOffset {
    fn query(&self, pos: Option<&Position>) -> Query {
        self.inner.query(pos)
    }
    fn parse(&self, body: Value, pos: Option<&Position>) -> Result<Parsed, String> {
        let mut parsed = self.inner.parse(body, pos)?;
        let n = parsed.items.len() as u64;
        if let Some(Position::Offset(next)) = &mut parsed.next {
            *next -= self.overlap.min(n.saturating_sub(1));
        }
        Ok(parsed)
    }
}

pub struct SweepSpec {
    pub stream: StreamName,
    pub table: Table,
    pub template: &'static str,
    pub style: Arc<dyn PageStyle>,
    /// One query per segment; a sweep walks them all.
    pub segments: Vec<Query>,
    pub map: fn(&Value) -> Option<InvRow>,
    /// Drops rows outside the source's filters.
    pub keep: Box<dyn Fn(&InvRow) -> bool + Send + Sync>,
    /// Removal needs evidence: ask for each row the sweep would remove.
    pub confirm: Option<Confirm>,
}

/// How a sweep confirms a removal: one row by id, mapped by the sweep's `map`.
pub struct Confirm {
    /// The endpoint, with one `{…}` placeholder for the row's key.
    pub template: &'static str,
    /// Whether a row that still exists is one the source collects (its filters).
    pub in_scope: Box<dyn Fn(&InvRow) -> bool + Send + Sync>,
}

/// The checkpoint a sweep keeps: which sweep, where it is, whether it is done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The sweep's id; rows seen in it carry it, and its end marks the rest missed.
    #[serde(default)]
    pub sweep: i64,
    #[serde(default)]
    pub started_at: i64,
    /// The segment (one filtered walk) in progress.
    #[serde(default)]
    pub segment: usize,
    /// The page position in the segment; one the walker no longer understands restarts the
    /// segment (the sweep id is kept, so rows already seen stay seen).
    #[serde(default, deserialize_with = "lenient_position")]
    pub pos: Option<Position>,
    #[serde(default = "yes")]
    pub done: bool,
}

impl Default for Checkpoint {
    /// No sweep yet: the next run starts sweep 1.
    fn default() -> Self {
        Checkpoint {
            sweep: 0,
            started_at: 0,
            segment: 0,
            pos: None,
            done: true,
        }
    }
}

fn yes() -> bool {
    true
}

fn lenient_position<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Position>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    Ok(v.and_then(|p| serde_json::from_value(p).ok()))
}

pub async fn run(rt: &SourceRuntime, spec: SweepSpec) -> Result<RunReport, StreamError> {
    let mut cp: Checkpoint = super::load(rt, spec.stream, None).await?;
    if cp.done {
        cp = Checkpoint {
            sweep: cp.sweep + 1,
            started_at: rt.now(),
            segment: 0,
            pos: None,
            done: false,
        };
    }
    let mut report = RunReport::default();
    let mut restarts = CursorRestarts::default();
    let nseg = spec.segments.len().max(1);
    'segments: loop {
        let query = spec.segments.get(cp.segment).cloned().unwrap_or_default();
        let req = ApiRequest::get(spec.template, spec.stream.priority()).with_query(query);
        let mut pages = paginate::walk(&rt.client, req, spec.style.clone(), cp.pos.clone());
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(p) => p,
                // A refused cursor (400, or DRF's 404) restarts the segment's walk; the sweep id is kept, so rows
                // already seen in this sweep stay seen.
                Err(e) if matches!(cp.pos, Some(Position::Cursor(_))) && e.is_refused_cursor() => {
                    restarts.restart(rt, spec.stream, &e)?;
                    cp.pos = None;
                    continue 'segments;
                }
                Err(e) => return Err(e.into()),
            };
            report.pages += 1;
            let mut rows: Vec<InvRow> = page
                .items
                .iter()
                .filter_map(spec.map)
                .filter(|r| (spec.keep)(r))
                .collect();
            let mut batch = rt.batch(spec.stream);
            let last = page.next.is_none() && cp.segment + 1 >= nseg;
            if last && let Some(c) = &spec.confirm {
                let live = confirm(rt, &spec, c, cp.sweep, &rows).await?;
                rows.extend(live);
            }
            batch.upserts.push(Upsert {
                table: spec.table,
                sweep: cp.sweep,
                started_at: cp.started_at,
                rows,
            });
            let finished = match page.next {
                Some(p) => {
                    cp.pos = Some(p);
                    false
                }
                None if cp.segment + 1 < nseg => {
                    cp.segment += 1;
                    cp.pos = None;
                    false
                }
                None => {
                    cp.done = true;
                    batch.sweep_ends.push(SweepEnd {
                        table: spec.table,
                        sweep: cp.sweep,
                        scope: store::Scope::All,
                    });
                    true
                }
            };
            batch.checkpoint = Some(super::save(&cp));
            let out = rt.commit(batch).await?;
            report.records += out.records();
            if finished {
                return Ok(report);
            }
            if rt.stopping() {
                return Err(StreamError::Shutdown);
            }
            if cp.pos.is_none() {
                // Next segment.
                continue 'segments;
            }
        }
        // The walker ended without a last page (it only does so after an error it returned).
        return Err(StreamError::Data(format!(
            "{}: the page walk ended early",
            spec.template
        )));
    }
}

/// The rows sweep `sweep` would remove that still exist in scope (the rest answered 404 or
/// left the filters: their removal has its evidence).
async fn confirm(
    rt: &SourceRuntime,
    spec: &SweepSpec,
    c: &Confirm,
    sweep: i64,
    last_page: &[InvRow],
) -> Result<Vec<InvRow>, StreamError> {
    let seen: std::collections::HashSet<&str> = last_page.iter().map(|r| r.key.as_str()).collect();
    let candidates = rt
        .store
        .removal_candidates(rt.name(), spec.table, sweep)
        .await?;
    let mut live = Vec::new();
    for key in candidates.iter().filter(|k| !seen.contains(k.as_str())) {
        let path = match (c.template.find('{'), c.template.find('}')) {
            (Some(a), Some(b)) if a < b => {
                format!(
                    "{}{}{}",
                    &c.template[..a],
                    path_segment(key),
                    &c.template[b + 1..]
                )
            }
            _ => c.template.to_string(),
        };
        match fetch::get(rt, c.template, path, vec![], spec.stream.priority()).await {
            Ok(body) => {
                if let Some(row) = (spec.map)(&body).filter(|r| r.key == *key && (c.in_scope)(r)) {
                    live.push(row);
                }
            }
            Err(KandjiError::NotFound { .. }) => {}
            // The token may not read one device: the sweep's misses are all the evidence
            // there is (as before this check existed).
            Err(KandjiError::PermissionDenied { endpoint }) => {
                tracing::warn!(source = %rt.name(), stream = %spec.stream, %endpoint,
                    "removal evidence needs this permission: without it, devices a walk missed twice are marked removed");
                return Ok(live);
            }
            Err(e) => return Err(e.into()),
        }
    }
    if !live.is_empty() {
        tracing::info!(source = %rt.name(), stream = %spec.stream, kept = live.len(),
            of = candidates.len(), "rows the walk missed still exist: not removed");
    }
    Ok(live)
}

#[cfg(test)]
mod checkpoint_tests {
    use super::*;

    #[test]
    fn the_first_checkpoints_read_as_the_typed_one() {
        let cp: Checkpoint = serde_json::from_value(serde_json::json!({
            "sweep": 7, "started_at": 11, "segment": 1, "pos": {"kind": "offset", "value": 600}, "done": false
        }))
        .unwrap();
        assert_eq!(cp.sweep, 7);
        assert_eq!(cp.segment, 1);
        assert!(!cp.done);
        assert_eq!(
            serde_json::to_value(&cp.pos).unwrap(),
            serde_json::json!({"kind": "offset", "value": 600})
        );
        // A position the walker no longer knows restarts the segment, in the same sweep.
        let odd: Checkpoint = serde_json::from_value(
            serde_json::json!({"sweep": 7, "pos": {"page_token": [1]}, "done": false}),
        )
        .unwrap();
        assert_eq!((odd.sweep, odd.pos.clone(), odd.done), (7, None, false));
        // Missing: done, so the next run starts a new sweep.
        assert!(Checkpoint::default().done);
        let empty: Checkpoint = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(empty, Checkpoint::default());
    }
}
