//! The PostgreSQL schema, as literal, frozen, versioned migrations.
//!
//! Append only: a migration that has shipped is never edited; a change is a new entry.
//! [`super::PgStore::connect`] applies the missing ones in order, each in its own transaction
//! under a transaction-level advisory lock, so replicas starting together never race: the
//! second waits for the first and then finds nothing to do.
//!
//! **Partitioning.** Every large table (events, outbox, checkpoints, samples) is
//! `PARTITION BY HASH (source)` into [`PARTITIONS`] partitions, and every index leads with
//! `source`. One tenant's query names its source, so the planner prunes to one partition and
//! walks an index there: it never scans another tenant's rows. Hash rather than one partition
//! per source: 10,000 tenants as 10,000 list partitions per table would put 50,000 relations
//! in the catalogue and slow every plan (docs/SCALE.md has the arithmetic).
//!
//! Records' `raw` is `JSON`, not `JSONB`: it keeps the text exactly as collected (key order
//! included, which the raw outputs forward), as SQLite's `TEXT` does.
//!
//! `seq` is a `BIGSERIAL` (PostgreSQL 15 has no identity columns on partitioned tables): one
//! sequence per table, shared by its partitions, so `seq` orders a source's rows. A commit
//! locks its source's lease row first (see `write.rs`), so within a source the order of `seq`
//! is also the order of commits, and an output reading past an offset never skips a row.

/// Hash partitions per large table.
pub const PARTITIONS: u32 = 16;

/// The inventory tables migration 2 partitioned (the others are one table each).
const PARTITIONED: [&str; 4] = ["devices", "device_details", "compliance", "vuln_detections"];

/// (version, what it does, the SQL). `{partitions:TABLE}` expands to the table's partitions.
pub(super) const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "leases, replicas, checkpoints, events, outbox, budget samples",
        "
CREATE TABLE replicas (
    replica TEXT PRIMARY KEY,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE leases (
    source TEXT PRIMARY KEY,
    owner TEXT,
    fencing_token BIGINT NOT NULL DEFAULT 0,
    acquired_at BIGINT,
    expires_at BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX leases_owner ON leases (owner);

CREATE TABLE checkpoints (
    source TEXT NOT NULL,
    stream TEXT NOT NULL,
    value JSONB NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (source, stream)
) PARTITION BY HASH (source);
{partitions:checkpoints}

CREATE TABLE events (
    seq BIGSERIAL,
    source TEXT NOT NULL,
    stream TEXT NOT NULL,
    category TEXT NOT NULL,
    event_type TEXT NOT NULL,
    uid TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    device_id TEXT,
    user_id TEXT,
    severity TEXT,
    hash BIGINT NOT NULL,
    collected_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    summary TEXT NOT NULL,
    raw JSON NOT NULL,
    PRIMARY KEY (source, seq),
    UNIQUE (source, stream, uid)
) PARTITION BY HASH (source);
{partitions:events}
CREATE INDEX events_time ON events (source, occurred_at DESC, seq DESC);
CREATE INDEX events_device_time ON events (source, device_id, occurred_at DESC, seq DESC);

CREATE TABLE outbox (
    seq BIGSERIAL,
    source TEXT NOT NULL,
    tbl TEXT NOT NULL,
    ref TEXT NOT NULL,
    PRIMARY KEY (source, seq)
) PARTITION BY HASH (source);
{partitions:outbox}

CREATE TABLE budget_samples (
    source TEXT NOT NULL,
    hour BIGINT NOT NULL,
    requests BIGINT NOT NULL,
    limit_hour BIGINT,
    share BIGINT,
    PRIMARY KEY (source, hour)
) PARTITION BY HASH (source);
{partitions:budget_samples}

CREATE TABLE record_samples (
    source TEXT NOT NULL,
    hour BIGINT NOT NULL,
    category TEXT NOT NULL,
    records BIGINT NOT NULL,
    PRIMARY KEY (source, hour, category)
) PARTITION BY HASH (source);
{partitions:record_samples}
",
    ),
    (
        2,
        "everything else the SQLite store holds: inventory, normalized apps, snapshot stages, stream status, the refresh queue, console sources, output offsets and dead letters, event search",
        MIGRATION_2,
    ),
    (
        3,
        "counters that update in place (no index on app_versions.installs; fillfactor 70)",
        MIGRATION_3,
    ),
    (
        4,
        "rows seen again update in place (the _live indexes without sweep; fillfactor 70)",
        MIGRATION_4,
    ),
    (
        5,
        "budget intelligence and token hygiene: other tools' spend per hour, console token names, rotation age and reserve, per-source findings",
        MIGRATION_5,
    ),
];

/// 5: SQLite's migration 8 in PostgreSQL's terms.
const MIGRATION_5: &str = "
ALTER TABLE budget_samples ADD COLUMN others BIGINT;
ALTER TABLE console_sources ADD COLUMN token_name TEXT;
ALTER TABLE console_sources ADD COLUMN rotate_after_days BIGINT;
ALTER TABLE console_sources ADD COLUMN reserve_for_others DOUBLE PRECISION;
CREATE TABLE source_facts (
    source TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (source, key)
);
";

/// 3: counters that update in place. `app_versions.installs` and `app_devices.live_apps` change
/// with every batch of installs; an index that names the column (the `installs > 0`
/// predicates) made each change a new row version in every index. Without it, and with room
/// left in each page, PostgreSQL updates them as heap-only tuples.
const MIGRATION_3: &str = "
DROP INDEX app_versions_name;
DROP INDEX app_versions_bundle;
CREATE INDEX app_versions_name ON app_versions (name, version);
CREATE INDEX app_versions_bundle ON app_versions (bundle_id, version);
{fillfactor:app_versions:70}
{fillfactor:app_devices:70}
";

/// 4: a row seen again updates in place. A resumable walk (devices every 15 minutes,
/// compliance, users…) stamps every unchanged row it sees (`last_seen`, `sweep`, `missing`);
/// with `sweep` in each table's `_live` index, every stamp was a new row version in every
/// index of the table (devices has twenty). The `_live` indexes drop `sweep` (the sweep's
/// end filters it after the index), and the tables keep room in each page for the new
/// version, so the stamps are heap-only.
const MIGRATION_4: &str = "
{relive:devices:70}
{relive:device_details:70}
{relive:compliance:70}
{relive:vuln_detections:70}
{relive:users:70}
{relive:blueprints:70}
{relive:tags:70}
{relive:ade_devices:70}
";

/// 2: the rest of SQLite's schema (`store/schema.rs` at version 7), in PostgreSQL's terms.
///
/// - Inventory tables keep SQLite's columns (`source, key, device_id, hash, first_seen,
///   last_seen, removed_at, sweep, missing`, the typed columns of `tables.rs`, `raw`), keyed by
///   `(source, key)`. The large ones (devices, device details, compliance, vulnerability
///   detections) are hash-partitioned by source like events; the small ones (users, blueprints,
///   tags, ADE devices) are indexed on `source` first.
/// - The app inventory is normalized as in SQLite, but **per source**: titles and versions are
///   not shared between tenants, so two replicas committing two tenants never wait on the
///   same counter row (`app_versions.installs`) or the same unique key (a new title). Every
///   app table leads with `source` and is partitioned by it.
/// - A full export's rows are staged in `stage_*` tables (SQLite uses connection-local TEMP
///   tables): committed with each page, so a new owner of the source sees them, and
///   `stage_open` names the sweep each scope belongs to (an abandoned export's rows are
///   dropped when the next one opens the scope).
/// - `events.search` is the full-text index over the summary and the record's leaf values,
///   never its keys (SQLite's `events_fts` since migration 7), written by the store from the
///   same tokens FTS5's `unicode61` makes.
/// - `apps` is a view with SQLite's `apps` columns, for SQL that reads the store directly.
const MIGRATION_2: &str = "
ALTER TABLE events ADD COLUMN search TSVECTOR;
CREATE INDEX events_search ON events USING GIN (search);
CREATE INDEX events_category_time ON events (source, category, occurred_at DESC, seq DESC);
CREATE INDEX events_type_time ON events (event_type, occurred_at DESC, seq DESC);
CREATE INDEX events_user_time ON events (source, user_id, occurred_at DESC, seq DESC)
    WHERE user_id IS NOT NULL;
CREATE INDEX events_all_time ON events (occurred_at DESC, seq DESC);
CREATE INDEX events_seq ON events (seq);
CREATE INDEX events_stream_time ON events (source, stream, occurred_at DESC);

CREATE TABLE stream_status (
    source TEXT NOT NULL,
    stream TEXT NOT NULL,
    state TEXT NOT NULL,
    last_run_at BIGINT,
    last_success_at BIGINT,
    last_error_at BIGINT,
    last_error_kind TEXT,
    last_error_message TEXT,
    last_error_endpoint TEXT,
    records_total BIGINT NOT NULL DEFAULT 0,
    last_run_records BIGINT NOT NULL DEFAULT 0,
    last_run_requests BIGINT NOT NULL DEFAULT 0,
    next_run_at BIGINT,
    PRIMARY KEY (source, stream)
);

CREATE TABLE refresh_queue (
    source TEXT NOT NULL,
    device_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    queued_at BIGINT NOT NULL,
    PRIMARY KEY (source, device_id)
);
CREATE INDEX refresh_queue_time ON refresh_queue (source, queued_at);

CREATE TABLE device_reads (
    source TEXT NOT NULL,
    device_id TEXT NOT NULL,
    stream TEXT NOT NULL,
    read_at BIGINT NOT NULL,
    PRIMARY KEY (source, device_id, stream)
);

CREATE TABLE snapshots (
    source TEXT NOT NULL,
    tbl TEXT NOT NULL,
    scope TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (source, tbl, scope)
);

{inventory:devices:device_name TEXT, serial_number TEXT, platform TEXT, model TEXT, os_version TEXT, blueprint_id TEXT, blueprint_name TEXT, user_id TEXT, user_email TEXT, user_name TEXT, asset_tag TEXT, tags TEXT, last_check_in BIGINT, mdm_enabled BIGINT, agent_installed BIGINT, app_count BIGINT NOT NULL DEFAULT 0:partitioned}
{inventory:device_details:category TEXT, last_changed_at BIGINT, posture TEXT:partitioned}
{inventory:compliance:kind TEXT, item_id TEXT, name TEXT, status TEXT, reported_at BIGINT:partitioned}
{inventory:vuln_detections:cve_id TEXT, bundle_id TEXT, software TEXT, version TEXT, severity TEXT, cvss_score DOUBLE PRECISION, detected_at BIGINT:partitioned}
{inventory:users:email TEXT, name TEXT, active BIGINT, archived BIGINT, department TEXT, job_title TEXT, device_count BIGINT:plain}
{inventory:blueprints:name TEXT, computers_count BIGINT:plain}
{inventory:tags:name TEXT:plain}
{inventory:ade_devices:serial_number TEXT, model TEXT, device_family TEXT, blueprint_id TEXT, user_id TEXT, mdm_device_id TEXT, profile_status TEXT:plain}

CREATE INDEX devices_by_name ON devices (device_name NULLS FIRST, key) WHERE removed_at IS NULL;
CREATE INDEX devices_by_platform ON devices (platform NULLS FIRST, key) WHERE removed_at IS NULL;
CREATE INDEX devices_by_model ON devices (model NULLS FIRST, key) WHERE removed_at IS NULL;
CREATE INDEX devices_by_os ON devices (os_version NULLS FIRST, key) WHERE removed_at IS NULL;
CREATE INDEX devices_by_blueprint ON devices (blueprint_name NULLS FIRST, key) WHERE removed_at IS NULL;
CREATE INDEX devices_by_user ON devices (user_email NULLS FIRST, key) WHERE removed_at IS NULL;
CREATE INDEX devices_by_checkin ON devices (last_check_in NULLS FIRST, key) WHERE removed_at IS NULL;
CREATE INDEX devices_by_apps ON devices (app_count NULLS FIRST, key) WHERE removed_at IS NULL;
CREATE INDEX devices_src_name ON devices (source, device_name NULLS FIRST, key) WHERE removed_at IS NULL;
CREATE INDEX devices_src_platform ON devices (source, platform NULLS FIRST, key) WHERE removed_at IS NULL;
CREATE INDEX devices_src_model ON devices (source, model NULLS FIRST, key) WHERE removed_at IS NULL;
CREATE INDEX devices_src_os ON devices (source, os_version NULLS FIRST, key) WHERE removed_at IS NULL;
CREATE INDEX devices_src_blueprint ON devices (source, blueprint_name NULLS FIRST, key) WHERE removed_at IS NULL;
CREATE INDEX devices_src_user ON devices (source, user_email NULLS FIRST, key) WHERE removed_at IS NULL;
CREATE INDEX devices_src_checkin ON devices (source, last_check_in NULLS FIRST, key) WHERE removed_at IS NULL;
CREATE INDEX devices_src_apps ON devices (source, app_count NULLS FIRST, key) WHERE removed_at IS NULL;
CREATE INDEX compliance_live_status ON compliance (source, device_id, status)
    WHERE removed_at IS NULL;
CREATE INDEX users_live_email ON users (email NULLS FIRST, key) WHERE removed_at IS NULL;

CREATE TABLE app_devices (
    id BIGSERIAL,
    source TEXT NOT NULL,
    device_id TEXT NOT NULL,
    ctx TEXT NOT NULL DEFAULT '{}',
    live_apps BIGINT NOT NULL DEFAULT 0,
    name TEXT,
    PRIMARY KEY (source, id),
    UNIQUE (source, device_id)
) PARTITION BY HASH (source);
{partitions:app_devices}
CREATE INDEX app_devices_name ON app_devices (source, name, device_id);

CREATE TABLE app_titles (
    id BIGSERIAL,
    source TEXT NOT NULL,
    ident TEXT NOT NULL,
    PRIMARY KEY (source, id),
    UNIQUE (source, ident)
) PARTITION BY HASH (source);
{partitions:app_titles}
CREATE INDEX app_titles_ident ON app_titles (ident);

CREATE TABLE app_versions (
    id BIGSERIAL,
    source TEXT NOT NULL,
    title BIGINT NOT NULL,
    name TEXT,
    bundle_id TEXT,
    version TEXT,
    path TEXT,
    installs BIGINT NOT NULL DEFAULT 0,
    fields_hash BIGINT NOT NULL,
    fields TEXT NOT NULL,
    PRIMARY KEY (source, id)
) PARTITION BY HASH (source);
{partitions:app_versions}
CREATE INDEX app_versions_fields ON app_versions (source, fields_hash);
CREATE INDEX app_versions_name ON app_versions (name, version) WHERE installs > 0;
CREATE INDEX app_versions_bundle ON app_versions (bundle_id, version) WHERE installs > 0;

CREATE TABLE app_installs (
    source TEXT NOT NULL,
    dev BIGINT NOT NULL,
    title BIGINT NOT NULL,
    ver BIGINT NOT NULL,
    created_us BIGINT,
    changed_us BIGINT,
    updated_us BIGINT,
    tf BIGINT,
    extra TEXT,
    hash BIGINT,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT,
    removed_at BIGINT,
    PRIMARY KEY (source, dev, title)
) PARTITION BY HASH (source);
{partitions:app_installs}
CREATE INDEX app_installs_live_title ON app_installs (source, title, dev) WHERE removed_at IS NULL;

CREATE VIEW apps AS
SELECT d.source AS source, d.device_id || '|' || t.ident AS key, d.device_id AS device_id,
       i.hash AS hash, i.first_seen AS first_seen,
       coalesce(i.last_seen, i.first_seen) AS last_seen,
       i.removed_at AS removed_at, v.name AS name, v.bundle_id AS bundle_id,
       v.version AS version, v.path AS path, i.dev AS dev, i.title AS title
FROM app_installs i
JOIN app_devices d ON d.source = i.source AND d.id = i.dev
JOIN app_titles t ON t.source = i.source AND t.id = i.title
JOIN app_versions v ON v.source = i.source AND v.id = i.ver;

CREATE TABLE stage_open (
    source TEXT NOT NULL,
    tbl TEXT NOT NULL,
    scope TEXT NOT NULL,
    sweep BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    PRIMARY KEY (source, tbl, scope)
);
CREATE TABLE stage_device_details (
    source TEXT NOT NULL, scope TEXT NOT NULL, key TEXT NOT NULL, device_id TEXT,
    hash BIGINT NOT NULL, category TEXT, last_changed_at BIGINT, posture TEXT,
    raw JSON NOT NULL,
    PRIMARY KEY (source, scope, key)
);
CREATE TABLE stage_apps (
    source TEXT NOT NULL, dev BIGINT NOT NULL, title BIGINT NOT NULL, ver BIGINT NOT NULL,
    created_us BIGINT, changed_us BIGINT, updated_us BIGINT, tf BIGINT, extra TEXT,
    hash BIGINT NOT NULL, ident TEXT NOT NULL,
    PRIMARY KEY (source, dev, title)
);

CREATE TABLE console_sources (
    name TEXT PRIMARY KEY,
    endpoint TEXT NOT NULL,
    region TEXT NOT NULL,
    allow_custom BOOLEAN NOT NULL DEFAULT FALSE,
    token_last4 TEXT NOT NULL,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    budget_share DOUBLE PRECISION NOT NULL DEFAULT 0.5,
    hourly_limit BIGINT NOT NULL DEFAULT 10000,
    per_second BIGINT NOT NULL DEFAULT 10,
    streams TEXT NOT NULL,
    schedules TEXT NOT NULL DEFAULT '{}',
    filters TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    token_ct BYTEA NOT NULL
);
CREATE TABLE console_admin (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    password_hash TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE output_offsets (
    source TEXT NOT NULL,
    output TEXT NOT NULL,
    seq BIGINT NOT NULL DEFAULT 0,
    part BIGINT,
    delivered BIGINT NOT NULL DEFAULT 0,
    dead_total BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    last_error_at BIGINT,
    last_success_at BIGINT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (source, output)
);
CREATE TABLE dead_letters (
    id BIGSERIAL PRIMARY KEY,
    source TEXT NOT NULL,
    output TEXT NOT NULL,
    seq BIGINT NOT NULL,
    record_id TEXT NOT NULL,
    status BIGINT,
    error TEXT NOT NULL,
    payload TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX dead_letters_output ON dead_letters (source, output, id);
";

/// The migration's SQL with each `{partitions:T}` written out as `PARTITIONS` statements.
pub(super) fn expand(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() * 2);
    for line in sql.lines() {
        let l = line.trim();
        if let Some(table) = l
            .strip_prefix("{partitions:")
            .and_then(|l| l.strip_suffix('}'))
        {
            out.push_str(&partitions(table));
        } else if let Some(spec) = l.strip_prefix("{relive:").and_then(|l| l.strip_suffix('}')) {
            // {relive:TABLE:FILLFACTOR}: the table's `_live` index without `sweep`, and room
            // in its pages (on the table, and on each partition when it has them).
            let (table, n) = spec.split_once(':').unwrap_or((spec, "100"));
            out.push_str(&format!(
                "DROP INDEX {table}_live;\n\
                 CREATE INDEX {table}_live ON {table} (source, removed_at);\n"
            ));
            if PARTITIONED.contains(&table) {
                for i in 0..PARTITIONS {
                    out.push_str(&format!(
                        "ALTER TABLE {table}_p{i} SET (fillfactor = {n});\n"
                    ));
                }
            } else {
                out.push_str(&format!("ALTER TABLE {table} SET (fillfactor = {n});\n"));
            }
        } else if let Some(spec) = l
            .strip_prefix("{fillfactor:")
            .and_then(|l| l.strip_suffix('}'))
        {
            // {fillfactor:TABLE:N}: on the partitioned table (for new partitions) and on each
            // partition (storage parameters are per partition).
            let (table, n) = spec.split_once(':').unwrap_or((spec, "100"));
            for i in 0..PARTITIONS {
                out.push_str(&format!(
                    "ALTER TABLE {table}_p{i} SET (fillfactor = {n});\n"
                ));
            }
        } else if let Some(spec) = l
            .strip_prefix("{inventory:")
            .and_then(|l| l.strip_suffix('}'))
        {
            // {inventory:NAME:TYPED COLUMNS:partitioned|plain}
            let mut parts = spec.splitn(3, ':');
            let (name, typed, kind) = (
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
            );
            let partitioned = kind == "partitioned";
            out.push_str(&format!(
                "CREATE TABLE {name} (
    source TEXT NOT NULL, key TEXT NOT NULL, device_id TEXT, hash BIGINT NOT NULL,
    first_seen BIGINT NOT NULL, last_seen BIGINT NOT NULL, removed_at BIGINT,
    sweep BIGINT NOT NULL DEFAULT 0, missing BIGINT NOT NULL DEFAULT 0,
    {typed},
    raw JSON NOT NULL,
    PRIMARY KEY (source, key)){};\n",
                if partitioned {
                    " PARTITION BY HASH (source)"
                } else {
                    ""
                }
            ));
            if partitioned {
                out.push_str(&partitions(name));
            }
            out.push_str(&format!(
                "CREATE INDEX {name}_device ON {name} (source, device_id, first_seen);\n\
                 CREATE INDEX {name}_live ON {name} (source, removed_at, sweep);\n"
            ));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn partitions(table: &str) -> String {
    (0..PARTITIONS)
        .map(|i| {
            format!(
                "CREATE TABLE {table}_p{i} PARTITION OF {table} \
                 FOR VALUES WITH (MODULUS {PARTITIONS}, REMAINDER {i});\n"
            )
        })
        .collect()
}

/// The newest schema version this build writes.
pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_dense_and_ascending() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.0, i as i32 + 1);
        }
    }

    #[test]
    fn partitions_expand() {
        let sql = expand("A\n{partitions:events}\nB");
        assert_eq!(
            sql.matches("PARTITION OF events").count(),
            PARTITIONS as usize
        );
        assert!(sql.contains("events_p15"));
        assert!(sql.starts_with("A\n") && sql.ends_with("B\n"));
    }
}
