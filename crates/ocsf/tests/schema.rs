//! Every mapped fixture against the OCSF 1.8.0 definitions in `schema/`: the base event's and
//! the class's required attributes, the class's activity ids and enums, and every object's
//! required attributes and `at_least_one` constraints, recursively.

mod common;

use serde_json::Value;

fn schema() -> Value {
    serde_json::from_str(include_str!("schema/ocsf-1.8.0.json")).unwrap()
}

fn present(v: &Value, k: &str) -> bool {
    match v.get(k) {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        _ => true,
    }
}

fn check_object(schema: &Value, kind: &str, v: &Value, path: &str, errors: &mut Vec<String>) {
    let Some(def) = schema["objects"].get(kind) else {
        return;
    };
    if !v.is_object() {
        errors.push(format!("{path}: expected a {kind} object, got {v}"));
        return;
    }
    for req in def["required"].as_array().into_iter().flatten() {
        let req = req.as_str().unwrap();
        if !present(v, req) {
            errors.push(format!("{path}: {kind} requires `{req}`"));
        }
    }
    if let Some(any) = def["at_least_one"].as_array()
        && !any.iter().any(|k| present(v, k.as_str().unwrap()))
    {
        errors.push(format!("{path}: {kind} needs at least one of {any:?}"));
    }
    check_children(schema, v, path, errors);
}

fn check_children(schema: &Value, v: &Value, path: &str, errors: &mut Vec<String>) {
    let Some(obj) = v.as_object() else { return };
    for (k, child) in obj {
        if k == "unmapped" {
            continue;
        }
        let Some(kind) = schema["attribute_objects"].get(k).and_then(Value::as_str) else {
            continue;
        };
        match child {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    check_object(schema, kind, item, &format!("{path}.{k}[{i}]"), errors);
                }
            }
            _ => check_object(schema, kind, child, &format!("{path}.{k}"), errors),
        }
    }
}

#[test]
fn every_fixture_meets_the_ocsf_1_8_0_requirements() {
    let schema = schema();
    let mut errors = Vec::new();
    let mut classes = std::collections::BTreeSet::new();
    for f in common::fixtures() {
        let ev = common::map(&f).unwrap_or_else(|| panic!("{}: no OCSF event", f.name));
        let path = f.name.clone();
        let class = ev["class_uid"].as_i64().unwrap();
        assert_eq!(class, f.class_uid, "{path}: class");
        classes.insert(class);
        let def = &schema["classes"][class.to_string()];
        assert!(
            def.is_object(),
            "{path}: class {class} not in the schema data"
        );
        for req in schema["base_event"]["required"]
            .as_array()
            .unwrap()
            .iter()
            .chain(def["required"].as_array().unwrap())
        {
            let req = req.as_str().unwrap();
            if !present(&ev, req) {
                errors.push(format!("{path}: class {class} requires `{req}`"));
            }
        }
        assert_eq!(ev["category_uid"], def["category_uid"], "{path}: category");
        let activity = ev["activity_id"].as_i64().unwrap();
        assert!(
            def["activity_ids"]
                .as_array()
                .unwrap()
                .contains(&Value::from(activity)),
            "{path}: activity_id {activity} not defined for {class}"
        );
        assert_eq!(
            ev["type_uid"].as_i64().unwrap(),
            class * 100 + activity,
            "{path}: type_uid"
        );
        assert!(
            schema["base_event"]["severity_ids"]
                .as_array()
                .unwrap()
                .contains(&ev["severity_id"]),
            "{path}: severity_id"
        );
        for (attr, allowed) in def["enums"].as_object().into_iter().flatten() {
            if let Some(val) = ev.get(attr) {
                assert!(
                    allowed.as_array().unwrap().contains(val),
                    "{path}: {attr} = {val}"
                );
            }
        }
        assert!(
            ev["time"].as_i64().unwrap() > 1_500_000_000_000,
            "{path}: time in ms"
        );
        let md = &ev["metadata"];
        assert_eq!(md["version"], "1.8.0");
        assert_eq!(md["tenant_uid"], "acme", "{path}");
        assert!(
            md["uid"].as_str().is_some_and(|u| u.len() == 36),
            "{path}: metadata.uid"
        );
        check_children(&schema, &ev, &path, &mut errors);
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    let expected: std::collections::BTreeSet<i64> = [
        5001, 5002, 5003, 5019, 5020, 2002, 2003, 2004, 3001, 3004, 6008,
    ]
    .into();
    assert_eq!(classes, expected, "every class is covered");
}

#[test]
fn record_uid_is_stable_and_version_sensitive() {
    let a = ocsf::record_uid("acme", "devices", "d1", 42);
    assert_eq!(a, ocsf::record_uid("acme", "devices", "d1", 42));
    assert_ne!(a, ocsf::record_uid("acme", "devices", "d1", 43));
    assert_ne!(a, ocsf::record_uid("acme", "devices", "d2", 42));
    assert_ne!(a, ocsf::record_uid("other", "devices", "d1", 42));
    // Pinned: ids must not change between builds (receivers dedupe on them).
    assert_eq!(a, "e3fa083f-8dd6-2e3b-ea17-484273be668e");
}

#[test]
fn unmapped_keeps_what_has_no_ocsf_field() {
    let fx = common::fixtures();
    let dev = fx.iter().find(|f| f.name == "device").unwrap();
    let ev = common::map(dev).unwrap();
    assert_eq!(ev["unmapped"]["agent_version"], "5.2.1 (6102)");
    assert!(
        ev["unmapped"].get("device_name").is_none(),
        "mapped fields are not repeated"
    );
    assert_eq!(ev["device"]["name"], "MacBookPro-00012");
    assert_eq!(ev["device"]["os"]["type_id"], 300);
}

#[test]
fn times_parse_in_every_kandji_shape() {
    let t = |s| ocsf::parse_time(s).unwrap();
    assert_eq!(t("2025-01-01 11:02:19.590001+00:00"), 1_735_729_339_590);
    assert_eq!(t("2025-01-01T11:02:19.590001Z"), 1_735_729_339_590);
    assert_eq!(t("2025-01-01T11:02:19.590001"), 1_735_729_339_590);
    assert_eq!(t("2025-01-01"), 1_735_689_600_000);
    assert!(ocsf::parse_time("").is_none());
    assert!(ocsf::parse_time("yesterday").is_none());
}

#[test]
fn a_removal_has_an_id_of_its_own() {
    let live = ocsf::inventory_uid("acme", "devices", "d1", 42, None);
    assert_eq!(
        live,
        ocsf::record_uid("acme", "devices", "d1", 42),
        "live ids unchanged"
    );
    let gone = ocsf::inventory_uid("acme", "devices", "d1", 42, Some(1_800_000_000_000));
    assert_ne!(gone, live);
    assert_eq!(
        gone,
        ocsf::inventory_uid("acme", "devices", "d1", 42, Some(1_800_000_000_000)),
        "stable across redelivery"
    );
}
