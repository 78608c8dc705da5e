//! The normalized application inventory (migration 4): devices, titles, versions, installs.
//!
//! A Prism `apps` row is ~1.6 KB of JSON, and most of it is the same for every install of
//! the same app version (bundle id, name, signature, copyright…) or for every app of the
//! same device (device name, serial, user, blueprint, tags). The store keeps each distinct
//! version once (`app_versions.fields`, a JSON object whose exact text is its identity), the
//! device fields once per device (`app_devices.ctx`), and per install a narrow row: device,
//! title, version, the three timestamps in microseconds, and `extra` for anything that does
//! not fit (times in another format, device fields that differ from the device's). The full
//! Prism-shaped record is rebuilt by [`rebuild`], byte for byte: keys sorted, as
//! `serde_json` writes a map.
//!
//! Rows come two ways: from CSV records through [`AppRowMapper`] (in the CSV parser's thread,
//! no intermediate map; each distinct version's JSON is built once per process), and from
//! JSON (Prism cursor pages, and [`InvRow`](super::InvRow)s of `Table::Apps`) through
//! [`AppInstall::from_json`]. Both produce the same [`AppInstall`] for the same content.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::{OptionalExtension, Transaction, params};
use serde_json::{Map, Value};

use super::StoreError;
use super::tables::{self, Table};
use super::write::{Batch, BatchOutcome, change_event, insert_event, outbox_push};

/// The Prism columns that describe the device, not the app (the same on every app row of a
/// device). Sorted.
pub const CTX_FIELDS: [&str; 14] = [
    "asset_tag",
    "blueprint_id",
    "blueprint_name",
    "count",
    "device__family",
    "device__name",
    "device__user_email",
    "device__user_id",
    "device__user_name",
    "device_id",
    "last_collected_at",
    "model_id",
    "serial_number",
    "tags",
];

/// The install's own timestamps, in the order of the columns `created_us, changed_us,
/// updated_us`.
pub const TIME_FIELDS: [&str; 3] = ["created_at", "last_changed_at", "updated_at"];

/// One distinct version of an app: its device-independent fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppVersion {
    /// The fields as a JSON object with sorted keys; its text is the version's identity.
    pub fields: Arc<str>,
    /// [`stable_hash`](super::stable_hash) of `fields`.
    pub fields_hash: i64,
    pub name: Option<String>,
    pub bundle_id: Option<String>,
    pub version: Option<String>,
    pub path: Option<String>,
}

/// The device fields of a device's app rows (a JSON object with sorted keys).
pub type DeviceCtx = Arc<str>;

/// One install, ready for the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppInstall {
    pub device_id: String,
    /// The key's app part: bundle id, else path, else name.
    pub ident: String,
    pub version: Arc<AppVersion>,
    pub ctx: DeviceCtx,
    pub created_us: Option<i64>,
    pub changed_us: Option<i64>,
    pub updated_us: Option<i64>,
    /// The format of the times in columns: 0 `YYYY-MM-DD HH:MM:SS.ffffff+00:00`, 1 with `T`;
    /// plus 2 when `updated_at` equals `last_changed_at`, plus 4 when `created_at` does (that
    /// time is then `None`: the usual install stores one time, not three).
    pub tf: Option<i64>,
    /// What the columns cannot hold, as a JSON object: `__ctx` (device fields that differ
    /// from the device's) and times in another form, in that key order.
    pub extra: Option<String>,
}

impl AppInstall {
    /// The row's key, as `apps` rows had it: `device|ident`.
    pub fn key(&self) -> String {
        format!("{}|{}", self.device_id, self.ident)
    }

    /// A hash of this version of the install (the record's id follows it).
    pub fn hash(&self) -> i64 {
        install_hash(
            self.version.fields_hash,
            &self.ident,
            [self.created_us, self.changed_us, self.updated_us, self.tf],
            self.extra.as_deref(),
        )
    }

    /// The typed values `tables::created/changed/removed` read: name, bundle_id, version, path.
    pub fn typed(&self) -> Vec<rusqlite::types::Value> {
        typed_of(&self.version)
    }

    /// An install from a JSON row (Prism cursor page, or a stored raw row).
    pub fn from_json(row: &Map<String, Value>) -> Option<AppInstall> {
        let s = |k: &str| match row.get(k) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let device_id = s("device_id")?;
        let ident = s("bundle_id")
            .or_else(|| s("path"))
            .or_else(|| s("name"))
            .or_else(|| s("app_name"))?;
        let mut fields = Map::new();
        let mut ctx = Map::new();
        for (k, v) in row {
            if CTX_FIELDS.contains(&k.as_str()) {
                ctx.insert(k.clone(), v.clone());
            } else if !TIME_FIELDS.contains(&k.as_str()) {
                fields.insert(k.clone(), v.clone());
            }
        }
        let fields_text = Value::Object(fields).to_string();
        let version = Arc::new(version_of(fields_text, &s));
        let times: [Option<TimeCell>; 3] = TIME_FIELDS.map(|k| {
            row.get(k).map(|v| match v {
                Value::String(t) => TimeCell::Text(t.clone()),
                other => TimeCell::Json(other.to_string()),
            })
        });
        let mut inst = AppInstall {
            device_id,
            ident,
            version,
            ctx: Arc::from(Value::Object(ctx).to_string()),
            created_us: None,
            changed_us: None,
            updated_us: None,
            tf: None,
            extra: None,
        };
        inst.set_times(times, None);
        Some(inst)
    }

    /// Puts the three times in columns where they are canonical, the rest in `extra` (with
    /// `ctx_override`, device fields that differ from the device's).
    fn set_times(&mut self, times: [Option<TimeCell>; 3], ctx_override: Option<&str>) {
        let parsed: [Option<(i64, i64)>; 3] = times.each_ref().map(|t| match t {
            Some(TimeCell::Text(s)) => parse_canonical(s),
            _ => None,
        });
        // One format per row: last_changed_at's, else created_at's, else updated_at's.
        let tf = parsed[1].or(parsed[0]).or(parsed[2]).map(|(_, f)| f);
        let col = |i: usize| parsed[i].filter(|(_, f)| Some(*f) == tf).map(|(us, _)| us);
        self.created_us = col(0);
        self.changed_us = col(1);
        self.updated_us = col(2);
        self.tf = tf;
        let in_column = [self.created_us, self.changed_us, self.updated_us].map(|c| c.is_some());
        let mut extra = String::new();
        let mut push = |k: &str, json: &str| {
            extra.push(if extra.is_empty() { '{' } else { ',' });
            extra.push('"');
            extra.push_str(k);
            extra.push_str("\":");
            extra.push_str(json);
        };
        if let Some(c) = ctx_override {
            push("__ctx", c);
        }
        for (i, t) in times.iter().enumerate() {
            match t {
                Some(_) if in_column[i] => {}
                Some(TimeCell::Text(s)) => push(TIME_FIELDS[i], &json_string(s)),
                Some(TimeCell::Json(j)) => push(TIME_FIELDS[i], j),
                None => {}
            }
        }
        // A time equal to last_changed_at is not stored twice: a bit of `tf` says so.
        if self.changed_us.is_some() {
            if self.created_us == self.changed_us {
                self.created_us = None;
                self.tf = self.tf.map(|f| f | 4);
            }
            if self.updated_us == self.changed_us {
                self.updated_us = None;
                self.tf = self.tf.map(|f| f | 2);
            }
        }
        self.extra = (!extra.is_empty()).then(|| {
            extra.push('}');
            extra
        });
    }
}

/// The hash of an install's version (its record id follows it), from what the store keeps
/// of it, so it need not be stored: the version's fields hash, the title, the time columns
/// and `extra`.
pub fn install_hash(
    fields_hash: i64,
    ident: &str,
    times: [Option<i64>; 4],
    extra: Option<&str>,
) -> i64 {
    let mut buf = Vec::with_capacity(ident.len() + 96);
    buf.extend_from_slice(&fields_hash.to_le_bytes());
    buf.push(0x1f);
    buf.extend_from_slice(ident.as_bytes());
    for t in times {
        buf.push(0x1f);
        if let Some(t) = t {
            buf.extend_from_slice(&t.to_le_bytes());
        }
    }
    buf.push(0x1f);
    if let Some(e) = extra {
        buf.extend_from_slice(e.as_bytes());
    }
    super::stable_hash(&buf)
}

/// A time value as a row carries it.
enum TimeCell {
    /// A JSON string (CSV cells are always strings).
    Text(String),
    /// Any other JSON value, as JSON text.
    Json(String),
}

fn typed_of(v: &AppVersion) -> Vec<rusqlite::types::Value> {
    let t = |s: &Option<String>| {
        s.clone()
            .map_or(rusqlite::types::Value::Null, rusqlite::types::Value::Text)
    };
    vec![t(&v.name), t(&v.bundle_id), t(&v.version), t(&v.path)]
}

/// The typed columns of a version, read from its fields (the rule `apps` rows had).
fn version_of(fields: String, s: &dyn Fn(&str) -> Option<String>) -> AppVersion {
    AppVersion {
        fields_hash: super::stable_hash(fields.as_bytes()),
        fields: Arc::from(fields),
        name: s("name").or_else(|| s("app_name")),
        bundle_id: s("bundle_id"),
        // `version` is the one people read ("7.9.11"); Prism's `short_version` is the build
        // number ("70911000", the spec's example), so it is only the fallback.
        version: s("version").or_else(|| s("short_version")),
        path: s("path"),
    }
}

/// A JSON string literal, as serde_json writes it.
fn json_string(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// `YYYY-MM-DD HH:MM:SS.ffffff+00:00` (format 0) or with `T` (format 1), naming a real
/// instant: its microseconds since the epoch and the format.
pub fn parse_canonical(s: &str) -> Option<(i64, i64)> {
    let b = s.as_bytes();
    if b.len() != 32 || &b[26..] != b"+00:00" {
        return None;
    }
    let tf = match b[10] {
        b' ' => 0,
        b'T' => 1,
        _ => return None,
    };
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let mut n = 0i64;
        for &c in &b[r] {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n * 10 + i64::from(c - b'0');
        }
        Some(n)
    };
    if b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' || b[19] != b'.' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec, us) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..26)?);
    let month = time::Month::try_from(u8::try_from(mo).ok()?).ok()?;
    let date = time::Date::from_calendar_date(i32::try_from(y).ok()?, month, u8::try_from(d).ok()?)
        .ok()?;
    if h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let days = i64::from(date.to_julian_day()) - 2_440_588;
    Some((
        ((days * 86_400 + h * 3600 + mi * 60 + sec) * 1_000_000) + us,
        tf,
    ))
}

/// The inverse of [`parse_canonical`].
pub fn render_canonical(us: i64, tf: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let frac = us.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let date = time::Date::from_julian_day((days + 2_440_588) as i32).unwrap_or(time::Date::MIN);
    format!(
        "{:04}-{:02}-{:02}{}{:02}:{:02}:{:02}.{:06}+00:00",
        date.year(),
        u8::from(date.month()),
        date.day(),
        if tf == 1 { 'T' } else { ' ' },
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        frac
    )
}

/// Rebuilds the Prism-shaped record of an install (keys sorted).
pub fn rebuild(
    ctx: &str,
    fields: &str,
    times: [Option<i64>; 3],
    tf: Option<i64>,
    extra: Option<&str>,
) -> Value {
    let extra: Option<Map<String, Value>> = extra.and_then(|e| serde_json::from_str(e).ok());
    let ctx_text = extra
        .as_ref()
        .and_then(|e| e.get("__ctx"))
        .map(|c| c.to_string());
    let mut m: Map<String, Value> =
        serde_json::from_str(ctx_text.as_deref().unwrap_or(ctx)).unwrap_or_default();
    if let Ok(Value::Object(f)) = serde_json::from_str::<Value>(fields) {
        m.extend(f);
    }
    if let Some(tf) = tf {
        let mut times = times;
        if tf & 2 != 0 {
            times[2] = times[1];
        }
        if tf & 4 != 0 {
            times[0] = times[1];
        }
        for (i, t) in times.iter().enumerate() {
            if let Some(us) = t {
                m.insert(
                    TIME_FIELDS[i].to_string(),
                    Value::String(render_canonical(*us, tf & 1)),
                );
            }
        }
    }
    if let Some(e) = extra {
        for (k, v) in e {
            if k != "__ctx" {
                m.insert(k, v);
            }
        }
    }
    Value::Object(m)
}

/// Maps Prism `apps` CSV records straight to [`AppInstall`]s, in the parser's thread. Each
/// distinct version's JSON text is built once and shared; a record costs a few slices and a
/// hash lookup.
pub struct AppRowMapper {
    device_id: Option<usize>,
    ident: [Option<usize>; 4],
    /// Version columns, sorted by name: (name as a JSON key, index).
    fields: Vec<(String, usize)>,
    /// Device columns, sorted by name.
    ctx: Vec<(String, usize)>,
    times: [Option<usize>; 3],
    /// Typed columns: name, app_name, bundle_id, short_version, version, path.
    typed: [Option<usize>; 6],
    versions: HashMap<Box<[u8]>, Arc<AppVersion>, foldhash::fast::RandomState>,
    last_ctx: Option<(Vec<u8>, DeviceCtx)>,
    key: Vec<u8>,
}

impl Default for AppRowMapper {
    fn default() -> Self {
        AppRowMapper {
            device_id: None,
            ident: [None; 4],
            fields: Vec::new(),
            ctx: Vec::new(),
            times: [None; 3],
            typed: [None; 6],
            versions: HashMap::default(),
            last_ctx: None,
            key: Vec::with_capacity(2048),
        }
    }
}

/// How many distinct versions a mapper remembers (a fleet has thousands; past this it starts
/// over rather than grow).
const VERSION_CACHE: usize = 200_000;

impl kandji_api::export::CsvMapper for AppRowMapper {
    type Row = AppInstall;

    fn headers(&mut self, h: &kandji_api::export::CsvHeaders) {
        // A later column of the same name wins, as it would in a map.
        let mut by_name: std::collections::BTreeMap<&str, usize> = Default::default();
        for (i, n) in h.names.iter().enumerate() {
            by_name.insert(n.as_str(), i);
        }
        self.device_id = h.index("device_id");
        self.ident = ["bundle_id", "path", "name", "app_name"].map(|k| h.index(k));
        self.times = TIME_FIELDS.map(|k| by_name.get(k).copied());
        self.typed = [
            "name",
            "app_name",
            "bundle_id",
            "short_version",
            "version",
            "path",
        ]
        .map(|k| by_name.get(k).copied());
        self.fields.clear();
        self.ctx.clear();
        for (name, i) in by_name {
            let key = json_string(name);
            if CTX_FIELDS.contains(&name) {
                self.ctx.push((key, i));
            } else if !TIME_FIELDS.contains(&name) {
                self.fields.push((key, i));
            }
        }
    }

    fn map(&mut self, r: &csv::StringRecord) -> Option<AppInstall> {
        let get = |i: Option<usize>| i.and_then(|i| r.get(i)).filter(|s| !s.is_empty());
        let device_id = get(self.device_id)?.to_string();
        let ident = self.ident.iter().find_map(|i| get(*i))?.to_string();
        // The version: its columns' values are its identity.
        self.key.clear();
        for (_, i) in &self.fields {
            self.key
                .extend_from_slice(r.get(*i).unwrap_or_default().as_bytes());
            self.key.push(0x1f);
        }
        let version = match self.versions.get(self.key.as_slice()) {
            Some(v) => v.clone(),
            None => {
                let mut text = String::with_capacity(self.key.len() * 2);
                text.push('{');
                for (n, (k, i)) in self.fields.iter().enumerate() {
                    if n > 0 {
                        text.push(',');
                    }
                    text.push_str(k);
                    text.push(':');
                    text.push_str(&json_string(r.get(*i).unwrap_or_default()));
                }
                text.push('}');
                let typed = self.typed;
                let s = |k: &str| {
                    let idx = match k {
                        "name" => typed[0],
                        "app_name" => typed[1],
                        "bundle_id" => typed[2],
                        "short_version" => typed[3],
                        "version" => typed[4],
                        _ => typed[5],
                    };
                    idx.and_then(|i| r.get(i))
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                };
                let v = Arc::new(version_of(text, &s));
                if self.versions.len() >= VERSION_CACHE {
                    self.versions.clear();
                }
                self.versions
                    .insert(self.key.clone().into_boxed_slice(), v.clone());
                v
            }
        };
        // The device fields: usually the same as the previous record's.
        self.key.clear();
        for (_, i) in &self.ctx {
            self.key
                .extend_from_slice(r.get(*i).unwrap_or_default().as_bytes());
            self.key.push(0x1f);
        }
        let ctx = match &self.last_ctx {
            Some((k, c)) if *k == self.key => c.clone(),
            _ => {
                let mut text = String::from("{");
                for (n, (k, i)) in self.ctx.iter().enumerate() {
                    if n > 0 {
                        text.push(',');
                    }
                    text.push_str(k);
                    text.push(':');
                    text.push_str(&json_string(r.get(*i).unwrap_or_default()));
                }
                text.push('}');
                let c: DeviceCtx = Arc::from(text);
                self.last_ctx = Some((self.key.clone(), c.clone()));
                c
            }
        };
        let times = self.times.map(|i| {
            i.and_then(|i| r.get(i))
                .map(|s| TimeCell::Text(s.to_string()))
        });
        let mut inst = AppInstall {
            device_id,
            ident,
            version,
            ctx,
            created_us: None,
            changed_us: None,
            updated_us: None,
            tf: None,
            extra: None,
        };
        inst.set_times(times, None);
        Some(inst)
    }
}

/// The writer's caches of ids (titles, versions, devices). Only a cache: cleared whenever a
/// transaction rolls back, refilled from the tables.
#[derive(Default)]
pub(crate) struct Caches {
    titles: HashMap<String, i64, foldhash::fast::RandomState>,
    /// fields_hash → the versions with that hash (one, but for a collision).
    versions: HashMap<i64, Vec<(Arc<str>, i64)>, foldhash::fast::RandomState>,
    /// (source, device) → (id, ctx).
    devices: HashMap<(String, String), (i64, DeviceCtx), foldhash::fast::RandomState>,
    last_device: Option<(String, String, i64, DeviceCtx)>,
}

impl Caches {
    pub(crate) fn rolled_back(&mut self) {
        *self = Caches::default();
    }
}

const MAX_CACHED: usize = 500_000;

/// Counter changes a batch makes, applied once per batch.
#[derive(Default)]
struct Counts {
    devices: HashMap<i64, i64>,
    versions: HashMap<i64, i64>,
}

impl Counts {
    fn live(&mut self, dev: i64, ver: i64, d: i64) {
        *self.devices.entry(dev).or_default() += d;
        *self.versions.entry(ver).or_default() += d;
    }

    fn apply(self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        let mut dev = tx.prepare_cached(
            "UPDATE app_devices SET live_apps = live_apps + ?2 WHERE id = ?1
             RETURNING source, device_id, live_apps",
        )?;
        let mut mirror = tx.prepare_cached(
            "UPDATE devices SET app_count = ?3 WHERE source = ?1 AND key = ?2 AND app_count != ?3",
        )?;
        for (id, d) in self.devices {
            if d == 0 {
                continue;
            }
            let row: Option<(String, String, i64)> = dev
                .query_row(params![id, d], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            if let Some((source, device, n)) = row {
                mirror.execute(params![source, device, n])?;
            }
        }
        let mut ver =
            tx.prepare_cached("UPDATE app_versions SET installs = installs + ?2 WHERE id = ?1")?;
        for (id, d) in self.versions {
            if d != 0 {
                ver.execute(params![id, d])?;
            }
        }
        Ok(())
    }
}

/// The ids a batch resolves, in its transaction.
struct Ids<'a, 'c> {
    tx: &'a Transaction<'c>,
    caches: &'a mut Caches,
    source: &'a str,
}

impl Ids<'_, '_> {
    fn title(&mut self, ident: &str) -> Result<i64, StoreError> {
        if let Some(id) = self.caches.titles.get(ident) {
            return Ok(*id);
        }
        let id: i64 = self
            .tx
            .prepare_cached(
                "INSERT INTO app_titles (ident) VALUES (?1)
                 ON CONFLICT (ident) DO UPDATE SET ident = excluded.ident RETURNING id",
            )?
            .query_row([ident], |r| r.get(0))?;
        if self.caches.titles.len() > MAX_CACHED {
            self.caches.titles.clear();
        }
        self.caches.titles.insert(ident.to_string(), id);
        Ok(id)
    }

    fn version(&mut self, title: i64, v: &AppVersion) -> Result<i64, StoreError> {
        if let Some(bucket) = self.caches.versions.get(&v.fields_hash)
            && let Some((_, id)) = bucket
                .iter()
                .find(|(f, _)| Arc::ptr_eq(f, &v.fields) || **f == *v.fields)
        {
            return Ok(*id);
        }
        let found: Option<i64> = self
            .tx
            .prepare_cached("SELECT id FROM app_versions WHERE fields = ?1")?
            .query_row([&*v.fields], |r| r.get(0))
            .optional()?;
        let id = match found {
            Some(id) => id,
            None => self
                .tx
                .prepare_cached(
                    "INSERT INTO app_versions (title, name, bundle_id, version, path, fields)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
                )?
                .query_row(
                    params![title, v.name, v.bundle_id, v.version, v.path, &*v.fields],
                    |r| r.get(0),
                )?,
        };
        if self.caches.versions.len() > MAX_CACHED {
            self.caches.versions.clear();
        }
        self.caches
            .versions
            .entry(v.fields_hash)
            .or_default()
            .push((v.fields.clone(), id));
        Ok(id)
    }

    /// The device's id; stores `ctx` as the device's fields when they changed.
    fn device(&mut self, device_id: &str, ctx: &DeviceCtx) -> Result<i64, StoreError> {
        // Rows come grouped by device: the last one is the usual answer.
        if let Some((s, d, id, c)) = &self.caches.last_device
            && s == self.source
            && d == device_id
            && (Arc::ptr_eq(c, ctx) || c == ctx)
        {
            return Ok(*id);
        }
        let k = (self.source.to_string(), device_id.to_string());
        if let Some((id, c)) = self.caches.devices.get(&k)
            && (Arc::ptr_eq(c, ctx) || c == ctx)
        {
            self.caches.last_device = Some((k.0, k.1, *id, c.clone()));
            return Ok(*id);
        }
        let id: i64 = self
            .tx
            .prepare_cached(
                "INSERT INTO app_devices (source, device_id, ctx, name)
                 VALUES (?1, ?2, ?3, ?3 ->> '$.device__name')
                 ON CONFLICT (source, device_id) DO UPDATE SET ctx = excluded.ctx,
                   name = excluded.name
                 RETURNING id",
            )?
            .query_row(params![self.source, device_id, &**ctx], |r| r.get(0))?;
        if self.caches.devices.len() > MAX_CACHED {
            self.caches.devices.clear();
        }
        self.caches.last_device = Some((k.0.clone(), k.1.clone(), id, ctx.clone()));
        self.caches.devices.insert(k, (id, ctx.clone()));
        Ok(id)
    }
}

/// An install with its ids resolved.
struct Resolved<'a> {
    inst: &'a AppInstall,
    dev: i64,
    title: i64,
    ver: i64,
    hash: i64,
}

/// What is stored of an install (to compare and to name events).
struct Stored {
    ver: i64,
    created_us: Option<i64>,
    changed_us: Option<i64>,
    updated_us: Option<i64>,
    tf: Option<i64>,
    extra: Option<String>,
    removed_at: Option<i64>,
    name: Option<String>,
    bundle_id: Option<String>,
    version: Option<String>,
    path: Option<String>,
}

impl Stored {
    fn same(&self, r: &Resolved<'_>) -> bool {
        self.ver == r.ver
            && self.created_us == r.inst.created_us
            && self.changed_us == r.inst.changed_us
            && self.updated_us == r.inst.updated_us
            && self.tf == r.inst.tf
            && self.extra == r.inst.extra
    }
    fn typed(&self) -> Vec<rusqlite::types::Value> {
        typed_of(&AppVersion {
            fields: Arc::from(""),
            fields_hash: 0,
            name: self.name.clone(),
            bundle_id: self.bundle_id.clone(),
            version: self.version.clone(),
            path: self.path.clone(),
        })
    }
}

/// One batch's apps: full-snapshot rows of devices the store already knows go to the stage
/// (compared set-wise when the snapshot ends); rows of devices it does not know yet (their
/// first snapshot: a baseline, not news) insert without a lookup; rows outside a snapshot
/// (deltas) are compared one by one.
pub(crate) fn upsert(
    tx: &Transaction<'_>,
    caches: &mut Caches,
    stages: &mut super::write::Stages,
    batch: &Batch,
    up: &super::write::AppUpsert,
    out: &mut BatchOutcome,
) -> Result<(), StoreError> {
    let (sweep, started_at, rows) = (up.sweep, up.started_at, &up.rows);
    if rows.is_empty() {
        return Ok(());
    }
    let source = batch.source.as_str();
    let snapshot = sweep > 0;
    if snapshot {
        stages.open_apps(tx, source, sweep, started_at)?;
    }
    let known_before = super::write::snapshot_at(tx, source, "apps", "*")?;
    let mut ids = Ids { tx, caches, source };
    let mut counts = Counts::default();
    let mut known: HashMap<i64, bool> = HashMap::new();
    let mut changes = Vec::new();
    let mut written = Written {
        at: batch.now,
        ..Written::default()
    };
    let mut is_known = |dev: i64| -> Result<bool, StoreError> {
        if let Some(k) = known.get(&dev) {
            return Ok(*k);
        }
        // Known: the device had installs before this walk began, and the source's app
        // inventory was once seen whole (until a first snapshot completes, everything is its
        // baseline: an interrupted first export redone is not a wave of installs).
        let k = known_before.is_some()
            && tx
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM app_installs WHERE dev = ?1 AND first_seen < ?2)",
                )?
                .query_row(params![dev, started_at], |r| r.get(0))?;
        known.insert(dev, k);
        Ok(k)
    };
    for inst in rows {
        let dev = ids.device(&inst.device_id, &inst.ctx)?;
        let title = ids.title(&inst.ident)?;
        let ver = ids.version(title, &inst.version)?;
        let r = Resolved {
            inst,
            dev,
            title,
            ver,
            hash: inst.hash(),
        };
        if !is_known(dev)? {
            // A baseline: no lookup, no event. (A key already there, from an earlier attempt
            // at the same first export, takes the slow path.)
            if insert_new(tx, &r, batch.now)? {
                // First seen now: the device's outbox row of this batch covers it.
                written.devices.insert(dev);
            } else {
                // A key an interrupted attempt left: replaced, and named on its own.
                if let Some((old_ver, true)) = insert_or_replace(tx, &r, batch.now)? {
                    counts.live(dev, old_ver, -1);
                }
                written.one(dev, title);
            }
            counts.live(dev, ver, 1);
            out.inserted += 1;
            continue;
        }
        if snapshot {
            stage(tx, source, &r)?;
            continue;
        }
        apply_one(
            tx,
            batch,
            &r,
            false,
            &mut counts,
            &mut changes,
            &mut written,
            out,
        )?;
    }
    written.push(tx, source)?;
    counts.apply(tx)?;
    for ev in changes {
        out.changes += 1;
        insert_event(tx, batch, &batch.stream, &ev, out)?;
    }
    Ok(())
}

/// Inserts an install whose key is not stored yet; `false` if it is.
fn insert_new(tx: &Transaction<'_>, r: &Resolved<'_>, now: i64) -> Result<bool, StoreError> {
    let n = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO app_installs (dev, title, ver, created_us, changed_us,
               updated_us, tf, extra, first_seen)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            r.dev,
            r.title,
            r.ver,
            r.inst.created_us,
            r.inst.changed_us,
            r.inst.updated_us,
            r.inst.tf,
            r.inst.extra,
            now
        ])?;
    Ok(n == 1)
}

/// Inserts an install, replacing one with the same key. Returns the replaced row's version
/// and liveness.
fn insert_or_replace(
    tx: &Transaction<'_>,
    r: &Resolved<'_>,
    now: i64,
) -> Result<Option<(i64, bool)>, StoreError> {
    let old: Option<(i64, Option<i64>)> = tx
        .prepare_cached("SELECT ver, removed_at FROM app_installs WHERE dev = ?1 AND title = ?2")?
        .query_row(params![r.dev, r.title], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    match old {
        None => {
            tx.prepare_cached(
                "INSERT INTO app_installs (dev, title, ver, created_us, changed_us, updated_us,
                   tf, extra, first_seen)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                r.dev,
                r.title,
                r.ver,
                r.inst.created_us,
                r.inst.changed_us,
                r.inst.updated_us,
                r.inst.tf,
                r.inst.extra,
                now
            ])?;
            Ok(None)
        }
        Some((old_ver, removed_at)) => {
            update(tx, r, now)?;
            Ok(Some((old_ver, removed_at.is_none())))
        }
    }
}

fn update(tx: &Transaction<'_>, r: &Resolved<'_>, now: i64) -> Result<(), StoreError> {
    tx.prepare_cached(
        "UPDATE app_installs SET ver = ?3, created_us = ?4, changed_us = ?5, updated_us = ?6,
           tf = ?7, extra = ?8, hash = NULL, last_seen = ?9, removed_at = NULL
         WHERE dev = ?1 AND title = ?2",
    )?
    .execute(params![
        r.dev,
        r.title,
        r.ver,
        r.inst.created_us,
        r.inst.changed_us,
        r.inst.updated_us,
        r.inst.tf,
        r.inst.extra,
        now
    ])?;
    Ok(())
}

fn stage(tx: &Transaction<'_>, source: &str, r: &Resolved<'_>) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO temp.stage_apps (source, dev, title, ver, created_us, changed_us,
           updated_us, tf, extra, hash, ident)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        source,
        r.dev,
        r.title,
        r.ver,
        r.inst.created_us,
        r.inst.changed_us,
        r.inst.updated_us,
        r.inst.tf,
        r.inst.extra,
        r.hash,
        r.inst.ident
    ])?;
    Ok(())
}

fn stored(tx: &Transaction<'_>, dev: i64, title: i64) -> Result<Option<Stored>, StoreError> {
    Ok(tx
        .prepare_cached(
            "SELECT i.ver, i.created_us, i.changed_us, i.updated_us, i.tf, i.extra,
                    i.removed_at, v.name, v.bundle_id, v.version, v.path
             FROM app_installs i JOIN app_versions v ON v.id = i.ver
             WHERE i.dev = ?1 AND i.title = ?2",
        )?
        .query_row(params![dev, title], |r| {
            Ok(Stored {
                ver: r.get(0)?,
                created_us: r.get(1)?,
                changed_us: r.get(2)?,
                updated_us: r.get(3)?,
                tf: r.get(4)?,
                extra: r.get(5)?,
                removed_at: r.get(6)?,
                name: r.get(7)?,
                bundle_id: r.get(8)?,
                version: r.get(9)?,
                path: r.get(10)?,
            })
        })
        .optional()?)
}

/// Compares one install with what is stored and writes the difference, with its change
/// event and outbox row. `from_snapshot`: the row is part of a full snapshot (so an
/// unchanged row is left as it is), else a delta (which touches `last_seen`).
#[allow(clippy::too_many_arguments)]
fn apply_one(
    tx: &Transaction<'_>,
    batch: &Batch,
    r: &Resolved<'_>,
    from_snapshot: bool,
    counts: &mut Counts,
    changes: &mut Vec<super::EventRow>,
    written: &mut Written,
    out: &mut BatchOutcome,
) -> Result<(), StoreError> {
    let key = r.inst.key();
    let device = Some(r.inst.device_id.as_str());
    let existing = stored(tx, r.dev, r.title)?;
    match existing {
        Some(s) if s.removed_at.is_none() && s.same(r) => {
            if !from_snapshot {
                tx.prepare_cached(
                    "UPDATE app_installs SET last_seen = ?3 WHERE dev = ?1 AND title = ?2",
                )?
                .execute(params![r.dev, r.title, batch.now])?;
            }
            out.unchanged += 1;
        }
        None => {
            insert_or_replace(tx, r, batch.now)?;
            written.one(r.dev, r.title);
            counts.live(r.dev, r.ver, 1);
            out.inserted += 1;
            if let Some(c) = tables::created(Table::Apps, &key, &r.inst.typed()) {
                let disc = format!("{:x}", r.hash);
                changes.push(change_event(batch, Table::Apps, &key, device, c, disc));
            }
        }
        Some(s) => {
            update(tx, r, batch.now)?;
            written.one(r.dev, r.title);
            match s.removed_at {
                Some(removed_at) => {
                    counts.live(r.dev, r.ver, 1);
                    out.inserted += 1;
                    if let Some(c) = tables::created(Table::Apps, &key, &r.inst.typed()) {
                        let disc = format!("{:x}-{removed_at}", r.hash);
                        changes.push(change_event(batch, Table::Apps, &key, device, c, disc));
                    }
                }
                None => {
                    if s.ver != r.ver {
                        counts.live(r.dev, s.ver, -1);
                        counts.live(r.dev, r.ver, 1);
                    }
                    out.updated += 1;
                    for c in tables::changed(Table::Apps, &key, &s.typed(), &r.inst.typed()) {
                        let disc = format!("{:x}", r.hash);
                        changes.push(change_event(batch, Table::Apps, &key, device, c, disc));
                    }
                }
            }
        }
    }
    Ok(())
}

/// The installs a batch wrote, for the outbox: a device's installs first seen by this batch
/// (one outbox row stands for them all) and single installs.
#[derive(Default)]
struct Written {
    /// The batch's time: the installs of a device it first saw have `first_seen` = `at`.
    at: i64,
    devices: std::collections::BTreeSet<i64>,
    installs: Vec<(i64, i64)>,
}

impl Written {
    fn one(&mut self, dev: i64, title: i64) {
        self.installs.push((dev, title));
    }

    /// Outbox rows: `DEV@AT` for a device's installs first seen at AT, `DEV:TITLE` for one.
    fn push(self, tx: &Transaction<'_>, source: &str) -> Result<(), StoreError> {
        for dev in &self.devices {
            outbox_push(tx, source, "apps", &format!("{dev}@{}", self.at))?;
        }
        for (dev, title) in self.installs {
            if !self.devices.contains(&dev) {
                outbox_push(tx, source, "apps", &format!("{dev}:{title}"))?;
            }
        }
        Ok(())
    }
}

/// Closes a full snapshot of a source's apps: staged rows that differ from the store are
/// written (with `app_installed`/`app_updated` events), live installs the snapshot did not
/// contain are marked removed (`app_removed`), all set-wise; then the stage is emptied.
pub(crate) fn end_snapshot(
    tx: &Transaction<'_>,
    stages: &mut super::write::Stages,
    batch: &Batch,
    sweep: i64,
    out: &mut BatchOutcome,
) -> Result<(), StoreError> {
    let source = batch.source.as_str();
    let started = stages.apps_started(source, sweep).unwrap_or(sweep);
    stages.open_apps(tx, source, sweep, started)?;
    let mut counts = Counts::default();
    let mut changes = Vec::new();
    let mut written = Written {
        at: batch.now,
        ..Written::default()
    };
    // New, returning and changed installs: the staged rows the store does not hold as they are.
    let diff: Vec<(AppInstall, i64, i64, i64)> = {
        let mut st = tx.prepare(
            "SELECT s.dev, s.title, s.ver, s.created_us, s.changed_us, s.updated_us, s.tf, s.extra,
                    s.ident, d.device_id, v.fields, v.name, v.bundle_id, v.version, v.path, d.ctx
             FROM temp.stage_apps s
             JOIN app_devices d ON d.id = s.dev
             JOIN app_versions v ON v.id = s.ver
             LEFT JOIN app_installs i ON i.dev = s.dev AND i.title = s.title
             WHERE s.source = ?1
               AND (i.ver IS NULL OR i.removed_at IS NOT NULL OR i.ver != s.ver
                    OR i.created_us IS NOT s.created_us OR i.changed_us IS NOT s.changed_us
                    OR i.updated_us IS NOT s.updated_us OR i.tf IS NOT s.tf
                    OR i.extra IS NOT s.extra)",
        )?;
        st.query_map([source], |r| {
            let fields: String = r.get(10)?;
            let version = AppVersion {
                fields_hash: super::stable_hash(fields.as_bytes()),
                fields: Arc::from(fields),
                name: r.get(11)?,
                bundle_id: r.get(12)?,
                version: r.get(13)?,
                path: r.get(14)?,
            };
            Ok((
                AppInstall {
                    device_id: r.get(9)?,
                    ident: r.get(8)?,
                    version: Arc::new(version),
                    ctx: Arc::from(r.get::<_, String>(15)?),
                    created_us: r.get(3)?,
                    changed_us: r.get(4)?,
                    updated_us: r.get(5)?,
                    tf: r.get(6)?,
                    extra: r.get(7)?,
                },
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
            ))
        })?
        .collect::<Result<_, _>>()?
    };
    let staged: i64 = tx
        .prepare_cached("SELECT count(*) FROM temp.stage_apps WHERE source = ?1")?
        .query_row([source], |r| r.get(0))?;
    out.unchanged += (staged as u64).saturating_sub(diff.len() as u64);
    for (inst, dev, title, ver) in &diff {
        let r = Resolved {
            inst,
            dev: *dev,
            title: *title,
            ver: *ver,
            hash: inst.hash(),
        };
        apply_one(
            tx,
            batch,
            &r,
            true,
            &mut counts,
            &mut changes,
            &mut written,
            out,
        )?;
    }
    // Removed: live installs of this source that were there before the snapshot started,
    // were not written since, and are not in it.
    let gone: Vec<Gone> = {
        let mut st = tx.prepare(
            "SELECT i.title, i.dev, i.ver, d.device_id, t.ident, v.name, v.bundle_id, v.version, v.path
             FROM app_devices d
             JOIN app_installs i ON i.dev = d.id AND i.removed_at IS NULL
             JOIN app_titles t ON t.id = i.title
             JOIN app_versions v ON v.id = i.ver
             WHERE d.source = ?1 AND coalesce(i.last_seen, i.first_seen) < ?2
               AND NOT EXISTS (SELECT 1 FROM temp.stage_apps s
                               WHERE s.source = ?1 AND s.dev = i.dev AND s.title = i.title)",
        )?;
        st.query_map(params![source, started], |r| {
            Ok(Gone {
                title: r.get(0)?,
                dev: r.get(1)?,
                ver: r.get(2)?,
                device_id: r.get(3)?,
                ident: r.get(4)?,
                version: AppVersion {
                    fields: Arc::from(""),
                    fields_hash: 0,
                    name: r.get(5)?,
                    bundle_id: r.get(6)?,
                    version: r.get(7)?,
                    path: r.get(8)?,
                },
            })
        })?
        .collect::<Result<_, _>>()?
    };
    {
        let mut mark = tx.prepare_cached(
            "UPDATE app_installs SET removed_at = ?3 WHERE dev = ?1 AND title = ?2",
        )?;
        for g in gone {
            mark.execute(params![g.dev, g.title, batch.now])?;
            written.one(g.dev, g.title);
            counts.live(g.dev, g.ver, -1);
            out.removed += 1;
            let device_id = g.device_id;
            let key = format!("{device_id}|{}", g.ident);
            let vals = typed_of(&g.version);
            if let Some(c) = tables::removed(Table::Apps, &key, &vals) {
                changes.push(change_event(
                    batch,
                    Table::Apps,
                    &key,
                    Some(&device_id),
                    c,
                    sweep.to_string(),
                ));
            }
        }
    }
    written.push(tx, source)?;
    counts.apply(tx)?;
    for ev in changes {
        out.changes += 1;
        insert_event(tx, batch, &batch.stream, &ev, out)?;
    }
    stages.close_apps(tx, source)?;
    super::write::set_snapshot_at(tx, source, "apps", "*", batch.now)?;
    Ok(())
}

/// A live install a full snapshot did not contain.
struct Gone {
    title: i64,
    dev: i64,
    ver: i64,
    device_id: String,
    ident: String,
    version: AppVersion,
}

/// Marks every live install of a removed device removed (the device sweep's cascade), each
/// with its outbox row.
pub(crate) fn remove_device(
    tx: &Transaction<'_>,
    source: &str,
    device_id: &str,
    now: i64,
) -> Result<(), StoreError> {
    let dev: Option<i64> = tx
        .prepare_cached("SELECT id FROM app_devices WHERE source = ?1 AND device_id = ?2")?
        .query_row(params![source, device_id], |r| r.get(0))
        .optional()?;
    let Some(dev) = dev else {
        return Ok(());
    };
    let mut counts = Counts::default();
    let gone: Vec<(i64, i64)> = tx
        .prepare_cached(
            "UPDATE app_installs SET removed_at = ?2 WHERE dev = ?1 AND removed_at IS NULL
             RETURNING title, ver",
        )?
        .query_map(params![dev, now], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (title, v) in gone {
        counts.live(dev, v, -1);
        outbox_push(tx, source, "apps", &format!("{dev}:{title}"))?;
    }
    counts.apply(tx)
}

/// The Prism-shaped record of one install, and its key, device, hash and times.
pub(crate) struct RebuiltRow {
    pub key: String,
    pub device_id: String,
    pub hash: i64,
    pub last_seen: i64,
    pub removed_at: Option<i64>,
    pub raw: Value,
}

const REBUILD_SELECT: &str = "SELECT i.title, d.device_id, t.ident, i.hash,
        coalesce(i.last_seen, i.first_seen),
        i.removed_at, d.ctx, v.fields, i.created_us, i.changed_us, i.updated_us, i.tf, i.extra
    FROM app_installs i
    JOIN app_devices d ON d.id = i.dev
    JOIN app_titles t ON t.id = i.title
    JOIN app_versions v ON v.id = i.ver";

fn rebuilt(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, RebuiltRow)> {
    let device_id: String = r.get(1)?;
    let ident: String = r.get(2)?;
    let ctx: String = r.get(6)?;
    let fields: String = r.get(7)?;
    let extra: Option<String> = r.get(12)?;
    let times: [Option<i64>; 4] = [r.get(8)?, r.get(9)?, r.get(10)?, r.get(11)?];
    // Stored for rows migrated from version 3 (their old hash); derived for the others.
    let hash = match r.get::<_, Option<i64>>(3)? {
        Some(h) => h,
        None => install_hash(
            super::stable_hash(fields.as_bytes()),
            &ident,
            times,
            extra.as_deref(),
        ),
    };
    Ok((
        r.get(0)?,
        RebuiltRow {
            key: format!("{device_id}|{ident}"),
            device_id,
            hash,
            last_seen: r.get(4)?,
            removed_at: r.get(5)?,
            raw: rebuild(
                &ctx,
                &fields,
                [r.get(8)?, r.get(9)?, r.get(10)?],
                r.get(11)?,
                extra.as_deref(),
            ),
        },
    ))
}

/// One install by (device, title) of a source, rebuilt.
pub(crate) fn by_ids(
    c: &rusqlite::Connection,
    source: &str,
    dev: i64,
    title: i64,
) -> Result<Option<RebuiltRow>, StoreError> {
    Ok(c.prepare_cached(&format!(
        "{REBUILD_SELECT} WHERE i.dev = ?2 AND i.title = ?3 AND d.source = ?1"
    ))?
    .query_row(params![source, dev, title], rebuilt)
    .optional()?
    .map(|(_, r)| r))
}

/// A device's installs first seen at `seen_at` (any time with `None`), with titles after
/// `after`, rebuilt, in title order, at most `limit` (title, row).
pub(crate) fn by_device(
    c: &rusqlite::Connection,
    source: &str,
    dev: i64,
    seen_at: i64,
    after: i64,
    limit: usize,
) -> Result<Vec<(i64, RebuiltRow)>, StoreError> {
    let mut st = c.prepare_cached(&format!(
        "{REBUILD_SELECT} WHERE i.dev = ?2 AND i.title > ?3 AND d.source = ?1
           AND i.first_seen = ?5
         ORDER BY i.title LIMIT ?4"
    ))?;
    let rows = st
        .query_map(params![source, dev, after, limit as i64, seen_at], rebuilt)?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// The install with key `device|ident` of a source, rebuilt.
pub(crate) fn by_key(
    c: &rusqlite::Connection,
    source: &str,
    key: &str,
) -> Result<Option<RebuiltRow>, StoreError> {
    let Some((device, ident)) = key.split_once('|') else {
        return Ok(None);
    };
    Ok(c.prepare_cached(&format!(
        "{REBUILD_SELECT} WHERE d.source = ?1 AND d.device_id = ?2 AND t.ident = ?3"
    ))?
    .query_row(params![source, device, ident], rebuilt)
    .optional()?
    .map(|(_, r)| r))
}

/// Every live install of a source (or every install when `live_only` is false), rebuilt, in
/// key order; `since` keeps those seen at or after it.
pub(crate) fn for_each(
    c: &rusqlite::Connection,
    source: &str,
    since: Option<i64>,
    each: &mut dyn FnMut(RebuiltRow) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let snapshot = super::write::snapshot_at_conn(c, source, "apps", "*")?;
    // A live install unchanged by the last full snapshot was seen by it.
    let seen_all = matches!((since, snapshot), (Some(s), Some(at)) if at >= s) || since.is_none();
    let mut st = c.prepare(&format!(
        "{REBUILD_SELECT} WHERE d.source = ?1 AND i.removed_at IS NULL
           AND (?2 OR coalesce(i.last_seen, i.first_seen) >= ?3)
         ORDER BY d.device_id, t.ident"
    ))?;
    let mut rows = st.query(params![source, seen_all, since.unwrap_or(0)])?;
    while let Some(r) = rows.next()? {
        let (_, row) = rebuilt(r)?;
        each(row)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kandji_api::export::CsvMapper;

    #[test]
    fn canonical_times_round_trip_and_others_do_not_parse() {
        for s in [
            "2026-11-02 06:40:01.754776+00:00",
            "2025-03-18T19:06:43.316369+00:00",
            "2024-02-29 23:59:59.000000+00:00",
        ] {
            let (us, tf) = parse_canonical(s).unwrap();
            assert_eq!(render_canonical(us, tf), s);
        }
        for s in [
            "",
            "2026-11-02 06:40:01+00:00",
            "2026-11-02T06:40:01.754776Z",
            "2023-02-29 10:00:00.000000+00:00",
            "2026-11-02 24:00:00.000000+00:00",
            "2026-13-02 06:40:01.754776+00:00",
        ] {
            assert_eq!(parse_canonical(s), None, "{s}");
        }
    }

    fn csv_row(headers: &[&str], values: &[&str]) -> AppInstall {
        let mut m = AppRowMapper::default();
        m.headers(&kandji_api::export::CsvHeaders {
            names: headers.iter().map(|s| s.to_string()).collect(),
        });
        m.map(&csv::StringRecord::from(values.to_vec())).unwrap()
    }

    #[test]
    fn csv_and_json_rows_give_the_same_install_and_rebuild_byte_for_byte() {
        let headers = [
            "device_id",
            "device__name",
            "bundle_id",
            "name",
            "version",
            "copyright",
            "created_at",
            "updated_at",
            "last_changed_at",
            "tags",
        ];
        let values = [
            "d1",
            "Mac \"1\"",
            "com.x",
            "X",
            "1.0",
            "Copyright ©\n2024",
            "2026-11-02 06:40:01.754776+00:00",
            "",
            "2026-11-03 06:40:01.000001+00:00",
            "",
        ];
        let from_csv = csv_row(&headers, &values);
        let map: Map<String, Value> = headers
            .iter()
            .zip(values)
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect();
        let from_json = AppInstall::from_json(&map).unwrap();
        assert_eq!(from_csv, from_json);
        assert_eq!(from_csv.key(), "d1|com.x");
        assert_eq!(from_csv.extra.as_deref(), Some(r#"{"updated_at":""}"#));
        let raw = rebuild(
            &from_csv.ctx,
            &from_csv.version.fields,
            [
                from_csv.created_us,
                from_csv.changed_us,
                from_csv.updated_us,
            ],
            from_csv.tf,
            from_csv.extra.as_deref(),
        );
        assert_eq!(raw.to_string(), Value::Object(map).to_string());
    }
}
