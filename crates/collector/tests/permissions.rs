//! Least privilege, measured: the permission list generated from the stream declarations,
//! the README's copy of it, and the privilege probes against the simulator.

mod common;

use kandji_collector::streams::{StreamName, permissions_markdown};

/// The README's table is the generated one (regenerate with
/// `kandji-collector permissions --format markdown`).
#[test]
fn the_readme_permission_table_is_generated_from_the_streams() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let begin = "<!-- permissions:begin -->\n";
    let start = readme
        .find(begin)
        .expect("README has <!-- permissions:begin -->")
        + begin.len();
    let end = readme[start..]
        .find("<!-- permissions:end -->")
        .expect("README has <!-- permissions:end -->")
        + start;
    let want = permissions_markdown(&StreamName::ALL);
    assert_eq!(
        &readme[start..end],
        want,
        "the README's permission table is out of date; replace it with:\n{want}"
    );
}

use std::sync::Arc;
use std::time::Duration;

use common::*;
use kandji_collector::check;
use kandji_collector::engine::SourceRuntime;
use kandji_collector::streams::permissions;
use kandji_sim::TokenSpec;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

const LEAST: &str = "11111111-2222-4333-8444-555555555555";
const FILEVAULT: &str = "66666666-7777-4888-8999-aaaaaaaaaaaa";

/// The generated list as the simulator's allow keys (`"GET /api/v1/devices"`).
fn least_privilege() -> Vec<String> {
    permissions(&StreamName::ALL)
        .iter()
        .map(|p| format!("{} {}", p.method, p.path))
        .collect()
}

async fn sim_with_tokens() -> Arc<kandji_sim::SimHandle> {
    let mut cfg = sim_config(40, 21);
    let mut with_fv = least_privilege();
    with_fv.push("GET /api/v1/devices/{device_id}/secrets/filevaultkey".into());
    cfg.extra_tokens = vec![
        TokenSpec {
            token: LEAST.into(),
            allow: least_privilege(),
        },
        TokenSpec {
            token: FILEVAULT.into(),
            allow: with_fv,
        },
    ];
    Arc::new(kandji_sim::spawn(cfg).await.expect("sim"))
}

fn source_with(
    sim: &kandji_sim::SimHandle,
    token: &str,
) -> kandji_collector::streams::source::Source {
    let mut s = source_for(sim, "acme");
    s.token = SecretString::from(token.to_string());
    s
}

/// A token with exactly the generated permissions collects every stream: nothing the
/// streams call is missing from the list (the simulator refuses anything not on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_with_exactly_the_listed_permissions_collects_every_stream() {
    let sim = sim_with_tokens().await;
    let dir = tempfile::tempdir().unwrap();
    let store = kandji_collector::store::Store::open(dir.path()).unwrap();
    let mut rt =
        SourceRuntime::new(source_with(&sim, LEAST), store, CancellationToken::new()).unwrap();
    rt.export_poll = Duration::from_millis(5);
    let clock = sim.clone();
    rt.clock = Arc::new(move || (clock.now().unix_timestamp_nanos() / 1_000_000) as i64);
    rt.follow_server_clock = false;
    for r in kandji_collector::engine::sync_once(&rt, &StreamName::ALL).await {
        if let Err(e) = &r.result {
            panic!(
                "stream {} failed with the least-privilege token: {e}",
                r.stream
            );
        }
    }
    let st = sim.stats();
    let refused: u64 = st.endpoints.values().filter_map(|by| by.get("403")).sum();
    assert_eq!(refused, 0, "{:?}", st.endpoints);
    assert!(st.spent_by(LEAST) > 10, "the cycle ran on that token");
}

/// The privilege review: a least-privilege token gets no warning; one that can read FileVault
/// keys gets exactly that warning; and the simulator saw only GETs, all with the nil id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_privilege_review_finds_exactly_the_unneeded_privileges_with_safe_probes() {
    let sim = sim_with_tokens().await;
    sim.reset_stats();

    let least = check::run(&source_with(&sim, LEAST), true).await.unwrap();
    assert!(least.all_ok(), "{}", least.render());
    let probes = least.privileges.as_ref().expect("reviewed");
    assert_eq!(probes.len(), 4);
    assert!(
        least.unneeded_privileges().is_empty(),
        "a least-privilege token gets no warning:\n{}",
        least.render()
    );
    assert!(least.render().contains("✓ not granted"));

    let fv = check::run(&source_with(&sim, FILEVAULT), true)
        .await
        .unwrap();
    let granted = fv.unneeded_privileges();
    assert_eq!(granted.len(), 1, "{}", fv.render());
    assert_eq!(granted[0].reads, "FileVault recovery keys");
    let warning = granted[0].warning().unwrap();
    assert!(
        warning.starts_with(
            "this token can read FileVault recovery keys; the collector doesn't need that, untick"
        ),
        "{warning}"
    );
    assert!(fv.render().contains(&warning));

    // The simulator's own counters: 8 secret requests (4 per review), every one a GET with
    // the nil device id; no other method, no real device.
    let st = sim.stats();
    let total: u64 = st.secret_requests.values().sum();
    assert_eq!(total, 8, "{:?}", st.secret_requests);
    for req in st.secret_requests.keys() {
        assert!(
            req.starts_with("GET /api/v1/devices/00000000-0000-0000-0000-000000000000/secrets/"),
            "{req}"
        );
    }
    assert_eq!(st.secret_requests.len(), 4, "the four secret endpoints");
}
