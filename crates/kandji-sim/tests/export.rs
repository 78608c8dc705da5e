//! Prism export round trips: POST, polls, signed URL on the simulator, CSV.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn export_round_trip_with_multiline_csv_fields() {
    let sim = start(static_config(40, 11)).await;
    let c = client();
    let r = post_json(&c, &sim, "/api/v1/prism/export", sim.token(), &json!({"category": "apps", "blueprint_ids": [], "device_families": [], "filter": {}, "columns": [], "sort_by": ""})).await;
    assert_eq!(r.status, 200);
    let job = r.json();
    assert_eq!(job["status"], "pending");
    assert!(job["signed_url"].is_null() && job["path"].is_null() && job["error_msg"].is_null());
    let id = job["id"].as_str().unwrap().to_owned();

    // export_polls = 2 by default: pending, then success.
    let p1 = ok(&c, &sim, &format!("/api/v1/prism/export/{id}")).await;
    assert_eq!(p1["status"], "pending");
    let p2 = ok(&c, &sim, &format!("/api/v1/prism/export/{id}")).await;
    assert_eq!(p2["status"], "success");
    let url = p2["signed_url"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with(&format!("{}/__sim/export/", sim.base_url())),
        "{url}"
    );
    assert!(url.contains("X-Amz-Expires=172800") && url.contains("X-Amz-Signature="));
    assert!(
        p2["path"]
            .as_str()
            .unwrap()
            .ends_with(&format!("-apps-{id}.csv"))
    );

    // The bearer header is refused (S3 style).
    let r = c.get(&url).bearer_auth(sim.token()).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("<Error>"));
    // A wrong signature too.
    let bad = url.replace("X-Amz-Signature=", "X-Amz-Signature=00");
    assert_eq!(c.get(&bad).send().await.unwrap().status(), 403);

    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body = r.bytes().await.unwrap();
    let mut rd = csv::Reader::from_reader(body.as_ref());
    let headers = rd.headers().unwrap().clone();
    for k in [
        "device_id",
        "name",
        "bundle_id",
        "version",
        "copyright",
        "last_changed_at",
    ] {
        assert!(headers.iter().any(|h| h == k), "CSV lacks column {k}");
    }
    let ci = headers.iter().position(|h| h == "copyright").unwrap();
    let mut rows = 0u64;
    let mut multiline = 0;
    for rec in rd.records() {
        let rec = rec.expect("valid CSV record");
        assert_eq!(rec.len(), headers.len());
        if rec[ci].contains('\n') {
            multiline += 1;
        }
        rows += 1;
    }
    assert!(multiline > 0, "no multi-line copyright field");
    let lines = body.iter().filter(|&&b| b == b'\n').count() as u64;
    assert!(
        lines > rows + 1,
        "multi-line fields must make the line count exceed the record count"
    );
    let count = ok(&c, &sim, "/api/v1/prism/count?category=apps").await;
    assert_eq!(
        count["count"].as_u64().unwrap(),
        rows,
        "export rows == /prism/count"
    );
    let truth_apps: u64 = sim
        .truth("apps")
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["apps"].as_array().unwrap().len() as u64)
        .sum();
    assert_eq!(truth_apps, rows, "export rows == truth apps");
    sim.shutdown().await;
}

#[tokio::test]
async fn export_validation_and_filters() {
    let sim = start(static_config(40, 11)).await;
    let c = client();
    let r = post_json(
        &c,
        &sim,
        "/api/v1/prism/export",
        sim.token(),
        &json!({"category": "application_firewal"}),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["detail"], "Invalid category: application_firewal");
    let r = get(&c, &sim, "/api/v1/prism/nope", Some(sim.token())).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["detail"], "Invalid category: nope");
    // ms_compliance is export-only; device_families narrows the rows.
    for (cat, fam, min) in [
        ("ms_compliance", json!([]), 1),
        ("device_information", json!(["iPhone"]), 1),
    ] {
        let r = post_json(
            &c,
            &sim,
            "/api/v1/prism/export",
            sim.token(),
            &json!({"category": cat, "device_families": fam}),
        )
        .await;
        assert_eq!(r.status, 200, "{cat}");
        let id = r.json()["id"].as_str().unwrap().to_owned();
        ok(&c, &sim, &format!("/api/v1/prism/export/{id}")).await;
        let done = ok(&c, &sim, &format!("/api/v1/prism/export/{id}")).await;
        let body = c
            .get(done["signed_url"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let mut rd = csv::Reader::from_reader(body.as_bytes());
        let fam_col = rd
            .headers()
            .unwrap()
            .iter()
            .position(|h| h == "device__family")
            .unwrap();
        let recs: Vec<csv::StringRecord> = rd.records().map(|r| r.unwrap()).collect();
        assert!(recs.len() >= min, "{cat}: {} rows", recs.len());
        if cat == "device_information" {
            assert!(recs.iter().all(|r| &r[fam_col] == "iPhone"));
        }
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn realistic_app_counts_per_platform() {
    let sim = start(static_config(400, 12)).await;
    let devices = sim.truth("devices");
    let apps = sim.truth("apps");
    let mut ranges: std::collections::HashMap<String, (usize, usize)> = Default::default();
    // Windows devices have no apps endpoint; every other device one entry, in fleet order.
    for (d, a) in devices
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["platform"] != "Windows")
        .zip(apps.as_array().unwrap())
    {
        assert_eq!(d["device_id"], a["device_id"]);
        let n = a["apps"].as_array().unwrap().len();
        let e = ranges
            .entry(d["platform"].as_str().unwrap().to_owned())
            .or_insert((usize::MAX, 0));
        e.0 = e.0.min(n);
        e.1 = e.1.max(n);
    }
    let (lo, hi) = ranges["Mac"];
    assert!(lo >= 90 && hi <= 260, "Mac apps {lo}..{hi}");
    for p in ["iPhone", "iPad"] {
        let (lo, hi) = ranges[p];
        assert!(lo >= 6 && hi <= 60, "{p} apps {lo}..{hi}");
    }
    let (lo, hi) = ranges["AppleTV"];
    assert!(hi <= 6, "Apple TV apps {lo}..{hi}");
    let (lo, hi) = ranges["Android"];
    assert!(lo >= 5 && hi <= 10, "Android apps {lo}..{hi}");
    // Markup in a few percent of device and app names, for the console's escaping tests.
    let names = devices
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["device_name"].as_str().unwrap().contains('<'))
        .count();
    assert!(
        names > 0 && names * 10 < devices.as_array().unwrap().len(),
        "{names} device names with markup"
    );
    let rows: Vec<&serde_json::Value> = apps
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|a| a["apps"].as_array().unwrap())
        .collect();
    let markup = rows
        .iter()
        // Android apps have `display_name`, not `app_name`.
        .filter(|r| r["app_name"].as_str().is_some_and(|n| n.contains('<')))
        .count();
    assert!(
        markup > 0 && markup * 10 < rows.len(),
        "{markup} of {} app rows with markup",
        rows.len()
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn export_cells_equal_the_prism_rows() {
    let sim = start(static_config(15, 13)).await;
    let c = client();
    for (cat, cols) in [
        ("apps", json!([])),
        (
            "local_users",
            json!(["username", "device_id", "uid", "secure_token"]),
        ),
    ] {
        let r = post_json(
            &c,
            &sim,
            "/api/v1/prism/export",
            sim.token(),
            &json!({"category": cat, "columns": cols}),
        )
        .await;
        let id = r.json()["id"].as_str().unwrap().to_owned();
        ok(&c, &sim, &format!("/api/v1/prism/export/{id}")).await;
        let done = ok(&c, &sim, &format!("/api/v1/prism/export/{id}")).await;
        let body = c
            .get(done["signed_url"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let mut rd = csv::Reader::from_reader(body.as_bytes());
        let headers: Vec<String> = rd.headers().unwrap().iter().map(str::to_owned).collect();
        if let Some(want) = cols.as_array().filter(|a| !a.is_empty()) {
            assert_eq!(
                headers.len(),
                want.len(),
                "{cat}: only the requested columns"
            );
        }
        let recs: Vec<csv::StringRecord> = rd.records().map(|r| r.unwrap()).collect();
        // The same rows through the JSON API, in the same order.
        let mut rows = Vec::new();
        let mut url = format!("/api/v1/prism/{cat}?limit=300");
        loop {
            let v = ok(&c, &sim, &url).await;
            rows.extend(v["data"].as_array().unwrap().iter().cloned());
            match v["cursor"].as_str() {
                Some(cur) => url = format!("/api/v1/prism/{cat}?limit=300&cursor={cur}"),
                None => break,
            }
        }
        assert_eq!(recs.len(), rows.len(), "{cat}");
        for (rec, row) in recs.iter().zip(&rows) {
            for (i, h) in headers.iter().enumerate() {
                let want = match &row[h.as_str()] {
                    serde_json::Value::Null => String::new(),
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                assert_eq!(&rec[i], want.as_str(), "{cat}.{h}");
            }
        }
    }
    sim.shutdown().await;
}
