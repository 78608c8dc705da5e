//! The PostgreSQL store: the shared store of several replicas (issue 14).
//!
//! It implements the store's write path on PostgreSQL with the same rules as SQLite's
//! (`write.rs` there): a page's events, its checkpoint and its outbox rows commit in ONE
//! transaction, and an event collected again keeps its newest state or counts as a
//! duplicate. What it adds is for replicas:
//!
//! - **Leases** (`leases.rs`). Each source is collected by one replica at a time, under a
//!   row with an owner, an expiry and a **fencing token** that grows by one at every change
//!   of owner. Replicas heartbeat into `replicas`; each takes its fair share of sources
//!   (`ceil(sources / live replicas)`) and gives back what is above it, between pages.
//! - **Fencing** (`write.rs`). Every commit locks its source's lease row and checks the token
//!   in the same transaction, so a replica that lost its lease (paused past its expiry, cut
//!   off from the database) can never write over the new owner: its commit is refused with
//!   [`StoreError::Fenced`] and rolls back whole.
//! - **Versioned migrations** (`migrations.rs`), applied under an advisory lock.
//!
//! Time is in ms since the epoch, as in SQLite. Lease arithmetic takes `now` from the caller,
//! and replicas read it from the database ([`PgStore::db_now`]), so their clocks never need to
//! agree with each other; tests pass their own.
//!
//! Connections come from a `deadpool-postgres` pool over `tokio-postgres`. The password is
//! never in the URL (a URL that carries one is refused): it comes from an env var or a file
//! (`PgConnect`), as tokens do.

mod apps;
mod explorer;
mod inventory;
mod leases;
mod listen;
pub mod migrations;
mod reads;
pub(crate) mod search;
mod values;
mod write;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::NoTls;

pub use leases::{Lease, LeaseRow, Rebalance, Replica};
pub use listen::Signal;

use super::StoreError;

/// How to reach the database. `Debug` shows the URL without a password (it never has one).
#[derive(Clone)]
pub struct PgConnect {
    /// `postgres://user@host:port/db` (or the key=value form); never with a password.
    pub url: String,
    /// The password, from `store_password_env` or `store_password_file`.
    pub password: Option<SecretString>,
    /// A schema to create if missing and put first on the `search_path` (tests use one each;
    /// `None` is the connection's default, usually `public`).
    pub schema: Option<String>,
    /// Pool size (connections this process may hold).
    pub pool_size: usize,
    /// The server ends a transaction left idle this long (`idle_in_transaction_session_timeout`),
    /// so a replica paused inside a commit cannot hold its source's lease row locked: the
    /// lock goes with the session, and the paused commit fails when it wakes. Below the TTL.
    pub idle_tx_timeout_ms: u64,
}

impl fmt::Debug for PgConnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConnect")
            .field("url", &redact(&self.url))
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("idle_tx_timeout_ms", &self.idle_tx_timeout_ms)
            .finish()
    }
}

impl PgConnect {
    pub fn new(url: &str) -> PgConnect {
        PgConnect {
            url: url.to_string(),
            password: None,
            schema: None,
            pool_size: 8,
            idle_tx_timeout_ms: 10_000,
        }
    }
}

/// An owner name unique to this process: host, pid and a random part.
pub fn process_owner(kind: &str) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    let rnd = uuid::Uuid::new_v4().simple().to_string();
    format!("{kind}-{host}-{}-{}", std::process::id(), &rnd[..8])
}

/// The advisory lock that serializes migrations (one id for every store: "kcmi" as a
/// number).
const MIGRATION_LOCK: i64 = 1_801_676_137;

/// The URL with any password replaced by `***` (for errors and logs), in both the URL and
/// the key=value forms.
fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (auth, host) = match rest.rsplit_once('@') {
            Some(p) => p,
            None => return url.to_string(),
        };
        return match auth.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_string(),
        };
    }
    url.split_whitespace()
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => "password=***".to_string(),
            _ => kv.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Who writes through a [`PgStore`], and under which leases.
#[derive(Debug, Clone)]
pub enum LeaseMode {
    /// A replica of `run`: it writes only for the sources its lease loop holds
    /// ([`PgStore::set_held`]); a commit for any other is refused as [`StoreError::Fenced`].
    Replica(Replica),
    /// One process on its own (`sync --once`, tests, tools): the first write for a source takes
    /// its lease if no one holds it (or its holder's has expired), under this owner name; a
    /// source another process holds is refused as [`StoreError::Fenced`].
    Solo { owner: String, ttl_ms: i64 },
}

impl LeaseMode {
    pub fn owner(&self) -> &str {
        match self {
            LeaseMode::Replica(r) => &r.id,
            LeaseMode::Solo { owner, .. } => owner,
        }
    }
    pub fn ttl_ms(&self) -> i64 {
        match self {
            LeaseMode::Replica(r) => r.ttl_ms,
            LeaseMode::Solo { ttl_ms, .. } => *ttl_ms,
        }
    }
}

/// The leases this process writes under, by source.
#[derive(Debug)]
struct Fence {
    mode: LeaseMode,
    held: Mutex<HashMap<String, Lease>>,
}

/// A handle on the shared store; cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    lease_pool: Pool,
    /// The URL as configured (no password), for errors.
    url: String,
    fence: Arc<Fence>,
    /// How to open a connection of its own (the `LISTEN` connection).
    config: Arc<tokio_postgres::Config>,
    /// The schema it works in (`None`: the connection's default).
    schema: Option<String>,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore").field("url", &self.url).finish()
    }
}

/// A valid SQL identifier for a schema name: letters, digits and `_`, not starting with a
/// digit, at most 63 bytes (PostgreSQL's limit).
fn valid_schema(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

impl PgStore {
    /// Connects on its own ([`LeaseMode::Solo`], under a name unique to this process), checks
    /// the server answers, and applies the missing migrations.
    pub async fn connect(c: &PgConnect) -> Result<PgStore, StoreError> {
        PgStore::connect_as(
            c,
            LeaseMode::Solo {
                owner: process_owner("solo"),
                ttl_ms: 30_000,
            },
        )
        .await
    }

    /// [`PgStore::connect`] as `mode` says.
    pub async fn connect_as(c: &PgConnect, mode: LeaseMode) -> Result<PgStore, StoreError> {
        let url = redact(&c.url);
        let bad = |message: String| StoreError::Postgres {
            url: url.clone(),
            message,
        };
        let mut cfg = tokio_postgres::Config::from_str(&c.url)
            .map_err(|e| bad(format!("not a PostgreSQL URL: {e}")))?;
        if cfg.get_password().is_some() {
            return Err(bad(
                "the URL carries a password; remove it and give it in `store_password_env` or `store_password_file` instead".into(),
            ));
        }
        if let Some(p) = &c.password {
            cfg.password(p.expose_secret().as_bytes());
        }
        // Notices ("schema already exists, skipping") are not news for a log.
        let mut options = format!(
            "-c idle_in_transaction_session_timeout={} -c client_min_messages=warning",
            c.idle_tx_timeout_ms
        );
        if let Some(s) = &c.schema {
            if !valid_schema(s) {
                return Err(bad(format!(
                    "schema {s:?} is not a plain identifier (letters, digits, _)"
                )));
            }
            options.push_str(&format!(" -c search_path={s}"));
        }
        if let Some(o) = cfg.get_options() {
            options = format!("{o} {options}");
        }
        cfg.options(options);
        if cfg.get_application_name().is_none() {
            cfg.application_name("kandji-collector");
        }
        let config = Arc::new(cfg.clone());
        let manager = |cfg: tokio_postgres::Config| {
            Manager::from_config(
                cfg,
                NoTls,
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            )
        };
        let pool = Pool::builder(manager(cfg.clone()))
            .max_size(c.pool_size.max(1))
            .build()
            .map_err(|e| bad(e.to_string()))?;
        let lease_pool = Pool::builder(manager(cfg))
            .max_size(2)
            .build()
            .map_err(|e| bad(e.to_string()))?;
        let store = PgStore {
            pool,
            lease_pool,
            url,
            fence: Arc::new(Fence {
                mode,
                held: Mutex::new(HashMap::new()),
            }),
            config,
            schema: c.schema.clone(),
        };
        store.migrate(c.schema.as_deref()).await?;
        Ok(store)
    }

    /// The URL the store was opened on (without a password), for status and errors.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn mode(&self) -> &LeaseMode {
        &self.fence.mode
    }

    fn held_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Lease>> {
        // Whole-value inserts and removes: consistent across a panic.
        self.fence.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The leases this process holds now (the lease loop's view), by source.
    pub fn held(&self) -> Vec<Lease> {
        let mut v: Vec<Lease> = self.held_map().values().cloned().collect();
        v.sort_by(|a, b| a.source.cmp(&b.source));
        v
    }

    /// Whether this process holds `source`'s lease.
    pub fn holds(&self, source: &str) -> bool {
        self.held_map().contains_key(source)
    }

    /// Replaces the leases this process writes under (the replica's lease loop, after each
    /// tick). A source left out can no longer be written from here.
    pub fn set_held(&self, leases: &[Lease]) {
        let mut m = self.held_map();
        m.clear();
        for l in leases {
            m.insert(l.source.clone(), l.clone());
        }
    }

    /// Forgets one lease (given back, or found lost).
    pub fn drop_held(&self, source: &str) {
        self.held_map().remove(source);
    }

    /// The lease to write `source` under: the one held, or in [`LeaseMode::Solo`] one taken
    /// now if free. `None`: another process holds it.
    pub(crate) async fn lease_for(&self, source: &str) -> Result<Option<Lease>, StoreError> {
        if let Some(l) = self.held_map().get(source) {
            return Ok(Some(l.clone()));
        }
        let LeaseMode::Solo { owner, ttl_ms } = &self.fence.mode else {
            return Ok(None);
        };
        let taken = self.take_if_free(source, owner, *ttl_ms).await?;
        if let Some(l) = &taken {
            self.held_map().insert(source.to_string(), l.clone());
        }
        Ok(taken)
    }

    /// The error for a write to a source this process does not hold.
    pub(crate) async fn not_held(&self, source: &str, held: i64) -> StoreError {
        let current = self
            .leases()
            .await
            .ok()
            .and_then(|all| all.into_iter().find(|l| l.source == source));
        StoreError::Fenced {
            source_name: source.to_string(),
            held,
            current: current.as_ref().map_or(0, |l| l.token),
            owner: current.and_then(|l| l.owner),
        }
    }

    /// Wraps a driver error with the URL.
    pub(crate) fn err(&self, e: tokio_postgres::Error) -> StoreError {
        let message = match e.as_db_error() {
            Some(db) => format!("{} ({})", db.message(), db.code().code()),
            None => e.to_string(),
        };
        StoreError::Postgres {
            url: self.url.clone(),
            message,
        }
    }

    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|e| StoreError::Postgres {
            url: self.url.clone(),
            message: format!("no connection: {e}"),
        })
    }

    /// A connection of the leases' own small pool: heartbeats and lease changes never wait
    /// behind the commits that fill the main pool (a replica whose heartbeat waited past the
    /// TTL would lose its sources while alive).
    pub(crate) async fn lease_client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.lease_pool
            .get()
            .await
            .map_err(|e| StoreError::Postgres {
                url: self.url.clone(),
                message: format!("no connection for the leases: {e}"),
            })
    }

    /// The schema version the database is at.
    pub async fn schema_version(&self) -> Result<i32, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT coalesce(max(version), 0) FROM store_migrations",
                &[],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(row.get(0))
    }

    /// Applies the migrations this database lacks, one transaction each, under an advisory
    /// lock so that replicas starting at once apply each exactly once.
    async fn migrate(&self, schema: Option<&str>) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        // `IF NOT EXISTS` is not safe against a concurrent create (two replicas starting
        // together get a unique violation), so the bootstrap takes the lock too.
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(|e| self.err(e))?;
        if let Some(s) = schema {
            // `s` is a checked identifier (`valid_schema`).
            tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {s}"))
                .await
                .map_err(|e| self.err(e))?;
        }
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS store_migrations (
                version INTEGER PRIMARY KEY,
                description TEXT NOT NULL,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )",
        )
        .await
        .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        for (version, description, sql) in migrations::MIGRATIONS {
            let tx = client.transaction().await.map_err(|e| self.err(e))?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await
                .map_err(|e| self.err(e))?;
            let done: i64 = tx
                .query_one(
                    "SELECT count(*) FROM store_migrations WHERE version = $1",
                    &[version],
                )
                .await
                .map_err(|e| self.err(e))?
                .get(0);
            if done > 0 {
                continue;
            }
            tx.batch_execute(&migrations::expand(sql))
                .await
                .map_err(|e| self.err(e))?;
            tx.execute(
                "INSERT INTO store_migrations (version, description) VALUES ($1, $2)",
                &[version, description],
            )
            .await
            .map_err(|e| self.err(e))?;
            tx.commit().await.map_err(|e| self.err(e))?;
            tracing::info!(version, description, "store migrated (postgres)");
        }
        let found = self.schema_version().await?;
        if found > migrations::latest() {
            return Err(StoreError::Postgres {
                url: self.url.clone(),
                message: format!(
                    "schema version {found} is newer than this build supports ({}); use a newer kandji-collector",
                    migrations::latest()
                ),
            });
        }
        Ok(())
    }

    /// The database's clock, in ms since the epoch: the one clock every replica agrees on.
    pub async fn db_now(&self) -> Result<i64, StoreError> {
        let client = self.lease_client().await?;
        let row = client
            .query_one(
                "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT",
                &[],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(row.get(0))
    }

    /// Drops the schema this store was opened on (tests clean up with it).
    pub async fn drop_schema(&self, schema: &str) -> Result<(), StoreError> {
        if !valid_schema(schema) {
            return Err(StoreError::Invalid(format!("bad schema name {schema:?}")));
        }
        let client = self.client().await?;
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await
            .map_err(|e| self.err(e))
    }

    /// A source's checkpoint for one stream.
    pub async fn checkpoint(
        &self,
        source: &str,
        stream: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT value FROM checkpoints WHERE source = $1 AND stream = $2",
                &[&source, &stream],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(row.map(|r| r.get(0)))
    }

    /// A source's events as (stream, uid, hash), in `seq` order.
    pub async fn event_keys(&self, source: &str) -> Result<Vec<(String, String, i64)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT stream, uid, hash FROM events WHERE source = $1 ORDER BY seq",
                &[&source],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// How many outbox rows a source has (what an output has to deliver from the start).
    pub async fn outbox_len(&self, source: &str) -> Result<i64, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT count(*) FROM outbox WHERE source = $1", &[&source])
            .await
            .map_err(|e| self.err(e))?;
        Ok(row.get(0))
    }

    /// Bytes per table (its partitions, indexes and TOAST included), largest first.
    pub async fn space_by_table(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT c.relname,
                        (SELECT coalesce(sum(pg_total_relation_size(t.relid)), 0)::BIGINT
                         FROM pg_partition_tree(c.oid) t)
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
                   AND NOT c.relispartition
                 ORDER BY 2 DESC",
                &[],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get::<_, i64>(1).max(0) as u64))
            .collect())
    }

    /// Runs a read-only query and returns every cell as text (NULL as `None`): for tests and
    /// tools that compare the store with a ground truth, in a read-only transaction.
    pub async fn query_text(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, StoreError> {
        let mut client = self.client().await?;
        let tx = client
            .build_transaction()
            .read_only(true)
            .start()
            .await
            .map_err(|e| self.err(e))?;
        let rows = tx.simple_query(sql).await.map_err(|e| self.err(e))?;
        Ok(rows
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
                }
                _ => None,
            })
            .collect())
    }

    /// Refreshes the planner's statistics (tests and benchmarks, after a bulk load).
    pub async fn analyze(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .batch_execute("ANALYZE")
            .await
            .map_err(|e| self.err(e))
    }

    /// The plan of a read, for tests that check an index is used (`EXPLAIN`, text format).
    pub async fn explain_event_page(&self, source: &str) -> Result<String, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "EXPLAIN SELECT seq, occurred_at, summary FROM events
                 WHERE source = $1 ORDER BY occurred_at DESC, seq DESC LIMIT 50",
                &[&source],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(rows
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
            .join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names() {
        assert!(valid_schema("t_abc123"));
        assert!(!valid_schema("1abc"));
        assert!(!valid_schema("a;drop"));
        assert!(!valid_schema(""));
        assert!(!valid_schema(&"a".repeat(64)));
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://kc:hunter2@127.0.0.1:5432/test"),
            "postgres://kc:***@127.0.0.1:5432/test"
        );
        assert_eq!(
            redact("postgres://kc@127.0.0.1/test"),
            "postgres://kc@127.0.0.1/test"
        );
        assert_eq!(
            redact("host=127.0.0.1 password=hunter2 user=kc"),
            "host=127.0.0.1 password=*** user=kc"
        );
    }

    #[test]
    fn debug_hides_the_password() {
        let mut c = PgConnect::new("postgres://kc@127.0.0.1/test");
        c.password = Some(SecretString::from("hunter2"));
        let s = format!("{c:?}");
        assert!(!s.contains("hunter2"), "{s}");
        assert!(s.contains("[redacted]"));
    }
}
