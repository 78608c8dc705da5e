//! Health records: each change of a source's or a stream's state is a first-class record.
//!
//! After every stream run the source's runtime looks at what it knows (the streams' states,
//! the budget, the token's history and last privilege review, the store) and turns it into one
//! state per *subject*: `source` (the worst of its streams), `stream:<name>`, `budget`,
//! `token` and `store`. A subject whose state differs from its last record gets a new record:
//! an event of the `health` stream, committed like any other page (with its outbox rows, so
//! every output of the source receives it), visible in the explorer, mapped to OCSF
//! Application Error (6008). The last record of each subject is the memory: a restart or a
//! handover to another replica reads it back, so a state is recorded once per change.
//!
//! An optional alert webhook ([`AlertWebhook`]) gets a short Slack-compatible message per
//! change (`{"text": …}`), once; a state that stays bad is posted again after
//! `resend_after`.

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::store::{Batch, EventRow, StatusRow, Store, StoreError};

/// The events' stream (and category).
pub const STREAM: &str = "health";

/// What [`observe`] needs to know about a source.
#[derive(Debug, Default)]
pub struct Inputs<'a> {
    pub rows: &'a [StatusRow],
    /// The tenant as a whole is on course to run out of requests before the hour ends
    /// (how long until it does).
    pub exhaustion_in: Option<Duration>,
    /// The token's warnings (from its history in the audit feed).
    pub token: Vec<(&'static str, String)>,
    /// What the last privilege review found granted (`"FileVault recovery keys"`).
    pub unneeded_privileges: Vec<String>,
    /// The store cannot be written, and why.
    pub store_problem: Option<String>,
}

/// One subject's state and what to tell people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub state: String,
    pub message: String,
}

/// How bad a state is: the record's severity (and the alert's emoji).
pub fn severity(state: &str) -> &'static str {
    match state {
        "healthy" => "info",
        "auth_error" | "token_deleted" | "store_problem" => "critical",
        "failing" | "missing_permission" | "token_permission_removed" | "token_creator_removed" => {
            "high"
        }
        _ => "medium",
    }
}

/// The stream states that make a record, most serious first. The others (syncing, pending,
/// backing off) are passing: they keep the last recorded state. Not licensed and disabled
/// streams are not the source's health.
const STREAM_STATES: [&str; 5] = [
    "auth_error",
    "failing",
    "missing_permission",
    "degraded",
    "healthy",
];

/// Each subject's state now. Subjects with nothing to say (a stream that is syncing) are
/// left out: their last record stands.
pub fn observe(i: &Inputs<'_>) -> BTreeMap<String, Observed> {
    let mut out = BTreeMap::new();
    let mut worst: Option<(usize, &StatusRow)> = None;
    for r in i.rows {
        let Some(rank) = STREAM_STATES.iter().position(|s| *s == r.state) else {
            continue;
        };
        let message = match r.state.as_str() {
            "healthy" => "its last run succeeded".to_string(),
            _ => r
                .last_error_message
                .clone()
                .unwrap_or_else(|| "no detail".into()),
        };
        out.insert(
            format!("stream:{}", r.stream),
            Observed {
                state: r.state.clone(),
                message,
            },
        );
        if worst.is_none_or(|(w, _)| rank < w) {
            worst = Some((rank, r));
        }
    }
    if let Some((_, r)) = worst {
        let bad: Vec<&str> = i
            .rows
            .iter()
            .filter(|x| x.state == r.state)
            .map(|x| x.stream.as_str())
            .collect();
        out.insert(
            "source".into(),
            Observed {
                state: r.state.clone(),
                message: if r.state == "healthy" {
                    "every stream is healthy".into()
                } else {
                    format!("{}: {}", r.state.replace('_', " "), bad.join(", "))
                },
            },
        );
    }
    out.insert(
        "budget".into(),
        match i.exhaustion_in {
            Some(d) => Observed {
                state: "budget_exhaustion_ahead".into(),
                message: format!(
                    "the tenant is on course to run out of its hourly API requests in about {} \
                     minutes, before the hour ends: every tool on the tenant will get 429s",
                    d.as_secs().div_ceil(60)
                ),
            },
            None => Observed {
                state: "healthy".into(),
                message: "the tenant's hourly budget lasts the hour".into(),
            },
        },
    );
    let rank = |st: &str| match severity(st) {
        "critical" => 0,
        "high" => 1,
        _ => 2,
    };
    let worst = i.token.iter().min_by_key(|(st, _)| rank(st));
    let token = if let Some((state, _)) = worst {
        Observed {
            state: (*state).to_string(),
            message: i
                .token
                .iter()
                .map(|(_, m)| m.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        }
    } else if !i.unneeded_privileges.is_empty() {
        Observed {
            state: "token_unneeded_privileges".into(),
            message: format!(
                "the token can read {}; the collector doesn't need that, untick it in Kandji",
                i.unneeded_privileges.join(", ")
            ),
        }
    } else {
        Observed {
            state: "healthy".into(),
            message: "the token has no warning".into(),
        }
    };
    out.insert("token".into(), token);
    out.insert(
        "store".into(),
        match &i.store_problem {
            Some(p) => Observed {
                state: "store_problem".into(),
                message: p.clone(),
            },
            None => Observed {
                state: "healthy".into(),
                message: "the store takes writes".into(),
            },
        },
    );
    out
}

/// A recorded change.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub subject: String,
    pub state: String,
    pub previous: Option<String>,
    pub message: String,
    pub at: i64,
}

impl Change {
    fn raw(&self, source: &str) -> Value {
        let (kind, stream) = match self.subject.split_once(':') {
            Some((k, s)) => (k, Some(s)),
            None => (self.subject.as_str(), None),
        };
        json!({
            "source": source,
            "subject": self.subject,
            "kind": kind,
            "stream": stream,
            "state": self.state,
            "previous": self.previous,
            "severity": severity(&self.state),
            "message": self.message,
            "at": time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.at) * 1_000_000)
                .ok()
                .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
        })
    }

    /// The line people read: `acme: stream threats is failing (was healthy): …`.
    pub fn summary(&self, source: &str) -> String {
        let was = self
            .previous
            .as_deref()
            .map(|p| format!(" (was {})", p.replace('_', " ")))
            .unwrap_or_default();
        format!(
            "{source}: {} is {}{was}: {}",
            self.subject.replace(':', " "),
            self.state.replace('_', " "),
            self.message
        )
    }
}

/// The last recorded state of each subject, and the alerts posted.
#[derive(Debug, Default)]
pub struct Memory {
    /// subject → (state, recorded at ms).
    states: BTreeMap<String, (String, i64)>,
    /// subject → (state, posted at ms).
    posted: BTreeMap<String, (String, i64)>,
}

impl Memory {
    /// Reads the last record of each subject back from the store.
    pub async fn load(store: &Store, source: &str) -> Result<Memory, StoreError> {
        let mut m = Memory::default();
        for (at, _, raw) in store.events_of_types(source, STREAM, Vec::new()).await? {
            let Ok(v) = serde_json::from_str::<Value>(&raw) else {
                continue;
            };
            let (Some(subject), Some(state)) = (
                v.get("subject").and_then(Value::as_str),
                v.get("state").and_then(Value::as_str),
            ) else {
                continue;
            };
            m.states
                .insert(subject.to_string(), (state.to_string(), at));
            // Recorded before the restart: posted then (or given up on), not again.
            m.posted
                .insert(subject.to_string(), (state.to_string(), at));
        }
        Ok(m)
    }

    /// The last recorded state of a subject.
    pub fn state(&self, subject: &str) -> Option<&str> {
        self.states.get(subject).map(|(s, _)| s.as_str())
    }

    /// The changes from the last records to `now`: a first observation that is healthy is
    /// recorded too (it is the baseline the next change is read against).
    pub fn changes(&self, now: &BTreeMap<String, Observed>, at: i64) -> Vec<Change> {
        now.iter()
            .filter_map(|(subject, o)| {
                let previous = self.states.get(subject).map(|(s, _)| s.clone());
                (previous.as_deref() != Some(o.state.as_str())).then(|| Change {
                    subject: subject.clone(),
                    state: o.state.clone(),
                    previous,
                    message: o.message.clone(),
                    at,
                })
            })
            .collect()
    }

    fn recorded(&mut self, changes: &[Change]) {
        for c in changes {
            self.states
                .insert(c.subject.clone(), (c.state.clone(), c.at));
        }
    }
}

/// Records the changes as `health` events of the source (one commit, with their outbox rows).
pub async fn record(
    store: &Store,
    source: &str,
    changes: &[Change],
    at: i64,
) -> Result<(), StoreError> {
    if changes.is_empty() {
        return Ok(());
    }
    let mut batch = Batch::new(source, STREAM, at, STREAM);
    // Not a collecting stream: no status row of its own.
    batch.counts_in_status = false;
    for c in changes {
        batch.events.push(EventRow {
            category: STREAM,
            event_type: c.state.clone(),
            uid: format!("{}@{}", c.subject, c.at),
            occurred_at: c.at,
            device_id: None,
            user_id: None,
            severity: Some(severity(&c.state).to_string()),
            summary: c.summary(source),
            raw: c.raw(source).to_string(),
        });
    }
    store.commit_page(batch).await?;
    Ok(())
}

/// Where state changes are posted: a Slack-compatible incoming webhook (or anything that
/// takes `{"text": …}`).
#[derive(Clone)]
pub struct AlertWebhook {
    /// The URL (a secret: Slack's carry their key in the path). Never logged.
    pub url: SecretString,
    /// A state that stays bad is posted again after this (default 4 hours).
    pub resend_after: Duration,
}

impl std::fmt::Debug for AlertWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertWebhook")
            .field("resend_after", &self.resend_after)
            .finish_non_exhaustive()
    }
}

/// The default resend interval.
pub const DEFAULT_RESEND_AFTER: Duration = Duration::from_secs(4 * 3600);

fn emoji(state: &str) -> &'static str {
    match severity(state) {
        "info" => ":large_green_circle:",
        "medium" => ":large_yellow_circle:",
        _ => ":red_circle:",
    }
}

/// The message an alert posts.
pub fn alert_body(source: &str, c: &Change, again: bool) -> Value {
    let text = format!(
        "{} {}{}",
        emoji(&c.state),
        c.summary(source),
        if again { " (still)" } else { "" }
    );
    json!({ "text": text })
}

impl AlertWebhook {
    async fn post(&self, http: &reqwest::Client, body: &Value, id: &str) -> Result<(), String> {
        let r = http
            .post(self.url.expose_secret())
            .header("X-Kandji-Alert-Id", id)
            .json(body)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if r.status().is_success() {
            Ok(())
        } else {
            Err(format!("the alert webhook answered {}", r.status()))
        }
    }
}

/// Posts what is due: each recorded change not yet posted, and each bad state whose last
/// post is older than `resend_after`. A failed post is tried again at the next evaluation.
pub async fn alert(
    hook: &AlertWebhook,
    http: &reqwest::Client,
    source: &str,
    memory: &mut Memory,
    now: &BTreeMap<String, Observed>,
    at: i64,
) {
    let due: Vec<(Change, bool)> = memory
        .states
        .iter()
        .filter_map(|(subject, (state, since))| {
            let posted = memory.posted.get(subject);
            let again = match posted {
                Some((p, t)) if p == state => {
                    if state == "healthy"
                        || at.saturating_sub(*t) < hook.resend_after.as_millis() as i64
                    {
                        return None;
                    }
                    true
                }
                _ => false,
            };
            let message = now
                .get(subject)
                .map(|o| o.message.clone())
                .unwrap_or_default();
            // A first healthy baseline is not news.
            if !again && state == "healthy" && posted.is_none() {
                return None;
            }
            Some((
                Change {
                    subject: subject.clone(),
                    state: state.clone(),
                    previous: posted.map(|(p, _)| p.clone()).filter(|p| p != state),
                    message,
                    at: *since,
                },
                again,
            ))
        })
        .collect();
    for (c, again) in due {
        let id = format!("{source}/{}@{}", c.subject, c.at);
        match hook.post(http, &alert_body(source, &c, again), &id).await {
            Ok(()) => {
                tracing::info!(source, subject = %c.subject, state = %c.state, again, "alert posted");
                memory
                    .posted
                    .insert(c.subject.clone(), (c.state.clone(), at));
            }
            Err(error) => {
                tracing::warn!(source, subject = %c.subject, %error, "alert webhook failed; trying again later");
            }
        }
    }
    // Baselines that were never news count as posted.
    for (subject, (state, t)) in &memory.states {
        if state == "healthy" && !memory.posted.contains_key(subject) {
            memory.posted.insert(subject.clone(), (state.clone(), *t));
        }
    }
}

/// One evaluation: observe, record the changes, post the alerts. Returns the changes.
pub async fn evaluate(
    store: &Store,
    source: &str,
    memory: &mut Option<Memory>,
    inputs: &Inputs<'_>,
    hook: Option<(&AlertWebhook, &reqwest::Client)>,
    at: i64,
) -> Result<Vec<Change>, StoreError> {
    if memory.is_none() {
        *memory = Some(Memory::load(store, source).await?);
    }
    let Some(m) = memory.as_mut() else {
        return Ok(Vec::new());
    };
    let now = observe(inputs);
    let changes = m.changes(&now, at);
    // A store that cannot be written still alerts: the record is what fails.
    let recorded = record(store, source, &changes, at).await;
    if recorded.is_ok() || inputs.store_problem.is_some() {
        m.recorded(&changes);
    }
    if let Some((hook, http)) = hook {
        alert(hook, http, source, m, &now, at).await;
    }
    recorded.map(|()| changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(stream: &str, state: &str) -> StatusRow {
        StatusRow {
            source: "acme".into(),
            stream: stream.into(),
            state: state.into(),
            last_success_at: None,
            last_error_at: None,
            last_error_kind: None,
            last_error_message: (state != "healthy").then(|| "boom".to_string()),
            last_error_endpoint: None,
            records_total: 0,
            last_run_records: 0,
            last_run_requests: 0,
            next_run_at: None,
            last_run_at: None,
            checkpoint: None,
        }
    }

    #[test]
    fn the_source_is_its_worst_stream_and_passing_states_say_nothing() {
        let rows = [
            row("devices", "healthy"),
            row("threats", "failing"),
            row("users", "syncing"),
        ];
        let o = observe(&Inputs {
            rows: &rows,
            ..Inputs::default()
        });
        assert_eq!(o["source"].state, "failing");
        assert_eq!(o["source"].message, "failing: threats");
        assert_eq!(o["stream:devices"].state, "healthy");
        assert!(!o.contains_key("stream:users"));
        assert_eq!(o["budget"].state, "healthy");
        assert_eq!(o["token"].state, "healthy");
        let o = observe(&Inputs {
            rows: &rows,
            exhaustion_in: Some(Duration::from_secs(600)),
            token: vec![("token_rotation_due", "rotate token".into())],
            store_problem: Some("read-only".into()),
            ..Inputs::default()
        });
        assert_eq!(o["budget"].state, "budget_exhaustion_ahead");
        assert_eq!(o["token"].state, "token_rotation_due");
        assert_eq!(o["store"].state, "store_problem");
    }

    #[test]
    fn a_change_is_reported_once() {
        let mut m = Memory::default();
        let rows = [row("threats", "failing")];
        let now = observe(&Inputs {
            rows: &rows,
            ..Inputs::default()
        });
        let first = m.changes(&now, 1);
        assert_eq!(first.len(), 5, "{first:?}");
        m.recorded(&first);
        assert!(m.changes(&now, 2).is_empty());
        let rows = [row("threats", "healthy")];
        let now = observe(&Inputs {
            rows: &rows,
            ..Inputs::default()
        });
        let back: Vec<_> = m
            .changes(&now, 3)
            .into_iter()
            .map(|c| (c.subject, c.state, c.previous))
            .collect();
        assert_eq!(
            back,
            [
                ("source".into(), "healthy".into(), Some("failing".into())),
                (
                    "stream:threats".into(),
                    "healthy".into(),
                    Some("failing".into())
                ),
            ]
        );
    }
}
