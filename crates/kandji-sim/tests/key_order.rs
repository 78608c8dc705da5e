//! Key order (issue 12): the simulator writes objects in the model order the sources show,
//! not alphabetically. The reference orders are derived here from the recorded traffic and the
//! spec, and the simulator's table must equal them; served responses keep the HAR's order.

mod common;

use std::path::PathBuf;

use common::*;
use serde_yaml_ng::Value as Y;

fn shared(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/kandji-api")
        .join(p)
}

fn read(p: &str) -> String {
    let path = shared(p);
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "KEY ORDER SOURCE MISSING: cannot read {} ({e})",
            path.display()
        )
    })
}

/// JSON parsed with its keys in document order (YAML is a superset of JSON, and
/// `serde_yaml_ng`'s mapping keeps insertion order, where `serde_json`'s sorts).
fn ordered(text: &str) -> Y {
    serde_yaml_ng::from_str(text).unwrap_or(Y::Null)
}

fn keys(m: &serde_yaml_ng::Mapping) -> Vec<String> {
    m.keys()
        .filter_map(|k| k.as_str().map(str::to_owned))
        .collect()
}

/// Every object of `v` with two keys or more (three elements of each list), in document
/// order; `all` keeps alphabetical ones too.
fn objects(v: &Y, all: bool, out: &mut Vec<Vec<String>>) {
    match v {
        Y::Mapping(m) => {
            let ks = keys(m);
            let mut sorted = ks.clone();
            sorted.sort();
            if ks.len() > 1 && (all || ks != sorted) && !out.contains(&ks) {
                out.push(ks);
            }
            for (_, x) in m {
                objects(x, all, out);
            }
        }
        Y::Sequence(s) => {
            for x in s.iter().take(3) {
                objects(x, all, out);
            }
        }
        Y::Tagged(t) => objects(&t.value, all, out),
        _ => {}
    }
}

/// The spec's `example` and `examples[*].value` (or `examples[*]`) bodies, in document order.
fn spec_examples(v: &Y, out: &mut Vec<Vec<String>>) {
    match v {
        Y::Mapping(m) => {
            for (k, x) in m {
                match k.as_str() {
                    Some("example") => objects(x, false, out),
                    Some("examples") => match x {
                        Y::Mapping(exs) => {
                            for (_, e) in exs {
                                let body = e.get("value").unwrap_or(e);
                                objects(body, false, out);
                            }
                        }
                        Y::Sequence(exs) => {
                            for e in exs {
                                objects(e, false, out);
                            }
                        }
                        _ => {}
                    },
                    _ => spec_examples(x, out),
                }
            }
        }
        Y::Sequence(s) => {
            for x in s {
                spec_examples(x, out);
            }
        }
        _ => {}
    }
}

fn har_bodies() -> Vec<(String, Y)> {
    let har: serde_json::Value =
        serde_json::from_str(&read("examples/graph-kandji-fetch-devices.har")).expect("HAR JSON");
    har["log"]["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                e["request"]["url"].as_str().unwrap_or_default().to_owned(),
                ordered(e["response"]["content"]["text"].as_str().unwrap_or("null")),
            )
        })
        .collect()
}

/// The reference orders, and how many of them (the first) are recorded.
fn derived_orders() -> (Vec<Vec<String>>, usize) {
    let mut out = Vec::new();
    for (_, body) in har_bodies() {
        objects(&body, true, &mut out);
    }
    let recorded = out.len();
    spec_examples(&ordered(&read("openapi.yaml")), &mut out);
    (out, recorded)
}

#[test]
fn key_orders_are_the_ones_the_sources_show() {
    let (derived, recorded) = derived_orders();
    let table: Vec<Vec<String>> = kandji_sim::key_order::ORDERS
        .iter()
        .map(|r| r.iter().map(|k| (*k).to_owned()).collect())
        .collect();
    let stale = derived != table || recorded != kandji_sim::key_order::RECORDED;
    if stale || std::env::var_os("KEY_ORDERS_PRINT").is_some() {
        let mut text = format!("pub const RECORDED: usize = {recorded};\n\n");
        text.push_str("pub const ORDERS: &[&[&str]] = &[\n");
        for r in &derived {
            let quoted: Vec<String> = r.iter().map(|k| format!("{k:?}")).collect();
            text.push_str(&format!("    &[{}],\n", quoted.join(", ")));
        }
        text.push_str("];\n");
        println!("{text}");
    }
    assert!(
        derived.len() > 40,
        "the HAR and the spec show {} key orders",
        derived.len()
    );
    assert_eq!(
        recorded,
        kandji_sim::key_order::RECORDED,
        "key_order::RECORDED is not the HAR's count; paste the printed table"
    );
    assert_eq!(
        derived, table,
        "key_order::ORDERS is not what the HAR and the spec show; paste the printed table"
    );
}

/// Where `recorded` and `served` share keys, they come in the same relative order; nested
/// objects and first list elements likewise.
fn order_errors(at: &str, recorded: &Y, served: &Y, errs: &mut Vec<String>) {
    match (recorded, served) {
        (Y::Mapping(r), Y::Mapping(s)) => {
            let rk = keys(r);
            let sk = keys(s);
            let common_r: Vec<&String> = rk.iter().filter(|k| sk.contains(k)).collect();
            let common_s: Vec<&String> = sk.iter().filter(|k| rk.contains(k)).collect();
            if common_r != common_s {
                errs.push(format!(
                    "{at}: recorded order {common_r:?}, served {common_s:?}"
                ));
            }
            for k in common_r {
                let (Some(a), Some(b)) = (r.get(k.as_str()), s.get(k.as_str())) else {
                    continue;
                };
                order_errors(&format!("{at}.{k}"), a, b, errs);
            }
        }
        (Y::Sequence(r), Y::Sequence(s)) => {
            if let (Some(a), Some(b)) = (r.first(), s.first()) {
                order_errors(&format!("{at}[0]"), a, b, errs);
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn served_objects_keep_the_recorded_key_order() {
    let sim = start(static_config(50, 9)).await;
    let c = client();
    let mac = first_mac(&sim);
    let mac_id = mac["device_id"].as_str().expect("device id").to_owned();
    let mut errs = Vec::new();
    let mut checked = 0;
    for (url, body) in har_bodies() {
        let u = url::Url::parse(&url).expect("url");
        let path = u.path();
        let served_path = if path.starts_with("/api/v1/devices/") && path.ends_with("/details") {
            format!("/api/v1/devices/{mac_id}/details")
        } else if matches!(
            path,
            "/api/v1/devices" | "/api/v1/blueprints" | "/api/v1/library/custom-profiles"
        ) {
            format!("{path}?{}", u.query().unwrap_or_default())
        } else {
            continue;
        };
        let r = get(&c, &sim, &served_path, Some(sim.token())).await;
        assert_eq!(r.status, 200, "{served_path}");
        let served = ordered(&r.text);
        let before = errs.len();
        order_errors(&served_path, &body, &served, &mut errs);
        if errs.len() == before && !matches!(body, Y::Sequence(ref s) if s.is_empty()) {
            checked += 1;
        }
    }
    assert!(errs.is_empty(), "{}", errs.join("\n"));
    assert!(checked >= 4, "{checked} recorded responses compared");
    sim.shutdown().await;
}
