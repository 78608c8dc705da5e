//! What the console's pages and its JSON API both show: the sources table (each source's
//! worst stream state) and the list query. Neither renders here.

use serde::Deserialize;
use serde_json::Value;

use super::sources;
use super::{App, WebError};

#[derive(Deserialize, serde::Serialize, Default, Clone)]
pub struct ListQuery {
    pub q: Option<String>,
    pub version: Option<String>,
    pub bundle: Option<String>,
    pub page: Option<usize>,
}

#[derive(Clone)]
pub struct SourceRow {
    pub name: String,
    pub endpoint: String,
    pub state: String,
    pub read_only: bool,
    pub enabled: bool,
    pub token_last4: String,
    pub streams: usize,
    pub problem: String,
}

/// The worst state among a source's streams, for its badge.
pub fn overall(states: &[String], enabled: bool) -> String {
    if !enabled {
        return "disabled".into();
    }
    const ORDER: [&str; 9] = [
        "auth_error",
        "failing",
        "missing_permission",
        "not_licensed",
        "degraded",
        "backing_off",
        "syncing",
        "pending",
        "healthy",
    ];
    ORDER
        .iter()
        .find(|o| states.iter().any(|s| s == *o))
        .map_or("pending", |s| s)
        .to_string()
}

pub async fn source_rows(app: &App) -> Result<Vec<SourceRow>, WebError> {
    let status = {
        let store = app.store.clone();
        crate::engine::status_rows(&store, None)
            .await
            .map_err(|e| WebError::Internal(e.to_string()))?
    };
    let states_of = |name: &str, streams: &[String]| -> Vec<String> {
        status
            .iter()
            .filter(|r| r.get("source").and_then(Value::as_str) == Some(name))
            .filter(|r| {
                // Chosen streams, and those the token may not read (chosen or not).
                r.get("stream")
                    .and_then(Value::as_str)
                    .is_some_and(|s| streams.iter().any(|x| x == s))
                    || r.get("state")
                        .and_then(Value::as_str)
                        .is_some_and(super::access::is_access_state)
            })
            .filter_map(|r| r.get("state").and_then(Value::as_str).map(str::to_string))
            .collect()
    };
    let mut out = Vec::new();
    for s in &app.catalog.config_sources {
        let streams: Vec<String> = s.streams.iter().map(|x| x.as_str().to_string()).collect();
        out.push(SourceRow {
            name: s.name.clone(),
            endpoint: s.base.as_str().to_string(),
            state: overall(&states_of(&s.name, &streams), s.enabled),
            read_only: true,
            enabled: s.enabled,
            token_last4: String::new(),
            streams: streams.len(),
            problem: String::new(),
        });
    }
    let broken = app.supervisor.broken();
    for s in sources::list(&app.store).await? {
        if app.catalog.is_config_source(&s.name) {
            continue;
        }
        let problem = broken
            .iter()
            .find(|b| b.name == s.name)
            .map(|b| b.message.clone())
            .unwrap_or_default();
        out.push(SourceRow {
            state: if problem.is_empty() {
                overall(&states_of(&s.name, &s.streams), s.enabled)
            } else {
                "failing".into()
            },
            name: s.name,
            endpoint: s.endpoint,
            read_only: false,
            enabled: s.enabled,
            token_last4: s.token_last4,
            streams: s.streams.len(),
            problem,
        });
    }
    Ok(out)
}

/// Leads each audit summary with its actor's e-mail, where the collector knows it (the
/// audit feed names actors by id only; see `Store::actor_emails`), and sets `actor`.
pub async fn name_actors(
    app: &App,
    events: &mut [crate::store::EventView],
) -> Result<(), WebError> {
    use crate::streams::audit_events;
    let audit = |e: &crate::store::EventView| e.stream == audit_events::SPEC.name;
    let pairs: Vec<(String, String)> = events
        .iter()
        .filter(|e| audit(e))
        .filter_map(|e| Some((e.source.clone(), e.user_id.clone()?)))
        .collect();
    if pairs.is_empty() {
        return Ok(());
    }
    let emails = app.store.actor_emails(pairs).await?;
    for e in events.iter_mut().filter(|e| audit(e)) {
        let Some(id) = e.user_id.clone() else {
            continue;
        };
        if let Some(email) = emails.get(&(e.source.clone(), id.clone())) {
            if let Some(s) = audit_events::with_actor(&e.summary, &id, email) {
                e.summary = s;
            }
            e.actor = Some(email.clone());
        }
    }
    Ok(())
}

/// [`name_actors`] for an event page: the event and its related records.
pub async fn name_detail_actors(
    app: &App,
    d: &mut crate::store::EventDetail,
) -> Result<(), WebError> {
    name_actors(app, std::slice::from_mut(&mut d.event)).await?;
    let mut related: Vec<crate::store::EventView> =
        d.related.iter().map(|r| r.event.clone()).collect();
    name_actors(app, &mut related).await?;
    for (r, e) in d.related.iter_mut().zip(related) {
        r.event = e;
    }
    Ok(())
}
