//! Full sweeps of listed endpoints (devices, users, blueprints, tags, ADE devices).
//!
//! A sweep walks every page of one or more segments (a segment is one filtered walk, e.g. one
//! blueprint × platform) with the client's pagination walker. Each page's rows commit with the
//! checkpoint `{sweep, segment, pos, done}`, so a crash resumes the same sweep at the same page.
//! The last page also closes the sweep: rows it did not see count a miss, and rows past their
//! table's threshold are marked removed.

use std::sync::Arc;

use futures::StreamExt;
use kandji_api::paginate::{self, PageStyle, Parsed};
use kandji_api::{ApiRequest, KandjiError, Position, Query};
use serde_json::{Value, json};

use crate::store::{self, InvRow, Store, SweepEnd, Table, Upsert};
use crate::streams::StreamName;
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
}

/// The checkpoint a sweep keeps.
#[derive(Debug, Clone, PartialEq)]
struct Pos {
    sweep: i64,
    started_at: i64,
    segment: usize,
    pos: Option<Position>,
    done: bool,
}

impl Pos {
    fn from_json(v: Option<Value>) -> Pos {
        match v {
            Some(v) => Pos {
                sweep: v.get("sweep").and_then(Value::as_i64).unwrap_or(0),
                started_at: v.get("started_at").and_then(Value::as_i64).unwrap_or(0),
                segment: v.get("segment").and_then(Value::as_u64).unwrap_or(0) as usize,
                pos: v
                    .get("pos")
                    .cloned()
                    .and_then(|p| serde_json::from_value(p).ok()),
                done: v.get("done").and_then(Value::as_bool).unwrap_or(true),
            },
            None => Pos {
                sweep: 0,
                started_at: 0,
                segment: 0,
                pos: None,
                done: true,
            },
        }
    }
    fn to_json(&self) -> Value {
        json!({"sweep": self.sweep, "started_at": self.started_at, "segment": self.segment,
               "pos": self.pos, "done": self.done})
    }
}

pub async fn load_checkpoint(
    store: &Store,
    source: &str,
    stream: StreamName,
) -> Result<Option<Value>, StreamError> {
    Ok(store.checkpoint(source, stream.as_str()).await?)
}

pub async fn run(rt: &SourceRuntime, spec: SweepSpec) -> Result<RunReport, StreamError> {
    let source = rt.name().to_string();
    let mut cp = Pos::from_json(load_checkpoint(&rt.store, &source, spec.stream).await?);
    if cp.done {
        cp = Pos {
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
                // An expired cursor restarts the segment's walk; the sweep id is kept, so rows
                // already seen in this sweep stay seen.
                Err(e @ KandjiError::BadRequest { .. })
                    if matches!(cp.pos, Some(Position::Cursor(_))) =>
                {
                    restarts.restart(rt, spec.stream, &e)?;
                    cp.pos = None;
                    continue 'segments;
                }
                Err(e) => return Err(e.into()),
            };
            report.pages += 1;
            let rows: Vec<InvRow> = page
                .items
                .iter()
                .filter_map(spec.map)
                .filter(|r| (spec.keep)(r))
                .collect();
            let mut batch = rt.batch(spec.stream);
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
            batch.checkpoint = Some(cp.to_json());
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
