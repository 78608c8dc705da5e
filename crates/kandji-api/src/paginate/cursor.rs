//! Cursor styles: `next` URL cursors (audit, users), the `after` cursor (vulnerability
//! detections) and the Prism `cursor`.

use serde_json::Value;

use super::{PageStyle, Parsed, Position, items_at, param_from_next, str_field, u64_field};
use crate::client::Query;

fn cursor_of(pos: Option<&Position>) -> Option<&str> {
    match pos {
        Some(Position::Cursor(c)) => Some(c),
        _ => None,
    }
}

/// Style E (audit, users): `{results, next, previous}` where `next` is a full URL with
/// `cursor=`, possibly on the web host. Only the cursor is taken.
#[derive(Debug, Clone)]
pub struct NextCursor {
    limit: Option<u32>,
}

impl NextCursor {
    /// With a `limit` parameter clamped to `1..=cap` (audit: 500).
    pub fn with_limit(limit: u32, cap: u32) -> Self {
        Self {
            limit: Some(limit.clamp(1, cap.max(1))),
        }
    }
    /// Without a `limit` parameter (users: fixed 300 per page).
    pub fn without_limit() -> Self {
        Self { limit: None }
    }
}

impl PageStyle for NextCursor {
    fn query(&self, pos: Option<&Position>) -> Query {
        let mut q = Vec::new();
        if let Some(l) = self.limit {
            q.push(("limit".into(), l.to_string()));
        }
        if let Some(c) = cursor_of(pos) {
            q.push(("cursor".into(), c.to_string()));
        }
        q
    }
    fn parse(&self, body: Value, _pos: Option<&Position>) -> Result<Parsed, String> {
        let items = items_at(&body, &["results"])?;
        let next = match str_field(&body, "next") {
            Some(n) if !items.is_empty() => Some(Position::Cursor(
                param_from_next(n, &["cursor"], true)
                    .ok_or_else(|| format!("`next` has no cursor: {n:.200}"))?,
            )),
            _ => None,
        };
        Ok(Parsed {
            items,
            next,
            total: u64_field(&body, &["count"]),
        })
    }
}

/// Vulnerability detections: `after` cursor and `size`; `next` may be a URL with `after=`
/// (or `cursor=`) or the raw cursor.
#[derive(Debug, Clone)]
pub struct AfterCursor {
    size: u32,
}

impl AfterCursor {
    /// `size` clamped to `1..=cap` (300).
    pub fn new(size: u32, cap: u32) -> Self {
        Self {
            size: size.clamp(1, cap.max(1)),
        }
    }
}

impl PageStyle for AfterCursor {
    fn query(&self, pos: Option<&Position>) -> Query {
        let mut q = vec![("size".into(), self.size.to_string())];
        if let Some(c) = cursor_of(pos) {
            q.push(("after".into(), c.to_string()));
        }
        q
    }
    fn parse(&self, body: Value, _pos: Option<&Position>) -> Result<Parsed, String> {
        let items = items_at(&body, &["results"])?;
        let next = match str_field(&body, "next") {
            Some(n) if !items.is_empty() => Some(Position::Cursor(
                param_from_next(n, &["after", "cursor"], true)
                    .ok_or_else(|| format!("`next` has no cursor: {n:.200}"))?,
            )),
            _ => None,
        };
        Ok(Parsed {
            items,
            next,
            total: u64_field(&body, &["count", "total"]),
        })
    }
}

/// Prism: `{offset, limit, total, data, cursor}`; loop until `data` is empty or `cursor` is
/// null/empty.
#[derive(Debug, Clone)]
pub struct PrismCursor {
    limit: u32,
}

impl PrismCursor {
    /// `limit` clamped to `1..=cap` (300). Always sent explicitly (examples echo 25).
    pub fn new(limit: u32, cap: u32) -> Self {
        Self {
            limit: limit.clamp(1, cap.max(1)),
        }
    }
}

impl PageStyle for PrismCursor {
    fn query(&self, pos: Option<&Position>) -> Query {
        let mut q = vec![("limit".into(), self.limit.to_string())];
        if let Some(c) = cursor_of(pos) {
            q.push(("cursor".into(), c.to_string()));
        }
        q
    }
    fn parse(&self, body: Value, _pos: Option<&Position>) -> Result<Parsed, String> {
        let items = items_at(&body, &["data", "results"])?;
        let next = match str_field(&body, "cursor") {
            Some(c) if !items.is_empty() => Some(Position::Cursor(
                param_from_next(c, &["cursor"], true).unwrap_or_else(|| c.to_string()),
            )),
            _ => None,
        };
        Ok(Parsed {
            items,
            next,
            total: u64_field(&body, &["total"]),
        })
    }
}
