//! Every CLI verb, run as the real binary against a simulated tenant.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use kandji_sim::{Churn, TokenSpec};
use serde_json::Value;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kandji-collector"));
    c.env_remove("RUST_LOG").env("NO_COLOR", "1");
    c
}

async fn run(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || bin().args(&args).output().expect("run binary"))
        .await
        .expect("join")
}

fn write_config(dir: &Path, url: &str, token: &str, extra: &str) -> String {
    let token_file = dir.join("token");
    std::fs::write(&token_file, token).expect("token file");
    let cfg = dir.join("kandji-collector.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = {:?}\n[[sources]]\nname = \"acme\"\nendpoint = {url:?}\nregion = \"us\"\n\
             token_file = {token_file:?}\nallow_custom_endpoint = true\nper_second = 50\n{extra}",
            dir.join("data")
        ),
    )
    .expect("config");
    cfg.display().to_string()
}

fn out(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_sync_status_and_export_work_end_to_end() {
    let mut cfg = sim_config(30, 3);
    cfg.churn = Churn::none();
    let sim = kandji_sim::spawn(cfg).await.expect("sim");
    let dir = tempfile::tempdir().expect("dir");
    let config = write_config(dir.path(), &sim.base_url(), sim.token(), "");

    let o = run(vec!["--config".into(), config.clone(), "validate".into()]).await;
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("acme"),
        "{}",
        out(&o)
    );

    let o = run(vec!["--config".into(), config.clone(), "check".into()]).await;
    assert!(o.status.success(), "{}", out(&o));
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(text.contains("devices") && text.contains('✓'), "{text}");
    assert!(text.contains("plan: about"), "{text}");

    let o = run(vec![
        "--config".into(),
        config.clone(),
        "sync".into(),
        "--once".into(),
        "--streams".into(),
        "blueprints,tags,devices,audit_events,users".into(),
    ])
    .await;
    assert!(o.status.success(), "{}", out(&o));
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    for s in ["blueprints", "tags", "devices", "audit_events", "users"] {
        assert!(text.contains(s), "sync output names {s}: {text}");
    }
    assert!(
        !text.contains("apps"),
        "only the chosen streams run: {text}"
    );

    let o = run(vec![
        "--config".into(),
        config.clone(),
        "status".into(),
        "--json".into(),
    ])
    .await;
    assert!(o.status.success(), "{}", out(&o));
    let rows: Vec<Value> = serde_json::from_slice(&o.stdout).expect("status json");
    let devices = rows
        .iter()
        .find(|r| r["stream"] == "devices")
        .expect("devices row");
    assert_eq!(devices["state"], "healthy");
    assert!(devices["records_total"].as_i64().unwrap_or(0) >= 30);
    assert_eq!(devices["checkpoint"]["done"], true);

    let o = run(vec![
        "--config".into(),
        config.clone(),
        "export".into(),
        "--source".into(),
        "acme".into(),
        "--stream".into(),
        "devices".into(),
        "--format".into(),
        "ndjson".into(),
    ])
    .await;
    assert!(o.status.success(), "{}", out(&o));
    let lines: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("ndjson line"))
        .collect();
    assert_eq!(lines.len(), 30);
    assert!(lines.iter().all(|d| d["device_id"].is_string()));

    let o = run(vec![
        "--config".into(),
        config.clone(),
        "export".into(),
        "--source".into(),
        "acme".into(),
        "--stream".into(),
        "audit_events".into(),
        "--since".into(),
        "2100-01-01T00:00:00Z".into(),
    ])
    .await;
    assert!(o.status.success(), "{}", out(&o));
    assert!(o.stdout.is_empty(), "--since in the future exports nothing");

    let o = run(vec![
        "--config".into(),
        config,
        "export".into(),
        "--source".into(),
        "acme".into(),
        "--stream".into(),
        "nope".into(),
    ])
    .await;
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("\"nope\" is not a stream"),
        "{}",
        out(&o)
    );
}

#[tokio::test]
async fn bad_config_errors_name_the_field_and_value() {
    let dir = tempfile::tempdir().expect("dir");
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[[sources]]\nname = \"acme\"\nendpoint = \"evil.example.com\"\ntoken_env = \"X\"\nstreams = [\"devices\", \"bogus\"]\nbudget_share = 2.0\n",
    )
    .expect("write");
    let o = run(vec![
        "--config".into(),
        cfg.display().to_string(),
        "validate".into(),
    ])
    .await;
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        err.contains("sources[0].endpoint") && err.contains("evil.example.com"),
        "{err}"
    );
    assert!(
        err.contains("sources[0].streams[1]") && err.contains("bogus"),
        "{err}"
    );
    assert!(
        err.contains("sources[0].budget_share") && err.contains('2'),
        "{err}"
    );

    std::fs::write(&cfg, "[[sources]]\nname = \"acme\"\nendpont = \"acme\"\n").expect("write");
    let o = run(vec![
        "--config".into(),
        cfg.display().to_string(),
        "validate".into(),
    ])
    .await;
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(err.contains("endpont"), "unknown keys are named: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_shows_a_missing_permission_with_the_checkbox_to_tick() {
    let mut cfg = sim_config(10, 5);
    let limited = "0b6f3c2a-5d4e-4f1a-9b8c-7e6d5c4b3a29".to_string();
    cfg.extra_tokens = vec![TokenSpec {
        token: limited.clone(),
        allow: vec![
            "GET /api/v1/devices".into(),
            "GET /api/v1/settings/licensing".into(),
        ],
    }];
    let sim = kandji_sim::spawn(cfg).await.expect("sim");
    let dir = tempfile::tempdir().expect("dir");
    let config = write_config(
        dir.path(),
        &sim.base_url(),
        &limited,
        "streams = [\"devices\", \"users\", \"threats\"]\n",
    );
    let o = run(vec!["--config".into(), config, "check".into()]).await;
    assert!(!o.status.success(), "a missing permission fails the check");
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let line = |s: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(s))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line("devices").contains('✓'), "{text}");
    assert!(line("users").contains("List users"), "{text}");
    assert!(line("threats").contains("threat-details"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_shows_as_an_auth_error_with_a_hint() {
    let mut cfg = sim_config(10, 5);
    cfg.churn = Churn::none();
    let sim = kandji_sim::spawn(cfg).await.expect("sim");
    let dir = tempfile::tempdir().expect("dir");
    let config = write_config(dir.path(), &sim.base_url(), sim.token(), "");
    let sync = |streams: &str| {
        vec![
            "--config".into(),
            config.clone(),
            "sync".into(),
            "--once".into(),
            "--streams".into(),
            streams.to_string(),
        ]
    };
    let o = run(sync("devices,users")).await;
    assert!(o.status.success(), "{}", out(&o));
    sim.revoke_token(sim.token());
    let o = run(sync("devices,users")).await;
    assert!(!o.status.success());
    let o = run(vec![
        "--config".into(),
        config,
        "status".into(),
        "--json".into(),
    ])
    .await;
    let rows: Vec<Value> = serde_json::from_slice(&o.stdout).expect("json");
    for s in ["devices", "users"] {
        let r = rows.iter().find(|r| r["stream"] == s).expect("row");
        assert_eq!(r["state"], "auth_error", "{r}");
        assert_eq!(r["last_error_kind"], "unauthorized");
        assert!(
            r["hint"].as_str().unwrap_or_default().contains("revoked"),
            "{r}"
        );
        assert!(
            r["last_success_at"].is_string(),
            "the earlier success is kept"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_collects_until_sigterm_then_exits_cleanly() {
    let mut cfg = sim_config(25, 8);
    cfg.churn = Churn::none();
    let sim = kandji_sim::spawn(cfg).await.expect("sim");
    let dir = tempfile::tempdir().expect("dir");
    let config = write_config(
        dir.path(),
        &sim.base_url(),
        sim.token(),
        "streams = [\"blueprints\", \"tags\", \"devices\", \"audit_events\"]\n",
    );
    let data = dir.path().join("data");
    let status = tokio::task::spawn_blocking(move || {
        let mut child = bin()
            .args(["--config", &config, "run", "--no-console"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        // Wait until the first cycle has committed the device list.
        let db = data.join("kandji.sqlite3");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let done = db.exists()
                && rusqlite::Connection::open(&db)
                    .and_then(|c| {
                        c.query_row(
                            "SELECT count(*) FROM stream_status WHERE stream = 'devices' AND state = 'healthy'",
                            [],
                            |r| r.get::<_, i64>(0),
                        )
                    })
                    .unwrap_or(0)
                    == 1;
            if done || std::time::Instant::now() > deadline {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let pid = child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
        child.wait().expect("wait")
    })
    .await
    .expect("join");
    assert!(status.success(), "SIGTERM is a clean shutdown: {status:?}");
    let store = kandji_collector::store::Store::open(&dir.path().join("data")).expect("store");
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM devices WHERE removed_at IS NULL"
        ),
        25
    );
}

/// `run` with the console and an output: one signal handler stops the console, every source
/// and the output (which the console mode used never to tell), and the process exits within
/// 5 s, the output having delivered what was collected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_the_console_stops_sources_and_outputs_within_5s_of_sigterm() {
    let mut cfg = sim_config(25, 8);
    cfg.churn = Churn::none();
    let sim = kandji_sim::spawn(cfg).await.expect("sim");
    let dir = tempfile::tempdir().expect("dir");
    let ndjson = dir.path().join("out.ndjson");
    let config = write_config(
        dir.path(),
        &sim.base_url(),
        sim.token(),
        &format!(
            "streams = [\"blueprints\", \"tags\", \"devices\"]\n\
             [[sources.sinks]]\ntype = \"ndjson\"\nname = \"archive\"\nformat = \"raw\"\npath = {ndjson:?}\n"
        ),
    );
    let (status, took) = tokio::task::spawn_blocking(move || {
        let mut child = bin()
            .args(["--config", &config, "run", "--listen", "127.0.0.1:0"])
            .env("KANDJI_COLLECTOR_ADMIN_PASSWORD", "correct horse battery")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        // Wait until the output has delivered the device list.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let lines = std::fs::read_to_string(&ndjson)
                .map(|t| t.lines().count())
                .unwrap_or(0);
            if lines >= 25 || std::time::Instant::now() > deadline {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let pid = child.id().to_string();
        let asked = std::time::Instant::now();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        let status = child.wait().expect("wait");
        (status, asked.elapsed())
    })
    .await
    .expect("join");
    assert!(status.success(), "SIGTERM is a clean shutdown: {status:?}");
    assert!(
        took < std::time::Duration::from_secs(5),
        "exit took {took:?} after SIGTERM"
    );
    let text = std::fs::read_to_string(dir.path().join("out.ndjson")).expect("the output wrote");
    assert!(
        text.lines().count() >= 25,
        "the output delivered the devices"
    );
}

#[tokio::test]
async fn demo_once_collects_a_simulated_tenant_and_exits() {
    let dir = tempfile::tempdir().expect("dir");
    let o = run(vec![
        "--data-dir".into(),
        dir.path().display().to_string(),
        "demo".into(),
        "--once".into(),
        "--no-console".into(),
        "--devices".into(),
        "20".into(),
    ])
    .await;
    assert!(o.status.success(), "{}", out(&o));
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    for s in kandji_collector::streams::names() {
        assert!(text.contains(s), "demo reports {s}: {text}");
    }
    let store = kandji_collector::store::Store::open(dir.path()).expect("store");
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM devices WHERE removed_at IS NULL"
        ),
        20
    );
}

/// An endpoint nothing listens on: `sync --once` fails within a minute as `unreachable`,
/// naming the host, instead of retrying every request for ten minutes; `check` answers
/// within 15 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_fails_fast_and_says_unreachable() {
    // The address: the discard port, closed on a machine like this one.
    let url = "http://127.0.0.1:9";
    assert!(
        std::net::TcpStream::connect("127.0.0.1:9").is_err(),
        "something listens on 127.0.0.1:9; this test needs it closed"
    );
    let dir = tempfile::tempdir().expect("dir");
    let config = write_config(dir.path(), url, "0b6f3c2a-5d4e-4f1a-9b8c-7e6d5c4b3a29", "");
    let t = std::time::Instant::now();
    let o = run(vec![
        "--config".into(),
        config.clone(),
        "sync".into(),
        "--once".into(),
    ])
    .await;
    let took = t.elapsed();
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(took < std::time::Duration::from_secs(60), "{took:?}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    for s in ["blueprints", "devices", "audit_events", "compliance"] {
        let line = stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(s))
            .unwrap_or_default();
        assert!(
            line.contains("127.0.0.1:9 is unreachable"),
            "{s}: {line}\n{}",
            out(&o)
        );
    }
    // The same, with one JSON object per log line for a log shipper.
    let j = run(vec![
        "--config".into(),
        config.clone(),
        "--log-format".into(),
        "json".into(),
        "sync".into(),
        "--once".into(),
        "--streams".into(),
        "devices".into(),
    ])
    .await;
    assert_eq!(j.status.code(), Some(1), "{}", out(&j));
    let stderr = String::from_utf8_lossy(&j.stderr);
    let lines: Vec<Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|v| v["level"] == "WARN" && v["fields"]["kind"] == "unreachable"),
        "{stderr}"
    );
    // Status names the class and its hint.
    let st = run(vec![
        "--config".into(),
        config.clone(),
        "status".into(),
        "--json".into(),
    ])
    .await;
    let status = String::from_utf8_lossy(&st.stdout);
    assert!(status.contains("\"unreachable\""), "{}", out(&st));
    let t = std::time::Instant::now();
    let c = run(vec!["--config".into(), config, "check".into()]).await;
    assert!(!c.status.success(), "{}", out(&c));
    assert!(
        t.elapsed() < std::time::Duration::from_secs(15),
        "{:?}",
        t.elapsed()
    );
    assert!(
        String::from_utf8_lossy(&c.stdout).contains("unreachable")
            || String::from_utf8_lossy(&c.stderr).contains("unreachable"),
        "{}",
        out(&c)
    );
}
