//! The token never leaks; the Prism export cycle; the permission check matrix.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use futures::TryStreamExt;
use kandji_api::check::ProbeResult;
use kandji_api::export::{ExportOptions, ExportRequest};
use kandji_api::{ApiBase, ClientConfig, KandjiClient, KandjiError, Region};
use serde_json::json;
use wiremock::matchers::{body_partial_json, header_exists, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);
impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn token_never_in_logs_errors_or_debug() {
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let s = MockServer::start().await;
    Mock::given(path("/api/v1/devices/x"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"detail": "Invalid token."})))
        .mount(&s)
        .await;
    Mock::given(path("/api/v1/devices/y"))
        .respond_with(ResponseTemplate::new(500).set_body_string("boom"))
        .mount(&s)
        .await;
    let secret = "11111111-2222-3333-4444-555555555555";
    let retry = kandji_api::retry::RetryPolicy {
        max_attempts: 2,
        min_delay: std::time::Duration::from_millis(1),
        ..Default::default()
    };
    let c = client_with(&s.uri(), secret, big_budget(), retry);
    let e1 = c.device("x").await.unwrap_err();
    let e2 = c.device("y").await.unwrap_err();
    // Transport error against a closed port.
    let dead = client_with(
        "http://127.0.0.1:9",
        secret,
        big_budget(),
        kandji_api::retry::RetryPolicy {
            max_attempts: 1,
            ..Default::default()
        },
    );
    let e3 = dead.device("z").await.unwrap_err();
    let base = ApiBase::parse("acme", Region::Us, false).unwrap();
    let cfg = ClientConfig::new(base, secret.to_string().into(), big_budget());
    let everything = format!(
        "{e1} {e1:?} {e2} {e2:?} {e3} {e3:?} {c:?} {cfg:?} {:?} {:?}",
        KandjiClient::new(cfg.clone()).unwrap(),
        cfg.token
    );
    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(!logs.is_empty());
    assert!(!everything.contains(secret), "{everything}");
    assert!(!logs.contains(secret), "{logs}");
    assert!(!everything.contains("1111"), "{everything}");
    assert!(matches!(e1, KandjiError::Unauthorized { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_cycle_downloads_without_bearer() {
    let s = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/prism/export"))
        .and(body_partial_json(
            json!({"category": "apps", "blueprint_ids": [], "filter": {}}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"id": "e1", "status": "pending", "signed_url": null, "error_msg": null}),
        ))
        .expect(1)
        .mount(&s)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/prism/export/e1"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "e1", "status": "pending", "signed_url": null})),
        )
        .up_to_n_times(2)
        .mount(&s)
        .await;
    let signed = format!(
        "{}/bucket/export-apps.csv?X-Amz-Expires=172800&X-Amz-Signature=abc",
        s.uri()
    );
    Mock::given(method("GET"))
        .and(path("/api/v1/prism/export/e1"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "e1", "status": "success", "signed_url": signed})),
        )
        .mount(&s)
        .await;
    // S3 refuses a request with Authorization.
    Mock::given(path("/bucket/export-apps.csv"))
        .and(header_exists("authorization"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_string("<Error><Code>InvalidArgument</Code></Error>"),
        )
        .with_priority(1)
        .mount(&s)
        .await;
    let mut csv = String::from("device_id,device__name,name,copyright\n");
    for i in 0..1001 {
        csv.push_str(&format!("d{i},Mac {i},App {i},\"line one\nline two\"\n"));
    }
    Mock::given(path("/bucket/export-apps.csv"))
        .and(query_param("X-Amz-Signature", "abc"))
        .respond_with(ResponseTemplate::new(200).set_body_string(csv))
        .with_priority(2)
        .mount(&s)
        .await;
    let c = client(&s.uri());
    let opts = ExportOptions {
        poll_initial: std::time::Duration::from_millis(1),
        poll_max: std::time::Duration::from_millis(5),
        ..Default::default()
    };
    let batches: Vec<_> = c
        .export(ExportRequest::category("apps"), opts)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        batches.iter().map(Vec::len).collect::<Vec<_>>(),
        [500, 500, 1]
    );
    let last = &batches[2][0];
    assert_eq!(last.device_id.as_deref(), Some("d1000"));
    assert_eq!(last.device_name.as_deref(), Some("Mac 1000"));
    assert_eq!(
        last.get_str("copyright").as_deref(),
        Some("line one\nline two")
    );
    let reqs: Vec<Request> = s.received_requests().await.unwrap();
    let dl: Vec<_> = reqs
        .iter()
        .filter(|r| r.url.path() == "/bucket/export-apps.csv")
        .collect();
    assert_eq!(dl.len(), 1);
    assert!(dl[0].headers.get("authorization").is_none());
}

#[tokio::test(start_paused = true)]
async fn export_failure_and_timeout() {
    let s = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/prism/export"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": "f1", "status": "pending"})),
        )
        .mount(&s)
        .await;
    Mock::given(path("/api/v1/prism/export/f1"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "f1", "status": "failed", "error_msg": "bad filter"})),
        )
        .mount(&s)
        .await;
    Mock::given(path("/api/v1/prism/export/p1"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": "p1", "status": "pending"})),
        )
        .mount(&s)
        .await;
    let c = client(&s.uri());
    let err = c
        .export(ExportRequest::category("apps"), ExportOptions::default())
        .try_collect::<Vec<_>>()
        .await
        .unwrap_err();
    assert!(
        matches!(err, KandjiError::ExportFailed { ref message, .. } if message == "bad filter"),
        "{err:?}"
    );
    let t = tokio::time::Instant::now();
    let err = c
        .wait_export("p1", &ExportOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, KandjiError::ExportTimeout { .. }), "{err:?}");
    assert!(t.elapsed() <= std::time::Duration::from_secs(900));
    // Invalid category → 400 with detail.
    let s2 = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/prism/export"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({"detail": "Invalid category: application_firewal"})),
        )
        .mount(&s2)
        .await;
    let err = client(&s2.uri())
        .create_export(&ExportRequest::category("application_firewal"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, KandjiError::BadRequest { status: 400, ref message, .. } if message.contains("Invalid category"))
    );
}

#[tokio::test]
async fn check_reports_a_permission_matrix() {
    let s = MockServer::start().await;
    let deny = || {
        ResponseTemplate::new(403)
            .set_body_json(json!({"detail": "You do not have permission to perform this action."}))
    };
    let unlicensed = || {
        ResponseTemplate::new(403)
            .set_body_json(json!({"detail": "This feature is not enabled for your tenant."}))
    };
    Mock::given(path("/api/v1/devices"))
        .and(query_param("limit", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{"device_id": "dev-1"}])))
        .mount(&s)
        .await;
    Mock::given(path("/api/v1/devices/dev-1/status"))
        .respond_with(deny())
        .mount(&s)
        .await;
    Mock::given(path("/api/v1/users"))
        .respond_with(deny())
        .mount(&s)
        .await;
    Mock::given(path("/api/v1/threat-details"))
        .respond_with(unlicensed())
        .mount(&s)
        .await;
    Mock::given(path("/api/v1/audit/events"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"results": [], "next": null})),
        )
        .mount(&s)
        .await;
    Mock::given(path("/api/v1/prism/apps"))
        .and(query_param("limit", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [], "cursor": null})))
        .mount(&s)
        .await;
    Mock::given(path("/api/v1/settings/licensing"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"counts": {"computers_count": 10, "macos_count": "7"}, "limits": {"plan_type": "Enterprise", "max_devices": 100}}))).mount(&s).await;
    let c = client(&s.uri());
    let report = c
        .check(&probe_sets(&[
            "devices",
            "compliance",
            "users",
            "threats",
            "audit_events",
            "apps",
            "tags",
        ]))
        .await;
    let row = |e: &str| report.get(e).unwrap_or_else(|| panic!("{e}"));
    assert!(matches!(row("GET /api/v1/devices").result, ProbeResult::Ok));
    assert_eq!(
        row("GET /api/v1/devices").streams,
        ["devices", "compliance"]
    );
    assert!(
        matches!(&row("GET /api/v1/devices/{device_id}/status").result, ProbeResult::MissingPermission { permission_name } if permission_name == "Device Status")
    );
    assert!(
        matches!(&row("GET /api/v1/users").result, ProbeResult::MissingPermission { permission_name } if permission_name == "List users")
    );
    assert!(matches!(
        row("GET /api/v1/threat-details").result,
        ProbeResult::NotLicensed
    ));
    assert!(matches!(
        row("GET /api/v1/audit/events").result,
        ProbeResult::Ok
    ));
    assert!(matches!(
        row("GET /api/v1/prism/apps").result,
        ProbeResult::Ok
    ));
    // Tags is not mounted: wiremock answers 404 → Other(NotFound).
    assert_eq!(row("GET /api/v1/tags").result.status(), "not_found");
    assert_eq!(report.endpoints.len(), 7);
    assert!(!report.all_ok());
    assert_eq!(report.runnable(), ["apps", "audit_events", "devices"]);
    let lic = report.licensing.as_ref().unwrap();
    assert_eq!(lic.counts.as_ref().unwrap().macos_count, Some(7));
}

/// Signed export URLs: https to the signed-URL hosts only (or the custom base itself), with
/// no redirect to another host. A tenant's answer cannot aim the collector elsewhere.
#[tokio::test]
async fn export_downloads_go_only_to_signed_url_hosts() {
    // A Kandji base (nothing is sent: every refusal happens before a request).
    let base = ApiBase::parse("acme", Region::Us, false).expect("base");
    let c = KandjiClient::new(ClientConfig::new(
        base,
        "t".to_string().into(),
        big_budget(),
    ))
    .expect("client");
    for ok in [
        "https://kandji-prd-exports.s3.us-west-2.amazonaws.com/t/export.csv?X-Amz-Expires=172800",
        "https://amazonaws.com/28344fcc/export-2023-09-14-apps.csv?X-Amz-Algorithm=AWS4-HMAC-SHA256",
    ] {
        c.check_download_url(ok)
            .unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for bad in [
        "http://kandji-prd-exports.s3.amazonaws.com/export.csv",
        "https://amazonaws.com.attacker.example/export.csv",
        "https://attacker.example/export.csv",
        "https://169.254.169.254/latest/meta-data/",
        "https://acme.api.kandji.io/api/v1/devices",
        "file:///etc/passwd",
        "not a url",
    ] {
        let e = c.check_download_url(bad).expect_err(bad);
        assert_eq!(e.kind(), "download_refused", "{bad}: {e}");
        let e = c.download(bad).await.expect_err(bad);
        assert_eq!(e.kind(), "download_refused", "{bad}: {e}");
    }
    // Configurable: a host added to the list is accepted.
    let mut cfg = ClientConfig::new(
        ApiBase::parse("acme", Region::Us, false).expect("base"),
        "t".to_string().into(),
        big_budget(),
    );
    cfg.download_hosts.push("exports.iru.com".into());
    let c = KandjiClient::new(cfg).expect("client");
    c.check_download_url("https://eu.exports.iru.com/x.csv")
        .expect("listed host");

    // A custom base (the simulator) may be downloaded from, but a redirect from it to another
    // host (here another loopback port) is refused, and nothing is fetched there.
    let tenant = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    Mock::given(path("/other/export.csv"))
        .respond_with(ResponseTemplate::new(200).set_body_string("device_id\nd1\n"))
        .mount(&elsewhere)
        .await;
    Mock::given(path("/bucket/export.csv"))
        .respond_with(
            ResponseTemplate::new(302)
                .insert_header("location", format!("{}/other/export.csv", elsewhere.uri())),
        )
        .mount(&tenant)
        .await;
    Mock::given(path("/bucket/same-host.csv"))
        .respond_with(ResponseTemplate::new(302).insert_header("location", "/bucket/final.csv"))
        .mount(&tenant)
        .await;
    Mock::given(path("/bucket/final.csv"))
        .respond_with(ResponseTemplate::new(200).set_body_string("device_id\nd1\n"))
        .mount(&tenant)
        .await;
    let c = client(&tenant.uri());
    let e = c
        .download(&format!("{}/bucket/export.csv", tenant.uri()))
        .await
        .expect_err("a cross-host redirect");
    assert_eq!(e.kind(), "download_refused", "{e}");
    assert!(elsewhere.received_requests().await.unwrap().is_empty());
    let e = c
        .download(&format!("{}/x.csv", elsewhere.uri()))
        .await
        .expect_err("another host than the custom base");
    assert_eq!(e.kind(), "download_refused", "{e}");
    // Within the one host, a redirect is followed.
    let r = c
        .download(&format!("{}/bucket/same-host.csv", tenant.uri()))
        .await
        .expect("a same-host redirect");
    assert_eq!(r.text().await.unwrap(), "device_id\nd1\n");
}
