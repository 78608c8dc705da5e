//! The CLI verbs.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use rusqlite::params;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::cli::{Cli, Command};
use crate::config::{Config, Source};
use crate::engine::{self, SourceRuntime, StreamError, status};
use crate::store::Store;
use crate::streams::StreamName;

pub async fn dispatch(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Validate => validate(&cli),
        Command::Check { source } => check(&cli, source.as_deref()).await,
        Command::Sync {
            once: _,
            source,
            streams,
        } => sync(&cli, source.as_deref(), streams).await,
        Command::Run { web } => run(&cli, web).await,
        Command::Status { source, json } => status_cmd(&cli, source.as_deref(), *json).await,
        Command::Export {
            source,
            stream,
            format,
            since,
        } => export(&cli, source, stream, since.as_deref(), *format).await,
        Command::Demo {
            devices,
            seed,
            once,
            web,
        } => demo(&cli, *devices, *seed, *once, web).await,
    }
}

fn load(cli: &Cli) -> Result<Config> {
    let mut cfg = Config::load(&cli.config)?;
    if let Some(d) = &cli.data_dir {
        cfg.data_dir = d.clone();
    }
    Ok(cfg)
}

fn data_dir(cli: &Cli) -> PathBuf {
    match (&cli.data_dir, Config::load(&cli.config)) {
        (Some(d), _) => d.clone(),
        (None, Ok(c)) => c.data_dir,
        (None, Err(_)) => PathBuf::from("./data"),
    }
}

fn pick<'a>(sources: &'a [Source], only: Option<&str>) -> Result<Vec<&'a Source>> {
    let picked: Vec<&Source> = sources
        .iter()
        .filter(|s| only.is_none_or(|o| o == s.name))
        .collect();
    if let Some(o) = only
        && picked.is_empty()
    {
        {
            bail!(
                "--source {o:?} is not in the config; sources: {}",
                sources
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok(picked)
}

fn validate(cli: &Cli) -> Result<()> {
    let cfg = load(cli)?;
    let problems = cfg.problems();
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("error: {p}");
        }
        bail!("{} problem(s) in {}", problems.len(), cli.config.display());
    }
    let sources = cfg.resolve()?;
    println!(
        "{}: ok, {} source(s), data_dir {}",
        cli.config.display(),
        sources.len(),
        cfg.data_dir.display()
    );
    for s in &sources {
        println!(
            "  {}: {} · share {:.0} % of {}/h · {} stream(s){}",
            s.name,
            s.base.as_str(),
            s.budget_share * 100.0,
            s.hourly_limit,
            s.streams.len(),
            if s.enabled { "" } else { " · disabled" }
        );
    }
    Ok(())
}

fn runtimes(
    sources: Vec<Source>,
    store: &Store,
    shutdown: &watch::Receiver<bool>,
) -> Result<Vec<Arc<SourceRuntime>>> {
    sources
        .into_iter()
        .map(|s| {
            let name = s.name.clone();
            SourceRuntime::new(s, store.clone(), shutdown.clone())
                .map(Arc::new)
                .with_context(|| format!("source {name}"))
        })
        .collect()
}

async fn check(cli: &Cli, only: Option<&str>) -> Result<()> {
    let cfg = load(cli)?;
    let sources = cfg.resolve()?;
    let mut failed = false;
    for s in pick(&sources, only)? {
        let report = crate::check::run(s).await?;
        print!("{}", report.render());
        failed |= !report.all_ok();
    }
    if failed {
        bail!("some streams cannot be collected with these tokens (see above)");
    }
    Ok(())
}

fn parse_streams(list: &[String]) -> Result<Vec<StreamName>> {
    list.iter()
        .map(|s| {
            StreamName::parse(s).with_context(|| {
                format!(
                    "--streams: {s:?} is not a stream; known: {}",
                    crate::streams::names().join(", ")
                )
            })
        })
        .collect()
}

async fn sync(cli: &Cli, only: Option<&str>, streams: &[String]) -> Result<()> {
    let cfg = load(cli)?;
    let wanted = parse_streams(streams)?;
    let sources = cfg.resolve()?;
    let picked: Vec<Source> = pick(&sources, only)?.into_iter().cloned().collect();
    let store = Store::open(&cfg.data_dir)?;
    let (tx, rx) = watch::channel(false);
    spawn_signal_handler(tx);
    let mut failures = 0;
    // Progress bars on a terminal, plain lines otherwise (logs, CI, pipes).
    let tty = std::io::stdout().is_terminal();
    let multi = indicatif::MultiProgress::new();
    for s in picked {
        let name = s.name.clone();
        let mut rt = SourceRuntime::new(s, store.clone(), rx.clone())
            .with_context(|| format!("source {name}"))?;
        let bar = tty.then(|| {
            let b = multi.add(indicatif::ProgressBar::new_spinner());
            b.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {prefix} {msg} [{elapsed}]")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            b.set_prefix(name.clone());
            b.enable_steady_tick(std::time::Duration::from_millis(120));
            b
        });
        if let Some(b) = &bar {
            let b = b.clone();
            let total = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
            rt.on_commit = Some(std::sync::Arc::new(
                move |stream: &str, out: &crate::store::BatchOutcome| {
                    let n = total.fetch_add(out.records(), std::sync::atomic::Ordering::Relaxed)
                        + out.records();
                    b.set_message(format!("{stream}: {n} records so far"));
                },
            ));
        }
        for r in engine::sync_once(&rt, &wanted).await {
            let line = match &r.result {
                Ok(rep) => format!(
                    "{} {:<26} ok     pages {:>5}  records {:>8}  requests {:>5}",
                    r.source, r.stream, rep.pages, rep.records, rep.requests
                ),
                Err(e) => {
                    failures += 1;
                    format!(
                        "{} {:<26} {:<6} {e}",
                        r.source,
                        r.stream,
                        e.state().as_str()
                    )
                }
            };
            match &bar {
                Some(b) => b.println(line),
                None => println!("{line}"),
            }
        }
        if let Some(b) = &bar {
            b.finish_and_clear();
        }
        let b = rt.budget.state();
        println!(
            "{} budget: {} spent this hour, {} left of a {} share",
            rt.name(),
            b.spent_this_hour,
            b.remaining,
            b.share_limit
        );
    }
    crate::outputs::drain_once(&store, &cfg, &sources, &rx).await?;
    if failures > 0 {
        bail!("{failures} stream(s) failed");
    }
    Ok(())
}

/// SIGINT/SIGTERM flip the shutdown flag; streams commit the page in flight and stop.
fn spawn_signal_handler(tx: watch::Sender<bool>) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(t) => t,
                    Err(error) => {
                        tracing::warn!(%error, "cannot listen for SIGTERM");
                        let _ = ctrl_c.await;
                        let _ = tx.send(true);
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down: committing in-flight pages");
        let _ = tx.send(true);
    });
}

async fn run(cli: &Cli, web: &crate::cli::WebArgs) -> Result<()> {
    // With the console, sources can all live in the store: no config file is fine.
    let cfg = if !web.no_console && !cli.config.exists() {
        println!(
            "no config file at {}: sources come from the console only",
            cli.config.display()
        );
        Config {
            data_dir: data_dir(cli),
            ..Config::default()
        }
    } else {
        load(cli)?
    };
    let sources = cfg.resolve()?;
    if !web.no_console {
        // The outputs of config-file sources run beside the console; they stop with the
        // process (their offsets make that safe).
        let store = Store::open(&cfg.data_dir)?;
        let (_outputs_stop, outputs_rx) = watch::channel(false);
        let _outputs = crate::outputs::start(&store, &cfg, &sources, outputs_rx)?;
        return crate::web::run_cmd(cfg.data_dir.clone(), sources, web, false).await;
    }
    let store = Store::open(&cfg.data_dir)?;
    let (tx, rx) = watch::channel(false);
    spawn_signal_handler(tx);
    let outputs = crate::outputs::start(&store, &cfg, &sources, rx.clone())?;
    let rts = runtimes(sources, &store, &rx)?;
    tracing::info!(sources = rts.len(), "collector running");
    engine::run_forever(rts, rx).await;
    crate::outputs::join(outputs).await;
    Ok(())
}

/// One row of `status`.
pub fn status_rows(store: &Store, only: Option<&str>) -> Result<Vec<Value>> {
    let conn = store.reader()?;
    let mut stmt = conn.prepare(
        "SELECT s.source, s.stream, s.state, s.last_success_at, s.last_error_at, s.last_error_kind,
                s.last_error_message, s.last_error_endpoint, s.records_total, s.last_run_records,
                s.last_run_requests, s.next_run_at, c.value
         FROM stream_status s LEFT JOIN checkpoints c ON c.source = s.source AND c.stream = s.stream
         WHERE ?1 IS NULL OR s.source = ?1 ORDER BY s.source, s.stream",
    )?;
    let rows = stmt
        .query_map(params![only], |r| {
            let kind: Option<String> = r.get(5)?;
            let endpoint: Option<String> = r.get(7)?;
            let hint = kind.as_deref().map(|k| status::hint(k, endpoint.as_deref()));
            Ok(json!({
                "source": r.get::<_, String>(0)?,
                "stream": r.get::<_, String>(1)?,
                "state": r.get::<_, String>(2)?,
                "last_success_at": r.get::<_, Option<i64>>(3)?.map(crate::engine::fetch::rfc3339),
                "last_error_at": r.get::<_, Option<i64>>(4)?.map(crate::engine::fetch::rfc3339),
                "last_error_kind": kind,
                "last_error": r.get::<_, Option<String>>(6)?,
                "last_error_endpoint": endpoint,
                "hint": hint,
                "records_total": r.get::<_, i64>(8)?,
                "last_run_records": r.get::<_, i64>(9)?,
                "last_run_requests": r.get::<_, i64>(10)?,
                "next_run_at": r.get::<_, Option<i64>>(11)?.map(crate::engine::fetch::rfc3339),
                "checkpoint": r.get::<_, Option<String>>(12)?.and_then(|s| serde_json::from_str::<Value>(&s).ok()),
            }))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

async fn status_cmd(cli: &Cli, only: Option<&str>, as_json: bool) -> Result<()> {
    let dir = data_dir(cli);
    if !dir.join("kandji.sqlite3").exists() {
        bail!(
            "no store in {} (run `sync --once` first, or pass --data-dir)",
            dir.display()
        );
    }
    let store = Store::open(&dir)?;
    let rows = status_rows(&store, only)?;
    let mut out = std::io::stdout().lock();
    if as_json {
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<12} {:<26} {:<18} {:>10} {:<25} last error",
        "source", "stream", "state", "records", "last success"
    )?;
    for r in &rows {
        let st = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
        writeln!(
            out,
            "{:<12} {:<26} {:<18} {:>10} {:<25} {}",
            st("source"),
            st("stream"),
            st("state"),
            r.get("records_total").and_then(Value::as_i64).unwrap_or(0),
            st("last_success_at"),
            match r.get("last_error_kind").and_then(Value::as_str) {
                Some(k) => format!("{k}: {}", st("last_error")),
                None => "-".into(),
            }
        )?;
        if let Some(h) = r.get("hint").and_then(Value::as_str)
            && r.get("state").and_then(Value::as_str) != Some("healthy")
        {
            writeln!(out, "{:>40} hint: {h}", "")?;
        }
    }
    crate::outputs::print_status(&store.reader()?, only, &mut out)?;
    Ok(())
}

/// The table or event stream a stream's records live in.
pub fn export_query(stream: StreamName) -> (&'static str, bool) {
    match stream {
        StreamName::AuditEvents
        | StreamName::Threats
        | StreamName::BehavioralDetections
        | StreamName::VulnerabilityDetections => ("events", true),
        StreamName::Devices => ("devices", false),
        StreamName::DeviceDetails => ("device_details", false),
        StreamName::Apps => ("apps", false),
        StreamName::Compliance => ("compliance", false),
        StreamName::Users => ("users", false),
        StreamName::Blueprints => ("blueprints", false),
        StreamName::Tags => ("tags", false),
        StreamName::AdeDevices => ("ade_devices", false),
    }
}

async fn export(
    cli: &Cli,
    source: &str,
    stream: &str,
    since: Option<&str>,
    format: crate::cli::ExportFormat,
) -> Result<()> {
    let stream = StreamName::parse(stream).with_context(|| {
        format!(
            "--stream: {stream:?} is not a stream; known: {}",
            crate::streams::names().join(", ")
        )
    })?;
    let since_ms = match since {
        Some(s) => Some(
            kandji_api::parse_timestamp(s)
                .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
                .with_context(|| {
                    format!("--since: {s:?} is not a timestamp like 2026-11-01T00:00:00Z")
                })?,
        ),
        None => None,
    };
    let dir = data_dir(cli);
    let store = Store::open(&dir)?;
    let conn = store.reader()?;
    let (table, is_events) = export_query(stream);
    if format == crate::cli::ExportFormat::Ocsf {
        let tenant = Config::load(&cli.config)
            .ok()
            .and_then(|c| c.resolve().ok())
            .and_then(|all| all.into_iter().find(|s| s.name == source))
            .map_or_else(|| source.to_string(), |s| crate::outputs::tenant_of(&s));
        let info = crate::outputs::SourceInfo {
            source: source.to_string(),
            tenant,
        };
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        crate::outputs::export_ocsf(
            &conn,
            &info,
            stream.as_str(),
            table,
            is_events,
            since_ms,
            &mut out,
        )?;
        out.flush()?;
        return Ok(());
    }
    let sql = if is_events {
        "SELECT raw FROM events WHERE source = ?1 AND stream = ?2 AND (?3 IS NULL OR occurred_at >= ?3)
         ORDER BY occurred_at, seq"
            .to_string()
    } else {
        format!(
            "SELECT raw FROM {table} WHERE source = ?1 AND ?2 = ?2 AND removed_at IS NULL
             AND (?3 IS NULL OR last_seen >= ?3) ORDER BY key"
        )
    };
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query(params![source, stream.as_str(), since_ms])?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    while let Some(r) = rows.next()? {
        let raw: String = r.get(0)?;
        out.write_all(raw.as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

async fn demo(
    cli: &Cli,
    devices: usize,
    seed: u64,
    once: bool,
    web: &crate::cli::WebArgs,
) -> Result<()> {
    let sim = kandji_sim::spawn(kandji_sim::SimConfig {
        devices,
        seed,
        ..Default::default()
    })
    .await
    .context("starting the simulated tenant")?;
    let dir = cli
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("./data/demo"));
    let token_file = dir.join("demo-token");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(&token_file, sim.token())?;
    let text = format!(
        "data_dir = {dir:?}\n[[sources]]\nname = \"demo\"\nendpoint = {:?}\ntoken_file = {token_file:?}\nallow_custom_endpoint = true\n",
        sim.base_url()
    );
    let cfg = Config::parse(&text)?;
    let sources = cfg.resolve()?;
    if !once && !web.no_console {
        // Serve the console first, then sync: it shows the tenant filling up.
        println!(
            "simulated tenant: {} ({devices} devices, seed {seed})",
            sim.base_url()
        );
        let mut web = web.clone();
        web.allow_custom_endpoints = true;
        let r = crate::web::run_cmd(dir, sources, &web, true).await;
        sim.shutdown().await;
        return r;
    }
    let store = Store::open(&dir)?;
    let (tx, rx) = watch::channel(false);
    spawn_signal_handler(tx);
    println!(
        "simulated tenant: {} ({devices} devices, seed {seed})",
        sim.base_url()
    );
    println!("store: {}", store.path().display());
    let rts = runtimes(sources, &store, &rx)?;
    for rt in &rts {
        for r in engine::sync_once(rt, &[]).await {
            match &r.result {
                Ok(rep) => println!(
                    "demo {:<26} ok  records {:>8}  requests {:>4}",
                    r.stream, rep.records, rep.requests
                ),
                Err(e) => println!("demo {:<26} {}", r.stream, e),
            }
        }
    }
    if once {
        let failed = status_rows(&store, None)?
            .iter()
            .filter(|r| r.get("state").and_then(Value::as_str) != Some("healthy"))
            .count();
        sim.shutdown().await;
        if failed > 0 {
            bail!("{failed} stream(s) are not healthy");
        }
        return Ok(());
    }
    println!("collecting on schedule; Ctrl-C to stop");
    engine::run_forever(rts, rx).await;
    sim.shutdown().await;
    Ok(())
}

/// Used by tests: a stream error's state name.
pub fn state_of(e: &StreamError) -> &'static str {
    e.state().as_str()
}
