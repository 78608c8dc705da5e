//! Request pipeline: routing, Kong 404, rate limits, faults, auth, licensing, stats.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::clock::SimClock;
use crate::config::{Faults, SimConfig};
use crate::model::Tenant;
use crate::ratelimit::RateState;
use crate::routes::{self, License, Route};
use crate::util::h;

/// Per-endpoint response counts (`GET /__sim/stats`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub total: u64,
    pub endpoints: BTreeMap<String, BTreeMap<String, u64>>,
    /// `/api/v1` body bytes sent, as sent (gzip when the client asked for it).
    #[serde(default)]
    pub body_bytes: u64,
    /// The same bodies uncompressed: `body_bytes` over this is what gzip saved.
    #[serde(default)]
    pub body_bytes_identity: u64,
    /// Responses per token ([`token_label`]) and status: who spent the budget, and who got
    /// the 429s.
    #[serde(default)]
    pub by_token: BTreeMap<String, BTreeMap<String, u64>>,
    /// Every request to a device-secret path, as sent (`"GET /api/v1/devices/<id>/secrets/…"`),
    /// with its count: what a privilege review sent, whatever the answer.
    #[serde(default)]
    pub secret_requests: BTreeMap<String, u64>,
}

impl Stats {
    /// Requests one token spent from the hourly budget (every answer but a 429 and Kong's 404).
    pub fn spent_by(&self, token: &str) -> u64 {
        self.by_token
            .get(&token_label(token))
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "429" | "no_route"))
                    .map(|(_, v)| *v)
                    .sum()
            })
            .unwrap_or(0)
    }

    /// 429s one token got.
    pub fn rate_limited(&self, token: &str) -> u64 {
        self.by_token
            .get(&token_label(token))
            .and_then(|m| m.get("429"))
            .copied()
            .unwrap_or(0)
    }
}

/// How the stats name a token: its first 8 characters (never the whole token).
pub fn token_label(token: &str) -> String {
    let head: String = token.chars().take(8).collect();
    format!("{head}…")
}

#[derive(Debug, Default)]
pub struct FaultState {
    pub faults: Faults,
    pub storm_left: u32,
    /// Valid custom cursors still to refuse (`refuse_next_cursors`).
    pub cursor_refusals_left: u32,
    pub counter: u64,
    /// Cursors with a serial below this are refused when `expire_cursors` is on.
    pub cursor_epoch: u64,
}

/// A Prism export job.
#[derive(Debug, Clone)]
pub struct Export {
    pub id: String,
    pub category: String,
    pub args: Value,
    pub created_at: i64,
    pub polls: u32,
    pub signature: String,
    /// This export ends `failed` (the `failed_exports` fault).
    pub fails: bool,
}

/// Everything shared by the request handlers.
pub struct Shared {
    pub cfg: SimConfig,
    pub clock: SimClock,
    pub tenant: Mutex<Tenant>,
    pub faults: Mutex<FaultState>,
    pub rate: Mutex<RateState>,
    pub stats: Mutex<Stats>,
    pub revoked: Mutex<HashSet<String>>,
    /// Token → its permissions (`None`: all). Changed at run time by
    /// `SimHandle::set_token_permissions`, as an admin edits a token in Kandji.
    pub tokens: Mutex<HashMap<String, Option<HashSet<String>>>>,
    pub exports: Mutex<HashMap<String, Export>>,
    pub base_url: OnceLock<String>,
    pub cursor_serial: AtomicU64,
    pub routes: Vec<Route>,
    /// Prism totals by (query hash, simulated minute): stable while the tenant is unchanged.
    pub count_cache: Mutex<HashMap<(u64, i64), Option<u64>>>,
    /// Devices `/devices` leaves out (as a walk misses devices that an offset shift moved
    /// behind it); every other endpoint still serves them.
    pub listing_skips: Mutex<HashSet<String>>,
}

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn base(&self) -> &str {
        self.base_url
            .get()
            .map(String::as_str)
            .unwrap_or("http://127.0.0.1")
    }

    /// The tenant, caught up to the simulated now.
    pub fn tenant(&self) -> MutexGuard<'_, Tenant> {
        let now = self.clock.now_us();
        let mut t = lock(&self.tenant);
        crate::churn::catch_up(&mut t, &self.cfg.churn, now);
        t
    }

    pub fn next_cursor_serial(&self) -> u64 {
        self.cursor_serial.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Is a cursor issued with `serial` at `issued_us` still valid?
    pub fn cursor_ok(&self, serial: u64, issued_us: i64) -> bool {
        let mut f = lock(&self.faults);
        if f.cursor_refusals_left > 0 {
            f.cursor_refusals_left -= 1;
            return false;
        }
        if !f.faults.expire_cursors {
            return true;
        }
        serial >= f.cursor_epoch && issued_us >= self.clock.now_us()
    }

    fn record(&self, key: &str, status: &str, token: &str) {
        let mut s = lock(&self.stats);
        s.total += 1;
        // Kong's 404 is not counted against the budget: keep it apart.
        let counted = if key.ends_with("(no route)") {
            "no_route"
        } else {
            status
        };
        *s.by_token
            .entry(token.to_owned())
            .or_default()
            .entry(counted.to_owned())
            .or_default() += 1;
        *s.endpoints
            .entry(key.to_owned())
            .or_default()
            .entry(status.to_owned())
            .or_default() += 1;
    }
}

/// A handler's answer.
pub struct Reply {
    pub status: u16,
    pub body: Bytes,
    pub content_type: &'static str,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn json(v: &Value) -> Reply {
        Reply::json_status(200, v)
    }
    pub fn json_status(status: u16, v: &Value) -> Reply {
        Reply {
            status,
            body: Bytes::from(crate::key_order::to_vec(v)),
            content_type: "application/json; charset=utf-8",
            headers: Vec::new(),
        }
    }
    pub fn detail(status: u16, msg: &str) -> Reply {
        Reply::json_status(status, &json!({"detail": msg}))
    }
    pub fn with_header(mut self, k: &str, v: String) -> Reply {
        self.headers.push((k.to_owned(), v));
        self
    }
}

/// A parsed request for handlers.
pub struct Req {
    pub params: Vec<String>,
    pub query: Vec<(String, String)>,
    pub body: Bytes,
    pub path: String,
}

impl Req {
    pub fn q(&self, k: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
    }
    pub fn qn(&self, k: &str) -> Option<usize> {
        self.q(k).and_then(|v| v.trim().parse().ok())
    }
    pub fn list(&self, k: &str) -> Vec<String> {
        self.q(k)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
    pub fn param(&self, i: usize) -> &str {
        self.params.get(i).map(String::as_str).unwrap_or("")
    }
}

fn match_route<'a>(
    routes: &'a [Route],
    method: &Method,
    path: &str,
) -> Option<(&'a Route, Vec<String>)> {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    'outer: for r in routes {
        if r.method != method.as_str() {
            continue;
        }
        let ts: Vec<&str> = r.template.trim_end_matches('/').split('/').collect();
        if ts.len() != segs.len() {
            continue;
        }
        let mut params = Vec::new();
        for (a, b) in ts.iter().zip(segs.iter()) {
            if a.starts_with('{') {
                if b.is_empty() {
                    continue 'outer;
                }
                params.push(percent_decode(b));
            } else if a != b {
                continue 'outer;
            }
        }
        return Some((r, params));
    }
    None
}

/// The methods a path's routes take, when it has routes (for DRF's 405 and `Allow`).
fn allowed_methods(routes: &[Route], path: &str) -> Option<String> {
    let mut methods: Vec<&str> = Vec::new();
    for m in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
        let Ok(method) = Method::from_bytes(m.as_bytes()) else {
            continue;
        };
        if match_route(routes, &method, path).is_some() {
            methods.push(m);
        }
    }
    if methods.is_empty() {
        return None;
    }
    // DRF lists HEAD beside GET (HAR: `allow: GET, HEAD, POST` on /blueprints) and OPTIONS.
    let mut out: Vec<&str> = Vec::new();
    for m in methods {
        out.push(m);
        if m == "GET" {
            out.push("HEAD");
        }
    }
    out.push("OPTIONS");
    Some(out.join(", "))
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_owned())
}

fn build(status: u16, ct: &str, body: Body, headers: &[(String, String)]) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let hm: &mut HeaderMap = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(ct) {
        hm.insert("content-type", v);
    }
    hm.insert("via", HeaderValue::from_static("kong/3.2.2, 1.1 varnish"));
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (
            axum::http::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            hm.append(k, v);
        }
    }
    r
}

fn kong_404(sh: &Shared) -> Reply {
    let n = sh.next_cursor_serial();
    let rid = format!(
        "{:016x}{:016x}",
        h(&[sh.cfg.seed, n, 1]),
        h(&[sh.cfg.seed, n, 2])
    );
    Reply::json_status(
        404,
        &json!({"message": "no Route matched with those values", "request_id": rid}),
    )
}

/// Handle one request under `/api/v1` (and any other unmatched path).
pub async fn handle_api(
    sh: Arc<Shared>,
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let query_pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let now = sh.clock.now_us();
    // The per-second window follows the simulated second; a frozen clock falls back to real
    // (tokio) seconds so a client that waits `Retry-After: 1` gets through.
    let real = if sh.cfg.clock.speed > 0.0 {
        0
    } else {
        sh.clock.real_second()
    };
    let (lh, ls) = (sh.cfg.hourly_limit, sh.cfg.per_second_limit);
    let api = path.starts_with("/api/v1/") || path == "/api/v1";
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|s| s.trim().to_owned());
    let label = token
        .as_deref()
        .map_or_else(|| "(none)".to_owned(), token_label);
    if path.contains("/secrets/") {
        *lock(&sh.stats)
            .secret_requests
            .entry(format!("{method} {path}"))
            .or_default() += 1;
    }

    // A real route asked with another method: DRF's 405 (after authentication), not Kong's 404.
    let wrong_method = match_route(&sh.routes, &method, &path)
        .is_none()
        .then(|| allowed_methods(&sh.routes, &path))
        .flatten();
    let found = match (&wrong_method, match_route(&sh.routes, &method, &path)) {
        (_, Some(m)) => Some(m),
        (Some(_), None) => match_route(&sh.routes, &Method::GET, &path)
            .or_else(|| match_route(&sh.routes, &Method::POST, &path)),
        (None, None) => None,
    };
    let Some((route, params)) = found else {
        let mut hdrs = Vec::new();
        if api && sh.cfg.rate_limit_headers {
            let info = lock(&sh.rate).peek(now, real, lh, ls);
            hdrs = info
                .headers()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
        }
        sh.record(&format!("{method} (no route)"), "404", &label);
        let r = kong_404(&sh);
        return build(404, r.content_type, Body::from(r.body), &hdrs);
    };
    let key = format!("{method} {}", route.template);

    // Storm and rate limiting.
    let storm = {
        let mut f = lock(&sh.faults);
        if f.storm_left > 0 {
            f.storm_left -= 1;
            true
        } else {
            false
        }
    };
    let info = if storm {
        let mut i = lock(&sh.rate).peek(now, real, lh, ls);
        i.allowed = false;
        i
    } else {
        lock(&sh.rate).take(now, real, lh, ls)
    };
    let mut hdrs: Vec<(String, String)> = if sh.cfg.rate_limit_headers {
        info.headers()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect()
    } else {
        Vec::new()
    };
    if !info.allowed {
        if sh.cfg.retry_after {
            hdrs.push(("Retry-After".into(), info.retry_after.max(1).to_string()));
        }
        sh.record(&key, "429", &label);
        tracing::debug!(route = %key, storm, retry_after = info.retry_after, "rate limited");
        let body =
            serde_json::to_vec(&json!({"message": "API rate limit exceeded"})).unwrap_or_default();
        return build(
            429,
            "application/json; charset=utf-8",
            Body::from(body),
            &hdrs,
        );
    }

    // Faults.
    let (faults, n) = {
        let mut f = lock(&sh.faults);
        f.counter += 1;
        (f.faults.clone(), f.counter)
    };
    if faults.latency_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(faults.latency_ms)).await;
    }
    let p = |tag: u64, rate: f64| {
        rate > 0.0 && crate::util::chance(h(&[sh.cfg.seed, n, tag, 0xFA17]), rate)
    };
    if p(1, faults.reset_rate) {
        sh.record(&key, "reset", &label);
        let s = futures::stream::iter(vec![Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "simulated connection reset",
        ))]);
        return build(200, "application/json", Body::from_stream(s), &hdrs);
    }
    if p(2, faults.error_rate) {
        let code = [500u16, 502, 503, 504][(h(&[n, 3]) % 4) as usize];
        sh.record(&key, &code.to_string(), &label);
        let body = if code == 502 || code == 504 {
            format!(
                "<html><head><title>{code}</title></head><body><h1>{code} Gateway Error</h1></body></html>"
            )
        } else {
            "{\"detail\":\"A server error occurred.\"}".to_owned()
        };
        let ct = if code == 502 || code == 504 {
            "text/html"
        } else {
            "application/json"
        };
        return build(code, ct, Body::from(body), &hdrs);
    }
    if p(4, faults.malformed_rate) {
        sh.record(&key, "200", &label);
        let body = "<!doctype html><html><head><title>Kandji</title></head><body><h1>Service temporarily unavailable</h1></body></html>";
        return build(200, "application/json", Body::from(body), &hdrs);
    }
    let truncate = p(5, faults.truncate_rate);

    // Auth.
    let perms = token.as_ref().and_then(|tk| {
        if lock(&sh.revoked).contains(tk) {
            None
        } else {
            lock(&sh.tokens).get(tk).cloned()
        }
    });
    let reply = match perms {
        // DRF's texts: no credentials at all, or a token it does not know.
        None if token.is_none() => {
            Reply::detail(401, "Authentication credentials were not provided.")
        }
        None => Reply::detail(401, "Invalid token."),
        // A permission is one (method, path): the template's key, or for Prism's categories
        // the concrete path (`GET /api/v1/prism/apps`).
        Some(Some(allow))
            if !allow.contains(&key) && !allow.contains(&format!("{method} {path}")) =>
        {
            Reply::detail(403, "You do not have permission to perform this action.")
        }
        Some(_) if wrong_method.is_some() => {
            Reply::detail(405, &format!("Method \"{method}\" not allowed."))
        }
        Some(_) => {
            let licensed = match route.license {
                License::None => true,
                License::Edr => sh.cfg.licensed_edr,
                License::Vuln => sh.cfg.licensed_vuln,
            };
            if !licensed {
                Reply::detail(403, &sh.cfg.unlicensed_detail)
            } else {
                let req = Req {
                    params,
                    query: query_pairs,
                    body,
                    path: path.clone(),
                };
                let sh2 = sh.clone();
                let handler = route.handler;
                match tokio::task::spawn_blocking(move || handler(&sh2, &req)).await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %e, "handler panicked");
                        Reply::detail(500, "A server error occurred.")
                    }
                }
            }
        }
    };
    sh.record(&key, &reply.status.to_string(), &label);
    tracing::debug!(route = %key, status = reply.status, bytes = reply.body.len(), truncated = truncate, "api request");
    let mut all = hdrs;
    if let Some(allow) = wrong_method.or_else(|| allowed_methods(&sh.routes, &path)) {
        all.push(("Allow".into(), allow));
    }
    all.push(("Vary".into(), "Origin, Accept-Encoding".into()));
    all.extend(reply.headers);
    let body = if truncate && reply.body.len() > 2 {
        reply.body.slice(0..reply.body.len() / 2)
    } else {
        reply.body
    };
    // gzip when asked for (HAR: `accept-encoding: gzip,deflate` got 1,728 bytes for 2,975).
    let identity = body.len() as u64;
    let body = if accepts_gzip(&headers) && !body.is_empty() {
        match gzip(&body) {
            Some(z) => {
                all.push(("Content-Encoding".into(), "gzip".into()));
                Bytes::from(z)
            }
            None => body,
        }
    } else {
        body
    };
    {
        let mut st = lock(&sh.stats);
        st.body_bytes += body.len() as u64;
        st.body_bytes_identity += identity;
    }
    build(reply.status, reply.content_type, Body::from(body), &all)
}

/// Whether the request's `Accept-Encoding` takes gzip (and does not refuse it with `q=0`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all("accept-encoding")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|part| {
            let mut it = part.split(';');
            let name = it.next().unwrap_or("").trim();
            let refused = it.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

fn gzip(data: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).ok()?;
    enc.finish().ok()
}

pub fn new_shared(cfg: SimConfig) -> Shared {
    let clock = SimClock::new(&cfg.clock);
    let start = clock.now_us();
    let tenant = crate::generator::generate(&cfg, start);
    let mut tokens: HashMap<String, Option<HashSet<String>>> = HashMap::new();
    tokens.insert(cfg.token.clone(), None);
    for t in &cfg.extra_tokens {
        tokens.insert(
            t.token.clone(),
            Some(t.allow.iter().map(|s| s.trim().to_owned()).collect()),
        );
    }
    let faults = FaultState {
        storm_left: cfg.faults.storm_429,
        cursor_refusals_left: cfg.faults.refuse_next_cursors,
        faults: cfg.faults.clone(),
        counter: 0,
        cursor_epoch: 0,
    };
    Shared {
        clock,
        tenant: Mutex::new(tenant),
        faults: Mutex::new(faults),
        rate: Mutex::new(RateState::default()),
        stats: Mutex::new(Stats::default()),
        revoked: Mutex::new(HashSet::new()),
        tokens: Mutex::new(tokens),
        exports: Mutex::new(HashMap::new()),
        base_url: OnceLock::new(),
        cursor_serial: AtomicU64::new(0),
        routes: routes::table(),
        count_cache: Mutex::new(HashMap::new()),
        listing_skips: Mutex::new(HashSet::new()),
        cfg,
    }
}
