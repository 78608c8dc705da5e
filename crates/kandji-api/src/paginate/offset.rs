//! limit/offset styles: bare array (`/devices`), DRF envelope (`count` or `total_count`),
//! nested envelope (`/devices/{id}/activity`, `/commands`).

use serde_json::Value;

use super::{PageStyle, Parsed, Position, items_at, param_from_next, str_field, u64_field};
use crate::client::Query;

fn offset_of(pos: Option<&Position>) -> u64 {
    match pos {
        Some(Position::Offset(o)) => *o,
        _ => 0,
    }
}

fn limit_offset(limit: u32, pos: Option<&Position>) -> Query {
    vec![
        ("limit".into(), limit.to_string()),
        ("offset".into(), offset_of(pos).to_string()),
    ]
}

/// Style A: `limit`/`offset` over a bare JSON array (`GET /devices`). The walk ends on an empty
/// page or a page shorter than `limit` — valid only because `limit` is clamped to the cap.
#[derive(Debug, Clone)]
pub struct OffsetArray {
    limit: u32,
}

impl OffsetArray {
    /// `limit` is clamped to `1..=cap` (the endpoint's documented maximum).
    pub fn new(limit: u32, cap: u32) -> Self {
        Self {
            limit: limit.clamp(1, cap.max(1)),
        }
    }
    /// The effective page size.
    pub fn limit(&self) -> u32 {
        self.limit
    }
}

impl PageStyle for OffsetArray {
    fn query(&self, pos: Option<&Position>) -> Query {
        limit_offset(self.limit, pos)
    }
    fn parse(&self, body: Value, pos: Option<&Position>) -> Result<Parsed, String> {
        let Value::Array(items) = body else {
            return Err(format!(
                "expected a bare JSON array, got {}",
                crate::models::type_name(&body)
            ));
        };
        let n = items.len() as u64;
        let next = (n >= u64::from(self.limit))
            .then(|| Position::Offset(offset_of(pos).saturating_add(n)));
        Ok(Parsed {
            items,
            next,
            total: None,
        })
    }
}

/// Style B: `limit`/`offset` with a DRF envelope `{count|total_count, next, previous, results}`.
/// Ends when `next` is null or the page is empty.
#[derive(Debug, Clone)]
pub struct DrfEnvelope {
    limit: u32,
}

impl DrfEnvelope {
    /// `limit` clamped to `1..=cap`.
    pub fn new(limit: u32, cap: u32) -> Self {
        Self {
            limit: limit.clamp(1, cap.max(1)),
        }
    }
}

pub(super) fn parse_envelope(body: &Value, pos: Option<&Position>) -> Result<Parsed, String> {
    let items = items_at(body, &["results"])?;
    let total = u64_field(body, &["count", "total_count", "total"]);
    let next = match str_field(body, "next") {
        Some(n) if !items.is_empty() => {
            let from_url =
                param_from_next(n, &["offset"], false).and_then(|o| o.parse::<u64>().ok());
            Some(Position::Offset(from_url.unwrap_or(
                offset_of(pos).saturating_add(items.len() as u64),
            )))
        }
        _ => None,
    };
    Ok(Parsed { items, next, total })
}

impl PageStyle for DrfEnvelope {
    fn query(&self, pos: Option<&Position>) -> Query {
        limit_offset(self.limit, pos)
    }
    fn parse(&self, body: Value, pos: Option<&Position>) -> Result<Parsed, String> {
        parse_envelope(&body, pos)
    }
}

/// Style C: `{device_id, <key>: {count, next, previous, results}}` (`activity`, `commands`).
#[derive(Debug, Clone)]
pub struct NestedEnvelope {
    key: &'static str,
    limit: u32,
}

impl NestedEnvelope {
    /// `key` is the wrapper field (`"activity"`, `"commands"`); `limit` clamped to `1..=cap`.
    pub fn new(key: &'static str, limit: u32, cap: u32) -> Self {
        Self {
            key,
            limit: limit.clamp(1, cap.max(1)),
        }
    }
}

impl PageStyle for NestedEnvelope {
    fn query(&self, pos: Option<&Position>) -> Query {
        limit_offset(self.limit, pos)
    }
    fn parse(&self, body: Value, pos: Option<&Position>) -> Result<Parsed, String> {
        match body.get(self.key) {
            Some(inner @ Value::Object(_)) => parse_envelope(inner, pos),
            Some(Value::Null) => Ok(Parsed {
                items: Vec::new(),
                next: None,
                total: Some(0),
            }),
            _ => Err(format!("no `{}` envelope in the response", self.key)),
        }
    }
}
