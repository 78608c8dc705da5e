//! Token hygiene and health records against the simulator: the token's age and its
//! warnings from simulated audit events, and the health records (NDJSON sink) and alert
//! posts (a local receiver) a source failing, recovering and losing a permission makes.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use common::*;
use kandji_collector::health::AlertWebhook;
use kandji_collector::hygiene::TokenWarning;
use kandji_collector::outputs::config::{Format, SinkKind, SinkSpec};
use kandji_collector::outputs::{Output, Pacing, SourceInfo};
use kandji_collector::streams::{StreamName, permissions};
use kandji_sim::{Churn, Faults, ScriptedAudit};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const DAY: Duration = Duration::from_secs(86_400);

fn token_event(action: &str, actor: &str, perms: &[(&str, &str)]) -> ScriptedAudit {
    ScriptedAudit {
        action: action.into(),
        actor_id: actor.into(),
        actor_type: "user".into(),
        target_id: "a0726ca3-717d-41b9-a3af-c7d0bad8b784".into(),
        target_type: "api_token".into(),
        target_component: String::new(),
        new_state: json!({
            "description": null,
            "label": "kandji-collector",
            "permissions": perms.iter().map(|(m, p)| json!({"http_method": m, "path": p})).collect::<Vec<_>>(),
        }),
        metadata: json!({}),
    }
}

fn all_permissions() -> Vec<(&'static str, &'static str)> {
    permissions(&StreamName::ALL)
        .iter()
        .map(|p| (p.method, p.path))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_age_rotation_creator_and_permission_warnings_come_from_the_audit_feed() {
    let mut cfg = sim_config(20, 31);
    cfg.churn = Churn::none();
    let mut env = env(cfg).await;
    env.rt.source.hygiene.token_name = Some("kandji-collector".into());
    let admin = "cf40d6e7-20cb-4da9-84a1-9ad0b7003ca5";
    let created = env.sim.now() - time::Duration::days(10);
    env.sim
        .script_audit(created, token_event("create", admin, &all_permissions()));
    cycle(&env, &[StreamName::AuditEvents]).await;
    let h = env
        .rt
        .token_history()
        .await
        .unwrap()
        .expect("the token's history");
    assert_eq!(h.age_days, Some(10));
    assert_eq!(h.created_by.as_deref(), Some(admin));
    assert!(h.warnings.is_empty(), "{:?}", h.warnings);

    // 81 days on: 91 days old, rotate after 90.
    env.sim.advance(81 * DAY);
    cycle(&env, &[StreamName::AuditEvents]).await;
    let h = env.rt.token_history().await.unwrap().unwrap();
    assert_eq!(
        h.warnings,
        vec![TokenWarning::RotationDue {
            age_days: 91,
            rotate_after_days: 90
        }]
    );

    // Someone unticks the threats permission.
    let without: Vec<_> = all_permissions()
        .into_iter()
        .filter(|(_, p)| !p.contains("threat-details"))
        .collect();
    env.sim.script_audit(
        env.sim.now() - time::Duration::hours(2),
        token_event("update", "7d0bad8b-84a1-4d9a-b7c0-cf40d6e720cb", &without),
    );
    cycle(&env, &[StreamName::AuditEvents]).await;
    let h = env.rt.token_history().await.unwrap().unwrap();
    assert!(
        h.warnings.iter().any(
            |w| matches!(w, TokenWarning::PermissionRemoved { permission, needed_by, .. }
            if permission == "GET /api/v1/threat-details" && needed_by == &["threats".to_string()])
        ),
        "{:?}",
        h.warnings
    );
    assert!(h.last_permission_change.is_some());

    // The admin who created it leaves.
    env.sim.script_audit(
        env.sim.now() - time::Duration::hours(1),
        ScriptedAudit {
            action: "delete".into(),
            actor_id: "7d0bad8b-84a1-4d9a-b7c0-cf40d6e720cb".into(),
            actor_type: "user".into(),
            target_id: admin.into(),
            target_type: "admin_user".into(),
            target_component: String::new(),
            new_state: json!({"email": "it-admin@acme.io"}),
            metadata: json!({}),
        },
    );
    cycle(&env, &[StreamName::AuditEvents]).await;
    let h = env.rt.token_history().await.unwrap().unwrap();
    let kinds: Vec<&str> = h.warnings.iter().map(|w| w.state()).collect();
    assert_eq!(
        kinds,
        [
            "token_rotation_due",
            "token_permission_removed",
            "token_creator_removed"
        ]
    );
    assert!(h.warnings[2].message().contains("it-admin@acme.io"));
    // The token's health is its worst warning, recorded once.
    let changes = env.rt.evaluate_health().await.unwrap();
    let token: Vec<_> = changes.iter().filter(|c| c.subject == "token").collect();
    assert_eq!(token.len(), 1);
    assert_eq!(token[0].state, "token_permission_removed");
    assert!(
        token[0].message.contains("rotate token"),
        "{}",
        token[0].message
    );
    assert!(env.rt.evaluate_health().await.unwrap().is_empty());
}

#[derive(Clone, Default)]
struct Alerts(Arc<Mutex<Vec<(String, Value)>>>);

async fn alert_receiver() -> (Alerts, String) {
    let got = Alerts::default();
    async fn hook(
        State(a): State<Alerts>,
        headers: HeaderMap,
        Json(v): Json<Value>,
    ) -> &'static str {
        let id = headers
            .get("x-kandji-alert-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        a.0.lock().unwrap().push((id, v));
        "ok"
    }
    let app = axum::Router::new()
        .route("/slack", post(hook))
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (got, format!("http://{addr}/slack"))
}

/// (subject, state) of every health record the NDJSON sink got, in order.
fn health_lines(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for p in files {
        for l in std::fs::read_to_string(&p).unwrap().lines() {
            let v: Value = serde_json::from_str(l).unwrap();
            if v["class_uid"] == 6008 {
                out.push((
                    v["unmapped"]["subject"].as_str().unwrap().to_string(),
                    v["unmapped"]["state"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_recovering_and_losing_a_permission_make_one_record_and_one_alert_each() {
    let mut cfg = sim_config(20, 32);
    cfg.churn = Churn::none();
    let mut env = env(cfg).await;
    let (alerts, url) = alert_receiver().await;
    let url_again = url.clone();
    env.rt.alerts = Some(AlertWebhook {
        url: url.into(),
        resend_after: Duration::from_secs(3600),
    });
    let out_dir = tempfile::tempdir().unwrap();
    let sink = Output::new(
        env.store.clone(),
        SourceInfo {
            source: "acme".into(),
            tenant: "acme".into(),
        },
        SinkSpec {
            name: "file".into(),
            format: Format::Ocsf,
            batch_size: 500,
            kind: SinkKind::Ndjson {
                path: Some(out_dir.path().join("out.ndjson")),
                rotate_bytes: 100_000_000,
                rotate_every: None,
                keep_files: 10,
            },
        },
        Pacing {
            poll: Duration::from_millis(20),
            min_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(40),
            max_attempts: None,
        },
    )
    .unwrap();
    let sd = CancellationToken::new();
    let streams = [StreamName::Devices, StreamName::Threats];
    cycle(&env, &streams).await;
    env.rt.evaluate_health().await.unwrap();
    assert!(
        alerts.0.lock().unwrap().is_empty(),
        "a healthy start is not news"
    );

    // Failing: the API answers HTML with 200 (a proxy's error page) until the retries give up.
    env.sim.set_faults(Faults {
        malformed_rate: 1.0,
        ..Faults::default()
    });
    assert!(env.rt.run_stream(StreamName::Threats).await.is_err());
    let changed = env.rt.evaluate_health().await.unwrap();
    assert_eq!(changed.len(), 2, "{changed:?}");
    // Looking again changes nothing and posts nothing.
    assert!(env.rt.evaluate_health().await.unwrap().is_empty());
    // Recovering.
    env.sim.set_faults(Faults::default());
    env.rt.run_stream(StreamName::Threats).await.unwrap();
    env.rt.evaluate_health().await.unwrap();
    // Losing a permission: an admin unticks threats on the token.
    let without: Vec<String> = permissions(&StreamName::ALL)
        .iter()
        .filter(|p| !p.path.contains("threat-details"))
        .map(|p| format!("{} {}", p.method, p.path))
        .collect();
    env.sim
        .set_token_permissions(env.sim.token(), Some(without));
    assert!(env.rt.run_stream(StreamName::Threats).await.is_err());
    env.rt.evaluate_health().await.unwrap();
    assert!(env.rt.evaluate_health().await.unwrap().is_empty());

    // Health records are events, not a stream with a status of its own.
    let rows = env.store.stream_status(Some("acme")).await.unwrap();
    assert!(rows.iter().all(|r| r.stream != "health"), "{rows:?}");
    sink.drain(&sd).await.unwrap();
    let lines = health_lines(out_dir.path());
    let of = |subject: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|(s, _)| s == subject)
            .map(|(_, st)| st.clone())
            .collect()
    };
    assert_eq!(
        of("stream:threats"),
        ["healthy", "failing", "healthy", "missing_permission"],
        "{lines:?}"
    );
    assert_eq!(
        of("source"),
        ["healthy", "failing", "healthy", "missing_permission"]
    );
    assert_eq!(of("stream:devices"), ["healthy"]);
    for subject in ["budget", "token", "store"] {
        assert_eq!(of(subject), ["healthy"], "{subject}");
    }

    // One alert per change (the healthy baseline is not one), Slack's `{"text": …}`.
    let posted = alerts.0.lock().unwrap().clone();
    let texts: Vec<String> = posted
        .iter()
        .map(|(_, v)| v["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(posted.len(), 6, "{texts:#?}");
    for (want, n) in [
        ("acme: stream threats is failing (was healthy)", 1),
        ("acme: source is failing (was healthy)", 1),
        ("acme: stream threats is healthy (was failing)", 1),
        ("acme: source is healthy (was failing)", 1),
        (
            "acme: stream threats is missing permission (was healthy)",
            1,
        ),
        ("acme: source is missing permission (was healthy)", 1),
    ] {
        assert_eq!(
            texts.iter().filter(|t| t.contains(want)).count(),
            n,
            "{want}: {texts:#?}"
        );
    }
    let ids: std::collections::BTreeSet<_> = posted.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids.len(), 6, "each post has its own id");
    assert!(
        texts.iter().all(|t| !t.contains(env.sim.token())),
        "no token in an alert"
    );

    // A state that stays bad is posted again once its resend interval passed; good ones not.
    env.rt.alerts = Some(AlertWebhook {
        url: url_again.into(),
        resend_after: Duration::ZERO,
    });
    assert!(env.rt.evaluate_health().await.unwrap().is_empty());
    let again: Vec<String> = alerts.0.lock().unwrap()[6..]
        .iter()
        .map(|(_, v)| v["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(again.len(), 2, "{again:#?}");
    assert!(
        again
            .iter()
            .all(|t| t.contains("missing permission") && t.ends_with("(still)"))
    );
}
