//! The console's HTML pages.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use askama::Template;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use secrecy::SecretString;
use serde_json::Value;

use super::model::{ListQuery, SourceRow, overall, source_rows};
use super::sources::{self, Filters, NewSource, Settings};
use super::{Admin, App, FormData, Pending, Posted, WebError, auth, crypto, render};
use crate::check::Access;
use crate::engine::SourceRuntime;
use crate::engine::status::hint;
use crate::store::now_ms;
use crate::store::{
    AppDevice, AppSummary, DeviceDetail, DeviceFilter, DeviceView, EventDetail, EventFilter,
    EventView, PAGE, Table, UserView, device_sorts,
};
use crate::streams::StreamName;
use tokio_util::sync::CancellationToken;

// ---------- login and setup ----------

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    title: String,
    csrf: String,
    setup: bool,
    error: String,
    /// The setup form's one-time code, as the link carried it.
    code: String,
}

fn pre_token(app: &App, headers: &HeaderMap) -> (String, Option<String>) {
    match auth::cookie(headers, auth::PRE_COOKIE) {
        Some(t) if t.len() == 64 => (t.to_string(), None),
        _ => {
            let t = crypto::random_hex(32);
            let c = app.auth.cookie_header(auth::PRE_COOKIE, &t, Some(3600));
            (t, Some(c))
        }
    }
}

fn with_cookie(mut res: Response, cookie: Option<String>) -> Response {
    if let Some(c) = cookie
        && let Ok(v) = c.parse()
    {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

pub async fn login_page(State(app): State<App>, headers: HeaderMap) -> Result<Response, WebError> {
    if auth::stored_hash(&app.store).await?.is_none() {
        return Ok(Redirect::to("/setup").into_response());
    }
    let (csrf, cookie) = pre_token(&app, &headers);
    let page = LoginPage {
        title: "Log in".into(),
        csrf,
        setup: false,
        error: String::new(),
        code: String::new(),
    };
    Ok(with_cookie(render(&page)?, cookie))
}

fn peer(ci: SocketAddr) -> std::net::IpAddr {
    ci.ip()
}

fn pre_ok(headers: &HeaderMap, form: &FormData) -> bool {
    auth::cookie(headers, auth::PRE_COOKIE)
        .is_some_and(|c| auth::ct_eq(c, form.get("csrf").unwrap_or("")))
}

fn logged_in(app: &App) -> Response {
    let s = app.auth.create_session();
    let mut res = Redirect::to("/sources").into_response();
    if let Ok(v) = app
        .auth
        .cookie_header(auth::SESSION_COOKIE, &s.id, None)
        .parse()
    {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

pub async fn login_post(
    State(app): State<App>,
    ConnectInfo(ci): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    axum::Form(pairs): axum::Form<Vec<(String, String)>>,
) -> Result<Response, WebError> {
    let form = FormData(pairs);
    if !pre_ok(&headers, &form) {
        return Err(WebError::Forbidden(
            "the login form expired; reload the page",
        ));
    }
    let ip = peer(ci);
    let (csrf, cookie) = pre_token(&app, &headers);
    let fail = |error: &str, status: StatusCode| -> Result<Response, WebError> {
        let page = LoginPage {
            title: "Log in".into(),
            csrf: csrf.clone(),
            setup: false,
            error: error.into(),
            code: String::new(),
        };
        let mut res = render(&page)?;
        *res.status_mut() = status;
        Ok(with_cookie(res, cookie.clone()))
    };
    let Some(hash) = auth::stored_hash(&app.store).await? else {
        return Ok(Redirect::to("/setup").into_response());
    };
    if let auth::Attempt::Wait(wait) = app.auth.reserve_login() {
        tracing::warn!(%ip, wait_s = wait.as_secs_f64().ceil(), "login throttled");
        let mut res = fail(
            &format!(
                "Too many failed attempts. Wait {} s and try again.",
                wait.as_secs_f64().ceil()
            ),
            StatusCode::TOO_MANY_REQUESTS,
        )?;
        if let Ok(v) = HeaderValue::from_str(&(wait.as_secs_f64().ceil() as u64).to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Ok(res);
    }
    let pw = form.get("password").unwrap_or("").to_string();
    let ok = tokio::task::spawn_blocking(move || auth::verify_password(&pw, &hash))
        .await
        .unwrap_or(false);
    if !ok {
        app.auth.login_failed();
        tracing::warn!(%ip, "failed console login");
        return fail("Wrong password.", StatusCode::UNAUTHORIZED);
    }
    app.auth.login_succeeded();
    tracing::info!(%ip, "console login");
    Ok(logged_in(&app))
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct SetupQuery {
    #[serde(default)]
    code: String,
}

pub async fn setup_page(
    State(app): State<App>,
    headers: HeaderMap,
    Query(q): Query<SetupQuery>,
) -> Result<Response, WebError> {
    if auth::stored_hash(&app.store).await?.is_some() {
        return Ok(Redirect::to("/login").into_response());
    }
    let (csrf, cookie) = pre_token(&app, &headers);
    let page = LoginPage {
        title: "Set the admin password".into(),
        csrf,
        setup: true,
        error: String::new(),
        code: q
            .code
            .chars()
            .filter(char::is_ascii_hexdigit)
            .take(64)
            .collect(),
    };
    Ok(with_cookie(render(&page)?, cookie))
}

/// Whether a setup form carries the one-time code.
fn setup_code_ok(app: &App, form: &FormData) -> bool {
    app.setup_code
        .as_deref()
        .is_some_and(|code| auth::ct_eq(form.get("code").unwrap_or("").trim(), code))
}

pub async fn setup_post(
    State(app): State<App>,
    headers: HeaderMap,
    axum::Form(pairs): axum::Form<Vec<(String, String)>>,
) -> Result<Response, WebError> {
    let form = FormData(pairs);
    if !pre_ok(&headers, &form) {
        return Err(WebError::Forbidden(
            "the setup form expired; reload the page",
        ));
    }
    if auth::stored_hash(&app.store).await?.is_some() {
        return Ok(Redirect::to("/login").into_response());
    }
    let again = |error: &str, status: StatusCode, code: String| -> Result<Response, WebError> {
        let (csrf, cookie) = pre_token(&app, &headers);
        let page = LoginPage {
            title: "Set the admin password".into(),
            csrf,
            setup: true,
            error: error.into(),
            code,
        };
        let mut res = render(&page)?;
        *res.status_mut() = status;
        Ok(with_cookie(res, cookie))
    };
    if !setup_code_ok(&app, &form) {
        tracing::warn!("first-run setup refused: the one-time code is missing or wrong");
        return again(
            "The setup code is missing or wrong. It is printed in the terminal (and the log) \
             where kandji-collector started: open the link shown there.",
            StatusCode::FORBIDDEN,
            String::new(),
        );
    }
    let pw = form.get("password").unwrap_or("");
    if pw.chars().count() < 12 || Some(pw) != form.get("confirm") {
        return again(
            "Use at least 12 characters, typed the same twice.",
            StatusCode::BAD_REQUEST,
            form.text("code"),
        );
    }
    auth::set_password(&app.store, pw)
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?;
    Ok(logged_in(&app))
}

pub async fn logout(State(app): State<App>, p: Posted) -> Response {
    app.auth.end_session(&p.session.id);
    let mut res = Redirect::to("/login").into_response();
    if let Ok(v) = app
        .auth
        .cookie_header(auth::SESSION_COOKIE, "", Some(0))
        .parse()
    {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

/// How long ago (or how soon) `at_ms` is from `now_ms`: "just now", "3 min ago", "in 2 h".
pub fn relative(at_ms: i64, now_ms: i64) -> String {
    let d = (now_ms - at_ms) / 1000;
    let (n, past) = (d.unsigned_abs(), d >= 0);
    if n < 10 {
        return "just now".into();
    }
    let span = match n {
        0..60 => format!("{n} s"),
        60..3_600 => format!("{} min", n / 60),
        3_600..172_800 => format!("{} h", n / 3_600),
        _ => format!("{} days", n / 86_400),
    };
    if past {
        format!("{span} ago")
    } else {
        format!("in {span}")
    }
}

/// A posture category as people read it ("Gatekeeper and XProtect", not
/// `gatekeeper_and_xprotect`).
pub fn posture_label(key: &str) -> String {
    let known = match key {
        "filevault" => "FileVault",
        "application_firewall" => "Application firewall",
        "gatekeeper_and_xprotect" => "Gatekeeper and XProtect",
        "device_information" => "Device information",
        "activation_lock" => "Activation Lock",
        "system_integrity_protection" => "System Integrity Protection",
        "desktop_and_screensaver" => "Desktop and screen saver",
        "launch_agents_and_daemons" => "Launch agents and daemons",
        "startup_settings" => "Startup settings",
        "transparency_database" => "Transparency database (TCC)",
        "local_users" => "Local users",
        "kernel_extensions" => "Kernel extensions",
        "system_extensions" => "System extensions",
        "certificates" => "Certificates",
        "installed_profiles" => "Installed profiles",
        _ => "",
    };
    if !known.is_empty() {
        return known.into();
    }
    let words = key.replace(['_', '-'], " ");
    let mut c = words.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Template filters (askama finds them by this module's name).
mod filters {
    /// A posture category's readable name (see [`super::posture_label`]).
    pub fn posture<T: std::fmt::Display>(
        value: T,
        _: &dyn askama::Values,
    ) -> askama::Result<String> {
        Ok(super::posture_label(&value.to_string()))
    }

    /// A timestamp as a relative `<time>` ("3 min ago"), the exact UTC time on hover (the
    /// console's script puts the viewer's time zone there). Anything that is not a timestamp
    /// ("due", "running") is shown as it is. Output is escaped here: use with `|safe`.
    pub fn when<T: std::fmt::Display>(value: T, _: &dyn askama::Values) -> askama::Result<String> {
        let text = value.to_string();
        let esc = |s: &str| {
            askama::filters::escape(s, askama::filters::Html)
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let Some(t) = kandji_api::parse_timestamp(&text) else {
            return Ok(esc(&text));
        };
        let t = t.to_offset(time::UtcOffset::UTC);
        let ms = (t.unix_timestamp_nanos() / 1_000_000) as i64;
        let exact = format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        Ok(format!(
            r#"<time datetime="{}" title="{}">{}</time>"#,
            esc(&text),
            exact,
            super::relative(ms, crate::store::now_ms())
        ))
    }
}

// ---------- sources ----------

#[derive(Template)]
#[template(path = "sources.html", blocks = ["live"])]
struct SourcesPage {
    title: String,
    csrf: String,
    sources: Vec<SourceRow>,
    allow_custom: bool,
    error: String,
    /// The field the error is about (name, token, endpoint or region), where it is shown;
    /// empty: above the form.
    error_field: &'static str,
    form_name: String,
    form_endpoint: String,
    form_region: String,
    /// When the status table was read (the live region's stamp).
    updated: String,
}

/// The time of day in UTC, for "updated" stamps.
fn clock_now() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!("{:02}:{:02}:{:02} UTC", t.hour(), t.minute(), t.second())
}

async fn sources_list(app: &App, csrf: String) -> Result<SourcesPage, WebError> {
    Ok(SourcesPage {
        title: "Sources".into(),
        csrf,
        sources: source_rows(app).await?,
        allow_custom: app.allow_custom_endpoints,
        error: String::new(),
        error_field: "",
        form_name: String::new(),
        form_endpoint: String::new(),
        form_region: "us".into(),
        updated: clock_now(),
    })
}

pub async fn sources_page(State(app): State<App>, Admin(s): Admin) -> Result<Response, WebError> {
    render(&sources_list(&app, s.csrf).await?)
}

/// The sources table alone, for htmx to swap in place: the add form around it is never
/// reloaded under the user (a `<meta refresh>` once wiped a half-typed token).
pub async fn sources_live(State(app): State<App>, Admin(s): Admin) -> Result<Response, WebError> {
    render(&sources_list(&app, s.csrf).await?.as_live())
}

pub struct MatrixRow {
    pub stream: String,
    pub label: &'static str,
    pub ok: bool,
    pub message: String,
}

#[derive(Template)]
#[template(path = "check.html")]
struct CheckPage {
    title: String,
    csrf: String,
    name: String,
    endpoint: String,
    pending: String,
    rows: Vec<MatrixRow>,
    fleet: String,
    plan: String,
    unauthorized: bool,
    /// Why "save" was refused (the check stays pending, to fix and save again).
    error: String,
    /// Some stream passed: "save" is offered only then.
    any_ok: bool,
}

pub fn matrix_rows(report: &crate::check::Report) -> Vec<MatrixRow> {
    report
        .matrix
        .iter()
        .map(|(stream, access)| MatrixRow {
            stream: stream.as_str().to_string(),
            label: stream.label(),
            ok: *access == Access::Ok,
            message: match access {
                Access::Ok => "✓".into(),
                Access::MissingPermission { permission, .. } => format!(
                    "✗: tick '{permission}' in Kandji → Access → API token, or this stream stays empty"
                ),
                Access::NotLicensed { .. } => {
                    "✗: not licensed — the tenant lacks this feature (EDR or Vulnerability Management)".into()
                }
                Access::NotLicensedOrDenied { permission, .. } => {
                    format!("✗: {}", crate::check::not_licensed_or_denied(permission))
                }
                Access::Unauthorized => {
                    "✗: unauthorized — the token is invalid, revoked or expired".into()
                }
                Access::Error { message, .. } => format!("✗: {message}"),
            },
        })
        .collect()
}

/// "Check": parses the form, probes every stream with the token, shows the matrix. The token
/// waits server-side (10 minutes) for "save".
pub async fn source_check(State(app): State<App>, p: Posted) -> Result<Response, WebError> {
    let f = &p.form;
    let name = f.text("name");
    let endpoint = f.text("endpoint");
    let region_s = f.text("region");
    let token = f.get("token").unwrap_or("").trim().to_string();
    // An error keeps the rest of the page (the sources table was once empty, as if every
    // source had gone) and says why the token field is blank.
    let rows = source_rows(&app).await?;
    let again = |field: &'static str, error: String| -> Result<Response, WebError> {
        let page = SourcesPage {
            title: "Sources".into(),
            csrf: p.session.csrf.clone(),
            sources: rows.clone(),
            allow_custom: app.allow_custom_endpoints,
            error: format!(
                "{error} (The token field is blank again: the console never writes a token back \
                 into a page. Paste it once more.)"
            ),
            error_field: field,
            form_name: name.clone(),
            form_endpoint: endpoint.clone(),
            form_region: region_s.clone(),
            updated: clock_now(),
        };
        let mut r = render(&page)?;
        *r.status_mut() = StatusCode::BAD_REQUEST;
        Ok(r)
    };
    if let Err(e) = sources::valid_name(&name) {
        return again("name", e.to_string());
    }
    if app.catalog.is_config_source(&name) || sources::get(&app.store, &name).await?.is_some() {
        return again(
            "name",
            format!("A source named {name:?} exists: choose another name."),
        );
    }
    let region = match sources::parse_region(&region_s) {
        Ok(r) => r,
        Err(e) => return again("region", e.to_string()),
    };
    if token.is_empty() {
        return again("token", "Paste the API token.".into());
    }
    let base = match kandji_api::ApiBase::parse(&endpoint, region, app.allow_custom_endpoints) {
        Ok(b) => b,
        Err(e) => return again("endpoint", format!("endpoint: {e}")),
    };
    let token = SecretString::from(token);
    let source = crate::config::Source {
        name: name.clone(),
        base,
        token: token.clone(),
        enabled: true,
        budget_share: 0.5,
        hourly_limit: 10_000,
        per_second: 10,
        streams: StreamName::ALL.to_vec(),
        intervals: BTreeMap::new(),
        filters: Default::default(),
        export_download_hosts: Vec::new(),
        hygiene: Default::default(),
    };
    let rt = SourceRuntime::new(source, app.store.clone(), CancellationToken::new())
        .map_err(|e| WebError::BadRequest(e.to_string()))?;
    let report = crate::check::run_with(&rt).await;
    let id = crypto::random_hex(16);
    {
        let mut map = app.pending.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, v| v.created.elapsed() < Duration::from_secs(600));
        map.insert(
            id.clone(),
            Pending {
                name: name.clone(),
                endpoint: endpoint.clone(),
                region,
                allow_custom: app.allow_custom_endpoints,
                token,
                created: Instant::now(),
                ok_streams: report.runnable(),
                report: report.clone(),
            },
        );
    }
    render(&check_page(
        p.session.csrf,
        id,
        name,
        endpoint,
        &report,
        String::new(),
    ))
}

/// The check page of a report (after "check", and again when "save" is refused).
fn check_page(
    csrf: String,
    pending: String,
    name: String,
    endpoint: String,
    report: &crate::check::Report,
    error: String,
) -> CheckPage {
    CheckPage {
        title: format!("Check {name}"),
        csrf,
        name,
        endpoint,
        pending,
        any_ok: report.matrix.iter().any(|(_, a)| *a == Access::Ok),
        rows: matrix_rows(report),
        fleet: report
            .fleet
            .map(|f| format!("{} devices", f.devices))
            .unwrap_or_default(),
        plan: report
            .plan
            .as_ref()
            .map(|p| {
                format!(
                    "about {:.0} requests/hour of a {:.0} share",
                    p.total_per_hour, p.share_per_hour
                )
            })
            .unwrap_or_default(),
        unauthorized: report
            .matrix
            .iter()
            .all(|(_, a)| *a == Access::Unauthorized),
        error,
    }
}

pub async fn source_save(State(app): State<App>, p: Posted) -> Result<Response, WebError> {
    let id = p.form.text("pending");
    let streams = sources::parse_streams(&p.form.all("stream"))
        .map_err(|e| WebError::BadRequest(e.to_string()))?;
    if streams.is_empty() {
        // Nothing ticked: the check page again, its answers and the pending token kept.
        let map = app.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pending) = map
            .get(&id)
            .filter(|v| v.created.elapsed() < Duration::from_secs(600))
        {
            let page = check_page(
                p.session.csrf.clone(),
                id.clone(),
                pending.name.clone(),
                pending.endpoint.clone(),
                &pending.report,
                "Tick at least one stream to collect, then save.".into(),
            );
            let mut res = render(&page)?;
            *res.status_mut() = StatusCode::BAD_REQUEST;
            return Ok(res);
        }
    }
    let pending = app
        .pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id)
        .filter(|v| v.created.elapsed() < Duration::from_secs(600))
        .ok_or_else(|| WebError::BadRequest("This check expired; add the source again.".into()))?;
    let name = pending.name.clone();
    sources::insert(
        &app.store,
        &app.catalog.cipher,
        NewSource {
            name: pending.name,
            endpoint: pending.endpoint,
            region: pending.region,
            allow_custom: pending.allow_custom,
            token: pending.token,
            streams,
        },
    )
    .await
    .map_err(|e| WebError::BadRequest(e.to_string()))?;
    let chosen = sources::parse_streams(&p.form.all("stream")).unwrap_or_default();
    super::access::record(&app.store, &name, &pending.report, &chosen).await?;
    tracing::info!(source = %name, "console source added");
    app.supervisor.poke();
    Ok(Redirect::to(&format!("/sources/{name}")).into_response())
}

pub struct StreamRow {
    /// Listed in the table: chosen, or not readable with this token.
    pub shown: bool,
    pub stream: String,
    pub label: &'static str,
    pub state: String,
    pub selected: bool,
    pub last_success: String,
    pub last_error: String,
    /// When it failed (shown relative, the exact time on hover).
    pub last_error_at: String,
    pub hint: String,
    pub records: i64,
    pub checkpoint: String,
    pub next_run: String,
    pub schedule: String,
    pub default_interval: String,
    pub planned: String,
}

pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "source.html", blocks = ["live"])]
struct SourcePage {
    /// When the status was read (the live region's stamp).
    updated: String,
    /// Inline SVG (so each bar's `<title>` shows on hover), from [`super::svg`]: numbers and
    /// escaped labels only.
    budget_chart: String,
    records_chart: String,
    title: String,
    csrf: String,
    name: String,
    endpoint: String,
    region: String,
    read_only: bool,
    enabled: bool,
    running: bool,
    token_last4: String,
    budget_share: String,
    state: String,
    streams: Vec<StreamRow>,
    budget: String,
    plan: String,
    blueprints: Vec<Choice>,
    tags: Vec<Choice>,
    device_types: Vec<Choice>,
    problem: String,
    /// Why the settings just posted were refused (they are shown as posted, to fix).
    settings_error: String,
    /// Why the token just posted was refused.
    token_error: String,
    /// The tab shown: status, settings, token or manage.
    tab: &'static str,
    tabs: &'static [(&'static str, &'static str)],
    /// What was just saved, said once after the redirect (`?saved=`).
    notice: String,
    /// The tenant is on course to run out of requests before the hour ends.
    budget_warning: String,
    /// The settings form's token fields (as stored, or as posted).
    token_name: String,
    rotate_after_days: String,
    reserve_for_others: String,
    /// The token as the audit feed tells it (empty when the source does not name it).
    token_summary: String,
    token_warnings: Vec<String>,
    /// A rotation is due (the one-click rotate flow shows).
    rotate_due: bool,
    /// The last privilege review: (what, finding, detail), and when.
    review: Vec<(String, String, String)>,
    review_at: String,
    /// The tenant's audit events about API tokens: (when, action, token, by).
    token_activity: Vec<(String, String, String, String)>,
}

/// The source page's tabs: (id, label). Each is a panel of the page, all rendered; the
/// chosen one shows (`?tab=`, or a click that app.js handles without a reload).
const SOURCE_TABS: [(&str, &str); 4] = [
    ("status", "Status"),
    ("settings", "Settings"),
    ("token", "Token"),
    ("manage", "Enable or delete"),
];

/// The source page's query: the tab, and what was just saved.
#[derive(Debug, Default, serde::Deserialize)]
pub struct SourceQuery {
    #[serde(default)]
    tab: Option<String>,
    #[serde(default)]
    saved: Option<String>,
}

fn tab_of(t: Option<&str>) -> &'static str {
    SOURCE_TABS
        .iter()
        .map(|(id, _)| *id)
        .find(|id| Some(*id) == t)
        .unwrap_or("status")
}

/// The message for `?saved=` (only these: the query cannot put words on the page).
fn saved_notice(saved: Option<&str>) -> String {
    match saved {
        Some("settings") => "Settings saved. The source's streams run on them from now on.",
        Some("token") => {
            "Token rotated. The permissions were re-checked with the new token and the \
             streams restarted on it: the Status tab shows what each stream may read."
        }
        Some("recheck") => "Permissions re-checked: the Status tab shows the result.",
        Some("review") => "Token reviewed: the result is under Token.",
        Some("enabled") => "Source enabled: its streams start now.",
        Some("disabled") => "Source disabled: it collects nothing until enabled again.",
        _ => "",
    }
    .to_string()
}

/// What a source page shows beyond its status: a refused form and its reason, the tab, and
/// a notice.
#[derive(Default)]
struct SourceCtx<'a> {
    edit: Option<(&'a FormData, String)>,
    token_error: String,
    tab: &'static str,
    notice: String,
}

fn s_of(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

pub async fn source_page(
    State(app): State<App>,
    Admin(s): Admin,
    Path(name): Path<String>,
    Query(q): Query<SourceQuery>,
) -> Result<Response, WebError> {
    let ctx = SourceCtx {
        tab: tab_of(q.tab.as_deref()),
        notice: saved_notice(q.saved.as_deref()),
        ..Default::default()
    };
    source_view(&app, s.csrf, name, ctx, false).await
}

/// The source's status region alone (state, streams, budget, charts), for htmx to swap in
/// place: the settings and token forms below it are never reloaded under the user.
pub async fn source_live(
    State(app): State<App>,
    Admin(s): Admin,
    Path(name): Path<String>,
) -> Result<Response, WebError> {
    source_view(&app, s.csrf, name, SourceCtx::default(), true).await
}

/// The source page; with `edit`, the settings form shows the posted values and why they
/// were refused (an error once gave a bare 400 page, and the edits were lost).
async fn source_view(
    app: &App,
    csrf: String,
    name: String,
    ctx: SourceCtx<'_>,
    live_only: bool,
) -> Result<Response, WebError> {
    let edit = ctx.edit;
    let console = sources::get(&app.store, &name).await?;
    let config = app
        .catalog
        .config_sources
        .iter()
        .find(|c| c.name == name)
        .cloned();
    if console.is_none() && config.is_none() {
        return Err(WebError::NotFound);
    }
    let rt = app.supervisor.runtime(&name);
    let (endpoint, enabled, share, selected, schedules, filters, last4) = match (&config, &console)
    {
        (Some(c), _) => (
            c.base.as_str().to_string(),
            c.enabled,
            c.budget_share,
            c.streams
                .iter()
                .map(|x| x.as_str().to_string())
                .collect::<Vec<_>>(),
            c.intervals
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        humantime::format_duration(*v).to_string(),
                    )
                })
                .collect::<BTreeMap<_, _>>(),
            Filters {
                blueprints: c.filters.blueprints.clone(),
                tags: c.filters.tags.clone(),
                device_types: c.filters.device_types.clone(),
            },
            String::new(),
        ),
        (None, Some(c)) => (
            c.endpoint.clone(),
            c.enabled,
            c.budget_share,
            c.streams.clone(),
            c.schedules.clone(),
            c.filters.clone(),
            c.token_last4.clone(),
        ),
        (None, None) => return Err(WebError::NotFound),
    };
    // The form shows the posted values; the status rows keep the stored ones.
    let (endpoint, share_text, form_selected, form_schedules, filters) = match &edit {
        Some((f, _)) => {
            let mut posted = BTreeMap::new();
            for st in StreamName::ALL {
                let v = f.text(&format!("schedule_{}", st.as_str()));
                if !v.is_empty() {
                    posted.insert(st.as_str().to_string(), v);
                }
            }
            (
                f.text("endpoint"),
                f.text("budget_share"),
                f.all("stream"),
                posted,
                Filters {
                    blueprints: f.all("blueprint"),
                    tags: f.all("tag"),
                    device_types: f.all("device_type"),
                },
            )
        }
        None => (
            endpoint,
            format!("{share}"),
            selected.clone(),
            schedules.clone(),
            filters,
        ),
    };
    let store = app.store.clone();
    let n2 = name.clone();
    let status = crate::engine::status_rows(&store, Some(&n2))
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?;
    let fleet = app.store.fleet_size(&name).await?;
    // The filter choices (thousands of tags) belong to the settings form, which a refresh of
    // the status region leaves alone.
    let (bps, tgs) = if live_only {
        (Vec::new(), Vec::new())
    } else {
        (
            app.store.dimension(&name, Table::Blueprints).await?,
            app.store.dimension(&name, Table::Tags).await?,
        )
    };
    let stream_list: Vec<StreamName> = selected
        .iter()
        .filter_map(|s| StreamName::parse(s))
        .collect();
    let intervals = sources::parse_intervals(&schedules).unwrap_or_default();
    let plan = crate::planner::plan(
        crate::planner::FleetSize {
            devices: fleet.0,
            users: fleet.1.max(fleet.0),
        },
        &stream_list,
        &intervals,
        10_000,
        share,
        &crate::planner::Assumptions::default(),
    );
    let mut streams = Vec::new();
    let mut states = Vec::new();
    for st in StreamName::ALL {
        let row = status
            .iter()
            .find(|r| r.get("stream").and_then(Value::as_str) == Some(st.as_str()));
        let sel = selected.iter().any(|x| x == st.as_str());
        let refused = row
            .map(|r| s_of(r, "state"))
            .filter(|s| super::access::is_access_state(s));
        let state = if let Some(r) = refused.clone().filter(|_| enabled) {
            r
        } else if !sel {
            "not collected".to_string()
        } else if !enabled {
            "disabled".to_string()
        } else {
            row.map(|r| s_of(r, "state"))
                .unwrap_or_else(|| "pending".into())
        };
        if sel || refused.is_some() {
            states.push(state.clone());
        }
        let (last_error, last_error_at, hint_s) = match row {
            Some(r) if !s_of(r, "last_error_kind").is_empty() => {
                let kind = s_of(r, "last_error_kind");
                let ep = s_of(r, "last_error_endpoint");
                (
                    s_of(r, "last_error"),
                    s_of(r, "last_error_at"),
                    hint(&kind, (!ep.is_empty()).then_some(ep.as_str())),
                )
            }
            _ => (String::new(), String::new(), String::new()),
        };
        streams.push(StreamRow {
            stream: st.as_str().into(),
            label: st.label(),
            state,
            selected: form_selected.iter().any(|x| x == st.as_str()),
            shown: sel || refused.is_some(),
            last_success: row.map(|r| s_of(r, "last_success_at")).unwrap_or_default(),
            last_error,
            last_error_at,
            hint: hint_s,
            records: row
                .and_then(|r| r.get("records_total").and_then(Value::as_i64))
                .unwrap_or(0),
            checkpoint: row
                .map(|r| {
                    let c = s_of(r, "checkpoint");
                    if c.chars().count() > 120 {
                        format!("{}…", c.chars().take(120).collect::<String>())
                    } else {
                        c
                    }
                })
                .unwrap_or_default(),
            next_run: next_run(row, &intervals, st, enabled && sel),
            schedule: form_schedules.get(st.as_str()).cloned().unwrap_or_default(),
            default_interval: humantime::format_duration(st.default_interval()).to_string(),
            planned: plan
                .per_stream
                .get(&st)
                .map(|v| format!("{v:.1}"))
                .unwrap_or_default(),
        });
    }
    let budget = rt
        .as_ref()
        .map(|rt| {
            let b = rt.budget.state();
            let mut s = format!(
                "{} spent this hour · {} left of a {} share (limit {}/h)",
                b.spent_this_hour, b.remaining, b.share_limit, b.limit
            );
            if let Some(o) = b.others_this_hour {
                s.push_str(&format!(
                    " · other tools: {} this hour{} · {} kept for them",
                    thousands(i64::from(o)),
                    b.others_per_hour
                        .map(|p| format!(" (about {}/h)", thousands(p.round() as i64)))
                        .unwrap_or_default(),
                    thousands(i64::from(b.reserve_for_others))
                ));
            }
            if b.yielding {
                s.push_str(" · yielding to other tools");
            }
            s
        })
        .unwrap_or_else(|| "not running".into());
    let budget_warning = rt
        .as_ref()
        .and_then(|rt| rt.budget.state().exhaustion_in)
        .map(|d| {
            format!(
                "The tenant is on course to run out of its hourly API requests in about {} \
                 minutes, before the hour ends: every tool on the tenant will get 429s.",
                d.as_secs().div_ceil(60)
            )
        })
        .unwrap_or_default();
    let (token_summary, token_warnings, rotate_due) = match &rt {
        Some(rt) => match rt.token_history().await? {
            Some(h) => {
                let mut s = format!("“{}”", h.name);
                match (h.created_at, h.first_seen_at, h.age_days) {
                    (Some(c), _, Some(age)) => s.push_str(&format!(
                        " · created {} ({age} days ago){}",
                        crate::streams::fetch::rfc3339(c),
                        h.created_by
                            .as_deref()
                            .map(|b| format!(" by {b}"))
                            .unwrap_or_default()
                    )),
                    (None, Some(_), Some(age)) => s.push_str(&format!(
                        " · at least {age} days old (created before the audit log's oldest event)"
                    )),
                    _ => {}
                }
                if let Some((at, by)) = &h.last_permission_change {
                    s.push_str(&format!(
                        " · permissions last changed {} by {by}",
                        crate::streams::fetch::rfc3339(*at)
                    ));
                }
                let due = h
                    .warnings
                    .iter()
                    .any(|w| !matches!(w, crate::hygiene::TokenWarning::PermissionRemoved { .. }));
                (s, h.warnings.iter().map(|w| w.message()).collect(), due)
            }
            None => match &rt.source.hygiene.token_name {
                Some(n) => (
                    format!(
                        "“{n}”: no audit event names this token yet (the audit_events stream \
                         reads them; the name must be the token's as Kandji shows it)"
                    ),
                    Vec::new(),
                    false,
                ),
                None => (String::new(), Vec::new(), false),
            },
        },
        None => (String::new(), Vec::new(), false),
    };
    let kept_review = app
        .store
        .source_fact(&name, crate::check::PRIVILEGE_REVIEW)
        .await?
        .and_then(|(v, _)| serde_json::from_str::<crate::check::StoredReview>(&v).ok());
    let review_at = kept_review
        .as_ref()
        .map(|r| crate::streams::fetch::rfc3339(r.at))
        .unwrap_or_default();
    let review = kept_review
        .map(|r| {
            r.probes
                .into_iter()
                .map(|(_, reads, finding, detail)| (reads, finding, detail))
                .collect()
        })
        .unwrap_or_default();
    let token_activity = app
        .store
        .events_of_types(
            &name,
            crate::streams::audit_events::SPEC.name,
            crate::hygiene::TOKEN_EVENT_TYPES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        )
        .await?
        .into_iter()
        .rev()
        .take(50)
        .map(|(at, _, raw)| {
            let v: serde_json::Value = serde_json::from_str(&raw).unwrap_or_default();
            let g = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
            let label = v
                .get("new_state")
                .and_then(|n| n.get("label").or_else(|| n.get("name")))
                .and_then(|x| x.as_str())
                .unwrap_or("")
                .to_string();
            (
                crate::streams::fetch::rfc3339(at),
                g("action"),
                label,
                g("actor_id"),
            )
        })
        .collect();
    let choice = |list: &[(String, String)], picked: &[String]| -> Vec<Choice> {
        list.iter()
            .map(|(k, v)| Choice {
                value: k.clone(),
                label: v.clone(),
                selected: picked.iter().any(|p| p == k || p == v),
            })
            .collect()
    };
    let problem = app
        .supervisor
        .broken()
        .into_iter()
        .find(|b| b.name == name)
        .map(|b| b.message)
        .unwrap_or_default();
    let region = console
        .as_ref()
        .map_or_else(|| "us".to_string(), |c| c.region.clone());
    let region = match &edit {
        Some((f, _)) => f.text("region"),
        None => region,
    };
    let settings_error = edit.as_ref().map(|(_, e)| e.clone()).unwrap_or_default();
    // A refused edit shows what was posted; otherwise what is stored.
    let form_text = |field: &str, stored: Option<String>| -> String {
        match &edit {
            Some((f, _)) => f.text(field),
            None => stored.unwrap_or_default(),
        }
    };
    let page = SourcePage {
        updated: clock_now(),
        budget_chart: budget_chart(app, &name).await?,
        records_chart: records_chart(app, &name).await?,
        title: format!("Source {name}"),
        csrf,
        region,
        state: overall(&states, enabled),
        endpoint,
        read_only: config.is_some(),
        enabled,
        running: rt.is_some() && enabled,
        token_last4: last4,
        budget_share: share_text,
        streams,
        budget,
        plan: format!(
            "about {:.0} requests/hour for {} devices, of a {:.0} share",
            plan.total_per_hour, fleet.0, plan.share_per_hour
        ),
        blueprints: choice(&bps, &filters.blueprints),
        tags: choice(&tgs, &filters.tags),
        device_types: crate::config::DEVICE_TYPES
            .iter()
            .map(|(d, _)| Choice {
                value: d.to_string(),
                label: d.to_string(),
                selected: filters.device_types.iter().any(|x| x == d),
            })
            .collect(),
        problem,
        settings_error: settings_error.clone(),
        token_error: ctx.token_error.clone(),
        tab: ctx.tab,
        tabs: &SOURCE_TABS,
        notice: ctx.notice,
        budget_warning,
        token_name: form_text(
            "token_name",
            console.as_ref().and_then(|c| c.hygiene.token_name.clone()),
        ),
        rotate_after_days: form_text(
            "rotate_after_days",
            console
                .as_ref()
                .and_then(|c| c.hygiene.rotate_after_days)
                .map(|d| d.to_string()),
        ),
        reserve_for_others: form_text(
            "reserve_for_others",
            console
                .as_ref()
                .and_then(|c| c.hygiene.reserve_for_others)
                .map(|r| r.to_string()),
        ),
        token_summary,
        token_warnings,
        rotate_due,
        review,
        review_at,
        token_activity,
        name,
    };
    if live_only {
        return render(&page.as_live());
    }
    let mut res = render(&page)?;
    if !settings_error.is_empty() || !ctx.token_error.is_empty() {
        *res.status_mut() = StatusCode::BAD_REQUEST;
    }
    Ok(res)
}

/// When the stream runs next: its last success plus its interval, or the engine's retry time
/// after a failure ("now" if that has passed).
fn next_run(
    row: Option<&Value>,
    intervals: &BTreeMap<StreamName, Duration>,
    stream: StreamName,
    active: bool,
) -> String {
    let Some(r) = row.filter(|_| active) else {
        return String::new();
    };
    let interval = intervals
        .get(&stream)
        .copied()
        .unwrap_or_else(|| stream.default_interval());
    let ms = |k: &str| {
        kandji_api::parse_timestamp(&s_of(r, k))
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
    };
    let at = match (s_of(r, "state").as_str(), ms("last_success_at")) {
        ("syncing", _) => return "running".into(),
        ("healthy", Some(t)) => t + interval.as_millis() as i64,
        ("pending", _) => return "due".into(),
        // Failures back off (30 s doubling, at most the interval); "sync now" retries at once.
        (_, _) => {
            return format!(
                "retrying with backoff (≤ {})",
                humantime::format_duration(interval)
            );
        }
    };
    if at <= now_ms() {
        "due".into()
    } else {
        crate::streams::fetch::rfc3339(at)
    }
}

async fn editable(app: &App, name: &str) -> Result<sources::ConsoleSource, WebError> {
    if app.catalog.is_config_source(name) {
        return Err(WebError::BadRequest(
            "This source comes from the config file; edit it there.".into(),
        ));
    }
    sources::get(&app.store, name)
        .await?
        .ok_or(WebError::NotFound)
}

fn back(name: &str) -> Response {
    Redirect::to(&format!("/sources/{name}")).into_response()
}

/// Back to the source page on `tab`, saying what was saved.
fn saved(name: &str, tab: &str, what: &str) -> Response {
    // Source names are path-safe (letters, digits, '-', '_', '.'; not . or ..).
    let q = serde_urlencoded::to_string([("tab", tab), ("saved", what)]).unwrap_or_default();
    Redirect::to(&format!("/sources/{name}?{q}")).into_response()
}

pub async fn source_edit(
    State(app): State<App>,
    Path(name): Path<String>,
    p: Posted,
) -> Result<Response, WebError> {
    let cur = editable(&app, &name).await?;
    let f = &p.form;
    let settings = || -> Result<Settings, String> {
        let streams = sources::parse_streams(&f.all("stream")).map_err(|e| e.to_string())?;
        if streams.is_empty() {
            return Err("Tick at least one stream to collect (or disable the source).".into());
        }
        let mut schedules = BTreeMap::new();
        for s in StreamName::ALL {
            let v = f.text(&format!("schedule_{}", s.as_str()));
            if !v.is_empty() {
                schedules.insert(s.as_str().to_string(), v);
            }
        }
        let share: f64 = f.text("budget_share").parse().map_err(|_| {
            format!(
                "budget share {:?} is not a number between 0 and 1",
                f.text("budget_share")
            )
        })?;
        let endpoint = f.text("endpoint");
        let region = sources::parse_region(&f.text("region")).map_err(|e| e.to_string())?;
        // The same guard as on add: a Kandji host, or a custom URL only when the server
        // allows it.
        let allow_custom =
            app.allow_custom_endpoints || (cur.allow_custom && endpoint == cur.endpoint);
        kandji_api::ApiBase::parse(&endpoint, region, allow_custom)
            .map_err(|e| format!("endpoint: {e}"))?;
        let token_name = f.text("token_name").trim().to_string();
        let rotate = f.text("rotate_after_days");
        let rotate_after_days = match rotate.trim() {
            "" => None,
            v => Some(
                v.parse::<i64>()
                    .map_err(|_| format!("rotate after {v:?} is not a whole number of days"))?,
            ),
        };
        let reserve = f.text("reserve_for_others");
        let reserve_for_others = match reserve.trim() {
            "" => None,
            v => Some(v.parse::<f64>().map_err(|_| {
                format!("reserve for other tools {v:?} is not a number between 0 and 0.9")
            })?),
        };
        Ok(Settings {
            hygiene: crate::store::ConsoleHygiene {
                token_name: (!token_name.is_empty()).then_some(token_name),
                rotate_after_days,
                reserve_for_others,
            },
            endpoint,
            region,
            enabled: cur.enabled,
            budget_share: share,
            streams,
            schedules,
            filters: Filters {
                blueprints: f.all("blueprint"),
                tags: f.all("tag"),
                device_types: f.all("device_type"),
            },
        })
    };
    let refused = match settings() {
        Ok(s) => match sources::update(&app.store, &name, s).await {
            Ok(()) => None,
            Err(e) => Some(e.to_string()),
        },
        Err(e) => Some(e),
    };
    if let Some(error) = refused {
        tracing::info!(source = %name, %error, "console source edit refused");
        let ctx = SourceCtx {
            edit: Some((f, error)),
            tab: "settings",
            ..Default::default()
        };
        return source_view(&app, p.session.csrf.clone(), name, ctx, false).await;
    }
    tracing::info!(source = %name, "console source edited");
    app.supervisor.poke();
    Ok(saved(&name, "settings", "settings"))
}

pub async fn source_token(
    State(app): State<App>,
    Path(name): Path<String>,
    p: Posted,
) -> Result<Response, WebError> {
    editable(&app, &name).await?;
    let token = p.form.get("token").unwrap_or("").trim().to_string();
    let refused = if token.is_empty() {
        Some("Paste the new token.".to_string())
    } else {
        sources::rotate_token(
            &app.store,
            &app.catalog.cipher,
            &name,
            &SecretString::from(token),
        )
        .await
        .err()
        .map(|e| {
            format!(
                "{e} (The token you pasted is not written back into the page: paste it once \
                 more.)"
            )
        })
    };
    if let Some(error) = refused {
        // Said next to the field; the refused token is not echoed back into the page.
        tracing::info!(source = %name, %error, "console token rotation refused");
        let ctx = SourceCtx {
            token_error: error,
            tab: "token",
            ..Default::default()
        };
        return source_view(&app, p.session.csrf.clone(), name, ctx, false).await;
    }
    tracing::info!(source = %name, "console source token rotated");
    // A new token may have other permissions: probe again before the engine restarts.
    recheck(&app, &name).await?;
    // Restart the runtime on the new token now (reconcile waits for the old one to stop), and
    // run every stream at once: a source in auth_error recovers without waiting for its
    // schedule, or for a "sync now" that could reach the runtime being replaced.
    app.supervisor.reconcile().await?;
    app.supervisor.sync_now(&name, None);
    Ok(saved(&name, "token", "token"))
}

/// "Review token": looks for privileges the collector does not need (safe probes: GET with
/// the nil device id on the device-secret endpoints), with the running source's client and
/// budget, and keeps the result.
pub async fn source_review_token(
    State(app): State<App>,
    Path(name): Path<String>,
    _p: Posted,
) -> Result<Response, WebError> {
    let Some(rt) = app.supervisor.runtime(&name) else {
        return Err(WebError::BadRequest(
            "The source is not running (disabled, or not started yet).".into(),
        ));
    };
    crate::check::review_and_keep(&rt).await?;
    rt.check_health().await;
    Ok(saved(&name, "status", "review"))
}

/// "Re-check permissions": probes every stream with the source's token and updates the table.
pub async fn source_recheck(
    State(app): State<App>,
    Path(name): Path<String>,
    _p: Posted,
) -> Result<Response, WebError> {
    editable(&app, &name).await?;
    recheck(&app, &name).await?;
    app.supervisor.poke();
    Ok(saved(&name, "status", "recheck"))
}

async fn recheck(app: &App, name: &str) -> Result<(), WebError> {
    let source = editable(app, name)
        .await?
        .resolve(&app.catalog.cipher)
        .map_err(|e| WebError::BadRequest(e.to_string()))?;
    super::access::recheck(&app.store, &source)
        .await
        .map_err(WebError::Internal)?;
    Ok(())
}

pub async fn source_enable(
    State(app): State<App>,
    Path(name): Path<String>,
    p: Posted,
) -> Result<Response, WebError> {
    editable(&app, &name).await?;
    let on = p.form.text("enabled") == "1";
    sources::set_enabled(&app.store, &name, on).await?;
    tracing::info!(source = %name, enabled = on, "console source toggled");
    app.supervisor.poke();
    Ok(saved(
        &name,
        "manage",
        if on { "enabled" } else { "disabled" },
    ))
}

#[derive(Template)]
#[template(path = "delete.html")]
struct DeletePage {
    title: String,
    csrf: String,
    name: String,
}

/// The confirmation a delete needs (with "also purge collected data").
pub async fn source_delete_page(
    State(app): State<App>,
    Admin(s): Admin,
    Path(name): Path<String>,
) -> Result<Response, WebError> {
    editable(&app, &name).await?;
    render(&DeletePage {
        title: format!("Delete {name}?"),
        csrf: s.csrf,
        name,
    })
}

pub async fn source_delete(
    State(app): State<App>,
    Path(name): Path<String>,
    p: Posted,
) -> Result<Response, WebError> {
    editable(&app, &name).await?;
    if p.form.get("confirm") != Some("1") {
        // A one-click delete (an old form, a stray post): ask first.
        // (Console source names are letters, digits, `-`, `_` and `.`: no escaping needed.)
        return Ok(Redirect::to(&format!("/sources/{name}/delete")).into_response());
    }
    if p.form.checked("purge") {
        // Stop its runtime first (reconcile waits for it), so no page commits after the purge.
        sources::delete(&app.store, &name).await?;
        app.supervisor.reconcile().await?;
        let rows = app.store.purge_source(&name).await?;
        tracing::info!(source = %name, rows, "console source deleted and its data purged");
    } else {
        sources::delete(&app.store, &name).await?;
        tracing::info!(source = %name, "console source deleted");
    }
    app.supervisor.poke();
    Ok(Redirect::to("/sources").into_response())
}

pub async fn source_sync(
    State(app): State<App>,
    Path(name): Path<String>,
    p: Posted,
) -> Result<Response, WebError> {
    let stream = match p.form.get("stream") {
        Some(s) if !s.is_empty() => Some(
            StreamName::parse(s).ok_or_else(|| WebError::BadRequest("unknown stream".into()))?,
        ),
        _ => None,
    };
    if !app.supervisor.sync_now(&name, stream) {
        return Err(WebError::BadRequest(
            "The source is not running (disabled, or not started yet).".into(),
        ));
    }
    Ok(back(&name))
}

fn svg(body: String) -> Response {
    ([(header::CONTENT_TYPE, "image/svg+xml")], body).into_response()
}

fn last_24h() -> (Vec<i64>, i64) {
    let now_h = now_ms().div_euclid(3_600_000) * 3_600_000;
    let hours: Vec<i64> = (0..24).rev().map(|i| now_h - i * 3_600_000).collect();
    let since = hours.first().copied().unwrap_or(now_h);
    (hours, since)
}

/// The budget chart: our requests per hour against our share and the tenant's limit.
async fn budget_chart(app: &App, name: &str) -> Result<String, WebError> {
    let (hours, since) = last_24h();
    let rows = app.store.budget_series(name, since).await?;
    let others = app.store.others_series(name, since).await?;
    let vals: Vec<f64> = hours
        .iter()
        .map(|h| rows.iter().find(|r| r.0 == *h).map_or(0.0, |r| r.1 as f64))
        .collect();
    let other_vals: Vec<f64> = hours
        .iter()
        .map(|h| {
            others
                .iter()
                .find(|r| r.0 == *h)
                .map_or(0.0, |r| r.1 as f64)
        })
        .collect();
    let this_hour = other_vals.last().copied().unwrap_or(0.0);
    let mut series = vec![("requests".to_string(), vals)];
    if !others.is_empty() {
        series.push((
            format!("other tools: {} this hour", thousands(this_hour as i64)),
            other_vals,
        ));
    }
    let (limit, share) = rows
        .last()
        .map_or((10_000.0, 0.0), |r| (r.2 as f64, r.3 as f64));
    let mut refs = Vec::new();
    if share > 0.0 && share < limit {
        refs.push(super::svg::Reference {
            label: "our share".into(),
            value: share,
            colour: "#b45309",
            band: true,
        });
    }
    refs.push(super::svg::Reference {
        label: "hourly limit".into(),
        value: limit,
        colour: "#b91c1c",
        band: false,
    });
    Ok(super::svg::hourly_bars(
        "API requests per hour",
        "requests",
        &hours,
        &series,
        &refs,
    ))
}

/// The records chart: records collected per hour, stacked by category in a fixed order and
/// colour.
async fn records_chart(app: &App, name: &str) -> Result<String, WebError> {
    let (hours, since) = last_24h();
    let rows = app.store.record_series(name, since).await?;
    let mut cats: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (h, cat, n) in rows {
        let v = cats.entry(cat).or_insert_with(|| vec![0.0; hours.len()]);
        if let Some(i) = hours.iter().position(|x| *x == h) {
            v[i] += n as f64;
        }
    }
    let mut series: Vec<(String, Vec<f64>)> = cats.into_iter().collect();
    series.sort_by_key(|(c, _)| (super::svg::category_rank(c), c.clone()));
    Ok(super::svg::hourly_bars(
        "Records collected per hour",
        "records",
        &hours,
        &series,
        &[],
    ))
}

pub async fn budget_svg(
    State(app): State<App>,
    Admin(_): Admin,
    Path(name): Path<String>,
) -> Result<Response, WebError> {
    Ok(svg(budget_chart(&app, &name).await?))
}

pub async fn records_svg(
    State(app): State<App>,
    Admin(_): Admin,
    Path(name): Path<String>,
) -> Result<Response, WebError> {
    Ok(svg(records_chart(&app, &name).await?))
}

// ---------- explorer ----------

#[derive(Template)]
#[template(path = "events.html")]
struct EventsPage {
    title: String,
    csrf: String,
    f: EventFilter,
    events: Vec<EventView>,
    next: String,
    sources: Vec<String>,
    categories: Vec<String>,
    types: Vec<String>,
    severities: Vec<String>,
    /// Why the filter was refused (a bad date), shown above the form.
    error: String,
    /// Time-range presets: (label, query string), the other filters kept.
    presets: Vec<(String, String)>,
    /// The first (newest) page's href, when this is a later page.
    first: String,
    /// The newer page's query string, when there is one.
    prev: String,
}

fn v(s: &Option<String>) -> String {
    s.clone().unwrap_or_default()
}

fn qs<T: serde::Serialize>(t: &T) -> String {
    serde_urlencoded::to_string(t).unwrap_or_default()
}

pub async fn events_page(
    State(app): State<App>,
    Admin(s): Admin,
    Query(f): Query<EventFilter>,
) -> Result<Response, WebError> {
    let error = f.problem();
    let now = time::OffsetDateTime::now_utc();
    let presets = [("Last hour", 1), ("24 h", 24), ("7 days", 24 * 7)]
        .into_iter()
        .map(|(label, hours)| {
            let from = (now - time::Duration::hours(hours))
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            let q = qs(&EventFilter {
                from: Some(from),
                to: None,
                after: None,
                before: None,
                ..f.clone()
            });
            (label.to_string(), q)
        })
        .chain(std::iter::once((
            "All time".to_string(),
            qs(&EventFilter {
                from: None,
                to: None,
                after: None,
                before: None,
                ..f.clone()
            }),
        )))
        .collect();
    let page = match error {
        Some(_) => Default::default(),
        None => {
            let mut page = app.store.events_page(f.clone(), PAGE).await?;
            super::model::name_actors(&app, &mut page.events).await?;
            page
        }
    };
    // The newest page's link, from any page that has a newer one (an href: with no other
    // filter its query string is empty).
    let first = if page.prev.is_some() {
        format!(
            "/events?{}",
            qs(&EventFilter {
                after: None,
                before: None,
                ..f.clone()
            })
        )
    } else {
        String::new()
    };
    let menus = app.store.menus().await?;
    let (sources, categories, types) = (menus.sources, menus.categories, menus.event_types);
    let severities: Vec<String> = ["informational", "low", "medium", "high", "critical"]
        .map(String::from)
        .to_vec();
    let next = page
        .next
        .map(|n| {
            qs(&EventFilter {
                after: Some(n),
                before: None,
                ..f.clone()
            })
        })
        .unwrap_or_default();
    let prev = page
        .prev
        .map(|n| {
            qs(&EventFilter {
                after: None,
                before: Some(n),
                ..f.clone()
            })
        })
        .unwrap_or_default();
    let page = EventsPage {
        title: "Events".into(),
        csrf: s.csrf,
        f,
        events: page.events,
        next,
        sources,
        categories,
        types,
        severities,
        error: error.clone().unwrap_or_default(),
        presets,
        first,
        prev,
    };
    let mut res = render(&page)?;
    if error.is_some() {
        *res.status_mut() = StatusCode::BAD_REQUEST;
    }
    Ok(res)
}

#[derive(Template)]
#[template(path = "event.html")]
struct EventPage {
    title: String,
    csrf: String,
    e: EventDetail,
}

pub async fn event_page(
    State(app): State<App>,
    Admin(s): Admin,
    Path(seq): Path<i64>,
) -> Result<Response, WebError> {
    let mut e = app.store.event(seq).await?.ok_or(WebError::NotFound)?;
    super::model::name_detail_actors(&app, &mut e).await?;
    render(&EventPage {
        title: format!("Event {seq}"),
        csrf: s.csrf,
        e,
    })
}

#[derive(Template)]
#[template(path = "devices.html")]
struct DevicesPage {
    title: String,
    csrf: String,
    f: DeviceFilter,
    devices: Vec<DeviceView>,
    platforms: Vec<String>,
    blueprints: Vec<String>,
    /// The sources with data, for the source filter.
    sources: Vec<String>,
    sorts: Vec<&'static str>,
    query: String,
    next: String,
    prev: String,
}

pub async fn devices_page(
    State(app): State<App>,
    Admin(s): Admin,
    Query(f): Query<DeviceFilter>,
) -> Result<Response, WebError> {
    let devices = app.store.devices_page(f.clone()).await?;
    let menus = app.store.menus().await?;
    let (platforms, blueprints, sources) = (menus.platforms, menus.blueprints, menus.sources);
    let page_n = f.page.unwrap_or(0);
    let next = if devices.len() == PAGE {
        qs(&DeviceFilter {
            page: Some(page_n + 1),
            ..f.clone()
        })
    } else {
        String::new()
    };
    let prev = if page_n > 0 {
        qs(&DeviceFilter {
            page: Some(page_n - 1),
            ..f.clone()
        })
    } else {
        String::new()
    };
    let query = qs(&DeviceFilter {
        page: None,
        ..f.clone()
    });
    render(&DevicesPage {
        title: "Devices".into(),
        csrf: s.csrf,
        f,
        devices,
        platforms,
        blueprints,
        sources,
        sorts: device_sorts(),
        query,
        next,
        prev,
    })
}

pub async fn devices_csv(
    State(app): State<App>,
    Admin(_): Admin,
    Query(f): Query<DeviceFilter>,
) -> Result<Response, WebError> {
    // Streamed: rows go out as the store reads them, a few hundred at a time, so a CSV of
    // any size takes the same memory.
    let (tx, rx) = tokio::sync::mpsc::channel::<DeviceView>(1024);
    let store = app.store.clone();
    tokio::spawn(async move {
        if let Err(error) = store.stream_devices(f, tx).await {
            tracing::warn!(%error, "devices CSV stopped");
        }
    });
    let header_row = [
        "source",
        "device_id",
        "name",
        "serial",
        "platform",
        "model",
        "os_version",
        "blueprint",
        "tags",
        "user",
        "last_check_in",
        "compliance_pass",
        "compliance_fail",
        "filevault",
        "apps",
    ];
    let chunks = futures::stream::unfold((rx, Some(header_row)), |(mut rx, header)| async move {
        let mut w = csv::Writer::from_writer(Vec::with_capacity(64 * 1024));
        let had_header = header.is_some();
        if let Some(h) = header {
            let _ = w.write_record(h);
        }
        match rx.recv().await {
            Some(d) => device_csv_row(&mut w, &d),
            None if had_header => {}
            None => return None,
        }
        for _ in 0..511 {
            match rx.try_recv() {
                Ok(d) => device_csv_row(&mut w, &d),
                Err(_) => break,
            }
        }
        let chunk = bytes::Bytes::from(w.into_inner().unwrap_or_default());
        Some((Ok::<_, std::io::Error>(chunk), (rx, None)))
    });
    let body = axum::body::Body::from_stream(chunks);
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"devices.csv\"",
            ),
        ],
        body,
    )
        .into_response())
}

/// One CSV row of a device. Cells starting with = + - @ are prefixed so spreadsheets never
/// run them.
fn device_csv_row(w: &mut csv::Writer<Vec<u8>>, d: &DeviceView) {
    let cell = |s: &str| -> String {
        if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            format!("'{s}")
        } else {
            s.to_string()
        }
    };
    let _ = w.write_record([
        cell(&d.source),
        cell(&d.id),
        cell(&d.name),
        cell(&d.serial),
        cell(&d.platform),
        cell(&d.model),
        cell(&d.os_version),
        cell(&d.blueprint),
        cell(&d.tags),
        cell(&d.user),
        d.last_check_in.clone().unwrap_or_default(),
        d.compliance_pass.to_string(),
        d.compliance_fail.to_string(),
        cell(&d.filevault),
        d.apps.to_string(),
    ]);
}

#[derive(Template)]
#[template(path = "device.html")]
struct DevicePage {
    title: String,
    csrf: String,
    d: DeviceDetail,
}

pub async fn device_page(
    State(app): State<App>,
    Admin(s): Admin,
    Path((source, id)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let d = app
        .store
        .device(&source, &id)
        .await?
        .ok_or(WebError::NotFound)?;
    render(&DevicePage {
        title: format!("Device {}", d.device.name),
        csrf: s.csrf,
        d,
    })
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    title: String,
    csrf: String,
    q: String,
    users: Vec<UserView>,
    /// 1-based, for the pager.
    page: usize,
    /// Query strings of the previous and next pages ("" at either end).
    prev: String,
    next: String,
}

pub async fn users_page(
    State(app): State<App>,
    Admin(s): Admin,
    Query(lq): Query<ListQuery>,
) -> Result<Response, WebError> {
    let q = v(&lq.q);
    let page = lq.page.unwrap_or(0);
    let users = app.store.users_page(Some(q.clone()), page).await?;
    let link = |p: usize| {
        let mut pairs = vec![("page", p.to_string())];
        if !q.is_empty() {
            pairs.insert(0, ("q", q.clone()));
        }
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    };
    // A full page may have a next one (users were once capped at the first 50).
    let next = if users.len() == crate::store::PAGE {
        link(page + 1)
    } else {
        String::new()
    };
    let prev = if page > 0 {
        link(page - 1)
    } else {
        String::new()
    };
    render(&UsersPage {
        title: "Users".into(),
        csrf: s.csrf,
        q,
        users,
        page: page + 1,
        prev,
        next,
    })
}

#[derive(Template)]
#[template(path = "apps.html")]
struct AppsPage {
    title: String,
    csrf: String,
    q: String,
    version: String,
    bundle: String,
    apps: Vec<AppSummary>,
    devices: Vec<AppDevice>,
    /// The landing page (nothing searched yet).
    overview: Option<crate::store::AppsOverview>,
}

pub async fn apps_page(
    State(app): State<App>,
    Admin(s): Admin,
    Query(lq): Query<ListQuery>,
) -> Result<Response, WebError> {
    let (q, version, bundle) = (v(&lq.q), v(&lq.version), v(&lq.bundle));
    let ver = Some(version.trim().to_string()).filter(|v| !v.is_empty());
    let landing = q.trim().is_empty() && bundle.is_empty();
    let overview = if landing {
        Some(app.store.apps_overview(15).await?)
    } else {
        None
    };
    let (apps, devices) = if landing {
        (Vec::new(), Vec::new())
    } else {
        let summary_q = if bundle.is_empty() { &q } else { &bundle };
        let b = Some(bundle.clone()).filter(|b| !b.is_empty());
        app.store.apps_search(summary_q.clone(), ver, b).await?
    };
    render(&AppsPage {
        title: "Apps".into(),
        csrf: s.csrf,
        q,
        version,
        bundle,
        apps,
        devices,
        overview,
    })
}

/// 3120 → "3,120".
fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

#[cfg(test)]
mod tests {
    use super::relative;

    #[test]
    fn posture_labels() {
        assert_eq!(
            super::posture_label("gatekeeper_and_xprotect"),
            "Gatekeeper and XProtect"
        );
        assert_eq!(super::posture_label("remote_desktop"), "Remote desktop");
        assert_eq!(super::posture_label(""), "");
    }

    #[test]
    fn relative_times() {
        let now = 1_000_000_000;
        assert_eq!(relative(now, now), "just now");
        assert_eq!(relative(now - 30_000, now), "30 s ago");
        assert_eq!(relative(now - 180_000, now), "3 min ago");
        assert_eq!(relative(now - 7_200_000, now), "2 h ago");
        assert_eq!(relative(now - 3 * 86_400_000, now), "3 days ago");
        assert_eq!(relative(now + 840_000, now), "in 14 min");
    }

    #[test]
    fn the_time_filter_escapes_what_is_not_a_time() {
        let v = askama::NO_VALUES;
        assert_eq!(
            super::filters::when("<b>due</b>", v).unwrap(),
            "&#60;b&#62;due&#60;/b&#62;"
        );
        let t = super::filters::when("2026-01-02T03:04:05Z", v).unwrap();
        assert!(
            t.starts_with(
                "<time datetime=\"2026-01-02T03:04:05Z\" title=\"2026-01-02 03:04:05 UTC\">"
            ),
            "{t}"
        );
    }
}
