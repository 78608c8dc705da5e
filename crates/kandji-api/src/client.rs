//! The HTTP core: authenticated requests with budget, retries and typed errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::time::Instant;

use crate::budget::{Budget, Priority};
use crate::events;

tokio::task_local! {
    static TALLY: Arc<AtomicU64>;
}

/// Runs `f` and counts the requests it spends from any budget (retries included), however
/// many other futures spend from the same budget at once (a source's streams run side by
/// side).
pub async fn tally<F: std::future::Future>(f: F) -> (F::Output, u64) {
    let count = Arc::new(AtomicU64::new(0));
    let out = TALLY.scope(count.clone(), f).await;
    (out, count.load(Ordering::Relaxed))
}
use crate::endpoint::ApiBase;
use crate::error::{
    KandjiError, error_message, is_licence_gated, is_no_route_message, is_not_licensed_message,
};
use crate::retry::{RetryPolicy, full_jitter, server_hint};

/// The default User-Agent: `kandji-collector/<version> (+read-only fleet collector; kandji-api)`.
///
/// The project has no public repository URL yet; set [`ClientConfig::user_agent`] to
/// `kandji-collector/<version> (+<repo url>)` once it has one.
pub const USER_AGENT: &str = concat!(
    "kandji-collector/",
    env!("CARGO_PKG_VERSION"),
    " (+read-only fleet collector; kandji-api)"
);

/// A list of query parameters.
pub type Query = Vec<(String, String)>;

/// Client settings.
#[derive(Clone)]
pub struct ClientConfig {
    /// Where to send requests (validated; see [`ApiBase::parse`]).
    pub base: ApiBase,
    /// The API token. Never logged, never in errors or Debug output.
    pub token: SecretString,
    /// The tenant's shared budget (one `Arc<Budget>` per tenant).
    pub budget: Arc<Budget>,
    /// TCP/TLS connect timeout (default 10 s). `None` = no timeout (tests under paused time).
    pub connect_timeout: Option<Duration>,
    /// Whole-request timeout, including the body (default 60 s). `None` = no timeout.
    pub request_timeout: Option<Duration>,
    /// How long idle pooled connections are kept (default 90 s). `None` = forever; tests under
    /// `tokio::time::pause()` set `None` (and no timeouts) so no background timer can be
    /// auto-advanced while a request awaits I/O.
    pub pool_idle_timeout: Option<Duration>,
    /// Retry behaviour.
    pub retry: RetryPolicy,
    /// Upper bound on pages per walk (default 100,000).
    pub max_pages: u64,
    /// User-Agent header (default [`USER_AGENT`]).
    pub user_agent: String,
    /// The hosts signed export URLs may name (a host or any subdomain of it; default
    /// [`DEFAULT_DOWNLOAD_HOSTS`]). Downloads go over https only, and follow redirects within
    /// one host only. A custom base (the simulator) may also be downloaded from, over its own
    /// scheme.
    pub download_hosts: Vec<String>,
}

/// Where Kandji's signed export URLs point: S3 presigned links
/// (`https://<bucket>.s3.<region>.amazonaws.com/…?X-Amz-…`; the spec's example names
/// `amazonaws.com` itself). NOTES.md §8.10.
pub const DEFAULT_DOWNLOAD_HOSTS: &[&str] = &["amazonaws.com"];

impl ClientConfig {
    /// Settings with defaults for everything but the base, token and budget.
    pub fn new(base: ApiBase, token: SecretString, budget: Arc<Budget>) -> Self {
        Self {
            base,
            token,
            budget,
            connect_timeout: Some(Duration::from_secs(10)),
            request_timeout: Some(Duration::from_secs(60)),
            pool_idle_timeout: Some(Duration::from_secs(90)),
            retry: RetryPolicy::default(),
            max_pages: 100_000,
            user_agent: USER_AGENT.to_string(),
            download_hosts: DEFAULT_DOWNLOAD_HOSTS
                .iter()
                .map(|h| (*h).to_string())
                .collect(),
        }
    }
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("base", &self.base.as_str())
            .field("token", &"[REDACTED]")
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("retry", &self.retry)
            .field("max_pages", &self.max_pages)
            .finish_non_exhaustive()
    }
}

/// One request to the API.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    /// GET or POST.
    pub method: Method,
    /// The path template, e.g. `/api/v1/devices/{device_id}/status` (used in errors and logs).
    pub template: &'static str,
    /// The concrete path, e.g. `/api/v1/devices/abc/status`.
    pub path: String,
    /// Query parameters.
    pub query: Query,
    /// JSON body (POST).
    pub body: Option<Value>,
    /// Budget priority.
    pub priority: Priority,
}

impl ApiRequest {
    /// A GET whose concrete path equals its template.
    pub fn get(template: &'static str, priority: Priority) -> Self {
        Self {
            method: Method::GET,
            template,
            path: template.to_string(),
            query: Vec::new(),
            body: None,
            priority,
        }
    }

    /// A GET with a concrete path (ids filled in).
    pub fn get_path(template: &'static str, path: String, priority: Priority) -> Self {
        Self {
            path,
            ..Self::get(template, priority)
        }
    }

    /// Add query parameters.
    pub fn with_query(mut self, query: impl IntoIterator<Item = (String, String)>) -> Self {
        self.query.extend(query);
        self
    }

    /// `"GET /api/v1/devices/{device_id}/status"`.
    pub fn endpoint(&self) -> String {
        format!("{} {}", self.method, self.template)
    }
}

/// A successful answer.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    /// HTTP status (2xx).
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// The JSON body (`Value::Null` when empty).
    pub body: Value,
}

/// Request counters of a client (and its clones), for metrics and the status page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ClientStats {
    /// HTTP attempts sent (including retries).
    pub attempts: u64,
    /// Requests that succeeded.
    pub ok: u64,
    /// Retries scheduled.
    pub retries: u64,
    /// 429 answers received.
    pub rate_limited: u64,
    /// 5xx answers received.
    pub server_errors: u64,
    /// Timeouts and connection-level failures.
    pub transport_errors: u64,
    /// 200 answers whose body was not JSON.
    pub decode_errors: u64,
    /// Non-retryable answers (401, 403, 404, other 4xx).
    pub client_errors: u64,
    /// Requests abandoned after retries.
    pub gave_up: u64,
}

#[derive(Debug, Default)]
struct Counters {
    attempts: AtomicU64,
    ok: AtomicU64,
    retries: AtomicU64,
    rate_limited: AtomicU64,
    server_errors: AtomicU64,
    transport_errors: AtomicU64,
    decode_errors: AtomicU64,
    client_errors: AtomicU64,
    gave_up: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

pub(crate) struct Inner {
    counters: Counters,
    pub(crate) cfg: ClientConfig,
    pub(crate) http: reqwest::Client,
    /// For signed download URLs: no Authorization header, ever.
    pub(crate) download: reqwest::Client,
    /// The server's clock minus ours (ms), from the last `Date` header; `i64::MIN` = unknown.
    clock_offset_ms: AtomicI64,
}

/// The Kandji/Iru API client. Cheap to clone; clones share the connection pool and budget.
#[derive(Clone)]
pub struct KandjiClient {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for KandjiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KandjiClient")
            .field("base", &self.inner.cfg.base.as_str())
            .finish_non_exhaustive()
    }
}

/// Install rustls' ring provider as the process default (ignored if one is installed already).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

enum Failure {
    Fatal(KandjiError),
    /// The connection itself failed: refused, no DNS answer, TLS handshake, connect timeout.
    Unreachable(KandjiError),
    Retry {
        error: KandjiError,
        hint: Option<Duration>,
        not_json: bool,
    },
}

impl KandjiClient {
    /// Build a client.
    pub fn new(cfg: ClientConfig) -> Result<Self, KandjiError> {
        install_crypto_provider();
        let mut auth =
            HeaderValue::from_str(&format!("Bearer {}", cfg.token.expose_secret().trim()))
                .map_err(|_| {
                    KandjiError::Config(
                        "the API token contains characters not allowed in a header".into(),
                    )
                })?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, auth);
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        let ua = HeaderValue::from_str(&cfg.user_agent)
            .map_err(|_| KandjiError::Config("invalid User-Agent".into()))?;
        let mut http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(ua.clone())
            // Never follow redirects with the token to another host.
            .redirect(reqwest::redirect::Policy::none())
            // `Accept-Encoding: gzip`, as the recorded clients sent: the API compresses JSON
            // (HAR: 1,728 bytes on the wire for 2,975), reqwest inflates it.
            .gzip(true)
            .pool_idle_timeout(cfg.pool_idle_timeout);
        let mut download = reqwest::Client::builder()
            .user_agent(ua)
            .gzip(true)
            // Redirects within the signed URL's own host only, and never from https to http:
            // a redirect elsewhere is answered as the 3xx it is, and refused.
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                let first = attempt.previous().first();
                let same_host = first.is_some_and(|f| {
                    f.host_str() == attempt.url().host_str()
                        && f.port_or_known_default() == attempt.url().port_or_known_default()
                        && (f.scheme() == attempt.url().scheme()
                            || attempt.url().scheme() == "https")
                });
                if same_host && attempt.previous().len() < 5 {
                    attempt.follow()
                } else {
                    attempt.stop()
                }
            }))
            .pool_idle_timeout(cfg.pool_idle_timeout);
        if let Some(t) = cfg.connect_timeout {
            http = http.connect_timeout(t);
            download = download.connect_timeout(t);
        }
        if let Some(t) = cfg.request_timeout {
            http = http.timeout(t);
            // A large CSV may take long; bound the whole download generously.
            download = download.timeout(t.max(Duration::from_secs(3600)));
        }
        let http = http
            .build()
            .map_err(|e| KandjiError::Config(format!("HTTP client: {}", e.without_url())))?;
        let download = download
            .build()
            .map_err(|e| KandjiError::Config(format!("HTTP client: {}", e.without_url())))?;
        Ok(Self {
            inner: Arc::new(Inner {
                counters: Counters::default(),
                cfg,
                http,
                download,
                clock_offset_ms: AtomicI64::new(i64::MIN),
            }),
        })
    }

    /// The validated API base.
    pub fn base(&self) -> &ApiBase {
        &self.inner.cfg.base
    }

    /// The shared budget.
    pub fn budget(&self) -> &Arc<Budget> {
        &self.inner.cfg.budget
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.cfg
    }

    /// A snapshot of this client's request counters (shared by its clones).
    pub fn stats(&self) -> ClientStats {
        let c = &self.inner.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ClientStats {
            attempts: g(&c.attempts),
            ok: g(&c.ok),
            retries: g(&c.retries),
            rate_limited: g(&c.rate_limited),
            server_errors: g(&c.server_errors),
            transport_errors: g(&c.transport_errors),
            decode_errors: g(&c.decode_errors),
            client_errors: g(&c.client_errors),
            gave_up: g(&c.gave_up),
        }
    }

    /// Send a request with budget, retries and typed errors; return the parsed JSON. Each
    /// attempt is one request of the budget, and counts in the caller's [`tally`].
    pub async fn send(&self, req: &ApiRequest) -> Result<ApiResponse, KandjiError> {
        let policy = &self.inner.cfg.retry;
        let budget = &self.inner.cfg.budget;
        let endpoint = req.endpoint();
        let start = Instant::now();
        let mut envelopes = policy.envelopes();
        let mut attempt: u32 = 0;
        let mut not_json: u32 = 0;
        let mut unreachable: u32 = 0;
        let counters = &self.inner.counters;
        loop {
            budget.acquire(req.priority).await;
            let _ = TALLY.try_with(|t| t.fetch_add(1, Ordering::Relaxed));
            attempt += 1;
            bump(&counters.attempts);
            match self.send_once(req, &endpoint).await {
                Ok(resp) => {
                    bump(&counters.ok);
                    return Ok(resp);
                }
                Err(failure) => {
                    // The retryable classes end the same way: give up when their own budget
                    // is spent, else log and sleep.
                    let (error, delay, exhausted, server_hinted) = match failure {
                        Failure::Unreachable(error) => {
                            bump(&counters.transport_errors);
                            unreachable += 1;
                            let delay = full_jitter(
                                policy
                                    .envelopes()
                                    .nth(unreachable as usize - 1)
                                    .unwrap_or(policy.max_delay),
                            );
                            let exhausted = unreachable >= policy.unreachable_attempts
                                || start.elapsed() + delay > policy.unreachable_max_elapsed;
                            (error, delay, exhausted, false)
                        }
                        Failure::Retry {
                            error,
                            hint,
                            not_json: nj,
                        } => {
                            bump(match &error {
                                KandjiError::RateLimited { .. } => &counters.rate_limited,
                                KandjiError::Server { .. } => &counters.server_errors,
                                KandjiError::Decode { .. } => &counters.decode_errors,
                                _ => &counters.transport_errors,
                            });
                            if nj {
                                not_json += 1;
                                if not_json > policy.decode_retries {
                                    bump(&counters.gave_up);
                                    events::emit(events::RequestFailed {
                                        endpoint: &endpoint,
                                        attempt,
                                        error: &error,
                                        gave_up: true,
                                    });
                                    return Err(error);
                                }
                            }
                            let envelope = envelopes.next().unwrap_or(policy.max_delay);
                            let delay = match hint {
                                Some(h) => h.min(policy.max_hint),
                                None => full_jitter(envelope),
                            };
                            let exhausted = attempt >= policy.max_attempts
                                || start.elapsed() + delay > policy.max_elapsed;
                            (error, delay, exhausted, hint.is_some())
                        }
                        Failure::Fatal(e) => {
                            bump(&counters.client_errors);
                            events::emit(events::RequestFailed {
                                endpoint: &endpoint,
                                attempt,
                                error: &e,
                                gave_up: false,
                            });
                            return Err(e);
                        }
                    };
                    if exhausted {
                        bump(&counters.gave_up);
                        events::emit(events::RequestFailed {
                            endpoint: &endpoint,
                            attempt,
                            error: &error,
                            gave_up: true,
                        });
                        return Err(error);
                    }
                    bump(&counters.retries);
                    events::emit(events::RequestRetried {
                        endpoint: &endpoint,
                        attempt,
                        kind: error.kind(),
                        wait: delay,
                        server_hint: server_hinted,
                    });
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn send_once(&self, req: &ApiRequest, endpoint: &str) -> Result<ApiResponse, Failure> {
        let url = self.inner.cfg.base.join(&req.path);
        let mut rb = self.inner.http.request(req.method.clone(), url);
        if !req.query.is_empty() {
            rb = rb.query(&req.query);
        }
        if let Some(body) = &req.body {
            rb = rb.json(body);
        }
        let resp = rb.send().await.map_err(|e| {
            if e.is_connect() {
                Failure::Unreachable(unreachable_error(endpoint, &self.inner.cfg.base, &e))
            } else {
                Failure::Retry {
                    error: transport_error(endpoint, &e),
                    hint: None,
                    not_json: false,
                }
            }
        })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        self.inner
            .cfg
            .budget
            .observe_response(status.as_u16(), &headers);
        self.observe_date(&headers);
        let body = resp.bytes().await.map_err(|e| Failure::Retry {
            error: transport_error(endpoint, &e),
            hint: None,
            not_json: false,
        })?;
        tracing::debug!(endpoint = %endpoint, status = status.as_u16(), bytes = body.len(), "response");
        if status.is_success() {
            return parse_json(endpoint, status, headers, &body);
        }
        Err(self.classify(endpoint, status, &headers, &body))
    }

    fn classify(
        &self,
        endpoint: &str,
        status: StatusCode,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Failure {
        let message = error_message(body);
        let endpoint = endpoint.to_string();
        let code = status.as_u16();
        let budget = &self.inner.cfg.budget;
        let hint = || {
            server_hint(
                code,
                headers,
                (budget.config().wall_clock)(),
                budget.until_window_end(),
            )
        };
        match code {
            401 => Failure::Fatal(KandjiError::Unauthorized { endpoint }),
            403 if is_not_licensed_message(&message) => {
                Failure::Fatal(KandjiError::NotLicensed { endpoint })
            }
            403 if is_licence_gated(&endpoint) => {
                Failure::Fatal(KandjiError::NotLicensedOrDenied { endpoint, message })
            }
            403 => Failure::Fatal(KandjiError::PermissionDenied { endpoint }),
            404 if is_no_route_message(&message) => {
                Failure::Fatal(KandjiError::NoRoute { endpoint })
            }
            404 => Failure::Fatal(KandjiError::NotFound { endpoint, message }),
            408 => Failure::Retry {
                error: KandjiError::Timeout { endpoint },
                hint: hint(),
                not_json: false,
            },
            429 => {
                let h = hint();
                Failure::Retry {
                    error: KandjiError::RateLimited {
                        endpoint,
                        retry_after: h,
                    },
                    hint: h,
                    not_json: false,
                }
            }
            500..=599 => Failure::Retry {
                error: KandjiError::Server {
                    endpoint,
                    status: code,
                    message,
                },
                hint: headers.contains_key("retry-after").then(hint).flatten(),
                not_json: false,
            },
            _ => Failure::Fatal(KandjiError::BadRequest {
                endpoint,
                status: code,
                message,
            }),
        }
    }

    /// Notes the server's clock from a response's `Date` header (one-second resolution).
    fn observe_date(&self, headers: &HeaderMap) {
        let Some(server) = headers
            .get(header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::retry::parse_http_date)
        else {
            return;
        };
        let offset = (server - time::OffsetDateTime::now_utc()).whole_milliseconds();
        if let Ok(o) = i64::try_from(offset) {
            let cur = self.inner.clock_offset_ms.load(Ordering::Relaxed);
            self.inner
                .clock_offset_ms
                .store(settle_offset(cur, o), Ordering::Relaxed);
        }
    }

    /// The server's clock minus this host's (ms), from the responses' `Date` headers:
    /// windows and high-water marks follow the tenant's clock, whichever way it is off.
    /// `None` before the first answer or when the server sends no `Date`.
    pub fn server_clock_offset_ms(&self) -> Option<i64> {
        match self.inner.clock_offset_ms.load(Ordering::Relaxed) {
            i64::MIN => None,
            o => Some(o),
        }
    }

    /// Whether a signed export URL may be downloaded: https to one of
    /// [`ClientConfig::download_hosts`] (or a subdomain), or, for a custom base (the
    /// simulator), the base's own host and scheme. Anything else is refused before a byte is
    /// sent: a tenant (or whoever answers for it) cannot aim the collector at another host.
    pub fn check_download_url(&self, url: &str) -> Result<(), KandjiError> {
        let parsed = url::Url::parse(url).map_err(|e| KandjiError::DownloadRefused {
            host: String::new(),
            reason: format!("the signed URL is not a URL ({e})"),
        })?;
        let host = parsed.host_str().unwrap_or_default().to_ascii_lowercase();
        let base = &self.inner.cfg.base;
        if base.is_custom() {
            let b = base.join("/");
            if b.host_str().map(str::to_ascii_lowercase).as_deref() == Some(host.as_str())
                && b.port_or_known_default() == parsed.port_or_known_default()
                && b.scheme() == parsed.scheme()
            {
                return Ok(());
            }
        }
        if parsed.scheme() != "https" {
            return Err(KandjiError::DownloadRefused {
                host: format!("{}://{host}", parsed.scheme()),
                reason: "signed export URLs are downloaded over https only".into(),
            });
        }
        let listed = self.inner.cfg.download_hosts.iter().any(|h| {
            let h = h.trim().trim_start_matches('.').to_ascii_lowercase();
            !h.is_empty() && (host == h || host.ends_with(&format!(".{h}")))
        });
        if !listed {
            return Err(KandjiError::DownloadRefused {
                host,
                reason: format!(
                    "not one of the signed-URL hosts ({}); add it to `download_hosts` if Kandji \
                     moved its exports",
                    self.inner.cfg.download_hosts.join(", ")
                ),
            });
        }
        Ok(())
    }

    /// GET a signed export URL WITHOUT the bearer header (S3 presigned links reject it),
    /// with retries on 5xx/429/transport errors. Does not use the request budget.
    pub async fn download(&self, url: &str) -> Result<reqwest::Response, KandjiError> {
        self.check_download_url(url)?;
        let endpoint = "GET <signed export URL>".to_string();
        let policy = &self.inner.cfg.retry;
        let start = Instant::now();
        let mut envelopes = policy.envelopes();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self.inner.download.get(url).send().await;
            let err = match result {
                Ok(resp) if resp.status().is_success() => return Ok(resp),
                Ok(resp) if resp.status().is_redirection() => {
                    let to = resp
                        .headers()
                        .get(header::LOCATION)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|l| resp.url().join(l).ok());
                    return Err(KandjiError::DownloadRefused {
                        host: to
                            .as_ref()
                            .and_then(|u| u.host_str().map(str::to_owned))
                            .unwrap_or_default(),
                        reason: format!(
                            "the signed URL redirected ({}) to another host or to plain http; \
                             downloads follow redirects within one host only",
                            resp.status().as_u16()
                        ),
                    });
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let body = resp.bytes().await.unwrap_or_default();
                    let message = error_message(&body);
                    if status < 500 && status != 429 {
                        return Err(KandjiError::BadRequest {
                            endpoint,
                            status,
                            message,
                        });
                    }
                    KandjiError::Server {
                        endpoint: endpoint.clone(),
                        status,
                        message,
                    }
                }
                Err(e) => transport_error(&endpoint, &e),
            };
            let delay = full_jitter(envelopes.next().unwrap_or(policy.max_delay));
            if attempt >= policy.max_attempts || start.elapsed() + delay > policy.max_elapsed {
                return Err(err);
            }
            tokio::time::sleep(delay).await;
        }
    }
}

fn parse_json(
    endpoint: &str,
    status: StatusCode,
    headers: HeaderMap,
    body: &Bytes,
) -> Result<ApiResponse, Failure> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(ApiResponse {
            status: status.as_u16(),
            headers,
            body: Value::Null,
        });
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => Ok(ApiResponse {
            status: status.as_u16(),
            headers,
            body: v,
        }),
        Err(e) => Failure::Retry {
            error: KandjiError::Decode {
                endpoint: endpoint.to_string(),
                message: format!("body is not JSON ({} bytes): {e}", body.len()),
            },
            hint: None,
            not_json: true,
        }
        .into_err(),
    }
}

impl Failure {
    fn into_err<T>(self) -> Result<T, Failure> {
        Err(self)
    }
}

/// A connection that never got as far as HTTP: names the host and the OS/TLS cause.
fn unreachable_error(endpoint: &str, base: &crate::ApiBase, e: &reqwest::Error) -> KandjiError {
    let url = base.join("/");
    let host = match url.port_or_known_default() {
        Some(p) => format!("{}:{p}", base.host()),
        None => base.host().to_string(),
    };
    let message = match transport_error(endpoint, e) {
        KandjiError::Transport { message, .. } => message,
        _ => "connect timed out".to_string(),
    };
    KandjiError::Unreachable {
        endpoint: endpoint.to_string(),
        host,
        message,
    }
}

pub(crate) fn transport_error(endpoint: &str, e: &reqwest::Error) -> KandjiError {
    if e.is_timeout() {
        return KandjiError::Timeout {
            endpoint: endpoint.to_string(),
        };
    }
    // Display without the URL, plus the source chain (connection reset, …).
    let mut message = e.to_string();
    if let Some(url) = e.url() {
        message = message.replace(url.as_str(), "<url>");
    }
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        message.push_str(": ");
        message.push_str(&s.to_string());
        src = s.source();
    }
    KandjiError::Transport {
        endpoint: endpoint.to_string(),
        message,
    }
}

/// The clock offset after one more `Date` observation. A `Date` has one-second resolution, so
/// an observation `floor_offset` (the header's second minus this host's now) says only that
/// the true offset lies in `[floor_offset, floor_offset + 999]`. The estimate stays put while
/// it lies in that interval and moves to its nearest edge when it does not: replacing it with
/// each observation would jitter the collector's clock back by up to a second on every
/// response, and a clock that runs backwards makes a snapshot's rows look older than the
/// snapshot (the first apps export once marked a whole batch removed that way).
pub(crate) fn settle_offset(current: i64, floor_offset: i64) -> i64 {
    let hi = floor_offset.saturating_add(999);
    if current == i64::MIN {
        floor_offset
    } else {
        current.clamp(floor_offset, hi)
    }
}

#[cfg(test)]
mod clock_tests {
    use super::settle_offset;

    #[test]
    fn the_offset_settles_and_never_jitters_back_within_a_second() {
        // First observation: taken as it is.
        let mut o = settle_offset(i64::MIN, -5_000);
        assert_eq!(o, -5_000);
        // Later responses within the same server second read floors up to 999 ms lower
        // (this host's clock moved on): the estimate holds while it is consistent.
        for floor in [-5_200, -5_600, -5_999] {
            o = settle_offset(o, floor);
            assert_eq!(o, -5_000, "floor {floor}");
        }
        // An observation it is no longer consistent with moves it to the nearest edge only.
        o = settle_offset(o, -6_200);
        assert_eq!(o, -5_201);
        o = settle_offset(o, -4_000);
        assert_eq!(o, -4_000);
    }
}
