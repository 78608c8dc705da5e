//! The web console: login, CSRF, security headers, rate limiting, tokens encrypted at rest
//! (never in the DB file, the logs or a response), console sources picked up by the engine
//! without a restart, and Kandji values rendered inert.

use std::io::Write as _;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use kandji_collector::web::{self, ConsoleOptions};
use kandji_sim::{SimConfig, TokenSpec};
use reqwest::StatusCode;
use reqwest::header::{LOCATION, SET_COOKIE};
use tokio_util::sync::CancellationToken;

const PASSWORD: &str = "correct horse battery staple";
const API_KEY: &str = "test-api-key-0123456789";

/// Every log line of this test binary, to prove no token is ever logged.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let l = Logs::default();
        let w = l.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_ansi(false)
            .with_writer(move || w.clone())
            .try_init();
        l
    })
    .clone()
}

struct Console {
    app: web::App,
    url: String,
    dir: tempfile::TempDir,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    http: reqwest::Client,
    cookie: String,
    csrf: String,
}

impl Console {
    async fn start(allow_custom: bool) -> Console {
        Console::start_with(allow_custom, Vec::new()).await
    }

    /// A console whose config file names `sources` (collected at once by its supervisor).
    async fn start_with(
        allow_custom: bool,
        sources: Vec<kandji_collector::config::Source>,
    ) -> Console {
        kandji_api::client::install_crypto_provider();
        logs();
        let dir = tempfile::tempdir().unwrap();
        let started = web::start(ConsoleOptions {
            data_dir: dir.path().to_path_buf(),
            listen: "127.0.0.1:0".parse().unwrap(),
            config_sources: sources,
            allow_custom_endpoints: allow_custom,
            generate_password: false,
            secure_cookies: false,
            api_key: Some(API_KEY.into()),
            public_url: None,
            key_file: None,
        })
        .await
        .unwrap();
        web::auth::set_password(&started.app.store, PASSWORD)
            .await
            .unwrap();
        let url = started.url.trim_end_matches('/').to_string();
        let app = started.app.clone();
        let stop = CancellationToken::new();
        let rx = stop.clone();
        let task = tokio::spawn(async move {
            web::serve(started, rx).await.unwrap();
        });
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Console {
            app,
            url,
            dir,
            stop,
            task,
            http,
            cookie: String::new(),
            csrf: String::new(),
        }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.url))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap()
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.url))
            .header("cookie", &self.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).unwrap())
            .send()
            .await
            .unwrap()
    }

    /// The login form's pre-session cookie and CSRF token.
    async fn login_form(&self) -> (String, String) {
        let r = self.get("/login").await;
        let cookie = set_cookie(&r, "kc_pre").expect("pre cookie");
        let body = r.text().await.unwrap();
        (cookie, hidden(&body, "csrf"))
    }

    async fn login(&mut self) {
        let (pre, csrf) = self.login_form().await;
        self.cookie = format!("kc_pre={pre}");
        let r = self
            .post("/login", &[("csrf", &csrf), ("password", PASSWORD)])
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let raw = r
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .find(|c| c.starts_with("kc_session="))
            .expect("session cookie");
        assert!(raw.contains("HttpOnly"), "{raw}");
        assert!(raw.contains("SameSite=Strict"), "{raw}");
        assert!(!raw.contains("Secure"), "plain HTTP: no Secure flag");
        let session = set_cookie(&r, "kc_session").unwrap();
        self.cookie = format!("kc_session={session}");
        let page = self.get("/sources").await.text().await.unwrap();
        self.csrf = hidden(&page, "csrf");
    }

    async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(30), self.task).await;
    }
}

fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers().get_all(SET_COOKIE).iter().find_map(|v| {
        let s = v.to_str().ok()?;
        let (kv, _) = s.split_once(';').unwrap_or((s, ""));
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

fn hidden(body: &str, name: &str) -> String {
    let pat = format!("name=\"{name}\" value=\"");
    let i = body
        .find(&pat)
        .unwrap_or_else(|| panic!("no {name} in {body}"))
        + pat.len();
    body[i..].split('"').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_csrf_headers_and_rate_limit() {
    let mut c = Console::start(false).await;
    // Not logged in: pages redirect, the API answers 401.
    let r = c.get("/sources").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/login");
    assert_eq!(
        c.get("/api/sources").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(c.get("/metrics").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(c.get("/healthz").await.status(), StatusCode::OK);

    // Security headers on every response.
    let r = c.get("/login").await;
    let h = r.headers();
    assert_eq!(h["content-security-policy"], web::CSP);
    assert!(web::CSP.contains("frame-ancestors 'none'"));
    assert!(!web::CSP.contains("unsafe-inline"));
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "no-referrer");

    // The login form needs its CSRF token (double-submit cookie).
    let (pre, csrf) = c.login_form().await;
    c.cookie = format!("kc_pre={pre}");
    let r = c.post("/login", &[("password", PASSWORD)]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = c
        .post(
            "/login",
            &[("csrf", "0".repeat(64).as_str()), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Wrong passwords, then the limit.
    for _ in 0..web::auth::MAX_FAILURES {
        let r = c
            .post("/login", &[("csrf", &csrf), ("password", "nope")])
            .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = c
        .post("/login", &[("csrf", &csrf), ("password", PASSWORD)])
        .await;
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password waits out the limit"
    );
    c.stop().await;

    // A fresh console: log in, then every form needs the session's CSRF token.
    let mut c = Console::start(false).await;
    c.login().await;
    let r = c
        .post(
            "/sources/check",
            &[("name", "x"), ("endpoint", "acme"), ("token", "t")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "no CSRF token");
    let r = c
        .post(
            "/sources/check",
            &[
                ("csrf", "bad"),
                ("name", "x"),
                ("endpoint", "acme"),
                ("token", "t"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "wrong CSRF token");
    let r = c.post("/logout", &[("csrf", "bad")]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Custom endpoints are refused unless the server allows them.
    let csrf = c.csrf.clone();
    let r = c
        .post(
            "/sources/check",
            &[
                ("csrf", &csrf),
                ("name", "x"),
                ("endpoint", "http://127.0.0.1:1"),
                ("token", "t"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Log out ends the session.
    let r = c.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(c.get("/sources").await.status(), StatusCode::SEE_OTHER);
    c.stop().await;
}

/// Every endpoint permission except threat details.
fn all_but_threats() -> Vec<String> {
    let mut out: Vec<String> = kandji_collector::streams::StreamName::ALL
        .iter()
        .flat_map(|s| s.spec().probes.iter().map(|e| e.endpoint()))
        .filter(|e| !e.contains("threat"))
        .collect();
    out.push("GET /api/v1/settings/licensing".into());
    // Prism exports (not probed by the check: creating one has a cost).
    out.push("POST /api/v1/prism/export".into());
    out.push("GET /api/v1/prism/export/{export_id}".into());
    // The simulator's route template for every Prism category.
    out.push("GET /api/v1/prism/{category}".into());
    out.push("GET /api/v1/prism/count".into());
    out
}

async fn wait_for<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn source_state(c: &Console, name: &str) -> serde_json::Value {
    c.get(&format!("/api/sources/{name}"))
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_source_matrix_encryption_pickup_xss_and_revocation() {
    let token = "tok-limited-SECRET-9f3a1c77e2b4";
    let sim = kandji_sim::spawn(SimConfig {
        devices: 60,
        extra_tokens: vec![TokenSpec {
            token: token.into(),
            allow: all_but_threats(),
        }],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut c = Console::start(true).await;
    c.login().await;
    let csrf = c.csrf.clone();
    let base = sim.base_url();
    let r = c
        .post(
            "/sources/check",
            &[
                ("csrf", &csrf),
                ("name", "lab"),
                ("endpoint", &base),
                ("region", "us"),
                ("token", token),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    assert!(
        !page.contains(token),
        "the check page never echoes the token"
    );
    // The matrix: devices and audit events ✓, threats ✗ with what to tick.
    let row = |stream: &str| {
        let i = page
            .find(&format!("<code class=\"small inline\">{stream}</code>"))
            .unwrap();
        page[i..].split("</tr>").next().unwrap().to_string()
    };
    assert!(row("devices").contains('✓'));
    assert!(row("audit_events").contains('✓'));
    let threats = row("threats");
    assert!(
        threats.contains('✗') && threats.contains("tick"),
        "{threats}"
    );
    assert!(threats.contains("Kandji → Access → API token"));
    // Save with the streams that work (the ticked ones), in a smaller set for speed.
    let pending = hidden(&page, "pending");
    // With nothing ticked, "save" shows the matrix again and keeps the check for a retry.
    let r = c
        .post("/sources/save", &[("csrf", &csrf), ("pending", &pending)])
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let again = r.text().await.unwrap();
    assert!(again.contains("Tick at least one stream"), "{again}");
    assert!(again.contains("id=\"matrix\""), "{again}");
    assert_eq!(hidden(&again, "pending"), pending, "the check is kept");
    let r = c
        .post(
            "/sources/save",
            &[
                ("csrf", &csrf),
                ("pending", &pending),
                ("stream", "blueprints"),
                ("stream", "tags"),
                ("stream", "devices"),
                ("stream", "audit_events"),
                ("stream", "apps"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    // A refused check keeps the page: the sources table still lists lab, the typed endpoint
    // stays, and the page says why the token field is blank.
    let r = c
        .post(
            "/sources/check",
            &[
                ("csrf", csrf.as_str()),
                ("name", ".."),
                ("endpoint", "acme.kandji.io"),
                ("token", "some-token"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("href=\"/sources/lab\""),
        "the table stays: {page}"
    );
    assert!(page.contains("path segment"), "{page}");
    assert!(page.contains("Paste it once more"), "{page}");
    assert!(page.contains("value=\"acme.kandji.io\""), "{page}");
    assert!(!page.contains("some-token"), "a token is never echoed");

    // The engine picks it up without a restart and its five streams turn healthy. Threats,
    // which the token may not read, stays in the table as a missing permission, so the
    // badge (the worst state of the source's streams) does not say healthy over it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let v = source_state(&c, "lab").await;
        let healthy = v["streams"]
            .as_array()
            .is_some_and(|a| a.iter().filter(|s| s["state"] == "healthy").count() >= 5);
        if v["state"] == "missing_permission" && healthy {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not healthy: {v:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let v = source_state(&c, "lab").await;
    let threats = v["streams"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["stream"] == "threats"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(threats["state"], "missing_permission", "{v:#}");
    assert!(
        threats["last_error"]
            .as_str()
            .is_some_and(|m| m.contains("missing permission: tick 'GET /api/v1/threat-details'")),
        "{threats}"
    );
    let page = c.get("/sources/lab").await.text().await.unwrap();
    assert!(
        page.contains("missing permission: tick"),
        "the source page lists it"
    );
    assert!(page.contains("Re-check permissions"));
    assert_eq!(v["token_last4"], "e2b4", "only the last 4 characters: {v}");

    // The token is nowhere: DB file (and WAL), API responses, pages, logs.
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(c.dir.path()).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            bytes.extend(std::fs::read(&p).unwrap());
        }
    }
    let needle = token.as_bytes();
    assert!(
        !bytes.windows(needle.len()).any(|w| w == needle),
        "the token is in a data file"
    );
    for path in [
        "/api/sources",
        "/api/sources/lab",
        "/api/status",
        "/sources",
        "/sources/lab",
        "/metrics",
    ] {
        let body = c.get(path).await.text().await.unwrap();
        assert!(!body.contains(token), "{path} shows the token");
    }
    {
        let l = logs();
        let text = String::from_utf8_lossy(&l.0.lock().unwrap()).to_string();
        assert!(text.contains("console source added"), "logs are captured");
        assert!(!text.contains(token), "a log line holds the token");
        assert!(
            !text.contains("SECRET"),
            "a log line holds part of the token"
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(c.dir.path().join("console.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Kandji values are untrusted: the simulator's names with markup render inert.
    // The script elements a page has are the console's own two (the vendored htmx and
    // app.js); anything else is markup.
    let ours = format!(
        "<script src=\"{}\" defer></script>\n<script src=\"/static/app.js\" defer></script>",
        web::HTMX_PATH
    );
    let devices = c.get("/devices?q=script").await.text().await.unwrap();
    assert_eq!(devices.matches(&ours).count(), 1);
    let devices = devices.replace(&ours, "");
    assert!(devices.contains("&#60;script&#62;") || devices.contains("&lt;script&gt;"));
    assert!(
        !devices.contains("<script"),
        "raw markup from Kandji in the page"
    );
    let api = c.get("/api/devices?q=script").await.text().await.unwrap();
    assert!(api.contains("<script>"), "JSON carries the value as data");
    let ev = c.get("/events").await.text().await.unwrap();
    let seq = ev
        .split("href=\"/events/")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let detail = c.get(&format!("/events/{seq}")).await.text().await.unwrap();
    assert!(detail.contains("<pre id=\"raw\">"));
    assert!(!detail.replace(&ours, "").contains("<script"));

    // Full-text search and keyset pagination through the API.
    let page = c
        .get("/api/events")
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert!(!page["events"].as_array().unwrap().is_empty());
    let first = page["events"][0]["summary"].as_str().unwrap().to_string();
    let word = first
        .split_whitespace()
        .find(|w| w.len() > 4 && w.chars().all(char::is_alphanumeric))
        .unwrap_or("device");
    let found = c
        .get(&format!("/api/events?q={word}"))
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert!(
        !found["events"].as_array().unwrap().is_empty(),
        "search finds {word:?}"
    );

    // The dashboard's data: budget samples recorded by the engine, record samples, charts.
    let v = source_state(&c, "lab").await;
    assert!(
        v["budget_samples"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "budget samples: {v}"
    );
    assert!(
        v["record_samples"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    );
    let svg = c.get("/sources/lab/budget.svg").await;
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    assert!(svg.text().await.unwrap().contains("hourly limit"));
    // CSV export: a header and one row per device.
    let csv = c.get("/devices.csv").await.text().await.unwrap();
    assert!(csv.starts_with("source,device_id,name"));
    assert_eq!(csv.lines().count(), 61, "60 devices and a header");

    // Edit: a bad interval is refused; adding a stream and a schedule is picked up live.
    let edit = |schedule: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("endpoint", base.clone()),
            ("region", "us".to_string()),
            ("budget_share", "0.4".to_string()),
            ("stream", "blueprints".to_string()),
            ("stream", "tags".to_string()),
            ("stream", "devices".to_string()),
            ("stream", "audit_events".to_string()),
            ("stream", "apps".to_string()),
            ("stream", "users".to_string()),
            ("schedule_audit_events", schedule.to_string()),
            ("device_type", "Mac".to_string()),
        ]
    };
    let pairs = edit("soon");
    let form: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = c.post("/sources/lab/edit", &form).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "not an interval");
    // The refusal is the source page, with the edits as posted and what to fix.
    let page = r.text().await.unwrap();
    assert!(page.contains("id=\"settings-error\""), "{page}");
    assert!(page.contains("value=\"soon\""), "the edits stay: {page}");
    assert!(page.contains("value=\"0.4\""), "the edits stay: {page}");
    // Nothing ticked: refused with a message, not a bare error page.
    let none: Vec<(&str, &str)> = form
        .iter()
        .copied()
        .filter(|(k, _)| *k != "stream")
        .collect();
    let r = c.post("/sources/lab/edit", &none).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("Tick at least one stream"));
    let pairs = edit("2m");
    let form: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = c.post("/sources/lab/edit", &form).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // Back to the settings tab, which says the settings were saved.
    let to = r.headers()[reqwest::header::LOCATION]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(to, "/sources/lab?tab=settings&saved=settings");
    let page = c.get(&to).await.text().await.unwrap();
    assert!(page.contains("id=\"notice\""), "{page}");
    assert!(page.contains("Settings saved"), "{page}");
    assert!(
        page.contains("id=\"panel-settings\" role=\"tabpanel\" aria-labelledby=\"tab-settings\">"),
        "the settings panel shows: {page}"
    );
    assert!(
        page.contains(
            "id=\"panel-status\" role=\"tabpanel\" aria-labelledby=\"tab-status\" hidden>"
        ),
        "the status panel waits behind its tab: {page}"
    );
    // `saved` names a message; anything else shows none (the query puts no words on the page).
    let page = c
        .get("/sources/lab?saved=%3Cb%3Eowned%3C/b%3E")
        .await
        .text()
        .await
        .unwrap();
    assert!(!page.contains("id=\"notice\""), "{page}");
    assert!(!page.contains("owned"), "{page}");
    // An empty token is refused next to its field, on the token tab, and nothing changes.
    let r = c
        .post(
            "/sources/lab/token",
            &[("csrf", csrf.as_str()), ("token", " ")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let page = r.text().await.unwrap();
    assert!(page.contains("id=\"token-error\""), "{page}");
    assert!(page.contains("Paste the new token"), "{page}");
    assert!(
        page.contains("id=\"panel-token\" role=\"tabpanel\" aria-labelledby=\"tab-token\">"),
        "{page}"
    );
    let v = source_state(&c, "lab").await;
    assert_eq!(v["settings"]["schedules"]["audit_events"], "2m");
    assert_eq!(v["settings"]["filters"]["device_types"][0], "Mac");
    assert_eq!(v["settings"]["budget_share"], 0.4);
    wait_for("the added stream", || async {
        source_state(&c, "lab").await["streams"]
            .as_array()
            .is_some_and(|a| {
                a.iter()
                    .any(|s| s["stream"] == "users" && s["state"] == "healthy")
            })
    })
    .await;

    // Revoke the token in the tenant, sync now: auth error with its hint.
    sim.revoke_token(token);
    let r = c.post("/sources/lab/sync", &[("csrf", &csrf)]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    wait_for("auth error", || async {
        source_state(&c, "lab").await["state"] == "auth_error"
    })
    .await;
    let page = c.get("/sources/lab").await.text().await.unwrap();
    assert!(page.contains("auth_error"));
    assert!(page.contains("rotate it here"), "the hint shows");

    // Rotate to the full token: the runtime restarts and recovers.
    let full = sim.token().to_string();
    let r = c
        .post("/sources/lab/token", &[("csrf", &csrf), ("token", &full)])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers()[reqwest::header::LOCATION],
        "/sources/lab?tab=token&saved=token"
    );
    assert_eq!(
        source_state(&c, "lab").await["token_last4"],
        full.chars()
            .rev()
            .take(4)
            .collect::<String>()
            .chars()
            .rev()
            .collect::<String>()
    );
    // The rotation re-checked the permissions: the full token reads threats, which is not
    // chosen, so it leaves the table, and the source recovers to healthy.
    // "Sync now" reaches the restarted runtime only once it runs: before, the console
    // answers "not running", or the runtime being replaced takes it. Under load that race was
    // lost and the streams waited for their schedule, so ask again every 2 s until healthy.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let mut asked = tokio::time::Instant::now() - Duration::from_secs(10);
    loop {
        if asked.elapsed() >= Duration::from_secs(2) {
            let _ = c.post("/sources/lab/sync", &[("csrf", &csrf)]).await;
            asked = tokio::time::Instant::now();
        }
        let v = source_state(&c, "lab").await;
        if v["state"] == "healthy" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for recovered: {v:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let page = c.get("/sources/lab").await.text().await.unwrap();
    assert!(
        !page.contains("missing permission: tick"),
        "re-checked after the rotation"
    );

    // Disable, then delete: the engine stops it; the data stays.
    let r = c
        .post("/sources/lab/enable", &[("csrf", &csrf), ("enabled", "0")])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    wait_for("disabled", || async {
        source_state(&c, "lab").await["state"] == "disabled"
    })
    .await;
    // A delete needs its confirmation: a bare post is sent to the confirmation page.
    let r = c.post("/sources/lab/delete", &[("csrf", &csrf)]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/sources/lab/delete");
    let confirm = c.get("/sources/lab/delete").await.text().await.unwrap();
    assert!(confirm.contains("id=\"purge\""), "{confirm}");
    assert_eq!(
        c.get("/sources/lab").await.status(),
        StatusCode::OK,
        "not deleted yet"
    );
    let r = c
        .post("/sources/lab/delete", &[("csrf", &csrf), ("confirm", "1")])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(c.get("/sources/lab").await.status(), StatusCode::NOT_FOUND);
    let devices = c
        .get("/api/devices")
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert!(!devices.as_array().unwrap().is_empty());

    // Metrics and budget samples.
    let m = c.get("/metrics").await.text().await.unwrap();
    assert!(m.contains("kandji_records_total"), "{m}");
    let _ = std::io::stdout().flush();
    c.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_api_key_and_first_run_setup() {
    kandji_api::client::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let started = web::start(ConsoleOptions {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        config_sources: Vec::new(),
        allow_custom_endpoints: false,
        generate_password: false,
        secure_cookies: true,
        api_key: Some(API_KEY.into()),
        public_url: None,
        key_file: None,
    })
    .await
    .unwrap();
    // The listener speaks plain HTTP, and says so, whatever `--secure-cookies` says.
    assert!(started.url.starts_with("http://"), "{}", started.url);
    let code = started
        .setup_code
        .clone()
        .expect("a setup code while no password is set");
    let url = started.url.trim_end_matches('/').to_string();
    let stop = CancellationToken::new();
    let rx = stop.clone();
    let task = tokio::spawn(async move { web::serve(started, rx).await.unwrap() });
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // The API key opens the API and the metrics; a wrong one does not.
    let r = http
        .get(format!("{url}/api/sources"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = http
        .get(format!("{url}/metrics"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = http
        .get(format!("{url}/api/sources"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // No password yet: the login page sends to the setup page, which sets it once.
    let r = http.get(format!("{url}/login")).send().await.unwrap();
    assert_eq!(r.headers()[LOCATION], "/setup");
    // Served behind TLS: HSTS on every answer.
    assert_eq!(
        r.headers()["strict-transport-security"],
        "max-age=31536000",
        "HSTS with --secure-cookies"
    );
    // A page reached under another host name (DNS rebinding) is refused.
    let foreign = http
        .get(format!("{url}/setup"))
        .header("host", "attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), StatusCode::MISDIRECTED_REQUEST);
    assert!(foreign.text().await.unwrap().contains("--public-url"));
    let r = http
        .get(format!("{url}/setup?code={code}"))
        .send()
        .await
        .unwrap();
    let pre = set_cookie(&r, "kc_pre").unwrap();
    let raw = r.headers()[SET_COOKIE].to_str().unwrap().to_string();
    assert!(
        raw.contains("Secure"),
        "served as TLS: Secure cookies ({raw})"
    );
    let body = r.text().await.unwrap();
    let csrf = hidden(&body, "csrf");
    assert_eq!(
        hidden(&body, "code"),
        code,
        "the link's code fills the field"
    );
    let post_as = |host: &'static str, form: Vec<(&'static str, String)>| {
        http.post(format!("{url}/setup"))
            .header("host", host)
            .header("cookie", format!("kc_pre={pre}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).unwrap())
            .send()
    };
    let local = url.trim_start_matches("http://").to_string().leak() as &'static str;
    let post = |form: Vec<(&'static str, String)>| post_as(local, form);
    // Without the code, or with a wrong one, or under a foreign Host: refused, nothing set.
    for (host, form_code) in [
        (local, String::new()),
        (local, "0".repeat(16)),
        ("attacker.example", code.clone()),
    ] {
        let r = post_as(
            host,
            vec![
                ("csrf", csrf.clone()),
                ("code", form_code),
                ("password", PASSWORD.into()),
                ("confirm", PASSWORD.into()),
            ],
        )
        .await
        .unwrap();
        assert!(
            matches!(
                r.status(),
                StatusCode::FORBIDDEN | StatusCode::MISDIRECTED_REQUEST
            ),
            "{host}: {}",
            r.status()
        );
        assert!(set_cookie(&r, "kc_session").is_none());
    }
    let r = post(vec![
        ("csrf", csrf.clone()),
        ("code", code.clone()),
        ("password", "short".into()),
        ("confirm", "short".into()),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = post(vec![
        ("csrf", csrf.clone()),
        ("code", code.clone()),
        ("password", PASSWORD.into()),
        ("confirm", PASSWORD.into()),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(set_cookie(&r, "kc_session").is_some());
    // Set once: the setup page now sends to the login page and refuses a second setup.
    let r = http.get(format!("{url}/setup")).send().await.unwrap();
    assert_eq!(r.headers()[LOCATION], "/login");
    let r = post(vec![
        ("csrf", csrf),
        ("code", code),
        ("password", "another password 123".into()),
        ("confirm", "another password 123".into()),
    ])
    .await
    .unwrap();
    assert_eq!(r.headers()[LOCATION], "/login");
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
}

/// The console's request timeout answers a handler that hangs with 408, in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_request_is_answered_408_by_the_timeout() {
    let app = axum::Router::new()
        .route(
            "/slow",
            axum::routing::get(|| async {
                tokio::time::sleep(Duration::from_secs(600)).await;
                "late"
            }),
        )
        .layer(kandji_collector::web::request_timeout(
            Duration::from_millis(100),
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    kandji_api::client::install_crypto_provider();
    let t = std::time::Instant::now();
    let r = reqwest::get(format!("http://{addr}/slow")).await.unwrap();
    assert_eq!(r.status(), StatusCode::REQUEST_TIMEOUT);
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(kandji_collector::web::REQUEST_TIMEOUT >= Duration::from_secs(15));
}

/// 100 wrong passwords at once: each reserves its place before the (slow) argon2 check, so at
/// most the free few are checked and the rest are told how long to wait (from any address:
/// the throttle is the account's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_are_counted_before_they_are_checked() {
    let mut c = Console::start(false).await;
    let (pre, csrf) = c.login_form().await;
    c.cookie = format!("kc_pre={pre}");
    let guesses: Vec<[(&str, String); 2]> = (0..100)
        .map(|i| [("csrf", csrf.clone()), ("password", format!("guess {i}"))])
        .collect();
    let forms: Vec<[(&str, &str); 2]> = guesses
        .iter()
        .map(|[(a, x), (b, y)]| [(*a, x.as_str()), (*b, y.as_str())])
        .collect();
    let rs = futures::future::join_all(forms.iter().map(|f| c.post("/login", f))).await;
    let checked = rs
        .iter()
        .filter(|r| r.status() == StatusCode::UNAUTHORIZED)
        .count();
    let waited: Vec<&reqwest::Response> = rs
        .iter()
        .filter(|r| r.status() == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert_eq!(
        checked + waited.len(),
        100,
        "every guess answered 401 or 429"
    );
    assert!(
        checked <= web::auth::MAX_FAILURES as usize,
        "{checked} of 100 parallel guesses were checked"
    );
    let checks = c.app.auth.checks.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        checks <= u64::from(web::auth::MAX_FAILURES),
        "{checks} password checks ran"
    );
    assert!(
        waited
            .iter()
            .all(|r| r.headers().contains_key("retry-after"))
    );
    c.stop().await;
}

/// Search text is values, never syntax: a NUL byte, FTS5 operators and quotes answer 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_with_nul_bytes_and_fts_syntax_answers_200() {
    let mut c = Console::start(false).await;
    c.login().await;
    for q in [
        "a%00b",
        "%00",
        "NEAR(a%20b)",
        "%22unbalanced",
        "a%20OR%20*",
        "col%3Ax%20-y%20^z",
    ] {
        let r = c.get(&format!("/events?q={q}")).await;
        assert_eq!(r.status(), StatusCode::OK, "/events?q={q}");
        let r = c.get(&format!("/api/events?q={q}")).await;
        assert_eq!(r.status(), StatusCode::OK, "/api/events?q={q}");
    }
    // A date that is not one is refused with a message that names it, not ignored.
    let r = c.get("/events?from=2026-13-45").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("from &#34;2026-13-45&#34; is not a date")
            || body.contains("from &quot;2026-13-45&quot; is not a date"),
        "{body}"
    );
    assert!(body.contains("id=\"q\""), "the form stays to fix it");
    let r = c.get("/api/events?to=yesterday").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("yesterday") && body.contains("is not a date"),
        "{body}"
    );
    let r = c.get("/events?from=2026-11-02&to=2026-11-01").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = c.get("/events?from=2026-11-01&to=2026-11-02T10:00").await;
    assert_eq!(r.status(), StatusCode::OK);
    // Range presets keep the other filters and replace the range; a later page links back to
    // the first; an empty result says what to try.
    let body = c
        .get("/events?category=audit&to=2026-11-02&after=1700000000000:5")
        .await
        .text()
        .await
        .unwrap();
    let presets = body
        .split("id=\"presets\"")
        .nth(1)
        .unwrap()
        .split("</p>")
        .next()
        .unwrap();
    assert!(
        presets.contains("Last hour") && presets.contains("7 days"),
        "{presets}"
    );
    assert!(
        presets.contains("category=audit") && presets.contains("from="),
        "{presets}"
    );
    assert!(
        !presets.contains("to=2026") && !presets.contains("after="),
        "{presets}"
    );
    let first = body.split("id=\"first\"").next().unwrap();
    let first = first.rsplit("href=\"").next().unwrap();
    assert!(
        first.contains("category=audit") && !first.contains("after="),
        "{first}"
    );
    assert!(body.contains("id=\"empty\""), "{body}");
    c.stop().await;
}

/// Users page through all of them (they were once capped at the first 50), and a search that
/// matches nobody says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_paged_and_an_empty_search_says_what_to_do() {
    use kandji_collector::streams::StreamName;
    let sim = kandji_sim::spawn(SimConfig {
        devices: 100,
        per_second_limit: 1_000_000,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let source = kandji_collector::config::Source {
        name: "acme".into(),
        base: kandji_api::ApiBase::parse(&sim.base_url(), kandji_api::Region::Us, true).unwrap(),
        token: sim.token().to_string().into(),
        enabled: true,
        budget_share: 1.0,
        hourly_limit: 10_000,
        per_second: 50,
        streams: vec![StreamName::Users],
        intervals: Default::default(),
        filters: Default::default(),
        export_download_hosts: Vec::new(),
        hygiene: Default::default(),
    };
    let mut c = Console::start_with(true, vec![source]).await;
    c.login().await;
    let truth = sim.truth("users").as_array().unwrap().len();
    assert!(truth > 50, "{truth} users: more than a page");
    wait_for("the users", || async {
        source_state(&c, "acme").await["streams"]
            .as_array()
            .is_some_and(|a| {
                a.iter()
                    .any(|s| s["stream"] == "users" && s["state"] == "healthy")
            })
    })
    .await;
    let mut seen = std::collections::BTreeSet::new();
    let mut path = "/users".to_string();
    for page in 1.. {
        let body = c.get(&path).await.text().await.unwrap();
        assert!(body.contains(&format!("Page {page}")), "{body}");
        seen.extend(
            body.match_indices("<tr><td>")
                .map(|(i, _)| body[i + 8..].split('<').next().unwrap().to_string()),
        );
        // `<a href="/users?page=N" id="older">`: the link before the marker.
        let Some((before, _)) = body.split_once("id=\"older\"") else {
            break;
        };
        let href = before.rsplit("href=\"").next().unwrap();
        path = href.split('"').next().unwrap().replace("&amp;", "&");
        assert!(page < 10, "paging ends");
    }
    assert_eq!(
        seen.len(),
        truth,
        "every user is reachable through the pager"
    );
    let body = c
        .get("/users?q=nobody-matches-this")
        .await
        .text()
        .await
        .unwrap();
    assert!(body.contains("id=\"empty\""), "{body}");
    c.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_regions_refresh_in_place_and_forms_are_never_reloaded() {
    use kandji_collector::streams::StreamName;
    let sim = kandji_sim::spawn(SimConfig {
        devices: 20,
        per_second_limit: 1_000_000,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let source = kandji_collector::config::Source {
        name: "acme".into(),
        base: kandji_api::ApiBase::parse(&sim.base_url(), kandji_api::Region::Us, true).unwrap(),
        token: sim.token().to_string().into(),
        enabled: true,
        budget_share: 0.5,
        hourly_limit: 10_000,
        per_second: 50,
        streams: vec![StreamName::Devices, StreamName::AuditEvents],
        intervals: Default::default(),
        filters: Default::default(),
        export_download_hosts: Vec::new(),
        hygiene: Default::default(),
    };
    let mut c = Console::start_with(true, vec![source]).await;
    c.login().await;
    wait_for("the devices", || async {
        source_state(&c, "acme").await["streams"]
            .as_array()
            .is_some_and(|a| {
                a.iter()
                    .any(|s| s["stream"] == "devices" && s["state"] == "healthy")
            })
    })
    .await;

    // The vendored htmx is served from this origin, byte for byte what its README names.
    let r = c.get(web::HTMX_PATH).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    let js = r.bytes().await.unwrap();
    use sha2::Digest as _;
    let digest: String = sha2::Sha256::digest(&js)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let readme = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/static/vendor/README.md"
    ))
    .unwrap();
    assert!(
        readme.contains(&digest),
        "{digest} is not in the vendor README"
    );
    assert!(web::CSP.contains("script-src 'self'"));
    assert!(!web::CSP.contains("unsafe"));

    // No page reloads itself: the status regions are fetched by htmx and swapped in place.
    for path in ["/sources", "/sources/acme"] {
        let page = c.get(path).await.text().await.unwrap();
        assert!(
            !page.contains("http-equiv=\"refresh\""),
            "{path} reloads itself"
        );
        assert!(page.contains(web::HTMX_PATH), "{path} loads htmx");
        assert!(
            !page.contains("<script>") && !page.contains(" onclick="),
            "nothing inline on {path}"
        );
    }
    let list = c.get("/live/sources").await;
    assert_eq!(list.status(), StatusCode::OK);
    let list = list.text().await.unwrap();
    assert!(
        list.trim_start().starts_with("<section id=\"live\""),
        "{list}"
    );
    assert!(list.contains("/sources/acme"), "{list}");
    assert!(
        !list.contains("id=\"token\""),
        "the add form is not in the fragment"
    );
    assert!(!list.contains("<html"), "a fragment, not a page");

    let live = c.get("/live/sources/acme").await.text().await.unwrap();
    assert!(
        live.trim_start().starts_with("<section id=\"live\""),
        "{live}"
    );
    assert!(live.contains("id=\"streams\"") && live.contains("id=\"state\""));
    assert!(
        !live.contains("id=\"settings\""),
        "the settings form stays put"
    );
    assert!(!live.contains("name=\"token\""), "the token form stays put");
    // Charts are inline, with values on hover, scaled to the data.
    assert!(live.contains("<svg") && live.contains("</svg>"), "{live}");
    assert!(live.contains("<title>") && live.contains("UTC: "), "{live}");
    assert!(live.contains("hourly limit"), "{live}");
    assert_eq!(
        c.get("/live/sources/nope").await.status(),
        StatusCode::NOT_FOUND
    );

    // Lists name devices (the id on hover), times read "… ago" with the exact time on hover,
    // and a device's raw record has a copy button (shown by the console's script).
    wait_for("the audit events", || async {
        source_state(&c, "acme").await["streams"]
            .as_array()
            .is_some_and(|a| {
                a.iter()
                    .any(|s| s["stream"] == "audit_events" && s["state"] == "healthy")
            })
    })
    .await;
    let events = c.get("/events?category=audit").await.text().await.unwrap();
    let named = events
        .split("class=\"device\">")
        .skip(1)
        .filter_map(|rest| rest.split("</a>").next())
        .filter(|n| !n.starts_with("<code"))
        .count();
    assert!(named > 0, "no event names its device: {events}");
    assert!(events.contains("<time datetime=\""), "{events}");
    assert!(events.contains(" ago</time>") || events.contains("just now</time>"));
    let js = c.get("/static/app.js").await;
    assert_eq!(js.status(), StatusCode::OK);
    assert!(js.text().await.unwrap().contains("data-copy"));
    let devices = c
        .get("/api/devices")
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let id = devices[0]["id"].as_str().unwrap().to_string();
    let page = c
        .get(&format!("/devices/acme/{id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("data-copy=\"device-raw\""), "{page}");
    let raw = page.split("<pre id=\"device-raw\">").nth(1).unwrap();
    assert!(raw.contains(&id), "the raw record is the device's: {raw}");

    // Devices have a source column and filter.
    let mine = c.get("/devices?source=acme").await.text().await.unwrap();
    assert!(mine.contains("<option selected>acme</option>"), "{mine}");
    assert!(mine.contains("class=\"source\">acme</a>"), "{mine}");
    let none = c
        .get("/devices?source=elsewhere")
        .await
        .text()
        .await
        .unwrap();
    assert!(!none.contains("class=\"source\">"), "{none}");
    assert!(none.contains("id=\"empty\""), "{none}");

    // A refresh after the session ended sends the whole page to the login form.
    let r = c
        .http
        .get(format!("{}/live/sources/acme", c.url))
        .header("hx-request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["hx-redirect"], "/login");
    c.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detection_links_its_audit_and_security_records() {
    use kandji_collector::streams::StreamName;
    let sim = kandji_sim::spawn(SimConfig {
        devices: 40,
        per_second_limit: 1_000_000,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let streams = vec![
        StreamName::Devices,
        StreamName::AuditEvents,
        StreamName::VulnerabilityDetections,
        StreamName::Threats,
    ];
    let source = kandji_collector::config::Source {
        name: "acme".into(),
        base: kandji_api::ApiBase::parse(&sim.base_url(), kandji_api::Region::Us, true).unwrap(),
        token: sim.token().to_string().into(),
        enabled: true,
        budget_share: 1.0,
        hourly_limit: 10_000,
        per_second: 50,
        streams: streams.clone(),
        intervals: Default::default(),
        filters: Default::default(),
        export_download_hosts: Vec::new(),
        hygiene: Default::default(),
    };
    let mut c = Console::start_with(true, vec![source]).await;
    c.login().await;
    wait_for("every stream", || async {
        source_state(&c, "acme").await["streams"]
            .as_array()
            .is_some_and(|a| {
                streams.iter().all(|st| {
                    a.iter()
                        .any(|s| s["stream"] == st.as_str() && s["state"] == "healthy")
                })
            })
    })
    .await;
    let mut linked = std::collections::BTreeMap::new();
    for kind in ["vulnerability.detect", "file_detection.detect"] {
        let list = c
            .get(&format!("/api/events?event_type={kind}&limit=20"))
            .await
            .json::<serde_json::Value>()
            .await
            .unwrap();
        let events = list["events"].as_array().unwrap();
        assert!(
            !events.is_empty(),
            "the simulator records {kind} in its audit log"
        );
        for e in events {
            let d = c
                .get(&format!("/api/events/{}", e["seq"]))
                .await
                .json::<serde_json::Value>()
                .await
                .unwrap();
            for r in d["related"].as_array().into_iter().flatten() {
                assert_ne!(r["event"]["stream"], "audit_events", "{r}");
                assert_eq!(r["event"]["device_id"], e["device_id"], "{r}");
                *linked
                    .entry((kind, r["event"]["stream"].as_str().unwrap().to_string()))
                    .or_insert(0) += 1;
            }
        }
    }
    assert!(
        linked
            .keys()
            .any(|(k, s)| *k == "vulnerability.detect" && s == "vulnerability_detections"),
        "{linked:?}"
    );
    assert!(
        linked
            .keys()
            .any(|(k, s)| *k == "file_detection.detect" && s == "threats"),
        "{linked:?}"
    );
    // Search matches values, not keys: vulnerability records carry a `blueprint_name` key,
    // and the key's name finds none of them; the blueprint's name (a value) does.
    let vuln = c
        .get("/api/events?event_type=vulnerability.detected&limit=1")
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let seq = vuln["events"][0]["seq"].clone();
    let detail = c
        .get(&format!("/api/events/{seq}"))
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let raw = detail["raw"].as_str().unwrap();
    assert!(raw.contains("\"blueprint_name\""), "{raw}");
    let by_key = c
        .get("/api/events?q=blueprint_name")
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(
        by_key["events"],
        serde_json::json!([]),
        "a key is not searched"
    );
    let bp: serde_json::Value = serde_json::from_str(raw).unwrap();
    let name = bp["blueprint_name"].as_str().unwrap().to_string();
    let by_value = c
        .get(&format!(
            "/api/events?q={}",
            url::form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>()
        ))
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert!(
        by_value["events"]
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["seq"] == seq)),
        "the value {name:?} finds the record"
    );

    // The page shows the link, both ways.
    let list = c
        .get("/api/events?event_type=vulnerability.detect&limit=20")
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap();
    for e in list["events"].as_array().unwrap() {
        let page = c
            .get(&format!("/events/{}", e["seq"]))
            .await
            .text()
            .await
            .unwrap();
        if let Some(rest) = page.split("<table id=\"related\">").nth(1) {
            let other = rest.split("href=\"/events/").nth(1).unwrap();
            let other = other.split('"').next().unwrap();
            let back = c
                .get(&format!("/events/{other}"))
                .await
                .text()
                .await
                .unwrap();
            assert!(
                back.contains(&format!("href=\"/events/{}\"", e["seq"])),
                "the security record links back to the audit record"
            );
            break;
        }
    }
    c.stop().await;
    sim.shutdown().await;
}

/// The source page's Token section: "Review token" runs the safe probes with the running
/// source and shows what it found, records the token's health and sets the metric; the
/// budget line shows the other tools' spend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_token_shows_the_unneeded_privileges_and_the_budget_shows_other_tools() {
    use kandji_collector::streams::StreamName;
    let sim = kandji_sim::spawn(SimConfig {
        devices: 20,
        per_second_limit: 1_000_000,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    // The simulator's default token holds every permission, the device secrets included.
    let source = kandji_collector::config::Source {
        name: "acme".into(),
        base: kandji_api::ApiBase::parse(&sim.base_url(), kandji_api::Region::Us, true).unwrap(),
        token: sim.token().to_string().into(),
        enabled: true,
        budget_share: 0.5,
        hourly_limit: 10_000,
        per_second: 50,
        streams: vec![StreamName::Devices, StreamName::AuditEvents],
        intervals: Default::default(),
        filters: Default::default(),
        export_download_hosts: Vec::new(),
        hygiene: kandji_collector::streams::source::Hygiene {
            token_name: Some("kandji-collector".into()),
            ..Default::default()
        },
    };
    let mut c = Console::start_with(true, vec![source]).await;
    c.login().await;
    wait_for("the devices", || async {
        source_state(&c, "acme").await["streams"]
            .as_array()
            .is_some_and(|a| {
                a.iter()
                    .any(|s| s["stream"] == "devices" && s["state"] == "healthy")
            })
    })
    .await;
    let before = sim.stats();
    let r = c
        .post("/sources/acme/review-token", &[("csrf", c.csrf.as_str())])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let page = c.get("/sources/acme").await.text().await.unwrap();
    assert!(page.contains("id=\"privilege-review\""), "{page}");
    for what in [
        "FileVault recovery keys",
        "Activation Lock bypass codes",
        "device unlock PINs",
        "recovery lock passwords",
    ] {
        assert!(
            page.contains(&format!("this token can read {what}")),
            "{what}"
        );
    }
    assert!(page.contains("id=\"review-token\""));
    assert!(page.contains("id=\"token-summary\""));
    assert!(page.contains("other tools: "), "the budget line");
    // Only GETs with the nil id reached the secrets.
    let after = sim.stats();
    let sent: u64 =
        after.secret_requests.values().sum::<u64>() - before.secret_requests.values().sum::<u64>();
    assert_eq!(sent, 4);
    assert!(
        after
            .secret_requests
            .keys()
            .all(|k| k.starts_with("GET /api/v1/devices/00000000-0000-0000-0000-000000000000/"))
    );
    // The finding is a health record and a metric.
    let health = c
        .app
        .store
        .events_of_types("acme", "health", vec!["token_unneeded_privileges".into()])
        .await
        .unwrap();
    assert_eq!(health.len(), 1, "{health:?}");
    let m = c
        .http
        .get(format!("{}/metrics", c.url))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("kandji_token_unneeded_privileges{source=\"acme\"} 4"),
        "{m}"
    );
    assert!(m.contains("kandji_budget_other_consumers_requests{source=\"acme\"}"));
    c.stop().await;
}
