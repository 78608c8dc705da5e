//! The store's two backends, for tests that run on both: embedded SQLite in a temporary
//! directory, or the machine's PostgreSQL in a schema of the test's own (dropped at the end).
//!
//! PostgreSQL (and NATS) are services: on a machine without them these tests are skipped,
//! and say so on stderr, unless `KANDJI_REQUIRE_SERVICES=1` (which `.ci/run` sets): then a
//! missing service fails the test, so that in CI it can never pass by being skipped.
#![allow(dead_code)]

use std::collections::BTreeSet;

use kandji_collector::store::Store;
use kandji_collector::store::pg::{LeaseMode, PgConnect};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn pg_url() -> String {
    std::env::var("KANDJI_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn nats_url() -> String {
    std::env::var("KANDJI_TEST_NATS_URL").unwrap_or_else(|_| "127.0.0.1:4222".into())
}

/// Whether a missing service must fail the test (CI) rather than skip it.
pub fn services_required() -> bool {
    std::env::var("KANDJI_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// What a test does when a service it needs does not answer: fail under
/// `KANDJI_REQUIRE_SERVICES=1`, else say it is skipped and why.
pub fn missing_service(test: &str, service: &str, detail: &str) {
    if services_required() {
        panic!("{test}: {service} must answer for this test (KANDJI_REQUIRE_SERVICES=1): {detail}");
    }
    // Straight to the process's stderr, past the test harness's capture: a skip is said in
    // the output of `cargo test` even when the test "passes".
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: {service} does not answer ({detail}); set KANDJI_REQUIRE_SERVICES=1 to make this a failure"
    );
}

/// Whether a TCP service answers at `addr` (host:port) within a second.
pub fn answers(addr: &str) -> bool {
    use std::net::ToSocketAddrs;
    addr.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| {
            std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(1)).is_ok()
        })
}

/// Whether PostgreSQL answers at [`pg_url`]: when it does not, the test is skipped with a
/// message, or fails under `KANDJI_REQUIRE_SERVICES=1` ([`missing_service`]).
pub async fn pg_available(test: &str) -> bool {
    let url = pg_url();
    let r = async {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        client.simple_query("SELECT 1").await.map(|_| ())
    };
    match tokio::time::timeout(std::time::Duration::from_secs(5), r).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            missing_service(test, "PostgreSQL", &format!("{url}: {e}"));
            false
        }
        Err(_) => {
            missing_service(test, "PostgreSQL", &format!("{url}: no answer within 5 s"));
            false
        }
    }
}

/// A schema name no other test (or run) uses.
pub fn unique_schema(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(30)
        .collect();
    format!(
        "kc_{clean}_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    )
    .to_ascii_lowercase()
}

pub fn pg_connect(schema: &str) -> PgConnect {
    let mut c = PgConnect::new(&pg_url());
    c.schema = Some(schema.to_string());
    c.pool_size = 4;
    c
}

/// A store on one backend, with what a test needs to look inside it and to reopen it.
pub struct TestStore {
    pub store: Store,
    pub backend: Backend,
    pub dir: tempfile::TempDir,
    pub schema: Option<String>,
}

impl TestStore {
    /// A new, empty store. `None` when the backend's service is missing and the test is
    /// skipped (see the module's doc).
    pub async fn open(backend: Backend, test: &str) -> Option<TestStore> {
        let dir = tempfile::tempdir().expect("tempdir");
        match backend {
            Backend::Sqlite => Some(TestStore {
                store: Store::open(dir.path()).expect("open"),
                backend,
                dir,
                schema: None,
            }),
            Backend::Postgres => {
                let schema = unique_schema(test);
                match Store::open_postgres(&pg_connect(&schema), solo()).await {
                    Ok(store) => Some(TestStore {
                        store,
                        backend,
                        dir,
                        schema: Some(schema),
                    }),
                    Err(e) => {
                        missing_service(test, "PostgreSQL", &format!("{}: {e}", pg_url()));
                        None
                    }
                }
            }
        }
    }

    /// The same store opened again (the first handle must be dropped for SQLite's lock).
    pub async fn reopen(&self) -> Store {
        match self.backend {
            Backend::Sqlite => Store::open(self.dir.path()).expect("reopen"),
            Backend::Postgres => {
                Store::open_postgres(&pg_connect(self.schema.as_deref().expect("schema")), solo())
                    .await
                    .expect("reopen")
            }
        }
    }

    /// The same store, closed and opened again.
    pub async fn reopened(self) -> TestStore {
        let TestStore {
            store,
            backend,
            dir,
            schema,
        } = self;
        drop(store);
        let store = match backend {
            Backend::Sqlite => Store::open(dir.path()).expect("reopen"),
            Backend::Postgres => {
                Store::open_postgres(&pg_connect(schema.as_deref().expect("schema")), solo())
                    .await
                    .expect("reopen")
            }
        };
        TestStore {
            store,
            backend,
            dir,
            schema,
        }
    }

    /// Rows of a query both dialects read alike, every cell as text.
    pub async fn rows(&self, store: &Store, sql: &str) -> Vec<Vec<Option<String>>> {
        rows_of(self.backend, store, sql).await
    }

    /// A `count(*)` (or any one integer).
    pub async fn count(&self, sql: &str) -> i64 {
        self.count_on(&self.store, sql).await
    }

    pub async fn count_on(&self, store: &Store, sql: &str) -> i64 {
        self.rows(store, sql).await[0][0]
            .as_deref()
            .unwrap_or("0")
            .parse()
            .expect("an integer")
    }

    /// The first column of every row.
    pub async fn strings(&self, sql: &str) -> BTreeSet<String> {
        self.rows(&self.store, sql)
            .await
            .into_iter()
            .filter_map(|r| r.into_iter().next().flatten())
            .collect()
    }

    /// What the truth checks read (`super::Snapshot`), on this backend.
    pub async fn snapshot(&self) -> super::Snapshot {
        snapshot_of(self.backend, &self.store, None).await
    }

    /// Drops the test's schema (PostgreSQL); the directory goes with `self`.
    pub async fn finish(self) {
        if let (Some(s), Some(pg)) = (&self.schema, self.store.pg()) {
            pg.drop_schema(s).await.expect("drop schema");
        }
    }
}

/// What the truth checks read (`super::Snapshot`) of `store`, of one source or all.
pub async fn snapshot_of(backend: Backend, store: &Store, source: Option<&str>) -> super::Snapshot {
    let mut got = std::collections::HashMap::new();
    for q in super::Snapshot::queries(source) {
        let rows = rows_of(backend, store, &q).await;
        got.insert(q, rows);
    }
    super::Snapshot::read_for(source, |q| got.remove(q).expect("a fetched query"))
}

/// Rows of a query both dialects read alike, every cell as text.
pub async fn rows_of(backend: Backend, store: &Store, sql: &str) -> Vec<Vec<Option<String>>> {
    match backend {
        Backend::Sqlite => sqlite_rows(store, sql),
        Backend::Postgres => store
            .pg()
            .expect("a PostgreSQL store")
            .query_text(sql)
            .await
            .expect("query"),
    }
}

fn sqlite_rows(store: &Store, sql: &str) -> Vec<Vec<Option<String>>> {
    let c = rusqlite::Connection::open_with_flags(
        store.path(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("read-only connection");
    let mut st = c.prepare(sql).expect("prepare");
    let n = st.column_count();
    st.query_map([], |r| {
        (0..n)
            .map(|i| {
                Ok(match r.get_ref(i)? {
                    rusqlite::types::ValueRef::Null => None,
                    rusqlite::types::ValueRef::Integer(v) => Some(v.to_string()),
                    rusqlite::types::ValueRef::Real(v) => Some(v.to_string()),
                    rusqlite::types::ValueRef::Text(t) => {
                        Some(String::from_utf8_lossy(t).into_owned())
                    }
                    rusqlite::types::ValueRef::Blob(b) => Some(format!("<{} bytes>", b.len())),
                })
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .expect("query")
    .collect::<Result<_, _>>()
    .expect("rows")
}

/// The lease mode of a test's store: one process on its own.
pub fn solo() -> LeaseMode {
    LeaseMode::Solo {
        owner: "test".into(),
        ttl_ms: 60_000,
    }
}

/// Runs an `async fn(Backend)` test case once per backend, as two tests named `sqlite` and
/// `postgres` in a module named after the case.
#[macro_export]
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                #[tokio::test]
                async fn sqlite() {
                    super::$case(super::common::backend::Backend::Sqlite).await
                }
                #[tokio::test]
                async fn postgres() {
                    super::$case(super::common::backend::Backend::Postgres).await
                }
            }
        )*
    };
}
