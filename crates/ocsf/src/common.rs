//! What every class shares: the base event, `metadata`, the device and user objects, times,
//! severities, and the `unmapped` bookkeeping.

use std::cell::RefCell;
use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::{Context, OCSF_VERSION};

/// FNV-1a 64 with a given offset basis (stable across builds).
fn fnv(seed: u64, parts: &[&[u8]]) -> u64 {
    let mut h = seed;
    for p in parts {
        for b in *p {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A stable 128-bit id, formatted as a UUID, of (source, table or stream, key, version hash).
/// The id of one version of an inventory row: [`record_uid`] of its content, and for a
/// removal a version of its own (it never shares the live row's id, which receivers that
/// dedupe on it would drop).
pub fn inventory_uid(
    source: &str,
    table: &str,
    key: &str,
    hash: i64,
    removed_at: Option<i64>,
) -> String {
    match removed_at {
        None => record_uid(source, table, key, hash),
        Some(at) => record_uid(source, table, &format!("{key}\u{1f}removed"), hash ^ at),
    }
}

pub fn record_uid(source: &str, kind: &str, key: &str, hash: i64) -> String {
    let hb = hash.to_le_bytes();
    let parts: [&[u8]; 4] = [source.as_bytes(), kind.as_bytes(), key.as_bytes(), &hb];
    let a = fnv(0xcbf2_9ce4_8422_2325, &parts);
    let b = fnv(0x6c62_272e_07bb_0142, &parts);
    let x = (u128::from(a) << 64) | u128::from(b);
    let s = format!("{x:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &s[0..8],
        &s[8..12],
        &s[12..16],
        &s[16..20],
        &s[20..32]
    )
}

/// OCSF `severity_id` from the collector's severity words.
pub fn severity_id(severity: Option<&str>) -> i64 {
    match severity.map(str::to_ascii_lowercase).as_deref() {
        Some("informational" | "info") => 1,
        Some("low") => 2,
        Some("medium" | "moderate") => 3,
        Some("high") => 4,
        Some("critical") => 5,
        Some("fatal") => 6,
        None | Some("") | Some("unknown") => 0,
        Some(_) => 99,
    }
}

/// Kandji times (`2025-01-01 11:02:19.59+00:00`, `2026-10-31T23:49:34Z`, `2023-12-13T04:24:19`,
/// `2025-01-01`) as ms since the epoch.
pub fn parse_time(s: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut t = s.replacen(' ', "T", 1);
    if t.len() == 10 {
        t.push_str("T00:00:00Z");
    }
    let tail = t.get(10..).unwrap_or_default();
    let has_zone = t.ends_with('Z') || t.ends_with('z') || tail.contains('+') || tail.contains('-');
    if !has_zone {
        t.push('Z');
    }
    time::OffsetDateTime::parse(&t, &Rfc3339)
        .ok()
        .map(|d| (d.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// A raw object whose fields are taken one by one; what is left over is `unmapped`.
pub struct Raw<'a> {
    v: &'a Value,
    used: RefCell<BTreeSet<&'a str>>,
}

impl<'a> Raw<'a> {
    pub fn new(v: &'a Value) -> Raw<'a> {
        Raw {
            v,
            used: RefCell::new(BTreeSet::new()),
        }
    }

    /// The field's value, marking it mapped. Empty strings count as absent.
    pub fn get(&self, k: &'a str) -> Option<&'a Value> {
        let v = self.v.get(k)?;
        self.used.borrow_mut().insert(k);
        match v {
            Value::Null => None,
            Value::String(s) if s.is_empty() => None,
            _ => Some(v),
        }
    }

    /// The field as a string (numbers and booleans are formatted).
    pub fn s(&self, k: &'a str) -> Option<String> {
        self.get(k).and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        })
    }

    /// A string or boolean field as a boolean ("true"/"false" are common in Prism rows).
    pub fn b(&self, k: &'a str) -> Option<bool> {
        self.get(k).and_then(|v| match v {
            Value::Bool(b) => Some(*b),
            Value::String(s) => match s.to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" | "on" | "enabled" => Some(true),
                "false" | "no" | "0" | "off" | "disabled" => Some(false),
                _ => None,
            },
            Value::Number(n) => n.as_i64().map(|i| i != 0),
            _ => None,
        })
    }

    pub fn f(&self, k: &'a str) -> Option<f64> {
        self.get(k).and_then(|v| match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        })
    }

    /// A time field as ms since the epoch.
    pub fn t(&self, k: &'a str) -> Option<i64> {
        self.get(k).and_then(|v| match v {
            Value::String(s) => parse_time(s),
            Value::Number(n) => n.as_i64(),
            _ => None,
        })
    }

    /// Marks fields mapped without reading them (duplicates of mapped context).
    pub fn skip(&self, keys: &[&'a str]) {
        let mut used = self.used.borrow_mut();
        for k in keys {
            used.insert(k);
        }
    }

    /// Everything not taken, or `None` if nothing is left.
    pub fn unmapped(&self) -> Option<Value> {
        let obj = self.v.as_object()?;
        let used = self.used.borrow();
        let rest: Map<String, Value> = obj
            .iter()
            .filter(|(k, v)| {
                !used.contains(k.as_str())
                    && !v.is_null()
                    && !matches!(v, Value::String(s) if s.is_empty())
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        (!rest.is_empty()).then_some(Value::Object(rest))
    }
}

/// The base event: the required attributes every class has.
pub struct Base<'a> {
    pub class_uid: i64,
    pub class_name: &'static str,
    pub category_uid: i64,
    pub category_name: &'static str,
    pub activity_id: i64,
    pub activity_name: &'static str,
    pub severity_id: i64,
    pub time: i64,
    pub log_name: &'a str,
    pub uid: &'a str,
    pub message: Option<String>,
}

pub fn severity_name(id: i64) -> &'static str {
    match id {
        0 => "Unknown",
        1 => "Informational",
        2 => "Low",
        3 => "Medium",
        4 => "High",
        5 => "Critical",
        6 => "Fatal",
        _ => "Other",
    }
}

impl Base<'_> {
    /// The event with its base attributes; the caller adds the class's own.
    pub fn build(&self, ctx: &Context<'_>) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("class_uid".into(), json!(self.class_uid));
        m.insert("class_name".into(), json!(self.class_name));
        m.insert("category_uid".into(), json!(self.category_uid));
        m.insert("category_name".into(), json!(self.category_name));
        m.insert("activity_id".into(), json!(self.activity_id));
        m.insert("activity_name".into(), json!(self.activity_name));
        m.insert(
            "type_uid".into(),
            json!(self.class_uid * 100 + self.activity_id),
        );
        m.insert(
            "type_name".into(),
            json!(format!("{}: {}", self.class_name, self.activity_name)),
        );
        m.insert("severity_id".into(), json!(self.severity_id));
        m.insert("severity".into(), json!(severity_name(self.severity_id)));
        m.insert("time".into(), json!(self.time));
        if let Some(msg) = &self.message {
            m.insert("message".into(), json!(msg));
        }
        m.insert(
            "metadata".into(),
            json!({
                "version": OCSF_VERSION,
                "product": {
                    "name": "Kandji",
                    "vendor_name": "Kandji (Iru)",
                    "feature": {"name": "kandji-collector", "version": ctx.collector_version},
                },
                "tenant_uid": ctx.tenant_uid,
                "uid": self.uid,
                "log_name": self.log_name,
                "log_provider": ctx.source,
            }),
        );
        m
    }
}

/// Inserts `unmapped` (if anything is left) and finishes the event.
pub fn finish(mut m: Map<String, Value>, unmapped: Option<Value>) -> Value {
    if let Some(u) = unmapped {
        m.insert("unmapped".into(), u);
    }
    Value::Object(m)
}

/// OCSF `os.type_id`: 100 Windows, 201 Android, 300 macOS, 301 iOS, 302 iPadOS, 0 unknown,
/// 99 other.
pub fn os(platform: Option<&str>, version: Option<String>, build: Option<String>) -> Value {
    let (name, type_id) = match platform.map(str::to_ascii_lowercase).as_deref() {
        Some("mac" | "macos") => ("macOS", 300),
        Some("iphone" | "ios") => ("iOS", 301),
        Some("ipad" | "ipados") => ("iPadOS", 302),
        Some("appletv" | "tvos") => ("tvOS", 99),
        Some("vision" | "visionos") => ("visionOS", 99),
        Some("android") => ("Android", 201),
        Some("windows") => ("Windows", 100),
        Some(_) => ("Other", 99),
        None => ("Unknown", 0),
    };
    let mut o = json!({"name": name, "type_id": type_id});
    if let Some(v) = version {
        o["version"] = json!(v);
    }
    if let Some(b) = build {
        o["build"] = json!(b);
    }
    o
}

/// OCSF `device.type_id` from a Kandji platform and model: 2 Desktop, 3 Laptop, 4 Tablet,
/// 5 Mobile, 0 unknown, 99 other.
pub fn device_type(platform: Option<&str>, model: Option<&str>) -> (i64, &'static str) {
    let model = model.unwrap_or_default().to_ascii_lowercase();
    match platform.map(str::to_ascii_lowercase).as_deref() {
        Some("mac" | "macos") if model.contains("book") => (3, "Laptop"),
        Some("mac" | "macos") => (2, "Desktop"),
        Some("ipad" | "ipados") => (4, "Tablet"),
        Some("iphone" | "ios") => (5, "Mobile"),
        Some("android") if model.contains("tab") => (4, "Tablet"),
        Some("android") => (5, "Mobile"),
        Some("windows")
            if [
                "laptop",
                "book",
                "thinkpad",
                "latitude",
                "xps",
                "elitebook",
                "surface pro",
            ]
            .iter()
            .any(|k| model.contains(k)) =>
        {
            (3, "Laptop")
        }
        Some("windows") => (2, "Desktop"),
        Some(_) => (99, "Other"),
        None => (0, "Unknown"),
    }
}

/// A minimal device object for records that only know a device id (and maybe a name).
pub fn device_ref(uid: Option<&str>, name: Option<String>) -> Option<Value> {
    if uid.is_none() && name.is_none() {
        return None;
    }
    let mut d = json!({"type_id": 0, "type": "Unknown"});
    if let Some(u) = uid {
        d["uid"] = json!(u);
    }
    if let Some(n) = name {
        d["name"] = json!(n);
    }
    Some(d)
}

/// A placeholder device for class-required `device` when the record names none.
pub fn unknown_device() -> Value {
    json!({"type_id": 0, "type": "Unknown", "name": "unknown"})
}
