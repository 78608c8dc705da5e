//! The JSON API under `/api/` (session cookie, or `Authorization: Bearer` with the key from
//! `KANDJI_COLLECTOR_API_KEY`), `/metrics` for Prometheus, and the health checks.

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::{StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Json, Response};
use serde_json::{Value, json};

use super::model::{ListQuery, source_rows};
use super::{App, WebError};
use crate::store::now_ms;
use crate::store::{
    DeviceDetail, DeviceFilter, DeviceView, EventDetail, EventFilter, EventPage, PAGE, UserView,
};
use crate::streams::StreamName;

/// A caller of the API: a logged-in session (with its CSRF token for writes) or the API key.
pub struct ApiCaller {
    pub csrf: Option<String>,
}

impl FromRequestParts<App> for ApiCaller {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        if app.auth.bearer_ok(&parts.headers) {
            return Ok(ApiCaller { csrf: None });
        }
        match app.auth.session(&parts.headers) {
            Some(s) => Ok(ApiCaller { csrf: Some(s.csrf) }),
            None => Err((
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                Json(json!({"error": "log in or send Authorization: Bearer <KANDJI_COLLECTOR_API_KEY>"})),
            )
                .into_response()),
        }
    }
}

pub async fn sources(State(app): State<App>, _c: ApiCaller) -> Result<Json<Value>, WebError> {
    let rows = source_rows(&app).await?;
    Ok(Json(Value::Array(
        rows.into_iter()
            .map(|r| {
                json!({
                    "name": r.name,
                    "endpoint": r.endpoint,
                    "state": r.state,
                    "read_only": r.read_only,
                    "enabled": r.enabled,
                    "token_last4": (!r.token_last4.is_empty()).then_some(r.token_last4),
                    "streams": r.streams,
                    "problem": (!r.problem.is_empty()).then_some(r.problem),
                })
            })
            .collect(),
    )))
}

pub async fn source(
    State(app): State<App>,
    _c: ApiCaller,
    Path(name): Path<String>,
) -> Result<Json<Value>, WebError> {
    let row = source_rows(&app)
        .await?
        .into_iter()
        .find(|r| r.name == name)
        .ok_or(WebError::NotFound)?;
    let store = app.store.clone();
    let n = name.clone();
    let status = crate::engine::status_rows(&store, Some(&n))
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?;
    let budget = app.supervisor.runtime(&name).map(|rt| {
        let b = rt.budget.state();
        json!({
            "limit": b.limit,
            "share_limit": b.share_limit,
            "spent_this_hour": b.spent_this_hour,
            "remaining": b.remaining,
            "tenant_remaining": b.server_remaining,
            "others_this_hour": b.others_this_hour,
            "others_per_hour": b.others_per_hour.map(f64::round),
            "reserve_for_others": b.reserve_for_others,
            "yielding": b.yielding,
            "exhaustion_in_seconds": b.exhaustion_in.map(|d| d.as_secs()),
        })
    });
    let since = now_ms() - 24 * 3_600_000;
    let n = name.clone();
    let bs = app.store.budget_series(&n, since).await?;
    let others = app.store.others_series(&n, since).await?;
    let others_at = |h: i64| others.iter().find(|o| o.0 == h).map(|o| o.1);
    let rs = app.store.record_series(&n, since).await?;
    let console = super::sources::get(&app.store, &name).await?;
    Ok(Json(json!({
        "name": row.name,
        "endpoint": row.endpoint,
        "state": row.state,
        "read_only": row.read_only,
        "enabled": row.enabled,
        "token_last4": (!row.token_last4.is_empty()).then_some(row.token_last4),
        "settings": console,
        "streams": status,
        "budget": budget,
        "budget_samples": bs.iter().map(|(h, r, l, s)| json!({"hour": crate::streams::fetch::rfc3339(*h), "requests": r, "limit": l, "share": s, "others": others_at(*h)})).collect::<Vec<_>>(),
        "record_samples": rs.iter().map(|(h, c, n)| json!({"hour": crate::streams::fetch::rfc3339(*h), "category": c, "records": n})).collect::<Vec<_>>(),
    })))
}

#[derive(serde::Deserialize, Default)]
pub struct SyncBody {
    pub stream: Option<String>,
}

/// `POST /api/sources/{name}/sync[?stream=]`: with a session, needs the `X-CSRF-Token` header.
pub async fn sync(
    State(app): State<App>,
    c: ApiCaller,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
    Query(b): Query<SyncBody>,
) -> Result<Json<Value>, WebError> {
    if let Some(csrf) = &c.csrf {
        let got = headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !super::auth::ct_eq(got, csrf) {
            return Err(WebError::Forbidden("X-CSRF-Token header missing or stale"));
        }
    }
    let stream = match b.stream.as_deref() {
        Some(s) => Some(
            StreamName::parse(s).ok_or_else(|| WebError::BadRequest("unknown stream".into()))?,
        ),
        None => None,
    };
    if !app.supervisor.sync_now(&name, stream) {
        return Err(WebError::BadRequest("the source is not running".into()));
    }
    Ok(Json(json!({"ok": true})))
}

pub async fn status(State(app): State<App>, _c: ApiCaller) -> Result<Json<Value>, WebError> {
    let store = app.store.clone();
    let rows = crate::engine::status_rows(&store, None)
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?;
    Ok(Json(Value::Array(rows)))
}

pub async fn events(
    State(app): State<App>,
    _c: ApiCaller,
    Query(f): Query<EventFilter>,
) -> Result<Json<EventPage>, WebError> {
    if let Some(problem) = f.problem() {
        return Err(WebError::BadRequest(problem));
    }
    let mut page = app.store.events_page(f, PAGE).await?;
    super::model::name_actors(&app, &mut page.events).await?;
    Ok(Json(page))
}

pub async fn event(
    State(app): State<App>,
    _c: ApiCaller,
    Path(seq): Path<i64>,
) -> Result<Json<EventDetail>, WebError> {
    let mut e = app.store.event(seq).await?.ok_or(WebError::NotFound)?;
    super::model::name_detail_actors(&app, &mut e).await?;
    Ok(Json(e))
}

pub async fn devices(
    State(app): State<App>,
    _c: ApiCaller,
    Query(f): Query<DeviceFilter>,
) -> Result<Json<Vec<DeviceView>>, WebError> {
    Ok(Json(app.store.devices_page(f).await?))
}

pub async fn device(
    State(app): State<App>,
    _c: ApiCaller,
    Path((source, id)): Path<(String, String)>,
) -> Result<Json<DeviceDetail>, WebError> {
    Ok(Json(
        app.store
            .device(&source, &id)
            .await?
            .ok_or(WebError::NotFound)?,
    ))
}

pub async fn users(
    State(app): State<App>,
    _c: ApiCaller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<UserView>>, WebError> {
    Ok(Json(
        app.store
            .users_page(q.q.clone(), q.page.unwrap_or(0))
            .await?,
    ))
}

pub async fn apps(
    State(app): State<App>,
    _c: ApiCaller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, WebError> {
    let ver = q.version.clone().filter(|v| !v.is_empty());
    let bundle = q.bundle.clone().filter(|b| !b.is_empty());
    let (apps, devices) = app
        .store
        .apps_search(q.q.clone().unwrap_or_default(), ver, bundle)
        .await?;
    Ok(Json(json!({"apps": apps, "devices": devices})))
}

/// Prometheus text format. Gauges and counters that mirror the engine's state are refreshed
/// at scrape time.
pub async fn metrics(State(app): State<App>, _c: ApiCaller) -> Result<Response, WebError> {
    let Some(handle) = app.metrics.clone() else {
        return Err(WebError::Internal(
            "another metrics recorder is installed in this process".into(),
        ));
    };
    for (rt, _) in app.supervisor.runtimes() {
        let src = rt.name().to_string();
        let st = rt.client.stats();
        for (status, v) in [
            ("ok", st.ok),
            ("rate_limited", st.rate_limited),
            ("server_error", st.server_errors),
            ("transport_error", st.transport_errors),
            ("decode_error", st.decode_errors),
            ("client_error", st.client_errors),
            ("gave_up", st.gave_up),
        ] {
            metrics::counter!("kandji_requests_total", "source" => src.clone(), "status" => status)
                .absolute(v);
        }
        metrics::counter!("kandji_request_attempts_total", "source" => src.clone())
            .absolute(st.attempts);
        metrics::counter!("kandji_request_retries_total", "source" => src.clone())
            .absolute(st.retries);
        let b = rt.budget.state();
        metrics::gauge!("kandji_budget_remaining", "source" => src.clone())
            .set(f64::from(b.remaining));
        metrics::gauge!("kandji_budget_spent_this_hour", "source" => src.clone())
            .set(f64::from(b.spent_this_hour));
        metrics::gauge!("kandji_budget_share_limit", "source" => src.clone())
            .set(f64::from(b.share_limit));
        if let Some(o) = b.others_this_hour {
            metrics::gauge!("kandji_budget_other_consumers_requests", "source" => src.clone())
                .set(f64::from(o));
        }
        if let Some(r) = b.server_remaining {
            metrics::gauge!("kandji_budget_tenant_remaining", "source" => src.clone())
                .set(f64::from(r));
        }
        metrics::gauge!("kandji_budget_exhaustion_ahead", "source" => src.clone())
            .set(if b.exhaustion_in.is_some() { 1.0 } else { 0.0 });
        if let Ok(Some(h)) = rt.token_history().await {
            if let Some(age) = h.created_at.or(h.first_seen_at) {
                metrics::gauge!("kandji_token_age_seconds", "source" => src.clone())
                    .set(((now_ms() - age).max(0) / 1000) as f64);
            }
            metrics::gauge!("kandji_token_rotate_after_seconds", "source" => src.clone())
                .set(rt.source.hygiene.rotate_after.as_secs_f64());
            for (kind, state) in [
                ("creator_removed", "token_creator_removed"),
                ("permission_removed", "token_permission_removed"),
                ("deleted", "token_deleted"),
            ] {
                let on = h.warnings.iter().any(|w| w.state() == state);
                metrics::gauge!("kandji_token_warning", "source" => src.clone(), "kind" => kind)
                    .set(if on { 1.0 } else { 0.0 });
            }
        }
        if let Ok(granted) = rt.unneeded_privileges().await {
            metrics::gauge!("kandji_token_unneeded_privileges", "source" => src.clone())
                .set(granted.len() as f64);
        }
    }
    let store = app.store.clone();
    let rows = crate::engine::status_rows(&store, None)
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?;
    let now = time::OffsetDateTime::now_utc();
    for r in rows {
        let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let (src, stream) = (s("source"), s("stream"));
        metrics::counter!("kandji_records_total", "source" => src.clone(), "stream" => stream.clone())
            .absolute(r.get("records_total").and_then(Value::as_u64).unwrap_or(0));
        for st in [
            "healthy",
            "degraded",
            "syncing",
            "backing_off",
            "auth_error",
            "missing_permission",
            "not_licensed",
            "failing",
            "disabled",
            "pending",
        ] {
            metrics::gauge!("kandji_stream_state", "source" => src.clone(), "stream" => stream.clone(), "state" => st)
                .set(if s("state") == st { 1.0 } else { 0.0 });
        }
        if let Some(t) = kandji_api::parse_timestamp(&s("last_success_at")) {
            metrics::gauge!("kandji_checkpoint_lag_seconds", "source" => src, "stream" => stream)
                .set((now - t).as_seconds_f64().max(0.0));
        }
    }
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response())
}

pub async fn readyz(State(app): State<App>) -> Response {
    // The writer must be running (a dead writer means nothing gets stored) and a reader
    // must answer.
    let store_ok = app.store.writer_alive() && app.store.fleet_size("").await.is_ok();
    if store_ok && app.supervisor.is_ready() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting").into_response()
    }
}
