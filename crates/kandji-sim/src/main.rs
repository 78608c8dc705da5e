//! `kandji-sim`: run a simulated Kandji tenant on loopback.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use kandji_sim::{Churn, ClockConfig, DEFAULT_TOKEN, Faults, SimConfig, TokenSpec};

/// A simulated Kandji / Iru tenant (read API, quirks, rate limits, faults, live churn).
#[derive(Debug, Parser)]
#[command(name = "kandji-sim", version)]
struct Cli {
    /// Number of enrolled devices.
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// Seed of all generated content.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Port (0 picks a free one). The base URL is printed as the first line of stdout.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Serve this many independent tenants, one free port each (each with its own token,
    /// budget, clock and data; seeds `seed`, `seed+1`, …; names `{tenant}0`, `{tenant}1`, …).
    /// Stdout then has one line per tenant: `NAME BASE_URL TOKEN`. `--port` must be 0.
    #[arg(long, default_value_t = 1)]
    tenants: usize,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    listen: IpAddr,
    /// The all-permission token (default: the built-in one, which is printed).
    #[arg(long)]
    token: Option<String>,
    /// JSON file: `[{"token": "...", "allow": ["GET /api/v1/devices", ...]}]`.
    #[arg(long)]
    tokens: Option<PathBuf>,
    /// Tenant subdomain (used for web-host `next` URLs and e-mail domains).
    #[arg(long, default_value = "acme")]
    tenant: String,
    /// Requests per fixed clock hour (simulated clock), shared by all tokens.
    #[arg(long, default_value_t = 10_000)]
    hourly_limit: u32,
    /// Requests per second.
    #[arg(long, default_value_t = 50)]
    per_second_limit: u32,
    /// Do not send `Retry-After` with 429 answers.
    #[arg(long)]
    no_retry_after: bool,
    /// Extra richness points per device (0-100): more apps per device (about 150 on
    /// average at 30, 100 at 0).
    #[arg(long, default_value_t = 0)]
    app_richness: u8,
    /// A Prism category this tenant refuses (400 "Invalid category"); repeatable.
    #[arg(long = "refuse-prism-category")]
    refuse_prism_category: Vec<String>,
    /// Polls before a Prism export reports `success`.
    #[arg(long, default_value_t = 2)]
    export_polls: u32,
    /// Tenant without the EDR licence (threat / behavioral endpoints answer 403).
    #[arg(long)]
    no_edr: bool,
    /// Tenant without Vulnerability Management (vulnerability endpoints answer 403).
    #[arg(long)]
    no_vuln: bool,
    /// Fraction of requests answered 500/502/503/504.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Latency added to every API response, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Fraction of connections dropped before a complete response.
    #[arg(long, default_value_t = 0.0)]
    reset_rate: f64,
    /// Fraction of JSON bodies cut off mid-way.
    #[arg(long, default_value_t = 0.0)]
    truncate_rate: f64,
    /// Fraction of answers with an HTML body instead of JSON.
    #[arg(long, default_value_t = 0.0)]
    malformed_rate: f64,
    /// The 403 `detail` for an unlicensed feature.
    #[arg(long, default_value = kandji_sim::LICENCE_TEXTS[0])]
    unlicensed_detail: String,
    /// Send no rate-limit headers (as the 2023 recordings).
    #[arg(long)]
    no_rate_limit_headers: bool,
    /// A large tenant: 350 blueprints.
    #[arg(long)]
    large_tenant: bool,
    /// Share of Android devices (0-1).
    #[arg(long, default_value_t = 0.03)]
    android_share: f64,
    /// Share of Windows devices (0-1).
    #[arg(long, default_value_t = 0.02)]
    windows_share: f64,
    /// Refuse cursors issued before the current simulated instant.
    #[arg(long)]
    expire_cursors: bool,
    /// Refuse audit, Prism and vulnerability cursors with 404 (as DRF does) instead of 400.
    #[arg(long)]
    cursor_refusal_404: bool,
    /// Serve at most N items a page on the audit, Prism and vulnerability cursor endpoints.
    #[arg(long, default_value_t = 0)]
    page_cap: usize,
    /// The first N requests get 429.
    #[arg(long, default_value_t = 0)]
    storm_429: u32,
    /// Simulated start instant (RFC 3339).
    #[arg(long, default_value = "2026-11-01T00:00:00Z")]
    clock_start: String,
    /// Simulated seconds per real second (0 freezes the clock; use POST /__sim/clock/advance).
    #[arg(long, default_value_t = 1.0)]
    clock_speed: f64,
    /// A static tenant: no enrolments, app changes, detections...
    #[arg(long)]
    no_churn: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "kandji_sim=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let extra_tokens: Vec<TokenSpec> = match &cli.tokens {
        Some(p) => {
            let raw = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            serde_json::from_slice(&raw).with_context(|| format!("parsing {}", p.display()))?
        }
        None => Vec::new(),
    };
    let start = time::OffsetDateTime::parse(
        &cli.clock_start,
        &time::format_description::well_known::Rfc3339,
    )
    .with_context(|| format!("--clock-start {:?} is not RFC 3339", cli.clock_start))?;
    anyhow::ensure!(
        cli.clock_speed >= 0.0 && cli.clock_speed.is_finite(),
        "--clock-speed must be >= 0"
    );
    let token_given = cli.token.is_some();
    let cfg = SimConfig {
        devices: cli.devices,
        seed: cli.seed,
        tenant: cli.tenant,
        token: cli.token.unwrap_or_else(|| DEFAULT_TOKEN.to_owned()),
        extra_tokens,
        hourly_limit: cli.hourly_limit,
        per_second_limit: cli.per_second_limit,
        retry_after: !cli.no_retry_after,
        export_polls: cli.export_polls,
        licensed_edr: !cli.no_edr,
        licensed_vuln: !cli.no_vuln,
        faults: Faults {
            error_rate: cli.error_rate,
            latency_ms: cli.latency_ms,
            reset_rate: cli.reset_rate,
            truncate_rate: cli.truncate_rate,
            malformed_rate: cli.malformed_rate,
            expire_cursors: cli.expire_cursors,
            cursor_refusal_404: cli.cursor_refusal_404,
            page_cap: cli.page_cap,
            storm_429: cli.storm_429,
            ..Faults::default()
        },
        clock: ClockConfig {
            start,
            speed: cli.clock_speed,
        },
        churn: if cli.no_churn {
            Churn::none()
        } else {
            Churn::default()
        },
        app_richness: cli.app_richness,
        android_share: cli.android_share,
        unlicensed_detail: cli.unlicensed_detail,
        large_tenant: cli.large_tenant,
        rate_limit_headers: !cli.no_rate_limit_headers,
        windows_share: cli.windows_share,
        refused_prism_categories: cli.refuse_prism_category.clone(),
    };
    anyhow::ensure!(cli.tenants >= 1, "--tenants must be at least 1");
    if cli.tenants > 1 {
        anyhow::ensure!(
            cli.port == 0,
            "--tenants {} needs --port 0 (each tenant gets a free port)",
            cli.tenants
        );
        let sims = kandji_sim::spawn_tenants(cfg, cli.tenants, cli.listen)
            .await
            .context("starting the simulator's tenants")?;
        {
            let mut out = std::io::stdout().lock();
            for s in &sims {
                writeln!(out, "{} {} {}", s.tenant(), s.base_url(), s.token())?;
            }
            out.flush()?;
        }
        shutdown_signal().await?;
        tracing::info!(tenants = sims.len(), "shutting down");
        for s in sims {
            s.shutdown().await;
        }
        return Ok(());
    }
    let addr = SocketAddr::new(cli.listen, cli.port);
    let sim = kandji_sim::spawn_on(cfg, addr)
        .await
        .context("starting the simulator")?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", sim.base_url())?;
        if !token_given {
            writeln!(out, "token: {}", sim.token())?;
        }
        out.flush()?;
    }
    shutdown_signal().await?;
    tracing::info!("shutting down");
    sim.shutdown().await;
    Ok(())
}

/// Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
            _ = term.recv() => {}
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")
    }
}
