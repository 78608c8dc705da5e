//! Shared test harness: a simulated tenant and a collector runtime pointed at it.
#![allow(dead_code)]

pub mod backend;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use kandji_api::{ApiBase, Region, SecretString};
use kandji_collector::config::{FilterConfig, Source};
use kandji_collector::engine::SourceRuntime;
use kandji_collector::store::Store;
use kandji_collector::streams::StreamName;
use kandji_sim::{ClockConfig, SimConfig, SimHandle};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub struct Env {
    pub sim: Arc<SimHandle>,
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub rt: SourceRuntime,
    pub stop: CancellationToken,
}

/// A frozen simulated clock (it moves only when a test advances it), no per-second throttle.
pub fn sim_config(devices: usize, seed: u64) -> SimConfig {
    SimConfig {
        devices,
        seed,
        per_second_limit: 1_000_000,
        export_polls: 1,
        clock: ClockConfig {
            speed: 0.0,
            ..ClockConfig::default()
        },
        ..SimConfig::default()
    }
}

pub fn source_for(sim: &SimHandle, name: &str) -> Source {
    Source {
        name: name.to_string(),
        base: ApiBase::parse(&sim.base_url(), Region::Us, true).expect("sim url"),
        token: SecretString::from(sim.token().to_string()),
        enabled: true,
        budget_share: 1.0,
        hourly_limit: 10_000,
        per_second: 50,
        streams: StreamName::ALL.to_vec(),
        intervals: StreamName::ALL
            .iter()
            .map(|s| (*s, s.default_interval()))
            .collect::<BTreeMap<_, _>>(),
        filters: FilterConfig::default(),
        export_download_hosts: Vec::new(),
        hygiene: Default::default(),
    }
}

pub async fn env(config: SimConfig) -> Env {
    let sim = Arc::new(kandji_sim::spawn(config).await.expect("sim"));
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let stop = CancellationToken::new();
    let mut rt =
        SourceRuntime::new(source_for(&sim, "acme"), store.clone(), stop.clone()).expect("runtime");
    rt.export_poll = Duration::from_millis(5);
    // The engine's clock follows the tenant's, so "6 hours since the last export" means
    // simulated hours.
    let clock = sim.clone();
    rt.clock = Arc::new(move || (clock.now().unix_timestamp_nanos() / 1_000_000) as i64);
    rt.follow_server_clock = false;
    Env {
        sim,
        dir,
        store,
        rt,
        stop,
    }
}

/// Runs one cycle and fails the test on any stream error.
pub async fn cycle(env: &Env, only: &[StreamName]) {
    for r in kandji_collector::engine::sync_once(&env.rt, only).await {
        if let Err(e) = &r.result {
            panic!("stream {} failed: {e}", r.stream);
        }
    }
}

pub fn arr(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        other => panic!("expected a JSON array of truth, got {other}"),
    }
}

pub fn str_of(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// A read-only connection to the store's file: tests check what is on disk with SQL of their
/// own, beside the store's API (the product keeps its SQL in `store/`).
pub fn sql(store: &Store) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(store.path(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("read-only connection to the store")
}

pub fn store_set(store: &Store, sql_text: &str) -> BTreeSet<String> {
    let c = sql(store);
    let sql = sql_text;
    let mut st = c.prepare(sql).expect("prepare");
    st.query_map([], |r| r.get::<_, String>(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

pub fn count(store: &Store, q: &str) -> i64 {
    sql(store).query_row(q, [], |r| r.get(0)).expect("count")
}

/// The tenant's open vulnerability detections, keyed as the store keys them
/// (`device-bundle-cve`).
pub fn truth_vuln_keys(sim: &SimHandle) -> BTreeSet<String> {
    arr(sim.truth("vulnerability_detections"))
        .iter()
        .map(|v| {
            format!(
                "{}-{}-{}",
                str_of(v, "device_id"),
                str_of(v, "bundle_id"),
                str_of(v, "cve_id")
            )
        })
        .collect()
}

/// The tenant's Apple devices: the ones Prism, the collector's fleet-wide source of apps and
/// details, lists (Android and Windows devices are on `/devices` only; their details and apps
/// are per-device endpoints the collector does not read yet).
pub fn truth_apple_device_ids(sim: &SimHandle) -> BTreeSet<String> {
    arr(sim.truth("devices"))
        .iter()
        .filter(|d| !matches!(d["platform"].as_str(), Some("Android" | "Windows")))
        .map(|d| str_of(d, "device_id"))
        .collect()
}

/// The tenant's app installs on Apple devices, keyed as the store keys them (`device|bundle
/// id, else path, else name`).
pub fn truth_app_keys(sim: &SimHandle) -> BTreeSet<String> {
    let apple = truth_apple_device_ids(sim);
    let mut out = BTreeSet::new();
    for d in arr(sim.truth("apps")) {
        let device = str_of(&d, "device_id");
        if !apple.contains(&device) {
            continue;
        }
        for a in d
            .get("apps")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let ident = ["bundle_id", "path", "app_name"]
                .iter()
                .map(|k| str_of(a, k))
                .find(|x| !x.is_empty())
                .unwrap_or_default();
            out.insert(format!("{device}|{ident}"));
        }
    }
    out
}

/// The tenant's devices' ids.
pub fn truth_device_ids(sim: &SimHandle) -> BTreeSet<String> {
    arr(sim.truth("devices"))
        .iter()
        .map(|d| str_of(d, "device_id"))
        .collect()
}

/// Asserts the store's content equals the simulator's truth for every category.
pub fn assert_matches_truth(env: &Env) {
    assert_store_matches(&env.sim, &env.store);
}

/// Asserts `store` equals `sim`'s truth for every category.
pub fn assert_store_matches(sim: &SimHandle, store: &Store) {
    let c = sql(store);
    assert_snapshot_matches(
        sim,
        &Snapshot::read(|q| {
            let mut st = c.prepare(q).expect("prepare");
            let n = st.column_count();
            st.query_map([], |r| {
                (0..n)
                    .map(|i| r.get::<_, Option<rusqlite::types::Value>>(i))
                    .collect::<Result<Vec<_>, _>>()
            })
            .expect("query")
            .map(|r| {
                r.expect("row")
                    .into_iter()
                    .map(|v| match v {
                        None | Some(rusqlite::types::Value::Null) => None,
                        Some(rusqlite::types::Value::Integer(i)) => Some(i.to_string()),
                        Some(rusqlite::types::Value::Real(f)) => Some(f.to_string()),
                        Some(rusqlite::types::Value::Text(t)) => Some(t),
                        Some(rusqlite::types::Value::Blob(b)) => Some(format!("{b:?}")),
                    })
                    .collect()
            })
            .collect()
        }),
    );
}

/// What the truth checks read of a store, by queries both backends answer alike.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub sets: BTreeMap<&'static str, BTreeSet<String>>,
    pub counts: BTreeMap<&'static str, i64>,
    /// Live compliance items and their status.
    pub compliance: BTreeMap<String, String>,
}

const SNAPSHOT_SETS: [(&str, &str); 8] = [
    (
        "devices",
        "SELECT key FROM devices WHERE removed_at IS NULL",
    ),
    ("users", "SELECT key FROM users WHERE removed_at IS NULL"),
    (
        "audit",
        "SELECT uid FROM events WHERE stream = 'audit_events'",
    ),
    (
        "open_vulns",
        "SELECT key FROM vuln_detections WHERE removed_at IS NULL",
    ),
    (
        "vuln_events",
        "SELECT uid FROM events WHERE stream = 'vulnerability_detections'",
    ),
    (
        "behavioral",
        "SELECT uid FROM events WHERE stream = 'behavioral_detections'",
    ),
    ("apps", "SELECT key FROM apps WHERE removed_at IS NULL"),
    ("threats", "SELECT uid FROM events WHERE stream = 'threats'"),
];
const SNAPSHOT_COUNTS: [(&str, &str); 2] = [
    (
        "audit",
        "SELECT count(*) FROM events WHERE stream = 'audit_events'",
    ),
    (
        "threats",
        "SELECT count(*) FROM events WHERE stream = 'threats'",
    ),
];
const SNAPSHOT_COMPLIANCE: &str = "SELECT key, status FROM compliance WHERE removed_at IS NULL";

/// The snapshot's query for one source (`None`: every source).
fn scoped(q: &str, source: Option<&str>) -> String {
    match source {
        None => q.to_string(),
        Some(s) => {
            let cond = format!("source = '{}' AND ", s.replace('\'', "''"));
            q.replacen(" WHERE ", &format!(" WHERE {cond}"), 1)
        }
    }
}

impl Snapshot {
    /// The snapshot through `rows` (a query's rows, every cell as text).
    pub fn read(rows: impl FnMut(&str) -> Vec<Vec<Option<String>>>) -> Snapshot {
        Snapshot::read_for(None, rows)
    }

    /// [`Snapshot::read`] of one source's records.
    pub fn read_for(
        source: Option<&str>,
        mut rows: impl FnMut(&str) -> Vec<Vec<Option<String>>>,
    ) -> Snapshot {
        let mut s = Snapshot::default();
        for (name, q) in SNAPSHOT_SETS {
            s.sets.insert(
                name,
                rows(&scoped(q, source))
                    .into_iter()
                    .filter_map(|r| r.into_iter().next().flatten())
                    .collect(),
            );
        }
        for (name, q) in SNAPSHOT_COUNTS {
            let n = rows(&scoped(q, source))[0][0]
                .as_deref()
                .unwrap_or("0")
                .parse()
                .expect("count");
            s.counts.insert(name, n);
        }
        for r in rows(&scoped(SNAPSHOT_COMPLIANCE, source)) {
            let mut it = r.into_iter();
            let key = it.next().flatten().unwrap_or_default();
            s.compliance
                .insert(key, it.next().flatten().unwrap_or_default());
        }
        s
    }

    /// Every query the snapshot makes, for a reader that fetches them first (async backends).
    pub fn queries(source: Option<&str>) -> Vec<String> {
        SNAPSHOT_SETS
            .iter()
            .map(|(_, q)| *q)
            .chain(SNAPSHOT_COUNTS.iter().map(|(_, q)| *q))
            .chain([SNAPSHOT_COMPLIANCE])
            .map(|q| scoped(q, source))
            .collect()
    }
}

/// Asserts a store's snapshot equals `sim`'s truth for every category.
pub fn assert_snapshot_matches(sim: &SimHandle, snap: &Snapshot) {
    let problems = snapshot_problems(sim, snap);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// How a store's snapshot differs from `sim`'s truth, one line per category (empty: equal).
pub fn snapshot_problems(sim: &SimHandle, snap: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    let set = |k: &str| snap.sets.get(k).cloned().unwrap_or_default();
    let mut differ = |what: &str, stored: &BTreeSet<String>, truth: &BTreeSet<String>| {
        if stored != truth {
            out.push(format!(
                "{what}: {} stored, {} in the truth; missing {:?}, extra {:?}",
                stored.len(),
                truth.len(),
                truth.difference(stored).take(3).collect::<Vec<_>>(),
                stored.difference(truth).take(3).collect::<Vec<_>>()
            ));
        }
    };
    let truth_devices: BTreeSet<String> = arr(sim.truth("devices"))
        .iter()
        .map(|d| str_of(d, "device_id"))
        .collect();
    differ("live devices", &set("devices"), &truth_devices);
    let truth_users: BTreeSet<String> = arr(sim.truth("users"))
        .iter()
        .map(|u| str_of(u, "id"))
        .collect();
    differ("users", &set("users"), &truth_users);
    let truth_audit: BTreeSet<String> = arr(sim.truth("audit_events"))
        .iter()
        .map(|e| str_of(e, "id"))
        .collect();
    differ("audit events", &set("audit"), &truth_audit);
    let truth_vulns = truth_vuln_keys(sim);
    // The open detections are the tenant's (remediated ones are closed), and every one of
    // them came with its event (events stay when a detection closes).
    differ(
        "open vulnerability detections",
        &set("open_vulns"),
        &truth_vulns,
    );
    let truth_beh: BTreeSet<String> = arr(sim.truth("behavioral_detections"))
        .iter()
        .map(|v| str_of(v, "id").to_ascii_uppercase())
        .collect();
    differ("behavioral detections", &set("behavioral"), &truth_beh);
    let truth_apps = truth_app_keys(sim);
    differ("apps", &set("apps"), &truth_apps);
    if snap.counts["audit"] as usize != truth_audit.len() {
        out.push(format!(
            "no duplicate audit events: {} stored for {} in the truth",
            snap.counts["audit"],
            truth_audit.len()
        ));
    }
    let stored_vulns = set("vuln_events");
    if !truth_vulns.is_subset(&stored_vulns) {
        out.push(format!(
            "vulnerability detection events: {} of the tenant's have none",
            truth_vulns.difference(&stored_vulns).count()
        ));
    }
    let truth_threats = arr(sim.truth("threats")).len() as i64;
    if snap.counts["threats"] != truth_threats {
        out.push(format!(
            "threats: {} stored, {truth_threats} in the truth",
            snap.counts["threats"]
        ));
    }
    let mut truth_compliance = BTreeMap::new();
    for d in arr(sim.truth("compliance")) {
        let device = str_of(&d, "device_id");
        for (kind, list) in [
            ("library_item", "library_items"),
            ("parameter", "parameters"),
        ] {
            for item in d.get(list).and_then(Value::as_array).into_iter().flatten() {
                truth_compliance.insert(
                    format!("{device}|{kind}|{}", str_of(item, "item_id")),
                    str_of(item, "status"),
                );
            }
        }
    }
    if snap.compliance != truth_compliance {
        let wrong = truth_compliance
            .iter()
            .filter(|(k, v)| snap.compliance.get(*k) != Some(*v))
            .count();
        out.push(format!(
            "compliance items and statuses: {} stored, {} in the truth, {wrong} missing or different",
            snap.compliance.len(),
            truth_compliance.len()
        ));
    }
    out
}

/// The dialects the fidelity, crash and lifecycle suites each run under (issue 12): a refused
/// custom cursor answered 400 or 404 (the live status is unknown; `/users` is DRF's 404 in
/// both), and a tenant that sends no rate-limit headers, as in the 2023 recordings. Every
/// variant also has a larger share of Android and Windows devices, so that each run holds some.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Every cursor issued before the clock last moved, and the first two presented, are
    /// refused with 400; the cursor endpoints serve 100 items a page at most.
    Refusal400,
    /// As `Refusal400`, with 404.
    Refusal404,
    /// No `X-RateLimit-*` headers on any response.
    NoRateLimitHeaders,
}

impl Dialect {
    pub fn apply(self, cfg: &mut SimConfig) {
        cfg.android_share = 0.08;
        cfg.windows_share = 0.05;
        match self {
            Dialect::Refusal400 | Dialect::Refusal404 => {
                cfg.faults.expire_cursors = true;
                cfg.faults.cursor_refusal_404 = self == Dialect::Refusal404;
                // Walks of several pages, the first two of whose cursors expire between pages.
                cfg.faults.page_cap = 100;
                cfg.faults.refuse_next_cursors = 2;
            }
            Dialect::NoRateLimitHeaders => cfg.rate_limit_headers = false,
        }
    }

    /// The status a refused cursor got, if this dialect refuses them.
    pub fn refusal_status(self) -> Option<&'static str> {
        match self {
            Dialect::Refusal400 => Some("400"),
            Dialect::Refusal404 => Some("404"),
            Dialect::NoRateLimitHeaders => None,
        }
    }

    /// Asserts the run met its dialect: refused cursors were served (and survived, since the
    /// suites' own checks passed), and the Android and Windows devices were stored with their
    /// platform.
    pub fn assert_exercised(self, sim: &SimHandle, store: &Store) {
        if let Some(status) = self.refusal_status() {
            let stats = sim.stats();
            let refused: u64 = stats
                .endpoints
                .iter()
                .filter(|(k, _)| ["audit", "prism", "vulnerab"].iter().any(|f| k.contains(f)))
                .filter_map(|(_, by)| by.get(status))
                .sum();
            assert!(
                refused > 0,
                "{self:?}: no cursor was refused with {status}; the run did not exercise it ({:?})",
                stats.endpoints
            );
        }
        for platform in ["Android", "Windows"] {
            let truth = arr(sim.truth("devices"))
                .iter()
                .filter(|d| d["platform"] == platform)
                .count() as i64;
            assert!(truth > 0, "{self:?}: the tenant has no {platform} device");
            let stored = count(
                store,
                &format!(
                    "SELECT count(*) FROM devices WHERE platform = '{platform}' AND removed_at IS NULL"
                ),
            );
            assert_eq!(
                stored, truth,
                "{self:?}: {platform} devices stored with their platform"
            );
        }
    }
}
