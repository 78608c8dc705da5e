//! The CLI verbs.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Command};
use crate::config::{Config, Source};
use crate::engine::{self, SourceRuntime, StreamError, status_rows};
use crate::store::{ExportItem, ExportKind, Store, StoreError};
use crate::streams::StreamName;

pub async fn dispatch(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Validate => validate(&cli),
        Command::Check { source, privileges } => check(&cli, source.as_deref(), *privileges).await,
        Command::Permissions { streams, format } => permissions(streams, *format),
        Command::Sync {
            once: _,
            source,
            streams,
        } => sync(&cli, source.as_deref(), streams).await,
        Command::Run { web } => run(&cli, web).await,
        Command::Status {
            source,
            json,
            verify,
        } => status_cmd(&cli, source.as_deref(), *json, *verify).await,
        Command::Backup { dir } => backup(&cli, dir).await,
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

/// How a command uses the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    /// `run`: on PostgreSQL, a replica that leases sources.
    Replica,
    /// `sync --once`: writes on its own (on PostgreSQL, under leases it takes if free).
    Solo,
    /// `status`, `export`, `backup`: reads beside a running collector.
    ReadOnly,
}

/// The store the config names: embedded SQLite in the data directory, or PostgreSQL.
async fn open_store(cfg: &Config, how: Open) -> Result<Store> {
    let Some(c) = cfg.pg_connect()? else {
        return Ok(match how {
            Open::ReadOnly => Store::open_read_only(&cfg.data_dir)?,
            _ => Store::open(&cfg.data_dir)?,
        });
    };
    use crate::store::pg::{LeaseMode, Replica, process_owner};
    let mode = match how {
        Open::Replica => {
            LeaseMode::Replica(Replica::new(process_owner("replica"), cfg.lease_ttl_ms()))
        }
        Open::Solo | Open::ReadOnly => LeaseMode::Solo {
            owner: process_owner("solo"),
            ttl_ms: cfg.lease_ttl_ms(),
        },
    };
    Ok(Store::open_postgres(&c, mode).await?)
}

/// The config for a reading command: the file when there is one (a PostgreSQL store is
/// named there), else the data directory alone.
fn reading_config(cli: &Cli) -> Config {
    match load(cli) {
        Ok(c) => c,
        Err(_) => Config {
            data_dir: data_dir(cli),
            ..Config::default()
        },
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

/// `permissions`: the list generated from the stream declarations.
fn permissions(streams: &[String], format: crate::cli::PermissionsFormat) -> Result<()> {
    use crate::cli::PermissionsFormat;
    let chosen: Vec<StreamName> = if streams.is_empty() {
        StreamName::ALL.to_vec()
    } else {
        streams
            .iter()
            .map(|s| {
                StreamName::parse(s).with_context(|| {
                    format!(
                        "unknown stream {s:?}; streams: {}",
                        crate::streams::names().join(", ")
                    )
                })
            })
            .collect::<Result<_>>()?
    };
    let list = crate::streams::permissions(&chosen);
    match format {
        PermissionsFormat::Json => {
            println!("{}", serde_json::to_string_pretty(&list)?);
        }
        PermissionsFormat::Markdown => {
            print!("{}", crate::streams::permissions_markdown(&chosen));
        }
        PermissionsFormat::Text => {
            let w = list.iter().map(|p| p.name.len()).max().unwrap_or(10);
            let we = list
                .iter()
                .map(|p| p.method.len() + 1 + p.path.len())
                .max()
                .unwrap_or(10);
            println!("{:w$}  {:we$}  NEEDED BY", "PERMISSION", "ENDPOINT");
            for p in &list {
                let ep = format!("{} {}", p.method, p.path);
                println!("{:w$}  {ep:we$}  {}", p.name, p.needed_by.join(", "));
            }
            println!(
                "\nTick exactly these in Kandji → Access → API tokens; nothing else (never the \
                 device secrets). `check --privileges` looks for extra ones."
            );
        }
    }
    Ok(())
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
    shutdown: &CancellationToken,
) -> Result<Vec<Arc<SourceRuntime>>> {
    sources
        .into_iter()
        .map(|s| {
            let name = s.name.clone();
            SourceRuntime::new(s, store.clone(), shutdown.child_token())
                .map(Arc::new)
                .with_context(|| format!("source {name}"))
        })
        .collect()
}

async fn check(cli: &Cli, only: Option<&str>, privileges: bool) -> Result<()> {
    let cfg = load(cli)?;
    let sources = cfg.resolve()?;
    let mut failed = false;
    let mut extra = 0;
    for s in pick(&sources, only)? {
        let report = crate::check::run(s, privileges).await?;
        print!("{}", report.render());
        failed |= !report.all_ok();
        extra += report.unneeded_privileges().len();
    }
    if failed {
        bail!("some streams cannot be collected with these tokens (see above)");
    }
    if extra > 0 {
        bail!(
            "{extra} privilege(s) the collector does not need (see above): untick them on the \
             token in Kandji → Access → API tokens"
        );
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
    let store = if cfg.store.is_some() {
        open_store(&cfg, Open::Solo).await?
    } else {
        match Store::open(&cfg.data_dir) {
            Ok(s) => s,
            Err(StoreError::Locked {
                path,
                pid,
                command,
                console,
            }) => {
                return ask_daemon(&path, pid, &command, console.as_deref(), &picked, &wanted)
                    .await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    // On a shared store, a source a replica collects is synced by that replica.
    let picked = match store.pg() {
        Some(pg) => {
            let mut mine = Vec::new();
            for s in picked {
                if pg.lease_for(&s.name).await?.is_some() {
                    mine.push(s);
                    continue;
                }
                let streams: Vec<Option<String>> = if wanted.is_empty() {
                    vec![None]
                } else {
                    wanted
                        .iter()
                        .map(|w| Some(w.as_str().to_string()))
                        .collect()
                };
                for stream in streams {
                    pg.notify(&crate::store::pg::Signal::Sync {
                        source: s.name.clone(),
                        stream,
                    })
                    .await?;
                }
                println!(
                    "{}: a replica collects this source; asked it to sync (see `status`)",
                    s.name
                );
            }
            mine
        }
        None => picked,
    };
    let shutdown = CancellationToken::new();
    crate::shutdown::on_signals(shutdown.clone());
    let mut failures = 0;
    // Progress bars on a terminal, plain lines otherwise (logs, CI, pipes).
    let tty = std::io::stdout().is_terminal();
    let multi = indicatif::MultiProgress::new();
    for s in picked {
        let name = s.name.clone();
        let mut rt = SourceRuntime::new(s, store.clone(), shutdown.child_token())
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
        rt.resume_budget().await;
        for r in engine::sync_once(&rt, &wanted).await {
            let line = match &r.result {
                Ok(rep) if !rep.degraded.is_empty() => format!(
                    "{} {:<26} degraded pages {:>5}  records {:>8}  requests {:>5}  {}",
                    r.source,
                    r.stream,
                    rep.pages,
                    rep.records,
                    rep.requests,
                    rep.missing()
                ),
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
            "{} budget: {} spent this hour, {} left of a {} share{}",
            rt.name(),
            b.spent_this_hour,
            b.remaining,
            b.share_limit,
            match b.others_this_hour {
                Some(o) => format!("; other tools: {o} this hour"),
                None => String::new(),
            }
        );
    }
    crate::outputs::drain_once(&store, &cfg, &sources, &shutdown).await?;
    if let Some(pg) = store.pg() {
        pg.release_all().await?;
    }
    if failures > 0 {
        bail!("{failures} stream(s) failed");
    }
    Ok(())
}

/// `sync --once` beside a running daemon: ask the daemon to sync over its console's API
/// (with `KANDJI_COLLECTOR_API_KEY`, loopback only), or say how.
async fn ask_daemon(
    path: &std::path::Path,
    pid: Option<u32>,
    command: &str,
    console: Option<&str>,
    sources: &[Source],
    streams: &[StreamName],
) -> Result<()> {
    let who = format!(
        "the store at {} is in use by process {} ({command})",
        path.display(),
        pid.map_or_else(|| "?".to_string(), |p| p.to_string())
    );
    let Some(url) = console.map(|u| u.trim_end_matches('/').to_string()) else {
        bail!(
            "{who}; it serves no console to ask, so stop it to sync from here, or wait for its schedule"
        );
    };
    let key = std::env::var("KANDJI_COLLECTOR_API_KEY")
        .ok()
        .filter(|k| !k.is_empty());
    let loopback = url::Url::parse(&url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .and_then(|h| h.trim_matches(['[', ']']).parse::<std::net::IpAddr>().ok())
        .is_some_and(|ip| ip.is_loopback());
    let Some(key) = key.filter(|_| loopback) else {
        bail!(
            "{who}; ask it to sync instead: press \"Sync now\" on {url}/sources/<name>, or set \
             KANDJI_COLLECTOR_API_KEY and run this again to ask it over its API"
        );
    };
    kandji_api::client::install_crypto_provider();
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let streams: Vec<Option<&str>> = if streams.is_empty() {
        vec![None]
    } else {
        streams.iter().map(|s| Some(s.as_str())).collect()
    };
    for s in sources {
        for st in &streams {
            let mut req = http
                .post(format!("{url}/api/sources/{}/sync", s.name))
                .bearer_auth(&key);
            if let Some(st) = st {
                req = req.query(&[("stream", st)]);
            }
            let resp = req
                .send()
                .await
                .with_context(|| format!("asking the daemon at {url} to sync {}", s.name))?;
            if !resp.status().is_success() {
                bail!(
                    "{who}; asking it to sync {} answered {}: {}",
                    s.name,
                    resp.status(),
                    resp.text().await.unwrap_or_default()
                );
            }
            println!(
                "asked the running collector (pid {}) to sync {}{}",
                pid.map_or_else(|| "?".to_string(), |p| p.to_string()),
                s.name,
                st.map(|x| format!(" {x}")).unwrap_or_default()
            );
        }
    }
    Ok(())
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
    crate::streams::runtime::set_max_bulk_runs(
        cfg.max_concurrent_exports
            .unwrap_or(crate::streams::runtime::DEFAULT_MAX_BULK_RUNS),
    );
    // One store for the whole process: the engine, the outputs and the console share it.
    let store = open_store(&cfg, Open::Replica).await?;
    // One token for the process, cancelled by the one signal handler; the outputs and the
    // supervisor (and through it each source) hold children of it.
    let shutdown = CancellationToken::new();
    crate::shutdown::on_signals(shutdown.clone());
    let outputs = crate::outputs::start(&store, &cfg, &sources, shutdown.child_token())?;
    let alerts = cfg.alert_webhook()?;
    let r = if web.no_console {
        tracing::info!(sources = sources.len(), "collector running");
        engine::run_config_sources_alerting(store, sources, alerts, shutdown.child_token()).await;
        Ok(())
    } else {
        let r = crate::web::run_cmd(
            store,
            cfg.data_dir.clone(),
            cfg.console_key_file.clone(),
            sources,
            web,
            crate::web::RunMode {
                demo: false,
                alerts,
            },
            shutdown.child_token(),
        )
        .await;
        // The console stopped (shutdown, or it failed to start): so do the outputs.
        shutdown.cancel();
        r
    };
    crate::outputs::join(outputs).await;
    r
}

/// What `status` says of a shared store: the live replicas and who collects each source.
async fn shared_store_health(pg: &crate::store::pg::PgStore) -> Value {
    let now = pg.db_now().await.unwrap_or_else(|_| crate::store::now_ms());
    let leases = pg.leases().await.unwrap_or_default();
    let replicas = pg.live_replicas(now).await.unwrap_or_default();
    json!({
        "url": pg.url(),
        "replicas": replicas,
        "leases": leases.iter().map(|l| {
            let live = l.owner.is_some() && l.expires_at > now;
            json!({
                "source": l.source,
                "owner": if live { l.owner.clone() } else { None },
                "token": l.token,
                "expires_in_ms": (l.expires_at - now).max(0),
            })
        }).collect::<Vec<_>>(),
    })
}

/// What `status` says of the store itself: who holds it, and whether it can be written.
fn store_health(dir: &std::path::Path) -> Value {
    let path = dir.join(crate::store::FILE_NAME);
    let holder = crate::store::lock::holder(&path);
    // Opening for writing (nothing is written) is what the writer will need.
    let writable = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map(|_| None)
        .unwrap_or_else(|e| Some(e.to_string()));
    json!({
        "path": path.display().to_string(),
        "bytes": std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
        "held_by": holder.map(|h| json!({"pid": h.pid, "command": h.command, "console": h.console})),
        "read_only": writable,
    })
}

async fn status_cmd(cli: &Cli, only: Option<&str>, as_json: bool, verify: bool) -> Result<()> {
    let cfg = reading_config(cli);
    let dir = cfg.data_dir.clone();
    let store = open_store(&cfg, Open::ReadOnly).await?;
    let rows = status_rows(&store, only).await?;
    let health = match store.pg() {
        Some(pg) => shared_store_health(pg).await,
        None => store_health(&dir),
    };
    let problems = if verify {
        Some(store.verify().await?)
    } else {
        None
    };
    let mut out = std::io::stdout().lock();
    if as_json {
        // One row per stream (the shape scripts read); a store problem shows on every row.
        let mut rows = rows;
        if let Some(e) = health["read_only"].as_str() {
            for r in &mut rows {
                r["store_problem"] = json!(format!("the store is read-only: {e}"));
            }
        }
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        if let Some(p) = problems.filter(|p| !p.is_empty()) {
            bail!(
                "the store at {} failed its integrity check: {}",
                store.path().display(),
                p.join("; ")
            );
        }
        return Ok(());
    }
    if let Some(replicas) = health["replicas"].as_array() {
        writeln!(
            out,
            "store {} (PostgreSQL, {} live replica(s))",
            store.path().display(),
            replicas.len()
        )?;
        for l in health["leases"].as_array().into_iter().flatten() {
            if only.is_some_and(|o| Some(o) != l["source"].as_str()) {
                continue;
            }
            writeln!(
                out,
                "  {:<12} collected by {} (fencing token {})",
                l["source"].as_str().unwrap_or("-"),
                l["owner"].as_str().unwrap_or("no replica (free)"),
                l["token"]
            )?;
        }
    } else {
        writeln!(
            out,
            "store {} ({} MB){}",
            store.path().display(),
            health["bytes"].as_u64().unwrap_or(0) / 1_000_000,
            match health["held_by"]["pid"].as_u64() {
                Some(pid) => format!(
                    ", in use by process {pid} ({})",
                    health["held_by"]["command"]
                        .as_str()
                        .unwrap_or("kandji-collector")
                ),
                None => String::new(),
            }
        )?;
    }
    if let Some(e) = health["read_only"].as_str() {
        writeln!(
            out,
            "  READ-ONLY: the collector cannot write this store ({e}); every stream is stalled until it can"
        )?;
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
    // The hour's budget per source: ours and the other tools' (from the samples the
    // collector records as it spends).
    let hour = crate::store::now_ms().div_euclid(3_600_000) * 3_600_000;
    let mut sources: Vec<String> = rows
        .iter()
        .filter_map(|r| r.get("source").and_then(Value::as_str).map(str::to_string))
        .collect();
    sources.dedup();
    for src in &sources {
        let ours = store.budget_series(src, hour).await?;
        let others = store.others_series(src, hour).await?;
        if let Some((_, spent, limit, share)) = ours.iter().find(|r| r.0 == hour) {
            writeln!(
                out,
                "{src:<12} budget this hour: {spent} requests of a {share} share (tenant limit {limit}){}",
                match others.iter().find(|r| r.0 == hour) {
                    Some((_, o)) => format!("; other tools: {o}"),
                    None => "; other tools: unknown (the API sent no rate-limit headers)".into(),
                }
            )?;
        }
    }
    crate::outputs::print_status(&store.outputs_status().await?, only, &mut out)?;
    if let Some(p) = problems {
        if p.is_empty() {
            writeln!(out, "\nintegrity check: ok")?;
        } else {
            for l in &p {
                writeln!(out, "integrity: {l}")?;
            }
            bail!(
                "the store at {} failed its integrity check; restore a backup, or move it away and collect again",
                store.path().display()
            );
        }
    }
    Ok(())
}

/// `backup DIR`: an online copy of the store (and the console's key file) into DIR, beside a
/// running daemon. `--data-dir DIR` then runs on the copy.
async fn backup(cli: &Cli, dest: &std::path::Path) -> Result<()> {
    let cfg = reading_config(cli);
    let dir = cfg.data_dir.clone();
    let store = open_store(&cfg, Open::ReadOnly).await?;
    let copy = store.backup(dest).await?;
    let key = dir.join("console.key");
    if key.exists() {
        let to = dest.join("console.key");
        std::fs::copy(&key, &to).with_context(|| format!("copying {}", key.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    println!(
        "backed up {} to {} ({} MB){}",
        store.path().display(),
        copy.display(),
        std::fs::metadata(&copy).map(|m| m.len()).unwrap_or(0) / 1_000_000,
        if key.exists() {
            ", with console.key"
        } else {
            ""
        }
    );
    Ok(())
}

/// The table or event stream a stream's records live in.
pub fn export_kind(stream: StreamName) -> ExportKind {
    match stream.spec().output {
        crate::streams::Output::Events => ExportKind::Events(stream.as_str()),
        crate::streams::Output::Table(t) => ExportKind::Table(t),
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
    let store = open_store(&reading_config(cli), Open::ReadOnly).await?;
    let kind = export_kind(stream);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let io = |e: std::io::Error| StoreError::Invalid(format!("writing the export: {e}"));
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
        store.export_each(source, kind, since_ms, &mut |item| {
            if let Some(ev) = crate::outputs::ocsf_of_export(&info, &item) {
                serde_json::to_writer(&mut out, &ev)
                    .map_err(|e| StoreError::Invalid(e.to_string()))?;
                out.write_all(b"\n").map_err(io)?;
            }
            Ok(())
        })?;
        out.flush()?;
        return Ok(());
    }
    store.export_each(source, kind, since_ms, &mut |item| {
        let raw = match &item {
            ExportItem::Row(r) => &r.raw,
            ExportItem::Event(e) => &e.raw,
        };
        serde_json::to_writer(&mut out, raw).map_err(|e| StoreError::Invalid(e.to_string()))?;
        out.write_all(b"\n").map_err(io)
    })?;
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
    crate::config::write_secret_file(&token_file, sim.token())?;
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
        let store = Store::open(&dir)?;
        let shutdown = CancellationToken::new();
        crate::shutdown::on_signals(shutdown.clone());
        let r = crate::web::run_cmd(
            store,
            dir,
            None,
            sources,
            &web,
            crate::web::RunMode {
                demo: true,
                alerts: None,
            },
            shutdown,
        )
        .await;
        sim.shutdown().await;
        return r;
    }
    let store = Store::open(&dir)?;
    let shutdown = CancellationToken::new();
    crate::shutdown::on_signals(shutdown.clone());
    println!(
        "simulated tenant: {} ({devices} devices, seed {seed})",
        sim.base_url()
    );
    println!("store: {}", store.path().display());
    let rts = runtimes(sources.clone(), &store, &shutdown)?;
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
        let failed = status_rows(&store, None)
            .await?
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
    drop(rts);
    engine::run_config_sources(store, sources, shutdown).await;
    sim.shutdown().await;
    Ok(())
}

/// Used by tests: a stream error's state name.
pub fn state_of(e: &StreamError) -> &'static str {
    e.state().as_str()
}
