//! The live API's dialect where it differs from what a simulator would naturally say (issue 12):
//! DRF's cursor and page refusals, and the knobs for what is not known.

mod common;

use common::*;
use kandji_sim::Faults;

fn query_of(next: &str, key: &str) -> String {
    let u = url::Url::parse(next).expect("next is a URL");
    u.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("{key} in {next}"))
}

fn b64_decode(s: &str) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u32, 0);
    for c in s.bytes().take_while(|&c| c != b'=') {
        let v = ABC.iter().position(|&x| x == c).expect("base64") as u32;
        buf = (buf << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    String::from_utf8(out).expect("utf-8")
}

/// `/users` pages like DRF's `CursorPagination` (the recorded cursor `cD0yOTE0Mw==` is
/// `p=29143`): its cursors are a base64 `p=<position>` (`r=1&p=…` going back), an empty
/// `cursor=` is the first page, and a cursor that does not decode is 404 "Invalid cursor".
#[tokio::test]
async fn users_cursors_are_drf_cursors() {
    let sim = start(static_config(500, 23)).await;
    let c = client();
    let first = ok(&c, &sim, "/api/v1/users").await;
    let next = first["next"].as_str().expect("a second page");
    let cursor = query_of(next, "cursor");
    let decoded = b64_decode(&cursor);
    assert!(
        decoded.starts_with("p=") && decoded[2..].parse::<u64>().is_ok(),
        "{cursor} decodes to {decoded}"
    );
    let second = ok(&c, &sim, &rebase(&sim, next)).await;
    let back = second["previous"].as_str().expect("a previous page");
    assert!(b64_decode(&query_of(back, "cursor")).starts_with("r=1&p="));
    assert_eq!(
        ok(&c, &sim, &rebase(&sim, back)).await["results"],
        first["results"]
    );

    // An empty cursor is the first page.
    let empty = ok(&c, &sim, "/api/v1/users?cursor=").await;
    assert_eq!(empty["results"], first["results"]);

    // What DRF's `decode_cursor` cannot read (not ASCII, a negative offset, a reverse flag
    // that is not a number): 404, not 400.
    for bad in ["/w==", "bz0tMQ==", "cj14"] {
        let r = get(
            &c,
            &sim,
            &format!("/api/v1/users?cursor={bad}"),
            Some(sim.token()),
        )
        .await;
        assert_eq!(r.status, 404, "cursor {bad}: {}", r.text);
        assert_eq!(r.json(), serde_json::json!({"detail": "Invalid cursor"}));
    }
    // DRF cursors carry a position, not a time: expiry does not touch them.
    sim.set_faults(Faults {
        expire_cursors: true,
        ..Faults::default()
    });
    assert_eq!(
        ok(&c, &sim, &rebase(&sim, next)).await["results"],
        second["results"]
    );
    sim.shutdown().await;
}

/// The custom cursors (audit, Prism, vulnerability detections) are refused with 400 by
/// default, and with 404 under the `cursor_refusal_404` knob; the body is the same.
#[tokio::test]
async fn custom_cursor_refusal_is_400_or_404_by_knob() {
    let sim = start(static_config(400, 5)).await;
    let c = client();
    let mut cursors = Vec::new();
    let v = ok(&c, &sim, "/api/v1/audit/events?limit=5").await;
    cursors.push(rebase(&sim, v["next"].as_str().expect("audit next")));
    let v = ok(&c, &sim, "/api/v1/prism/device_information?limit=5").await;
    cursors.push(format!(
        "/api/v1/prism/device_information?limit=5&cursor={}",
        v["cursor"].as_str().expect("prism cursor")
    ));
    let v = ok(
        &c,
        &sim,
        "/api/v1/vulnerability-management/detections?size=2",
    )
    .await;
    cursors.push(rebase(
        &sim,
        v["next"].as_str().expect("vulnerability next"),
    ));
    for (knob, status) in [(false, 400), (true, 404)] {
        sim.set_faults(Faults {
            expire_cursors: true,
            cursor_refusal_404: knob,
            ..Faults::default()
        });
        for u in &cursors {
            let r = get(&c, &sim, u, Some(sim.token())).await;
            assert_eq!(r.status, status, "{u} with cursor_refusal_404={knob}");
            assert_eq!(r.json(), serde_json::json!({"detail": "Invalid cursor"}));
        }
    }
    sim.shutdown().await;
}

/// DRF's `PageNumberPagination`: a page out of range, zero, negative or not a whole number is
/// 404 "Invalid page."; page 1 always exists (an empty `page=` is page 1), `last` is the last.
#[tokio::test]
async fn page_numbers_out_of_range_are_404_invalid_page() {
    let sim = start(static_config(40, 9)).await;
    let c = client();
    for path in [
        "/api/v1/library/custom-profiles",
        "/api/v1/library/custom-apps",
        "/api/v1/integrations/apple/ade/devices",
    ] {
        let one = ok(&c, &sim, &format!("{path}?page=1")).await;
        assert!(one["next"].is_null(), "{path}: one page at 40 devices");
        assert_eq!(ok(&c, &sim, &format!("{path}?page=last")).await, one);
        // DRF ≥ 3.11 reads an empty `page=` as page 1.
        assert_eq!(ok(&c, &sim, &format!("{path}?page=")).await, one);
        for bad in ["2", "99", "0", "-1", "abc", "1.5"] {
            let r = get(&c, &sim, &format!("{path}?page={bad}"), Some(sim.token())).await;
            assert_eq!(r.status, 404, "{path}?page={bad}: {}", r.text);
            assert_eq!(r.json(), serde_json::json!({"detail": "Invalid page."}));
        }
    }
    sim.shutdown().await;
}

/// Headers as recorded in 2024: JSON with a charset, `Allow` on every real route, `Vary`.
/// Another method on a real route is DRF's 405 with `Allow`, not Kong's 404.
#[tokio::test]
async fn content_type_allow_and_405() {
    let sim = start(static_config(20, 3)).await;
    let c = client();
    let r = get(&c, &sim, "/api/v1/blueprints", Some(sim.token())).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(r.header("allow").as_deref(), Some("GET, HEAD, OPTIONS"));
    assert_eq!(r.header("vary").as_deref(), Some("Origin, Accept-Encoding"));
    let r = c
        .delete(format!("{}/api/v1/devices", sim.base_url()))
        .bearer_auth(sim.token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(
        r.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("GET, HEAD, OPTIONS")
    );
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"detail": "Method \"DELETE\" not allowed."})
    );
    // Without a token, authentication comes first (DRF checks it before the method).
    let r = c
        .delete(format!("{}/api/v1/devices", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // An unknown path is still Kong's.
    let r = get(&c, &sim, "/api/v1/nope", Some(sim.token())).await;
    assert_eq!(r.status, 404);
    assert!(r.json()["message"].as_str().unwrap().contains("no Route"));
    sim.shutdown().await;
}

/// gzip when the client asks for it, and the stats count the bytes either way.
#[tokio::test]
async fn gzip_when_asked() {
    let sim = start(static_config(50, 3)).await;
    install_crypto();
    let raw = reqwest::Client::builder()
        .no_proxy()
        .no_gzip()
        .build()
        .unwrap();
    let url = format!("{}/api/v1/devices?limit=50", sim.base_url());
    let plain = raw.get(&url).bearer_auth(sim.token()).send().await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    let plain = plain.bytes().await.unwrap();
    sim.reset_stats();
    let zipped = raw
        .get(&url)
        .bearer_auth(sim.token())
        .header("accept-encoding", "gzip, deflate")
        .send()
        .await
        .unwrap();
    assert_eq!(
        zipped
            .headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("gzip")
    );
    let zipped = zipped.bytes().await.unwrap();
    assert!(
        zipped.len() * 3 < plain.len(),
        "{} vs {}",
        zipped.len(),
        plain.len()
    );
    let mut inflated = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&zipped[..]),
        &mut inflated,
    )
    .unwrap();
    assert_eq!(inflated, plain);
    let stats = sim.stats();
    assert_eq!(stats.body_bytes, zipped.len() as u64);
    assert_eq!(stats.body_bytes_identity, plain.len() as u64);
    // `q=0` refuses it.
    let r = raw
        .get(&url)
        .bearer_auth(sim.token())
        .header("accept-encoding", "gzip;q=0")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("content-encoding").is_none());
    sim.shutdown().await;
}

/// `limit=0` (or negative, or not a number) is the default limit, as DRF's
/// `LimitOffsetPagination` reads it; ADE links end the path in a slash; a non-ASCII date is
/// a 400, not a panic.
#[tokio::test]
async fn limits_ade_links_and_bad_dates() {
    let sim = start(static_config(900, 3)).await;
    let c = client();
    let default = ok(&c, &sim, "/api/v1/devices").await;
    for l in ["0", "-5", "abc"] {
        let v = ok(&c, &sim, &format!("/api/v1/devices?limit={l}")).await;
        assert_eq!(v, default, "limit={l}");
    }
    let v = ok(&c, &sim, "/api/v1/audit/events?limit=0").await;
    assert_eq!(v["results"].as_array().unwrap().len(), 100);

    let v = ok(&c, &sim, "/api/v1/integrations/apple/ade/devices").await;
    let next = v["next"].as_str().expect("more than 300 ADE devices");
    assert!(next.contains("/ade/devices/?page=2"), "{next}");
    for bad in [
        "2026-01-0\u{e9}",
        "\u{1F600}\u{1F600}\u{1F600}",
        "2026-13-45",
    ] {
        let q: String = url::form_urlencoded::byte_serialize(bad.as_bytes()).collect();
        let r = get(
            &c,
            &sim,
            &format!("/api/v1/audit/events?end_date={q}"),
            Some(sim.token()),
        )
        .await;
        assert_eq!(r.status, 400, "end_date={bad}: {}", r.text);
    }
    sim.shutdown().await;
}

/// Per-device endpoints as recorded: `automated_device_enrollment` holds JSON booleans, or is
/// `{}` for a device not enrolled through ADE; `/devices/{id}/apps` carries the pagination
/// headers and `T`/`Z` times.
#[tokio::test]
async fn per_device_endpoints_as_recorded() {
    let sim = start(static_config(60, 3)).await;
    let c = client();
    let (mut empty, mut booleans) = (0, 0);
    for d in sim.truth("device_details").as_array().unwrap() {
        if d["general"]["platform"] == "Android" {
            // Android details have no ADE section (the spec's example).
            assert!(d.get("automated_device_enrollment").is_none());
            continue;
        }
        let ade = &d["automated_device_enrollment"];
        let o = ade.as_object().expect("an object");
        if o.is_empty() {
            empty += 1;
        } else {
            assert!(ade["auto_enroll_eligible"].is_boolean(), "{ade}");
            assert!(ade["auto_enrolled"].is_boolean(), "{ade}");
            booleans += 1;
        }
    }
    assert!(
        empty > 0 && booleans > 0,
        "{empty} without ADE, {booleans} with"
    );

    let id = first_mac(&sim)["device_id"].as_str().unwrap().to_owned();
    let r = get(
        &c,
        &sim,
        &format!("/api/v1/devices/{id}/apps"),
        Some(sim.token()),
    )
    .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    let n = v["apps"].as_array().unwrap().len();
    assert_eq!(r.header("x-total-count"), Some(n.to_string()));
    assert_eq!(r.header("x-total-pages").as_deref(), Some("1"));
    assert_eq!(
        r.header("link").as_deref(),
        Some(r#"<None>; rel="next", <None>; rel="prev""#)
    );
    for a in v["apps"].as_array().unwrap() {
        for k in ["creation_date", "modification_date"] {
            let t = a[k].as_str().unwrap();
            assert!(
                t.len() == 27 && &t[10..11] == "T" && t.ends_with('Z'),
                "{k}: {t}"
            );
        }
    }
    sim.shutdown().await;
}

/// The licence flags hold everywhere: without EDR there are no threats, no behavioral
/// detections, no EDR audit events and no EDR library item; without Vulnerability Management
/// no detections and no vulnerability audit events.
#[tokio::test]
async fn licence_flags_are_consistent() {
    let mut cfg = static_config(300, 21);
    cfg.licensed_edr = false;
    cfg.licensed_vuln = false;
    cfg.churn = kandji_sim::Churn::default();
    let sim = start(cfg).await;
    sim.advance(std::time::Duration::from_secs(6 * 3600));
    let audit = sim.truth("audit_events");
    let types: std::collections::BTreeSet<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["target_type"].as_str())
        .collect();
    assert!(!types.is_empty());
    assert!(!types.contains("file_detection"), "{types:?}");
    assert!(!types.contains("vulnerability"), "{types:?}");
    for cat in [
        "threats",
        "behavioral_detections",
        "vulnerability_detections",
    ] {
        assert_eq!(sim.truth(cat).as_array().map_or(0, Vec::len), 0, "{cat}");
    }
    assert_eq!(edr_items(&sim), 0, "no device has the EDR policy");
    sim.shutdown().await;

    // Licensed, the same tenant has all of them.
    let mut cfg = static_config(300, 21);
    cfg.churn = kandji_sim::Churn::default();
    let sim = start(cfg).await;
    let types: std::collections::BTreeSet<String> = sim
        .truth("audit_events")
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["target_type"].as_str().map(str::to_owned))
        .collect();
    assert!(
        types.contains("file_detection") && types.contains("vulnerability"),
        "{types:?}"
    );
    assert!(edr_items(&sim) > 0, "Macs have the EDR policy");
    sim.shutdown().await;
}

/// Library items of type `threat-security-policy` across the fleet.
fn edr_items(sim: &kandji_sim::SimHandle) -> usize {
    sim.truth("compliance")
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["library_items"].as_array().cloned().unwrap_or_default())
        .filter(|i| i["type"] == "threat-security-policy")
        .count()
}

/// Android and Windows devices (Iru manages both): on `/devices` with their platform and the
/// Android fields (present, blank, on every device); Android details and apps in the spec's
/// shapes; Windows left out of details and apps; neither in Prism, exports or ADE.
#[tokio::test]
async fn android_and_windows_devices() {
    let sim = start(static_config(400, 12)).await;
    let c = client();
    let devices = sim.truth("devices");
    let devices = devices.as_array().unwrap();
    let of = |p: &str| -> Vec<&serde_json::Value> {
        devices.iter().filter(|d| d["platform"] == p).collect()
    };
    let (android, windows) = (of("Android"), of("Windows"));
    assert!(
        !android.is_empty() && !windows.is_empty(),
        "a few per cent of 400"
    );
    assert!(android.len() + windows.len() < devices.len() / 5);
    for d in devices {
        for k in ["api_level", "security_patch_level", "full_software_version"] {
            assert!(d[k].is_string(), "{k} on every device: {d}");
        }
    }
    let a = android[0];
    assert!(a["api_level"].as_str().unwrap().parse::<u32>().is_ok());
    assert!(!a["security_patch_level"].as_str().unwrap().is_empty());
    assert!(
        !windows[0]["full_software_version"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    let id = a["device_id"].as_str().unwrap();
    let det = ok(&c, &sim, &format!("/api/v1/devices/{id}/details")).await;
    assert_eq!(det["general"]["platform"], "Android");
    for absent in ["mdm", "volumes", "hardware_overview"] {
        assert!(det.get(absent).is_none(), "{absent}");
    }
    let apps = ok(&c, &sim, &format!("/api/v1/devices/{id}/apps")).await;
    let first = &apps["apps"][0];
    for k in [
        "display_name",
        "package_name",
        "version_name",
        "sha256_hash",
        "application_source",
    ] {
        assert!(first[k].is_string(), "{k}: {first}");
    }
    assert!(first.get("bundle_id").is_none() && first.get("app_name").is_none());
    let w = windows[0]["device_id"].as_str().unwrap();
    for suffix in ["details", "apps"] {
        let r = get(
            &c,
            &sim,
            &format!("/api/v1/devices/{w}/{suffix}"),
            Some(sim.token()),
        )
        .await;
        assert_eq!(r.status, 404, "Windows {suffix}");
    }
    // `/devices?platform=Android` lists exactly them.
    let listed = ok(&c, &sim, "/api/v1/devices?platform=Android&limit=300").await;
    assert_eq!(listed.as_array().unwrap().len(), android.len());
    // Not in Prism, exports or ADE.
    let others: std::collections::BTreeSet<&str> = android
        .iter()
        .chain(windows.iter())
        .map(|d| d["device_id"].as_str().unwrap())
        .collect();
    let prism = ok(&c, &sim, "/api/v1/prism/device_information?limit=300").await;
    let mut seen = 0;
    let mut next = prism;
    loop {
        for r in next["data"].as_array().unwrap() {
            assert!(!others.contains(r["device_id"].as_str().unwrap()));
            seen += 1;
        }
        match next["cursor"].as_str() {
            Some(cur) => {
                next = ok(
                    &c,
                    &sim,
                    &format!("/api/v1/prism/device_information?limit=300&cursor={cur}"),
                )
                .await
            }
            None => break,
        }
    }
    assert_eq!(seen, devices.len() - others.len());
    for r in sim.truth("ade_devices").as_array().unwrap() {
        if let Some(d) = r["mdm_device"]["id"].as_str() {
            assert!(!others.contains(d));
        }
    }
    sim.shutdown().await;
}

/// Prism's filter grammar as documented: `or` (to exclude a time window) and the list form of
/// `like` work; `in` with `not_in` on one attribute, and a key that is not a column, are 400
/// (assumed: the live API most likely refuses them rather than matching nothing).
#[tokio::test]
async fn prism_filter_grammar() {
    let sim = start(static_config(60, 5)).await;
    let c = client();
    let url = |f: serde_json::Value| {
        let f: String = url::form_urlencoded::byte_serialize(f.to_string().as_bytes()).collect();
        format!("/api/v1/prism/device_information?limit=300&filter={f}")
    };
    let all = ok(&c, &sim, "/api/v1/prism/device_information?limit=300").await;
    let rows = all["data"].as_array().unwrap();
    let serial = |i: usize| rows[i]["serial_number"].as_str().unwrap().to_owned();
    let (s1, s2) = (serial(0), serial(1));
    let n = |v: &serde_json::Value| v["data"].as_array().unwrap().len();
    let or = ok(
        &c,
        &sim,
        &url(serde_json::json!({"serial_number": {"or": [{"eq": s1}, {"eq": s2}]}})),
    )
    .await;
    assert_eq!(n(&or), 2);
    let like = ok(
        &c,
        &sim,
        &url(serde_json::json!({"serial_number": {"like": [s1, s2]}})),
    )
    .await;
    assert_eq!(n(&like), 2);
    // Excluding a time window with `or`: everything outside it.
    let t = rows[rows.len() / 2]["updated_at"]
        .as_str()
        .unwrap()
        .to_owned();
    let outside = ok(
        &c,
        &sim,
        &url(serde_json::json!({"updated_at": {"or": [{"lt": t}, {"gt": t}]}})),
    )
    .await;
    let at_t = rows
        .iter()
        .filter(|r| r["updated_at"] == t.as_str())
        .count();
    assert_eq!(n(&outside), rows.len() - at_t);
    assert!(at_t > 0);
    for (bad, why) in [
        (
            serde_json::json!({"serial_number": {"in": [s1.clone()], "not_in": [s2.clone()]}}),
            "cannot be combined",
        ),
        (
            serde_json::json!({"nope": {"eq": 1}}),
            "Invalid filter key: nope",
        ),
        (
            serde_json::json!({"serial_number": {"or": "x"}}),
            "or takes a list",
        ),
    ] {
        let r = get(&c, &sim, &url(bad.clone()), Some(sim.token())).await;
        assert_eq!(r.status, 400, "{bad}");
        assert!(
            r.json()["detail"].as_str().unwrap().contains(why),
            "{}",
            r.text
        );
    }
    let r = post_json(
        &c,
        &sim,
        "/api/v1/prism/export",
        sim.token(),
        &serde_json::json!({"category": "apps", "filter": {"nope": {"eq": 1}}}),
    )
    .await;
    assert_eq!(r.status, 400);
    // The columns the collector filters on are known keys.
    for cat in [
        "apps",
        "device_information",
        "filevault",
        "application_firewall",
    ] {
        let f: String = url::form_urlencoded::byte_serialize(
            br#"{"last_changed_at":{"gte":"2020-01-01T00:00:00Z"}}"#,
        )
        .collect();
        let r = get(
            &c,
            &sim,
            &format!("/api/v1/prism/{cat}?limit=1&filter={f}"),
            Some(sim.token()),
        )
        .await;
        assert_eq!(r.status, 200, "{cat}: {}", r.text);
    }
    sim.shutdown().await;
}

/// Volumes that make every pagination path run: the CVE list grows with the fleet (more than
/// a page of 50 at 600 devices), and a large tenant has more than a page of 300 blueprints.
#[tokio::test]
async fn volumes_scale_with_the_fleet() {
    let sim = start(static_config(600, 8)).await;
    let c = client();
    let first = ok(
        &c,
        &sim,
        "/api/v1/vulnerability-management/vulnerabilities?size=50",
    )
    .await;
    let total = first["total"].as_u64().unwrap();
    assert!(total > 50, "{total} CVEs with detections at 600 devices");
    let mut got = Vec::new();
    for page in 1..=total.div_ceil(50) {
        let v = ok(
            &c,
            &sim,
            &format!("/api/v1/vulnerability-management/vulnerabilities?size=50&page={page}"),
        )
        .await;
        got.extend(
            v["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["cve_id"].clone()),
        );
    }
    let truth: Vec<serde_json::Value> = sim
        .truth("vulnerabilities")
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["cve_id"].clone())
        .collect();
    assert_eq!(got.len(), truth.len());
    sim.shutdown().await;

    let mut cfg = static_config(50, 8);
    cfg.large_tenant = true;
    let sim = start(cfg).await;
    let v = ok(&c, &sim, "/api/v1/blueprints").await;
    assert_eq!(v["count"], 350);
    assert!(v["next"].is_string(), "a second page of blueprints");
    let blueprints = sim.truth("blueprints");
    let names: std::collections::BTreeSet<&str> = blueprints
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 350, "blueprint names are distinct");
    // Thousands of tags, in the one envelope `/tags` has (no paging documented); the 12 the
    // devices carry first, and a search still finds one.
    let v = ok(&c, &sim, "/api/v1/tags").await;
    assert_eq!(v["count"], 2_500);
    assert_eq!(v["results"].as_array().unwrap().len(), 2_500);
    assert!(v["next"].is_null());
    let names: std::collections::BTreeSet<String> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names.len(), 2_500, "tag names are distinct");
    let v = ok(&c, &sim, "/api/v1/tags?search=team-2500").await;
    assert_eq!(v["count"], 1);
    assert_eq!(sim.truth("tags").as_array().unwrap().len(), 2_500);
    sim.shutdown().await;
}

/// `rate_limit_headers: false` sends none of them, as the 2023 recordings.
#[tokio::test]
async fn rate_limit_headers_can_be_absent() {
    let mut cfg = static_config(10, 3);
    cfg.rate_limit_headers = false;
    let sim = start(cfg).await;
    let c = client();
    let r = get(&c, &sim, "/api/v1/devices", Some(sim.token())).await;
    assert_eq!(r.status, 200);
    for h in [
        "x-ratelimit-limit-hour",
        "x-ratelimit-remaining-hour",
        "ratelimit-limit",
        "ratelimit-reset",
    ] {
        assert!(r.header(h).is_none(), "{h}");
    }
    sim.shutdown().await;
}
