//! The web console: sources, per-source status dashboards, the data explorer, a JSON API,
//! Prometheus metrics and health checks, served by axum from the same store and engine the
//! CLI uses. Pages are server-rendered askama templates (auto-escaped: every Kandji value is
//! untrusted). Status regions refresh in place with htmx (vendored in `static/vendor/`, served
//! from `/static/`, CSP `script-src 'self'`, nothing inline); every page works without it.

pub mod access;
pub mod api;
pub mod auth;
pub mod catalog;
pub mod crypto;
pub mod model;
pub mod pages;
pub mod sources;
pub mod svg;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::{HeaderValue, StatusCode, header, request::Parts};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::config::Source;
pub use crate::engine::Supervisor;
use crate::store::{Store, StoreError};
pub use auth::Auth;
pub use catalog::ConsoleCatalog;
pub use crypto::TokenCipher;

/// The Content-Security-Policy of every response: nothing inline, nothing from elsewhere. The
/// one script is the vendored htmx, which fetches fragments from this origin (`connect-src`).
pub const CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; \
    style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'";

/// Where the vendored htmx is served (`static/vendor/README.md` says where it came from).
pub const HTMX_PATH: &str = "/static/htmx-2.0.11.min.js";

/// Whether a request came from htmx (a fragment refresh), not a navigation.
pub fn is_htmx(headers: &axum::http::HeaderMap) -> bool {
    headers.get("hx-request").is_some_and(|v| v == "true")
}

/// A check's result waiting for "save": the token stays server-side, never in the page.
pub struct Pending {
    pub name: String,
    pub endpoint: String,
    pub region: kandji_api::Region,
    pub allow_custom: bool,
    pub token: SecretString,
    pub created: Instant,
    pub ok_streams: Vec<crate::streams::StreamName>,
    /// The check's answers, recorded in the status table when the source is saved.
    pub report: crate::check::Report,
}

/// The console's shared state.
pub struct Console {
    pub store: Store,
    pub auth: Auth,
    pub supervisor: Arc<Supervisor>,
    /// Where the supervisor's sources come from (and which are the config file's).
    pub catalog: Arc<ConsoleCatalog>,
    /// Custom endpoint URLs (a simulator) are allowed only when the server was started so.
    pub allow_custom_endpoints: bool,
    pub pending: Mutex<HashMap<String, Pending>>,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// The one-time code `/setup` asks for, while no admin password is set (printed to the
    /// terminal and the log at start, as Jupyter and Grafana do).
    pub setup_code: Option<String>,
    /// The host names the console answers for besides IP literals and `localhost`
    /// (`--public-url`): a DNS-rebinding page names its own.
    pub public_host: Option<String>,
    /// `Strict-Transport-Security` on every answer (`--secure-cookies`: served over TLS).
    pub hsts: bool,
}

/// Whether a `Host` header names this console: an IP literal (with or without a port),
/// `localhost`, or the host of `--public-url`. A DNS-rebinding page reaches the listener
/// under its own domain name, which this refuses.
pub fn host_allowed(host: &str, public_host: Option<&str>) -> bool {
    let host = host.trim().to_ascii_lowercase();
    let name = if let Some(rest) = host.strip_prefix('[') {
        // `[::1]:8080`
        return rest
            .split_once(']')
            .is_some_and(|(ip, _)| ip.parse::<std::net::Ipv6Addr>().is_ok());
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            .map_or(host.as_str(), |(h, _)| h)
    };
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name == "localhost"
        || public_host.is_some_and(|p| p.eq_ignore_ascii_case(name))
}

pub type App = Arc<Console>;

/// Errors of a handler.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    BadRequest(String),
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    #[error("template: {0}")]
    Template(#[from] askama::Error),
    #[error("{0}")]
    Internal(String),
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (status, msg) = match &self {
            WebError::NotFound => (StatusCode::NOT_FOUND, "Not found".to_string()),
            WebError::BadRequest(m) => (StatusCode::BAD_REQUEST, m.clone()),
            WebError::Forbidden(m) => (StatusCode::FORBIDDEN, format!("Forbidden: {m}")),
            other => {
                tracing::error!(error = %other, "console request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal error; see the collector's log".to_string(),
                )
            }
        };
        let body = format!(
            "<!doctype html><meta charset=utf-8><title>Error</title><link rel=stylesheet href=/static/app.css><main><h1>{}</h1><p>{}</p><p><a href=/>Back</a></p></main>",
            status.as_u16(),
            askama::filters::escape(&msg, askama::filters::Html)
                .map(|e| e.to_string())
                .unwrap_or_default()
        );
        (status, Html(body)).into_response()
    }
}

/// Renders a template as an HTML response.
pub fn render<T: askama::Template>(t: &T) -> Result<Response, WebError> {
    Ok(Html(t.render()?).into_response())
}

/// A logged-in admin (pages): redirects to the login page otherwise.
pub struct Admin(pub auth::Session);

impl FromRequestParts<App> for Admin {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        match app.auth.session(&parts.headers) {
            Some(s) => Ok(Admin(s)),
            // A refresh after the session ended: the whole page goes to the login form, not a
            // login form swapped into a status table.
            None if is_htmx(&parts.headers) => {
                Err(([("hx-redirect", "/login")], StatusCode::UNAUTHORIZED).into_response())
            }
            None => Err(Redirect::to("/login").into_response()),
        }
    }
}

/// A form post from a logged-in admin whose CSRF token matches the session's.
pub struct Posted {
    pub session: auth::Session,
    pub form: FormData,
}

/// A form's fields, repeated keys kept (checkboxes, multi-selects).
#[derive(Debug, Default, Clone)]
pub struct FormData(pub Vec<(String, String)>);

impl FormData {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
    }
    pub fn text(&self, k: &str) -> String {
        self.get(k).unwrap_or("").trim().to_string()
    }
    pub fn all(&self, k: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(a, _)| a == k)
            .map(|(_, v)| v.clone())
            .collect()
    }
    pub fn checked(&self, k: &str) -> bool {
        self.get(k).is_some()
    }
}

impl FromRequest<App> for Posted {
    type Rejection = Response;
    async fn from_request(req: Request, app: &App) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let Admin(session) = Admin::from_request_parts(&mut parts, app).await?;
        let req = Request::from_parts(parts, body);
        let axum::Form(pairs) = axum::Form::<Vec<(String, String)>>::from_request(req, app)
            .await
            .map_err(IntoResponse::into_response)?;
        let form = FormData(pairs);
        if !auth::ct_eq(form.get("csrf").unwrap_or(""), &session.csrf) {
            return Err(WebError::Forbidden(
                "the form's CSRF token is missing or stale; reload the page",
            )
            .into_response());
        }
        Ok(Posted { session, form })
    }
}

/// Refuses a request whose `Host` is not this console's (see [`host_allowed`]).
async fn host_guard(State(app): State<App>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("");
    if !host_allowed(host, app.public_host.as_deref()) {
        tracing::warn!(host, "refused a request for another host name");
        let msg = format!(
            "This console does not answer for the host {host:?}. Open it by IP address or \
             localhost, or start it with --public-url naming the address you use."
        );
        return (StatusCode::MISDIRECTED_REQUEST, msg).into_response();
    }
    let hsts = app.hsts;
    let mut res = next.run(req).await;
    if hsts {
        res.headers_mut().insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    res
}

/// Adds the security headers to every response.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=()"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

async fn static_css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../static/app.css"),
    )
        .into_response()
}

async fn static_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../static/app.js"),
    )
        .into_response()
}

async fn static_htmx() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            // The version is in the path: a new one is a new URL.
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        include_str!("../../static/vendor/htmx-2.0.11.min.js"),
    )
        .into_response()
}

/// The console's routes.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/sources") }))
        .route("/static/app.css", get(static_css))
        .route(HTMX_PATH, get(static_htmx))
        .route("/static/app.js", get(static_js))
        .route("/login", get(pages::login_page).post(pages::login_post))
        .route("/setup", get(pages::setup_page).post(pages::setup_post))
        .route("/logout", post(pages::logout))
        .route("/sources", get(pages::sources_page))
        .route("/sources/check", post(pages::source_check))
        .route("/sources/save", post(pages::source_save))
        .route("/sources/{name}", get(pages::source_page))
        // The regions htmx refreshes in place (a source may be named "live": its own prefix).
        .route("/live/sources", get(pages::sources_live))
        .route("/live/sources/{name}", get(pages::source_live))
        .route("/sources/{name}/edit", post(pages::source_edit))
        .route("/sources/{name}/token", post(pages::source_token))
        .route("/sources/{name}/recheck", post(pages::source_recheck))
        .route(
            "/sources/{name}/review-token",
            post(pages::source_review_token),
        )
        .route("/sources/{name}/enable", post(pages::source_enable))
        .route(
            "/sources/{name}/delete",
            get(pages::source_delete_page).post(pages::source_delete),
        )
        .route("/sources/{name}/sync", post(pages::source_sync))
        .route("/sources/{name}/budget.svg", get(pages::budget_svg))
        .route("/sources/{name}/records.svg", get(pages::records_svg))
        .route("/events", get(pages::events_page))
        .route("/events/{seq}", get(pages::event_page))
        .route("/devices", get(pages::devices_page))
        .route("/devices.csv", get(pages::devices_csv))
        .route("/devices/{source}/{id}", get(pages::device_page))
        .route("/users", get(pages::users_page))
        .route("/apps", get(pages::apps_page))
        .route("/api/sources", get(api::sources))
        .route("/api/sources/{name}", get(api::source))
        .route("/api/sources/{name}/sync", post(api::sync))
        .route("/api/status", get(api::status))
        .route("/api/events", get(api::events))
        .route("/api/events/{seq}", get(api::event))
        .route("/api/devices", get(api::devices))
        .route("/api/devices/{source}/{id}", get(api::device))
        .route("/api/users", get(api::users))
        .route("/api/apps", get(api::apps))
        .route("/metrics", get(api::metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(api::readyz))
        .layer(axum::middleware::from_fn(security_headers))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            host_guard,
        ))
        .layer(request_timeout(REQUEST_TIMEOUT))
        .with_state(app)
}

/// How long a console request may take before it is answered 408: longer than the slowest
/// honest handler (a permission check gives up on an unreachable host within 15 s), so a
/// stuck one cannot hold a connection (or shutdown) forever. Streamed bodies (CSV export)
/// are not cut: the limit is on the response's start.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The timeout layer for the console's routes.
pub fn request_timeout(limit: Duration) -> tower_http::timeout::TimeoutLayer {
    tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, limit)
}

/// The process-wide Prometheus recorder (installed once).
pub fn metrics_handle() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok().map(|_| handle)
        })
        .clone()
}

/// How `run` and `demo` start the console.
pub struct ConsoleOptions {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub config_sources: Vec<Source>,
    pub allow_custom_endpoints: bool,
    /// Generate and print an admin password when none is set (the demo).
    pub generate_password: bool,
    /// Cookies marked Secure (served over TLS, e.g. behind a TLS-terminating proxy).
    pub secure_cookies: bool,
    /// The bearer key for `/api/` and `/metrics` (`KANDJI_COLLECTOR_API_KEY`).
    pub api_key: Option<String>,
    /// The URL users open the console at, when it is not the listener's (a proxy, a DNS
    /// name): its host joins the `Host` allow-list and it is the URL printed.
    pub public_url: Option<url::Url>,
    /// The token key file (`console_key_file`; default `data_dir/console.key`). Replicas of
    /// one PostgreSQL store must share it.
    pub key_file: Option<PathBuf>,
}

/// A console bound to its listener, not yet serving.
pub struct Started {
    pub app: App,
    pub listener: tokio::net::TcpListener,
    /// Where the listener answers (always plain HTTP: TLS, when used, is a proxy's).
    pub url: String,
    /// The URL to show users: `--public-url`, else [`Started::url`].
    pub public_url: String,
    /// The generated admin password, when one was generated.
    pub password: Option<String>,
    /// The one-time setup code, while no admin password is set.
    pub setup_code: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] crypto::CryptoError),
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    #[error("cannot listen on {addr}: {message}")]
    Bind { addr: SocketAddr, message: String },
}

/// Opens the store and key file, sets the admin password, and binds the listener.
pub async fn start(opts: ConsoleOptions) -> Result<Started, StartError> {
    let store = Store::open(&opts.data_dir)?;
    start_with(store, opts).await
}

/// [`start`] on a store this process already opened (one store per process).
pub async fn start_with(store: Store, opts: ConsoleOptions) -> Result<Started, StartError> {
    let key_file = opts
        .key_file
        .clone()
        .unwrap_or_else(|| opts.data_dir.join("console.key"));
    if store.pg().is_some() && opts.key_file.is_none() {
        tracing::warn!(key_file = %key_file.display(), "a shared store with a replica-local console key: set console_key_file to one file every replica reads, or tokens added on one replica cannot be read on another");
    }
    let cipher = Arc::new(TokenCipher::load_or_create(&key_file)?);
    let mut password = None;
    match std::env::var("KANDJI_COLLECTOR_ADMIN_PASSWORD") {
        Ok(pw) if !pw.is_empty() => auth::set_password(&store, &pw).await?,
        _ => {
            // The demo prints a fresh password every run (its store is throwaway).
            if opts.generate_password {
                let pw = crypto::random_hex(9);
                auth::set_password(&store, &pw).await?;
                password = Some(pw);
            }
        }
    }
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| StartError::Bind {
            addr: opts.listen,
            message: e.to_string(),
        })?;
    let addr = listener.local_addr().map_err(|e| StartError::Bind {
        addr: opts.listen,
        message: e.to_string(),
    })?;
    // The listener speaks plain HTTP: print that, whatever `--secure-cookies` says.
    let url = format!("http://{addr}/");
    let public_url = opts.public_url.as_ref().map_or_else(
        || url.clone(),
        |u| {
            let s = u.to_string();
            if s.ends_with('/') { s } else { format!("{s}/") }
        },
    );
    let setup_code = match auth::stored_hash(&store).await? {
        Some(_) => None,
        None => Some(crypto::random_hex(8)),
    };
    // A second process (`sync --once`) finds the console here, over plain loopback HTTP.
    let local = match addr.ip() {
        ip if ip.is_unspecified() => SocketAddr::new(
            if addr.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            },
            addr.port(),
        ),
        _ => addr,
    };
    store.advertise_console(&format!("http://{local}/"));
    let catalog = Arc::new(ConsoleCatalog {
        store: store.clone(),
        cipher,
        config_sources: opts.config_sources,
    });
    let supervisor = Arc::new(Supervisor::new(store.clone(), catalog.clone()));
    let app = Arc::new(Console {
        store,
        auth: Auth::new(opts.secure_cookies, opts.api_key),
        supervisor,
        catalog,
        allow_custom_endpoints: opts.allow_custom_endpoints,
        pending: Mutex::new(HashMap::new()),
        metrics: metrics_handle(),
        setup_code: setup_code.clone(),
        public_host: opts
            .public_url
            .as_ref()
            .and_then(|u| u.host_str())
            .map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase()),
        hsts: opts.secure_cookies,
    });
    Ok(Started {
        app,
        listener,
        url,
        public_url,
        password,
        setup_code,
    })
}

/// Serves the console and runs the supervisor until shutdown.
pub async fn serve(started: Started, shutdown: CancellationToken) -> std::io::Result<()> {
    let Started { app, listener, .. } = started;
    let sup = tokio::spawn(crate::engine::replicas::run(
        app.supervisor.clone(),
        shutdown.child_token(),
    ));
    let server = axum::serve(
        listener,
        router(app).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await });
    let r = server.await;
    let _ = sup.await;
    r
}

/// `run` and `demo`: serve the console first, then collect (the supervisor starts every
/// source), until SIGINT/SIGTERM.
/// How `run_cmd` runs: the demo (a generated password), and where alerts go.
#[derive(Debug, Default)]
pub struct RunMode {
    pub demo: bool,
    pub alerts: Option<crate::health::AlertWebhook>,
}

pub async fn run_cmd(
    store: Store,
    data_dir: PathBuf,
    key_file: Option<PathBuf>,
    sources: Vec<Source>,
    web: &crate::cli::WebArgs,
    run: RunMode,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let RunMode { demo, alerts } = run;
    if !web.listen.ip().is_loopback() {
        tracing::warn!(listen = %web.listen, "the console listens beyond loopback; put it behind TLS and a firewall");
    }
    let started = start_with(
        store,
        ConsoleOptions {
            data_dir,
            listen: web.listen,
            config_sources: sources,
            allow_custom_endpoints: web.allow_custom_endpoints,
            generate_password: demo,
            secure_cookies: web.secure_cookies,
            api_key: std::env::var("KANDJI_COLLECTOR_API_KEY").ok(),
            public_url: web.public_url.clone(),
            key_file,
        },
    )
    .await?;
    started.app.supervisor.set_alerts(alerts);
    if started.public_url != started.url {
        println!(
            "console: {} (listening on {})",
            started.public_url, started.url
        );
    } else {
        println!("console: {}", started.url);
    }
    match &started.password {
        Some(pw) => println!(
            "admin password: {pw}   (shown once; set KANDJI_COLLECTOR_ADMIN_PASSWORD to choose one)"
        ),
        None => {
            if let Some(code) = &started.setup_code {
                let setup = format!("{}setup?code={code}", started.public_url);
                println!("first run: open {setup} to choose the admin password");
                // The log too (a service's terminal is its journal), as Jupyter does.
                tracing::info!(setup_url = %setup, "first run: the admin password is not set");
            }
        }
    }
    println!("collecting on schedule; Ctrl-C to stop");
    serve(started, shutdown).await?;
    Ok(())
}

#[cfg(test)]
mod host_tests {
    use super::host_allowed;

    #[test]
    fn the_console_answers_for_ip_literals_localhost_and_the_public_host_only() {
        for ok in [
            "127.0.0.1:8080",
            "127.0.0.1",
            "[::1]:8080",
            "localhost:8080",
            "LOCALHOST",
            "10.1.2.3:80",
        ] {
            assert!(host_allowed(ok, None), "{ok}");
        }
        for bad in [
            "attacker.example",
            "attacker.example:8080",
            "",
            "localhost.attacker.example",
            "[evil]:80",
        ] {
            assert!(!host_allowed(bad, None), "{bad}");
        }
        assert!(host_allowed(
            "collector.example.com",
            Some("collector.example.com")
        ));
        assert!(host_allowed(
            "Collector.Example.com:443",
            Some("collector.example.com")
        ));
        assert!(!host_allowed(
            "other.example.com",
            Some("collector.example.com")
        ));
    }
}
