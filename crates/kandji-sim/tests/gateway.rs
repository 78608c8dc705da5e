//! Auth, licensing, Kong 404, rate limits (hourly + per second + storm) and faults.

mod common;

use std::time::Duration;

use common::*;
use kandji_sim::{Faults, SimConfig, TokenSpec};
use serde_json::Value;

const RL_HEADERS: [&str; 7] = [
    "X-RateLimit-Limit-Hour",
    "X-RateLimit-Remaining-Hour",
    "X-RateLimit-Limit-Second",
    "X-RateLimit-Remaining-Second",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
];

#[tokio::test]
async fn permission_answers() {
    let limited = "11111111-2222-4333-8444-555555555555";
    let cfg = SimConfig {
        extra_tokens: vec![TokenSpec {
            token: limited.into(),
            allow: vec![
                "GET /api/v1/devices".into(),
                "GET /api/v1/devices/{device_id}/apps".into(),
            ],
        }],
        ..static_config(20, 3)
    };
    let sim = start(cfg).await;
    let c = client();

    // DRF's texts: no credentials, then a token it does not know.
    let r = get(&c, &sim, "/api/v1/devices", None).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json()["detail"],
        "Authentication credentials were not provided."
    );
    let r = get(&c, &sim, "/api/v1/devices", Some("not-a-token")).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["detail"], "Invalid token.");

    let r = get(&c, &sim, "/api/v1/devices?limit=1", Some(limited)).await;
    assert_eq!(r.status, 200);
    let dev = r.json()[0]["device_id"].as_str().unwrap().to_owned();
    assert_eq!(
        get(
            &c,
            &sim,
            &format!("/api/v1/devices/{dev}/apps"),
            Some(limited)
        )
        .await
        .status,
        200
    );
    let r = get(
        &c,
        &sim,
        &format!("/api/v1/devices/{dev}/details"),
        Some(limited),
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.json()["detail"],
        "You do not have permission to perform this action."
    );

    sim.revoke_token(limited);
    assert_eq!(
        get(&c, &sim, "/api/v1/devices", Some(limited)).await.status,
        401
    );

    // Kong 404 for unknown routes, inside and outside /api/v1, with rate-limit headers under /api/v1.
    for p in [
        "/api/v1/nope",
        "/api/v1",
        "/api/v2/devices",
        "/",
        "/api/v1/devices/x/secrets/nope",
    ] {
        let r = get(&c, &sim, p, Some(sim.token())).await;
        assert_eq!(r.status, 404, "{p}");
        let v = r.json();
        assert_eq!(v["message"], "no Route matched with those values", "{p}");
        assert!(v["request_id"].is_string());
    }
    // The device secrets are routes of the live API (issue 15 asks the simulator to serve
    // them, with their permissions): an unknown device is DRF's 404, not Kong's.
    let r = get(
        &c,
        &sim,
        "/api/v1/devices/x/secrets/filevaultkey",
        Some(sim.token()),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["detail"], "Not found.");
    let r = get(&c, &sim, "/api/v1/nope", Some(sim.token())).await;
    for h in RL_HEADERS {
        assert!(r.header(h).is_some(), "404 lacks {h}");
    }
    // Non-JSON and template endpoints.
    let r = get(
        &c,
        &sim,
        "/api/v1/integrations/apple/ade/public_key/",
        Some(sim.token()),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        r.text.starts_with("-----BEGIN CERTIFICATE-----")
            && r.header("content-type").unwrap().contains("x509")
    );
    let r = get(
        &c,
        &sim,
        "/api/v1/blueprints/templates/?limit=2",
        Some(sim.token()),
    )
    .await;
    assert_eq!(r.json()["results"].as_array().unwrap().len(), 2);
    // Unknown device: 404 from the API itself, not Kong.
    let r = get(
        &c,
        &sim,
        "/api/v1/devices/00000000-0000-4000-8000-000000000000",
        Some(sim.token()),
    )
    .await;
    assert_eq!(r.status, 404);
    assert!(r.json().get("detail").is_some());
    sim.shutdown().await;
}

#[tokio::test]
async fn unlicensed_features_answer_not_enabled() {
    let cfg = SimConfig {
        licensed_edr: false,
        licensed_vuln: false,
        ..static_config(10, 1)
    };
    let sim = start(cfg).await;
    let c = client();
    for p in [
        "/api/v1/threat-details",
        "/api/v1/behavioral-detections",
        "/api/v1/vulnerability-management/detections",
        "/api/v1/vulnerability-management/vulnerabilities",
    ] {
        let r = get(&c, &sim, p, Some(sim.token())).await;
        assert_eq!(r.status, 403, "{p}");
        assert!(
            r.json()["detail"].as_str().unwrap().contains("not enabled"),
            "{p}"
        );
    }
    assert_eq!(
        get(&c, &sim, "/api/v1/devices", Some(sim.token()))
            .await
            .status,
        200
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn hourly_budget_in_a_fixed_clock_hour_then_429_with_headers() {
    let cfg = SimConfig {
        hourly_limit: 5,
        per_second_limit: 1000,
        ..static_config(10, 1)
    };
    let sim = start(cfg).await;
    let c = client();
    // 10 minutes before the hour boundary.
    sim.advance(Duration::from_secs(50 * 60));
    for i in 0..5u32 {
        let r = get(&c, &sim, "/api/v1/tags", Some(sim.token())).await;
        assert_eq!(r.status, 200);
        for h in RL_HEADERS {
            assert!(r.header(h).is_some(), "missing {h}");
        }
        assert_eq!(r.header("X-RateLimit-Limit-Hour").unwrap(), "5");
        assert_eq!(
            r.header("X-RateLimit-Remaining-Hour").unwrap(),
            (4 - i).to_string()
        );
    }
    // Budget shared by all tokens, including bad ones.
    let r = get(&c, &sim, "/api/v1/devices", Some("bogus")).await;
    assert_eq!(r.status, 429);
    let r = get(&c, &sim, "/api/v1/devices", Some(sim.token())).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["message"], "API rate limit exceeded");
    assert_eq!(r.header("Retry-After").as_deref(), Some("600"));
    assert_eq!(r.header("X-RateLimit-Remaining-Hour").as_deref(), Some("0"));
    let stats = sim.stats();
    assert_eq!(stats.endpoints["GET /api/v1/devices"]["429"], 2);
    assert_eq!(stats.endpoints["GET /api/v1/tags"]["200"], 5);
    assert_eq!(stats.total, 7);
    // The next clock hour has a fresh budget.
    sim.advance(Duration::from_secs(600));
    let r = get(&c, &sim, "/api/v1/devices", Some(sim.token())).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-RateLimit-Remaining-Hour").as_deref(), Some("4"));
    sim.shutdown().await;
}

#[tokio::test]
async fn per_second_limit_storm_and_no_retry_after() {
    let cfg = SimConfig {
        per_second_limit: 3,
        hourly_limit: 1000,
        retry_after: false,
        ..static_config(10, 1)
    };
    let sim = start(cfg).await;
    let c = client();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(get(&c, &sim, "/api/v1/tags", Some(sim.token())).await);
    }
    // Unless a real second boundary was crossed, the 4th is refused.
    if statuses[3].status == 429 {
        assert!(
            statuses[3].header("Retry-After").is_none(),
            "retry_after=false must drop Retry-After"
        );
        assert_eq!(
            statuses[3]
                .header("X-RateLimit-Remaining-Second")
                .as_deref(),
            Some("0")
        );
    }
    sim.advance(Duration::from_secs(1));
    assert_eq!(
        get(&c, &sim, "/api/v1/tags", Some(sim.token()))
            .await
            .status,
        200
    );

    sim.set_faults(Faults {
        storm_429: 2,
        ..Faults::default()
    });
    sim.advance(Duration::from_secs(1));
    assert_eq!(
        get(&c, &sim, "/api/v1/tags", Some(sim.token()))
            .await
            .status,
        429
    );
    assert_eq!(
        get(&c, &sim, "/api/v1/tags", Some(sim.token()))
            .await
            .status,
        429
    );
    assert_eq!(
        get(&c, &sim, "/api/v1/tags", Some(sim.token()))
            .await
            .status,
        200
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_errors_truncation_malformed_resets_and_cursor_expiry() {
    let sim = start(static_config(30, 2)).await;
    let c = client();
    sim.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let r = get(&c, &sim, "/api/v1/tags", Some(sim.token())).await;
    assert!([500, 502, 503, 504].contains(&r.status), "{}", r.status);

    sim.set_faults(Faults {
        truncate_rate: 1.0,
        ..Faults::default()
    });
    let r = get(&c, &sim, "/api/v1/devices", Some(sim.token())).await;
    assert_eq!(r.status, 200);
    assert!(
        serde_json::from_str::<Value>(&r.text).is_err(),
        "truncated body must not parse"
    );
    assert!(!r.text.is_empty());

    sim.set_faults(Faults {
        malformed_rate: 1.0,
        ..Faults::default()
    });
    let r = get(&c, &sim, "/api/v1/devices", Some(sim.token())).await;
    assert_eq!(r.status, 200);
    assert!(r.text.starts_with("<!doctype html>"));

    sim.set_faults(Faults {
        reset_rate: 1.0,
        ..Faults::default()
    });
    let res = c
        .get(format!("{}/api/v1/devices", sim.base_url()))
        .bearer_auth(sim.token())
        .send()
        .await;
    let failed = match res {
        Err(_) => true,
        Ok(r) => r.bytes().await.is_err(),
    };
    assert!(failed, "a reset must surface as a transport error");

    // Cursor expiry: a cursor issued before the fault is refused.
    sim.set_faults(Faults::default());
    let v = ok(&c, &sim, "/api/v1/prism/device_information?limit=5").await;
    let cursor = v["cursor"].as_str().unwrap().to_owned();
    assert_eq!(
        get(
            &c,
            &sim,
            &format!("/api/v1/prism/device_information?limit=5&cursor={cursor}"),
            Some(sim.token())
        )
        .await
        .status,
        200
    );
    sim.set_faults(Faults {
        expire_cursors: true,
        ..Faults::default()
    });
    let r = get(
        &c,
        &sim,
        &format!("/api/v1/prism/device_information?limit=5&cursor={cursor}"),
        Some(sim.token()),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["detail"], "Invalid cursor");

    // Faults never touch /__sim.
    sim.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let r = get(&c, &sim, "/__sim/stats", None).await;
    assert_eq!(r.status, 200);
    let stats = r.json();
    assert!(stats["total"].as_u64().unwrap() >= 6);
    assert!(
        stats["endpoints"]["GET /api/v1/devices"]["reset"]
            .as_u64()
            .is_some()
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn sim_control_routes() {
    let sim = start(SimConfig {
        devices: 50,
        ..SimConfig::default()
    })
    .await;
    let c = client();
    let before = get(&c, &sim, "/__sim/clock", None).await.json();
    assert_eq!(before["now"], "2026-11-01T00:00:00.000000Z");
    let events0 = sim.truth("audit_events").as_array().unwrap().len();
    let r = c
        .post(format!(
            "{}/__sim/clock/advance?seconds=86400",
            sim.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(sim.now(), time::macros::datetime!(2026-11-02 00:00:00 UTC));
    let events1 = sim.truth("audit_events").as_array().unwrap().len();
    assert!(
        events1 > events0,
        "a simulated day must bring new audit events ({events0} -> {events1})"
    );
    let r = c
        .post(format!("{}/__sim/faults", sim.base_url()))
        .body(r#"{"storm_429": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        get(&c, &sim, "/api/v1/tags", Some(sim.token()))
            .await
            .status,
        429
    );
    let r = c
        .post(format!("{}/__sim/tokens/revoke", sim.base_url()))
        .body(format!(r#"{{"token": "{}"}}"#, sim.token()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        get(&c, &sim, "/api/v1/tags", Some(sim.token()))
            .await
            .status,
        401
    );
    assert_eq!(get(&c, &sim, "/__sim/truth/bogus", None).await.status, 404);
    sim.reset_stats();
    assert_eq!(sim.stats().total, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn an_empty_tenant_answers_everything() {
    let sim = start(SimConfig {
        devices: 0,
        ..SimConfig::default()
    })
    .await;
    let c = client();
    sim.advance(Duration::from_secs(3 * 3600));
    for p in [
        "/api/v1/devices",
        "/api/v1/users",
        "/api/v1/audit/events",
        "/api/v1/prism/apps",
        "/api/v1/prism/count?category=apps",
        "/api/v1/threat-details",
        "/api/v1/behavioral-detections",
        "/api/v1/vulnerability-management/detections",
        "/api/v1/vulnerability-management/vulnerabilities",
        "/api/v1/integrations/apple/ade/devices",
        "/api/v1/blueprints",
        "/api/v1/settings/licensing",
    ] {
        let r = get(&c, &sim, p, Some(sim.token())).await;
        assert_eq!(r.status, 200, "{p}: {}", r.text);
    }
    for cat in ["devices", "apps", "audit_events", "licensing"] {
        assert!(!sim.truth(cat).is_null(), "{cat}");
    }
    sim.shutdown().await;
}
