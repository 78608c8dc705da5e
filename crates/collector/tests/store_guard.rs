//! The store's guards: one writer per store (a second process is told who holds it, a lock
//! left by `kill -9` blocks nothing), a read-only or full store fails the stream with a typed
//! error that names the file (and `status` says so) while nothing committed is lost, and a
//! corrupt store is refused with its path.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use kandji_collector::engine::{SourceRuntime, StreamError};
use kandji_collector::store::{Store, StoreError, StoreOptions};
use kandji_collector::streams::StreamName;
use kandji_sim::Churn;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kandji-collector"));
    c.env_remove("RUST_LOG")
        .env_remove("KANDJI_COLLECTOR_API_KEY")
        .env("NO_COLOR", "1");
    c
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn config(dir: &Path, url: &str, token: &str, streams: &str) -> String {
    let token_file = dir.join("token");
    std::fs::write(&token_file, token).unwrap();
    let cfg = dir.join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = {:?}\n[[sources]]\nname = \"acme\"\nendpoint = {url:?}\n\
             token_file = {token_file:?}\nallow_custom_endpoint = true\nper_second = 50\n\
             streams = [{streams}]\n",
            dir.join("data")
        ),
    )
    .unwrap();
    cfg.display().to_string()
}

/// Waits until some process holds the store's lock.
fn wait_for_holder(db: &Path) -> kandji_collector::store::lock::Holder {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(h) = kandji_collector::store::lock::holder(db) {
            return h;
        }
        assert!(Instant::now() < deadline, "nobody took the lock of {db:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_is_refused_at_once_and_a_killed_holder_blocks_nothing() {
    let mut cfg = sim_config(20, 3);
    cfg.churn = Churn::none();
    let sim = kandji_sim::spawn(cfg).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        &sim.base_url(),
        sim.token(),
        "\"blueprints\", \"tags\", \"devices\"",
    );
    let db = dir.path().join("data").join("kandji.sqlite3");
    let o = tokio::task::spawn_blocking(move || {
        let mut daemon = bin()
            .args(["--config", &config, "run", "--no-console"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let holder = wait_for_holder(&db);
        assert_eq!(holder.pid, Some(daemon.id()));
        assert_eq!(holder.command, "kandji-collector run");
        // A cron `sync --once` beside the daemon: refused at once, naming the daemon.
        let t = Instant::now();
        let second = bin()
            .args(["--config", &config, "sync", "--once"])
            .output()
            .unwrap();
        let refused_in = t.elapsed();
        // kill -9: the kernel drops the lock with the process; the file stays.
        daemon.kill().unwrap();
        daemon.wait().unwrap();
        assert!(db.with_file_name("kandji.sqlite3.lock").exists());
        let after = bin()
            .args(["--config", &config, "sync", "--once"])
            .output()
            .unwrap();
        (second, refused_in, after, daemon.id())
    })
    .await
    .unwrap();
    let (second, refused_in, after, pid) = o;
    assert!(!second.status.success(), "{}", text(&second));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains(&format!("in use by process {pid} (kandji-collector run)"))
            && err.contains("kandji.sqlite3")
            && err.contains("no console"),
        "{}",
        text(&second)
    );
    assert!(!err.contains("database is locked"), "{err}");
    assert!(refused_in < Duration::from_secs(5), "{refused_in:?}");
    assert!(after.status.success(), "{}", text(&after));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_beside_a_daemon_with_a_console_asks_it_over_the_api() {
    let mut cfg = sim_config(15, 4);
    cfg.churn = Churn::none();
    let sim = kandji_sim::spawn(cfg).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        &sim.base_url(),
        sim.token(),
        "\"blueprints\", \"tags\", \"devices\"",
    );
    let db = dir.path().join("data").join("kandji.sqlite3");
    let (without_key, with_key) = tokio::task::spawn_blocking(move || {
        let mut daemon = bin()
            .args(["--config", &config, "run", "--listen", "127.0.0.1:0"])
            .env("KANDJI_COLLECTOR_API_KEY", "k-0123456789")
            .env("KANDJI_COLLECTOR_ADMIN_PASSWORD", "pw-0123456789")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The console's URL reaches the lock file once it listens.
        let deadline = Instant::now() + Duration::from_secs(30);
        while wait_for_holder(&db).console.is_none() {
            assert!(Instant::now() < deadline, "no console advertised");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Give the supervisor a moment to start the source.
        std::thread::sleep(Duration::from_millis(500));
        let without_key = bin()
            .args(["--config", &config, "sync", "--once"])
            .output()
            .unwrap();
        let with_key = bin()
            .args([
                "--config",
                &config,
                "sync",
                "--once",
                "--streams",
                "devices",
            ])
            .env("KANDJI_COLLECTOR_API_KEY", "k-0123456789")
            .output()
            .unwrap();
        let _ = Command::new("kill")
            .args(["-TERM", &daemon.id().to_string()])
            .status();
        let _ = daemon.wait();
        (without_key, with_key)
    })
    .await
    .unwrap();
    assert!(!without_key.status.success());
    let err = String::from_utf8_lossy(&without_key.stderr);
    assert!(
        err.contains("Sync now") && err.contains("http://127.0.0.1:"),
        "{}",
        text(&without_key)
    );
    assert!(with_key.status.success(), "{}", text(&with_key));
    assert!(
        String::from_utf8_lossy(&with_key.stdout).contains("asked the running collector"),
        "{}",
        text(&with_key)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_fresh_processes_never_race_the_migration() {
    let mut cfg = sim_config(10, 5);
    cfg.churn = Churn::none();
    let sim = kandji_sim::spawn(cfg).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &sim.base_url(), sim.token(), "\"devices\"");
    let outs = tokio::task::spawn_blocking(move || {
        let a = bin()
            .args(["--config", &config, "sync", "--once"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let b = bin()
            .args(["--config", &config, "sync", "--once"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()]
    })
    .await
    .unwrap();
    assert!(outs.iter().any(|o| o.status.success()));
    for o in &outs {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.success() || err.contains("is in use by process"),
            "{}",
            text(o)
        );
        assert!(!err.contains("database is locked"), "{}", text(o));
    }
}

/// A runtime on `store` for the simulator's tenant.
fn runtime(sim: &kandji_sim::SimHandle, store: &Store) -> SourceRuntime {
    let stop = tokio_util::sync::CancellationToken::new();
    let mut rt = SourceRuntime::new(source_for(sim, "acme"), store.clone(), stop).expect("runtime");
    rt.export_poll = Duration::from_millis(5);
    rt
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_stream_with_a_store_error_and_loses_nothing() {
    let mut cfg = sim_config(60, 6);
    cfg.churn = Churn::none();
    let env = env(cfg).await;
    cycle(&env, &[StreamName::Blueprints, StreamName::Tags]).await;
    let path = env.store.path().to_path_buf();
    let dir = env.dir.path().to_path_buf();
    let pages: i64 = sql(&env.store)
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    drop(env.rt);
    drop(env.store);
    // The file may grow by a few pages only: the apps export cannot fit.
    let store = Store::open_with(
        &dir,
        StoreOptions {
            max_page_count: Some(pages as u64 + 40),
        },
    )
    .unwrap();
    let rt = runtime(&env.sim, &store);
    let err = rt
        .run_stream(StreamName::Apps)
        .await
        .expect_err("the apps export does not fit");
    match &err {
        StreamError::Store(StoreError::DiskFull { path: p, .. }) => assert_eq!(p, &path),
        other => panic!("expected a full store, got {other:?}"),
    }
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    let status = store.stream_status(Some("acme")).await.unwrap();
    let apps = status
        .iter()
        .find(|r| r.stream == "apps")
        .expect("apps row");
    assert_eq!(apps.state, "failing");
    assert_eq!(apps.last_error_kind.as_deref(), Some("store_full"));
    assert!(
        apps.last_error_message
            .as_deref()
            .unwrap_or("")
            .contains("full")
    );
    // The disk has room again: the next run collects everything the tenant has.
    drop(rt);
    drop(store);
    let store = Store::open(&dir).unwrap();
    let rt = runtime(&env.sim, &store);
    for r in kandji_collector::engine::sync_once(&rt, &[]).await {
        r.result.unwrap_or_else(|e| panic!("{}: {e}", r.stream));
    }
    // Compliance rotates through at most 60 devices a run.
    for r in kandji_collector::engine::sync_once(&rt, &[StreamName::Compliance]).await {
        r.result.unwrap();
    }
    assert_store_matches(&env.sim, &store);
}

/// Makes a file read-only even for root (`chattr +i`), or for this user (`chmod 0444`).
fn make_read_only(path: &Path, on: bool) {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if root {
        let ok = Command::new("chattr")
            .arg(if on { "+i" } else { "-i" })
            .arg(path)
            .status()
            .expect("chattr (e2fsprogs) is needed for this test as root");
        assert!(ok.success(), "chattr failed on {path:?}");
    } else {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                path,
                std::fs::Permissions::from_mode(if on { 0o444 } else { 0o600 }),
            )
            .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_store_is_refused_with_its_path_and_status_says_so() {
    let mut cfg = sim_config(10, 7);
    cfg.churn = Churn::none();
    let sim = kandji_sim::spawn(cfg).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        &sim.base_url(),
        sim.token(),
        "\"blueprints\", \"tags\", \"devices\"",
    );
    let db = dir.path().join("data").join("kandji.sqlite3");
    let (first, sync, status, daemon, again) = tokio::task::spawn_blocking(move || {
        let first = bin()
            .args(["--config", &config, "sync", "--once"])
            .output()
            .unwrap();
        make_read_only(&db, true);
        let sync = bin()
            .args(["--config", &config, "sync", "--once"])
            .output()
            .unwrap();
        let status = bin()
            .args(["--config", &config, "status"])
            .output()
            .unwrap();
        let daemon = bin()
            .args(["--config", &config, "run", "--no-console"])
            .output()
            .unwrap();
        make_read_only(&db, false);
        let again = bin()
            .args(["--config", &config, "sync", "--once"])
            .output()
            .unwrap();
        (first, sync, status, daemon, again)
    })
    .await
    .unwrap();
    assert!(first.status.success(), "{}", text(&first));
    for o in [&sync, &daemon] {
        assert!(!o.status.success(), "{}", text(o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("read-only") && err.contains("kandji.sqlite3"),
            "{}",
            text(o)
        );
    }
    assert!(status.status.success(), "{}", text(&status));
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("READ-ONLY"),
        "{}",
        text(&status)
    );
    assert!(again.status.success(), "{}", text(&again));
    let store = Store::open(&dir.path().join("data")).unwrap();
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM devices WHERE removed_at IS NULL"
        ),
        10
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_store_is_refused_naming_the_file_and_how_to_recover() {
    let mut cfg = sim_config(30, 8);
    cfg.churn = Churn::none();
    let sim = kandji_sim::spawn(cfg).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        &sim.base_url(),
        sim.token(),
        "\"blueprints\", \"tags\", \"devices\"",
    );
    let data = dir.path().join("data");
    let db = data.join("kandji.sqlite3");
    let first = bin()
        .args(["--config", &config, "sync", "--once"])
        .output()
        .unwrap();
    assert!(first.status.success(), "{}", text(&first));
    // A backup taken before the damage restores.
    let backup = dir.path().join("backup");
    let b = bin()
        .args(["--config", &config, "backup"])
        .arg(&backup)
        .output()
        .unwrap();
    assert!(b.status.success(), "{}", text(&b));
    // Damage the devices table's pages (past the header and the schema page), with the WAL
    // folded into the file first so the damage is what SQLite reads.
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        drop(c);
        let size = std::fs::metadata(&db).unwrap().len();
        let mut bytes = std::fs::read(&db).unwrap();
        assert!(size > 64 * 1024);
        for b in bytes.iter_mut().skip(3 * 4096).take(size as usize / 2) {
            *b = 0x5a;
        }
        std::fs::write(&db, bytes).unwrap();
    }
    let err = Store::open(&data).expect_err("a corrupt store is refused");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&db.display().to_string()) && msg.contains("restore a backup"),
        "{msg}"
    );
    let sync = bin()
        .args(["--config", &config, "sync", "--once"])
        .output()
        .unwrap();
    assert!(!sync.status.success());
    assert!(
        String::from_utf8_lossy(&sync.stderr).contains("corrupt"),
        "{}",
        text(&sync)
    );
    let verify = bin()
        .args(["--config", &config, "status", "--verify"])
        .output()
        .unwrap();
    assert!(!verify.status.success(), "{}", text(&verify));
    // The backup is a sound store with the same devices.
    let restored = Store::open(&backup).unwrap();
    assert!(restored.verify().await.unwrap().is_empty());
    assert_eq!(
        count(
            &restored,
            "SELECT count(*) FROM devices WHERE removed_at IS NULL"
        ),
        30
    );
    assert!(backup.join("console.key").exists() || !data.join("console.key").exists());
}
