//! Proptest harness over every payload decoder: arbitrary JSON and arbitrary bytes never panic;
//! objects always decode; the documented value variants decode to the same typed values.

use futures::StreamExt;
use kandji_api::error::error_message;
use kandji_api::models::{
    self, AdeDevice, App, AuditEvent, BehavioralDetection, Blueprint, Device, DeviceActivity,
    DeviceApps, DeviceCommand, DeviceDetails, DeviceStatus, ItemStatus, Licensing, Model, Platform,
    PrismExport, PrismRow, Tag, Threat, User, VulnDetection, Vulnerability,
};
use kandji_api::paginate::{
    AfterCursor, DrfEnvelope, NestedEnvelope, NextCursor, OffsetArray, PageNumber, PageSize,
    PageStyle, Position, PrismCursor, param_from_next,
};
use proptest::prelude::*;
use serde_json::{Value, json};

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "True",
            "False",
            "",
            "2024-01-26 16:15:36.087016+00:00",
            "Feb 27, 2024 at 7:34:21 AM",
            "12.5",
            "-1"
        ])
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 48, 8, |inner| {
        let keys = prop::sample::select(vec![
            "device_id",
            "user",
            "apps",
            "results",
            "next",
            "count",
            "total_count",
            "data",
            "cursor",
            "general",
            "mdm",
            "library_items",
            "parameters",
            "status",
            "id",
            "detection_date",
            "activity",
            "commands",
            "total",
            "page",
            "size",
            "signed_url",
            "counts",
            "tags",
            "volumes",
            "mdm_device",
            "integration",
            "severity",
            "x",
        ]);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(keys.prop_map(str::to_string), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn all_models(v: &Value) {
    macro_rules! each {
        ($($t:ty),+) => {$(
            let r = <$t as Model>::from_value(v.clone());
            assert_eq!(r.is_ok(), v.is_object(), "{} on {v}", stringify!($t));
        )+};
    }
    each!(
        Device,
        DeviceDetails,
        App,
        DeviceApps,
        DeviceStatus,
        DeviceActivity,
        DeviceCommand,
        AuditEvent,
        Threat,
        BehavioralDetection,
        VulnDetection,
        Vulnerability,
        User,
        Blueprint,
        Tag,
        AdeDevice,
        Licensing,
        PrismExport,
        PrismRow
    );
    if let Ok(t) = Threat::from_value(v.clone()) {
        let _ = t.key();
    }
    if let Ok(t) = VulnDetection::from_value(v.clone()) {
        let _ = t.key();
    }
    if let Ok(d) = DeviceDetails::from_value(v.clone()) {
        let _ = (d.device_id(), d.section("general"));
    }
}

fn all_styles(v: &Value) {
    let styles: Vec<Box<dyn PageStyle>> = vec![
        Box::new(OffsetArray::new(300, 300)),
        Box::new(DrfEnvelope::new(1000, 1000)),
        Box::new(NestedEnvelope::new("activity", 300, 300)),
        Box::new(PageNumber),
        Box::new(PageSize::new(50, 50)),
        Box::new(NextCursor::with_limit(500, 500)),
        Box::new(NextCursor::without_limit()),
        Box::new(AfterCursor::new(300, 300)),
        Box::new(PrismCursor::new(300, 300)),
    ];
    for pos in [
        None,
        Some(Position::Offset(u64::MAX - 1)),
        Some(Position::Page(u64::MAX)),
        Some(Position::Cursor("c".into())),
    ] {
        for s in &styles {
            let _ = s.query(pos.as_ref());
            let _ = s.parse(v.clone(), pos.as_ref());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_json_never_panics(v in arb_json()) {
        all_models(&v);
        all_styles(&v);
        let _ = error_message(v.to_string().as_bytes());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        macro_rules! each {
            ($($t:ty),+) => {$( let _ = models::decode::<$t>(&bytes); )+};
        }
        each!(Device, DeviceDetails, App, DeviceApps, DeviceStatus, DeviceActivity, DeviceCommand, AuditEvent, Threat,
            BehavioralDetection, VulnDetection, Vulnerability, User, Blueprint, Tag, AdeDevice, Licensing, PrismExport, PrismRow);
        let _ = error_message(&bytes);
        let s = String::from_utf8_lossy(&bytes);
        let _ = kandji_api::parse_timestamp(&s);
        let _ = param_from_next(&s, &["cursor"], true);
        let _ = kandji_api::ApiBase::parse(&s, kandji_api::Region::Eu, true);
        let _ = kandji_api::retry::parse_retry_after(&s, time::OffsetDateTime::UNIX_EPOCH);
    }

    #[test]
    fn booleans_decode_in_every_variant(b in any::<bool>(), form in 0..4usize) {
        let v = match (b, form) {
            (true, 0) => json!(true), (false, 0) => json!(false),
            (true, 1) => json!("True"), (false, 1) => json!("False"),
            (true, 2) => json!("true"), (false, 2) => json!("false"),
            (true, _) => json!("Yes"), (false, _) => json!("No"),
        };
        let d = DeviceDetails::from_value(json!({"mdm": {"mdm_enabled": v.clone()}, "kandji_agent": {"agent_installed": v.clone()}})).unwrap();
        prop_assert_eq!(d.mdm.unwrap().mdm_enabled, Some(b));
        prop_assert_eq!(d.kandji_agent.unwrap().agent_installed, Some(b));
        let dev = Device::from_value(json!({"mdm_enabled": v})).unwrap();
        prop_assert_eq!(dev.mdm_enabled, Some(b));
    }

    #[test]
    fn empties_are_none(form in 0..3usize) {
        let empty = match form { 0 => json!(""), 1 => json!(null), _ => json!({}) };
        let mut obj = json!({"device_id": empty.clone(), "user": empty.clone(), "last_check_in": empty.clone(), "mdm_enabled": empty.clone(), "platform": empty});
        if form == 2 {
            obj = json!({});
        }
        let d = Device::from_value(obj).unwrap();
        prop_assert!(d.device_id.is_none() && d.user.is_none() && d.last_check_in.is_none() && d.mdm_enabled.is_none() && d.platform.is_none());
    }

    #[test]
    fn timestamps_decode_in_every_format(secs in 0i64..4_000_000_000, micros in 0u32..1_000_000, form in 0..6usize) {
        let dt = time::OffsetDateTime::from_unix_timestamp(secs).unwrap().replace_microsecond(micros).unwrap();
        let (d, t) = (format!("{:04}-{:02}-{:02}", dt.year(), u8::from(dt.month()), dt.day()), format!("{:02}:{:02}:{:02}", dt.hour(), dt.minute(), dt.second()));
        let s = match form {
            0 => format!("{d}T{t}.{micros:06}Z"),
            1 => format!("{d}T{t}.{micros:06}+00:00"),
            2 => format!("{d} {t}.{micros:06}+00:00"),
            3 => format!("{d}T{t}.{micros:06}"),
            4 => format!("{d} {t}.{micros:06}"),
            _ => format!("{d} {t}.{micros:06} +0000"),
        };
        let dev = Device::from_value(json!({"last_check_in": s})).unwrap();
        prop_assert_eq!(dev.last_check_in, Some(dt));
    }
}

#[test]
fn documented_quirks_decode() {
    let d = Device::from_value(json!({
        "device_id": "d1", "platform": "iPhone", "user": "", "mdm_enabled": true, "tags": ["a", "b"],
        "first_enrollment": "2024-01-26 16:15:36.087016+00:00", "unknown_new_field": {"x": 1}
    }))
    .unwrap();
    assert_eq!(d.platform, Some(Platform::IPhone));
    assert!(d.user.is_none());
    assert_eq!(d.tags, ["a", "b"]);
    assert!(d.first_enrollment.is_some());
    assert_eq!(d.raw["unknown_new_field"]["x"], 1);
    // A platform this crate does not know is kept verbatim (Windows and Android are known
    // since Iru manages them; Linux stands for the next one).
    let d = Device::from_value(
        json!({"platform": "Linux", "user": {"id": 1, "email": "a@b", "is_archived": "False"}}),
    )
    .unwrap();
    assert_eq!(d.platform, Some(Platform::Other("Linux".into())));
    for (s, p) in [
        ("Windows", Platform::Windows),
        ("Android", Platform::Android),
    ] {
        let w = Device::from_value(json!({"platform": s})).unwrap();
        assert_eq!(w.platform, Some(p));
    }
    let u = d.user.unwrap();
    assert_eq!((u.id.as_deref(), u.is_archived), (Some("1"), Some(false)));

    let apps = DeviceApps::from_value(json!({"device_id": "d1", "apps": [
        {"app_name": "Safari", "bundle_size": "123456", "app_store_vendable": "False", "device_based_vpp": ""}, "junk"]})).unwrap();
    assert_eq!(apps.apps.len(), 1);
    assert_eq!(apps.apps[0].bundle_size, Some(123_456));
    assert_eq!(apps.apps[0].app_store_vendable, Some(false));
    assert_eq!(apps.apps[0].device_based_vpp, None);

    let st = DeviceStatus::from_value(json!({"device_id": "d1",
        "library_items": [{"id": 5, "status": "PASS", "edr_status": {"last_baseline_scan": "Feb 27, 2024 at 7:34:21 AM"}},
                          {"id": "6", "status": "failed"}, {"status": "BRAND_NEW"}],
        "parameters": [{"item_id": "p", "status": "REMEDIATED"}]})).unwrap();
    assert_eq!(st.library_items[0].status, ItemStatus::Pass);
    assert!(
        st.library_items[0]
            .edr_status
            .as_ref()
            .unwrap()
            .last_baseline_scan
            .is_some()
    );
    assert_eq!(st.library_items[1].id, Some(6));
    assert_eq!(st.library_items[1].status, ItemStatus::Failed);
    assert_eq!(
        st.library_items[2].status,
        ItemStatus::Other("BRAND_NEW".into())
    );
    assert!(st.parameters[0].status.is_ok());

    let det = DeviceDetails::from_value(json!({"general": {"device_id": "d1", "assigned_user": ""}, "volumes": [{"encrypted": "Yes", "capacity": "228.27 GB"}], "lost_mode": {}})).unwrap();
    assert_eq!(det.device_id().as_deref(), Some("d1"));
    assert_eq!(det.volumes[0].encrypted, Some(true));
    assert!(det.section("lost_mode").is_none());

    let row = PrismRow::from_map(json!({"Device ID": "d9", "device__name": "X", "updated_at": "2024-07-23T14:11:37.150080Z"}).as_object().unwrap().clone());
    assert_eq!(row.device_id.as_deref(), Some("d9"));
    assert!(row.updated_at.is_some());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// The export CSV parser on arbitrary bytes split at arbitrary points: never panics, always ends.
    #[test]
    fn csv_parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512), split in 1usize..64) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let chunks: Vec<Result<bytes::Bytes, String>> =
                bytes.chunks(split).map(|c| Ok(bytes::Bytes::copy_from_slice(c))).collect();
            let out: Vec<_> = kandji_api::export::parse_csv_stream(futures::stream::iter(chunks), 7, 1).collect().await;
            // At most one error, and only at the end.
            let errs = out.iter().filter(|r| r.is_err()).count();
            assert!(errs <= 1);
            if errs == 1 {
                assert!(out.last().is_some_and(Result::is_err));
            }
        });
    }
}
