//! Property tests on the pure parts: timestamp formats and Prism paging.

use kandji_sim::prism::{self, Filter, Query};
use kandji_sim::{SimConfig, generator, util};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn timestamps_parse_back(us in 0i64..4_000_000_000_000_000) {
        prop_assert_eq!(util::parse_ts(&util::ts_space(us)), Some(us));
        prop_assert_eq!(util::parse_ts(&util::ts_z(us)), Some(us));
        prop_assert_eq!(util::parse_ts(&util::ts_naive_t(us)), Some(us));
        prop_assert_eq!(util::parse_ts(&util::ts_profile(us)), Some(us - us.rem_euclid(1_000_000)));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn cursor_pages_concatenate_to_the_whole_category(limit in 1usize..120, cat_i in 0usize..16, seed in 0u64..1000) {
        let cfg = SimConfig { devices: 25, seed, ..SimConfig::default() };
        let t = generator::generate(&cfg, 1_793_491_200_000_000);
        let cat = prism::CATEGORIES[cat_i].0;
        let q = Query { category: cat.to_owned(), filter: Filter::default(), ..Query::default() };
        // Prism lists Apple devices only.
        let whole: Vec<serde_json::Value> = t.devices.iter().filter(|d| d.platform.is_apple()).flat_map(|d| prism::rows(&t, cat, d)).collect();
        let mut got = Vec::new();
        let mut pos = None;
        loop {
            let (rows, next) = prism::page(&t, &q, pos, 0, limit);
            prop_assert!(rows.len() <= limit);
            got.extend(rows);
            match next {
                Some(p) => pos = Some(p),
                None => break,
            }
        }
        prop_assert_eq!(&got, &whole);
        if let Some(n) = prism::count(&t, &q) {
            prop_assert_eq!(n as usize, whole.len());
        }
        // Offset paging sees the same rows.
        let mid = whole.len() / 2;
        let (rows, _) = prism::page(&t, &q, None, mid, limit);
        prop_assert_eq!(&rows[..], &whole[mid..(mid + limit).min(whole.len())]);
    }
}
