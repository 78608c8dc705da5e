//! Golden OCSF events: one insta snapshot per class, from simulator-shaped fixtures.

mod common;

use std::collections::BTreeMap;

#[test]
fn one_snapshot_per_class() {
    let mut by_class: BTreeMap<i64, Vec<(String, serde_json::Value)>> = BTreeMap::new();
    for f in common::fixtures() {
        let ev = common::map(&f).unwrap();
        by_class
            .entry(f.class_uid)
            .or_default()
            .push((f.name.clone(), ev));
    }
    for (class, events) in by_class {
        let map: BTreeMap<String, serde_json::Value> = events.into_iter().collect();
        insta::assert_json_snapshot!(format!("class_{class}"), map, {
            ".*.metadata.uid" => "[uid]",
            ".*.metadata.product.feature.version" => "[version]",
        });
    }
}
