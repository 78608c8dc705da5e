//! Contract tests: every served endpoint's response keys, JSON types and envelope match the
//! example in the shared OpenAPI spec, except for the listed, explained deviations
//! (SOURCE.md: the simulator follows the LIVE API where the spec is wrong).

mod common;

use std::path::PathBuf;

use common::*;
use serde_json::{Value, json};

fn spec_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/kandji-api/openapi.yaml")
}

fn har_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/kandji-api/examples/graph-kandji-fetch-devices.har")
}

fn load_spec() -> serde_yaml_ng::Value {
    let p = spec_path();
    let raw = std::fs::read_to_string(&p).unwrap_or_else(|e| {
        panic!(
            "CONTRACT SPEC MISSING: cannot read {} ({e}). The contract tests need the shared Kandji OpenAPI spec \
             at <repo>/../shared/kandji-api/openapi.yaml.",
            p.display()
        )
    });
    serde_yaml_ng::from_str(&raw).unwrap_or_else(|e| panic!("cannot parse {}: {e}", p.display()))
}

fn yaml_to_json(v: &serde_yaml_ng::Value) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// `paths[template][method].responses.200.content.*.example(.value)`.
fn example(spec: &serde_yaml_ng::Value, template: &str, method: &str) -> Value {
    let op = &spec["paths"][template][method];
    assert!(!op.is_null(), "spec has no {method} {template}");
    let content = &op["responses"]["200"]["content"];
    let map = content
        .as_mapping()
        .unwrap_or_else(|| panic!("spec {method} {template}: no 200 content"));
    for (_, c) in map {
        let ex = yaml_to_json(&c["example"]);
        if !ex.is_null() {
            return ex.get("value").cloned().unwrap_or(ex);
        }
    }
    panic!("spec {method} {template}: no 200 example")
}

/// A known, allowed difference between the spec example and the simulator (the live API).
struct Deviation {
    endpoint: &'static str,
    /// JSON path in the example (`$.results[].cve_description`), or `*` for a whole-example swap.
    path: &'static str,
    kind: Kind,
    reason: &'static str,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// The key is absent from the simulator's item.
    Missing,
    /// The key exists but with another JSON type.
    Type,
    /// Free-form JSON whose keys depend on the record's kind; only the type is compared.
    Opaque,
    /// A timestamp whose example form is not the live one (a placeholder in the spec).
    Format,
}

const DEVIATIONS: &[Deviation] = &[
    Deviation {
        endpoint: "/api/v1/vulnerability-management/vulnerabilities/{cve_id}",
        path: "$.first_detection_date",
        kind: Kind::Format,
        reason: "the example's placeholder 2023-10-13 16:15:00.000000 stands for every date; the list example has TZ for the same field",
    },
    Deviation {
        endpoint: "/api/v1/vulnerability-management/vulnerabilities/{cve_id}",
        path: "$.latest_detection_date",
        kind: Kind::Format,
        reason: "placeholder date; the list example has TZ for the same field",
    },
    Deviation {
        endpoint: "/api/v1/vulnerability-management/vulnerabilities/{cve_id}",
        path: "$.cve_published_at",
        kind: Kind::Format,
        reason: "placeholder date; NVD times are naive, served as T naive (assumed)",
    },
    Deviation {
        endpoint: "/api/v1/vulnerability-management/vulnerabilities/{cve_id}",
        path: "$.cve_modified_at",
        kind: Kind::Format,
        reason: "placeholder date; NVD times are naive, served as T naive (assumed)",
    },
    Deviation {
        endpoint: "/api/v1/vulnerability-management/vulnerabilities/{cve_id}/devices",
        path: "$.results[].software_summary.detection_date",
        kind: Kind::Format,
        reason: "placeholder date; detections' dates are TZ elsewhere in the spec",
    },
    Deviation {
        endpoint: "/api/v1/vulnerability-management/vulnerabilities/{cve_id}/software",
        path: "$.results[].software_versions[].latest_detection_date",
        kind: Kind::Format,
        reason: "placeholder date; the list example has TZ for the same field",
    },
    Deviation {
        endpoint: "/api/v1/blueprints",
        path: "$.results[].params",
        kind: Kind::Opaque,
        reason: "HAR: params is keyed by the tenant's parameter UUIDs",
    },
    Deviation {
        endpoint: "/api/v1/devices",
        path: "$[].user.id",
        kind: Kind::Type,
        reason: "NOTES §7: user.id was an integer in 2022 (the HAR); it is a UUID string now",
    },
    Deviation {
        endpoint: "/api/v1/vulnerability-management/detections",
        path: "$.results[].cve_description",
        kind: Kind::Missing,
        reason: "SOURCE.md: real records use `description`",
    },
    Deviation {
        endpoint: "/api/v1/vulnerability-management/detections",
        path: "$.results[].cvss_severity",
        kind: Kind::Missing,
        reason: "SOURCE.md: real records use `severity`",
    },
    Deviation {
        endpoint: "/api/v1/vulnerability-management/detections",
        path: "$.results[].first_detection_date",
        kind: Kind::Missing,
        reason: "SOURCE.md: real records use `detection_datetime`",
    },
    Deviation {
        endpoint: "/api/v1/vulnerability-management/detections",
        path: "$.results[].latest_detection_date",
        kind: Kind::Missing,
        reason: "SOURCE.md: real records use `detection_datetime`",
    },
    Deviation {
        endpoint: "/api/v1/audit/events",
        path: "$.results[].new_state",
        kind: Kind::Opaque,
        reason: "NOTES §8.7: new_state is free JSON whose keys depend on target_type/action",
    },
    Deviation {
        endpoint: "/api/v1/audit/events",
        path: "$.results[].metadata",
        kind: Kind::Opaque,
        reason: "NOTES §8.7: metadata is free JSON (EDR/vulnerability events carry threat/device data)",
    },
    Deviation {
        endpoint: "/api/v1/devices/{device_id}/activity",
        path: "$.activity.results[].details",
        kind: Kind::Opaque,
        reason: "details depend on action_type (enrollment, name_changed, mdm_command_completed...)",
    },
    Deviation {
        endpoint: "/api/v1/devices/{device_id}/details",
        path: "$.general.assigned_user.id",
        kind: Kind::Type,
        reason: "NOTES §7: user.id was an integer in 2022 (the HAR); it is a UUID string now",
    },
    Deviation {
        endpoint: "/api/v1/vulnerability-management/vulnerabilities/{cve_id}",
        path: "$.first_detection_date",
        kind: Kind::Type,
        reason: "null when no device currently has the CVE (empties are null in the live API)",
    },
];

/// Endpoints whose spec example is not an Apple device; compared against another source instead.
fn replacement_example(template: &str) -> Option<(Value, &'static str)> {
    match template {
        "/api/v1/prism/activation_lock" | "/api/v1/prism/desktop_and_screensaver" => {
            // The spec's examples are copies of device_information (SOURCE.md): compare the
            // Prism columns every category shares (those of the filevault and
            // device_information examples both) and the assumed ones of the category.
            let spec = load_spec();
            let fv = example(&spec, "/api/v1/prism/filevault", "get");
            let di = example(&spec, "/api/v1/prism/device_information", "get");
            let shared: serde_json::Map<String, Value> = fv["data"][0]
                .as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| di["data"][0].get(k.as_str()).is_some())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let mut row = Value::Object(shared);
            let own = if template.ends_with("activation_lock") {
                json!({"activation_lock_allowed_while_supervised": false, "activation_lock_supported": true,
                       "bypass_code_failed": false, "device_activation_lock_enabled": false,
                       "user_activation_lock_enabled": false})
            } else {
                json!({"screensaver_enabled": true, "screensaver_idle_time_seconds": 300,
                       "screensaver_require_password": true, "screensaver_password_delay_seconds": 5,
                       "desktop_picture": "x"})
            };
            for (k, v) in own.as_object().unwrap() {
                row[k] = v.clone();
            }
            let mut ex = example(&spec, template, "get");
            ex["data"] = json!([row]);
            Some((
                ex,
                "spec example is a copy of device_information (SOURCE.md): the shared Prism columns from the spec and the assumed category columns",
            ))
        }
        "/api/v1/devices/{device_id}/details" => {
            let har: Value =
                serde_json::from_str(&std::fs::read_to_string(har_path()).expect("HAR file"))
                    .expect("HAR JSON");
            let e = har["log"]["entries"]
                .as_array()
                .and_then(|a| {
                    a.iter().find(|e| {
                        e["request"]["url"]
                            .as_str()
                            .is_some_and(|u| u.ends_with("/details"))
                    })
                })
                .expect("HAR has a /details exchange");
            let body: Value =
                serde_json::from_str(e["response"]["content"]["text"].as_str().unwrap_or("{}"))
                    .expect("details JSON");
            Some((
                body,
                "spec example is an Android device (polymorphic endpoint); compared with the real Mac /details in the recorded HAR",
            ))
        }
        "/api/v1/devices/{device_id}/apps" => Some((
            json!({"device_id": "x", "apps": [{
                "app_id": "1", "app_name": "x", "bundle_id": "x", "bundle_size": "1", "app_store_vendable": "",
                "device_based_vpp": "", "source": "Apple", "process": "x", "signature": "x",
                "creation_date": "x", "modification_date": "x", "path": "x", "version": "1"
            }]}),
            "spec example is an Android device; compared with the Apple app fields listed in NOTES.md §8.1",
        )),
        _ => None,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Documented quirks that hold on every endpoint.
fn quirk_ok(key: &str, ex: &Value, got: &Value) -> bool {
    // Empties come back as null as well as "" (SOURCE.md).
    if got.is_null() {
        return true;
    }
    // `user` / `assigned_user` is an object when assigned and "" when not (SOURCE.md).
    if matches!(key, "user" | "assigned_user")
        && (got == "" || got.is_object() || ex == "" || ex.is_null())
    {
        return true;
    }
    false
}

/// The form of a timestamp string, fractions aside: `space+00:00`, `T+00:00`, `TZ`,
/// `space +0000`, `T naive`, `space naive`, `date`; `None` when it is not a timestamp.
fn ts_class(s: &str) -> Option<&'static str> {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    let date = b.len() >= 10
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10);
    if !date {
        return None;
    }
    if b.len() == 10 {
        return Some("date");
    }
    let sep = b[10];
    if !(sep == b'T' || sep == b' ')
        || b.len() < 19
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(r) = rest.strip_prefix('.') {
        rest = r.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    Some(match (sep, rest) {
        (b' ', "+00:00") => "space+00:00",
        (b'T', "+00:00") => "T+00:00",
        (b'T', "Z") => "TZ",
        (b' ', "Z") => "spaceZ",
        (b' ', " +0000") => "space +0000",
        (b'T', "") => "T naive",
        (b' ', "") => "space naive",
        _ => "other",
    })
}

fn compare(
    endpoint: &str,
    path: &str,
    key: &str,
    ex: &Value,
    got: &Value,
    errs: &mut Vec<String>,
    used: &mut Vec<usize>,
) {
    // An example null says nothing about the type.
    if ex.is_null() {
        return;
    }
    let dev = DEVIATIONS
        .iter()
        .position(|d| d.endpoint == endpoint && d.path == path);
    if let Some(i) = dev.filter(|&i| DEVIATIONS[i].kind == Kind::Opaque) {
        used.push(i);
        if type_name(ex) != type_name(got) && !got.is_null() {
            errs.push(format!(
                "{endpoint} {path}: type {} in spec, {} served",
                type_name(ex),
                type_name(got)
            ));
        }
        return;
    }
    let same = type_name(ex) == type_name(got);
    if !same {
        if let Some(i) = dev.filter(|&i| DEVIATIONS[i].kind == Kind::Type) {
            used.push(i);
            return;
        }
        if quirk_ok(key, ex, got) {
            return;
        }
        errs.push(format!(
            "{endpoint} {path}: type {} in spec, {} served ({got})",
            type_name(ex),
            type_name(got)
        ));
        return;
    }
    match (ex, got) {
        (Value::Object(e), Value::Object(g)) => {
            for (k, ev) in e {
                let p = format!("{path}.{k}");
                match g.get(k) {
                    Some(gv) => compare(endpoint, &p, k, ev, gv, errs, used),
                    None => {
                        if let Some(i) = DEVIATIONS.iter().position(|d| {
                            d.endpoint == endpoint && d.path == p && d.kind == Kind::Missing
                        }) {
                            used.push(i);
                        } else {
                            errs.push(format!(
                                "{endpoint} {p}: key missing in the simulator's response"
                            ));
                        }
                    }
                }
            }
        }
        (Value::Array(e), Value::Array(g)) => {
            if let (Some(e0), Some(g0)) = (e.first(), g.first())
                && e0.is_object()
            {
                compare(endpoint, &format!("{path}[]"), key, e0, g0, errs, used);
            }
        }
        // A timestamp is served in the form the example has, field by field.
        (Value::String(e), Value::String(g)) if !g.is_empty() => {
            if let Some(i) = dev.filter(|&i| DEVIATIONS[i].kind == Kind::Format) {
                used.push(i);
                if ts_class(g).is_none() {
                    errs.push(format!("{endpoint} {path}: not a timestamp: {g}"));
                }
                return;
            }
            if let Some(want) = ts_class(e)
                && ts_class(g) != Some(want)
            {
                errs.push(format!(
                    "{endpoint} {path}: time form {want} in spec ({e}), served {g}"
                ));
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn every_served_endpoint_matches_the_spec_examples() {
    let spec = load_spec();
    let sim = start(static_config(300, 7)).await;
    let c = client();
    let mac = first_mac(&sim);
    let dev = mac["device_id"].as_str().unwrap().to_owned();
    let bp = mac["blueprint_id"].as_str().unwrap().to_owned();
    let item = ok(&c, &sim, &format!("/api/v1/devices/{dev}/library-items")).await["library_items"]
        [0]["item_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let user = ok(&c, &sim, "/api/v1/users").await["results"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ade = ok(&c, &sim, "/api/v1/integrations/apple/ade/devices").await["results"][0].clone();
    let ade_dev = ade["id"].as_str().unwrap().to_owned();
    let ade_tok = ade["dep_account"]["id"].as_str().unwrap().to_owned();
    let cve = ok(&c, &sim, "/api/v1/vulnerability-management/vulnerabilities").await["results"][0]
        ["cve_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let export = post_json(
        &c,
        &sim,
        "/api/v1/prism/export",
        sim.token(),
        &json!({"category": "apps"}),
    )
    .await;
    assert_eq!(export.status, 200);
    let export_id = export.json()["id"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        ok(&c, &sim, &format!("/api/v1/prism/export/{export_id}")).await;
    }

    let mut cases: Vec<(&str, String)> = vec![
        (
            "/api/v1/audit/events",
            "/api/v1/audit/events?limit=5".into(),
        ),
        (
            "/api/v1/behavioral-detections",
            "/api/v1/behavioral-detections".into(),
        ),
        ("/api/v1/blueprints", "/api/v1/blueprints".into()),
        (
            "/api/v1/blueprints/{blueprint_id}",
            format!("/api/v1/blueprints/{bp}"),
        ),
        (
            "/api/v1/blueprints/{blueprint_id}/list-library-items",
            format!("/api/v1/blueprints/{bp}/list-library-items"),
        ),
        ("/api/v1/devices", "/api/v1/devices?limit=5".into()),
        (
            "/api/v1/devices/{device_id}",
            format!("/api/v1/devices/{dev}"),
        ),
        (
            "/api/v1/devices/{device_id}/activity",
            format!("/api/v1/devices/{dev}/activity"),
        ),
        (
            "/api/v1/devices/{device_id}/apps",
            format!("/api/v1/devices/{dev}/apps"),
        ),
        (
            "/api/v1/devices/{device_id}/commands",
            format!("/api/v1/devices/{dev}/commands"),
        ),
        (
            "/api/v1/devices/{device_id}/details",
            format!("/api/v1/devices/{dev}/details"),
        ),
        (
            "/api/v1/devices/{device_id}/library-items",
            format!("/api/v1/devices/{dev}/library-items"),
        ),
        (
            "/api/v1/devices/{device_id}/parameters",
            format!("/api/v1/devices/{dev}/parameters"),
        ),
        (
            "/api/v1/devices/{device_id}/status",
            format!("/api/v1/devices/{dev}/status"),
        ),
        (
            "/api/v1/devices/{device_id}/secrets/filevaultkey",
            format!("/api/v1/devices/{dev}/secrets/filevaultkey"),
        ),
        (
            "/api/v1/devices/{device_id}/secrets/bypasscode",
            format!("/api/v1/devices/{dev}/secrets/bypasscode"),
        ),
        (
            "/api/v1/devices/{device_id}/secrets/unlockpin",
            format!("/api/v1/devices/{dev}/secrets/unlockpin"),
        ),
        (
            "/api/v1/devices/{device_id}/secrets/recoverypassword",
            format!("/api/v1/devices/{dev}/secrets/recoverypassword"),
        ),
        (
            "/api/v1/integrations/apple/ade/devices",
            "/api/v1/integrations/apple/ade/devices".into(),
        ),
        (
            "/api/v1/integrations/apple/ade/devices/{device_id}",
            format!("/api/v1/integrations/apple/ade/devices/{ade_dev}"),
        ),
        (
            "/api/v1/integrations/apple/ade/{ade_token_id}/devices",
            format!("/api/v1/integrations/apple/ade/{ade_tok}/devices"),
        ),
        (
            "/api/v1/library/library-items/{library_item_id}/activity",
            format!("/api/v1/library/library-items/{item}/activity"),
        ),
        (
            "/api/v1/library/library-items/{library_item_id}/status",
            format!("/api/v1/library/library-items/{item}/status?computer_id={dev}"),
        ),
        (
            "/api/v1/prism/count",
            "/api/v1/prism/count?category=apps".into(),
        ),
        (
            "/api/v1/prism/export/{export_id}",
            format!("/api/v1/prism/export/{export_id}"),
        ),
        (
            "/api/v1/settings/licensing",
            "/api/v1/settings/licensing".into(),
        ),
        ("/api/v1/tags", "/api/v1/tags".into()),
        ("/api/v1/threat-details", "/api/v1/threat-details".into()),
        ("/api/v1/users", "/api/v1/users".into()),
        ("/api/v1/users/{user_id}", format!("/api/v1/users/{user}")),
        (
            "/api/v1/vulnerability-management/detections",
            "/api/v1/vulnerability-management/detections?size=5".into(),
        ),
        (
            "/api/v1/vulnerability-management/vulnerabilities",
            "/api/v1/vulnerability-management/vulnerabilities".into(),
        ),
        (
            "/api/v1/vulnerability-management/vulnerabilities/{cve_id}",
            format!("/api/v1/vulnerability-management/vulnerabilities/{cve}"),
        ),
        (
            "/api/v1/vulnerability-management/vulnerabilities/{cve_id}/devices",
            format!("/api/v1/vulnerability-management/vulnerabilities/{cve}/devices"),
        ),
        (
            "/api/v1/vulnerability-management/vulnerabilities/{cve_id}/software",
            format!("/api/v1/vulnerability-management/vulnerabilities/{cve}/software"),
        ),
    ];
    let prism_cats = [
        "activation_lock",
        "application_firewall",
        "apps",
        "cellular",
        "certificates",
        "desktop_and_screensaver",
        "device_information",
        "filevault",
        "gatekeeper_and_xprotect",
        "installed_profiles",
        "kernel_extensions",
        "launch_agents_and_daemons",
        "local_users",
        "startup_settings",
        "system_extensions",
        "transparency_database",
    ];
    let prism_templates: Vec<String> = prism_cats
        .iter()
        .map(|c| format!("/api/v1/prism/{c}"))
        .collect();
    for (i, c) in prism_cats.iter().enumerate() {
        let fam = if *c == "cellular" {
            "&device_families=iPhone"
        } else {
            ""
        };
        cases.push((
            prism_templates[i].as_str(),
            format!("/api/v1/prism/{c}?limit=3{fam}"),
        ));
    }

    let mut errs = Vec::new();
    let mut used = Vec::new();
    let mut compared = 0;
    for (template, url) in &cases {
        let got = ok(&c, &sim, url).await;
        let (ex, _why) =
            replacement_example(template).unwrap_or_else(|| (example(&spec, template, "get"), ""));
        compare(template, "$", "", &ex, &got, &mut errs, &mut used);
        compared += 1;
    }
    // The spec's examples of the polymorphic per-device endpoints are an Android device:
    // compared with one of the simulator's, field by field.
    let android = sim
        .truth("devices")
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["platform"] == "Android")
        .expect("the fleet has Android devices")["device_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (template, suffix) in [
        ("/api/v1/devices/{device_id}", ""),
        ("/api/v1/devices/{device_id}/details", "/details"),
        ("/api/v1/devices/{device_id}/apps", "/apps"),
    ] {
        let got = ok(&c, &sim, &format!("/api/v1/devices/{android}{suffix}")).await;
        assert_eq!(
            got.as_object().map(|o| o.keys().collect::<Vec<_>>()),
            example(&spec, template, "get")
                .as_object()
                .map(|o| o.keys().collect::<Vec<_>>()),
            "{template} (Android): the same top-level keys as the spec's example"
        );
        let ex = example(&spec, template, "get");
        compare(
            &format!("{template} (Android)"),
            "$",
            "",
            &ex,
            &got,
            &mut errs,
            &mut used,
        );
        compared += 1;
    }

    // The export POST.
    let ex = example(&spec, "/api/v1/prism/export", "post");
    let got = post_json(
        &c,
        &sim,
        "/api/v1/prism/export",
        sim.token(),
        &json!({"category": "device_information"}),
    )
    .await
    .json();
    compare(
        "/api/v1/prism/export",
        "$",
        "",
        &ex,
        &got,
        &mut errs,
        &mut used,
    );

    assert!(compared >= 45, "only {compared} endpoints compared");

    // Every served endpoint is either compared above or listed here with the reason.
    let compared_keys: std::collections::BTreeSet<String> = cases
        .iter()
        .map(|(t, _)| format!("GET {t}"))
        .chain(std::iter::once("POST /api/v1/prism/export".to_owned()))
        .collect();
    let no_example: &[(&str, &str)] = &[
        (
            "GET /api/v1/blueprints/templates/",
            "the spec has no 200 example; DRF envelope per NOTES §8.2",
        ),
        (
            "GET /api/v1/integrations/apple/ade/public_key/",
            "PEM text (application/x-x509-ca-cert), not JSON",
        ),
        (
            "GET /api/v1/devices/{device_id}/notes",
            "not in the spec's paths; shape from NOTES §8.1 (bare array)",
        ),
        (
            "GET /api/v1/integrations/apple/ade",
            "the spec has no 200 example for the token list; shape from NOTES §8.5",
        ),
        (
            "GET /api/v1/integrations/apple/ade/{ade_token_id}",
            "no 200 example in the spec; same object as the token list items",
        ),
        (
            "GET /api/v1/library/custom-apps",
            "not in the spec's paths; DRF envelope per NOTES §8.6",
        ),
        (
            "GET /api/v1/library/ipa-apps",
            "not in the spec's paths; DRF envelope per NOTES §8.6",
        ),
        (
            "GET /api/v1/library/custom-profiles",
            "not in the spec's paths; compared with the recorded HAR below",
        ),
        (
            "GET /api/v1/library/custom-scripts",
            "not in the spec's paths; page envelope per NOTES §8.6",
        ),
        (
            "GET /api/v1/self-service/categories",
            "not in the spec's paths; bare array [{id,name}] per NOTES §8.6",
        ),
        (
            "GET /api/v1/prism/{category}",
            "compared once per category above (16 concrete paths)",
        ),
    ];
    for key in kandji_sim::routes::permission_keys() {
        assert!(
            compared_keys.contains(&key) || no_example.iter().any(|(k, _)| *k == key),
            "served endpoint {key} is neither compared with the spec nor listed as having no example"
        );
    }
    assert!(
        errs.is_empty(),
        "{} contract differences:\n{}",
        errs.len(),
        errs.join("\n")
    );
    // Every listed deviation must still be needed (the list is the truth about the differences).
    for (i, d) in DEVIATIONS.iter().enumerate() {
        if d.kind == Kind::Type || d.reason.starts_with("HAR") {
            continue; // Only needed for some data; allowed, not required.
        }
        assert!(
            used.contains(&i),
            "deviation no longer needed: {} {} ({})",
            d.endpoint,
            d.path,
            d.reason
        );
    }
    // The real vulnerability names are served in place of the spec's.
    let v = ok(
        &c,
        &sim,
        "/api/v1/vulnerability-management/detections?size=1",
    )
    .await;
    for k in [
        "description",
        "severity",
        "detection_datetime",
        "cve_published_at",
        "cve_modified_at",
    ] {
        assert!(
            v["results"][0].get(k).is_some(),
            "vulnerability detection lacks real field {k}"
        );
    }
    sim.shutdown().await;
}

#[test]
fn the_spec_file_is_where_the_tests_expect_it() {
    assert!(
        spec_path().exists(),
        "CONTRACT SPEC MISSING at {}",
        spec_path().display()
    );
}

/// Real recorded traffic (HAR): bodies and headers of `/devices`, `/blueprints`, `/library/custom-profiles`.
#[tokio::test]
async fn recorded_traffic_shapes_and_headers() {
    let har: Value = serde_json::from_str(
        &std::fs::read_to_string(har_path())
            .unwrap_or_else(|e| panic!("HAR MISSING: cannot read {} ({e})", har_path().display())),
    )
    .expect("HAR JSON");
    let sim = start(static_config(50, 9)).await;
    let c = client();
    let mut errs = Vec::new();
    let mut used = Vec::new();
    for e in har["log"]["entries"].as_array().unwrap() {
        let url = e["request"]["url"].as_str().unwrap();
        let path = url::Url::parse(url).unwrap();
        let template = match path.path() {
            "/api/v1/devices" => "/api/v1/devices",
            "/api/v1/blueprints" => "/api/v1/blueprints",
            "/api/v1/library/custom-profiles" => "/api/v1/library/custom-profiles",
            _ => continue,
        };
        let body: Value =
            serde_json::from_str(e["response"]["content"]["text"].as_str().unwrap_or("null"))
                .unwrap_or(Value::Null);
        let q = path.query().map(|q| format!("?{q}")).unwrap_or_default();
        let r = get(&c, &sim, &format!("{}{q}", path.path()), Some(sim.token())).await;
        assert_eq!(r.status, 200);
        if !body.is_null() && body.as_array().is_none_or(|a| !a.is_empty()) {
            compare(template, "$", "", &body, &r.json(), &mut errs, &mut used);
        }
        // Every response header the gateway and API add that matters to a client.
        for h in e["response"]["headers"].as_array().unwrap() {
            let name = h["name"].as_str().unwrap().to_ascii_lowercase();
            let wanted = name.starts_with("x-ratelimit")
                || name.starts_with("ratelimit")
                || name == "link"
                || name.starts_with("x-total");
            if wanted {
                assert!(
                    r.header(&name).is_some(),
                    "{template}: header {name} missing (recorded: {})",
                    h["value"]
                );
            }
        }
        if template == "/api/v1/devices" {
            let link = r.header("link").unwrap();
            let recorded = e["response"]["headers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|h| h["name"] == "link")
                .unwrap()["value"]
                .as_str()
                .unwrap()
                .to_owned();
            assert_eq!(
                recorded.contains("<None>; rel=\"next\""),
                link.contains("<None>; rel=\"next\""),
                "{link} vs {recorded}"
            );
        }
    }
    assert!(errs.is_empty(), "{}", errs.join("\n"));
    sim.shutdown().await;
}
