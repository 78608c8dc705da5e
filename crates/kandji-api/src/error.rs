//! The crate's single error type, [`KandjiError`].
//!
//! Every public fallible function returns `Result<_, KandjiError>`. Error messages never
//! contain the API token: the token lives only inside the client's default headers.

use std::time::Duration;

use serde_json::Value;

/// Why a paginated walk was stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaginationProblem {
    /// The server returned the same cursor (or an already-seen cursor) again.
    StuckCursor {
        /// The cursor that did not advance.
        cursor: String,
    },
    /// The server returned a page whose items are identical to a page already seen in this walk.
    RepeatedPage {
        /// The 0-based index of the repeated page within the walk.
        page_index: u64,
    },
    /// The walk exceeded the configured page bound.
    TooManyPages {
        /// The configured bound.
        max_pages: u64,
    },
}

impl std::fmt::Display for PaginationProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::StuckCursor { cursor } => write!(f, "cursor did not advance ({cursor:?})"),
            Self::RepeatedPage { page_index } => {
                write!(f, "page {page_index} repeats an earlier page")
            }
            Self::TooManyPages { max_pages } => write!(f, "more than {max_pages} pages"),
        }
    }
}

/// The one error type at the crate boundary.
///
/// `endpoint` fields hold the endpoint *template* (`"GET /api/v1/devices/{device_id}/status"`),
/// never a concrete URL with ids or query strings.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KandjiError {
    /// The configured tenant address is not one of the accepted forms.
    #[error("invalid Kandji API address {input:?}: {reason}. {ACCEPTED_FORMS}")]
    InvalidEndpoint {
        /// What the user gave (trimmed).
        input: String,
        /// Why it was refused.
        reason: String,
    },
    /// Invalid client configuration (e.g. a token that cannot be sent as a header).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// 401: the token is invalid, revoked or expired. Never retried.
    #[error("{endpoint}: unauthorized (401): the API token is invalid, revoked or expired")]
    Unauthorized {
        /// Endpoint template.
        endpoint: String,
    },
    /// 403: the token lacks the permission for this endpoint.
    #[error("{endpoint}: permission denied (403): enable this endpoint for the API token")]
    PermissionDenied {
        /// Endpoint template.
        endpoint: String,
    },
    /// 403 whose body says the feature (EDR, Vulnerability Management, …) is not enabled.
    #[error("{endpoint}: feature not licensed/enabled for this tenant (403)")]
    NotLicensed {
        /// Endpoint template.
        endpoint: String,
    },
    /// 403 on a licence-gated endpoint (EDR, Vulnerability Management) whose body says
    /// neither "not licensed" nor anything else that settles it: the token may lack the
    /// permission, or the tenant the feature. Kandji's licence text is not documented, and a
    /// DRF permission text would read the same for both.
    #[error("{endpoint}: forbidden (403): not licensed or not permitted ({message})")]
    NotLicensedOrDenied {
        /// Endpoint template.
        endpoint: String,
        /// The server's message, leniently extracted.
        message: String,
    },
    /// 404 for a resource.
    #[error("{endpoint}: not found (404): {message}")]
    NotFound {
        /// Endpoint template.
        endpoint: String,
        /// The server's message, leniently extracted.
        message: String,
    },
    /// 404 from the gateway: no route matched (the endpoint does not exist on this host).
    #[error("{endpoint}: no route matched (404 from the gateway)")]
    NoRoute {
        /// Endpoint template.
        endpoint: String,
    },
    /// Any other 4xx answer (400, 405, 415, …).
    #[error("{endpoint}: client error ({status}): {message}")]
    BadRequest {
        /// Endpoint template.
        endpoint: String,
        /// HTTP status.
        status: u16,
        /// The server's message, leniently extracted.
        message: String,
    },
    /// 429 after the retry budget was exhausted.
    #[error("{endpoint}: rate limited (429){}", retry_after.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default())]
    RateLimited {
        /// Endpoint template.
        endpoint: String,
        /// The last `Retry-After` (or reset) the server gave.
        retry_after: Option<Duration>,
    },
    /// 5xx after the retry budget was exhausted.
    #[error("{endpoint}: server error ({status}): {message}")]
    Server {
        /// Endpoint template.
        endpoint: String,
        /// HTTP status.
        status: u16,
        /// The server's message, leniently extracted.
        message: String,
    },
    /// The request timed out (connect or whole request).
    #[error("{endpoint}: timed out")]
    Timeout {
        /// Endpoint template.
        endpoint: String,
    },
    /// Connection-level failure (refused, reset, TLS, body read interrupted).
    #[error("{endpoint}: transport error: {message}")]
    Transport {
        /// Endpoint template.
        endpoint: String,
        /// Description (never contains the token).
        message: String,
    },
    /// The host could not be reached at all (connection refused, no DNS answer, TLS
    /// handshake failed, connect timed out) after the short retry budget for that class.
    #[error("{endpoint}: {host} is unreachable: {message}")]
    Unreachable {
        /// Endpoint template.
        endpoint: String,
        /// The host (and port) that did not answer.
        host: String,
        /// The OS or TLS error (never contains the token).
        message: String,
    },
    /// The body could not be decoded (not JSON, or not the expected shape).
    #[error("{endpoint}: could not decode response: {message}")]
    Decode {
        /// Endpoint template.
        endpoint: String,
        /// What went wrong.
        message: String,
    },
    /// A paginated walk was stopped because the server misbehaved.
    #[error("{endpoint}: pagination stopped: {problem}")]
    Pagination {
        /// Endpoint template.
        endpoint: String,
        /// What was detected.
        problem: PaginationProblem,
    },
    /// A Prism export failed on the server side (`status == "failed"`), or its signed URL
    /// had expired, after `attempts` whole cycles.
    #[error("prism export {export_id} failed: {message} (tried {attempts} times)")]
    ExportFailed {
        /// Export id (of the last attempt).
        export_id: String,
        /// `error_msg` from the server, or what went wrong.
        message: String,
        /// Whole export cycles tried.
        attempts: u32,
    },
    /// A Prism export did not finish before the deadline.
    #[error("prism export {export_id} not ready after {waited:?}")]
    ExportTimeout {
        /// Export id.
        export_id: String,
        /// How long we polled.
        waited: Duration,
    },
    /// The export's CSV could not be parsed.
    #[error("prism export CSV: {0}")]
    Csv(String),
    /// A signed export URL (or a redirect from one) names a host or scheme the client does
    /// not download from: only https to the signed-URL hosts (S3's by default; see
    /// [`crate::client::DEFAULT_DOWNLOAD_HOSTS`]), or the custom base's own host.
    #[error("refused to download a Prism export from {host:?}: {reason}")]
    DownloadRefused {
        /// The host named (or `scheme://host`).
        host: String,
        /// Why.
        reason: String,
    },
}

/// Human list of accepted address forms, used in [`KandjiError::InvalidEndpoint`].
pub const ACCEPTED_FORMS: &str = "Accepted forms: a bare subdomain (`acme`); a console host \
(`acme.kandji.io`, `acme.eu.kandji.io`, `acme.iru.com`); an API host (`acme.api.kandji.io`, \
`acme.api.eu.kandji.io`, `acme.api.iru.com`); the legacy `acme.clients.us-1.kandji.io`; \
optionally with `https://` and a trailing `/api/v1/`";

impl KandjiError {
    /// Whether this answer to a request that carried a cursor means "that cursor is no
    /// good": 400 (the custom cursors of audit, Prism and vulnerabilities, as recorded) or
    /// 404 (DRF's `CursorPagination`, which `/users` uses, answers
    /// `404 {"detail":"Invalid cursor"}`; the custom ones may too). Only meaningful for a
    /// request with a cursor: the caller restarts its walk without it.
    pub fn is_refused_cursor(&self) -> bool {
        matches!(
            self,
            Self::BadRequest { status: 400, .. } | Self::NotFound { .. }
        )
    }

    /// Whether this is DRF's answer to a page number out of range (`page=99` after the set
    /// shrank, `page=0`, `page=abc`): `404 {"detail":"Invalid page."}`.
    pub fn is_invalid_page(&self) -> bool {
        matches!(self, Self::NotFound { message, .. }
            if message.to_ascii_lowercase().contains("invalid page"))
    }

    /// Whether retrying the same request may succeed (429, 5xx, timeouts, transport, decode).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::Server { .. }
                | Self::Timeout { .. }
                | Self::Transport { .. }
                | Self::Decode { .. }
        )
    }

    /// A stable, low-cardinality name for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidEndpoint { .. } => "invalid_endpoint",
            Self::Config(_) => "config",
            Self::Unauthorized { .. } => "unauthorized",
            Self::PermissionDenied { .. } => "permission_denied",
            Self::NotLicensed { .. } => "not_licensed",
            Self::NotLicensedOrDenied { .. } => "not_licensed_or_denied",
            Self::NotFound { .. } => "not_found",
            Self::NoRoute { .. } => "no_route",
            Self::BadRequest { .. } => "bad_request",
            Self::RateLimited { .. } => "rate_limited",
            Self::Server { .. } => "server",
            Self::Timeout { .. } => "timeout",
            Self::Transport { .. } => "transport",
            Self::Unreachable { .. } => "unreachable",
            Self::Decode { .. } => "decode",
            Self::Pagination { .. } => "pagination",
            Self::ExportFailed { .. } => "export_failed",
            Self::ExportTimeout { .. } => "export_timeout",
            Self::Csv(_) => "csv",
            Self::DownloadRefused { .. } => "download_refused",
        }
    }

    /// The endpoint template the error belongs to, when there is one.
    pub fn endpoint(&self) -> Option<&str> {
        match self {
            Self::Unauthorized { endpoint }
            | Self::PermissionDenied { endpoint }
            | Self::NotLicensed { endpoint }
            | Self::NotLicensedOrDenied { endpoint, .. }
            | Self::NotFound { endpoint, .. }
            | Self::NoRoute { endpoint }
            | Self::BadRequest { endpoint, .. }
            | Self::RateLimited { endpoint, .. }
            | Self::Server { endpoint, .. }
            | Self::Timeout { endpoint }
            | Self::Transport { endpoint, .. }
            | Self::Unreachable { endpoint, .. }
            | Self::Decode { endpoint, .. }
            | Self::Pagination { endpoint, .. } => Some(endpoint),
            _ => None,
        }
    }
}

/// Extract a human message from an error body of any shape, leniently and without panicking.
///
/// Handles `{"detail":…}`, `{"error":…}`, `{"message":…}`, DRF field dicts
/// (`{"field":["msg"]}`), bare arrays, bare JSON strings, HTML pages and plain text.
/// The result is truncated to 300 characters.
pub fn error_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return String::new();
    }
    let msg = match serde_json::from_str::<Value>(trimmed) {
        Ok(v) => message_from_value(&v),
        Err(_) => {
            if trimmed.starts_with('<') {
                html_text(trimmed)
            } else {
                trimmed.to_string()
            }
        }
    };
    truncate(&msg, 300)
}

fn message_from_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(message_from_value)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("; "),
        Value::Object(map) => {
            for key in ["detail", "error", "message", "error_msg", "msg"] {
                if let Some(inner) = map.get(key) {
                    let m = message_from_value(inner);
                    if !m.is_empty() {
                        return m;
                    }
                }
            }
            map.iter()
                .filter(|(k, _)| k.as_str() != "request_id")
                .map(|(k, v)| format!("{k}: {}", message_from_value(v)))
                .collect::<Vec<_>>()
                .join("; ")
        }
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn html_text(html: &str) -> String {
    // Prefer <h1>…</h1>, then <title>…</title>, else strip tags.
    for tag in ["h1", "title"] {
        let lower = html.to_ascii_lowercase();
        let open = format!("<{tag}");
        if let Some(start) = lower.find(&open)
            && let Some(gt) = lower[start..].find('>')
        {
            let from = start + gt + 1;
            let close = format!("</{tag}>");
            if let Some(end) = lower[from..].find(&close) {
                let inner = html.get(from..from + end).unwrap_or_default().trim();
                if !inner.is_empty() {
                    return inner.to_string();
                }
            }
        }
    }
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

/// Whether a 403 body says the feature is not enabled/licensed (as opposed to a missing permission).
pub fn is_not_licensed_message(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "not enabled",
        "not licensed",
        "feature",
        "licence",
        "license",
        "subscription",
        "upgrade",
    ]
    .iter()
    .any(|k| m.contains(k))
}

/// Whether an endpoint belongs to a feature a tenant may not have (EDR: threats and
/// behavioral detections; Vulnerability Management), so that a 403 there may mean "not
/// licensed" whatever its text.
pub fn is_licence_gated(endpoint: &str) -> bool {
    [
        "/threat-details",
        "/behavioral-detections",
        "/vulnerability-management/",
    ]
    .iter()
    .any(|p| endpoint.contains(p))
}

/// Whether a 404 body is Kong's "no Route matched".
pub fn is_no_route_message(message: &str) -> bool {
    message.to_ascii_lowercase().contains("no route matched")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_every_shape() {
        let cases: &[(&[u8], &str)] = &[
            (br#"{"detail": "Invalid category: x"}"#, "Invalid category: x"),
            (br#"{"error": "bad"}"#, "bad"),
            (br#"{"message":"no Route matched with those values","request_id":"1"}"#, "no Route matched with those values"),
            (br#"{"dep_account": ["Enter a valid UUID."]}"#, "dep_account: Enter a valid UUID."),
            (br#"["Device is not in lost mode."]"#, "Device is not in lost mode."),
            (br#""This device is already locked.""#, "This device is already locked."),
            (b"<!doctype html><html><head><title>Not Found</title></head><body><h1>Not Found</h1><p>x</p></body></html>", "Not Found"),
            (b"plain text", "plain text"),
            (b"", ""),
            (b"\xff\xfe garbage", "\u{fffd}\u{fffd} garbage"),
        ];
        for (body, want) in cases {
            assert_eq!(
                error_message(body),
                *want,
                "body {:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn kinds_are_stable() {
        let e = KandjiError::NoRoute {
            endpoint: "GET /api/v1/x".into(),
        };
        assert_eq!(e.kind(), "no_route");
        assert!(!e.is_retryable());
        assert!(
            KandjiError::Server {
                endpoint: String::new(),
                status: 503,
                message: String::new()
            }
            .is_retryable()
        );
    }
}
