//! Every pagination style against wiremock: envelope shapes, end conditions, positions.

mod common;

use common::*;
use kandji_api::Position;
use serde_json::json;
use wiremock::matchers::{path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn mount(server: &MockServer, p: &str, q: Option<(&str, &str)>, body: serde_json::Value) {
    let m = Mock::given(path(p));
    let m = match q {
        Some((k, v)) => m.and(query_param(k, v)),
        None => m,
    };
    m.respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(server)
        .await;
}

#[tokio::test]
async fn drf_envelope_with_total_count() {
    let s = MockServer::start().await;
    let p = "/api/v1/behavioral-detections";
    mount(&s, p, Some(("offset", "0")), json!({"total_count": 3, "next": "https://acme.api.kandji.io/api/v1/behavioral-detections?limit=1000&offset=2", "previous": null,
        "results": [{"id": "A", "detection_date": "2024-01-01T00:00:00+00:00", "device_info": {"id": "d1"}}, {"id": "B", "informational_tags": "x"}]})).await;
    mount(&s, p, Some(("offset", "2")), json!({"total_count": 3, "next": null, "previous": "x", "results": [{"id": "C", "malware_family": ["m"]}]})).await;
    let c = client(&s.uri());
    let pages = collect(c.behavioral_detections(vec![], None))
        .await
        .unwrap();
    assert_eq!(pages.len(), 2);
    assert_eq!(pages[0].total, Some(3));
    assert_eq!(pages[0].next, Some(Position::Offset(2)));
    assert_eq!(
        pages[0].items[0]
            .device_info
            .as_ref()
            .unwrap()
            .id
            .as_deref(),
        Some("d1")
    );
    assert_eq!(pages[0].items[1].informational_tags, ["x"]);
    assert_eq!(pages[1].items[0].malware_family, ["m"]);
    assert!(
        s.received_requests().await.unwrap().iter().all(|r| r
            .url
            .query()
            .unwrap()
            .contains("limit=1000"))
    );
}

#[tokio::test]
async fn threats_envelope_and_synth_key() {
    let s = MockServer::start().await;
    mount(&s, "/api/v1/threat-details", None, json!({"count": 1, "malware_count": 1, "pup_count": 0, "next": null, "previous": null,
        "results": [{"threat_name": "EICAR", "device_id": "d1", "file_hash": "abc", "file_path": "/tmp/x", "detection_date": "2023-04-21T17:23:13.883134"}]})).await;
    let c = client(&s.uri());
    let items = collect_items(c.threats(vec![("date_range".into(), "1".into())], None))
        .await
        .unwrap();
    assert_eq!(items[0].key(), "d1|abc|/tmp/x|2023-04-21T17:23:13.883134");
    assert!(items[0].detection_date.is_some());
}

#[tokio::test]
async fn nested_envelopes_activity_and_commands() {
    let s = MockServer::start().await;
    mount(&s, "/api/v1/devices/d1/activity", Some(("offset", "0")), json!({"device_id": "d1", "activity": {"count": 2, "next": "http://x/api/v1/devices/d1/activity?limit=300&offset=1", "previous": null, "results": [{"id": 1, "action_type": "enrollment"}]}})).await;
    mount(&s, "/api/v1/devices/d1/activity", Some(("offset", "1")), json!({"device_id": "d1", "activity": {"count": 2, "next": null, "previous": "y", "results": [{"id": 2, "created_at": "2024-01-26 16:15:36.087016+00:00"}]}})).await;
    mount(&s, "/api/v1/devices/d1/commands", None, json!({"device_id": "d1", "commands": {"count": 1, "next": null, "previous": null, "results": [{"uuid": "c", "status": "3"}]}})).await;
    let c = client(&s.uri());
    let acts = collect_items(c.device_activity("d1", None)).await.unwrap();
    assert_eq!(
        acts.iter().map(|a| a.id).collect::<Vec<_>>(),
        [Some(1), Some(2)]
    );
    let cmds = collect_items(c.device_commands("d1", None)).await.unwrap();
    assert_eq!(cmds[0].status, Some(3));
}

#[tokio::test]
async fn page_number_ade() {
    let s = MockServer::start().await;
    let p = "/api/v1/integrations/apple/ade/devices";
    mount(&s, p, Some(("page", "1")), json!({"count": 2, "next": "https://acme.kandji.io/api/v1/integrations/apple/ade/devices?page=2", "previous": null, "results": [{"id": "a1", "mdm_device": null, "user": ""}]})).await;
    mount(&s, p, Some(("page", "2")), json!({"count": 2, "next": null, "previous": "x", "results": [{"id": "a2", "mdm_device": {"id": "d2", "enrolled_at": "2024-01-01T00:00:00Z"}}]})).await;
    let c = client(&s.uri());
    let pages = collect(c.ade_devices(vec![], None)).await.unwrap();
    assert_eq!(pages[0].next, Some(Position::Page(2)));
    assert!(pages[0].items[0].mdm_device.is_none());
    assert_eq!(
        pages[1].items[0].mdm_device.as_ref().unwrap().id.as_deref(),
        Some("d2")
    );
    // Resume at page 2.
    let rest = collect_items(c.ade_devices(vec![], Some(Position::Page(2))))
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
}

#[tokio::test]
async fn page_size_vulnerabilities() {
    let s = MockServer::start().await;
    let p = "/api/v1/vulnerability-management/vulnerabilities";
    let row = |i: usize| json!({"cve_id": format!("CVE-{i}"), "cvss_score": "7.5", "device_count": 2, "software": ["Chrome"]});
    mount(&s, p, Some(("page", "1")), json!({"total": 51, "page": 1, "size": 50, "results": (0..50).map(row).collect::<Vec<_>>()})).await;
    mount(
        &s,
        p,
        Some(("page", "2")),
        json!({"total": 51, "page": 2, "size": 50, "results": [row(50)]}),
    )
    .await;
    let c = client(&s.uri());
    let pages = collect(c.vulnerabilities(vec![], None)).await.unwrap();
    assert_eq!(
        pages.iter().map(|p| p.items.len()).collect::<Vec<_>>(),
        [50, 1]
    );
    assert_eq!(pages[0].items[0].cvss_score, Some(7.5));
    assert!(
        s.received_requests().await.unwrap().iter().all(|r| r
            .url
            .query()
            .unwrap()
            .contains("size=50"))
    );
}

#[tokio::test]
async fn after_cursor_vuln_detections_maps_both_field_sets() {
    let s = MockServer::start().await;
    let p = "/api/v1/vulnerability-management/detections";
    mount(&s, p, None, json!({"next": "https://acme.api.kandji.io/api/v1/vulnerability-management/detections?after=Zz09&size=300", "previous": null,
        "results": [{"device_id": "d1", "bundle_id": "com.x", "cve_id": "CVE-1", "cve_description": "doc", "cvss_severity": "High", "first_detection_date": "2023-10-13 16:15:00.000000"}]})).await;
    Mock::given(path(p))
        .and(query_param("after", "Zz09"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"next": null, "previous": null,
            "results": [{"device_id": "d2", "name": "App", "cve_id": "CVE-2", "description": "real", "severity": "Low", "detection_datetime": "2025-09-24T18:57:34.914031Z", "cve_published_at": "2025-09-24T17:15:39.940000"}]})))
        .with_priority(1)
        .mount(&s)
        .await;
    let c = client(&s.uri());
    let pages = collect(c.vulnerability_detections(vec![], None))
        .await
        .unwrap();
    assert_eq!(pages.len(), 2);
    assert_eq!(pages[0].next, Some(Position::Cursor("Zz09".into())));
    let (a, b) = (&pages[0].items[0], &pages[1].items[0]);
    assert_eq!(
        (a.description.as_deref(), a.severity.as_deref()),
        (Some("doc"), Some("High"))
    );
    assert_eq!(
        (b.description.as_deref(), b.severity.as_deref()),
        (Some("real"), Some("Low"))
    );
    assert!(
        a.detection_datetime.is_some()
            && b.detection_datetime.is_some()
            && b.cve_published_at.is_some()
    );
    assert_eq!(a.key(), "d1-com.x-CVE-1");
    assert_eq!(b.key(), "d2-App-CVE-2");
}

#[tokio::test]
async fn prism_cursor_short_pages_are_not_the_end() {
    let s = MockServer::start().await;
    let p = "/api/v1/prism/apps";
    Mock::given(path(p))
        .and(query_param_is_missing("cursor"))
        .and(query_param("limit", "300"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"offset": null, "limit": 25, "total": null, "cursor": "ZGV2fDI=",
            "data": [{"device_id": "d1", "device__name": "Mac", "name": "Safari", "last_changed_at": "2024-07-23T14:11:37.150080Z"}]})))
        .mount(&s)
        .await;
    Mock::given(path(p))
        .and(query_param("cursor", "ZGV2fDI="))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"offset": 0, "limit": 300, "total": 2, "cursor": "ZGV2fDM=", "data": [{"device_id": "d2"}]})))
        .mount(&s)
        .await;
    Mock::given(path(p))
        .and(query_param("cursor", "ZGV2fDM="))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"total": 2, "cursor": "ZGV2fDQ=", "data": []})),
        )
        .mount(&s)
        .await;
    let c = client(&s.uri());
    let pages = collect(c.prism("apps", vec![], None)).await.unwrap();
    assert_eq!(
        pages.iter().map(|p| p.items.len()).collect::<Vec<_>>(),
        [1, 1, 0]
    );
    assert_eq!(pages[0].items[0].device_name.as_deref(), Some("Mac"));
    assert!(pages[0].items[0].last_changed_at.is_some());
    assert_eq!(pages[2].next, None);
}

#[tokio::test]
async fn users_and_audit_cursors_and_blueprints_tags() {
    let s = MockServer::start().await;
    mount(&s, "/api/v1/audit/events", None, json!({"results": [{"id": "01JNGZW47KZKPXE1JWCFE4PHDW", "occurred_at": "2025-01-01T00:00:00Z", "new_state": {"a": 1}}], "next": null, "previous": null})).await;
    mount(&s, "/api/v1/blueprints", None, json!({"count": 1, "next": null, "previous": null, "results": [{"id": "b1", "name": "Default", "params": {"p": {"mute": false}}, "computers_count": "4"}]})).await;
    mount(&s, "/api/v1/tags", None, json!({"count": 1, "next": null, "previous": null, "results": [{"id": "t1", "name": "Eng"}]})).await;
    let c = client(&s.uri());
    let ev = collect_items(c.audit_events(vec![("sort_by".into(), "occurred_at".into())], None))
        .await
        .unwrap();
    assert_eq!(ev[0].new_state["a"], 1);
    let bp = collect_items(c.blueprints(vec![], None)).await.unwrap();
    assert_eq!(bp[0].computers_count, Some(4));
    let tags = collect_items(c.tags(vec![], None)).await.unwrap();
    assert_eq!(tags[0].name.as_deref(), Some("Eng"));
    let reqs = s.received_requests().await.unwrap();
    let audit = reqs
        .iter()
        .find(|r| r.url.path() == "/api/v1/audit/events")
        .unwrap();
    assert!(audit.url.query().unwrap().contains("limit=500"));
    assert!(audit.url.query().unwrap().contains("sort_by=occurred_at"));
}
