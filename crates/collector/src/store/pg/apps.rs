//! The normalized app inventory on PostgreSQL: SQLite's `store/apps.rs` rules (baselines
//! without lookups or events, full exports staged and compared set-wise, deltas compared one
//! by one, the devices' and versions' live counters, `DEV@AT` / `DEV:TITLE` outbox rows), with
//! titles and versions kept per source.
//!
//! A batch resolves its ids in a few statements (devices, titles, versions), reads the stored
//! installs it compares in one, replays SQLite's row-by-row decisions in memory, then writes
//! the outcome: one upsert for every install written, one update for installs only seen
//! again, one for the counters.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use tokio_postgres::Row;

use super::super::apps::{AppInstall, AppVersion, install_hash, rebuild};
use super::super::tables::{self, Table};
use super::super::write::{AppUpsert, change_event};
use super::super::{EventRow, StoreError, stable_hash};
use super::PgStore;
use super::write::W;

fn typed_of(v: &AppVersion) -> Vec<rusqlite::types::Value> {
    let t = |s: &Option<String>| {
        s.clone()
            .map_or(rusqlite::types::Value::Null, rusqlite::types::Value::Text)
    };
    vec![t(&v.name), t(&v.bundle_id), t(&v.version), t(&v.path)]
}

/// What is stored of an install (to compare, to name events, and to write back).
#[derive(Clone)]
struct Stored {
    ver: i64,
    created_us: Option<i64>,
    changed_us: Option<i64>,
    updated_us: Option<i64>,
    tf: Option<i64>,
    extra: Option<String>,
    removed_at: Option<i64>,
    typed: Vec<rusqlite::types::Value>,
}

impl Stored {
    fn of(inst: &AppInstall, ver: i64) -> Stored {
        Stored {
            ver,
            created_us: inst.created_us,
            changed_us: inst.changed_us,
            updated_us: inst.updated_us,
            tf: inst.tf,
            extra: inst.extra.clone(),
            removed_at: None,
            typed: typed_of(&inst.version),
        }
    }

    fn same(&self, inst: &AppInstall, ver: i64) -> bool {
        self.ver == ver
            && self.created_us == inst.created_us
            && self.changed_us == inst.changed_us
            && self.updated_us == inst.updated_us
            && self.tf == inst.tf
            && self.extra == inst.extra
    }
}

/// An install's final row this batch writes (insert, or replace what is stored).
#[derive(Clone)]
struct Put {
    dev: i64,
    title: i64,
    ver: i64,
    inst: AppInstall,
}

/// What one batch (or one snapshot's end) does to the installs, in memory first.
#[derive(Default)]
struct Plan {
    state: HashMap<(i64, i64), Option<Stored>>,
    puts: Vec<Put>,
    put_at: HashMap<(i64, i64), usize>,
    touched: Vec<(i64, i64)>,
    counts_dev: HashMap<i64, i64>,
    counts_ver: HashMap<i64, i64>,
    changes: Vec<EventRow>,
    /// Devices whose installs this batch first saw (one outbox row each).
    devices: BTreeSet<i64>,
    /// Single installs written, in order.
    installs: Vec<(i64, i64)>,
}

impl Plan {
    fn live(&mut self, dev: i64, ver: i64, d: i64) {
        *self.counts_dev.entry(dev).or_default() += d;
        *self.counts_ver.entry(ver).or_default() += d;
    }

    fn put(&mut self, dev: i64, title: i64, ver: i64, inst: &AppInstall) {
        let p = Put {
            dev,
            title,
            ver,
            inst: inst.clone(),
        };
        match self.put_at.get(&(dev, title)) {
            Some(&i) => self.puts[i] = p,
            None => {
                self.put_at.insert((dev, title), self.puts.len());
                self.puts.push(p);
            }
        }
        self.state.insert((dev, title), Some(Stored::of(inst, ver)));
    }
}

/// The ids of a batch's devices (their fields stored when they changed), titles and
/// versions, created as needed.
struct Ids {
    devices: HashMap<String, i64>,
    titles: HashMap<String, i64>,
    versions: HashMap<Arc<str>, i64>,
}

async fn resolve(w: &W<'_>, rows: &[AppInstall]) -> Result<Ids, StoreError> {
    let src = &w.batch.source;
    // Devices: the last fields a device's rows carry are its fields.
    let mut ctx_of: HashMap<&str, &str> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    for r in rows {
        if ctx_of.insert(&r.device_id, &r.ctx).is_none() {
            order.push(&r.device_id);
        }
    }
    let found =
        w.tx.query(
            "SELECT device_id, id, ctx FROM app_devices WHERE source = $1 AND device_id = ANY($2)",
            &[src, &order],
        )
        .await
        .map_err(|e| w.err(e))?;
    let mut devices: HashMap<String, i64> = HashMap::new();
    let mut stale: Vec<(&str, &str)> = Vec::new();
    let mut have: HashMap<String, String> = HashMap::new();
    for r in &found {
        let d: String = r.get(0);
        devices.insert(d.clone(), r.get(1));
        have.insert(d, r.get(2));
    }
    for d in &order {
        let ctx = ctx_of[d];
        if have.get(*d).map(String::as_str) != Some(ctx) {
            stale.push((d, ctx));
        }
    }
    if !stale.is_empty() {
        let (ids, ctxs): (Vec<&str>, Vec<&str>) = stale.into_iter().unzip();
        let rows = w
            .tx
            .query(
                "INSERT INTO app_devices (source, device_id, ctx, name)
                 SELECT $1::TEXT, d, c, c::JSON ->> 'device__name' FROM unnest($2::TEXT[], $3::TEXT[]) AS u(d, c)
                 ON CONFLICT (source, device_id) DO UPDATE SET ctx = excluded.ctx, name = excluded.name
                 RETURNING device_id, id",
                &[src, &ids, &ctxs],
            )
            .await
            .map_err(|e| w.err(e))?;
        for r in &rows {
            devices.insert(r.get(0), r.get(1));
        }
    }
    // Titles.
    let mut idents: Vec<&str> = rows.iter().map(|r| r.ident.as_str()).collect();
    idents.sort_unstable();
    idents.dedup();
    w.tx.execute(
        "INSERT INTO app_titles (source, ident) SELECT $1::TEXT, i FROM unnest($2::TEXT[]) AS i
         ON CONFLICT (source, ident) DO NOTHING",
        &[src, &idents],
    )
    .await
    .map_err(|e| w.err(e))?;
    let titles: HashMap<String, i64> =
        w.tx.query(
            "SELECT ident, id FROM app_titles WHERE source = $1 AND ident = ANY($2)",
            &[src, &idents],
        )
        .await
        .map_err(|e| w.err(e))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    // Versions: each distinct set of fields once; a new one takes the title of the first
    // install that has it.
    let mut first: Vec<&AppInstall> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for r in rows {
        if seen.insert(&r.version.fields) {
            first.push(r);
        }
    }
    // Found and created in one statement: the server compares the texts (by their hash
    // first), and only ids come back.
    let mut versions: HashMap<Arc<str>, i64> = HashMap::new();
    if !first.is_empty() {
        let title_ids: Vec<i64> = first
            .iter()
            .map(|r| titles.get(&r.ident).copied().unwrap_or_default())
            .collect();
        let v = |f: fn(&AppVersion) -> &Option<String>| -> Vec<Option<&str>> {
            first.iter().map(|r| f(&r.version).as_deref()).collect()
        };
        let (names, bundles, vers, paths) = (
            v(|x| &x.name),
            v(|x| &x.bundle_id),
            v(|x| &x.version),
            v(|x| &x.path),
        );
        let fh: Vec<i64> = first.iter().map(|r| r.version.fields_hash).collect();
        let fields: Vec<&str> = first.iter().map(|r| &*r.version.fields).collect();
        let rows = w
            .tx
            .query(
                "WITH input AS (
                    SELECT * FROM unnest($2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[],
                                         $6::TEXT[], $7::BIGINT[], $8::TEXT[])
                        WITH ORDINALITY AS u(t, n, b, v, p, h, f, o)),
                 found AS (
                    SELECT i.o, a.id FROM input i
                    JOIN app_versions a ON a.source = $1 AND a.fields_hash = i.h AND a.fields = i.f),
                 created AS (
                    INSERT INTO app_versions (source, title, name, bundle_id, version, path,
                        fields_hash, fields)
                    SELECT $1::TEXT, t, n, b, v, p, h, f FROM input i
                    WHERE NOT EXISTS (SELECT 1 FROM found WHERE found.o = i.o)
                    ORDER BY o
                    RETURNING id, fields_hash, fields)
                 SELECT o, id FROM found
                 UNION ALL
                 SELECT i.o, c.id FROM created c JOIN input i ON i.h = c.fields_hash AND i.f = c.fields",
                &[src, &title_ids, &names, &bundles, &vers, &paths, &fh, &fields],
            )
            .await
            .map_err(|e| w.err(e))?;
        for r in &rows {
            let o: i64 = r.get(0);
            if let Some(inst) = usize::try_from(o - 1).ok().and_then(|i| first.get(i)) {
                versions.insert(inst.version.fields.clone(), r.get(1));
            }
        }
    }
    Ok(Ids {
        devices,
        titles,
        versions,
    })
}

fn stored_of(r: &Row, at: usize) -> Stored {
    let t = |i: usize| {
        r.get::<_, Option<String>>(at + i)
            .map_or(rusqlite::types::Value::Null, rusqlite::types::Value::Text)
    };
    Stored {
        ver: r.get(at),
        created_us: r.get(at + 1),
        changed_us: r.get(at + 2),
        updated_us: r.get(at + 3),
        tf: r.get(at + 4),
        extra: r.get(at + 5),
        removed_at: r.get(at + 6),
        typed: vec![t(7), t(8), t(9), t(10)],
    }
}

const STORED_COLS: &str = "i.ver, i.created_us, i.changed_us, i.updated_us, i.tf, i.extra,
    i.removed_at, v.name, v.bundle_id, v.version, v.path";

/// SQLite's `apply_one`: compares one install with what is stored and plans the difference,
/// with its change event and outbox row. `from_snapshot`: part of a full snapshot (an
/// unchanged row is left as it is), else a delta (which touches `last_seen`).
fn apply_one(
    w: &mut W<'_>,
    plan: &mut Plan,
    (dev, title, ver): (i64, i64, i64),
    inst: &AppInstall,
    from_snapshot: bool,
) {
    let key = inst.key();
    let device = Some(inst.device_id.as_str());
    let hash = inst.hash();
    let existing = plan.state.get(&(dev, title)).cloned().flatten();
    match existing {
        Some(s) if s.removed_at.is_none() && s.same(inst, ver) => {
            if !from_snapshot {
                plan.touched.push((dev, title));
            }
            w.out.unchanged += 1;
        }
        None => {
            plan.put(dev, title, ver, inst);
            plan.installs.push((dev, title));
            plan.live(dev, ver, 1);
            w.out.inserted += 1;
            if let Some(c) = tables::created(Table::Apps, &key, &inst.typed()) {
                let disc = format!("{hash:x}");
                plan.changes
                    .push(change_event(w.batch, Table::Apps, &key, device, c, disc));
            }
        }
        Some(s) => {
            plan.put(dev, title, ver, inst);
            plan.installs.push((dev, title));
            match s.removed_at {
                Some(removed_at) => {
                    plan.live(dev, ver, 1);
                    w.out.inserted += 1;
                    if let Some(c) = tables::created(Table::Apps, &key, &inst.typed()) {
                        let disc = format!("{hash:x}-{removed_at}");
                        plan.changes.push(change_event(
                            w.batch,
                            Table::Apps,
                            &key,
                            device,
                            c,
                            disc,
                        ));
                    }
                }
                None => {
                    if s.ver != ver {
                        plan.live(dev, s.ver, -1);
                        plan.live(dev, ver, 1);
                    }
                    w.out.updated += 1;
                    for c in tables::changed(Table::Apps, &key, &s.typed, &inst.typed()) {
                        let disc = format!("{hash:x}");
                        plan.changes.push(change_event(
                            w.batch,
                            Table::Apps,
                            &key,
                            device,
                            c,
                            disc,
                        ));
                    }
                }
            }
        }
    }
}

/// Writes what a plan decided: installs, touches, outbox rows, counters, events.
async fn execute(w: &mut W<'_>, mut plan: Plan, removed: &[(i64, i64)]) -> Result<(), StoreError> {
    let src = w.batch.source.clone();
    let now = w.batch.now;
    if !plan.puts.is_empty() {
        let n = plan.puts.len();
        let mut dev = Vec::with_capacity(n);
        let mut title = Vec::with_capacity(n);
        let mut ver = Vec::with_capacity(n);
        let mut c = Vec::with_capacity(n);
        let mut ch = Vec::with_capacity(n);
        let mut u = Vec::with_capacity(n);
        let mut tf = Vec::with_capacity(n);
        let mut extra: Vec<Option<&str>> = Vec::with_capacity(n);
        for p in &plan.puts {
            dev.push(p.dev);
            title.push(p.title);
            ver.push(p.ver);
            c.push(p.inst.created_us);
            ch.push(p.inst.changed_us);
            u.push(p.inst.updated_us);
            tf.push(p.inst.tf);
            extra.push(p.inst.extra.as_deref());
        }
        // A new install: first seen now. One already stored (even removed): replaced, seen
        // now, live again, its migrated hash dropped (the row says what it is).
        w.tx.execute(
            "INSERT INTO app_installs (source, dev, title, ver, created_us, changed_us, updated_us,
               tf, extra, first_seen)
             SELECT $1::TEXT, d, t, v, c, ch, u, f, x, $2::BIGINT
             FROM unnest($3::BIGINT[], $4::BIGINT[], $5::BIGINT[], $6::BIGINT[], $7::BIGINT[],
                         $8::BIGINT[], $9::BIGINT[], $10::TEXT[]) AS u(d, t, v, c, ch, u, f, x)
             ON CONFLICT (source, dev, title) DO UPDATE SET ver = excluded.ver,
               created_us = excluded.created_us, changed_us = excluded.changed_us,
               updated_us = excluded.updated_us, tf = excluded.tf, extra = excluded.extra,
               hash = NULL, last_seen = $2, removed_at = NULL",
            &[&src, &now, &dev, &title, &ver, &c, &ch, &u, &tf, &extra],
        )
        .await
        .map_err(|e| w.err(e))?;
    }
    plan.touched.retain(|k| !plan.put_at.contains_key(k));
    if !plan.touched.is_empty() {
        let (d, t): (Vec<i64>, Vec<i64>) = plan.touched.iter().copied().unzip();
        w.tx.execute(
            "UPDATE app_installs i SET last_seen = $2 FROM unnest($3::BIGINT[], $4::BIGINT[]) AS u(d, t)
             WHERE i.source = $1 AND i.dev = u.d AND i.title = u.t",
            &[&src, &now, &d, &t],
        )
        .await
        .map_err(|e| w.err(e))?;
    }
    if !removed.is_empty() {
        let (d, t): (Vec<i64>, Vec<i64>) = removed.iter().copied().unzip();
        w.tx.execute(
            "UPDATE app_installs i SET removed_at = $2 FROM unnest($3::BIGINT[], $4::BIGINT[]) AS u(d, t)
             WHERE i.source = $1 AND i.dev = u.d AND i.title = u.t",
            &[&src, &now, &d, &t],
        )
        .await
        .map_err(|e| w.err(e))?;
    }
    // Outbox rows: `DEV@AT` for a device's installs first seen now, `DEV:TITLE` for one.
    for dev in &plan.devices {
        w.push("apps", format!("{dev}@{now}"));
    }
    for (dev, title) in &plan.installs {
        if !plan.devices.contains(dev) {
            w.push("apps", format!("{dev}:{title}"));
        }
    }
    apply_counts(w, &plan.counts_dev, &plan.counts_ver).await?;
    let changes = std::mem::take(&mut plan.changes);
    w.out.changes += changes.len() as u64;
    w.events(&changes).await
}

/// The devices' and versions' live counters, and `devices.app_count` beside them.
async fn apply_counts(
    w: &W<'_>,
    devs: &HashMap<i64, i64>,
    vers: &HashMap<i64, i64>,
) -> Result<(), StoreError> {
    let src = &w.batch.source;
    let (ids, ds): (Vec<i64>, Vec<i64>) = devs.iter().filter(|(_, d)| **d != 0).unzip();
    if !ids.is_empty() {
        let rows =
            w.tx.query(
                "UPDATE app_devices a SET live_apps = a.live_apps + u.d
                 FROM unnest($2::BIGINT[], $3::BIGINT[]) AS u(id, d)
                 WHERE a.source = $1 AND a.id = u.id
                 RETURNING a.device_id, a.live_apps",
                &[src, &ids, &ds],
            )
            .await
            .map_err(|e| w.err(e))?;
        let (keys, counts): (Vec<String>, Vec<i64>) = rows
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
            .unzip();
        w.tx.execute(
            "UPDATE devices d SET app_count = u.n FROM unnest($2::TEXT[], $3::BIGINT[]) AS u(k, n)
             WHERE d.source = $1 AND d.key = u.k AND d.app_count <> u.n",
            &[src, &keys, &counts],
        )
        .await
        .map_err(|e| w.err(e))?;
    }
    let (ids, ds): (Vec<i64>, Vec<i64>) = vers.iter().filter(|(_, d)| **d != 0).unzip();
    if !ids.is_empty() {
        w.tx.execute(
            "UPDATE app_versions v SET installs = v.installs + u.d
             FROM unnest($2::BIGINT[], $3::BIGINT[]) AS u(id, d)
             WHERE v.source = $1 AND v.id = u.id",
            &[src, &ids, &ds],
        )
        .await
        .map_err(|e| w.err(e))?;
    }
    Ok(())
}

/// SQLite's `apps::upsert`: full-snapshot rows of devices the store already knows go to the
/// stage; rows of devices it does not know yet (a baseline) insert without events; deltas
/// are compared one by one.
pub(super) async fn upsert(w: &mut W<'_>, up: &AppUpsert) -> Result<(), StoreError> {
    let rows = &up.rows;
    if rows.is_empty() {
        return Ok(());
    }
    let src = w.batch.source.clone();
    let snapshot = up.sweep > 0;
    if snapshot {
        w.open_scope("apps", "*", up.sweep, up.started_at).await?;
    }
    let known_before = w.snapshot_at("apps", "*").await?;
    let ids = resolve(w, rows).await?;
    let resolved: Vec<(i64, i64, i64)> = rows
        .iter()
        .map(|r| {
            (
                ids.devices.get(&r.device_id).copied().unwrap_or_default(),
                ids.titles.get(&r.ident).copied().unwrap_or_default(),
                ids.versions
                    .get(&r.version.fields)
                    .copied()
                    .unwrap_or_default(),
            )
        })
        .collect();
    // Known: the device had installs before this walk began, and the source's app inventory
    // was once seen whole.
    let known: HashSet<i64> = if known_before.is_some() {
        let mut devs: Vec<i64> = resolved.iter().map(|r| r.0).collect();
        devs.sort_unstable();
        devs.dedup();
        w.tx.query(
            "SELECT DISTINCT dev FROM app_installs WHERE source = $1 AND dev = ANY($2)
               AND first_seen < $3",
            &[&src, &devs, &up.started_at],
        )
        .await
        .map_err(|e| w.err(e))?
        .iter()
        .map(|r| r.get(0))
        .collect()
    } else {
        HashSet::new()
    };
    // What is stored of every install compared or inserted here: of devices that have any
    // install rows at all (a first sync's devices have none, and their rows insert blind, as
    // SQLite's do).
    let mut devs: Vec<i64> = resolved.iter().map(|r| r.0).collect();
    devs.sort_unstable();
    devs.dedup();
    let with_rows: HashSet<i64> = if known.len() == devs.len() {
        known.clone()
    } else {
        w.tx.query(
            "SELECT DISTINCT dev FROM app_installs WHERE source = $1 AND dev = ANY($2)",
            &[&src, &devs],
        )
        .await
        .map_err(|e| w.err(e))?
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    let mut plan = Plan::default();
    let (qd, qt): (Vec<i64>, Vec<i64>) = resolved
        .iter()
        .filter(|(d, _, _)| with_rows.contains(d) && !(snapshot && known.contains(d)))
        .map(|(d, t, _)| (*d, *t))
        .unzip();
    if !qd.is_empty() {
        for r in
            w.tx.query(
                &format!(
                    "SELECT i.dev, i.title, {STORED_COLS}
                     FROM app_installs i JOIN app_versions v ON v.source = i.source AND v.id = i.ver
                     WHERE i.source = $1
                       AND (i.dev, i.title) IN (SELECT * FROM unnest($2::BIGINT[], $3::BIGINT[]))"
                ),
                &[&src, &qd, &qt],
            )
            .await
            .map_err(|e| w.err(e))?
        {
            plan.state
                .insert((r.get(0), r.get(1)), Some(stored_of(&r, 2)));
        }
    }
    let mut stage: Vec<usize> = Vec::new();
    for (i, inst) in rows.iter().enumerate() {
        let (dev, title, ver) = resolved[i];
        if !known.contains(&dev) {
            // A baseline: no event. A key an interrupted attempt left (or an earlier row of
            // this batch) is replaced and named on its own.
            match plan.state.get(&(dev, title)).cloned().flatten() {
                None => {
                    plan.put(dev, title, ver, inst);
                    plan.devices.insert(dev);
                }
                Some(old) => {
                    if old.removed_at.is_none() {
                        plan.live(dev, old.ver, -1);
                    }
                    plan.put(dev, title, ver, inst);
                    plan.installs.push((dev, title));
                }
            }
            plan.live(dev, ver, 1);
            w.out.inserted += 1;
            continue;
        }
        if snapshot {
            stage.push(i);
            continue;
        }
        apply_one(w, &mut plan, (dev, title, ver), inst, false);
    }
    if !stage.is_empty() {
        // The last row of a key wins (SQLite's INSERT OR REPLACE).
        let mut last: HashMap<(i64, i64), usize> = HashMap::new();
        for i in stage {
            last.insert((resolved[i].0, resolved[i].1), i);
        }
        let mut keep: Vec<usize> = last.into_values().collect();
        keep.sort_unstable();
        let n = keep.len();
        let (mut d, mut t, mut v) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut c, mut ch, mut u, mut tf) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let mut extra: Vec<Option<&str>> = Vec::with_capacity(n);
        let mut hash = Vec::with_capacity(n);
        let mut ident: Vec<&str> = Vec::with_capacity(n);
        for i in keep {
            let inst = &rows[i];
            d.push(resolved[i].0);
            t.push(resolved[i].1);
            v.push(resolved[i].2);
            c.push(inst.created_us);
            ch.push(inst.changed_us);
            u.push(inst.updated_us);
            tf.push(inst.tf);
            extra.push(inst.extra.as_deref());
            hash.push(inst.hash());
            ident.push(&inst.ident);
        }
        w.tx.execute(
            "INSERT INTO stage_apps (source, dev, title, ver, created_us, changed_us, updated_us,
               tf, extra, hash, ident)
             SELECT $1::TEXT, d, t, v, c, ch, u, f, x, h, i
             FROM unnest($2::BIGINT[], $3::BIGINT[], $4::BIGINT[], $5::BIGINT[], $6::BIGINT[],
                         $7::BIGINT[], $8::BIGINT[], $9::TEXT[], $10::BIGINT[], $11::TEXT[])
                  AS u(d, t, v, c, ch, u, f, x, h, i)
             ON CONFLICT (source, dev, title) DO UPDATE SET ver = excluded.ver,
               created_us = excluded.created_us, changed_us = excluded.changed_us,
               updated_us = excluded.updated_us, tf = excluded.tf, extra = excluded.extra,
               hash = excluded.hash, ident = excluded.ident",
            &[&src, &d, &t, &v, &c, &ch, &u, &tf, &extra, &hash, &ident],
        )
        .await
        .map_err(|e| w.err(e))?;
    }
    execute(w, plan, &[]).await
}

/// SQLite's `apps::end_snapshot`: staged installs that differ from the store are written
/// (with `app_installed`/`app_updated` events), live installs the snapshot did not contain
/// are marked removed (`app_removed`); then the stage is emptied.
pub(super) async fn end_snapshot(w: &mut W<'_>, sweep: i64) -> Result<(), StoreError> {
    let src = w.batch.source.clone();
    let started = w.stage_started("apps", "*", sweep).await?.unwrap_or(sweep);
    w.open_scope("apps", "*", sweep, started).await?;
    let rows = w
        .tx
        .query(
            &format!(
                "SELECT s.dev, s.title, s.ver, s.created_us, s.changed_us, s.updated_us, s.tf,
                        s.extra, s.ident, d.device_id, v.fields, v.name, v.bundle_id, v.version,
                        v.path, d.ctx, i.ver IS NOT NULL,
                        {}
                 FROM stage_apps s
                 JOIN app_devices d ON d.source = s.source AND d.id = s.dev
                 JOIN app_versions v ON v.source = s.source AND v.id = s.ver
                 LEFT JOIN app_installs i ON i.source = s.source AND i.dev = s.dev AND i.title = s.title
                 LEFT JOIN app_versions iv ON iv.source = i.source AND iv.id = i.ver
                 WHERE s.source = $1
                   AND (i.ver IS NULL OR i.removed_at IS NOT NULL OR i.ver <> s.ver
                        OR i.created_us IS DISTINCT FROM s.created_us
                        OR i.changed_us IS DISTINCT FROM s.changed_us
                        OR i.updated_us IS DISTINCT FROM s.updated_us
                        OR i.tf IS DISTINCT FROM s.tf OR i.extra IS DISTINCT FROM s.extra)
                 ORDER BY s.dev, s.title",
                STORED_COLS.replace("v.", "iv.")
            ),
            &[&src],
        )
        .await
        .map_err(|e| w.err(e))?;
    let staged: i64 =
        w.tx.query_one("SELECT count(*) FROM stage_apps WHERE source = $1", &[&src])
            .await
            .map_err(|e| w.err(e))?
            .get(0);
    w.out.unchanged += (staged as u64).saturating_sub(rows.len() as u64);
    let mut plan = Plan::default();
    let mut diff: Vec<((i64, i64, i64), AppInstall)> = Vec::with_capacity(rows.len());
    for r in &rows {
        let fields: String = r.get(10);
        let version = AppVersion {
            fields_hash: stable_hash(fields.as_bytes()),
            fields: Arc::from(fields),
            name: r.get(11),
            bundle_id: r.get(12),
            version: r.get(13),
            path: r.get(14),
        };
        let inst = AppInstall {
            device_id: r.get(9),
            ident: r.get(8),
            version: Arc::new(version),
            ctx: Arc::from(r.get::<_, String>(15)),
            created_us: r.get(3),
            changed_us: r.get(4),
            updated_us: r.get(5),
            tf: r.get(6),
            extra: r.get(7),
        };
        let ids = (r.get(0), r.get(1), r.get(2));
        let existed: bool = r.get(16);
        plan.state
            .insert((ids.0, ids.1), existed.then(|| stored_of(r, 17)));
        diff.push((ids, inst));
    }
    for (ids, inst) in &diff {
        apply_one(w, &mut plan, *ids, inst, true);
    }
    // Removed: live installs of this source that were there before the snapshot started,
    // were not written since, and are not in it. (Written installs are not yet in the
    // table: they are in the stage, so they are never taken for gone.)
    let gone = w
        .tx
        .query(
            "SELECT i.title, i.dev, i.ver, d.device_id, t.ident, v.name, v.bundle_id, v.version, v.path
             FROM app_installs i
             JOIN app_devices d ON d.source = i.source AND d.id = i.dev
             JOIN app_titles t ON t.source = i.source AND t.id = i.title
             JOIN app_versions v ON v.source = i.source AND v.id = i.ver
             WHERE i.source = $1 AND i.removed_at IS NULL
               AND coalesce(i.last_seen, i.first_seen) < $2
               AND NOT EXISTS (SELECT 1 FROM stage_apps s
                               WHERE s.source = $1 AND s.dev = i.dev AND s.title = i.title)
             ORDER BY i.dev, i.title",
            &[&src, &started],
        )
        .await
        .map_err(|e| w.err(e))?;
    let mut removed = Vec::with_capacity(gone.len());
    for g in &gone {
        let (title, dev, ver): (i64, i64, i64) = (g.get(0), g.get(1), g.get(2));
        let device_id: String = g.get(3);
        let ident: String = g.get(4);
        removed.push((dev, title));
        plan.installs.push((dev, title));
        plan.live(dev, ver, -1);
        w.out.removed += 1;
        let key = format!("{device_id}|{ident}");
        let vals = typed_of(&AppVersion {
            fields: Arc::from(""),
            fields_hash: 0,
            name: g.get(5),
            bundle_id: g.get(6),
            version: g.get(7),
            path: g.get(8),
        });
        if let Some(c) = tables::removed(Table::Apps, &key, &vals) {
            plan.changes.push(change_event(
                w.batch,
                Table::Apps,
                &key,
                Some(&device_id),
                c,
                sweep.to_string(),
            ));
        }
    }
    execute(w, plan, &removed).await?;
    w.close_scope("apps", "*").await?;
    w.set_snapshot_at("apps", "*").await
}

/// Marks every live install of a removed device removed (the device sweep's cascade), each
/// with its outbox row.
pub(super) async fn remove_device(w: &mut W<'_>, device_id: &str) -> Result<(), StoreError> {
    let src = w.batch.source.clone();
    let dev: Option<i64> =
        w.tx.query_opt(
            "SELECT id FROM app_devices WHERE source = $1 AND device_id = $2",
            &[&src, &device_id],
        )
        .await
        .map_err(|e| w.err(e))?
        .map(|r| r.get(0));
    let Some(dev) = dev else {
        return Ok(());
    };
    let mut gone: Vec<(i64, i64)> =
        w.tx.query(
            "UPDATE app_installs SET removed_at = $3 WHERE source = $1 AND dev = $2
               AND removed_at IS NULL RETURNING title, ver",
            &[&src, &dev, &w.batch.now],
        )
        .await
        .map_err(|e| w.err(e))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    gone.sort_unstable();
    let mut devs = HashMap::new();
    let mut vers: HashMap<i64, i64> = HashMap::new();
    for (title, ver) in &gone {
        *devs.entry(dev).or_default() -= 1;
        *vers.entry(*ver).or_default() -= 1;
        w.push("apps", format!("{dev}:{title}"));
    }
    apply_counts(w, &devs, &vers).await
}

/// The Prism-shaped record of one install, and its key, device, hash and times.
pub(super) struct RebuiltRow {
    pub key: String,
    pub device_id: String,
    pub hash: i64,
    pub last_seen: i64,
    pub removed_at: Option<i64>,
    pub raw: serde_json::Value,
}

pub(super) const REBUILD_SELECT: &str = "SELECT i.title, d.device_id, t.ident, i.hash,
        coalesce(i.last_seen, i.first_seen),
        i.removed_at, d.ctx, v.fields, i.created_us, i.changed_us, i.updated_us, i.tf, i.extra
    FROM app_installs i
    JOIN app_devices d ON d.source = i.source AND d.id = i.dev
    JOIN app_titles t ON t.source = i.source AND t.id = i.title
    JOIN app_versions v ON v.source = i.source AND v.id = i.ver";

pub(super) fn rebuilt(r: &Row) -> (i64, RebuiltRow) {
    let device_id: String = r.get(1);
    let ident: String = r.get(2);
    let ctx: String = r.get(6);
    let fields: String = r.get(7);
    let extra: Option<String> = r.get(12);
    let times: [Option<i64>; 4] = [r.get(8), r.get(9), r.get(10), r.get(11)];
    let hash = match r.get::<_, Option<i64>>(3) {
        Some(h) => h,
        None => install_hash(
            stable_hash(fields.as_bytes()),
            &ident,
            times,
            extra.as_deref(),
        ),
    };
    (
        r.get(0),
        RebuiltRow {
            key: format!("{device_id}|{ident}"),
            device_id,
            hash,
            last_seen: r.get(4),
            removed_at: r.get(5),
            raw: rebuild(
                &ctx,
                &fields,
                [times[0], times[1], times[2]],
                times[3],
                extra.as_deref(),
            ),
        },
    )
}

impl PgStore {
    /// One install by (device, title) of a source, rebuilt.
    pub(super) async fn app_by_ids(
        &self,
        c: &tokio_postgres::Client,
        source: &str,
        dev: i64,
        title: i64,
    ) -> Result<Option<RebuiltRow>, StoreError> {
        Ok(c.query_opt(
            &format!("{REBUILD_SELECT} WHERE i.source = $1 AND i.dev = $2 AND i.title = $3"),
            &[&source, &dev, &title],
        )
        .await
        .map_err(|e| self.err(e))?
        .map(|r| rebuilt(&r).1))
    }

    /// A device's installs first seen at `seen_at`, with titles after `after`, rebuilt, in
    /// title order, at most `limit` (title, row).
    pub(super) async fn apps_by_device(
        &self,
        c: &tokio_postgres::Client,
        source: &str,
        (dev, seen_at): (i64, i64),
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, RebuiltRow)>, StoreError> {
        Ok(c.query(
            &format!(
                "{REBUILD_SELECT} WHERE i.source = $1 AND i.dev = $2 AND i.title > $3
                       AND i.first_seen = $5
                     ORDER BY i.title LIMIT $4"
            ),
            &[&source, &dev, &after, &(limit as i64), &seen_at],
        )
        .await
        .map_err(|e| self.err(e))?
        .iter()
        .map(rebuilt)
        .collect())
    }

    /// The install with key `device|ident` of a source, rebuilt.
    pub(super) async fn app_by_key(
        &self,
        c: &tokio_postgres::Client,
        source: &str,
        key: &str,
    ) -> Result<Option<RebuiltRow>, StoreError> {
        let Some((device, ident)) = key.split_once('|') else {
            return Ok(None);
        };
        Ok(c.query_opt(
            &format!("{REBUILD_SELECT} WHERE i.source = $1 AND d.device_id = $2 AND t.ident = $3"),
            &[&source, &device, &ident],
        )
        .await
        .map_err(|e| self.err(e))?
        .map(|r| rebuilt(&r).1))
    }
}
