//! Pagination: one [`PageStyle`] per API style (NOTES §6), driven by one walker that yields
//! pages as a [`Stream`], so a caller never holds a fleet in memory.
//!
//! Every page carries its [`Position`] and the position of the next page, so a caller can
//! checkpoint after processing a page and later RESUME with `start = Some(page.next)`.
//!
//! Rules enforced by the walker:
//! - `next` URLs are never followed: only the cursor/page/offset parameter is taken, and the
//!   request is rebuilt against the configured base (the `/users` `next` points at the web host);
//! - a short page ends an offset walk only because we never ask for more than the cap;
//! - a cursor that does not advance (or comes back) → [`PaginationProblem::StuckCursor`];
//! - a page identical to an earlier page → [`PaginationProblem::RepeatedPage`];
//! - more than `max_pages` pages → [`PaginationProblem::TooManyPages`].
//!
//! All three stop the walk loudly with [`KandjiError::Pagination`].

mod cursor;
mod offset;
mod page;

pub use cursor::{AfterCursor, NextCursor, PrismCursor};
pub use offset::{DrfEnvelope, NestedEnvelope, OffsetArray};
pub use page::{PageNumber, PageSize};

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use serde_json::Value;

use crate::client::{ApiRequest, KandjiClient, Query};
use crate::error::{KandjiError, PaginationProblem};
use crate::models::Model;

/// Where a page starts. Store it to resume a walk.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Position {
    /// 0-based item offset (limit/offset styles).
    Offset(u64),
    /// 1-based page number (page and page/size styles).
    Page(u64),
    /// An opaque cursor (audit/users `cursor`, vulnerability `after`, Prism `cursor`).
    Cursor(String),
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Offset(o) => write!(f, "offset={o}"),
            Self::Page(p) => write!(f, "page={p}"),
            Self::Cursor(c) => write!(f, "cursor={c}"),
        }
    }
}

/// One page of a walk.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items, in server order.
    pub items: Vec<T>,
    /// Where this page was fetched from (`None` = the start).
    pub position: Option<Position>,
    /// Where the next page starts (`None` = this was the last page). Checkpoint this after
    /// processing the page; pass it as `start` to resume.
    pub next: Option<Position>,
    /// The server's total count, when it sends one.
    pub total: Option<u64>,
    /// 0-based index of the page within this walk.
    pub index: u64,
}

/// A boxed stream of pages.
pub type PageStream<T> = Pin<Box<dyn Stream<Item = Result<Page<T>, KandjiError>> + Send>>;

/// What a style extracted from one response.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// Raw items.
    pub items: Vec<Value>,
    /// Next position, `None` at the end.
    pub next: Option<Position>,
    /// Total, if the server says.
    pub total: Option<u64>,
}

/// A pagination style: how to ask for a position, and how to read a response.
pub trait PageStyle: Send + Sync + std::fmt::Debug {
    /// Query parameters for fetching `pos` (`None` = first page).
    fn query(&self, pos: Option<&Position>) -> Query;
    /// Extract items and the next position from a response body.
    fn parse(&self, body: Value, pos: Option<&Position>) -> Result<Parsed, String>;
}

/// Walk every page of `req` with `style`, starting at `start`.
pub fn walk(
    client: &KandjiClient,
    req: ApiRequest,
    style: Arc<dyn PageStyle>,
    start: Option<Position>,
) -> PageStream<Value> {
    let st = WalkState {
        client: client.clone(),
        max_pages: client.config().max_pages,
        endpoint: req.endpoint(),
        req,
        style,
        pos: start,
        done: false,
        index: 0,
        seen_pages: HashSet::new(),
        seen_positions: HashSet::new(),
    };
    Box::pin(futures::stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        let item = st.next_page().await;
        if item.is_err() {
            st.done = true;
        }
        Some((item, st))
    }))
}

/// Decode every item of every page as `M`.
pub fn typed<M: Model + Send + 'static>(
    stream: PageStream<Value>,
    endpoint: String,
) -> PageStream<M> {
    Box::pin(stream.map(move |page| {
        let page = page?;
        let mut items = Vec::with_capacity(page.items.len());
        for (i, v) in page.items.into_iter().enumerate() {
            items.push(M::from_value(v).map_err(|e| KandjiError::Decode {
                endpoint: endpoint.clone(),
                message: format!("page {} item {i}: {e}", page.index),
            })?);
        }
        Ok(Page {
            items,
            position: page.position,
            next: page.next,
            total: page.total,
            index: page.index,
        })
    }))
}

struct WalkState {
    client: KandjiClient,
    req: ApiRequest,
    endpoint: String,
    style: Arc<dyn PageStyle>,
    pos: Option<Position>,
    done: bool,
    index: u64,
    max_pages: u64,
    seen_pages: HashSet<u64>,
    seen_positions: HashSet<Option<Position>>,
}

impl WalkState {
    fn problem(&self, problem: PaginationProblem) -> KandjiError {
        tracing::error!(endpoint = %self.endpoint, %problem, position = ?self.pos, "pagination stopped");
        KandjiError::Pagination {
            endpoint: self.endpoint.clone(),
            problem,
        }
    }

    async fn next_page(&mut self) -> Result<Page<Value>, KandjiError> {
        if self.index >= self.max_pages {
            return Err(self.problem(PaginationProblem::TooManyPages {
                max_pages: self.max_pages,
            }));
        }
        let mut req = self.req.clone();
        req.query.extend(self.style.query(self.pos.as_ref()));
        let resp = match self.client.send(&req).await {
            Ok(r) => r,
            // DRF answers a page past the end (the set shrank since the walk, or a resumed
            // checkpoint) with 404 "Invalid page.": the walk is over, with an empty page.
            Err(e) if e.is_invalid_page() && matches!(self.pos, Some(Position::Page(_))) => {
                tracing::info!(endpoint = %self.endpoint, position = ?self.pos,
                    "page out of range (404 Invalid page.): end of the walk");
                self.done = true;
                let page = Page {
                    items: Vec::new(),
                    position: self.pos.take(),
                    next: None,
                    total: None,
                    index: self.index,
                };
                self.index += 1;
                return Ok(page);
            }
            Err(e) => return Err(e),
        };
        // `/devices` sends no count in the body; it has carried `X-Total-Count`.
        let header_total = resp
            .headers
            .get("x-total-count")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let parsed = self
            .style
            .parse(resp.body, self.pos.as_ref())
            .map_err(|message| KandjiError::Decode {
                endpoint: self.endpoint.clone(),
                message,
            })?;
        if !parsed.items.is_empty() && !self.seen_pages.insert(hash_items(&parsed.items)) {
            return Err(self.problem(PaginationProblem::RepeatedPage {
                page_index: self.index,
            }));
        }
        self.seen_positions.insert(self.pos.clone());
        if let Some(next) = &parsed.next
            && self.seen_positions.contains(&Some(next.clone()))
        {
            return Err(self.problem(PaginationProblem::StuckCursor {
                cursor: next.to_string(),
            }));
        }
        let page = Page {
            items: parsed.items,
            position: self.pos.take(),
            next: parsed.next.clone(),
            total: parsed.total.or(header_total),
            index: self.index,
        };
        tracing::debug!(endpoint = %self.endpoint, index = self.index, items = page.items.len(), next = ?page.next, "page");
        self.index += 1;
        self.pos = parsed.next;
        if self.pos.is_none() {
            self.done = true;
        }
        Ok(page)
    }
}

fn hash_items(items: &[Value]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    for i in items {
        i.to_string().hash(&mut h);
    }
    items.len().hash(&mut h);
    h.finish()
}

/// Take one parameter from a `next` value, which may be an absolute URL (on any host — the host
/// is ignored), a relative URL, a bare query string, or the raw cursor itself (`raw_ok`).
pub fn param_from_next(next: &str, names: &[&str], raw_ok: bool) -> Option<String> {
    let next = next.trim();
    if next.is_empty() || next.eq_ignore_ascii_case("null") || next == "<None>" {
        return None;
    }
    let looks_like_url =
        next.contains("://") || next.starts_with('/') || next.contains('?') || next.contains('=');
    if looks_like_url {
        let parsed = url::Url::parse(next).or_else(|_| {
            let rel = if next.contains('?') || next.starts_with('/') {
                next.to_string()
            } else {
                format!("?{next}")
            };
            url::Url::parse("http://placeholder.invalid/").and_then(|b| b.join(&rel))
        });
        if let Ok(u) = parsed {
            for name in names {
                if let Some((_, v)) = u.query_pairs().find(|(k, _)| k == name) {
                    let v = v.trim().to_string();
                    return (!v.is_empty()).then_some(v);
                }
            }
        }
        // A bare base64-ish cursor such as `abc==` is not a query string.
        let urlish = next.contains("://")
            || next.starts_with('/')
            || next.contains('?')
            || next.contains('&');
        return (raw_ok && !urlish).then(|| next.to_string());
    }
    raw_ok.then(|| next.to_string())
}

/// `body[key]` as a string if it is a non-empty string.
pub(crate) fn str_field<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Items under `key` of an object; a bare array is also accepted.
pub(crate) fn items_at(body: &Value, keys: &[&str]) -> Result<Vec<Value>, String> {
    match body {
        Value::Array(a) => Ok(a.clone()),
        Value::Object(o) => {
            for k in keys {
                match o.get(*k) {
                    Some(Value::Array(a)) => return Ok(a.clone()),
                    Some(Value::Null) => return Ok(Vec::new()),
                    Some(_) => return Err(format!("`{k}` is not an array")),
                    None => {}
                }
            }
            Err(format!("no `{}` array in the response", keys.join("`/`")))
        }
        other => Err(format!(
            "expected an object or array, got {}",
            crate::models::type_name(other)
        )),
    }
}

pub(crate) fn u64_field(body: &Value, keys: &[&str]) -> Option<u64> {
    keys.iter()
        .filter_map(|k| body.get(*k))
        .find_map(|v| crate::models::lenient::i64_from_value(v).and_then(|i| u64::try_from(i).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_param_forms() {
        let c = &["cursor"];
        assert_eq!(
            param_from_next("https://acme.kandji.io/api/v1/users?cursor=abc", c, true),
            Some("abc".into())
        );
        assert_eq!(
            param_from_next(
                "https://acme.api.kandji.io/api/v1/audit/events?limit=500&cursor=x%3D%3D",
                c,
                true
            ),
            Some("x==".into())
        );
        assert_eq!(
            param_from_next("/api/v1/users?cursor=q", c, true),
            Some("q".into())
        );
        assert_eq!(
            param_from_next("cursor=q&limit=1", c, true),
            Some("q".into())
        );
        assert_eq!(
            param_from_next("opaqueCursor", c, true),
            Some("opaqueCursor".into())
        );
        assert_eq!(param_from_next("opaqueCursor", c, false), None);
        assert_eq!(param_from_next("", c, true), None);
        assert_eq!(param_from_next("https://x/api?limit=1", c, true), None);
        assert_eq!(
            param_from_next("http://evil/api/v1/x?page=3", &["page"], false),
            Some("3".into())
        );
        assert_eq!(param_from_next("YWJj==", c, true), Some("YWJj==".into()));
    }
}
