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

/// (version, what it does, the SQL). `{partitions:TABLE}` expands to the table's partitions.
pub(super) const MIGRATIONS: &[(i32, &str, &str)] = &[(
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
)];

/// The migration's SQL with each `{partitions:T}` written out as `PARTITIONS` statements.
pub(super) fn expand(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() * 2);
    for line in sql.lines() {
        match line
            .trim()
            .strip_prefix("{partitions:")
            .and_then(|l| l.strip_suffix('}'))
        {
            Some(table) => {
                for i in 0..PARTITIONS {
                    out.push_str(&format!(
                        "CREATE TABLE {table}_p{i} PARTITION OF {table} \
                         FOR VALUES WITH (MODULUS {PARTITIONS}, REMAINDER {i});\n"
                    ));
                }
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
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
