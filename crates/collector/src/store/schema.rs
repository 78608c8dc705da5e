//! Versioned migrations. `PRAGMA user_version` holds the number of migrations applied;
//! each migration runs in its own transaction, so a crash leaves the store at a whole version.

use rusqlite::Connection;

use super::StoreError;

/// Inventory tables share these columns; each table's typed columns follow them, and `raw`
/// comes last. Layout matters for speed: SQLite reads a row's columns in order, so every small
/// column precedes the large JSON (or each lookup walks its overflow pages); and the tables are
/// rowid tables with a unique (source, key) index, so new rows append instead of splitting
/// kilobyte-sized leaf cells in key order (WITHOUT ROWID suits only small rows).
///
/// - `key`: the row's identity inside its source (device id, `device|bundle`, …).
/// - `hash`: a hash of `raw`, so an unchanged row is a no-op.
/// - `sweep`/`missing`: the last full sweep that saw the row and how many full sweeps in a
///   row have missed it; a row is marked removed once `missing` reaches its table's threshold.
const INVENTORY_COMMON: &str = "
    source TEXT NOT NULL,
    key TEXT NOT NULL,
    device_id TEXT,
    hash INTEGER NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    removed_at INTEGER,
    sweep INTEGER NOT NULL DEFAULT 0,
    missing INTEGER NOT NULL DEFAULT 0";

fn inventory_table(name: &str, typed: &str) -> String {
    format!(
        "CREATE TABLE {name} ({INVENTORY_COMMON}, {typed}, raw TEXT NOT NULL,
             UNIQUE (source, key));
         CREATE INDEX {name}_device ON {name}(source, device_id, first_seen);
         CREATE INDEX {name}_live ON {name}(source, removed_at);"
    )
}

fn migration_1() -> String {
    let mut sql = String::from(
        "
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

        -- Audit, security and change events. `seq` is the outbox offset sinks follow.
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

        -- Devices whose details and compliance should be re-fetched: the audit feed, Prism
        -- deltas and check-ins that moved put them here; the compliance stream drains it.
        CREATE TABLE refresh_queue (
            source TEXT NOT NULL,
            device_id TEXT NOT NULL,
            reason TEXT NOT NULL,
            queued_at INTEGER NOT NULL,
            PRIMARY KEY (source, device_id)
        ) WITHOUT ROWID;

        -- Requests spent per source per hour, for the budget chart and the planner.
        CREATE TABLE budget_samples (
            source TEXT NOT NULL,
            hour INTEGER NOT NULL,
            requests INTEGER NOT NULL,
            limit_hour INTEGER,
            share INTEGER,
            PRIMARY KEY (source, hour)
        ) WITHOUT ROWID;

        -- Records written per hour per category, for the dashboard chart.
        CREATE TABLE record_samples (
            source TEXT NOT NULL,
            hour INTEGER NOT NULL,
            category TEXT NOT NULL,
            records INTEGER NOT NULL,
            PRIMARY KEY (source, hour, category)
        ) WITHOUT ROWID;
        ",
    );
    for (name, typed) in super::tables::TABLES
        .iter()
        .map(|t| (t.name, t.typed_ddl()))
    {
        sql.push_str(&inventory_table(name, &typed));
        sql.push('\n');
    }
    sql.push_str(
        "
        CREATE INDEX devices_platform ON devices(source, platform);
        CREATE INDEX devices_checkin ON devices(source, last_check_in DESC);
        CREATE INDEX apps_name_version ON apps(name, version);
        CREATE INDEX apps_bundle_version ON apps(bundle_id, version);
        CREATE INDEX compliance_status ON compliance(source, status);
        CREATE INDEX users_email ON users(source, email);
        ",
    );
    sql
}

/// The web console: sources added in the console (tokens encrypted with the local key file,
/// see `web::crypto`) and the admin's password hash.
fn migration_2() -> String {
    "
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
    "
    .to_string()
}

/// Outputs: the outbox (one row per inventory row version and event version, written in the
/// batch's transaction, so `seq` orders everything a source produced), each output's offset
/// and counters, and the bounded dead-letter area.
fn migration_3() -> String {
    "
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
    "
    .to_string()
}

/// Every migration in order. Append only: never edit one that has shipped.
fn migrations() -> Vec<String> {
    vec![migration_1(), migration_2(), migration_3()]
}

/// The schema version this build writes.
pub fn latest_version() -> u32 {
    migrations().len() as u32
}

pub fn migrate(conn: &mut Connection) -> Result<u32, StoreError> {
    let current: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let all = migrations();
    if current as usize > all.len() {
        return Err(StoreError::TooNew {
            found: current,
            supported: all.len() as u32,
        });
    }
    for (i, sql) in all.iter().enumerate().skip(current as usize) {
        let version = i as u32 + 1;
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        tracing::info!(version, "store migrated");
    }
    Ok(all.len() as u32)
}
