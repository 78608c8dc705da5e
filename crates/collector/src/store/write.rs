//! The writer side: applying one [`Batch`] in one transaction.
//!
//! Inventory rows take one of three paths:
//! - rows of a full snapshot of a [`Snapshots::Restart`] table (a Prism export) for a device
//!   the store already knows go to a connection-local TEMP stage; when the snapshot ends
//!   ([`SweepEnd`]) the stage is compared with the table set-wise: one query for new and
//!   changed rows, one for rows that went away. Unchanged rows are not touched.
//! - apps rows of a device seen for the first time (a baseline) insert without a lookup
//!   (see `apps.rs`).
//! - everything else is compared row by row (its `sweep` and `missing` kept for resumable
//!   walks, where a device must miss two sweeps to count as removed).

use std::collections::{HashMap, HashSet};

use rusqlite::types::Value;
use rusqlite::{OptionalExtension, Transaction, params, params_from_iter};

use super::apps::{self, AppInstall};
use super::tables::{self, Change, Snapshots, Table};
use super::{StoreError, WriterConn};

/// One inventory row, as a stream maps it.
#[derive(Debug, Clone)]
pub struct InvRow {
    pub key: String,
    pub device_id: Option<String>,
    /// One value per typed column of the table, in the table's column order.
    pub values: Vec<Value>,
    pub raw: String,
}

/// Rows for one table. `sweep` is the id of the full sweep they belong to, or 0 for a delta
/// (rows seen outside a sweep never reset a row's missed-sweep count). `started_at` is when
/// the sweep (or delta walk) began: rows first seen before it are known, and a table — or, in
/// per-device tables, a device — with no known rows is a baseline whose rows are not news.
#[derive(Debug, Clone)]
pub struct Upsert {
    pub table: Table,
    pub sweep: i64,
    pub started_at: i64,
    pub rows: Vec<InvRow>,
}

/// App installs, already normalized (see [`AppInstall`]); `sweep`/`started_at` as in
/// [`Upsert`].
#[derive(Debug, Clone)]
pub struct AppUpsert {
    pub sweep: i64,
    pub started_at: i64,
    pub rows: Vec<AppInstall>,
}

/// One audit, security or change event.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub category: &'static str,
    pub event_type: String,
    /// The dedup key, stable across re-collection.
    pub uid: String,
    pub occurred_at: i64,
    pub device_id: Option<String>,
    pub user_id: Option<String>,
    pub severity: Option<String>,
    pub summary: String,
    pub raw: String,
}

/// Which rows a sweep covered.
#[derive(Debug, Clone)]
pub enum Scope {
    /// The whole table for the source.
    All,
    /// Rows whose typed column equals the value (e.g. one Prism category).
    Column(&'static str, String),
    /// Rows of one device.
    Device(String),
}

impl Scope {
    /// The scope as the `snapshots` and stage tables name it.
    fn name(&self) -> String {
        match self {
            Scope::All => "*".into(),
            Scope::Column(c, v) => format!("{c}={v}"),
            Scope::Device(d) => format!("device={d}"),
        }
    }
}

/// Closes a full sweep: rows the sweep did not see count one more miss, and rows that reach
/// the table's threshold are marked removed.
#[derive(Debug, Clone)]
pub struct SweepEnd {
    pub table: Table,
    pub sweep: i64,
    pub scope: Scope,
}

/// Stream status fields the engine records with a batch.
#[derive(Debug, Clone, Default)]
pub struct StatusUpdate {
    pub state: Option<String>,
    pub requests: u64,
}

/// One page of one stream: everything here commits together, or nothing does.
#[derive(Debug, Clone)]
pub struct Batch {
    pub source: String,
    pub stream: String,
    /// The commit's time (ms since the epoch): first_seen/last_seen, change events' time.
    pub now: i64,
    pub upserts: Vec<Upsert>,
    /// Normalized app installs (the CSV fast path).
    pub apps: Vec<AppUpsert>,
    pub events: Vec<EventRow>,
    pub sweep_ends: Vec<SweepEnd>,
    /// The stream's checkpoint after this page. `None` leaves it unchanged.
    pub checkpoint: Option<serde_json::Value>,
    /// When set, `checkpoint` is stored under this key of the stream's checkpoint object
    /// (the other keys stay), so parts of a stream running at once never overwrite each other.
    pub checkpoint_key: Option<String>,
    /// When the batch was collected on this host's clock (ms): the per-hour record chart and
    /// the checkpoint's `updated_at`. `now` is the tenant's clock. Equal unless they differ.
    pub collected_at: i64,
    /// The category records are counted under in the per-hour chart.
    pub record_category: &'static str,
    /// Devices to re-fetch (device id, reason).
    pub refresh: Vec<(String, String)>,
    /// Devices taken off the refresh queue by this batch.
    pub refreshed: Vec<String>,
    /// Whether the batch's stream is a collecting stream with a status row (its records
    /// count there). The collector's own health records are not.
    pub counts_in_status: bool,
}

impl Batch {
    pub fn new(source: &str, stream: &str, now: i64, record_category: &'static str) -> Batch {
        Batch {
            source: source.to_string(),
            stream: stream.to_string(),
            now,
            upserts: Vec::new(),
            apps: Vec::new(),
            events: Vec::new(),
            sweep_ends: Vec::new(),
            checkpoint: None,
            checkpoint_key: None,
            collected_at: now,
            record_category,
            refresh: Vec::new(),
            refreshed: Vec::new(),
            counts_in_status: true,
        }
    }
}

/// What a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub removed: u64,
    pub events_inserted: u64,
    pub events_updated: u64,
    pub events_duplicate: u64,
    pub changes: u64,
}

impl BatchOutcome {
    /// Records that are new or changed.
    pub fn records(&self) -> u64 {
        self.inserted + self.updated + self.removed + self.events_inserted + self.events_updated
    }
}

/// FNV-1a, 64 bit: a hash that stays the same across builds (unlike std's `DefaultHasher`).
pub fn stable_hash(bytes: &[u8]) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h as i64
}

/// The open stages of full snapshots on the writer's connection: (source, table, scope) →
/// (sweep, started_at). TEMP tables live with the connection, so a restarted process starts
/// with none, as an interrupted export starts over.
/// (source, table, scope) → (sweep, started_at).
type OpenStages = HashMap<(String, &'static str, String), (i64, i64)>;

/// A snapshot scope being staged: whose, which, and since when.
pub(crate) struct StageOf<'a> {
    pub source: &'a str,
    pub scope: &'a str,
    pub sweep: i64,
    pub started_at: i64,
}

#[derive(Default)]
pub(crate) struct Stages {
    open: OpenStages,
    created: HashSet<&'static str>,
    saved: Option<(OpenStages, HashSet<&'static str>)>,
}

impl Stages {
    fn begin(&mut self) {
        self.saved = Some((self.open.clone(), self.created.clone()));
    }
    fn committed(&mut self) {
        self.saved = None;
    }
    pub(crate) fn rolled_back(&mut self) {
        if let Some((open, created)) = self.saved.take() {
            self.open = open;
            self.created = created;
        }
    }

    /// Makes sure the stage for (source, table, scope) belongs to `sweep`: rows staged by an
    /// earlier, abandoned sweep of the same scope are dropped.
    fn open_scope(
        &mut self,
        tx: &Transaction<'_>,
        table: &'static str,
        ddl: &dyn Fn() -> String,
        at: StageOf<'_>,
    ) -> Result<(), StoreError> {
        let StageOf {
            source,
            scope,
            sweep,
            started_at,
        } = at;
        if !self.created.contains(table) {
            tx.execute_batch(&ddl())?;
            self.created.insert(table);
        }
        let k = (source.to_string(), table, scope.to_string());
        match self.open.get(&k) {
            Some((s, _)) if *s == sweep => {}
            Some(_) => {
                tx.execute(
                    &format!("DELETE FROM temp.stage_{table} WHERE source = ?1 AND scope = ?2"),
                    params![source, scope],
                )?;
                self.open.insert(k, (sweep, started_at));
            }
            None => {
                self.open.insert(k, (sweep, started_at));
            }
        }
        Ok(())
    }

    fn started(&self, source: &str, table: &'static str, scope: &str, sweep: i64) -> Option<i64> {
        self.open
            .get(&(source.to_string(), table, scope.to_string()))
            .filter(|(s, _)| *s == sweep)
            .map(|(_, st)| *st)
    }

    fn close_scope(
        &mut self,
        tx: &Transaction<'_>,
        table: &'static str,
        source: &str,
        scope: &str,
    ) -> Result<(), StoreError> {
        self.open
            .remove(&(source.to_string(), table, scope.to_string()));
        if !self.created.contains(table) {
            return Ok(());
        }
        if self.open.keys().any(|(_, t, _)| *t == table) {
            tx.execute(
                &format!("DELETE FROM temp.stage_{table} WHERE source = ?1 AND scope = ?2"),
                params![source, scope],
            )?;
        } else {
            // Nothing else staged in it: dropping is instant, a DELETE visits every row.
            tx.execute_batch(&format!("DROP TABLE temp.stage_{table}"))?;
            self.created.remove(table);
        }
        Ok(())
    }

    pub(crate) fn open_apps(
        &mut self,
        tx: &Transaction<'_>,
        source: &str,
        sweep: i64,
        started_at: i64,
    ) -> Result<(), StoreError> {
        self.open_scope(
            tx,
            "apps",
            &|| {
                "CREATE TEMP TABLE IF NOT EXISTS stage_apps (
                    scope TEXT NOT NULL DEFAULT '*', source TEXT NOT NULL, dev INTEGER NOT NULL,
                    title INTEGER NOT NULL, ver INTEGER NOT NULL, created_us INTEGER,
                    changed_us INTEGER, updated_us INTEGER, tf INTEGER, extra TEXT,
                    hash INTEGER NOT NULL, ident TEXT NOT NULL,
                    UNIQUE (source, dev, title));"
                    .to_string()
            },
            StageOf {
                source,
                scope: "*",
                sweep,
                started_at,
            },
        )
    }

    pub(crate) fn apps_started(&self, source: &str, sweep: i64) -> Option<i64> {
        self.started(source, "apps", "*", sweep)
    }

    pub(crate) fn close_apps(
        &mut self,
        tx: &Transaction<'_>,
        source: &str,
    ) -> Result<(), StoreError> {
        self.close_scope(tx, "apps", source, "*")
    }
}

fn stage_ddl(table: Table) -> String {
    let spec = table.spec();
    format!(
        "CREATE TEMP TABLE IF NOT EXISTS stage_{name} (
            scope TEXT NOT NULL, source TEXT NOT NULL, key TEXT NOT NULL, device_id TEXT,
            hash INTEGER NOT NULL, {typed}, raw TEXT NOT NULL,
            UNIQUE (scope, source, key));",
        name = spec.name,
        typed = spec.typed_ddl()
    )
}

/// When the last full snapshot of (source, table, scope) completed.
pub(crate) fn snapshot_at(
    tx: &Transaction<'_>,
    source: &str,
    table: &str,
    scope: &str,
) -> Result<Option<i64>, StoreError> {
    snapshot_at_conn(tx, source, table, scope)
}

pub(crate) fn snapshot_at_conn(
    c: &rusqlite::Connection,
    source: &str,
    table: &str,
    scope: &str,
) -> Result<Option<i64>, StoreError> {
    Ok(
        c.prepare_cached("SELECT at FROM snapshots WHERE source = ?1 AND tbl = ?2 AND scope = ?3")?
            .query_row(params![source, table, scope], |r| r.get(0))
            .optional()?,
    )
}

pub(crate) fn set_snapshot_at(
    tx: &Transaction<'_>,
    source: &str,
    table: &str,
    scope: &str,
    at: i64,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO snapshots (source, tbl, scope, at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (source, tbl, scope) DO UPDATE SET at = excluded.at",
    )?
    .execute(params![source, table, scope, at])?;
    Ok(())
}

pub(super) fn apply(w: &mut WriterConn, batch: &Batch) -> Result<BatchOutcome, StoreError> {
    w.stages.begin();
    let r = apply_in_tx(w, batch);
    match &r {
        Ok(_) => w.stages.committed(),
        Err(_) => w.rolled_back(),
    }
    r
}

fn apply_in_tx(w: &mut WriterConn, batch: &Batch) -> Result<BatchOutcome, StoreError> {
    let WriterConn {
        conn, apps, stages, ..
    } = w;
    let tx = conn.transaction()?;
    let mut out = BatchOutcome::default();
    for upsert in &batch.upserts {
        if upsert.table == Table::Apps {
            // Raw JSON rows of apps (tests, older callers): normalized here.
            let mut rows = Vec::with_capacity(upsert.rows.len());
            for r in &upsert.rows {
                let v: serde_json::Value = serde_json::from_str(&r.raw).map_err(|e| {
                    StoreError::Invalid(format!("apps row {}: raw is not JSON: {e}", r.key))
                })?;
                let inst = v
                    .as_object()
                    .and_then(AppInstall::from_json)
                    .ok_or_else(|| {
                        StoreError::Invalid(format!(
                            "apps row {}: raw has no device_id and bundle_id/path/name",
                            r.key
                        ))
                    })?;
                rows.push(inst);
            }
            let up = AppUpsert {
                sweep: upsert.sweep,
                started_at: upsert.started_at,
                rows,
            };
            apps::upsert(&tx, apps, stages, batch, &up, &mut out)?;
        } else {
            upsert_rows(&tx, stages, batch, upsert, &mut out)?;
        }
    }
    for a in &batch.apps {
        apps::upsert(&tx, apps, stages, batch, a, &mut out)?;
    }
    for end in &batch.sweep_ends {
        match end.table.spec().snapshots {
            Snapshots::Restart(_) if end.table == Table::Apps => {
                apps::end_snapshot(&tx, stages, batch, end.sweep, &mut out)?
            }
            Snapshots::Restart(_) => end_snapshot(&tx, stages, batch, end, &mut out)?,
            Snapshots::Resume => end_sweep(&tx, batch, end, &mut out)?,
        }
    }
    for event in &batch.events {
        insert_event(&tx, batch, &batch.stream, event, &mut out)?;
    }
    if !batch.refreshed.is_empty() {
        let mut del =
            tx.prepare_cached("DELETE FROM refresh_queue WHERE source = ?1 AND device_id = ?2")?;
        // The read is recorded whether or not it found rows.
        let mut read = tx.prepare_cached(
            "INSERT INTO device_reads (source, device_id, stream, read_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (source, device_id, stream) DO UPDATE SET read_at = excluded.read_at",
        )?;
        for d in &batch.refreshed {
            del.execute(params![batch.source, d])?;
            read.execute(params![batch.source, d, batch.stream, batch.now])?;
        }
    }
    if !batch.refresh.is_empty() {
        let mut ins = tx.prepare_cached(
            "INSERT INTO refresh_queue (source, device_id, reason, queued_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (source, device_id) DO NOTHING",
        )?;
        for (d, why) in &batch.refresh {
            ins.execute(params![batch.source, d, why, batch.now])?;
        }
    }
    if let Some(cp) = &batch.checkpoint {
        let value = match &batch.checkpoint_key {
            None => cp.clone(),
            Some(k) => {
                let old: Option<String> = tx
                    .prepare_cached(
                        "SELECT value FROM checkpoints WHERE source = ?1 AND stream = ?2",
                    )?
                    .query_row(params![batch.source, batch.stream], |r| r.get(0))
                    .optional()?;
                let mut all = old
                    .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
                    .filter(serde_json::Value::is_object)
                    .unwrap_or_else(|| serde_json::json!({}));
                all[k.as_str()] = cp.clone();
                all
            }
        };
        tx.prepare_cached(
            "INSERT INTO checkpoints (source, stream, value, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (source, stream) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )?
        .execute(params![batch.source, batch.stream, value.to_string(), batch.collected_at])?;
    }
    let records = out.records() as i64;
    if records > 0 {
        let hour = batch.collected_at.div_euclid(3_600_000) * 3_600_000;
        tx.prepare_cached(
            "INSERT INTO record_samples (source, hour, category, records) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (source, hour, category) DO UPDATE SET records = records + excluded.records",
        )?
        .execute(params![batch.source, hour, batch.record_category, records])?;
        if batch.counts_in_status {
            tx.prepare_cached(
                "INSERT INTO stream_status (source, stream, state, records_total) VALUES (?1, ?2, 'syncing', ?3)
                 ON CONFLICT (source, stream) DO UPDATE SET records_total = records_total + excluded.records_total",
            )?
            .execute(params![batch.source, batch.stream, records])?;
        }
    }
    tx.commit()?;
    Ok(out)
}

fn typed_list(table: Table) -> String {
    table
        .spec()
        .columns
        .iter()
        .map(|c| c.name)
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn change_event(
    batch: &Batch,
    table: Table,
    key: &str,
    device_id: Option<&str>,
    change: Change,
    discriminator: String,
) -> EventRow {
    let raw = serde_json::json!({
        "table": table.name(),
        "key": key,
        "device_id": device_id,
        "event_type": change.event_type,
        "summary": change.summary,
    });
    EventRow {
        category: "change",
        event_type: change.event_type.to_string(),
        uid: format!(
            "{}:{}:{}:{}",
            table.name(),
            key,
            change.event_type,
            discriminator
        ),
        occurred_at: batch.now,
        device_id: device_id.map(str::to_string),
        user_id: None,
        severity: Some(change.severity.to_string()),
        summary: change.summary,
        raw: raw.to_string(),
    }
}

/// The upsert of one generic row (insert, or overwrite what is stored).
fn insert_sql(table: Table) -> String {
    let spec = table.spec();
    let ncols = spec.columns.len();
    let cols = typed_list(table);
    let placeholders: String = (0..ncols).map(|i| format!(", ?{}", i + 9)).collect();
    format!(
        "INSERT INTO {} (source, key, device_id, raw, hash, first_seen, last_seen, sweep, {cols})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8{placeholders})
         ON CONFLICT (source, key) DO UPDATE SET device_id = excluded.device_id, raw = excluded.raw,
           hash = excluded.hash, last_seen = excluded.last_seen,
           sweep = MAX(sweep, excluded.sweep), missing = CASE WHEN excluded.sweep > 0 THEN 0 ELSE missing END,
           removed_at = NULL, {}",
        spec.name,
        spec.columns
            .iter()
            .map(|c| format!("{0} = excluded.{0}", c.name))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn insert_params(batch: &Batch, row: &InvRow, hash: i64, sweep: i64) -> Vec<Value> {
    let mut p: Vec<Value> = Vec::with_capacity(8 + row.values.len());
    p.push(Value::Text(batch.source.clone()));
    p.push(Value::Text(row.key.clone()));
    p.push(row.device_id.clone().map_or(Value::Null, Value::Text));
    p.push(Value::Text(row.raw.clone()));
    p.push(Value::Integer(hash));
    p.push(Value::Integer(batch.now));
    p.push(Value::Integer(batch.now));
    p.push(Value::Integer(sweep));
    p.extend(row.values.iter().cloned());
    p
}

/// A device row that appears (or returns) takes the app count its installs already have.
fn device_row_written(tx: &Transaction<'_>, source: &str, key: &str) -> Result<(), StoreError> {
    tx.prepare_cached(
        "UPDATE devices SET app_count = coalesce((SELECT live_apps FROM app_devices
            WHERE source = ?1 AND device_id = ?2), 0)
         WHERE source = ?1 AND key = ?2",
    )?
    .execute(params![source, key])?;
    Ok(())
}

fn upsert_rows(
    tx: &Transaction<'_>,
    stages: &mut Stages,
    batch: &Batch,
    upsert: &Upsert,
    out: &mut BatchOutcome,
) -> Result<(), StoreError> {
    let table = upsert.table;
    let spec = table.spec();
    let ncols = spec.columns.len();
    let cols = typed_list(table);
    let select_sql = format!(
        "SELECT hash, removed_at, {cols} FROM {} WHERE source = ?1 AND key = ?2",
        spec.name
    );
    let touch_sql = format!(
        "UPDATE {} SET last_seen = ?3, sweep = MAX(sweep, ?4),
           missing = CASE WHEN ?4 > 0 THEN 0 ELSE missing END
         WHERE source = ?1 AND key = ?2",
        spec.name
    );
    // Rows of a restartable full snapshot are staged (compared when it ends).
    let staged_by = match spec.snapshots {
        Snapshots::Restart(col) if upsert.sweep > 0 => Some(col),
        _ => None,
    };
    let mut select = tx.prepare_cached(&select_sql)?;
    let mut insert = tx.prepare_cached(&insert_sql(table))?;
    let mut touch = tx.prepare_cached(&touch_sql)?;
    let mut changes: Vec<EventRow> = Vec::new();
    // The first snapshot is a baseline, not news: no "created" events for a table the source
    // has no rows in yet, nor, in per-device tables, for a device with no rows yet (a newly
    // enrolled device's apps are not 150 installs).
    let per_device = spec.per_device;
    // Per-device tables only ask per device (indexed); the table-wide question would scan the
    // whole table on every batch of a first snapshot.
    let table_known: bool = !per_device
        && tx
            .prepare_cached(&format!(
                "SELECT EXISTS (SELECT 1 FROM {} WHERE source = ?1 AND first_seen < ?2)",
                spec.name
            ))?
            .query_row(params![batch.source, upsert.started_at], |r| r.get(0))?;
    let mut device_known_stmt = tx.prepare_cached(&format!(
        "SELECT EXISTS (SELECT 1 FROM {} WHERE source = ?1 AND device_id = ?2 AND first_seen < ?3)",
        spec.name
    ))?;
    let mut device_known: HashMap<String, bool> = Default::default();
    let mut stage_ins = None;
    for row in &upsert.rows {
        if row.values.len() != ncols {
            return Err(StoreError::Sqlite(rusqlite::Error::InvalidParameterCount(
                row.values.len(),
                ncols,
            )));
        }
        let hash = stable_hash(row.raw.as_bytes());
        let baseline = if per_device {
            match &row.device_id {
                Some(d) => match device_known.get(d) {
                    Some(known) => !known,
                    None => {
                        let known: bool = device_known_stmt
                            .query_row(params![batch.source, d, upsert.started_at], |r| r.get(0))?;
                        device_known.insert(d.clone(), known);
                        !known
                    }
                },
                None => !table_known,
            }
        } else {
            !table_known
        };
        if let Some(col) = staged_by
            && !baseline
        {
            let scope = scope_of_row(spec, col, row);
            stages.open_scope(
                tx,
                spec.name,
                &|| stage_ddl(table),
                StageOf {
                    source: &batch.source,
                    scope: &scope,
                    sweep: upsert.sweep,
                    started_at: upsert.started_at,
                },
            )?;
            if stage_ins.is_none() {
                let placeholders: String = (0..ncols).map(|i| format!(", ?{}", i + 7)).collect();
                stage_ins = Some(tx.prepare_cached(&format!(
                    "INSERT OR REPLACE INTO temp.stage_{} (scope, source, key, device_id, raw, hash, {cols})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6{placeholders})",
                    spec.name
                ))?);
            }
            let mut p: Vec<Value> = vec![
                Value::Text(scope),
                Value::Text(batch.source.clone()),
                Value::Text(row.key.clone()),
                row.device_id.clone().map_or(Value::Null, Value::Text),
                Value::Text(row.raw.clone()),
                Value::Integer(hash),
            ];
            p.extend(row.values.iter().cloned());
            if let Some(st) = stage_ins.as_mut() {
                st.execute(params_from_iter(p))?;
            }
            continue;
        }
        let existing: Option<(i64, Option<i64>, Vec<Value>)> = select
            .query_row(params![batch.source, row.key], |r| {
                let mut vals = Vec::with_capacity(ncols);
                for i in 0..ncols {
                    vals.push(r.get::<_, Value>(i + 2)?);
                }
                Ok((r.get(0)?, r.get(1)?, vals))
            })
            .optional()?;
        match &existing {
            Some((h, None, _)) if *h == hash => {
                touch.execute(params![batch.source, row.key, batch.now, upsert.sweep])?;
                out.unchanged += 1;
                continue;
            }
            _ => {}
        }
        insert.execute(params_from_iter(insert_params(
            batch,
            row,
            hash,
            upsert.sweep,
        )))?;
        outbox_push(tx, &batch.source, spec.name, &row.key)?;
        if table == Table::Devices && !matches!(existing, Some((_, None, _))) {
            device_row_written(tx, &batch.source, &row.key)?;
        }
        let device = row.device_id.as_deref();
        match existing {
            None => {
                out.inserted += 1;
                if baseline {
                    continue;
                }
                if let Some(c) = tables::created(table, &row.key, &row.values) {
                    changes.push(change_event(
                        batch,
                        table,
                        &row.key,
                        device,
                        c,
                        format!("{hash:x}"),
                    ));
                }
            }
            Some((_, Some(removed_at), _)) => {
                out.inserted += 1;
                if let Some(c) = tables::reappeared(table, &row.key, &row.values) {
                    changes.push(change_event(
                        batch,
                        table,
                        &row.key,
                        device,
                        c,
                        format!("{hash:x}-{removed_at}"),
                    ));
                }
            }
            Some((_, None, old)) => {
                out.updated += 1;
                for c in tables::changed(table, &row.key, &old, &row.values) {
                    changes.push(change_event(
                        batch,
                        table,
                        &row.key,
                        device,
                        c,
                        format!("{hash:x}"),
                    ));
                }
            }
        }
    }
    drop((select, insert, touch, device_known_stmt, stage_ins));
    for ev in changes {
        out.changes += 1;
        insert_event(tx, batch, &batch.stream, &ev, out)?;
    }
    Ok(())
}

/// The snapshot scope a staged row belongs to (its value of the table's snapshot column).
fn scope_of_row(spec: &tables::TableSpec, col: &'static str, row: &InvRow) -> String {
    if col.is_empty() {
        return Scope::All.name();
    }
    let v = spec
        .col_index(col)
        .and_then(|i| row.values.get(i))
        .map(|v| match v {
            Value::Text(s) => s.clone(),
            Value::Integer(i) => i.to_string(),
            _ => String::new(),
        })
        .unwrap_or_default();
    Scope::Column(col, v).name()
}

fn scope_sql(scope: &Scope, first: usize) -> (String, Option<String>) {
    match scope {
        Scope::All => (String::new(), None),
        Scope::Column(c, v) => (format!(" AND {c} = ?{first}"), Some(v.clone())),
        Scope::Device(d) => (format!(" AND device_id = ?{first}"), Some(d.clone())),
    }
}

/// Closes a full snapshot of a generic [`Snapshots::Restart`] table set-wise: the staged rows
/// that differ from the table are written (with their change events), the live rows of the
/// scope that were there before the snapshot and are not in it are marked removed.
fn end_snapshot(
    tx: &Transaction<'_>,
    stages: &mut Stages,
    batch: &Batch,
    end: &SweepEnd,
    out: &mut BatchOutcome,
) -> Result<(), StoreError> {
    let table = end.table;
    let spec = table.spec();
    let ncols = spec.columns.len();
    let cols = typed_list(table);
    let scope = end.scope.name();
    let source = batch.source.as_str();
    let started = stages
        .started(source, spec.name, &scope, end.sweep)
        .unwrap_or(end.sweep);
    stages.open_scope(
        tx,
        spec.name,
        &|| stage_ddl(table),
        StageOf {
            source,
            scope: &scope,
            sweep: end.sweep,
            started_at: started,
        },
    )?;
    let s_cols: String = spec
        .columns
        .iter()
        .map(|c| format!(", s.{}", c.name))
        .collect();
    let t_cols: String = spec
        .columns
        .iter()
        .map(|c| format!(", t.{}", c.name))
        .collect();
    // New, returning and changed rows.
    type Diff = (InvRow, Option<(i64, Option<i64>, Vec<Value>)>);
    let diff: Vec<Diff> = {
        let mut st = tx.prepare(&format!(
            "SELECT s.key, s.device_id, s.raw, t.rowid, t.hash, t.removed_at{s_cols}{t_cols}
             FROM temp.stage_{name} s
             LEFT JOIN {name} t ON t.source = s.source AND t.key = s.key
             WHERE s.scope = ?1 AND s.source = ?2
               AND (t.rowid IS NULL OR t.removed_at IS NOT NULL OR t.hash != s.hash)",
            name = spec.name
        ))?;
        st.query_map(params![scope, source], |r| {
            let mut new = Vec::with_capacity(ncols);
            let mut old = Vec::with_capacity(ncols);
            for i in 0..ncols {
                new.push(r.get::<_, Value>(6 + i)?);
                old.push(r.get::<_, Value>(6 + ncols + i)?);
            }
            let rowid: Option<i64> = r.get(3)?;
            Ok((
                InvRow {
                    key: r.get(0)?,
                    device_id: r.get(1)?,
                    values: new,
                    raw: r.get(2)?,
                },
                match rowid {
                    Some(_) => Some((r.get::<_, i64>(4)?, r.get(5)?, old)),
                    None => None,
                },
            ))
        })?
        .collect::<Result<_, _>>()?
    };
    let staged: i64 = tx
        .prepare_cached(&format!(
            "SELECT count(*) FROM temp.stage_{} WHERE scope = ?1 AND source = ?2",
            spec.name
        ))?
        .query_row(params![scope, source], |r| r.get(0))?;
    out.unchanged += (staged as u64).saturating_sub(diff.len() as u64);
    let mut changes = Vec::new();
    {
        let mut insert = tx.prepare_cached(&insert_sql(table))?;
        for (row, existing) in &diff {
            let hash = stable_hash(row.raw.as_bytes());
            insert.execute(params_from_iter(insert_params(batch, row, hash, end.sweep)))?;
            outbox_push(tx, source, spec.name, &row.key)?;
            let device = row.device_id.as_deref();
            let (change, disc) = match existing {
                None => {
                    out.inserted += 1;
                    (
                        tables::created(table, &row.key, &row.values)
                            .into_iter()
                            .collect(),
                        format!("{hash:x}"),
                    )
                }
                Some((_, Some(removed_at), _)) => {
                    out.inserted += 1;
                    (
                        tables::reappeared(table, &row.key, &row.values)
                            .into_iter()
                            .collect(),
                        format!("{hash:x}-{removed_at}"),
                    )
                }
                Some((_, None, old)) => {
                    out.updated += 1;
                    (
                        tables::changed(table, &row.key, old, &row.values),
                        format!("{hash:x}"),
                    )
                }
            };
            let change: Vec<Change> = change;
            for c in change {
                changes.push(change_event(
                    batch,
                    table,
                    &row.key,
                    device,
                    c,
                    disc.clone(),
                ));
            }
        }
    }
    // Removed: live rows in scope, there before the snapshot began and not written since,
    // that the snapshot did not contain.
    let (scope_filter, scope_val) = scope_sql(&end.scope, 4);
    let gone: Vec<(String, Option<String>, Vec<Value>)> = {
        let mut st = tx.prepare(&format!(
            "SELECT t.key, t.device_id, {cols} FROM {name} t
             WHERE t.source = ?1 AND t.removed_at IS NULL AND t.last_seen < ?2{scope_filter}
               AND NOT EXISTS (SELECT 1 FROM temp.stage_{name} s
                               WHERE s.scope = ?3 AND s.source = t.source AND s.key = t.key)",
            name = spec.name
        ))?;
        let mut p: Vec<Value> = vec![
            Value::Text(source.to_string()),
            Value::Integer(started),
            Value::Text(scope.clone()),
        ];
        if let Some(v) = scope_val {
            p.push(Value::Text(v));
        }
        st.query_map(params_from_iter(p), |r| {
            let mut vals = Vec::with_capacity(ncols);
            for i in 0..ncols {
                vals.push(r.get::<_, Value>(i + 2)?);
            }
            Ok((r.get(0)?, r.get(1)?, vals))
        })?
        .collect::<Result<_, _>>()?
    };
    {
        let mut mark = tx.prepare_cached(&format!(
            "UPDATE {} SET removed_at = ?3 WHERE source = ?1 AND key = ?2",
            spec.name
        ))?;
        for (key, device_id, vals) in gone {
            mark.execute(params![source, key, batch.now])?;
            outbox_push(tx, source, spec.name, &key)?;
            out.removed += 1;
            if let Some(c) = tables::removed(table, &key, &vals) {
                changes.push(change_event(
                    batch,
                    table,
                    &key,
                    device_id.as_deref(),
                    c,
                    end.sweep.to_string(),
                ));
            }
        }
    }
    for ev in changes {
        out.changes += 1;
        insert_event(tx, batch, &batch.stream, &ev, out)?;
    }
    stages.close_scope(tx, spec.name, source, &scope)?;
    set_snapshot_at(tx, source, spec.name, &scope, batch.now)?;
    Ok(())
}

fn end_sweep(
    tx: &Transaction<'_>,
    batch: &Batch,
    end: &SweepEnd,
    out: &mut BatchOutcome,
) -> Result<(), StoreError> {
    let spec = end.table.spec();
    let (scope, scope_val) = scope_sql(&end.scope, 3);
    let bind = |extra: Value| -> Vec<Value> {
        let mut v = vec![Value::Text(batch.source.clone()), extra];
        if let Some(s) = &scope_val {
            v.push(Value::Text(s.clone()));
        }
        v
    };
    tx.execute(
        &format!(
            "UPDATE {} SET missing = missing + 1
             WHERE source = ?1 AND removed_at IS NULL AND sweep < ?2{scope}",
            spec.name
        ),
        params_from_iter(bind(Value::Integer(end.sweep))),
    )?;
    let cols = typed_list(end.table);
    let mut stmt = tx.prepare(&format!(
        "SELECT key, device_id, {cols} FROM {}
         WHERE source = ?1 AND removed_at IS NULL AND missing >= ?2{scope}",
        spec.name
    ))?;
    let ncols = spec.columns.len();
    let gone: Vec<(String, Option<String>, Vec<Value>)> = stmt
        .query_map(
            params_from_iter(bind(Value::Integer(spec.remove_after_missed))),
            |r| {
                let mut vals = Vec::with_capacity(ncols);
                for i in 0..ncols {
                    vals.push(r.get::<_, Value>(i + 2)?);
                }
                Ok((r.get(0)?, r.get(1)?, vals))
            },
        )?
        .collect::<Result<_, _>>()?;
    drop(stmt);
    if gone.is_empty() {
        return Ok(());
    }
    let mut mark = tx.prepare_cached(&format!(
        "UPDATE {} SET removed_at = ?3 WHERE source = ?1 AND key = ?2",
        spec.name
    ))?;
    // A removed device takes its per-device rows with it (they would never be re-read).
    let mut cascade = Vec::new();
    if end.table == Table::Devices {
        // The normalized app tables remove a device's installs themselves (below).
        for t in tables::ALL
            .into_iter()
            .filter(|t| t.spec().per_device && *t != Table::Apps)
        {
            cascade.push((
                t,
                tx.prepare_cached(&format!(
                    "UPDATE {} SET removed_at = ?3
                     WHERE source = ?1 AND device_id = ?2 AND removed_at IS NULL
                     RETURNING key, {}",
                    t.name(),
                    typed_list(t)
                ))?,
            ));
        }
    }
    let mut events = Vec::new();
    for (key, device_id, vals) in gone {
        mark.execute(params![batch.source, key, batch.now])?;
        outbox_push(tx, &batch.source, spec.name, &key)?;
        if end.table == Table::Devices {
            // Every row the device takes with it is a removal the outputs hear of, in this
            // transaction.
            // (A removed device's vulnerability detections close with it.)
            for (table, stmt) in &mut cascade {
                let n = table.spec().columns.len();
                let rows: Vec<(String, Vec<Value>)> = stmt
                    .query_map(params![batch.source, key, batch.now], |r| {
                        let mut vals = Vec::with_capacity(n);
                        for i in 0..n {
                            vals.push(r.get::<_, Value>(i + 1)?);
                        }
                        Ok((r.get(0)?, vals))
                    })?
                    .collect::<Result<_, _>>()?;
                for (k, vals) in rows {
                    outbox_push(tx, &batch.source, table.name(), &k)?;
                    if let Some(c) = tables::removed(*table, &k, &vals) {
                        events.push(change_event(
                            batch,
                            *table,
                            &k,
                            Some(&key),
                            c,
                            end.sweep.to_string(),
                        ));
                    }
                }
            }
            apps::remove_device(tx, &batch.source, &key, batch.now)?;
        }
        out.removed += 1;
        if let Some(c) = tables::removed(end.table, &key, &vals) {
            events.push(change_event(
                batch,
                end.table,
                &key,
                device_id.as_deref(),
                c,
                end.sweep.to_string(),
            ));
        }
    }
    drop(mark);
    drop(cascade);
    for ev in events {
        out.changes += 1;
        insert_event(tx, batch, &batch.stream, &ev, out)?;
    }
    Ok(())
}

pub(crate) fn insert_event(
    tx: &Transaction<'_>,
    batch: &Batch,
    stream: &str,
    ev: &EventRow,
    out: &mut BatchOutcome,
) -> Result<(), StoreError> {
    let hash = stable_hash(ev.raw.as_bytes());
    let mut ins = tx.prepare_cached(
        "INSERT INTO events (source, stream, category, event_type, uid, occurred_at, device_id,
            user_id, severity, summary, raw, hash, collected_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13)
         ON CONFLICT (source, stream, uid) DO NOTHING",
    )?;
    let n = ins.execute(params![
        batch.source,
        stream,
        ev.category,
        ev.event_type,
        ev.uid,
        ev.occurred_at,
        ev.device_id,
        ev.user_id,
        ev.severity,
        ev.summary,
        ev.raw,
        hash,
        batch.now
    ])?;
    if n == 1 {
        out.events_inserted += 1;
        outbox_push(
            tx,
            &batch.source,
            "events",
            &tx.last_insert_rowid().to_string(),
        )?;
        return Ok(());
    }
    // Same uid: a record collected again. Keep the newest state of it (a threat's status can
    // move from quarantined to released), and count it as a duplicate when nothing changed.
    let mut upd = tx.prepare_cached(
        "UPDATE events SET raw = ?4, summary = ?5, severity = ?6, hash = ?7, updated_at = ?8,
            event_type = ?9
         WHERE source = ?1 AND stream = ?2 AND uid = ?3 AND hash != ?7
         RETURNING seq",
    )?;
    let updated: Option<i64> = upd
        .query_row(
            params![
                batch.source,
                stream,
                ev.uid,
                ev.raw,
                ev.summary,
                ev.severity,
                hash,
                batch.now,
                ev.event_type
            ],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(seq) = updated {
        out.events_updated += 1;
        outbox_push(tx, &batch.source, "events", &seq.to_string())?;
    } else {
        out.events_duplicate += 1;
    }
    Ok(())
}

/// Queues a new version of a row or event for the outputs, in the batch's transaction.
pub(crate) fn outbox_push(
    tx: &Transaction<'_>,
    source: &str,
    tbl: &str,
    key: &str,
) -> Result<(), StoreError> {
    tx.prepare_cached("INSERT INTO outbox (source, tbl, ref) VALUES (?1, ?2, ?3)")?
        .execute(params![source, tbl, key])?;
    Ok(())
}
