//! Generic inventory rows on PostgreSQL: SQLite's `upsert_rows`, `end_snapshot` and
//! `end_sweep` (`store/write.rs`), with the same rules and the same change events.
//!
//! Each step reads the stored rows it compares in one statement, replays SQLite's row-by-row
//! decisions in memory (so a key that occurs twice in a page sees its first occurrence, as
//! it does there), and writes the outcome in one statement per kind of change.

use std::collections::{HashMap, HashSet};

use rusqlite::types::Value;

use super::super::tables::{self, Change, Snapshots, Table};
use super::super::write::{change_event, stable_hash};
use super::super::{EventRow, InvRow, Scope, StoreError, SweepEnd, Upsert};
use super::values::{ColArray, Param, normalized, refs, value_at};
use super::write::W;

fn typed_list(table: Table, prefix: &str) -> String {
    table
        .spec()
        .columns
        .iter()
        .map(|c| format!("{prefix}{}", c.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The scope's name, as SQLite's `Scope::name` (stage and snapshot rows are keyed by it).
fn scope_name(scope: &Scope) -> String {
    match scope {
        Scope::All => "*".into(),
        Scope::Column(c, v) => format!("{c}={v}"),
        Scope::Device(d) => format!("device={d}"),
    }
}

/// The scope of a staged row (its value of the table's snapshot column).
fn scope_of_row(table: Table, col: &'static str, row: &InvRow) -> String {
    if col.is_empty() {
        return scope_name(&Scope::All);
    }
    let v = table
        .spec()
        .col_index(col)
        .and_then(|i| row.values.get(i))
        .map(|v| match v {
            Value::Text(s) => s.clone(),
            Value::Integer(i) => i.to_string(),
            _ => String::new(),
        })
        .unwrap_or_default();
    scope_name(&Scope::Column(col, v))
}

/// `AND <scope>` with its parameter numbered `n`.
fn scope_sql(scope: &Scope, n: usize) -> (String, Option<String>) {
    match scope {
        Scope::All => (String::new(), None),
        Scope::Column(c, v) => (format!(" AND {c}::TEXT = ${n}"), Some(v.clone())),
        Scope::Device(d) => (format!(" AND device_id = ${n}"), Some(d.clone())),
    }
}

/// A stored row as the write path compares it: hash, removal time and typed values.
#[derive(Clone)]
struct StoredRow {
    hash: i64,
    removed_at: Option<i64>,
    values: Vec<Value>,
}

/// A row to write (insert, or overwrite what is stored), as SQLite's `insert_sql`.
struct Write<'r> {
    row: &'r InvRow,
    hash: i64,
}

/// Writes rows with SQLite's upsert: new rows take `first_seen`, every row `last_seen`, the
/// larger sweep, a miss count reset by a sweep, and is live again.
async fn write_rows(
    w: &W<'_>,
    table: Table,
    sweep: i64,
    rows: &[Write<'_>],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let spec = table.spec();
    let mut keys = Vec::with_capacity(rows.len());
    let mut devs = Vec::with_capacity(rows.len());
    let mut raws = Vec::with_capacity(rows.len());
    let mut hashes = Vec::with_capacity(rows.len());
    let mut cols: Vec<ColArray> = spec
        .columns
        .iter()
        .map(|c| ColArray::for_type(c.sql_type, rows.len()))
        .collect();
    for r in rows {
        keys.push(r.row.key.clone());
        devs.push(r.row.device_id.clone());
        raws.push(r.row.raw.clone());
        hashes.push(r.hash);
        for (i, c) in cols.iter_mut().enumerate() {
            c.push(r.row.values.get(i).unwrap_or(&Value::Null));
        }
    }
    let n = spec.columns.len();
    let col_names = typed_list(table, "");
    let unnest_args: String = cols
        .iter()
        .enumerate()
        .map(|(i, c)| format!(", ${}::{}", i + 8, c.array_type()))
        .collect();
    let u_cols: String = (0..n).map(|i| format!(", c{i}")).collect();
    let set_cols: String = spec
        .columns
        .iter()
        .map(|c| format!(", {0} = excluded.{0}", c.name))
        .collect();
    let sql = format!(
        "INSERT INTO {name} (source, key, device_id, raw, hash, first_seen, last_seen, sweep, {col_names})
         SELECT $1::TEXT, k, d, r::JSON, h, $2::BIGINT, $2::BIGINT, $3::BIGINT{u_cols}
         FROM unnest($4::TEXT[], $5::TEXT[], $6::TEXT[], $7::BIGINT[]{unnest_args})
              AS u(k, d, r, h{u_cols})
         ON CONFLICT (source, key) DO UPDATE SET device_id = excluded.device_id, raw = excluded.raw,
           hash = excluded.hash, last_seen = excluded.last_seen,
           sweep = greatest({name}.sweep, excluded.sweep),
           missing = CASE WHEN excluded.sweep > 0 THEN 0 ELSE {name}.missing END,
           removed_at = NULL{set_cols}",
        name = spec.name
    );
    let mut p: Vec<Param> = vec![
        Box::new(w.batch.source.clone()),
        Box::new(w.batch.now),
        Box::new(sweep),
        Box::new(keys),
        Box::new(devs),
        Box::new(raws),
        Box::new(hashes),
    ];
    for c in cols {
        p.push(Box::new(c));
    }
    w.tx.execute(&sql, &refs(&p)).await.map_err(|e| w.err(e))?;
    Ok(())
}

/// Checks each row's raw record is JSON (the column is `JSON`), naming the row.
fn check_raw(w: &W<'_>, table: Table, rows: &[InvRow]) -> Result<(), StoreError> {
    let ncols = table.spec().columns.len();
    for r in rows {
        if r.values.len() != ncols {
            return Err(StoreError::Invalid(format!(
                "{}/{}: {} row {} has {} typed values, the table has {ncols} columns",
                w.batch.source,
                w.batch.stream,
                table.name(),
                r.key,
                r.values.len()
            )));
        }
        serde_json::from_str::<serde::de::IgnoredAny>(&r.raw).map_err(|e| {
            StoreError::Invalid(format!(
                "{}/{}: {} row {} is not JSON: {e}",
                w.batch.source,
                w.batch.stream,
                table.name(),
                r.key
            ))
        })?;
    }
    Ok(())
}

/// The stored rows of `keys`, by key.
async fn stored(
    w: &W<'_>,
    table: Table,
    keys: &[String],
) -> Result<HashMap<String, StoredRow>, StoreError> {
    let spec = table.spec();
    let rows =
        w.tx.query(
            &format!(
                "SELECT key, hash, removed_at, {} FROM {} WHERE source = $1 AND key = ANY($2)",
                typed_list(table, ""),
                spec.name
            ),
            &[&w.batch.source, &keys],
        )
        .await
        .map_err(|e| w.err(e))?;
    Ok(rows
        .iter()
        .map(|r| {
            let values = spec
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| value_at(r, 3 + i, c.sql_type))
                .collect();
            (
                r.get::<_, String>(0),
                StoredRow {
                    hash: r.get(1),
                    removed_at: r.get(2),
                    values,
                },
            )
        })
        .collect())
}

/// SQLite's `upsert_rows`.
pub(super) async fn upsert_rows(w: &mut W<'_>, upsert: &Upsert) -> Result<(), StoreError> {
    let table = upsert.table;
    let spec = table.spec();
    check_raw(w, table, &upsert.rows)?;
    let src = w.batch.source.clone();
    let staged_by = match spec.snapshots {
        Snapshots::Restart(col) if upsert.sweep > 0 => Some(col),
        _ => None,
    };
    let per_device = spec.per_device;
    // The first snapshot is a baseline, not news (see SQLite's).
    let table_known: bool = !per_device
        && w.tx
            .query_one(
                &format!(
                    "SELECT EXISTS (SELECT 1 FROM {} WHERE source = $1 AND first_seen < $2)",
                    spec.name
                ),
                &[&src, &upsert.started_at],
            )
            .await
            .map_err(|e| w.err(e))?
            .get(0);
    let known_devices: HashSet<String> = if per_device {
        let mut devs: Vec<&str> = upsert
            .rows
            .iter()
            .filter_map(|r| r.device_id.as_deref())
            .collect();
        devs.sort_unstable();
        devs.dedup();
        w.tx.query(
            &format!(
                "SELECT DISTINCT device_id FROM {} WHERE source = $1 AND device_id = ANY($2)
                   AND first_seen < $3",
                spec.name
            ),
            &[&src, &devs, &upsert.started_at],
        )
        .await
        .map_err(|e| w.err(e))?
        .iter()
        .map(|r| r.get(0))
        .collect()
    } else {
        HashSet::new()
    };
    let baseline = |row: &InvRow| -> bool {
        if per_device {
            match &row.device_id {
                Some(d) => !known_devices.contains(d),
                None => !table_known,
            }
        } else {
            !table_known
        }
    };
    // Rows of a restartable full snapshot go to the stage; the rest are compared now.
    let mut staged: Vec<(String, &InvRow)> = Vec::new();
    let mut compared: Vec<&InvRow> = Vec::new();
    for row in &upsert.rows {
        match staged_by {
            Some(col) if !baseline(row) => staged.push((scope_of_row(table, col, row), row)),
            _ => compared.push(row),
        }
    }
    if !staged.is_empty() {
        let mut scopes: Vec<&str> = staged.iter().map(|(s, _)| s.as_str()).collect();
        scopes.sort_unstable();
        scopes.dedup();
        for s in scopes {
            w.open_scope(spec.name, s, upsert.sweep, upsert.started_at)
                .await?;
        }
        stage_rows(w, table, &staged).await?;
    }
    if compared.is_empty() {
        return Ok(());
    }
    let keys: Vec<String> = compared.iter().map(|r| r.key.clone()).collect();
    let mut state: HashMap<String, StoredRow> = stored(w, table, &keys).await?;
    let mut writes: Vec<Write<'_>> = Vec::new();
    let mut written: HashMap<String, usize> = HashMap::new();
    let mut touched: Vec<String> = Vec::new();
    let mut devices_written: Vec<String> = Vec::new();
    let mut changes: Vec<EventRow> = Vec::new();
    for row in compared {
        let hash = stable_hash(row.raw.as_bytes());
        let existing = state.get(&row.key).cloned();
        if let Some(s) = &existing
            && s.removed_at.is_none()
            && s.hash == hash
        {
            touched.push(row.key.clone());
            w.out.unchanged += 1;
            continue;
        }
        // The last write of a key is the one stored.
        match written.get(&row.key) {
            Some(&i) => writes[i] = Write { row, hash },
            None => {
                written.insert(row.key.clone(), writes.len());
                writes.push(Write { row, hash });
            }
        }
        w.push(spec.name, row.key.clone());
        if table == Table::Devices && !matches!(&existing, Some(s) if s.removed_at.is_none()) {
            devices_written.push(row.key.clone());
        }
        state.insert(
            row.key.clone(),
            StoredRow {
                hash,
                removed_at: None,
                values: row
                    .values
                    .iter()
                    .zip(spec.columns)
                    .map(|(v, c)| normalized(v, c.sql_type))
                    .collect(),
            },
        );
        let device = row.device_id.as_deref();
        match existing {
            None => {
                w.out.inserted += 1;
                if baseline(row) {
                    continue;
                }
                if let Some(c) = tables::created(table, &row.key, &row.values) {
                    changes.push(change_event(
                        w.batch,
                        table,
                        &row.key,
                        device,
                        c,
                        format!("{hash:x}"),
                    ));
                }
            }
            Some(StoredRow {
                removed_at: Some(removed_at),
                ..
            }) => {
                w.out.inserted += 1;
                if let Some(c) = tables::reappeared(table, &row.key, &row.values) {
                    changes.push(change_event(
                        w.batch,
                        table,
                        &row.key,
                        device,
                        c,
                        format!("{hash:x}-{removed_at}"),
                    ));
                }
            }
            Some(old) => {
                w.out.updated += 1;
                for c in tables::changed(table, &row.key, &old.values, &row.values) {
                    changes.push(change_event(
                        w.batch,
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
    write_rows(w, table, upsert.sweep, &writes).await?;
    // Touched and never rewritten: seen again.
    touched.retain(|k| !written.contains_key(k));
    if !touched.is_empty() {
        w.tx.execute(
            &format!(
                "UPDATE {name} SET last_seen = $3, sweep = greatest(sweep, $4),
                   missing = CASE WHEN $4 > 0 THEN 0 ELSE missing END
                 WHERE source = $1 AND key = ANY($2)",
                name = spec.name
            ),
            &[&src, &touched, &w.batch.now, &upsert.sweep],
        )
        .await
        .map_err(|e| w.err(e))?;
    }
    if !devices_written.is_empty() {
        // A device row that appears (or returns) takes the app count its installs already have.
        w.tx.execute(
            "UPDATE devices SET app_count = coalesce((SELECT a.live_apps FROM app_devices a
                WHERE a.source = devices.source AND a.device_id = devices.key), 0)
             WHERE source = $1 AND key = ANY($2)",
            &[&src, &devices_written],
        )
        .await
        .map_err(|e| w.err(e))?;
    }
    w.out.changes += changes.len() as u64;
    w.events(&changes).await
}

/// Stages rows of a full snapshot (the last of a key wins, as SQLite's `INSERT OR REPLACE`).
async fn stage_rows(w: &W<'_>, table: Table, rows: &[(String, &InvRow)]) -> Result<(), StoreError> {
    let spec = table.spec();
    let mut last: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, (scope, row)) in rows.iter().enumerate() {
        last.insert((scope.as_str(), row.key.as_str()), i);
    }
    let mut keep: Vec<usize> = last.into_values().collect();
    keep.sort_unstable();
    let mut scopes = Vec::with_capacity(keep.len());
    let mut keys = Vec::with_capacity(keep.len());
    let mut devs = Vec::with_capacity(keep.len());
    let mut raws = Vec::with_capacity(keep.len());
    let mut hashes = Vec::with_capacity(keep.len());
    let mut cols: Vec<ColArray> = spec
        .columns
        .iter()
        .map(|c| ColArray::for_type(c.sql_type, keep.len()))
        .collect();
    for i in keep {
        let (scope, row) = &rows[i];
        scopes.push(scope.clone());
        keys.push(row.key.clone());
        devs.push(row.device_id.clone());
        raws.push(row.raw.clone());
        hashes.push(stable_hash(row.raw.as_bytes()));
        for (j, c) in cols.iter_mut().enumerate() {
            c.push(row.values.get(j).unwrap_or(&Value::Null));
        }
    }
    let n = spec.columns.len();
    let col_names = typed_list(table, "");
    let unnest_args: String = cols
        .iter()
        .enumerate()
        .map(|(i, c)| format!(", ${}::{}", i + 7, c.array_type()))
        .collect();
    let u_cols: String = (0..n).map(|i| format!(", c{i}")).collect();
    let set_cols: String = spec
        .columns
        .iter()
        .map(|c| format!(", {0} = excluded.{0}", c.name))
        .collect();
    let sql = format!(
        "INSERT INTO stage_{name} (source, scope, key, device_id, raw, hash, {col_names})
         SELECT $1::TEXT, s, k, d, r::JSON, h{u_cols}
         FROM unnest($2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::BIGINT[]{unnest_args})
              AS u(s, k, d, r, h{u_cols})
         ON CONFLICT (source, scope, key) DO UPDATE SET device_id = excluded.device_id,
           raw = excluded.raw, hash = excluded.hash{set_cols}",
        name = spec.name
    );
    let mut p: Vec<Param> = vec![
        Box::new(w.batch.source.clone()),
        Box::new(scopes),
        Box::new(keys),
        Box::new(devs),
        Box::new(raws),
        Box::new(hashes),
    ];
    for c in cols {
        p.push(Box::new(c));
    }
    w.tx.execute(&sql, &refs(&p)).await.map_err(|e| w.err(e))?;
    Ok(())
}

/// SQLite's `end_snapshot`: the staged rows that differ from the table are written (with
/// their change events), the live rows of the scope that were there before the snapshot and
/// are not in it are marked removed.
pub(super) async fn end_snapshot(w: &mut W<'_>, end: &SweepEnd) -> Result<(), StoreError> {
    let table = end.table;
    let spec = table.spec();
    let ncols = spec.columns.len();
    let scope = scope_name(&end.scope);
    let src = w.batch.source.clone();
    let started = w
        .stage_started(spec.name, &scope, end.sweep)
        .await?
        .unwrap_or(end.sweep);
    w.open_scope(spec.name, &scope, end.sweep, started).await?;
    // New, returning and changed rows.
    let rows =
        w.tx.query(
            &format!(
                "SELECT s.key, s.device_id, s.raw::TEXT, t.key IS NOT NULL, t.hash, t.removed_at,
                        {s_cols}, {t_cols}
                 FROM stage_{name} s
                 LEFT JOIN {name} t ON t.source = s.source AND t.key = s.key
                 WHERE s.source = $1 AND s.scope = $2
                   AND (t.key IS NULL OR t.removed_at IS NOT NULL OR t.hash <> s.hash)
                 ORDER BY s.key",
                name = spec.name,
                s_cols = typed_list(table, "s."),
                t_cols = typed_list(table, "t."),
            ),
            &[&src, &scope],
        )
        .await
        .map_err(|e| w.err(e))?;
    type Diff = (InvRow, Option<(Option<i64>, Vec<Value>)>);
    let diff: Vec<Diff> = rows
        .iter()
        .map(|r| {
            let new = (0..ncols)
                .map(|i| value_at(r, 6 + i, spec.columns[i].sql_type))
                .collect();
            let old = (0..ncols)
                .map(|i| value_at(r, 6 + ncols + i, spec.columns[i].sql_type))
                .collect();
            let existed: bool = r.get(3);
            (
                InvRow {
                    key: r.get(0),
                    device_id: r.get(1),
                    values: new,
                    raw: r.get(2),
                },
                existed.then(|| (r.get(5), old)),
            )
        })
        .collect();
    let staged: i64 =
        w.tx.query_one(
            &format!(
                "SELECT count(*) FROM stage_{} WHERE source = $1 AND scope = $2",
                spec.name
            ),
            &[&src, &scope],
        )
        .await
        .map_err(|e| w.err(e))?
        .get(0);
    w.out.unchanged += (staged as u64).saturating_sub(diff.len() as u64);
    let mut changes = Vec::new();
    let writes: Vec<Write<'_>> = diff
        .iter()
        .map(|(row, _)| Write {
            row,
            hash: stable_hash(row.raw.as_bytes()),
        })
        .collect();
    write_rows(w, table, end.sweep, &writes).await?;
    for (row, existing) in &diff {
        let hash = stable_hash(row.raw.as_bytes());
        w.push(spec.name, row.key.clone());
        let device = row.device_id.as_deref();
        let (change, disc): (Vec<Change>, String) = match existing {
            None => {
                w.out.inserted += 1;
                (
                    tables::created(table, &row.key, &row.values)
                        .into_iter()
                        .collect(),
                    format!("{hash:x}"),
                )
            }
            Some((Some(removed_at), _)) => {
                w.out.inserted += 1;
                (
                    tables::reappeared(table, &row.key, &row.values)
                        .into_iter()
                        .collect(),
                    format!("{hash:x}-{removed_at}"),
                )
            }
            Some((None, old)) => {
                w.out.updated += 1;
                (
                    tables::changed(table, &row.key, old, &row.values),
                    format!("{hash:x}"),
                )
            }
        };
        for c in change {
            changes.push(change_event(
                w.batch,
                table,
                &row.key,
                device,
                c,
                disc.clone(),
            ));
        }
    }
    // Removed: live rows in scope, there before the snapshot began and not written since,
    // that the snapshot did not contain.
    let (scope_filter, scope_val) = scope_sql(&end.scope, 4);
    let mut p: Vec<Param> = vec![
        Box::new(src.clone()),
        Box::new(started),
        Box::new(scope.clone()),
    ];
    if let Some(v) = scope_val {
        p.push(Box::new(v));
    }
    let gone =
        w.tx.query(
            &format!(
                "SELECT t.key, t.device_id, {cols} FROM {name} t
                 WHERE t.source = $1 AND t.removed_at IS NULL AND t.last_seen < $2{scope_filter}
                   AND NOT EXISTS (SELECT 1 FROM stage_{name} s
                                   WHERE s.source = t.source AND s.scope = $3 AND s.key = t.key)
                 ORDER BY t.key",
                name = spec.name,
                cols = typed_list(table, "t."),
            ),
            &refs(&p),
        )
        .await
        .map_err(|e| w.err(e))?;
    let gone: Vec<(String, Option<String>, Vec<Value>)> = gone
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                (0..ncols)
                    .map(|i| value_at(r, 2 + i, spec.columns[i].sql_type))
                    .collect(),
            )
        })
        .collect();
    if !gone.is_empty() {
        let keys: Vec<&str> = gone.iter().map(|g| g.0.as_str()).collect();
        w.tx.execute(
            &format!(
                "UPDATE {} SET removed_at = $3 WHERE source = $1 AND key = ANY($2)",
                spec.name
            ),
            &[&src, &keys, &w.batch.now],
        )
        .await
        .map_err(|e| w.err(e))?;
    }
    for (key, device_id, vals) in gone {
        w.push(spec.name, key.clone());
        w.out.removed += 1;
        if let Some(c) = tables::removed(table, &key, &vals) {
            changes.push(change_event(
                w.batch,
                table,
                &key,
                device_id.as_deref(),
                c,
                end.sweep.to_string(),
            ));
        }
    }
    w.out.changes += changes.len() as u64;
    w.events(&changes).await?;
    w.close_scope(spec.name, &scope).await?;
    w.set_snapshot_at(spec.name, &scope).await
}

/// SQLite's `end_sweep`: rows the sweep did not see count one more miss; rows at the table's
/// threshold are marked removed, and a removed device takes its per-device rows with it.
pub(super) async fn end_sweep(w: &mut W<'_>, end: &SweepEnd) -> Result<(), StoreError> {
    let spec = end.table.spec();
    let ncols = spec.columns.len();
    let src = w.batch.source.clone();
    let (scope, scope_val) = scope_sql(&end.scope, 3);
    let bind = |extra: i64| -> Vec<Param> {
        let mut v: Vec<Param> = vec![Box::new(src.clone()), Box::new(extra)];
        if let Some(s) = &scope_val {
            v.push(Box::new(s.clone()));
        }
        v
    };
    w.tx.execute(
        &format!(
            "UPDATE {} SET missing = missing + 1
             WHERE source = $1 AND removed_at IS NULL AND sweep < $2{scope}",
            spec.name
        ),
        &refs(&bind(end.sweep)),
    )
    .await
    .map_err(|e| w.err(e))?;
    let rows =
        w.tx.query(
            &format!(
                "SELECT key, device_id, {} FROM {}
                 WHERE source = $1 AND removed_at IS NULL AND missing >= $2{scope}
                 ORDER BY key",
                typed_list(end.table, ""),
                spec.name
            ),
            &refs(&bind(spec.remove_after_missed)),
        )
        .await
        .map_err(|e| w.err(e))?;
    let gone: Vec<(String, Option<String>, Vec<Value>)> = rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                (0..ncols)
                    .map(|i| value_at(r, 2 + i, spec.columns[i].sql_type))
                    .collect(),
            )
        })
        .collect();
    if gone.is_empty() {
        return Ok(());
    }
    let keys: Vec<&str> = gone.iter().map(|g| g.0.as_str()).collect();
    w.tx.execute(
        &format!(
            "UPDATE {} SET removed_at = $3 WHERE source = $1 AND key = ANY($2)",
            spec.name
        ),
        &[&src, &keys, &w.batch.now],
    )
    .await
    .map_err(|e| w.err(e))?;
    // A removed device takes its per-device rows with it (they would never be re-read);
    // the normalized app tables remove a device's installs themselves.
    let cascade: Vec<Table> = if end.table == Table::Devices {
        tables::ALL
            .into_iter()
            .filter(|t| t.spec().per_device && *t != Table::Apps)
            .collect()
    } else {
        Vec::new()
    };
    let mut events = Vec::new();
    for (key, device_id, vals) in gone {
        w.push(spec.name, key.clone());
        for t in &cascade {
            let n = t.spec().columns.len();
            let rows =
                w.tx.query(
                    &format!(
                        "UPDATE {} SET removed_at = $3
                         WHERE source = $1 AND device_id = $2 AND removed_at IS NULL
                         RETURNING key, {}",
                        t.name(),
                        typed_list(*t, "")
                    ),
                    &[&src, &key, &w.batch.now],
                )
                .await
                .map_err(|e| w.err(e))?;
            let mut removed: Vec<(String, Vec<Value>)> = rows
                .iter()
                .map(|r| {
                    (
                        r.get(0),
                        (0..n)
                            .map(|i| value_at(r, 1 + i, t.spec().columns[i].sql_type))
                            .collect(),
                    )
                })
                .collect();
            removed.sort_by(|a, b| a.0.cmp(&b.0));
            for (k, vals) in removed {
                w.push(t.name(), k.clone());
                if let Some(c) = tables::removed(*t, &k, &vals) {
                    events.push(change_event(
                        w.batch,
                        *t,
                        &k,
                        Some(&key),
                        c,
                        end.sweep.to_string(),
                    ));
                }
            }
        }
        if end.table == Table::Devices {
            super::apps::remove_device(w, &key).await?;
        }
        w.out.removed += 1;
        if let Some(c) = tables::removed(end.table, &key, &vals) {
            events.push(change_event(
                w.batch,
                end.table,
                &key,
                device_id.as_deref(),
                c,
                end.sweep.to_string(),
            ));
        }
    }
    w.out.changes += events.len() as u64;
    w.events(&events).await
}
