//! Page-number styles: `page` with a DRF envelope (ADE devices, custom profiles/scripts) and
//! `page`/`size` with `{total, page, size, results}` (vulnerabilities).

use serde_json::Value;

use super::{PageStyle, Parsed, Position, items_at, param_from_next, str_field, u64_field};
use crate::client::Query;

fn page_of(pos: Option<&Position>) -> u64 {
    match pos {
        Some(Position::Page(p)) => (*p).max(1),
        _ => 1,
    }
}

/// Style D: 1-based `page` with `{count, next, previous, results}`; ends when `next` is null
/// or the page is empty. The next page number is taken from the `next` URL when present.
#[derive(Debug, Clone, Default)]
pub struct PageNumber;

impl PageStyle for PageNumber {
    fn query(&self, pos: Option<&Position>) -> Query {
        vec![("page".into(), page_of(pos).to_string())]
    }
    fn parse(&self, body: Value, pos: Option<&Position>) -> Result<Parsed, String> {
        let items = items_at(&body, &["results"])?;
        let total = u64_field(&body, &["count", "total"]);
        let cur = page_of(pos);
        let next = match str_field(&body, "next") {
            Some(n) if !items.is_empty() => {
                let p = param_from_next(n, &["page"], false).and_then(|p| p.parse::<u64>().ok());
                Some(Position::Page(p.unwrap_or(cur.saturating_add(1))))
            }
            _ => None,
        };
        Ok(Parsed { items, next, total })
    }
}

/// Style D': `page` (≥ 1) and `size` with `{total, page, size, results}`; ends when
/// `page * size >= total`, on an empty page, or (no total) on a short page.
#[derive(Debug, Clone)]
pub struct PageSize {
    size: u32,
}

impl PageSize {
    /// `size` clamped to `1..=cap` (50 for vulnerabilities).
    pub fn new(size: u32, cap: u32) -> Self {
        Self {
            size: size.clamp(1, cap.max(1)),
        }
    }
}

impl PageStyle for PageSize {
    fn query(&self, pos: Option<&Position>) -> Query {
        vec![
            ("page".into(), page_of(pos).to_string()),
            ("size".into(), self.size.to_string()),
        ]
    }
    fn parse(&self, body: Value, pos: Option<&Position>) -> Result<Parsed, String> {
        let items = items_at(&body, &["results"])?;
        let total = u64_field(&body, &["total", "count"]);
        let cur = page_of(pos);
        let size = u64_field(&body, &["size"])
            .filter(|s| *s > 0)
            .unwrap_or(u64::from(self.size));
        let more = match total {
            _ if items.is_empty() => false,
            Some(t) => cur.saturating_mul(size) < t,
            None => items.len() as u64 >= u64::from(self.size),
        };
        Ok(Parsed {
            items,
            next: more.then_some(Position::Page(cur.saturating_add(1))),
            total,
        })
    }
}
