//! `[[sources.sinks]]`: the typed shape of one output and its validation. Validation errors
//! name the field (`sources[0].sinks[1].url`) and the value.
//!
//! ```toml
//! [[sources.sinks]]
//! type = "webhook"              # "ndjson" | "otlp" | "webhook" | "nats"
//! name = "siem"                 # optional; the key of the output's offset (default "<type>-<n>")
//! format = "ocsf"               # "raw" | "ocsf" (default "ocsf")
//! url = "https://siem.example/ingest"
//! auth_header = "Authorization" # its value comes from auth_env or auth_file, never the config
//! auth_env = "SIEM_TOKEN"
//! hmac_secret_env = "SIEM_HMAC" # optional: X-Kandji-Signature-256: sha256=<hex>
//! gzip = true
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::config::ConfigError;

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Raw,
    #[default]
    Ocsf,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OtlpEncoding {
    #[default]
    Protobuf,
    Json,
}

/// One sink as written in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SinkConfig {
    Ndjson {
        name: Option<String>,
        #[serde(default)]
        format: Format,
        /// A file path, or "-" for stdout.
        path: String,
        /// Rotate when the file reaches this many bytes (0 = never).
        #[serde(default)]
        rotate_bytes: u64,
        /// Rotate when the file is this old, e.g. "1h" (absent = never).
        rotate_every: Option<String>,
        /// Rotated files kept (oldest deleted).
        #[serde(default = "default_keep")]
        keep_files: usize,
        #[serde(default = "default_batch")]
        batch_size: usize,
    },
    Otlp {
        name: Option<String>,
        #[serde(default)]
        format: Format,
        /// The OTLP/HTTP logs URL, e.g. "http://127.0.0.1:4318/v1/logs".
        endpoint: String,
        #[serde(default)]
        encoding: OtlpEncoding,
        #[serde(default = "yes")]
        gzip: bool,
        /// Plain headers.
        #[serde(default)]
        headers: BTreeMap<String, String>,
        /// Secret headers: header name → environment variable holding the value.
        #[serde(default)]
        headers_env: BTreeMap<String, String>,
        timeout: Option<String>,
        #[serde(default = "default_batch")]
        batch_size: usize,
    },
    Webhook {
        name: Option<String>,
        #[serde(default)]
        format: Format,
        url: String,
        #[serde(default = "yes")]
        gzip: bool,
        auth_header: Option<String>,
        auth_env: Option<String>,
        auth_file: Option<PathBuf>,
        hmac_secret_env: Option<String>,
        hmac_secret_file: Option<PathBuf>,
        timeout: Option<String>,
        #[serde(default = "default_batch")]
        batch_size: usize,
    },
    /// NATS JetStream: each record published to a subject of the source and category, with
    /// `Nats-Msg-Id` set to its stable id, and acknowledged by the stream before the offset
    /// moves.
    Nats {
        name: Option<String>,
        #[serde(default)]
        format: Format,
        /// The server, e.g. "nats://127.0.0.1:4222" (several, comma-separated).
        url: String,
        /// The subject; `{source}`, `{category}` and `{kind}` are filled in per record.
        #[serde(default = "default_subject")]
        subject: String,
        /// The JetStream stream that holds the subjects (created when `create_stream`).
        stream: Option<String>,
        #[serde(default)]
        create_stream: bool,
        /// The stream's deduplication window, when the collector creates it.
        duplicate_window: Option<String>,
        /// Authentication: a token, a user and password, or a `.creds` file.
        token_env: Option<String>,
        token_file: Option<PathBuf>,
        user: Option<String>,
        password_env: Option<String>,
        password_file: Option<PathBuf>,
        credentials_file: Option<PathBuf>,
        timeout: Option<String>,
        #[serde(default = "default_batch")]
        batch_size: usize,
    },
}

fn default_subject() -> String {
    "kandji.{source}.{category}".into()
}

fn yes() -> bool {
    true
}
fn default_keep() -> usize {
    10
}
fn default_batch() -> usize {
    500
}

/// A sink resolved: secrets read, durations parsed.
#[derive(Debug, Clone)]
pub struct SinkSpec {
    /// The output's name: the key of its offset, dead letters and status.
    pub name: String,
    pub format: Format,
    pub batch_size: usize,
    pub kind: SinkKind,
}

#[derive(Debug, Clone)]
pub enum SinkKind {
    Ndjson {
        /// `None` = stdout.
        path: Option<PathBuf>,
        rotate_bytes: u64,
        rotate_every: Option<Duration>,
        keep_files: usize,
    },
    Otlp {
        endpoint: url::Url,
        encoding: OtlpEncoding,
        gzip: bool,
        headers: Vec<(String, String)>,
        secret_headers: Vec<(String, SecretString)>,
        timeout: Duration,
    },
    Webhook {
        url: url::Url,
        gzip: bool,
        auth: Option<(String, SecretString)>,
        hmac_secret: Option<SecretString>,
        timeout: Duration,
    },
    Nats(NatsSpec),
}

/// A NATS JetStream output, resolved.
#[derive(Debug, Clone)]
pub struct NatsSpec {
    /// The server URLs as given (`nats://`, `tls://`).
    pub servers: Vec<String>,
    /// The subject template (`{source}`, `{category}`, `{kind}`).
    pub subject: String,
    pub stream: Option<String>,
    pub create_stream: bool,
    pub duplicate_window: Duration,
    pub auth: NatsAuth,
    pub timeout: Duration,
}

/// How the NATS output authenticates.
#[derive(Debug, Clone)]
pub enum NatsAuth {
    None,
    Token(SecretString),
    UserPassword(String, SecretString),
    Credentials(PathBuf),
}

impl SinkKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkKind::Ndjson { .. } => "ndjson",
            SinkKind::Otlp { .. } => "otlp",
            SinkKind::Webhook { .. } => "webhook",
            SinkKind::Nats(_) => "nats",
        }
    }
}

/// The placeholders a NATS subject may hold.
pub const SUBJECT_FIELDS: [&str; 3] = ["{source}", "{category}", "{kind}"];

/// A NATS subject template is valid: dot-separated tokens, none empty, no spaces or
/// wildcards (each placeholder fills a whole token, or part of one).
fn check_subject(field: &str, s: &str) -> Result<(), ConfigError> {
    let mut t = s.to_string();
    for p in SUBJECT_FIELDS {
        t = t.replace(p, "x");
    }
    if t.contains('{') || t.contains('}') {
        return Err(invalid(
            field,
            format!("{s:?}: the placeholders are {{source}}, {{category}} and {{kind}}"),
        ));
    }
    if t.is_empty()
        || t.split('.').any(|tok| {
            tok.is_empty()
                || tok
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '*' || c == '>')
        })
    {
        return Err(invalid(
            field,
            format!(
                "{s:?} is not a NATS subject: dot-separated tokens, none empty, without spaces, \
                 '*' or '>'"
            ),
        ));
    }
    Ok(())
}

fn parse_sink(i: usize, j: usize, v: &toml::Value) -> Result<SinkConfig, ConfigError> {
    let field = format!("sources[{i}].sinks[{j}]");
    let Some(t) = v.get("type").and_then(toml::Value::as_str) else {
        return Err(invalid(
            format!("{field}.type"),
            "missing; one of \"ndjson\", \"otlp\", \"webhook\", \"nats\"",
        ));
    };
    if !matches!(t, "ndjson" | "otlp" | "webhook" | "nats") {
        return Err(invalid(
            format!("{field}.type"),
            format!("{t:?} is not a sink type; one of \"ndjson\", \"otlp\", \"webhook\", \"nats\""),
        ));
    }
    v.clone().try_into::<SinkConfig>().map_err(|e| {
        let msg = e.message().to_string();
        // serde names the offending field in its message ("unknown field `x`", "missing field `y`").
        let name = msg
            .split('`')
            .nth(1)
            .filter(|_| msg.contains("field"))
            .map(|f| format!("{field}.{f}"))
            .or_else(|| msg.contains("variant").then(|| format!("{field}.format")))
            .unwrap_or(field.clone());
        invalid(name, msg)
    })
}

fn duration(field: &str, v: Option<&String>, default: Duration) -> Result<Duration, ConfigError> {
    match v {
        None => Ok(default),
        Some(s) => humantime::parse_duration(s).map_err(|e| {
            invalid(
                field,
                format!("{s:?} is not a duration like \"30s\" or \"1h\": {e}"),
            )
        }),
    }
}

fn read_secret(
    field: &str,
    env: Option<&String>,
    file: Option<&PathBuf>,
) -> Result<Option<SecretString>, ConfigError> {
    match (env, file) {
        (Some(_), Some(_)) => Err(invalid(field, "set the _env or the _file form, not both")),
        (Some(var), None) => std::env::var(var)
            .map(|v| Some(SecretString::from(v.trim().to_string())))
            .map_err(|_| invalid(field, format!("environment variable {var} is not set"))),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|v| Some(SecretString::from(v.trim().to_string())))
            .map_err(|e| invalid(field, format!("cannot read {}: {e}", path.display()))),
        (None, None) => Ok(None),
    }
}

fn http_url(field: &str, s: &str) -> Result<url::Url, ConfigError> {
    let u = url::Url::parse(s).map_err(|e| invalid(field, format!("{s:?}: {e}")))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(invalid(
            field,
            format!("{s:?} must be an http or https URL"),
        ));
    }
    Ok(u)
}

fn check_name(field: &str, n: &str) -> Result<(), ConfigError> {
    if n.is_empty()
        || !n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(invalid(
            field,
            format!("{n:?} must be non-empty and use only letters, digits, '-', '_' and '.'"),
        ));
    }
    Ok(())
}

/// Resolves a source's sinks (secrets read). `i` is the source's index, for error fields.
pub fn resolve(i: usize, sinks: &[toml::Value]) -> Result<Vec<SinkSpec>, ConfigError> {
    let mut out: Vec<SinkSpec> = Vec::new();
    for (j, v) in sinks.iter().enumerate() {
        let f = |name: &str| format!("sources[{i}].sinks[{j}].{name}");
        let cfg = parse_sink(i, j, v)?;
        let (name, format, batch_size, kind) = match cfg {
            SinkConfig::Ndjson {
                name,
                format,
                path,
                rotate_bytes,
                rotate_every,
                keep_files,
                batch_size,
            } => {
                if path.trim().is_empty() {
                    return Err(invalid(f("path"), "empty; a file path or \"-\" for stdout"));
                }
                let rotate_every = match rotate_every {
                    Some(s) => Some(duration(&f("rotate_every"), Some(&s), Duration::ZERO)?),
                    None => None,
                };
                if rotate_every.is_some_and(|d| d < Duration::from_secs(1)) {
                    return Err(invalid(f("rotate_every"), "must be at least 1s"));
                }
                (
                    name,
                    format,
                    batch_size,
                    SinkKind::Ndjson {
                        path: (path != "-").then(|| PathBuf::from(path)),
                        rotate_bytes,
                        rotate_every,
                        keep_files: keep_files.max(1),
                    },
                )
            }
            SinkConfig::Otlp {
                name,
                format,
                endpoint,
                encoding,
                gzip,
                headers,
                headers_env,
                timeout,
                batch_size,
            } => {
                let endpoint = http_url(&f("endpoint"), &endpoint)?;
                let mut secret_headers = Vec::new();
                for (h, var) in &headers_env {
                    let v = std::env::var(var).map_err(|_| {
                        invalid(
                            format!("sources[{i}].sinks[{j}].headers_env.{h}"),
                            format!("environment variable {var} is not set"),
                        )
                    })?;
                    if reqwest::header::HeaderValue::from_str(&v).is_err() {
                        return Err(invalid(
                            format!("sources[{i}].sinks[{j}].headers_env.{h}"),
                            format!("the value of {var} is not a valid header value"),
                        ));
                    }
                    secret_headers.push((h.clone(), SecretString::from(v)));
                }
                for h in headers.keys().chain(headers_env.keys()) {
                    if reqwest::header::HeaderName::from_bytes(h.as_bytes()).is_err() {
                        return Err(invalid(f("headers"), format!("{h:?} is not a header name")));
                    }
                }
                for (h, v) in &headers {
                    if reqwest::header::HeaderValue::from_str(v).is_err() {
                        return Err(invalid(
                            format!("sources[{i}].sinks[{j}].headers.{h}"),
                            format!("{v:?} is not a valid header value"),
                        ));
                    }
                }
                (
                    name,
                    format,
                    batch_size,
                    SinkKind::Otlp {
                        endpoint,
                        encoding,
                        gzip,
                        headers: headers.into_iter().collect(),
                        secret_headers,
                        timeout: duration(
                            &f("timeout"),
                            timeout.as_ref(),
                            Duration::from_secs(30),
                        )?,
                    },
                )
            }
            SinkConfig::Webhook {
                name,
                format,
                url,
                gzip,
                auth_header,
                auth_env,
                auth_file,
                hmac_secret_env,
                hmac_secret_file,
                timeout,
                batch_size,
            } => {
                let url = http_url(&f("url"), &url)?;
                let token = read_secret(&f("auth_env"), auth_env.as_ref(), auth_file.as_ref())?;
                let auth = match (auth_header, token) {
                    (_, Some(t))
                        if reqwest::header::HeaderValue::from_str(t.expose_secret()).is_err() =>
                    {
                        return Err(invalid(
                            f("auth_env"),
                            "the secret is not a valid header value (control characters?)",
                        ));
                    }
                    (Some(h), Some(t)) => {
                        if reqwest::header::HeaderName::from_bytes(h.as_bytes()).is_err() {
                            return Err(invalid(
                                f("auth_header"),
                                format!("{h:?} is not a header name"),
                            ));
                        }
                        Some((h, t))
                    }
                    (None, Some(t)) => Some(("Authorization".to_string(), t)),
                    (Some(_), None) => {
                        return Err(invalid(
                            f("auth_env"),
                            "auth_header is set: give its value with auth_env or auth_file",
                        ));
                    }
                    (None, None) => None,
                };
                let hmac_secret = read_secret(
                    &f("hmac_secret_env"),
                    hmac_secret_env.as_ref(),
                    hmac_secret_file.as_ref(),
                )?;
                (
                    name,
                    format,
                    batch_size,
                    SinkKind::Webhook {
                        url,
                        gzip,
                        auth,
                        hmac_secret,
                        timeout: duration(
                            &f("timeout"),
                            timeout.as_ref(),
                            Duration::from_secs(30),
                        )?,
                    },
                )
            }
            SinkConfig::Nats {
                name,
                format,
                url,
                subject,
                stream,
                create_stream,
                duplicate_window,
                token_env,
                token_file,
                user,
                password_env,
                password_file,
                credentials_file,
                timeout,
                batch_size,
            } => {
                let servers: Vec<String> = url
                    .split(',')
                    .map(|u| u.trim().to_string())
                    .filter(|u| !u.is_empty())
                    .collect();
                if servers.is_empty() {
                    return Err(invalid(f("url"), "empty; e.g. \"nats://127.0.0.1:4222\""));
                }
                for u in &servers {
                    let parsed =
                        url::Url::parse(u).map_err(|e| invalid(f("url"), format!("{u:?}: {e}")))?;
                    if !matches!(parsed.scheme(), "nats" | "tls") || parsed.host().is_none() {
                        return Err(invalid(
                            f("url"),
                            format!("{u:?} must be a nats:// or tls:// URL with a host"),
                        ));
                    }
                    if !parsed.username().is_empty() || parsed.password().is_some() {
                        return Err(invalid(
                            f("url"),
                            "no credentials in the URL: use token_env, user with password_env, \
                             or credentials_file",
                        ));
                    }
                }
                check_subject(&f("subject"), &subject)?;
                if let Some(st) = &stream
                    && (st.is_empty()
                        || !st
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                {
                    return Err(invalid(
                        f("stream"),
                        format!("{st:?}: a stream name uses letters, digits, '-' and '_'"),
                    ));
                }
                if create_stream && stream.is_none() {
                    return Err(invalid(
                        f("stream"),
                        "create_stream is set: name the stream to create",
                    ));
                }
                let token = read_secret(&f("token_env"), token_env.as_ref(), token_file.as_ref())?;
                let password = read_secret(
                    &f("password_env"),
                    password_env.as_ref(),
                    password_file.as_ref(),
                )?;
                let auth = match (token, user, password, credentials_file) {
                    (None, None, None, None) => NatsAuth::None,
                    (Some(t), None, None, None) => NatsAuth::Token(t),
                    (None, Some(u), Some(p), None) => NatsAuth::UserPassword(u, p),
                    (None, None, None, Some(c)) => {
                        if !c.is_file() {
                            return Err(invalid(
                                f("credentials_file"),
                                format!("{} is not a readable file", c.display()),
                            ));
                        }
                        NatsAuth::Credentials(c)
                    }
                    (None, Some(_), None, None) => {
                        return Err(invalid(
                            f("password_env"),
                            "user is set: give its password with password_env or password_file",
                        ));
                    }
                    _ => {
                        return Err(invalid(
                            f("token_env"),
                            "choose one way to authenticate: a token, a user and password, or \
                             a credentials file",
                        ));
                    }
                };
                (
                    name,
                    format,
                    batch_size,
                    SinkKind::Nats(NatsSpec {
                        servers,
                        subject,
                        stream,
                        create_stream,
                        duplicate_window: duration(
                            &f("duplicate_window"),
                            duplicate_window.as_ref(),
                            Duration::from_secs(120),
                        )?,
                        auth,
                        timeout: duration(
                            &f("timeout"),
                            timeout.as_ref(),
                            Duration::from_secs(30),
                        )?,
                    }),
                )
            }
        };
        if batch_size == 0 || batch_size > 10_000 {
            return Err(invalid(
                f("batch_size"),
                format!("{batch_size} must be between 1 and 10000"),
            ));
        }
        let name = name.unwrap_or_else(|| format!("{}-{j}", kind.type_name()));
        check_name(&f("name"), &name)?;
        if out.iter().any(|o| o.name == name) {
            return Err(invalid(
                f("name"),
                format!("{name:?} is used by another sink of this source"),
            ));
        }
        out.push(SinkSpec {
            name,
            format,
            batch_size,
            kind,
        });
    }
    Ok(out)
}

/// Validation problems of a source's sinks (for `validate`).
pub fn problems(i: usize, sinks: &[toml::Value]) -> Vec<ConfigError> {
    match resolve(i, sinks) {
        Ok(_) => Vec::new(),
        Err(e) => vec![e],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nats(extra: &str) -> Result<Vec<SinkSpec>, ConfigError> {
        let v: toml::Value = toml::from_str(&format!(
            "type = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\n{extra}"
        ))
        .unwrap();
        resolve(0, &[v])
    }

    fn field(r: Result<Vec<SinkSpec>, ConfigError>) -> String {
        match r {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("expected a refusal: {other:?}"),
        }
    }

    #[test]
    fn a_nats_sink_is_checked_field_by_field() {
        let ok = nats("stream = \"KANDJI\"\ncreate_stream = true").unwrap();
        match &ok[0].kind {
            SinkKind::Nats(n) => {
                assert_eq!(n.subject, "kandji.{source}.{category}");
                assert_eq!(n.duplicate_window, Duration::from_secs(120));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(ok[0].name, "nats-0");
        assert_eq!(
            field(nats("subject = \"kandji..x\"")),
            "sources[0].sinks[0].subject"
        );
        assert_eq!(
            field(nats("subject = \"kandji.>\"")),
            "sources[0].sinks[0].subject"
        );
        assert_eq!(
            field(nats("subject = \"k.{tenant}\"")),
            "sources[0].sinks[0].subject"
        );
        assert_eq!(
            field(nats("create_stream = true")),
            "sources[0].sinks[0].stream"
        );
        assert_eq!(
            field(nats("stream = \"a.b\"")),
            "sources[0].sinks[0].stream"
        );
        assert_eq!(
            field(nats("user = \"u\"")),
            "sources[0].sinks[0].password_env"
        );
        let v: toml::Value =
            toml::from_str("type = \"nats\"\nurl = \"nats://u:p@127.0.0.1:4222\"").unwrap();
        assert_eq!(field(resolve(0, &[v])), "sources[0].sinks[0].url");
        let v: toml::Value = toml::from_str("type = \"nats\"\nurl = \"http://127.0.0.1\"").unwrap();
        assert_eq!(field(resolve(0, &[v])), "sources[0].sinks[0].url");
    }
}
