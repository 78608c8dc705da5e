//! The embedded store: SQLite in WAL mode.
//!
//! All writes go through one writer thread ([`Store::write`]), off the async runtime. A
//! [`Batch`] is one page of one stream: its inventory rows, its events, the end of a sweep if
//! the page closes one, and the stream's new checkpoint, committed in ONE transaction. So the
//! store is exactly-once whatever happens between two commits: either the page and its
//! checkpoint are both there, or neither is and the page is fetched again.
//!
//! Reads open their own connections ([`Store::reader`]); WAL lets them run beside the writer.

pub mod schema;
pub mod tables;
mod write;

use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use tokio::sync::oneshot;

pub use tables::{Table, TableSpec};
pub use write::{
    Batch, BatchOutcome, EventRow, InvRow, Scope, StatusUpdate, SweepEnd, Upsert, stable_hash,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("store at {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("the store's schema version {found} is newer than this build supports ({supported})")]
    TooNew { found: u32, supported: u32 },
    #[error("the store's writer thread has stopped")]
    WriterGone,
    #[error("checkpoint for {source_name}/{stream} is not valid JSON: {message}")]
    BadCheckpoint {
        source_name: String,
        stream: String,
        message: String,
    },
}

/// A closure run on the writer's connection.
type ExecFn = Box<dyn FnOnce(&mut Connection) -> Result<(), StoreError> + Send>;

enum Cmd {
    Write(
        Box<Batch>,
        oneshot::Sender<Result<BatchOutcome, StoreError>>,
    ),
    Exec(ExecFn, oneshot::Sender<Result<(), StoreError>>),
}

/// A handle to the store. Cheap to clone; the writer thread stops when the last clone drops.
#[derive(Clone)]
pub struct Store {
    path: PathBuf,
    tx: std_mpsc::Sender<Cmd>,
    _writer: std::sync::Arc<WriterGuard>,
}

struct WriterGuard(Option<JoinHandle<()>>);

impl Drop for WriterGuard {
    fn drop(&mut self) {
        // The channel's last sender is dropped with the Store, so the thread ends on its own;
        // joining here would block an async drop, so it is detached.
        let _ = self.0.take();
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

fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // The writer upserts millions of rows into a few B-trees: SQLite's default 2 MB page cache
    // makes it re-read pages from the OS on almost every row. 32 MB keeps the hot interior
    // pages resident (and stays within the RSS budget).
    conn.pragma_update(None, "cache_size", -32_768)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    Ok(())
}

impl Store {
    /// Opens (creating and migrating if needed) the store `kandji.sqlite3` in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Open {
            path: data_dir.to_path_buf(),
            message: format!("cannot create the data directory: {e}"),
        })?;
        let path = data_dir.join("kandji.sqlite3");
        let mut conn = Connection::open(&path).map_err(|e| StoreError::Open {
            path: path.clone(),
            message: e.to_string(),
        })?;
        configure(&conn)?;
        restrict_to_owner(&path);
        schema::migrate(&mut conn)?;
        let (tx, rx) = std_mpsc::channel::<Cmd>();
        let handle = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .map_err(|e| StoreError::Open {
                path: path.clone(),
                message: format!("cannot start the writer thread: {e}"),
            })?;
        Ok(Store {
            path,
            tx,
            _writer: std::sync::Arc::new(WriterGuard(Some(handle))),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Commits one batch in one transaction.
    pub async fn write(&self, batch: Batch) -> Result<BatchOutcome, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Write(Box::new(batch), tx))
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Runs `f` on the writer's connection, serialized with the batches.
    pub async fn exec<F>(&self, f: F) -> Result<(), StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<(), StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Exec(Box::new(f), tx))
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// A new read-only connection. Use it from blocking code (`spawn_blocking`).
    pub fn reader(&self) -> Result<Connection, StoreError> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        Ok(conn)
    }

    /// Runs a read on a fresh read-only connection, off the async runtime.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = store.reader()?;
            f(&conn)
        })
        .await
        .map_err(|_| StoreError::WriterGone)?
    }

    /// The stream's committed checkpoint, if any.
    pub fn checkpoint(
        conn: &Connection,
        source: &str,
        stream: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let raw: Option<String> = conn
            .query_row(
                "SELECT value FROM checkpoints WHERE source = ?1 AND stream = ?2",
                [source, stream],
                |r| r.get(0),
            )
            .optional()?;
        raw.map(|s| {
            serde_json::from_str(&s).map_err(|e| StoreError::BadCheckpoint {
                source_name: source.to_string(),
                stream: stream.to_string(),
                message: e.to_string(),
            })
        })
        .transpose()
    }
}

fn writer_loop(mut conn: Connection, rx: std_mpsc::Receiver<Cmd>) {
    while let Ok(cmd) = rx.recv() {
        match cmd {
            Cmd::Write(batch, reply) => {
                let result = write::apply(&mut conn, &batch);
                if let Err(error) = &result {
                    tracing::error!(source = %batch.source, stream = %batch.stream, %error, "store write failed");
                }
                let _ = reply.send(result);
            }
            Cmd::Exec(f, reply) => {
                let _ = reply.send(f(&mut conn));
            }
        }
    }
    tracing::debug!("store writer stopped");
}

/// Milliseconds since the Unix epoch, the store's time unit.
pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}
