//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "kandji-collector",
    version,
    about = "Collects a Kandji/Iru tenant's fleet data into an embedded store"
)]
pub struct Cli {
    /// The TOML config file.
    #[arg(
        long,
        short,
        global = true,
        env = "KANDJI_COLLECTOR_CONFIG",
        default_value = "kandji-collector.toml"
    )]
    pub config: PathBuf,
    /// Where the store lives (overrides `data_dir` in the config).
    #[arg(long, global = true, env = "KANDJI_COLLECTOR_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log filter, e.g. `info` or `kandji_collector=debug`.
    #[arg(long, global = true, env = "RUST_LOG", default_value = "info")]
    pub log: String,
    /// Log lines as text (for people) or one JSON object per line (for log shippers).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "KANDJI_COLLECTOR_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Checks a config file and prints each source's plan.
    Validate,
    /// Probes each source's endpoints and prints the permission matrix.
    Check {
        #[arg(long)]
        source: Option<String>,
        /// Also look for privileges the collector does not need (device secrets), with safe
        /// probes only: a GET per secret endpoint, aimed at the nil device id. Fails when one
        /// is granted.
        #[arg(long)]
        privileges: bool,
    },
    /// Prints the API permissions the streams need (all streams, or `--streams`): exactly
    /// what to tick on a least-privilege token in Kandji → Access → API tokens.
    Permissions {
        /// Comma-separated stream names (default: every stream).
        #[arg(long, value_delimiter = ',')]
        streams: Vec<String>,
        /// `text` (a table), `markdown` (the README's table) or `json`.
        #[arg(long, value_enum, default_value = "text")]
        format: PermissionsFormat,
    },
    /// Runs one collection cycle.
    Sync {
        /// One cycle and exit (the only mode; `run` is the daemon).
        #[arg(long)]
        once: bool,
        #[arg(long)]
        source: Option<String>,
        /// Comma-separated stream names.
        #[arg(long, value_delimiter = ',')]
        streams: Vec<String>,
    },
    /// The daemon: collects on schedule until SIGINT/SIGTERM, and serves the web console.
    Run {
        #[command(flatten)]
        web: WebArgs,
    },
    /// Per stream: last success, last error, records, checkpoint, budget.
    Status {
        #[arg(long)]
        source: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Also run SQLite's full integrity check on the store (reads all of it).
        #[arg(long)]
        verify: bool,
    },
    /// Copies the store (and the console's key file) into DIR, online: beside a running
    /// collector. Restore with `--data-dir DIR`.
    Backup {
        /// An empty or new directory.
        dir: PathBuf,
    },
    /// Writes a stream's records as NDJSON to stdout: raw (`--format ndjson`) or OCSF (`--format ocsf`).
    Export {
        #[arg(long)]
        source: String,
        #[arg(long)]
        stream: String,
        #[arg(long, value_enum, default_value = "ndjson")]
        format: ExportFormat,
        /// Only records collected or that occurred at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
    },
    /// Starts a simulated tenant and the collector against it.
    Demo {
        #[arg(long, default_value_t = 500)]
        devices: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Run one sync cycle, print the status and exit.
        #[arg(long)]
        once: bool,
        #[command(flatten)]
        web: WebArgs,
    },
}

/// The web console's listener and options (`run` and `demo`).
#[derive(Debug, Clone, clap::Args)]
pub struct WebArgs {
    /// Where the console listens. Loopback by default; anything else exposes it to the network.
    #[arg(
        long,
        env = "KANDJI_COLLECTOR_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: std::net::SocketAddr,
    /// Let console-added sources use custom endpoint URLs (e.g. a kandji-sim). The demo sets it.
    #[arg(long)]
    pub allow_custom_endpoints: bool,
    /// Mark session cookies Secure and send HSTS (the console is reached over TLS, e.g.
    /// behind a proxy; the listener itself speaks plain HTTP).
    #[arg(long)]
    pub secure_cookies: bool,
    /// The URL users open the console at when it is not the listener's (a proxy or a DNS
    /// name, e.g. https://collector.example.com/): its host is the one name besides IP
    /// addresses and localhost the console answers for, and it is the URL printed.
    #[arg(long, env = "KANDJI_COLLECTOR_PUBLIC_URL")]
    pub public_url: Option<url::Url>,
    /// Collect without serving the console.
    #[arg(long)]
    pub no_console: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ExportFormat {
    /// The raw Kandji JSON, one record per line.
    Ndjson,
    /// The OCSF 1.8.0 form, one event per line.
    Ocsf,
}

/// How `permissions` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PermissionsFormat {
    Text,
    Markdown,
    Json,
}

/// How log lines are written (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` (`message` and
    /// every key/value), as Vector's and the OpenTelemetry Collector's JSON logs.
    Json,
}
