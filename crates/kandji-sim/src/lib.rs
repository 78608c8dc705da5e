//! A simulated Kandji / Iru tenant: the real API's shapes, quirks, pagination styles,
//! rate limits and faults, on a steppable simulated clock, with its ground truth exposed.
//!
//! The public interface is fixed by `docs/SIM-CONTRACT.md`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, Response, StatusCode, Uri};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::{Value, json};

pub mod catalog;
pub mod churn;
pub mod clock;
pub mod config;
pub mod derive;
pub mod export;
pub mod generator;
pub mod key_order;
pub mod model;
pub mod prism;
pub mod ratelimit;
pub mod render;
pub mod routes;
pub mod server;
pub mod truth;
pub mod util;

pub use config::{Churn, ClockConfig, DEFAULT_TOKEN, Faults, LICENCE_TEXTS, SimConfig, TokenSpec};
pub use model::ScriptedAudit;
pub use server::{Stats, token_label};

use server::{Shared, lock};

/// Errors of starting the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("tenant generation failed: {0}")]
    Generate(String),
}

/// A running simulator.
pub struct SimHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Start a simulator on `127.0.0.1:0`.
pub async fn spawn(config: SimConfig) -> Result<SimHandle, SimError> {
    spawn_on(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
}

/// The config of tenant `i` of a many-tenant simulator: `base` with its own name
/// (`{tenant}{i}`), seed (`seed + i`: its own devices, users and events) and token.
pub fn tenant_config(base: &SimConfig, i: usize) -> SimConfig {
    let mut c = base.clone();
    c.tenant = format!("{}{i}", base.tenant);
    c.seed = base.seed.wrapping_add(i as u64);
    // A token per tenant: a UUID-shaped string derived from the base token and the index.
    let h = util::hs("tenant-token", &[base.seed, i as u64]);
    c.token = format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (h >> 32) as u32,
        (h >> 16) as u16,
        (h >> 4) & 0xfff,
        h & 0xfff,
        h.rotate_left(17) & 0xffff_ffff_ffff
    );
    c
}

/// Starts `n` independent tenants in this process, one port each (on `ip`, port 0 picks
/// free ones): each has its own token, hourly and per-second budget, clock and ground truth
/// ([`tenant_config`]). A hundred-tenant test needs one process.
pub async fn spawn_tenants(
    base: SimConfig,
    n: usize,
    ip: std::net::IpAddr,
) -> Result<Vec<SimHandle>, SimError> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(spawn_on(tenant_config(&base, i), SocketAddr::new(ip, 0)).await?);
    }
    Ok(out)
}

/// Start a simulator on a given address (port 0 picks a free port).
pub async fn spawn_on(config: SimConfig, addr: SocketAddr) -> Result<SimHandle, SimError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| SimError::Bind { addr, source })?;
    let local = listener.local_addr()?;
    let shared = tokio::task::spawn_blocking(move || server::new_shared(config))
        .await
        .map_err(|e| SimError::Generate(e.to_string()))?;
    let shared = Arc::new(shared);
    let _ = shared.base_url.set(format!("http://{local}"));
    let app = router(shared.clone());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "simulator server stopped");
        }
    });
    {
        let t = lock(&shared.tenant);
        tracing::info!(addr = %local, devices = t.devices.len(), users = t.users.len(), audit_events = t.audit.len(), "kandji-sim listening");
    }
    Ok(SimHandle {
        shared,
        addr: local,
        shutdown: Some(tx),
        task: Some(task),
    })
}

impl SimHandle {
    /// `http://127.0.0.1:PORT` (no `/api/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
    /// The tenant's name (its subdomain).
    pub fn tenant(&self) -> &str {
        &self.shared.cfg.tenant
    }
    /// The all-permission token.
    pub fn token(&self) -> &str {
        &self.shared.cfg.token
    }
    /// Step the simulated clock; the live tenant changes accordingly (lazily).
    pub fn advance(&self, d: Duration) {
        self.shared.clock.advance(d);
    }
    pub fn now(&self) -> time::OffsetDateTime {
        self.shared.clock.now()
    }
    pub fn set_faults(&self, f: Faults) {
        set_faults(&self.shared, f);
    }
    /// Appends an audit event (an API token update) dated `at`, wherever that is: far in the
    /// future, as a device or admin clock can make it, or in the past. Returns its id. The
    /// log stays ordered by time, as the live API serves it.
    pub fn inject_audit_event(&self, at: time::OffsetDateTime) -> String {
        let mut t = self.shared.tenant();
        let ts = (at.unix_timestamp_nanos() / 1_000) as i64;
        generator::audit(&mut t, ts, model::AuditKind::ApiTokenUpdated, 0);
        t.audit.sort_by_key(|e| (e.ts, e.ulid));
        let e = t.audit.iter().rev().find(|e| e.ts == ts).cloned();
        e.map(|e| render::audit_item(&t, &e))
            .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_string))
            .unwrap_or_default()
    }
    /// Appends an audit event a test writes (an API token created or updated, an admin
    /// removed), dated `at`, in the feed's time order. Returns its id.
    pub fn script_audit(&self, at: time::OffsetDateTime, event: model::ScriptedAudit) -> String {
        let mut t = self.shared.tenant();
        let ts = (at.unix_timestamp_nanos() / 1_000) as i64;
        let idx = t.scripted_audit.len() as u32;
        t.scripted_audit.push(event);
        generator::audit_late(&mut t, ts, model::AuditKind::Scripted, idx);
        let e = t
            .audit
            .iter()
            .find(|e| e.kind == model::AuditKind::Scripted && e.target == idx)
            .cloned();
        e.map(|e| render::audit_item(&t, &e))
            .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_string))
            .unwrap_or_default()
    }
    /// Unenrols the devices at list positions `from..from + n` (of `/devices`, in its order)
    /// at once, now: a burst ahead of a walk's position shifts every later device `n` places
    /// left between two page fetches. Returns their ids.
    pub fn unenroll_burst(&self, from: usize, n: usize) -> Vec<String> {
        let now = self.shared.clock.now_us();
        let mut t = self.shared.tenant();
        let mut ids = Vec::new();
        for _ in 0..n {
            if from >= t.devices.len() || t.devices.len() <= 1 {
                break;
            }
            ids.push(util::uuid_of(t.device_uuid(t.devices[from].idx)));
            churn::unenroll(&mut t, from, now);
        }
        ids
    }
    /// `/devices` leaves these devices out until called again (with none to stop): what a walk
    /// sees when offset shifts between page fetches move devices behind it. `/devices/{id}`
    /// and every other endpoint still serve them.
    pub fn skip_in_listings(&self, device_ids: &[String]) {
        *lock(&self.shared.listing_skips) = device_ids.iter().cloned().collect();
    }
    /// Sets a token's permissions (`"GET /api/v1/audit/events"`, or a concrete Prism path),
    /// as an admin ticks or unticks them in Kandji; `None` grants everything. Later requests
    /// are checked against the new list.
    pub fn set_token_permissions(&self, token: &str, allow: Option<Vec<String>>) {
        lock(&self.shared.tokens).insert(
            token.to_owned(),
            allow.map(|a| a.into_iter().map(|s| s.trim().to_owned()).collect()),
        );
    }
    /// Later requests with this token get 401.
    pub fn revoke_token(&self, token: &str) {
        lock(&self.shared.revoked).insert(token.to_owned());
    }
    /// Same as `GET /__sim/truth/<category>` (`Value::Null` for an unknown category).
    pub fn truth(&self, category: &str) -> Value {
        if !truth::is_category(category) {
            return Value::Null;
        }
        truth::full(&self.shared, category, None)
    }
    pub fn stats(&self) -> Stats {
        lock(&self.shared.stats).clone()
    }
    pub fn reset_stats(&self) {
        *lock(&self.shared.stats) = Stats::default();
    }
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn set_faults(sh: &Shared, f: Faults) {
    let serial = sh.next_cursor_serial();
    let mut g = lock(&sh.faults);
    g.storm_left = f.storm_429;
    g.cursor_refusals_left = f.refuse_next_cursors;
    if f.expire_cursors {
        g.cursor_epoch = serial;
    }
    g.faults = f;
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/__sim/truth/{category}", get(truth_h))
        .route("/__sim/stats", get(stats_h))
        .route("/__sim/clock", get(clock_h))
        .route("/__sim/clock/advance", post(advance_h))
        .route("/__sim/faults", post(faults_h))
        .route("/__sim/tokens/revoke", post(revoke_h))
        .route("/__sim/export/{file}", get(export_h))
        .fallback(api_h)
        .with_state(shared)
}

fn json_resp(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(Body::from(key_order::to_vec(v)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        axum::http::HeaderValue::from_static("application/json"),
    );
    r
}

async fn api_h(
    State(sh): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let path = uri.path().to_owned();
    if path.starts_with("/__sim") {
        return json_resp(
            StatusCode::NOT_FOUND,
            &json!({"detail": "unknown simulator route"}),
        );
    }
    let query = uri.query().unwrap_or("").to_owned();
    let now = sh.clock.now();
    let mut r = server::handle_api(sh, method, path, query, headers, body).await;
    // The tenant's clock, as the live API's `Date` header carries the server's (recorded in
    // the HAR examples); hyper only adds its own when none is set.
    if let Ok(v) = axum::http::HeaderValue::from_str(&http_date(now)) {
        r.headers_mut().insert(axum::http::header::DATE, v);
    }
    r
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn http_date(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[t.weekday().number_days_from_monday() as usize],
        t.day(),
        MONTHS[t.month() as usize - 1],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

async fn truth_h(
    State(sh): State<Arc<Shared>>,
    Path(category): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> Response<Body> {
    if !truth::is_category(&category) {
        return json_resp(
            StatusCode::NOT_FOUND,
            &json!({"detail": format!("unknown truth category: {category}"), "categories": truth::CATEGORIES}),
        );
    }
    let get = |k: &str| q.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
    let ndjson = get("format").as_deref() == Some("ndjson");
    let body = truth::stream(sh, category, get("device_id"), ndjson);
    let mut r = Response::new(body);
    let ct = if ndjson {
        "application/x-ndjson"
    } else {
        "application/json"
    };
    r.headers_mut()
        .insert("content-type", axum::http::HeaderValue::from_static(ct));
    r
}

async fn stats_h(State(sh): State<Arc<Shared>>) -> Response<Body> {
    let s = lock(&sh.stats).clone();
    json_resp(
        StatusCode::OK,
        &serde_json::to_value(s).unwrap_or(Value::Null),
    )
}

fn clock_json(sh: &Shared) -> Value {
    let now = sh.clock.now_us();
    json!({"now": util::ts_z(now), "now_unix_us": now})
}

async fn clock_h(State(sh): State<Arc<Shared>>) -> Response<Body> {
    json_resp(StatusCode::OK, &clock_json(&sh))
}

async fn advance_h(
    State(sh): State<Arc<Shared>>,
    Query(q): Query<Vec<(String, String)>>,
) -> Response<Body> {
    let secs = q
        .iter()
        .find(|(k, _)| k == "seconds")
        .and_then(|(_, v)| v.parse::<f64>().ok());
    match secs {
        Some(s) if s >= 0.0 && s.is_finite() => {
            sh.clock.advance(Duration::from_secs_f64(s));
            json_resp(StatusCode::OK, &clock_json(&sh))
        }
        _ => json_resp(
            StatusCode::BAD_REQUEST,
            &json!({"detail": "seconds must be a non-negative number"}),
        ),
    }
}

async fn faults_h(State(sh): State<Arc<Shared>>, body: Bytes) -> Response<Body> {
    match serde_json::from_slice::<Faults>(&body) {
        Ok(f) => {
            set_faults(&sh, f.clone());
            json_resp(
                StatusCode::OK,
                &serde_json::to_value(f).unwrap_or(Value::Null),
            )
        }
        Err(e) => json_resp(StatusCode::BAD_REQUEST, &json!({"detail": e.to_string()})),
    }
}

async fn revoke_h(State(sh): State<Arc<Shared>>, body: Bytes) -> Response<Body> {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    match v.get("token").and_then(Value::as_str) {
        Some(t) => {
            lock(&sh.revoked).insert(t.to_owned());
            json_resp(StatusCode::OK, &json!({"revoked": t}))
        }
        None => json_resp(
            StatusCode::BAD_REQUEST,
            &json!({"detail": "body must be {\"token\": \"...\"}"}),
        ),
    }
}

async fn export_h(
    State(sh): State<Arc<Shared>>,
    Path(file): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response<Body> {
    let q = uri.query().unwrap_or("").to_owned();
    export::download(sh, file, q, headers).await
}
