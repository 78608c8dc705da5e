//! Pagination walks (offset, page, cursors) under live churn, filters, and truth == served.

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use common::*;
use kandji_sim::{Churn, SimConfig, SimHandle};
use serde_json::Value;

fn ids(v: &Value, key: &str) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x[key].as_str().unwrap().to_owned())
        .collect()
}

fn churny(devices: usize, seed: u64) -> SimConfig {
    SimConfig {
        devices,
        seed,
        per_second_limit: 100_000,
        hourly_limit: 1_000_000,
        churn: Churn {
            enroll: 120.0,
            unenroll: 120.0,
            app_changes: 600.0,
            compliance_flips: 300.0,
            ..Churn::default()
        },
        ..SimConfig::default()
    }
}

#[tokio::test]
async fn offset_walk_under_churn_shifts_but_never_duplicates() {
    let sim = start(churny(300, 21)).await;
    let c = client();
    let start_ids: HashSet<String> = ids(&sim.truth("devices"), "device_id")
        .into_iter()
        .collect();
    let mut seen = Vec::new();
    let mut totals = BTreeSet::new();
    let mut offset = 0;
    loop {
        let r = get(
            &c,
            &sim,
            &format!("/api/v1/devices?limit=25&offset={offset}"),
            Some(sim.token()),
        )
        .await;
        assert_eq!(r.status, 200);
        totals.insert(r.header("X-Total-Count").unwrap());
        let link = r.header("Link").unwrap();
        let page = r.json();
        let n = page.as_array().unwrap().len();
        seen.extend(ids(&page, "device_id"));
        if n < 25 {
            assert!(link.starts_with("<None>; rel=\"next\""), "{link}");
            break;
        }
        offset += 25;
        sim.advance(Duration::from_secs(600)); // devices enroll and unenroll mid-walk
    }
    let end_ids: HashSet<String> = ids(&sim.truth("devices"), "device_id")
        .into_iter()
        .collect();
    let removed = sim.truth("removed_devices").as_array().unwrap().len();
    assert!(
        totals.len() > 1,
        "the total must change during the walk: {totals:?}"
    );
    assert!(removed > 0);
    let uniq: HashSet<&String> = seen.iter().collect();
    assert_eq!(
        uniq.len(),
        seen.len(),
        "default ordering appends enrolments: no duplicates"
    );
    let stable: HashSet<&String> = start_ids.intersection(&end_ids).collect();
    let missed = stable.iter().filter(|id| !uniq.contains(**id)).count();
    assert!(
        missed <= removed,
        "each unenrolment shifts by at most one: missed {missed}, removed {removed}"
    );
    for id in &seen {
        assert!(
            start_ids.contains(id) || end_ids.contains(id) || !start_ids.contains(id),
            "served a device that never existed"
        );
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn prism_and_audit_cursor_walks_stay_complete_under_churn() {
    let sim = start(churny(250, 22)).await;
    let c = client();
    // Prism lists Apple devices only.
    let apple = |v: Value| -> Value {
        Value::Array(
            v.as_array()
                .unwrap()
                .iter()
                .filter(|d| !matches!(d["platform"].as_str(), Some("Android" | "Windows")))
                .cloned()
                .collect(),
        )
    };
    let start_devs: HashSet<String> = ids(&apple(sim.truth("devices")), "device_id")
        .into_iter()
        .collect();
    let start_events: Vec<String> = ids(&sim.truth("audit_events"), "id");

    // Prism cursor walk.
    let mut seen = Vec::new();
    let mut url = "/api/v1/prism/device_information?limit=20".to_owned();
    loop {
        let v = ok(&c, &sim, &url).await;
        seen.extend(ids(&v["data"], "device_id"));
        match v["cursor"].as_str() {
            Some(cur) if !cur.is_empty() => {
                url = format!("/api/v1/prism/device_information?limit=20&cursor={cur}")
            }
            _ => break,
        }
        sim.advance(Duration::from_secs(900));
    }
    let end_devs: HashSet<String> = ids(&apple(sim.truth("devices")), "device_id")
        .into_iter()
        .collect();
    let uniq: HashSet<&String> = seen.iter().collect();
    assert_eq!(
        uniq.len(),
        seen.len(),
        "cursor walk returned a device twice"
    );
    for id in start_devs.intersection(&end_devs) {
        assert!(uniq.contains(id), "cursor walk missed stable device {id}");
    }
    assert!(start_devs != end_devs, "churn must have changed the fleet");

    // The cursor is bound to its query.
    let v = ok(&c, &sim, "/api/v1/prism/apps?limit=5").await;
    let cur = v["cursor"].as_str().unwrap();
    let r = get(
        &c,
        &sim,
        &format!("/api/v1/prism/apps?limit=5&cursor={cur}&device_families=Mac"),
        Some(sim.token()),
    )
    .await;
    assert_eq!(r.status, 400);
    let r = get(
        &c,
        &sim,
        &format!("/api/v1/prism/filevault?limit=5&cursor={cur}"),
        Some(sim.token()),
    )
    .await;
    assert_eq!(r.status, 400);

    // Audit cursor walk (ascending), new events arrive mid-walk.
    let mut got = Vec::new();
    let mut next = Some(format!(
        "{}/api/v1/audit/events?limit=100&sort_by=occurred_at",
        sim.base_url()
    ));
    while let Some(u) = next {
        let v = ok(&c, &sim, &u).await;
        got.extend(ids(&v["results"], "id"));
        next = v["next"].as_str().map(|n| {
            assert!(
                n.starts_with(&sim.base_url()),
                "audit next is on the API host: {n}"
            );
            n.to_owned()
        });
        sim.advance(Duration::from_secs(300));
    }
    let set: HashSet<&String> = got.iter().collect();
    assert_eq!(set.len(), got.len(), "audit walk returned an event twice");
    for e in &start_events {
        assert!(set.contains(e), "audit walk missed {e}");
    }
    let mut sorted = got.clone();
    sorted.sort();
    // ULIDs sort by time; ascending occurred_at walk is ascending by id at ms resolution.
    assert_eq!(got.first(), sorted.first());
    sim.shutdown().await;
}

#[tokio::test]
async fn users_and_vulnerability_cursor_walks_match_truth() {
    let sim = start(static_config(500, 23)).await;
    let c = client();
    let mut got = Vec::new();
    let mut next = Some(format!("{}/api/v1/users", sim.base_url()));
    let mut pages = 0;
    while let Some(u) = next {
        let v = ok(&c, &sim, &u).await;
        assert!(v.get("count").is_none());
        got.extend(ids(&v["results"], "id"));
        pages += 1;
        next = v["next"].as_str().map(|n| {
            assert!(
                n.starts_with("https://acme.kandji.io/api/v1/users?cursor="),
                "users next is on the web host: {n}"
            );
            rebase(&sim, n)
        });
    }
    assert_eq!(pages, 2);
    assert_eq!(got, ids(&sim.truth("users"), "id"));

    let mut rows = Vec::new();
    let mut url = "/api/v1/vulnerability-management/detections?size=37".to_owned();
    loop {
        let v = ok(&c, &sim, &url).await;
        rows.extend(v["results"].as_array().unwrap().iter().cloned());
        match v["next"].as_str() {
            Some(n) => url = rebase(&sim, n),
            None => break,
        }
    }
    assert_eq!(Value::Array(rows), sim.truth("vulnerability_detections"));
    // Filter with the real names and the spec's names.
    let f = url::form_urlencoded::byte_serialize(br#"{"severity":{"in":["Critical"]}}"#)
        .collect::<String>();
    let v = ok(
        &c,
        &sim,
        &format!("/api/v1/vulnerability-management/detections?filter={f}"),
    )
    .await;
    assert!(
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["severity"] == "Critical")
    );
    assert!(!v["results"].as_array().unwrap().is_empty());
    sim.shutdown().await;
}

async fn walk_devices(c: &reqwest::Client, sim: &SimHandle, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let v = ok(
            c,
            sim,
            &format!("/api/v1/devices?limit=300&offset={offset}{query}"),
        )
        .await;
        let a = v.as_array().unwrap();
        out.extend(a.iter().cloned());
        if a.len() < 300 {
            return out;
        }
        offset += 300;
    }
}

#[tokio::test]
async fn truth_equals_served_data() {
    let sim = start(static_config(700, 24)).await;
    let c = client();
    let devices = walk_devices(&c, &sim, "").await;
    assert_eq!(Value::Array(devices.clone()), sim.truth("devices"));
    let served = get(&c, &sim, "/__sim/truth/devices", None).await.json();
    assert_eq!(served, sim.truth("devices"));
    let ndjson = get(&c, &sim, "/__sim/truth/devices?format=ndjson", None)
        .await
        .text;
    assert_eq!(ndjson.lines().count(), devices.len());

    for d in devices.iter().step_by(97) {
        let id = d["device_id"].as_str().unwrap();
        let apps = ok(&c, &sim, &format!("/api/v1/devices/{id}/apps")).await;
        let t = get(&c, &sim, &format!("/__sim/truth/apps?device_id={id}"), None)
            .await
            .json();
        assert_eq!(Value::Array(vec![apps]), t);
        let st = ok(&c, &sim, &format!("/api/v1/devices/{id}/status")).await;
        let t = get(
            &c,
            &sim,
            &format!("/__sim/truth/compliance?device_id={id}"),
            None,
        )
        .await
        .json();
        assert_eq!(Value::Array(vec![st]), t);
        let det = ok(&c, &sim, &format!("/api/v1/devices/{id}/details")).await;
        assert_eq!(
            Value::Array(vec![det]),
            get(
                &c,
                &sim,
                &format!("/__sim/truth/device_details?device_id={id}"),
                None
            )
            .await
            .json()
        );
    }

    let as_set = |v: Vec<Value>| -> BTreeSet<String> { v.iter().map(|x| x.to_string()).collect() };
    let mut threats = Vec::new();
    let mut offset = 0;
    loop {
        let v = ok(
            &c,
            &sim,
            &format!("/api/v1/threat-details?limit=7&offset={offset}"),
        )
        .await;
        let a = v["results"].as_array().unwrap();
        threats.extend(a.iter().cloned());
        if v["next"].is_null() {
            break;
        }
        offset += 7;
    }
    assert_eq!(
        as_set(threats),
        as_set(sim.truth("threats").as_array().unwrap().clone())
    );
    let bd = ok(&c, &sim, "/api/v1/behavioral-detections?limit=1000").await;
    assert_eq!(
        bd["total_count"].as_u64().unwrap() as usize,
        sim.truth("behavioral_detections").as_array().unwrap().len()
    );
    assert_eq!(
        bd["malicious_count"].as_u64().unwrap() + bd["suspicious_count"].as_u64().unwrap(),
        bd["total_count"].as_u64().unwrap()
    );
    let bp = ok(&c, &sim, "/api/v1/blueprints?limit=1000").await;
    assert_eq!(bp["results"], sim.truth("blueprints"));
    assert_eq!(
        ok(&c, &sim, "/api/v1/tags").await["results"],
        sim.truth("tags")
    );
    assert_eq!(
        ok(&c, &sim, "/api/v1/settings/licensing").await,
        sim.truth("licensing")
    );
    // Every page of 50 (the CVE list grows with the fleet).
    let mut vul = Vec::new();
    for page in 1.. {
        let v = ok(
            &c,
            &sim,
            &format!("/api/v1/vulnerability-management/vulnerabilities?size=50&page={page}"),
        )
        .await;
        let rows = v["results"].as_array().unwrap().clone();
        let done = rows.len() < 50;
        vul.extend(rows);
        if done {
            break;
        }
    }
    assert_eq!(Value::Array(vul), sim.truth("vulnerabilities"));

    let mut ade = Vec::new();
    let mut page = 1;
    loop {
        let v = ok(
            &c,
            &sim,
            &format!("/api/v1/integrations/apple/ade/devices?page={page}"),
        )
        .await;
        ade.extend(v["results"].as_array().unwrap().iter().cloned());
        if v["next"].is_null() {
            break;
        }
        page += 1;
    }
    assert_eq!(Value::Array(ade), sim.truth("ade_devices"));

    let mut events = Vec::new();
    let mut next = Some("/api/v1/audit/events?limit=500".to_owned());
    while let Some(u) = next {
        let v = ok(&c, &sim, &u).await;
        events.extend(v["results"].as_array().unwrap().iter().cloned());
        next = v["next"].as_str().map(str::to_owned);
    }
    assert_eq!(Value::Array(events), sim.truth("audit_events"));
    sim.shutdown().await;
}

#[tokio::test]
async fn determinism_from_the_seed() {
    let paths = [
        "/api/v1/devices?limit=50",
        "/api/v1/users",
        "/api/v1/audit/events?limit=50",
        "/api/v1/prism/apps?limit=50",
        "/api/v1/threat-details",
        "/api/v1/vulnerability-management/detections?size=20",
        "/api/v1/blueprints",
        "/api/v1/integrations/apple/ade/devices",
    ];
    let mut bodies: Vec<Vec<String>> = Vec::new();
    for seed in [5u64, 5, 6] {
        let sim = start(SimConfig {
            seed,
            ..churny(120, seed)
        })
        .await;
        sim.advance(Duration::from_secs(3 * 3600));
        let c = client();
        let dev = sim.truth("devices")[0]["device_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut out = Vec::new();
        for p in paths.iter().map(|p| (*p).to_owned()).chain([
            format!("/api/v1/devices/{dev}/details"),
            format!("/api/v1/devices/{dev}/apps"),
        ]) {
            out.push(
                get(&c, &sim, &p, Some(sim.token()))
                    .await
                    .text
                    .replace(&sim.base_url(), "BASE"),
            );
        }
        out.push(sim.truth("audit_events").to_string());
        bodies.push(out);
        sim.shutdown().await;
    }
    assert_eq!(bodies[0], bodies[1], "same seed, same bodies");
    let differing = bodies[0]
        .iter()
        .zip(&bodies[2])
        .filter(|(a, b)| a != b)
        .count();
    assert!(
        differing >= bodies[0].len() - 1,
        "different seeds must differ ({differing} of {})",
        bodies[0].len()
    );
}

#[tokio::test]
async fn filters_ordering_and_offsets_past_the_end() {
    let sim = start(static_config(400, 25)).await;
    let c = client();
    let all = sim.truth("devices");
    let all = all.as_array().unwrap();
    for (q, pred) in [
        (
            "&platform=iPad",
            Box::new(|d: &Value| d["platform"] == "iPad") as Box<dyn Fn(&Value) -> bool>,
        ),
        (
            "&tag_name=remote",
            Box::new(|d: &Value| d["tags"].as_array().unwrap().iter().any(|t| t == "remote")),
        ),
        (
            "&tag_name_in=vip,lab",
            Box::new(|d: &Value| {
                d["tags"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|t| t == "vip" || t == "lab")
            }),
        ),
    ] {
        let got = walk_devices(&c, &sim, q).await;
        let want: Vec<Value> = all.iter().filter(|d| pred(d)).cloned().collect();
        assert!(!want.is_empty(), "{q}");
        assert_eq!(got, want, "{q}");
    }
    let bp = all[0]["blueprint_id"].as_str().unwrap();
    let got = walk_devices(&c, &sim, &format!("&blueprint_id={bp}")).await;
    assert!(got.iter().all(|d| d["blueprint_id"] == bp) && !got.is_empty());
    let tags = ok(&c, &sim, "/api/v1/tags").await;
    let tag_id = tags["results"][0]["id"].as_str().unwrap();
    let tag_name = tags["results"][0]["name"].as_str().unwrap();
    let by_id = walk_devices(&c, &sim, &format!("&tag_id={tag_id}")).await;
    let by_name = walk_devices(&c, &sim, &format!("&tag_name={tag_name}")).await;
    assert_eq!(by_id, by_name);
    let by_in = walk_devices(&c, &sim, &format!("&tag_id_in={tag_id}")).await;
    assert_eq!(by_id, by_in);

    // Stable ordering: same query twice gives the same order; sorted by the key.
    let a = walk_devices(&c, &sim, "&ordering=-serial_number").await;
    let b = walk_devices(&c, &sim, "&ordering=-serial_number").await;
    assert_eq!(a, b);
    let serials: Vec<&str> = a
        .iter()
        .map(|d| d["serial_number"].as_str().unwrap())
        .collect();
    let mut sorted = serials.clone();
    sorted.sort_by(|x, y| y.cmp(x));
    assert_eq!(serials, sorted);
    assert_eq!(
        get(
            &c,
            &sim,
            "/api/v1/devices?ordering=bogus",
            Some(sim.token())
        )
        .await
        .status,
        400
    );

    // Limit > 300 is clamped to 300.
    assert_eq!(
        ok(&c, &sim, "/api/v1/devices?limit=1000")
            .await
            .as_array()
            .unwrap()
            .len(),
        300
    );
    // Offsets past the end.
    let r = get(
        &c,
        &sim,
        "/api/v1/devices?limit=100&offset=5000",
        Some(sim.token()),
    )
    .await;
    assert_eq!(r.json(), Value::Array(vec![]));
    assert_eq!(r.header("X-Total-Count").as_deref(), Some("400"));
    assert_eq!(r.header("X-Total-Pages").as_deref(), Some("4"));
    assert!(
        r.header("Link")
            .unwrap()
            .starts_with("<None>; rel=\"next\", <http")
    );
    let v = ok(&c, &sim, "/api/v1/blueprints?limit=100&offset=100").await;
    assert_eq!(v["results"], Value::Array(vec![]));
    assert!(v["previous"].is_string() && v["next"].is_null());

    // Prism filters on the keys the collector uses.
    let one = all[3]["device_id"].as_str().unwrap();
    let f: String = url::form_urlencoded::byte_serialize(
        format!(r#"{{"device_id":{{"eq":"{one}"}}}}"#).as_bytes(),
    )
    .collect();
    let v = ok(&c, &sim, &format!("/api/v1/prism/apps?filter={f}")).await;
    let n = v["data"].as_array().unwrap().len();
    assert!(
        n > 0
            && v["data"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["device_id"] == one)
    );
    let f: String = url::form_urlencoded::byte_serialize(
        br#"{"name":{"like":"slack"},"device_id":{"not_in":["x"]}}"#,
    )
    .collect();
    let v = ok(&c, &sim, &format!("/api/v1/prism/apps?filter={f}")).await;
    assert!(
        v["data"].as_array().unwrap().iter().all(|r| r["name"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("slack"))
    );
    let r = get(
        &c,
        &sim,
        "/api/v1/prism/apps?filter=%7B%22name%22%3A%7B%22zz%22%3A1%7D%7D",
        Some(sim.token()),
    )
    .await;
    assert_eq!(r.status, 400);
    let v = ok(
        &c,
        &sim,
        "/api/v1/prism/count?category=device_information&device_families=tvOS",
    )
    .await;
    let tv = all.iter().filter(|d| d["platform"] == "AppleTV").count() as u64;
    assert_eq!(v["count"].as_u64().unwrap(), tv);
    sim.shutdown().await;
}

#[tokio::test]
async fn incremental_prism_and_check_ins_follow_the_changes() {
    let sim = start(churny(200, 26)).await;
    let c = client();
    let t0 = "2026-11-01T00:00:00Z";
    let f: String = url::form_urlencoded::byte_serialize(
        format!(r#"{{"last_changed_at":{{"gte":"{t0}"}}}}"#).as_bytes(),
    )
    .collect();
    let v = ok(
        &c,
        &sim,
        &format!("/api/v1/prism/device_information?filter={f}"),
    )
    .await;
    assert_eq!(
        v["data"].as_array().unwrap().len(),
        0,
        "nothing changed yet"
    );
    let before: HashMap<String, Value> = sim
        .truth("apps")
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["device_id"].as_str().unwrap().to_owned(),
                a["apps"].clone(),
            )
        })
        .collect();
    sim.advance(Duration::from_secs(2 * 3600));
    let after: HashMap<String, Value> = sim
        .truth("apps")
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["device_id"].as_str().unwrap().to_owned(),
                a["apps"].clone(),
            )
        })
        .collect();
    let changed_apps: BTreeSet<String> = after
        .iter()
        .filter(|(k, v)| before.get(*k).is_some_and(|b| b != *v))
        .map(|(k, _)| k.clone())
        .collect();
    assert!(
        !changed_apps.is_empty(),
        "apps must change in two simulated hours"
    );

    // Walk the delta with the cursor.
    let mut delta = BTreeSet::new();
    let mut url = format!("/api/v1/prism/apps?limit=300&filter={f}");
    loop {
        let v = ok(&c, &sim, &url).await;
        for r in v["data"].as_array().unwrap() {
            assert!(
                r["last_changed_at"].as_str().unwrap() >= "2026-11-01 00:00:00",
                "{r}"
            );
            delta.insert(r["device_id"].as_str().unwrap().to_owned());
        }
        match v["cursor"].as_str() {
            Some(cur) => url = format!("/api/v1/prism/apps?limit=300&filter={f}&cursor={cur}"),
            None => break,
        }
    }
    for d in &changed_apps {
        let installed_or_updated = after[d]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["modification_date"].as_str().unwrap() >= "2026-11-01");
        if installed_or_updated {
            assert!(
                delta.contains(d),
                "delta misses device {d} whose apps changed"
            );
        }
    }
    // /devices last_check_in is never older than a change.
    let di = ok(
        &c,
        &sim,
        &format!("/api/v1/prism/device_information?limit=300&filter={f}"),
    )
    .await;
    let devices: HashMap<String, Value> = sim
        .truth("devices")
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["device_id"].as_str().unwrap().to_owned(), d.clone()))
        .collect();
    for r in di["data"].as_array().unwrap() {
        let d = &devices[r["device_id"].as_str().unwrap()];
        let lc = d["last_check_in"]
            .as_str()
            .unwrap()
            .replace('T', " ")
            .replace('Z', "");
        let changed = r["last_changed_at"]
            .as_str()
            .unwrap()
            .replace('T', " ")
            .replace("+00:00", "");
        assert!(
            lc >= changed,
            "last_check_in {lc} older than change {changed}"
        );
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn audit_sorting_and_date_bounds() {
    let sim = start(static_config(300, 27)).await;
    let c = client();
    let v = ok(
        &c,
        &sim,
        "/api/v1/audit/events?limit=500&start_date=2026-10-01&end_date=2026-10-15",
    )
    .await;
    let rows = v["results"].as_array().unwrap();
    assert!(!rows.is_empty());
    for r in rows {
        let at = r["occurred_at"].as_str().unwrap();
        assert!(("2026-10-01".."2026-10-16").contains(&at), "{at}");
    }
    let v = ok(
        &c,
        &sim,
        "/api/v1/audit/events?limit=50&sort_by=-id&start_date=2026-10-01T00:00:00Z",
    )
    .await;
    let ids = ids(&v["results"], "id");
    let mut sorted = ids.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted, "-id is descending");
    // A descending walk's next page continues below the last id.
    let next = rebase(&sim, v["next"].as_str().unwrap());
    let v2 = ok(&c, &sim, &next).await;
    assert!(v2["results"][0]["id"].as_str().unwrap() < ids.last().unwrap().as_str());
    assert!(v2["previous"].is_string());
    // EDR and vulnerability events are in the feed with the real actor fields.
    let all = sim.truth("audit_events");
    let all = all.as_array().unwrap();
    assert!(all.iter().any(|e| e["actor_type"] == "kandji"
        && e["actor_id"] == "EDR"
        && e["target_type"] == "file_detection"));
    assert!(
        all.iter()
            .any(|e| e["actor_id"] == "VULNERABILITY_MANAGEMENT"
                && e["new_state"]["vulnerability"]["id"].is_string())
    );
    assert!(all.iter().all(|e| e["id"].as_str().unwrap().len() == 26));
    assert_eq!(
        get(
            &c,
            &sim,
            "/api/v1/audit/events?sort_by=name",
            Some(sim.token())
        )
        .await
        .status,
        400
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn lazy_catch_up_does_not_depend_on_request_timing() {
    let a = start(churny(150, 31)).await;
    let b = start(churny(150, 31)).await;
    let c = client();
    a.advance(Duration::from_secs(4 * 3600 + 59));
    for _ in 0..48 {
        b.advance(Duration::from_secs(300));
        ok(&c, &b, "/api/v1/devices?limit=1").await;
    }
    b.advance(Duration::from_secs(59));
    assert_eq!(a.now(), b.now());
    for cat in [
        "devices",
        "apps",
        "compliance",
        "audit_events",
        "removed_devices",
        "threats",
        "vulnerability_detections",
        "device_details",
    ] {
        assert_eq!(
            a.truth(cat),
            b.truth(cat),
            "{cat} differs between one big step and many small ones"
        );
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn audit_history_is_immutable_as_the_tenant_changes() {
    let sim = start(SimConfig {
        churn: Churn {
            blueprint_changes: 600.0,
            ..Churn::default()
        },
        ..churny(100, 32)
    })
    .await;
    sim.advance(Duration::from_secs(3600));
    let before = sim.truth("audit_events");
    sim.advance(Duration::from_secs(6 * 3600));
    let after = sim.truth("audit_events");
    let before = before.as_array().unwrap();
    let after = after.as_array().unwrap();
    assert!(after.len() > before.len());
    let by_id: HashMap<&str, &Value> = after
        .iter()
        .map(|e| (e["id"].as_str().unwrap(), e))
        .collect();
    for e in before {
        assert_eq!(
            Some(&e),
            by_id.get(e["id"].as_str().unwrap()),
            "audit event changed after the fact"
        );
    }
    assert!(
        after
            .iter()
            .any(|e| e["target_component"] == "blueprint" && e["target_type"] == "device")
    );
    sim.shutdown().await;
}
