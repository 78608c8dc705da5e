//! The embedded store: SQLite in WAL mode, and **the only module with SQL** (a test greps the
//! crate for it).
//!
//! [`Store`] is a handle with domain methods, in the way mini-redis's `Db` exposes `get` and
//! `set`: the write path ([`Store::commit_page`]), stream status, checkpoints, samples, the
//! outbox and output offsets, console sources and the admin, the refresh queue, filter
//! lookups and the explorer's reads. Each lives in its own submodule as an `impl Store`
//! block; none hands out a connection.
//!
//! - **One writer.** All writes run on one thread, off the async runtime. A [`Batch`] is one
//!   page of one stream (its rows, events, sweep end and checkpoint) committed in ONE
//!   transaction, so the store is exactly-once whatever happens between two commits. A panic
//!   inside a command fails that command (its transaction rolls back) and not the thread;
//!   [`Store::writer_alive`] feeds `/readyz`.
//! - **One process.** [`Store::open`] takes an exclusive lock beside the file (see
//!   [`lock`]) before it migrates, so a second writer fails at once and names the first.
//!   [`Store::open_read_only`] (status, export, backup) takes no lock and never migrates.
//! - **Integrity.** Opening for writing runs `PRAGMA quick_check` (skipped only for a file
//!   exactly as this writer's last clean close left it and checked within a day: see
//!   `clean`); a corrupt store is refused with its path and how to recover. [`Store::verify`] runs the full `integrity_check`.
//! - **Readers** come from a small pool of read-only connections; WAL lets them run beside
//!   the writer.
//! - **Typed errors.** Every error that leaves the store names the file, and says whether
//!   it is read-only, full or corrupt.

mod apps;
mod checkpoints;
mod console;
mod explorer;
mod export;
pub mod lock;
mod lookups;
mod outbox;
pub mod pg;
mod refresh;
mod samples;
pub mod schema;
mod status;
pub mod tables;
mod write;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, ThreadId};

use rusqlite::{Connection, ErrorCode, OpenFlags};
use tokio::sync::oneshot;

pub use apps::{AppInstall, AppRowMapper, AppVersion, DeviceCtx};
pub use console::{ConsoleHygiene, ConsoleSourceRow, NewConsoleSource, SourceSettings};
pub use explorer::{
    AppDevice, AppGroup, AppSummary, AppView, AppsOverview, ComplianceView, DeviceDetail,
    DeviceFilter, DeviceView, EventDetail, EventFilter, EventPage, EventView, PAGE, UserView,
    device_sorts, fts_query, parse_time,
};
pub use export::{ExportItem, ExportKind};
pub use lookups::Menus;
pub use outbox::{
    DEAD_LETTER_CAP, DeadLetter, OutboxBatch, OutboxItem, OutboxPos, StoredEvent, StoredRow,
};
pub use status::{Missing, StatusRow, StreamOutcome};
pub use tables::{Table, TableSpec};
pub use write::{
    AppUpsert, Batch, BatchOutcome, EventRow, InvRow, Scope, StatusUpdate, SweepEnd, Upsert,
    stable_hash,
};

/// The store's file name inside the data directory.
pub const FILE_NAME: &str = "kandji.sqlite3";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A SQLite error inside the store; leaves the store as [`StoreError::Db`] with the path.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("store at {path}: {message}")]
    Db { path: PathBuf, message: String },
    #[error("store at {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error(
        "the store at {path} is in use by process {pid} ({command}); stop it, or point `--data-dir` elsewhere",
        pid = pid.map_or_else(|| "?".to_string(), |p| p.to_string())
    )]
    Locked {
        path: PathBuf,
        pid: Option<u32>,
        command: String,
        console: Option<String>,
    },
    #[error(
        "the store at {path} is read-only ({message}); make the file and its directory writable for this user, or point `--data-dir` elsewhere"
    )]
    ReadOnly { path: PathBuf, message: String },
    #[error(
        "the disk holding the store at {path} is full ({message}); free space there and run again: nothing committed is lost, the page in flight is fetched again"
    )]
    DiskFull { path: PathBuf, message: String },
    #[error(
        "the store at {path} is corrupt ({message}); restore a backup (`kandji-collector backup DIR` makes one), or move the file away and collect again"
    )]
    Corrupt { path: PathBuf, message: String },
    #[error(
        "the store at {path} has schema version {found}, newer than this build supports ({supported}); use a newer kandji-collector"
    )]
    TooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error(
        "the store at {path} has schema version {found} (this build writes {latest}); run `kandji-collector run` or `sync --once` once to migrate it"
    )]
    NotMigrated {
        path: PathBuf,
        found: u32,
        latest: u32,
    },
    #[error("no store at {path} (run `sync --once` first, or pass --data-dir)")]
    Missing { path: PathBuf },
    #[error("the store at {path} is open read-only in this process; {what} needs the writer")]
    NoWriter { path: PathBuf, what: &'static str },
    #[error("the store's writer thread has stopped")]
    WriterGone,
    #[error("a store command failed with a panic (its transaction was rolled back): {0}")]
    Panic(String),
    #[error("checkpoint for {source_name}/{stream} is not valid JSON: {message}")]
    BadCheckpoint {
        source_name: String,
        stream: String,
        message: String,
    },
    #[error("{0}")]
    Invalid(String),
    /// A PostgreSQL store's error, with the URL it was opened on (which has no password).
    #[error("store at {url}: {message}")]
    Postgres { url: String, message: String },
    /// A commit under a lease another replica has since taken: refused, nothing written.
    #[error(
        "source {source_name}: the lease moved to {} (fencing token {current}, this replica held {held}); the commit was refused and nothing was written",
        owner.as_deref().unwrap_or("no replica")
    )]
    Fenced {
        source_name: String,
        held: i64,
        current: i64,
        owner: Option<String>,
    },
}

impl StoreError {
    /// A stable name for status and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::ReadOnly { .. } => "store_read_only",
            StoreError::DiskFull { .. } => "store_full",
            StoreError::Corrupt { .. } => "store_corrupt",
            StoreError::Locked { .. } => "store_locked",
            StoreError::Fenced { .. } => "store_fenced",
            StoreError::Postgres { .. } => "store_postgres",
            _ => "store",
        }
    }

    /// Gives a bare SQLite error the store's path and its class (read-only, full, corrupt).
    fn at(self, path: &Path) -> StoreError {
        let StoreError::Sqlite(e) = self else {
            return self;
        };
        let message = e.to_string();
        let path = path.to_path_buf();
        match e.sqlite_error_code() {
            Some(ErrorCode::ReadOnly) => StoreError::ReadOnly { path, message },
            Some(ErrorCode::DiskFull) => StoreError::DiskFull { path, message },
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
                StoreError::Corrupt { path, message }
            }
            Some(ErrorCode::CannotOpen) => StoreError::Open { path, message },
            _ => StoreError::Db { path, message },
        }
    }
}

/// Knobs for tests and benchmarks; [`Store::open`] uses the defaults.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// Caps the database file at this many pages (`PRAGMA max_page_count`): a full disk, to
    /// SQLite, without filling one.
    pub max_page_count: Option<u64>,
}

/// A job on the writer thread.
type Job = Box<dyn FnOnce(&mut WriterConn) + Send>;

/// The writer thread's state: its connection and the caches of the write path.
pub(crate) struct WriterConn {
    conn: Connection,
    path: PathBuf,
    apps: apps::Caches,
    stages: write::Stages,
}

impl WriterConn {
    /// Forgets what a rolled-back transaction may have cached.
    fn rolled_back(&mut self) {
        self.apps.rolled_back();
        self.stages.rolled_back();
    }
}

struct Writer {
    tx: Mutex<Option<std_mpsc::Sender<Job>>>,
    alive: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
    thread_id: ThreadId,
    lock: Mutex<Option<lock::StoreLock>>,
    /// When the file last passed `quick_check` (ms), for the clean-close stamp.
    checked_ms: i64,
}

struct Inner {
    path: PathBuf,
    readers: ReaderPool,
    writer: Option<Writer>,
    /// The PostgreSQL store, when this handle is one: every method goes there instead (the
    /// SQLite parts above are then unused).
    pg: Option<pg::PgStore>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Readers close first, so the writer, the last connection, checkpoints the WAL into
        // the file and removes it.
        if let Ok(mut idle) = self.readers.idle.lock() {
            idle.clear();
        }
        if let Some(w) = &self.writer {
            // Closing the channel ends the thread once its queue is done; wait for it so the
            // file is closed (and the lock released) when the last handle goes. Never from
            // the writer thread itself.
            if let Ok(mut tx) = w.tx.lock() {
                tx.take();
            }
            if std::thread::current().id() != w.thread_id
                && let Some(h) = w.thread.lock().ok().and_then(|mut t| t.take())
                && h.join().is_ok()
            {
                // The file is closed and its WAL folded in: stamp it, so the next open can
                // tell that nothing touched it since (and skip reading all of it to check).
                clean::stamp(&self.path, w.checked_ms);
            }
            if let Ok(mut l) = w.lock.lock() {
                l.take();
            }
        }
    }
}

/// A handle to the store. Cheap to clone; the writer stops when the last clone drops.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .field("writer", &self.inner.writer.is_some())
            .finish()
    }
}

/// The store holds the fleet's inventory: only its owner may read it (SQLite gives the WAL and
/// shared-memory files the database file's mode).
fn restrict_to_owner(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Err(error) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
            tracing::warn!(path = %path.display(), %error, "cannot restrict the store to its owner");
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// The page size of new stores.
const PAGE_SIZE: i64 = 8_192;

/// The writer's connection settings.
fn configure_writer(conn: &Connection, opts: &StoreOptions) -> Result<(), StoreError> {
    // A new store gets larger pages (set before WAL, which fixes the page size): fewer,
    // shallower B-tree levels for millions of narrow rows.
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    if pages == 0 {
        conn.pragma_update(None, "page_size", PAGE_SIZE)?;
        // Pages freed (a pruned outbox, a dropped stage) can go back to the file system.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    }
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // The writer works through millions of rows in a few B-trees: SQLite's default 2 MB page
    // cache makes it re-read pages from the OS on almost every row. 32 MB keeps the hot
    // interior pages resident (and stays within the RSS budget).
    conn.pragma_update(None, "cache_size", -32_768)?;
    // Staging tables of full snapshots hold millions of narrow rows: on disk, not in RAM.
    conn.pragma_update(None, "temp_store", "FILE")?;
    // Checkpoint every ~40 MB of WAL rather than 4 MB: a page written by many commits (the
    // index pages of a bulk load) reaches the file once per checkpoint, and fewer fsyncs.
    conn.pragma_update(None, "wal_autocheckpoint", 10_000)?;
    conn.pragma_update(None, "journal_size_limit", 67_108_864i64)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    if let Some(n) = opts.max_page_count {
        conn.pragma_update(None, "max_page_count", n as i64)?;
    }
    Ok(())
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Sqlite(e).at(path))?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    conn.pragma_update(None, "cache_size", -8_192)?;
    Ok(conn)
}

/// A few read-only connections, reused.
struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

/// Readers kept open between reads.
const IDLE_READERS: usize = 4;

impl ReaderPool {
    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = match self.idle.lock().ok().and_then(|mut v| v.pop()) {
            Some(c) => c,
            None => open_reader(&self.path)?,
        };
        let r = f(&conn);
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < IDLE_READERS
        {
            idle.push(conn);
        }
        r.map_err(|e| e.at(&self.path))
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

fn writer_loop(mut w: WriterConn, rx: std_mpsc::Receiver<Job>, alive: Arc<AtomicBool>) {
    struct Alive(Arc<AtomicBool>);
    impl Drop for Alive {
        fn drop(&mut self) {
            self.0.store(false, Ordering::SeqCst);
        }
    }
    let _alive = Alive(alive);
    while let Ok(job) = rx.recv() {
        job(&mut w);
        if !w.conn.is_autocommit() {
            // A job that unwound out of a transaction: roll it back so the next starts clean.
            let _ = w.conn.execute_batch("ROLLBACK");
            w.rolled_back();
        }
    }
    if let Err(error) = w
        .conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
    {
        tracing::debug!(%error, "final WAL checkpoint");
    }
    tracing::debug!("store writer stopped");
}

impl Store {
    /// Opens the store `kandji.sqlite3` in `data_dir` for writing: creates it if needed, takes
    /// the single-instance lock, checks its integrity, migrates it, and starts the writer.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        Store::open_with(data_dir, StoreOptions::default())
    }

    pub fn open_with(data_dir: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Open {
            path: data_dir.to_path_buf(),
            message: format!("cannot create the data directory: {e}"),
        })?;
        let path = data_dir.join(FILE_NAME);
        let lock = lock::StoreLock::acquire(&path)?;
        let mut conn = Connection::open(&path).map_err(|e| StoreError::Sqlite(e).at(&path))?;
        if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
            return Err(StoreError::ReadOnly {
                path,
                message: "SQLite could only open it for reading".into(),
            });
        }
        configure_writer(&conn, &opts).map_err(|e| e.at(&path))?;
        restrict_to_owner(&path);
        let checked_ms = match clean::take(&path) {
            Some(checked_ms) => {
                tracing::debug!(path = %path.display(), "store unchanged since its clean close; quick_check skipped");
                checked_ms
            }
            None => {
                quick_check(&conn, &path)?;
                now_ms()
            }
        };
        schema::migrate(&mut conn).map_err(|e| match e {
            StoreError::TooNew {
                found, supported, ..
            } => StoreError::TooNew {
                path: path.clone(),
                found,
                supported,
            },
            other => other.at(&path),
        })?;
        let writer = WriterConn {
            conn,
            path: path.clone(),
            apps: apps::Caches::default(),
            stages: write::Stages::default(),
        };
        let (tx, rx) = std_mpsc::channel::<Job>();
        let alive = Arc::new(AtomicBool::new(true));
        let alive2 = alive.clone();
        let handle = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(writer, rx, alive2))
            .map_err(|e| StoreError::Open {
                path: path.clone(),
                message: format!("cannot start the writer thread: {e}"),
            })?;
        let thread_id = handle.thread().id();
        Ok(Store {
            inner: Arc::new(Inner {
                readers: ReaderPool {
                    path: path.clone(),
                    idle: Mutex::new(Vec::new()),
                },
                path,
                writer: Some(Writer {
                    tx: Mutex::new(Some(tx)),
                    alive,
                    thread: Mutex::new(Some(handle)),
                    thread_id,
                    lock: Mutex::new(Some(lock)),
                    checked_ms,
                }),
                pg: None,
            }),
        })
    }

    /// Opens the PostgreSQL store at `c` (the shared store of replicas), migrating it, and
    /// writing under `mode`'s leases.
    pub async fn open_postgres(
        c: &pg::PgConnect,
        mode: pg::LeaseMode,
    ) -> Result<Store, StoreError> {
        let store = pg::PgStore::connect_as(c, mode).await?;
        let path = PathBuf::from(store.url());
        Ok(Store {
            inner: Arc::new(Inner {
                readers: ReaderPool {
                    path: path.clone(),
                    idle: Mutex::new(Vec::new()),
                },
                path,
                writer: None,
                pg: Some(store),
            }),
        })
    }

    /// Whether this process delivers `source`'s outbox to its outputs: always on SQLite; on a
    /// shared store, only the replica that holds the source's lease does (one sender per
    /// source, so replicas do not each send every record).
    pub async fn delivers(&self, source: &str) -> bool {
        match self.pg() {
            None => true,
            Some(pg) => match pg.mode() {
                pg::LeaseMode::Replica(_) => pg.holds(source),
                pg::LeaseMode::Solo { .. } => pg.lease_for(source).await.ok().flatten().is_some(),
            },
        }
    }

    /// The PostgreSQL store behind this handle, if it is one (the replicas' lease loop, tests).
    pub fn pg(&self) -> Option<&pg::PgStore> {
        self.inner.pg.as_ref()
    }

    /// Opens an existing store for reading only: no lock, no migration, no writer (status,
    /// export, backup; they run beside a daemon). The store must be at this build's schema.
    pub fn open_read_only(data_dir: &Path) -> Result<Store, StoreError> {
        let path = data_dir.join(FILE_NAME);
        if !path.exists() {
            return Err(StoreError::Missing {
                path: data_dir.to_path_buf(),
            });
        }
        let conn = open_reader(&path)?;
        let found = schema::version(&conn).map_err(|e| e.at(&path))?;
        if found > schema::LATEST {
            return Err(StoreError::TooNew {
                path,
                found,
                supported: schema::LATEST,
            });
        }
        if found < schema::LATEST {
            return Err(StoreError::NotMigrated {
                path,
                found,
                latest: schema::LATEST,
            });
        }
        Ok(Store {
            inner: Arc::new(Inner {
                readers: ReaderPool {
                    path: path.clone(),
                    idle: Mutex::new(vec![conn]),
                },
                path,
                writer: None,
                pg: None,
            }),
        })
    }

    /// The store's file (SQLite), or its URL without a password (PostgreSQL).
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Whether this handle can write (it was opened with [`Store::open`]).
    pub fn is_writable(&self) -> bool {
        self.inner.writer.is_some() || self.inner.pg.is_some()
    }

    /// Whether the writer thread is running. `/readyz` is red when it is not.
    pub fn writer_alive(&self) -> bool {
        if self.inner.pg.is_some() {
            // No writer thread: each write takes a pooled connection.
            return true;
        }
        self.inner
            .writer
            .as_ref()
            .is_some_and(|w| w.alive.load(Ordering::SeqCst))
    }

    /// Records the console URL this process serves in the lock file, so that a second process
    /// (`sync --once` beside the daemon) can ask it to sync.
    pub fn advertise_console(&self, url: &str) {
        if let Some(w) = &self.inner.writer
            && let Ok(mut l) = w.lock.lock()
            && let Some(l) = l.as_mut()
        {
            l.set_console(url);
        }
    }

    /// Runs `f` on the writer's connection, serialized with every other write. A panic in
    /// `f` becomes [`StoreError::Panic`]; the writer keeps running.
    async fn exec<T, F>(&self, what: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriterConn) -> Result<T, StoreError> + Send + 'static,
    {
        let Some(w) = &self.inner.writer else {
            return Err(StoreError::NoWriter {
                path: self.inner.path.clone(),
                what,
            });
        };
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |wc: &mut WriterConn| {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(wc)));
            let r = match r {
                Ok(r) => r.map_err(|e| e.at(&wc.path)),
                Err(p) => {
                    let message = panic_message(p.as_ref());
                    tracing::error!(path = %wc.path.display(), panic = %message, "store command panicked; rolled back");
                    wc.rolled_back();
                    Err(StoreError::Panic(message))
                }
            };
            let _ = tx.send(r);
        });
        let sent =
            w.tx.lock()
                .ok()
                .and_then(|t| t.as_ref().map(|t| t.send(job).is_ok()))
                .unwrap_or(false);
        if !sent {
            return Err(StoreError::WriterGone);
        }
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Runs `f` on a pooled read-only connection, on the calling thread (blocking code only).
    fn read_blocking<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.inner.readers.with(f)
    }

    /// Runs `f` on a pooled read-only connection, off the async runtime.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.read_blocking(f))
            .await
            .map_err(|e| StoreError::Panic(e.to_string()))?
    }

    /// Commits one page of one stream in one transaction: its rows (with the change events
    /// and outbox rows they cause), events, sweep ends, refresh-queue changes, checkpoint and
    /// record counts. Either all of it is in the store afterwards, or none of it.
    pub async fn commit_page(&self, batch: Batch) -> Result<BatchOutcome, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.commit(&batch).await;
        }
        self.exec("committing a page", move |w| {
            let r = write::apply(w, &batch);
            if let Err(error) = &r {
                tracing::error!(source = %batch.source, stream = %batch.stream, %error, "store write failed");
            }
            r
        })
        .await
    }

    /// The full `PRAGMA integrity_check`: empty when the store is sound, else SQLite's list
    /// of problems.
    pub async fn verify(&self) -> Result<Vec<String>, StoreError> {
        if let Some(pg) = self.pg() {
            // The server keeps its own integrity; this checks it answers at this build's schema.
            pg.schema_version().await?;
            return Ok(Vec::new());
        }
        self.read(|c| {
            let mut st = c.prepare("PRAGMA integrity_check")?;
            let rows: Vec<String> = st
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<_, _>>()?;
            Ok(rows.into_iter().filter(|r| r != "ok").collect())
        })
        .await
    }

    /// An online copy of the store into `dir` (created if needed; it must not hold a store
    /// yet), through SQLite's backup API, beside a running writer. Returns the copy's path.
    pub async fn backup(&self, dir: &Path) -> Result<PathBuf, StoreError> {
        if self.pg().is_some() {
            return Err(StoreError::Invalid(
                "the store is PostgreSQL: back it up with pg_dump (or the server's own backups), not `backup`".into(),
            ));
        }
        let dest = dir.join(FILE_NAME);
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
            path: dir.to_path_buf(),
            message: format!("cannot create the backup directory: {e}"),
        })?;
        if dest.exists() {
            return Err(StoreError::Open {
                path: dest,
                message: "a store is already there; choose an empty directory".into(),
            });
        }
        let d = dest.clone();
        self.read(move |c| {
            let mut out = Connection::open(&d).map_err(|e| StoreError::Sqlite(e).at(&d))?;
            {
                let backup = rusqlite::backup::Backup::new(c, &mut out)?;
                backup.run_to_completion(1024, std::time::Duration::from_millis(0), None)?;
            }
            out.pragma_update(None, "journal_mode", "DELETE")?;
            restrict_to_owner(&d);
            Ok(())
        })
        .await?;
        Ok(dest)
    }

    /// The database file's size in bytes (main file and WAL), for status and benchmarks.
    pub fn size_on_disk(&self) -> u64 {
        if self.pg().is_some() {
            return 0;
        }
        let mut wal = self.inner.path.as_os_str().to_os_string();
        wal.push("-wal");
        [self.inner.path.clone(), PathBuf::from(wal)]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Bytes per table and index (SQLite's `dbstat`), largest first.
    pub async fn space_by_table(&self) -> Result<Vec<(String, u64)>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg.space_by_table().await;
        }
        self.read(|c| {
            let mut st =
                c.prepare("SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC")?;
            let rows = st
                .query_map([], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
                })?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }
}

/// The clean-close stamp beside the file (`kandji.sqlite3.clean`): the file's size and
/// modification time as the writer left it at a clean close, and when it last passed
/// `quick_check`. Opening for writing reads and removes it (before anything is written); a
/// file that matches its stamp, has no WAL and was checked within a day is not read through
/// again. Anything else (a crash, another program, a restored or damaged file, a day gone)
/// runs the check.
mod clean {
    use std::path::{Path, PathBuf};
    use std::time::UNIX_EPOCH;

    /// How long a check is trusted for an unchanged file.
    const TRUST_MS: i64 = 24 * 3_600_000;

    fn path_of(db: &Path) -> PathBuf {
        let mut p = db.as_os_str().to_owned();
        p.push(".clean");
        PathBuf::from(p)
    }

    fn identity(db: &Path) -> Option<(u64, u128)> {
        let m = std::fs::metadata(db).ok()?;
        let mtime = m
            .modified()
            .ok()?
            .duration_since(UNIX_EPOCH)
            .ok()?
            .as_nanos();
        Some((m.len(), mtime))
    }

    fn wal_is_empty(db: &Path) -> bool {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        std::fs::metadata(PathBuf::from(wal)).map_or(true, |m| m.len() == 0)
    }

    /// Removes the stamp and returns when the file was last checked, if the stamp still
    /// describes the file and the check is recent.
    pub(super) fn take(db: &Path) -> Option<i64> {
        let p = path_of(db);
        let text = std::fs::read_to_string(&p).ok()?;
        // A stamp that cannot be removed cannot be trusted the next time either.
        std::fs::remove_file(&p).ok()?;
        let mut it = text.split_whitespace();
        let (v, size, mtime, checked) = (it.next()?, it.next()?, it.next()?, it.next()?);
        let stamped = (size.parse::<u64>().ok()?, mtime.parse::<u128>().ok()?);
        let checked: i64 = checked.parse().ok()?;
        let fresh = super::now_ms() - checked;
        (v == "v1"
            && identity(db) == Some(stamped)
            && wal_is_empty(db)
            && (0..TRUST_MS).contains(&fresh))
        .then_some(checked)
    }

    pub(super) fn stamp(db: &Path, checked_ms: i64) {
        if !wal_is_empty(db) {
            return;
        }
        if let Some((size, mtime)) = identity(db)
            && let Err(error) =
                std::fs::write(path_of(db), format!("v1 {size} {mtime} {checked_ms}\n"))
        {
            tracing::debug!(%error, "cannot write the clean-close stamp");
        }
    }
}

/// `PRAGMA quick_check`: a corrupt store is refused, naming the file.
fn quick_check(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let corrupt = |message: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        message,
    };
    let mut st =
        conn.prepare("PRAGMA quick_check")
            .map_err(|e| match StoreError::Sqlite(e).at(path) {
                StoreError::Db { message, .. } => corrupt(message),
                other => other,
            })?;
    let problems: Vec<String> = st
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(|e| StoreError::Sqlite(e).at(path))?
        .into_iter()
        .filter(|r| r != "ok")
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(corrupt(
            problems.into_iter().take(3).collect::<Vec<_>>().join("; "),
        ))
    }
}

/// Milliseconds since the Unix epoch, the store's time unit.
pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_command_fails_alone_and_the_writer_keeps_writing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let r: Result<(), StoreError> = store
            .exec("a test", |w| {
                let tx = w.conn.transaction()?;
                tx.execute(
                    "INSERT INTO checkpoints (source, stream, value, updated_at) VALUES ('a', 'b', '{}', 1)",
                    [],
                )?;
                panic!("boom inside a transaction");
            })
            .await;
        assert!(matches!(r, Err(StoreError::Panic(m)) if m.contains("boom")));
        assert!(store.writer_alive());
        // The panicked transaction left nothing, and the next write commits.
        assert_eq!(store.checkpoint("a", "b").await.unwrap(), None);
        let mut b = Batch::new("a", "b", 5, "inventory");
        b.checkpoint = Some(serde_json::json!({"n": 1}));
        store.commit_page(b).await.unwrap();
        assert_eq!(
            store.checkpoint("a", "b").await.unwrap(),
            Some(serde_json::json!({"n": 1}))
        );
    }

    #[tokio::test]
    async fn a_read_only_handle_refuses_writes_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let ro = Store::open_read_only(dir.path()).unwrap();
        assert!(!ro.is_writable());
        let err = ro
            .commit_page(Batch::new("a", "b", 1, "inventory"))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NoWriter { .. }), "{err}");
        assert!(err.to_string().contains(dir.path().to_str().unwrap()));
    }

    #[tokio::test]
    async fn a_clean_close_stamps_the_file_and_any_change_brings_the_check_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join(FILE_NAME);
        let stamp = dir.path().join("kandji.sqlite3.clean");
        let store = Store::open(dir.path()).unwrap();
        let mut b = Batch::new("a", "b", 5, "inventory");
        b.checkpoint = Some(serde_json::json!({"n": 1}));
        store.commit_page(b).await.unwrap();
        assert!(!stamp.exists(), "no stamp while the writer may write");
        drop(store);
        assert!(stamp.exists(), "a clean close stamps the file");
        // Unchanged: the stamp is taken (and trusted) by the next open, then gone.
        let store = Store::open(dir.path()).unwrap();
        assert!(!stamp.exists());
        drop(store);
        assert!(
            clean::take(&db).is_some(),
            "an untouched file matches its stamp"
        );
        // A stamp that no longer describes the file is not trusted.
        drop(Store::open(dir.path()).unwrap());
        let bytes = std::fs::read(&db).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::write(&db, &bytes).unwrap();
        assert_eq!(clean::take(&db), None, "a rewritten file is checked again");
        // Nor is a stale one (checked more than a day ago).
        drop(Store::open(dir.path()).unwrap());
        let text = std::fs::read_to_string(&stamp).unwrap();
        let mut f: Vec<String> = text.split_whitespace().map(str::to_string).collect();
        f[3] = (now_ms() - 25 * 3_600_000).to_string();
        std::fs::write(&stamp, f.join(" ")).unwrap();
        assert_eq!(clean::take(&db), None);
    }
}
