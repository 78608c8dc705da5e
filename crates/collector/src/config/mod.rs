//! The TOML configuration: the data directory and N sources.
//!
//! The minimal form works as written:
//!
//! ```toml
//! data_dir = "./data"
//! [[sources]]
//! name = "acme"
//! endpoint = "acme.kandji.io"
//! region = "us"
//! token_env = "ACME_KANDJI_TOKEN"  # or token_file = "..."
//! ```
//!
//! Everything else has defaults. Validation errors name the field and the value.

pub mod sinks;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kandji_api::{ApiBase, Region};
use secrecy::SecretString;
use serde::Deserialize;

use crate::streams::{self, StreamName};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the store lives. `--data-dir` overrides it.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// The alert webhook (`[alerts]`): a short message per health change of any source.
    pub alerts: Option<AlertsConfig>,
    /// The store. Absent: embedded SQLite in `data_dir` (one process). A PostgreSQL URL
    /// (`postgres://user@host:5432/db`): the shared store of any number of `run` replicas,
    /// which lease sources among themselves. Never with a password in it.
    pub store: Option<String>,
    /// The environment variable that holds the PostgreSQL password.
    pub store_password_env: Option<String>,
    /// A file that holds the PostgreSQL password (a secret mount, `LoadCredential=`).
    pub store_password_file: Option<PathBuf>,
    /// A schema to work in (created if missing); the URL's default (`public`) when absent.
    pub store_schema: Option<String>,
    /// Connections this process may open to PostgreSQL (default 8).
    pub store_pool_size: Option<usize>,
    /// How long a replica's lease on a source lasts without renewal: a dead replica's
    /// sources move to the others within it (default "30s").
    pub lease_ttl: Option<String>,
    /// Prism exports (the apps and device-details runs) this process makes at once, over
    /// all its sources (default 4): memory and the store's write rate stay bounded with
    /// hundreds of tenants.
    pub max_concurrent_exports: Option<usize>,
    /// The key file the console encrypts stored tokens with (default `data_dir/console.key`).
    /// Replicas must share one: point each at the same file.
    pub console_key_file: Option<PathBuf>,
}

/// `[alerts]`: where health changes are posted (a Slack-compatible incoming webhook).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// The environment variable that holds the webhook URL (Slack's carry their secret in
    /// the path, so the URL is never written in the config).
    pub webhook_url_env: Option<String>,
    /// A file that holds the webhook URL.
    pub webhook_url_file: Option<PathBuf>,
    /// A state that stays bad is posted again after this (default "4h").
    pub resend_after: Option<String>,
}

impl Config {
    /// The alert webhook, when `[alerts]` names one: the URL read from its variable or file
    /// and checked (http or https).
    pub fn alert_webhook(&self) -> Result<Option<crate::health::AlertWebhook>, ConfigError> {
        let Some(a) = &self.alerts else {
            return Ok(None);
        };
        let url = match (&a.webhook_url_env, &a.webhook_url_file) {
            (Some(var), None) => std::env::var(var).map_err(|_| {
                invalid(
                    "alerts.webhook_url_env",
                    format!("the environment variable {var:?} is not set"),
                )
            })?,
            (None, Some(path)) => std::fs::read_to_string(path).map_err(|e| {
                invalid(
                    "alerts.webhook_url_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?,
            (None, None) => {
                return Err(invalid(
                    "alerts.webhook_url_env",
                    "set webhook_url_env (an environment variable) or webhook_url_file; the URL is a secret and never goes in the config",
                ));
            }
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "alerts.webhook_url_env",
                    "set webhook_url_env or webhook_url_file, not both",
                ));
            }
        };
        let url = url.trim().to_string();
        match url::Url::parse(&url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
            _ => {
                return Err(invalid(
                    "alerts.webhook_url_env",
                    "the webhook URL must be an http or https URL",
                ));
            }
        }
        let resend_after = match &a.resend_after {
            None => crate::health::DEFAULT_RESEND_AFTER,
            Some(v) => humantime::parse_duration(v).map_err(|e| {
                invalid(
                    "alerts.resend_after",
                    format!("{v:?} is not a duration such as \"4h\" ({e})"),
                )
            })?,
        };
        Ok(Some(crate::health::AlertWebhook {
            url: secrecy::SecretString::from(url),
            resend_after,
        }))
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub name: String,
    /// Any form the client accepts: `acme`, `acme.kandji.io`, `https://acme.api.kandji.io/api/v1/`…
    pub endpoint: String,
    #[serde(default)]
    pub region: Region,
    pub token_env: Option<String>,
    pub token_file: Option<PathBuf>,
    /// Lets the endpoint be a custom URL such as a kandji-sim at `http://127.0.0.1:PORT`.
    #[serde(default)]
    pub allow_custom_endpoint: bool,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The share of the tenant's hourly budget this collector may spend (0 < share ≤ 1).
    #[serde(default = "default_share")]
    pub budget_share: f64,
    /// The tenant's hourly limit (10,000 on Kandji).
    #[serde(default = "default_hourly_limit")]
    pub hourly_limit: u32,
    /// Our own per-second cap (the gateway allows 50/s).
    #[serde(default = "default_per_second")]
    pub per_second: u32,
    /// The streams to collect; all of them when absent.
    pub streams: Option<Vec<String>>,
    /// Per-stream interval overrides, e.g. `audit_events = "2m"`.
    #[serde(default)]
    pub schedules: BTreeMap<String, String>,
    #[serde(default)]
    pub filters: FilterConfig,
    /// Hosts the Prism export downloads may go to besides S3's (`amazonaws.com`), should
    /// Kandji move its signed URLs: `["exports.example.com"]`. Over https only.
    #[serde(default)]
    pub export_download_hosts: Vec<String>,
    /// Outputs (`[[sources.sinks]]`), typed and validated by [`sinks`].
    #[serde(default)]
    pub sinks: Vec<toml::Value>,
    /// The token's name as Kandji shows it (Access → API tokens): the console then shows its
    /// age, its creator and its last permission change from the audit feed, and warns before
    /// it stops working.
    pub token_name: Option<String>,
    /// The token's age at which the source asks for a rotation (default "90d").
    pub rotate_after: Option<String>,
    /// Fraction of the tenant's hourly limit kept for the other tools that share it
    /// (0 ≤ reserve ≤ 0.9, default 0.1).
    #[serde(default = "default_reserve")]
    pub reserve_for_others: f64,
}

fn default_reserve() -> f64 {
    crate::streams::source::DEFAULT_RESERVE_FOR_OTHERS
}

fn yes() -> bool {
    true
}
fn default_share() -> f64 {
    0.5
}
fn default_hourly_limit() -> u32 {
    10_000
}
fn default_per_second() -> u32 {
    10
}

pub use crate::streams::source::{DEVICE_TYPES, FilterConfig, Source};

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Config::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<config>"),
            message: e.to_string(),
        })
    }

    /// The PostgreSQL store this config names, with its password read (`None`: SQLite).
    pub fn pg_connect(&self) -> Result<Option<crate::store::pg::PgConnect>, ConfigError> {
        let Some(url) = &self.store else {
            return Ok(None);
        };
        if let Some(first) = self.store_problems().into_iter().next() {
            return Err(first);
        }
        let mut c = crate::store::pg::PgConnect::new(url);
        c.password = match (&self.store_password_env, &self.store_password_file) {
            (Some(var), _) => Some(SecretString::from(std::env::var(var).map_err(|_| {
                invalid(
                    "store_password_env",
                    format!("the environment variable {var:?} is not set"),
                )
            })?)),
            (None, Some(path)) => Some(SecretString::from(
                std::fs::read_to_string(path)
                    .map_err(|e| {
                        invalid(
                            "store_password_file",
                            format!("cannot read {}: {e}", path.display()),
                        )
                    })?
                    .trim_end_matches(['\n', '\r'])
                    .to_string(),
            )),
            (None, None) => None,
        };
        c.schema = self.store_schema.clone();
        if let Some(n) = self.store_pool_size {
            c.pool_size = n;
        }
        // A session idle inside a transaction ends well before its lease could expire.
        c.idle_tx_timeout_ms = (self.lease_ttl_ms() / 2).clamp(1_000, 30_000) as u64;
        Ok(Some(c))
    }

    /// The replicas' lease length, in ms.
    pub fn lease_ttl_ms(&self) -> i64 {
        self.lease_ttl
            .as_deref()
            .and_then(|v| humantime::parse_duration(v).ok())
            .map_or(30_000, |d| d.as_millis() as i64)
    }

    fn store_problems(&self) -> Vec<ConfigError> {
        let mut out = Vec::new();
        let Some(url) = &self.store else {
            for (k, set) in [
                ("store_password_env", self.store_password_env.is_some()),
                ("store_password_file", self.store_password_file.is_some()),
                ("store_schema", self.store_schema.is_some()),
                ("lease_ttl", self.lease_ttl.is_some()),
            ] {
                if set {
                    out.push(invalid(
                        k,
                        "is set, but `store` is not: it applies to a PostgreSQL store only",
                    ));
                }
            }
            return out;
        };
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            out.push(invalid(
                "store",
                format!(
                    "{url:?} is not a PostgreSQL URL (postgres://user@host:5432/db); leave `store` out for the embedded SQLite store"
                ),
            ));
        } else {
            match <tokio_postgres::Config as std::str::FromStr>::from_str(url) {
                Err(e) => out.push(invalid("store", format!("not a PostgreSQL URL: {e}"))),
                Ok(c) if c.get_password().is_some() => out.push(invalid(
                    "store",
                    "the URL carries a password; remove it and set store_password_env or store_password_file",
                )),
                Ok(_) => {}
            }
        }
        if self.store_password_env.is_some() && self.store_password_file.is_some() {
            out.push(invalid(
                "store_password_env",
                "set store_password_env or store_password_file, not both",
            ));
        }
        if let Some(s) = &self.store_schema
            && !(s.len() <= 63
                && s.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            out.push(invalid(
                "store_schema",
                format!("{s:?} must be a plain identifier: letters, digits and _, at most 63"),
            ));
        }
        if self.max_concurrent_exports == Some(0) {
            out.push(invalid("max_concurrent_exports", "0 must be at least 1"));
        }
        if self.store_pool_size == Some(0) {
            out.push(invalid("store_pool_size", "0 must be at least 1"));
        }
        if let Some(v) = &self.lease_ttl {
            match humantime::parse_duration(v) {
                Ok(d) if d >= Duration::from_secs(3) && d <= Duration::from_secs(3600) => {}
                Ok(_) => out.push(invalid(
                    "lease_ttl",
                    format!("{v:?} must be between 3s and 1h"),
                )),
                Err(e) => out.push(invalid(
                    "lease_ttl",
                    format!("{v:?} is not a duration like \"30s\": {e}"),
                )),
            }
        }
        out
    }

    /// Validates every source without reading tokens; returns all problems, not just the first.
    pub fn problems(&self) -> Vec<ConfigError> {
        let mut out = self.store_problems();
        if let Err(e) = self.alert_webhook() {
            out.push(e);
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, s) in self.sources.iter().enumerate() {
            if !seen.insert(s.name.clone()) {
                out.push(invalid(
                    format!("sources[{i}].name"),
                    format!("{:?} is used by more than one source", s.name),
                ));
            }
            out.extend(s.problems(i));
        }
        out
    }

    /// Validates and resolves every enabled source, reading tokens from env or file.
    pub fn resolve(&self) -> Result<Vec<Source>, ConfigError> {
        if let Some(first) = self.problems().into_iter().next() {
            return Err(first);
        }
        self.sources
            .iter()
            .enumerate()
            .map(|(i, s)| s.resolve(i))
            .collect()
    }
}

impl SourceConfig {
    fn problems(&self, i: usize) -> Vec<ConfigError> {
        let f = |name: &str| format!("sources[{i}].{name}");
        let mut out = Vec::new();
        if self.name.trim().is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            out.push(invalid(
                f("name"),
                format!(
                    "{:?} must be non-empty and use only letters, digits, '-', '_' and '.'",
                    self.name
                ),
            ));
        }
        if let Err(e) = ApiBase::parse(&self.endpoint, self.region, self.allow_custom_endpoint) {
            out.push(invalid(f("endpoint"), format!("{:?}: {e}", self.endpoint)));
        }
        match (&self.token_env, &self.token_file) {
            (None, None) => out.push(invalid(
                f("token_env"),
                "set token_env (an environment variable) or token_file; tokens are never written in the config",
            )),
            (Some(_), Some(_)) => out.push(invalid(
                f("token_env"),
                "set token_env or token_file, not both",
            )),
            _ => {}
        }
        if !(self.budget_share > 0.0 && self.budget_share <= 1.0) {
            out.push(invalid(
                f("budget_share"),
                format!("{} must be in (0, 1]", self.budget_share),
            ));
        }
        if self.hourly_limit == 0 {
            out.push(invalid(f("hourly_limit"), "0 must be at least 1"));
        }
        if !(0.0..=0.9).contains(&self.reserve_for_others) {
            out.push(invalid(
                f("reserve_for_others"),
                format!(
                    "{} must be between 0 and 0.9 (a fraction of the tenant's hourly limit)",
                    self.reserve_for_others
                ),
            ));
        }
        if let Some(v) = &self.rotate_after {
            match humantime::parse_duration(v) {
                Ok(d) if d >= std::time::Duration::from_secs(86_400) => {}
                Ok(_) => out.push(invalid(
                    f("rotate_after"),
                    format!("{v:?} is shorter than a day"),
                )),
                Err(e) => out.push(invalid(
                    f("rotate_after"),
                    format!("{v:?} is not a duration such as \"90d\" ({e})"),
                )),
            }
        }
        if self
            .token_name
            .as_deref()
            .is_some_and(|n| n.trim().is_empty() || n.len() > 200)
        {
            out.push(invalid(
                f("token_name"),
                "must be the token's name as Kandji shows it (1 to 200 characters)",
            ));
        }
        if self.per_second == 0 || self.per_second > 50 {
            out.push(invalid(
                f("per_second"),
                format!(
                    "{} must be between 1 and 50 (the gateway's limit)",
                    self.per_second
                ),
            ));
        }
        if let Some(list) = &self.streams {
            for (j, s) in list.iter().enumerate() {
                if StreamName::parse(s).is_none() {
                    out.push(invalid(
                        format!("sources[{i}].streams[{j}]"),
                        format!(
                            "{s:?} is not a stream; known: {}",
                            streams::names().join(", ")
                        ),
                    ));
                }
            }
        }
        for (k, v) in &self.schedules {
            if StreamName::parse(k).is_none() {
                out.push(invalid(
                    format!("sources[{i}].schedules.{k}"),
                    format!(
                        "{k:?} is not a stream; known: {}",
                        streams::names().join(", ")
                    ),
                ));
            }
            match humantime::parse_duration(v) {
                Ok(d) if d >= Duration::from_secs(10) => {}
                Ok(_) => out.push(invalid(
                    format!("sources[{i}].schedules.{k}"),
                    format!("{v:?} is shorter than the 10s minimum"),
                )),
                Err(e) => out.push(invalid(
                    format!("sources[{i}].schedules.{k}"),
                    format!("{v:?} is not a duration like \"90s\", \"15m\" or \"6h\": {e}"),
                )),
            }
        }
        out.extend(sinks::problems(i, &self.sinks));
        for (j, t) in self.filters.device_types.iter().enumerate() {
            if !DEVICE_TYPES.iter().any(|(d, _)| d.eq_ignore_ascii_case(t)) {
                out.push(invalid(
                    format!("sources[{i}].filters.device_types[{j}]"),
                    format!(
                        "{t:?} is not a device type; known: {}",
                        DEVICE_TYPES.map(|(d, _)| d).join(", ")
                    ),
                ));
            }
        }
        out
    }

    fn resolve(&self, i: usize) -> Result<Source, ConfigError> {
        let base = ApiBase::parse(&self.endpoint, self.region, self.allow_custom_endpoint)
            .map_err(|e| {
                invalid(
                    format!("sources[{i}].endpoint"),
                    format!("{:?}: {e}", self.endpoint),
                )
            })?;
        let token = read_token(i, self.token_env.as_deref(), self.token_file.as_deref())?;
        let streams = match &self.streams {
            Some(list) => list.iter().filter_map(|s| StreamName::parse(s)).collect(),
            None => StreamName::ALL.to_vec(),
        };
        let mut intervals = BTreeMap::new();
        for s in StreamName::ALL {
            let d = match self.schedules.get(s.as_str()) {
                Some(v) => humantime::parse_duration(v).map_err(|e| {
                    invalid(
                        format!("sources[{i}].schedules.{}", s.as_str()),
                        e.to_string(),
                    )
                })?,
                None => s.default_interval(),
            };
            intervals.insert(s, d);
        }
        let mut filters = self.filters.clone();
        for t in &mut filters.device_types {
            if let Some((canon, _)) = DEVICE_TYPES.iter().find(|(d, _)| d.eq_ignore_ascii_case(t)) {
                *t = (*canon).to_string();
            }
        }
        Ok(Source {
            name: self.name.clone(),
            base,
            token,
            enabled: self.enabled,
            budget_share: self.budget_share,
            hourly_limit: self.hourly_limit,
            per_second: self.per_second,
            streams,
            intervals,
            filters,
            export_download_hosts: self.export_download_hosts.clone(),
            hygiene: crate::streams::source::Hygiene {
                token_name: self
                    .token_name
                    .as_deref()
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(str::to_string),
                rotate_after: self
                    .rotate_after
                    .as_deref()
                    .and_then(|v| humantime::parse_duration(v).ok())
                    .unwrap_or(crate::streams::source::DEFAULT_ROTATE_AFTER),
                reserve_for_others: self.reserve_for_others.clamp(0.0, 0.9),
            },
        })
    }
}

fn read_token(
    i: usize,
    env: Option<&str>,
    file: Option<&Path>,
) -> Result<SecretString, ConfigError> {
    let value = match (env, file) {
        (Some(var), _) => std::env::var(var).map_err(|_| {
            invalid(
                format!("sources[{i}].token_env"),
                format!("the environment variable {var:?} is not set"),
            )
        })?,
        (None, Some(path)) => std::fs::read_to_string(path).map_err(|e| {
            invalid(
                format!("sources[{i}].token_file"),
                format!("cannot read {}: {e}", path.display()),
            )
        })?,
        (None, None) => {
            return Err(invalid(
                format!("sources[{i}].token_env"),
                "set token_env or token_file",
            ));
        }
    };
    let value = value.trim().to_string();
    if value.is_empty() {
        return Err(invalid(
            format!("sources[{i}].token_env"),
            "the token is empty",
        ));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            format!("sources[{i}].token_env"),
            "the token contains whitespace; paste only the token itself",
        ));
    }
    Ok(SecretString::from(value))
}

/// Writes a secret (a token) to `path`, readable by this user only (0600 on Unix, also when the
/// file existed with wider permissions).
pub fn write_secret_file(path: &std::path::Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(secret.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod secret_file_tests {
    #[cfg(unix)]
    #[test]
    fn a_secret_file_is_0600_even_over_a_wider_one() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("demo-token");
        std::fs::write(&p, "old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        super::write_secret_file(&p, "tok").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "tok");
    }
}
