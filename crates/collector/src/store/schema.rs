//! Versioned migrations. `PRAGMA user_version` holds the number of migrations applied; each
//! migration runs in its own transaction, so a crash leaves the store at a whole version.
//!
//! **Every migration is literal SQL, frozen once it has shipped.** Nothing here is generated
//! from the table specs in `tables.rs` (a test checks that a migrated store's columns match
//! them, see `tests/migrate.rs`), so editing a spec can never change what an old migration did.
//! Append a new migration instead.

use rusqlite::Connection;

use super::StoreError;

/// 1: checkpoints, stream status, events (with FTS), the refresh queue, samples, and the
/// inventory tables. Inventory rows share `source, key, device_id, hash, first_seen,
/// last_seen, removed_at, sweep, missing`, then their typed columns, then `raw` last (SQLite
/// reads a row's columns in order, so every small column precedes the large JSON). They are
/// rowid tables with a unique (source, key) index, so new rows append.
const MIGRATION_1: &str = "
CREATE TABLE checkpoints (
    source TEXT NOT NULL,
    stream TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (source, stream)
) WITHOUT ROWID;

CREATE TABLE stream_status (
    source TEXT NOT NULL,
    stream TEXT NOT NULL,
    state TEXT NOT NULL,
    last_run_at INTEGER,
    last_success_at INTEGER,
    last_error_at INTEGER,
    last_error_kind TEXT,
    last_error_message TEXT,
    last_error_endpoint TEXT,
    records_total INTEGER NOT NULL DEFAULT 0,
    last_run_records INTEGER NOT NULL DEFAULT 0,
    last_run_requests INTEGER NOT NULL DEFAULT 0,
    next_run_at INTEGER,
    PRIMARY KEY (source, stream)
) WITHOUT ROWID;

CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    stream TEXT NOT NULL,
    category TEXT NOT NULL,
    event_type TEXT NOT NULL,
    uid TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    device_id TEXT,
    user_id TEXT,
    severity TEXT,
    hash INTEGER NOT NULL,
    collected_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    summary TEXT NOT NULL,
    raw TEXT NOT NULL,
    UNIQUE (source, stream, uid)
);
CREATE INDEX events_time ON events(occurred_at DESC, seq DESC);
CREATE INDEX events_source_time ON events(source, occurred_at DESC, seq DESC);
CREATE INDEX events_category_time ON events(category, occurred_at DESC, seq DESC);
CREATE INDEX events_type_time ON events(event_type, occurred_at DESC, seq DESC);
CREATE INDEX events_device_time ON events(device_id, occurred_at DESC, seq DESC)
    WHERE device_id IS NOT NULL;
CREATE INDEX events_user_time ON events(user_id, occurred_at DESC, seq DESC)
    WHERE user_id IS NOT NULL;

CREATE VIRTUAL TABLE events_fts USING fts5(
    summary, raw, content='events', content_rowid='seq', tokenize='unicode61'
);
CREATE TRIGGER events_ai AFTER INSERT ON events BEGIN
    INSERT INTO events_fts(rowid, summary, raw) VALUES (new.seq, new.summary, new.raw);
END;
CREATE TRIGGER events_ad AFTER DELETE ON events BEGIN
    INSERT INTO events_fts(events_fts, rowid, summary, raw)
        VALUES ('delete', old.seq, old.summary, old.raw);
END;
CREATE TRIGGER events_au AFTER UPDATE OF summary, raw ON events BEGIN
    INSERT INTO events_fts(events_fts, rowid, summary, raw)
        VALUES ('delete', old.seq, old.summary, old.raw);
    INSERT INTO events_fts(rowid, summary, raw) VALUES (new.seq, new.summary, new.raw);
END;

CREATE TABLE refresh_queue (
    source TEXT NOT NULL,
    device_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    queued_at INTEGER NOT NULL,
    PRIMARY KEY (source, device_id)
) WITHOUT ROWID;

CREATE TABLE budget_samples (
    source TEXT NOT NULL,
    hour INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    limit_hour INTEGER,
    share INTEGER,
    PRIMARY KEY (source, hour)
) WITHOUT ROWID;

CREATE TABLE record_samples (
    source TEXT NOT NULL,
    hour INTEGER NOT NULL,
    category TEXT NOT NULL,
    records INTEGER NOT NULL,
    PRIMARY KEY (source, hour, category)
) WITHOUT ROWID;

CREATE TABLE devices (
    source TEXT NOT NULL, key TEXT NOT NULL, device_id TEXT, hash INTEGER NOT NULL,
    first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, removed_at INTEGER,
    sweep INTEGER NOT NULL DEFAULT 0, missing INTEGER NOT NULL DEFAULT 0,
    device_name TEXT, serial_number TEXT, platform TEXT, model TEXT, os_version TEXT,
    blueprint_id TEXT, blueprint_name TEXT, user_id TEXT, user_email TEXT, user_name TEXT,
    asset_tag TEXT, tags TEXT, last_check_in INTEGER, mdm_enabled INTEGER,
    agent_installed INTEGER,
    raw TEXT NOT NULL,
    UNIQUE (source, key));
CREATE INDEX devices_device ON devices(source, device_id, first_seen);
CREATE INDEX devices_live ON devices(source, removed_at);

CREATE TABLE device_details (
    source TEXT NOT NULL, key TEXT NOT NULL, device_id TEXT, hash INTEGER NOT NULL,
    first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, removed_at INTEGER,
    sweep INTEGER NOT NULL DEFAULT 0, missing INTEGER NOT NULL DEFAULT 0,
    category TEXT, last_changed_at INTEGER, posture TEXT,
    raw TEXT NOT NULL,
    UNIQUE (source, key));
CREATE INDEX device_details_device ON device_details(source, device_id, first_seen);
CREATE INDEX device_details_live ON device_details(source, removed_at);

CREATE TABLE apps (
    source TEXT NOT NULL, key TEXT NOT NULL, device_id TEXT, hash INTEGER NOT NULL,
    first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, removed_at INTEGER,
    sweep INTEGER NOT NULL DEFAULT 0, missing INTEGER NOT NULL DEFAULT 0,
    name TEXT, bundle_id TEXT, version TEXT, path TEXT,
    raw TEXT NOT NULL,
    UNIQUE (source, key));
CREATE INDEX apps_device ON apps(source, device_id, first_seen);
CREATE INDEX apps_live ON apps(source, removed_at);

CREATE TABLE compliance (
    source TEXT NOT NULL, key TEXT NOT NULL, device_id TEXT, hash INTEGER NOT NULL,
    first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, removed_at INTEGER,
    sweep INTEGER NOT NULL DEFAULT 0, missing INTEGER NOT NULL DEFAULT 0,
    kind TEXT, item_id TEXT, name TEXT, status TEXT, reported_at INTEGER,
    raw TEXT NOT NULL,
    UNIQUE (source, key));
CREATE INDEX compliance_device ON compliance(source, device_id, first_seen);
CREATE INDEX compliance_live ON compliance(source, removed_at);

CREATE TABLE users (
    source TEXT NOT NULL, key TEXT NOT NULL, device_id TEXT, hash INTEGER NOT NULL,
    first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, removed_at INTEGER,
    sweep INTEGER NOT NULL DEFAULT 0, missing INTEGER NOT NULL DEFAULT 0,
    email TEXT, name TEXT, active INTEGER, archived INTEGER, department TEXT,
    job_title TEXT, device_count INTEGER,
    raw TEXT NOT NULL,
    UNIQUE (source, key));
CREATE INDEX users_device ON users(source, device_id, first_seen);
CREATE INDEX users_live ON users(source, removed_at);

CREATE TABLE blueprints (
    source TEXT NOT NULL, key TEXT NOT NULL, device_id TEXT, hash INTEGER NOT NULL,
    first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, removed_at INTEGER,
    sweep INTEGER NOT NULL DEFAULT 0, missing INTEGER NOT NULL DEFAULT 0,
    name TEXT, computers_count INTEGER,
    raw TEXT NOT NULL,
    UNIQUE (source, key));
CREATE INDEX blueprints_device ON blueprints(source, device_id, first_seen);
CREATE INDEX blueprints_live ON blueprints(source, removed_at);

CREATE TABLE tags (
    source TEXT NOT NULL, key TEXT NOT NULL, device_id TEXT, hash INTEGER NOT NULL,
    first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, removed_at INTEGER,
    sweep INTEGER NOT NULL DEFAULT 0, missing INTEGER NOT NULL DEFAULT 0,
    name TEXT,
    raw TEXT NOT NULL,
    UNIQUE (source, key));
CREATE INDEX tags_device ON tags(source, device_id, first_seen);
CREATE INDEX tags_live ON tags(source, removed_at);

CREATE TABLE ade_devices (
    source TEXT NOT NULL, key TEXT NOT NULL, device_id TEXT, hash INTEGER NOT NULL,
    first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, removed_at INTEGER,
    sweep INTEGER NOT NULL DEFAULT 0, missing INTEGER NOT NULL DEFAULT 0,
    serial_number TEXT, model TEXT, device_family TEXT, blueprint_id TEXT, user_id TEXT,
    mdm_device_id TEXT, profile_status TEXT,
    raw TEXT NOT NULL,
    UNIQUE (source, key));
CREATE INDEX ade_devices_device ON ade_devices(source, device_id, first_seen);
CREATE INDEX ade_devices_live ON ade_devices(source, removed_at);

CREATE TABLE vuln_detections (
    source TEXT NOT NULL, key TEXT NOT NULL, device_id TEXT, hash INTEGER NOT NULL,
    first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, removed_at INTEGER,
    sweep INTEGER NOT NULL DEFAULT 0, missing INTEGER NOT NULL DEFAULT 0,
    cve_id TEXT, bundle_id TEXT, software TEXT, version TEXT, severity TEXT,
    cvss_score REAL, detected_at INTEGER,
    raw TEXT NOT NULL,
    UNIQUE (source, key));
CREATE INDEX vuln_detections_device ON vuln_detections(source, device_id, first_seen);
CREATE INDEX vuln_detections_live ON vuln_detections(source, removed_at);

CREATE INDEX devices_platform ON devices(source, platform);
CREATE INDEX devices_checkin ON devices(source, last_check_in DESC);
CREATE INDEX apps_name_version ON apps(name, version);
CREATE INDEX apps_bundle_version ON apps(bundle_id, version);
CREATE INDEX compliance_status ON compliance(source, status);
CREATE INDEX users_email ON users(source, email);
";

/// 2: the web console: sources added in the console (tokens encrypted with the local key
/// file, see `web::crypto`) and the admin's password hash.
const MIGRATION_2: &str = "
CREATE TABLE console_sources (
    name TEXT PRIMARY KEY,
    endpoint TEXT NOT NULL,
    region TEXT NOT NULL,
    allow_custom INTEGER NOT NULL DEFAULT 0,
    token_last4 TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    budget_share REAL NOT NULL DEFAULT 0.5,
    hourly_limit INTEGER NOT NULL DEFAULT 10000,
    per_second INTEGER NOT NULL DEFAULT 10,
    streams TEXT NOT NULL,
    schedules TEXT NOT NULL DEFAULT '{}',
    filters TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    token_ct BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE console_admin (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    password_hash TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
";

/// 3: outputs: the outbox (one row per inventory row version and event version, written in
/// the batch's transaction, so `seq` orders everything a source produced), each output's
/// offset and counters, and the bounded dead-letter area.
const MIGRATION_3: &str = "
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    tbl TEXT NOT NULL,
    ref TEXT NOT NULL
);
CREATE INDEX outbox_source ON outbox(source, seq);
CREATE TABLE output_offsets (
    source TEXT NOT NULL,
    output TEXT NOT NULL,
    seq INTEGER NOT NULL DEFAULT 0,
    delivered INTEGER NOT NULL DEFAULT 0,
    dead_total INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    last_error_at INTEGER,
    last_success_at INTEGER,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (source, output)
) WITHOUT ROWID;
CREATE TABLE dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    output TEXT NOT NULL,
    seq INTEGER NOT NULL,
    record_id TEXT NOT NULL,
    status INTEGER,
    error TEXT NOT NULL,
    payload TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX dead_letters_output ON dead_letters(source, output, id);
";

/// 4: the normalized application inventory, writer-kept counters, outbox rows for whole
/// devices, and the explorer's indexes.
///
/// `apps` (one ~1.6 KB JSON row per install, most of it device fields) becomes:
/// - `app_devices`: one row per (source, device) with the device fields Prism repeats on
///   every app row (`ctx`, a JSON object) and the device's live app count;
/// - `app_titles`: the install key's app part (bundle id, else path, else name);
/// - `app_versions`: each distinct set of device-independent fields once (`fields`, a JSON
///   object; its exact text is the version's identity), with its live install count;
/// - `app_installs`: one narrow row per install: device, title, version, the three Prism
///   timestamps as microseconds (`tf` 0: `YYYY-MM-DD HH:MM:SS.ffffff+00:00`, 1: the same
///   with `T`; +2 when `updated_at` equals `last_changed_at`, +4 when `created_at` does:
///   that time is then not stored), and
///   `extra`, a JSON object of whatever does not fit those columns (times in another
///   format, or `__ctx`, device fields that differ from the device's). `last_seen` is NULL
///   while it equals `first_seen`. Keyed by (device, title) WITHOUT ROWID: the table is its
///   own key index.
///
/// The rebuilt record (ctx + fields + times + extra, keys sorted) is byte for byte the raw
/// row it came from; `tests/migrate.rs` checks that on a store written by version 3. A view
/// named `apps` keeps the old columns (without `raw`) for SQL that reads the file directly.
const MIGRATION_4: &str = r#"
CREATE TABLE app_devices (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    device_id TEXT NOT NULL,
    ctx TEXT NOT NULL DEFAULT '{}',
    live_apps INTEGER NOT NULL DEFAULT 0,
    -- The device's name in its ctx: what "devices with app X" sorts by.
    name TEXT,
    UNIQUE (source, device_id)
);
CREATE TABLE app_titles (
    id INTEGER PRIMARY KEY,
    ident TEXT NOT NULL UNIQUE
);
CREATE TABLE app_versions (
    id INTEGER PRIMARY KEY,
    title INTEGER NOT NULL,
    name TEXT,
    bundle_id TEXT,
    version TEXT,
    path TEXT,
    installs INTEGER NOT NULL DEFAULT 0,
    fields TEXT NOT NULL UNIQUE
);
CREATE INDEX app_versions_name ON app_versions(name, version);
CREATE INDEX app_devices_name ON app_devices(name, device_id);
CREATE INDEX app_versions_bundle ON app_versions(bundle_id, version);
CREATE TABLE app_installs (
    dev INTEGER NOT NULL,
    title INTEGER NOT NULL,
    ver INTEGER NOT NULL,
    created_us INTEGER,
    changed_us INTEGER,
    updated_us INTEGER,
    tf INTEGER,
    extra TEXT,
    -- The record version's hash when it was migrated from `apps` (NULL: derived from the
    -- row, `apps::install_hash`).
    hash INTEGER,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER,
    removed_at INTEGER,
    PRIMARY KEY (dev, title)
) WITHOUT ROWID;

-- Split each old row. `->` keeps each value's JSON text as written.
CREATE TEMP TABLE m4_rows AS
SELECT a.rowid AS id, a.source AS source,
       coalesce(a.device_id, substr(a.key, 1, instr(a.key, '|') - 1)) AS device_id,
       substr(a.key, instr(a.key, '|') + 1) AS ident,
       a.hash AS hash, a.first_seen AS first_seen, a.last_seen AS last_seen,
       a.removed_at AS removed_at, a.name AS name, a.bundle_id AS bundle_id,
       a.version AS version, a.path AS path,
       (SELECT json_group_object(j.key, json(a.raw -> j.fullkey)) FROM json_each(a.raw) j
         WHERE j.key IN ('asset_tag', 'blueprint_id', 'blueprint_name', 'count',
           'device__family', 'device__name', 'device__user_email', 'device__user_id',
           'device__user_name', 'device_id', 'last_collected_at', 'model_id',
           'serial_number', 'tags')) AS ctx,
       (SELECT json_group_object(j.key, json(a.raw -> j.fullkey)) FROM json_each(a.raw) j
         WHERE j.key NOT IN ('asset_tag', 'blueprint_id', 'blueprint_name', 'count',
           'device__family', 'device__name', 'device__user_email', 'device__user_id',
           'device__user_name', 'device_id', 'last_collected_at', 'model_id',
           'serial_number', 'tags', 'created_at', 'updated_at', 'last_changed_at')) AS fields,
       json_type(a.raw, '$.created_at') AS c_type, a.raw ->> '$.created_at' AS c_text,
       json_type(a.raw, '$.updated_at') AS u_type, a.raw ->> '$.updated_at' AS u_text,
       json_type(a.raw, '$.last_changed_at') AS l_type, a.raw ->> '$.last_changed_at' AS l_text,
       a.raw -> '$.created_at' AS c_json, a.raw -> '$.updated_at' AS u_json,
       a.raw -> '$.last_changed_at' AS l_json
FROM apps a;

-- A time fits a column when it is exactly `YYYY-MM-DD HH:MM:SS.ffffff+00:00` (tf 0) or the
-- same with `T` (tf 1) and names a real instant (it renders back to itself).
CREATE TEMP TABLE m4_times AS
SELECT id,
  CASE WHEN c_type = 'text' AND c_text GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]?[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]+00:00'
        AND substr(c_text, 11, 1) IN (' ', 'T')
        AND strftime('%Y-%m-%d %H:%M:%S', unixepoch(substr(c_text, 1, 10) || ' ' || substr(c_text, 12, 8)), 'unixepoch')
            = substr(c_text, 1, 10) || ' ' || substr(c_text, 12, 8)
       THEN (CASE substr(c_text, 11, 1) WHEN ' ' THEN 0 ELSE 1 END) END AS c_tf,
  CASE WHEN u_type = 'text' AND u_text GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]?[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]+00:00'
        AND substr(u_text, 11, 1) IN (' ', 'T')
        AND strftime('%Y-%m-%d %H:%M:%S', unixepoch(substr(u_text, 1, 10) || ' ' || substr(u_text, 12, 8)), 'unixepoch')
            = substr(u_text, 1, 10) || ' ' || substr(u_text, 12, 8)
       THEN (CASE substr(u_text, 11, 1) WHEN ' ' THEN 0 ELSE 1 END) END AS u_tf,
  CASE WHEN l_type = 'text' AND l_text GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]?[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]+00:00'
        AND substr(l_text, 11, 1) IN (' ', 'T')
        AND strftime('%Y-%m-%d %H:%M:%S', unixepoch(substr(l_text, 1, 10) || ' ' || substr(l_text, 12, 8)), 'unixepoch')
            = substr(l_text, 1, 10) || ' ' || substr(l_text, 12, 8)
       THEN (CASE substr(l_text, 11, 1) WHEN ' ' THEN 0 ELSE 1 END) END AS l_tf
FROM m4_rows;

-- One format per row: last_changed_at's, else created_at's, else updated_at's.
CREATE TEMP TABLE m4_tf AS
SELECT id, c_tf, u_tf, l_tf, coalesce(l_tf, c_tf, u_tf) AS tf FROM m4_times;

-- The device's fields: those of its newest row (live rows first).
INSERT INTO app_devices (source, device_id, ctx, name)
SELECT source, device_id, ctx, ctx ->> '$.device__name' FROM (
    SELECT source, device_id, coalesce(ctx, '{}') AS ctx,
           row_number() OVER (PARTITION BY source, device_id
                              ORDER BY removed_at IS NOT NULL, last_seen DESC, id DESC) AS rn
    FROM m4_rows)
WHERE rn = 1;

INSERT INTO app_titles (ident) SELECT DISTINCT ident FROM m4_rows;

INSERT INTO app_versions (title, name, bundle_id, version, path, fields)
SELECT t.id, r.name, r.bundle_id, r.version, r.path, r.fields
FROM (SELECT ident, name, bundle_id, version, path, coalesce(fields, '{}') AS fields,
             row_number() OVER (PARTITION BY coalesce(fields, '{}') ORDER BY id) AS rn
      FROM m4_rows) r
JOIN app_titles t ON t.ident = r.ident
WHERE r.rn = 1;

INSERT INTO app_installs (dev, title, ver, created_us, changed_us, updated_us, tf, extra,
                          hash, first_seen, last_seen, removed_at)
SELECT d.id, t.id, v.id,
  CASE WHEN f.c_tf = f.tf AND NOT (f.l_tf = f.tf AND r.c_text = r.l_text)
       THEN unixepoch(substr(r.c_text, 1, 10) || ' ' || substr(r.c_text, 12, 8)) * 1000000 + CAST(substr(r.c_text, 21, 6) AS INTEGER) END,
  CASE WHEN f.l_tf = f.tf THEN unixepoch(substr(r.l_text, 1, 10) || ' ' || substr(r.l_text, 12, 8)) * 1000000 + CAST(substr(r.l_text, 21, 6) AS INTEGER) END,
  CASE WHEN f.u_tf = f.tf AND NOT (f.l_tf = f.tf AND r.u_text = r.l_text)
       THEN unixepoch(substr(r.u_text, 1, 10) || ' ' || substr(r.u_text, 12, 8)) * 1000000 + CAST(substr(r.u_text, 21, 6) AS INTEGER) END,
  f.tf + CASE WHEN f.u_tf = f.tf AND f.l_tf = f.tf AND r.u_text = r.l_text THEN 2 ELSE 0 END
       + CASE WHEN f.c_tf = f.tf AND f.l_tf = f.tf AND r.c_text = r.l_text THEN 4 ELSE 0 END,
  (SELECT CASE WHEN count(*) = 0 THEN NULL ELSE json_group_object(k, json(v)) END FROM (
     SELECT '__ctx' AS k, coalesce(r.ctx, '{}') AS v WHERE coalesce(r.ctx, '{}') IS NOT d.ctx
     UNION ALL SELECT 'created_at', r.c_json WHERE r.c_type IS NOT NULL AND f.c_tf IS NOT f.tf
     UNION ALL SELECT 'last_changed_at', r.l_json WHERE r.l_type IS NOT NULL AND f.l_tf IS NOT f.tf
     UNION ALL SELECT 'updated_at', r.u_json WHERE r.u_type IS NOT NULL AND f.u_tf IS NOT f.tf)),
  r.hash, r.first_seen, CASE WHEN r.last_seen = r.first_seen THEN NULL ELSE r.last_seen END,
  r.removed_at
FROM m4_rows r
JOIN m4_tf f ON f.id = r.id
JOIN app_devices d ON d.source = r.source AND d.device_id = r.device_id
JOIN app_titles t ON t.ident = r.ident
JOIN app_versions v ON v.fields = coalesce(r.fields, '{}');


UPDATE app_devices SET live_apps =
    (SELECT count(*) FROM app_installs i WHERE i.dev = app_devices.id AND i.removed_at IS NULL);
UPDATE app_versions SET installs =
    (SELECT count(*) FROM app_installs i WHERE i.ver = app_versions.id AND i.removed_at IS NULL);

-- Outbox references to apps rows become `DEV:TITLE` (new ones may also be `DEV@AT`: the
-- installs of a device first seen by AT, written together); an output part-way through such a
-- device has delivered it up to title `part`.
ALTER TABLE output_offsets ADD COLUMN part INTEGER;
CREATE INDEX temp.m4_rows_id ON m4_rows(id);
UPDATE outbox SET ref = (SELECT d.id || ':' || t.id FROM apps a
                           JOIN m4_rows r ON r.id = a.rowid
                           JOIN app_devices d ON d.source = r.source AND d.device_id = r.device_id
                           JOIN app_titles t ON t.ident = r.ident
                         WHERE a.source = outbox.source AND a.key = outbox.ref)
WHERE tbl = 'apps' AND EXISTS (SELECT 1 FROM apps a WHERE a.source = outbox.source AND a.key = outbox.ref);

DROP TABLE apps;
DROP TABLE m4_rows;
DROP TABLE m4_times;
DROP TABLE m4_tf;

-- (`hash` is NULL in the view for installs written since: the store derives it.)
CREATE VIEW apps AS
SELECT d.source AS source, d.device_id || '|' || t.ident AS key, d.device_id AS device_id,
       i.hash AS hash, i.first_seen AS first_seen,
       coalesce(i.last_seen, i.first_seen) AS last_seen,
       i.removed_at AS removed_at, v.name AS name, v.bundle_id AS bundle_id,
       v.version AS version, v.path AS path, i.dev AS dev, i.title AS title
FROM app_installs i
JOIN app_devices d ON d.id = i.dev
JOIN app_titles t ON t.id = i.title
JOIN app_versions v ON v.id = i.ver;

-- When each snapshot table was last seen whole (rows a full export found unchanged are not
-- rewritten; `export --since` counts them as seen then).
CREATE TABLE snapshots (
    source TEXT NOT NULL,
    tbl TEXT NOT NULL,
    scope TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (source, tbl, scope)
) WITHOUT ROWID;
-- A store with apps has seen its app inventory whole.
INSERT INTO snapshots (source, tbl, scope, at)
SELECT d.source, 'apps', '*', max(coalesce(i.last_seen, i.first_seen)) + 1
FROM app_installs i JOIN app_devices d ON d.id = i.dev GROUP BY d.source;

-- The live app count per device, kept by the writer, for the devices page's "apps" sort.
ALTER TABLE devices ADD COLUMN app_count INTEGER NOT NULL DEFAULT 0;
UPDATE devices SET app_count = coalesce((SELECT d.live_apps FROM app_devices d
    WHERE d.source = devices.source AND d.device_id = devices.key), 0);

-- The explorer: every sort key of the devices page over live rows (a source filter reads the
-- same index); covering indexes for per-device counts and the users page.
CREATE INDEX devices_by_name ON devices(device_name, key) WHERE removed_at IS NULL;
CREATE INDEX devices_by_platform ON devices(platform, key) WHERE removed_at IS NULL;
CREATE INDEX devices_by_model ON devices(model, key) WHERE removed_at IS NULL;
CREATE INDEX devices_by_os ON devices(os_version, key) WHERE removed_at IS NULL;
CREATE INDEX devices_by_blueprint ON devices(blueprint_name, key) WHERE removed_at IS NULL;
CREATE INDEX devices_by_user ON devices(user_email, key) WHERE removed_at IS NULL;
CREATE INDEX devices_by_checkin ON devices(last_check_in, key) WHERE removed_at IS NULL;
CREATE INDEX devices_by_apps ON devices(app_count, key) WHERE removed_at IS NULL;
-- (`removed_at` is in it only so that the per-device counts read nothing but the index.)
-- Nothing reads the details by (source, removed_at): the device index serves its reads.
DROP INDEX device_details_live;
CREATE INDEX compliance_live_status ON compliance(source, device_id, status, removed_at)
    WHERE removed_at IS NULL;
CREATE INDEX users_live_email ON users(email, key) WHERE removed_at IS NULL;
-- The devices search reads these columns from the index alone (a search that matches
-- nothing would otherwise read every device row).
CREATE INDEX devices_search ON devices(device_name, serial_number, user_email, user_name,
    model, key, tags) WHERE removed_at IS NULL;
"#;

/// An app version's typed `version` is Prism's `version` ("7.9.11"), not its `short_version`
/// (the build number, "70911000", which earlier builds preferred): re-read from the stored
/// fields, so the next snapshot does not see every app as updated.
const MIGRATION_5: &str = r#"
UPDATE app_versions SET version = json_extract(fields, '$.version')
WHERE json_valid(fields)
  AND coalesce(json_extract(fields, '$.version'), '') <> ''
  AND version IS NOT json_extract(fields, '$.version');
"#;

/// When a per-device stream last read each device, whether or not the read found rows: a
/// device with no compliance items (an Android or Windows device, an Apple TV with none)
/// counted as never read and took a slot of every run. Filled from the rows for devices
/// that have them.
const MIGRATION_6: &str = r#"
CREATE TABLE IF NOT EXISTS device_reads (
    source TEXT NOT NULL,
    device_id TEXT NOT NULL,
    stream TEXT NOT NULL,
    read_at INTEGER NOT NULL,
    PRIMARY KEY (source, device_id, stream)
) WITHOUT ROWID;
INSERT OR IGNORE INTO device_reads (source, device_id, stream, read_at)
SELECT source, device_id, 'compliance', max(last_seen) FROM compliance
WHERE device_id IS NOT NULL GROUP BY source, device_id;
"#;

/// Search over values, not keys: the index held each event's raw JSON text, so a search for
/// "blueprint" found every vulnerability event by its `blueprint_name` key. It now holds the
/// summary and the record's leaf values (`json_tree`), contentless (what it indexes is not a
/// column of `events`), with deletes by rowid. Rebuilt from every stored event.
const MIGRATION_7: &str = r#"
DROP TRIGGER IF EXISTS events_ai;
DROP TRIGGER IF EXISTS events_ad;
DROP TRIGGER IF EXISTS events_au;
DROP TABLE IF EXISTS events_fts;
CREATE VIRTUAL TABLE events_fts USING fts5(
    summary, vals, content='', contentless_delete=1, tokenize='unicode61'
);
INSERT INTO events_fts(rowid, summary, vals)
SELECT seq, summary, CASE WHEN json_valid(raw)
    THEN (SELECT group_concat(j.value, ' ') FROM json_tree(events.raw) j
          WHERE j.type NOT IN ('object', 'array', 'null'))
    ELSE raw END
FROM events;
CREATE TRIGGER events_ai AFTER INSERT ON events BEGIN
    INSERT INTO events_fts(rowid, summary, vals) VALUES (new.seq, new.summary,
        CASE WHEN json_valid(new.raw)
            THEN (SELECT group_concat(j.value, ' ') FROM json_tree(new.raw) j
                  WHERE j.type NOT IN ('object', 'array', 'null'))
            ELSE new.raw END);
END;
CREATE TRIGGER events_ad AFTER DELETE ON events BEGIN
    DELETE FROM events_fts WHERE rowid = old.seq;
END;
CREATE TRIGGER events_au AFTER UPDATE OF summary, raw ON events BEGIN
    DELETE FROM events_fts WHERE rowid = old.seq;
    INSERT INTO events_fts(rowid, summary, vals) VALUES (new.seq, new.summary,
        CASE WHEN json_valid(new.raw)
            THEN (SELECT group_concat(j.value, ' ') FROM json_tree(new.raw) j
                  WHERE j.type NOT IN ('object', 'array', 'null'))
            ELSE new.raw END);
END;
"#;

/// 8: budget intelligence and token hygiene. `budget_samples.others` is what the other tools
/// on the tenant spent in the hour (the chart's second series); console sources may name their
/// token as Kandji shows it, with a rotation age and a reserve for other tools; `source_facts`
/// keeps small per-source findings (the last privilege review) as JSON.
const MIGRATION_8: &str = r#"
ALTER TABLE budget_samples ADD COLUMN others INTEGER;
ALTER TABLE console_sources ADD COLUMN token_name TEXT;
ALTER TABLE console_sources ADD COLUMN rotate_after_days INTEGER;
ALTER TABLE console_sources ADD COLUMN reserve_for_others REAL;
CREATE TABLE IF NOT EXISTS source_facts (
    source TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (source, key)
) WITHOUT ROWID;
"#;

/// Every migration in order. Append only: never edit one that has shipped.
const MIGRATIONS: [&str; 8] = [
    MIGRATION_1,
    MIGRATION_2,
    MIGRATION_3,
    MIGRATION_4,
    MIGRATION_5,
    MIGRATION_6,
    MIGRATION_7,
    MIGRATION_8,
];

/// The schema version this build writes.
pub const LATEST: u32 = MIGRATIONS.len() as u32;

/// The schema version this build writes.
pub fn latest_version() -> u32 {
    LATEST
}

/// The store's schema version.
pub fn version(conn: &Connection) -> Result<u32, StoreError> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

/// Runs a migration's SQL. An `ALTER TABLE t ADD COLUMN c …` line whose column exists is
/// skipped, so a migration that adds columns can run again over a store that has them (a
/// store set back to an older version, as the migration tests do); every other statement is
/// written to be re-runnable (`IF EXISTS` / `IF NOT EXISTS`).
fn apply(tx: &rusqlite::Transaction<'_>, sql: &str) -> rusqlite::Result<()> {
    let mut rest = String::new();
    for line in sql.lines() {
        let l = line.trim();
        let add = l
            .strip_prefix("ALTER TABLE ")
            .and_then(|x| x.split_once(" ADD COLUMN "))
            .map(|(t, c)| (t.trim(), c.split_whitespace().next().unwrap_or("")));
        match add {
            Some((table, column)) => {
                if !rest.trim().is_empty() {
                    tx.execute_batch(&rest)?;
                    rest.clear();
                }
                let exists: bool = tx.query_row(
                    "SELECT count(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
                    rusqlite::params![table, column],
                    |r| r.get(0),
                )?;
                if !exists {
                    tx.execute_batch(l)?;
                }
            }
            None => {
                rest.push_str(line);
                rest.push('\n');
            }
        }
    }
    if !rest.trim().is_empty() {
        tx.execute_batch(&rest)?;
    }
    Ok(())
}

pub fn migrate(conn: &mut Connection) -> Result<u32, StoreError> {
    let current = version(conn)?;
    if current > LATEST {
        return Err(StoreError::TooNew {
            path: std::path::PathBuf::new(),
            found: current,
            supported: LATEST,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = i as u32 + 1;
        let started = std::time::Instant::now();
        let failed = |e: rusqlite::Error| {
            // The error would quote the whole migration: say where it failed instead.
            let message = match &e {
                rusqlite::Error::SqlInputError { msg, offset, .. } => {
                    format!("{msg} (at byte {offset})")
                }
                other => other.to_string(),
            };
            StoreError::Invalid(format!(
                "the migration to schema version {version} failed, nothing was changed: {message}"
            ))
        };
        let tx = conn.transaction()?;
        apply(&tx, sql).map_err(failed)?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        tracing::debug!(
            version,
            ms = started.elapsed().as_millis() as u64,
            "store migrated"
        );
    }
    Ok(LATEST)
}
