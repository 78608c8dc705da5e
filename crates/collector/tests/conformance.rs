//! The per-stream conformance harness, after Vector's `run_and_assert_source_compliance`
//! (vectordotdev/vector, `src/sources/http_client/tests.rs`): every stream in the registry
//! runs against `kandji-sim` and must
//!
//! 1. collect exactly the tenant's truth, with no duplicate, and record a healthy status with
//!    the run's records and requests;
//! 2. collect nothing twice when it runs again over an unchanged tenant (no new rows, no
//!    outbox rows: no false change events);
//! 3. resume from its checkpoint after a run stopped right after its first committed page:
//!    the resumed run completes the truth, loses and duplicates nothing, makes no change
//!    event (a first snapshot is a baseline however often it is interrupted), and (for a
//!    stream whose clean run takes more than one page) spends fewer requests than starting
//!    over;
//! 4. apply a source's filters (a blueprint and a device type) to every record that names a
//!    device;
//! 5. stop within 5 s when shutdown is asked while it waits out a failing API's backoff,
//!    leaving its state `pending` and nothing half-written.
//!
//! `case()` matches every `StreamName` exhaustively, so a new stream does not build until it
//! has a case here.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use kandji_collector::config::FilterConfig;
use kandji_collector::engine::{SourceRuntime, StreamError};
use kandji_collector::store::Store;
use kandji_collector::streams::StreamName;
use kandji_sim::{Churn, Faults, SimConfig, SimHandle};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Devices in the harness's tenant: enough for every walk and export to take several pages.
const DEVICES: usize = 700;
const SEED: u64 = 77;

/// How a stream's records are read back from the store and from the tenant's truth.
struct Case {
    /// Every stored record's identity, duplicates included.
    stored: &'static str,
    /// The device each stored record names (for the filter check), if the records name one.
    devices: Option<&'static str>,
    /// The tenant's truth, as the same identities.
    truth: fn(&SimHandle) -> BTreeSet<String>,
    /// Runs that collect the whole truth: 1, except for a stream that reads a capped number
    /// of devices per run (its rotation covers the fleet in this many).
    runs: usize,
}

fn ids(sim: &SimHandle, category: &str, key: &str) -> BTreeSet<String> {
    arr(sim.truth(category))
        .iter()
        .map(|v| str_of(v, key))
        .collect()
}

fn case(stream: StreamName) -> Case {
    match stream {
        StreamName::Devices => Case {
            stored: "SELECT key FROM devices WHERE removed_at IS NULL",
            devices: Some("SELECT device_id FROM devices"),
            truth: |sim| ids(sim, "devices", "device_id"),
            runs: 1,
        },
        StreamName::DeviceDetails => Case {
            // One row per device and category (installed profiles: per profile); the truth
            // is every device Prism reports (the Apple ones).
            stored: "SELECT DISTINCT device_id FROM device_details WHERE removed_at IS NULL",
            devices: Some("SELECT device_id FROM device_details"),
            truth: truth_apple_device_ids,
            runs: 1,
        },
        StreamName::Apps => Case {
            stored: "SELECT key FROM apps WHERE removed_at IS NULL",
            devices: Some("SELECT device_id FROM apps"),
            truth: truth_app_keys,
            runs: 1,
        },
        StreamName::Compliance => Case {
            stored: "SELECT key FROM compliance WHERE removed_at IS NULL",
            devices: Some("SELECT device_id FROM compliance"),
            truth: |sim| {
                let mut out = BTreeSet::new();
                for d in arr(sim.truth("compliance")) {
                    let device = str_of(&d, "device_id");
                    for (kind, list) in [
                        ("library_item", "library_items"),
                        ("parameter", "parameters"),
                    ] {
                        for item in d.get(list).and_then(Value::as_array).into_iter().flatten() {
                            out.insert(format!("{device}|{kind}|{}", str_of(item, "item_id")));
                        }
                    }
                }
                out
            },
            runs: DEVICES.div_ceil(kandji_collector::streams::compliance::MAX_PER_RUN),
        },
        StreamName::AuditEvents => Case {
            stored: "SELECT uid FROM events WHERE stream = 'audit_events'",
            devices: Some("SELECT device_id FROM events WHERE stream = 'audit_events'"),
            truth: |sim| ids(sim, "audit_events", "id"),
            runs: 1,
        },
        StreamName::Threats => Case {
            stored: "SELECT uid FROM events WHERE stream = 'threats'",
            devices: Some("SELECT device_id FROM events WHERE stream = 'threats'"),
            truth: |sim| {
                arr(sim.truth("threats"))
                    .iter()
                    .map(kandji_collector::streams::threats::key)
                    .collect()
            },
            runs: 1,
        },
        StreamName::BehavioralDetections => Case {
            stored: "SELECT uid FROM events WHERE stream = 'behavioral_detections'",
            devices: Some("SELECT device_id FROM events WHERE stream = 'behavioral_detections'"),
            truth: |sim| {
                arr(sim.truth("behavioral_detections"))
                    .iter()
                    .map(|v| str_of(v, "id").to_ascii_uppercase())
                    .collect()
            },
            runs: 1,
        },
        StreamName::VulnerabilityDetections => Case {
            stored: "SELECT uid FROM events WHERE stream = 'vulnerability_detections'",
            devices: Some("SELECT device_id FROM events WHERE stream = 'vulnerability_detections'"),
            truth: truth_vuln_keys,
            runs: 1,
        },
        StreamName::Users => Case {
            stored: "SELECT key FROM users WHERE removed_at IS NULL",
            devices: None,
            truth: |sim| ids(sim, "users", "id"),
            runs: 1,
        },
        StreamName::Blueprints => Case {
            stored: "SELECT key FROM blueprints WHERE removed_at IS NULL",
            devices: None,
            truth: |sim| ids(sim, "blueprints", "id"),
            runs: 1,
        },
        StreamName::Tags => Case {
            stored: "SELECT key FROM tags WHERE removed_at IS NULL",
            devices: None,
            truth: |sim| ids(sim, "tags", "id"),
            runs: 1,
        },
        StreamName::AdeDevices => Case {
            stored: "SELECT key FROM ade_devices WHERE removed_at IS NULL",
            devices: None,
            truth: |sim| ids(sim, "ade_devices", "id"),
            runs: 1,
        },
    }
}

fn stored(store: &Store, q: &str) -> Vec<String> {
    let c = sql(store);
    let mut st = c.prepare(q).expect("prepare");
    st.query_map([], |r| r.get::<_, Option<String>>(0))
        .expect("query")
        .filter_map(|r| r.expect("row"))
        .collect()
}

/// Fails with what is missing and what is extra (a few of each), not two huge sets.
fn assert_same(stream: StreamName, what: &str, got: &BTreeSet<String>, want: &BTreeSet<String>) {
    if got != want {
        let missing: Vec<_> = want.difference(got).take(3).collect();
        let extra: Vec<_> = got.difference(want).take(3).collect();
        panic!(
            "{stream}: {what}: {} stored against {} in the truth; {} missing (e.g. {missing:?}), \
             {} extra (e.g. {extra:?})",
            got.len(),
            want.len(),
            want.difference(got).count(),
            got.difference(want).count(),
        );
    }
}

/// Stored identities as a set, failing on any duplicate.
fn stored_set(store: &Store, stream: StreamName, q: &str) -> BTreeSet<String> {
    let all = stored(store, q);
    let set: BTreeSet<String> = all.iter().cloned().collect();
    assert_eq!(all.len(), set.len(), "{stream}: a record is stored twice");
    set
}

fn outbox_rows(store: &Store) -> i64 {
    count(store, "SELECT count(*) FROM outbox")
}

fn config() -> SimConfig {
    let mut cfg = sim_config(DEVICES, SEED);
    cfg.churn = Churn::none();
    cfg
}

/// A runtime for `source` on `store`, with its own stop switch.
fn runtime(
    sim: &Arc<SimHandle>,
    store: &Store,
    filters: FilterConfig,
) -> (SourceRuntime, CancellationToken) {
    let mut source = source_for(sim, "acme");
    source.filters = filters;
    let stop = CancellationToken::new();
    let mut rt = SourceRuntime::new(source, store.clone(), stop.clone()).expect("runtime");
    rt.export_poll = Duration::from_millis(5);
    let clock = sim.clone();
    rt.clock = Arc::new(move || (clock.now().unix_timestamp_nanos() / 1_000_000) as i64);
    rt.follow_server_clock = false;
    (rt, stop)
}

/// What a stream reads before it can run: the table it needs filled and, with filters, the
/// dimensions and device list they resolve against.
fn prerequisites(stream: StreamName, filtered: bool) -> Vec<StreamName> {
    let mut pre = Vec::new();
    if filtered {
        pre.extend([
            StreamName::Blueprints,
            StreamName::Tags,
            StreamName::Devices,
        ]);
    }
    if let Some(d) = kandji_collector::engine::depends_on(stream) {
        pre.push(d);
    }
    pre.retain(|p| *p != stream);
    pre.dedup();
    pre
}

async fn prepare(rt: &SourceRuntime, stream: StreamName, filtered: bool) {
    for p in prerequisites(stream, filtered) {
        rt.run_stream(p)
            .await
            .unwrap_or_else(|e| panic!("{stream}'s prerequisite {p} failed: {e}"));
    }
}

fn status(store: &Store, stream: StreamName) -> (String, i64, i64, Option<i64>) {
    sql(store)
        .query_row(
            "SELECT state, last_run_records, last_run_requests, last_success_at \
             FROM stream_status WHERE source = 'acme' AND stream = ?1",
            [stream.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap_or_else(|e| panic!("{stream} has no status row: {e}"))
}

/// What the runs that collect a stream's whole truth did.
struct Complete {
    pages: u64,
    requests: u64,
    /// The last run's report (what the status row shows).
    last: kandji_collector::engine::RunReport,
}

/// Runs `stream` `runs` times (its rotation covers the fleet in that many), each must succeed.
async fn complete(rt: &SourceRuntime, stream: StreamName, runs: usize, what: &str) -> Complete {
    let mut done = Complete {
        pages: 0,
        requests: 0,
        last: Default::default(),
    };
    for n in 0..runs {
        let r = rt
            .run_stream(stream)
            .await
            .unwrap_or_else(|e| panic!("{stream}: {what} run {n} failed: {e}"));
        done.pages += r.pages;
        done.requests += r.requests;
        done.last = r;
    }
    done
}

/// Runs the five checks of the module docs for `stream`.
async fn run_and_assert_stream_conformance(stream: StreamName) {
    let case = case(stream);

    // 1. A clean run collects the truth and records its status.
    let sim = Arc::new(kandji_sim::spawn(config()).await.expect("sim"));
    let truth = (case.truth)(&sim);
    assert!(
        !truth.is_empty(),
        "{stream}: the harness tenant has no truth"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let (rt, _stop) = runtime(&sim, &store, FilterConfig::default());
    prepare(&rt, stream, false).await;
    let clean = complete(&rt, stream, case.runs, "clean").await;
    assert_same(
        stream,
        "a clean run stores exactly the truth",
        &stored_set(&store, stream, case.stored),
        &truth,
    );
    let (state, records, requests, success) = status(&store, stream);
    assert_eq!(state, "healthy", "{stream}");
    assert_eq!(
        records as u64, clean.last.records,
        "{stream}: status records"
    );
    assert_eq!(
        requests as u64, clean.last.requests,
        "{stream}: status requests"
    );
    assert!(clean.requests > 0 && success.is_some(), "{stream}");

    // 2. Again over an unchanged tenant: nothing new, no change events.
    let outbox = outbox_rows(&store);
    rt.run_stream(stream)
        .await
        .unwrap_or_else(|e| panic!("{stream}: second run failed: {e}"));
    assert_same(
        stream,
        "the second run",
        &stored_set(&store, stream, case.stored),
        &truth,
    );
    assert_eq!(
        outbox_rows(&store),
        outbox,
        "{stream}: an unchanged tenant produced outbox rows (false change events)"
    );
    drop(rt);

    // 3. Stopped after its first committed page, then resumed by a new runtime (a restart).
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let (mut rt, stop) = runtime(&sim, &store, FilterConfig::default());
    prepare(&rt, stream, false).await;
    let pages = Arc::new(AtomicU64::new(0));
    {
        let (stop, pages, name) = (stop.clone(), pages.clone(), stream.as_str());
        rt.on_commit = Some(Arc::new(move |s, _| {
            if s == name && pages.fetch_add(1, Ordering::SeqCst) == 0 {
                stop.cancel();
            }
        }));
    }
    let before = sim.stats().total;
    let first = rt.run_stream(stream).await;
    let first_requests = sim.stats().total - before;
    assert!(
        matches!(first, Err(StreamError::Shutdown) | Ok(_)),
        "{stream}: the stopped run: {first:?}"
    );
    let interrupted = first.is_err();
    if interrupted {
        assert_eq!(status(&store, stream).0, "pending", "{stream}");
        let partial = stored_set(&store, stream, case.stored);
        assert!(
            partial.is_subset(&truth),
            "{stream}: the stopped run stored something not in the truth"
        );
    }
    drop(rt);
    let (rt, _stop) = runtime(&sim, &store, FilterConfig::default());
    let resumed_requests = complete(&rt, stream, case.runs, "resumed").await.requests;
    assert_same(
        stream,
        "stopped and resumed, it stores exactly the truth",
        &stored_set(&store, stream, case.stored),
        &truth,
    );
    // A first snapshot is a unit: stopped and resumed over a tenant with no churn, it is
    // still a baseline, and nothing in it is news.
    let changes = stored(
        &store,
        "SELECT event_type || ' ' || uid FROM events WHERE category = 'change'",
    );
    assert!(
        changes.is_empty(),
        "{stream}: a stopped and resumed first snapshot made {} change events, e.g. {:?}",
        changes.len(),
        changes.iter().take(3).collect::<Vec<_>>()
    );
    eprintln!(
        "{stream}: clean {} pages {} requests; stopped {} + resumed {} requests (interrupted: {interrupted})",
        clean.pages, clean.requests, first_requests, resumed_requests
    );
    if interrupted && clean.pages > 1 && resumes(stream) {
        assert!(
            first_requests + resumed_requests <= clean.requests + 1,
            "{stream}: the resumed run started over ({first_requests} + {resumed_requests} \
             requests against {} for a clean run)",
            clean.requests
        );
    }
    drop(rt);

    // 4. Filters: a blueprint and a device type.
    if let Some(devices_q) = case.devices {
        let devices = arr(sim.truth("devices"));
        let mut counts = std::collections::BTreeMap::new();
        for d in devices.iter().filter(|d| d["platform"] == "Mac") {
            *counts.entry(str_of(d, "blueprint_name")).or_insert(0) += 1;
        }
        let (blueprint, _) = counts.iter().max_by_key(|(_, n)| **n).expect("Macs");
        let in_scope: BTreeSet<String> = devices
            .iter()
            .filter(|d| d["platform"] == "Mac" && str_of(d, "blueprint_name") == *blueprint)
            .map(|d| str_of(d, "device_id"))
            .collect();
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let filters = FilterConfig {
            blueprints: vec![blueprint.clone()],
            tags: vec![],
            device_types: vec!["Mac".into()],
        };
        let (rt, _stop) = runtime(&sim, &store, filters);
        prepare(&rt, stream, true).await;
        rt.run_stream(stream)
            .await
            .unwrap_or_else(|e| panic!("{stream}: the filtered run failed: {e}"));
        let named: BTreeSet<String> = stored(&store, devices_q).into_iter().collect();
        assert!(
            named.is_subset(&in_scope),
            "{stream}: {} records name devices outside the filter",
            named.difference(&in_scope).count()
        );
        let wanted: BTreeSet<String> = truth
            .iter()
            .filter(|k| in_scope.iter().any(|d| k.contains(d.as_str())))
            .cloned()
            .collect();
        if !wanted.is_empty() {
            assert!(
                !named.is_empty(),
                "{stream}: the filtered run collected nothing"
            );
        }
    }

    // 5. Shutdown while the stream waits out a failing API's backoff.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let (rt, stop) = runtime(&sim, &store, FilterConfig::default());
    prepare(&rt, stream, false).await;
    sim.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let run = rt.run_stream(stream);
    tokio::pin!(run);
    let early = tokio::time::timeout(Duration::from_secs(2), &mut run).await;
    assert!(
        early.is_err(),
        "{stream} did not wait on a failing API: {early:?}"
    );
    let asked = std::time::Instant::now();
    stop.cancel();
    let r = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .unwrap_or_else(|_| panic!("{stream} still running 5 s after shutdown"));
    assert!(matches!(r, Err(StreamError::Shutdown)), "{stream}: {r:?}");
    assert!(asked.elapsed() < Duration::from_secs(5), "{stream}");
    assert_eq!(status(&store, stream).0, "pending", "{stream}");
    sim.set_faults(Faults::default());
}

/// Whether a stopped run picks up where it stopped, so its requests are compared with a clean
/// run's: a walk with a position or cursor in its checkpoint. A Prism export is redone whole
/// (its pages are a snapshot only once complete); the
/// per-device reads have no position (each device's read commits with it, and the rotation
/// reads the least recently read next); an envelope feed re-reads its overlapping window.
fn resumes(stream: StreamName) -> bool {
    use kandji_collector::streams::spec::Driver;
    matches!(
        stream.spec().driver,
        Driver::OffsetSweep | Driver::CursorEvents
    )
}

macro_rules! conformance {
    ($($test:ident => $stream:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                run_and_assert_stream_conformance(StreamName::$stream).await;
            }
        )*

        /// Every registered stream has its conformance test above.
        #[test]
        fn every_stream_has_a_conformance_test() {
            let tested: BTreeSet<StreamName> = [$(StreamName::$stream),*].into_iter().collect();
            let all: BTreeSet<StreamName> = StreamName::ALL.iter().copied().collect();
            assert_eq!(tested, all);
        }
    };
}

conformance! {
    devices_conforms => Devices,
    device_details_conforms => DeviceDetails,
    apps_conforms => Apps,
    compliance_conforms => Compliance,
    audit_events_conforms => AuditEvents,
    threats_conforms => Threats,
    behavioral_detections_conforms => BehavioralDetections,
    vulnerability_detections_conforms => VulnerabilityDetections,
    users_conforms => Users,
    blueprints_conforms => Blueprints,
    tags_conforms => Tags,
    ade_devices_conforms => AdeDevices,
}
