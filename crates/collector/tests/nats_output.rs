//! The NATS JetStream output against the machine's real NATS server (127.0.0.1:4222, or
//! `KANDJI_NATS_URL`; `.ci/run` starts it when it is down). Without a server these tests
//! are skipped and say so, unless `KANDJI_REQUIRE_SERVICES=1` (`.ci/run` sets it): then they
//! fail, so in CI they never pass by skipping.
//!
//! Each test uses its own stream and subject prefix, and deletes the stream at the end.

mod common;
mod receivers;

use std::collections::BTreeSet;
use std::time::Duration;

use async_nats::jetstream;
use common::*;
use kandji_collector::outputs::config::{Format, NatsAuth, NatsSpec, SinkKind, SinkSpec};
use kandji_collector::outputs::{self, Output, OutputError, Pacing, SourceInfo};
use receivers::expected_ids;
use tokio_util::sync::CancellationToken;

fn nats_url() -> String {
    std::env::var("KANDJI_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

async fn jetstream(test: &str) -> Option<jetstream::Context> {
    let url = nats_url();
    match async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(&url)
        .await
    {
        Ok(client) => Some(jetstream::new(client)),
        Err(e) => {
            common::backend::missing_service(
                test,
                "NATS",
                &format!("{url}: {e}; start it (see .ci/run) or set KANDJI_NATS_URL"),
            );
            None
        }
    }
}

/// A name no other run uses.
fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}{n:x}{}", std::process::id())
}

fn spec(name: &str, prefix: &str, stream: &str, create: bool) -> SinkSpec {
    SinkSpec {
        name: name.into(),
        // Raw: one message per stored record, so the set compares with the store's.
        format: Format::Raw,
        batch_size: 300,
        kind: SinkKind::Nats(NatsSpec {
            servers: vec![nats_url()],
            subject: format!("{prefix}.{{source}}.{{category}}"),
            stream: Some(stream.into()),
            create_stream: create,
            duplicate_window: Duration::from_secs(600),
            auth: NatsAuth::None,
            timeout: Duration::from_secs(10),
        }),
    }
}

fn fast(max_attempts: Option<usize>) -> Pacing {
    Pacing {
        poll: Duration::from_millis(20),
        min_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(40),
        max_attempts,
    }
}

/// One output's row of `outputs::status`.
async fn output_status(store: &kandji_collector::store::Store, name: &str) -> serde_json::Value {
    let status = outputs::status(store).await.unwrap();
    status
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["output"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no status for output {name}: {status}"))
}

fn info() -> SourceInfo {
    SourceInfo {
        source: "acme".into(),
        tenant: "acme-tenant".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_reaches_the_stream_once_and_a_resend_is_deduplicated() {
    let Some(js) = jetstream("every_record_reaches_the_stream_once").await else {
        return;
    };
    let env = env(sim_config(30, 7)).await;
    cycle(&env, &kandji_collector::streams::StreamName::ALL).await;
    let (stream, prefix) = (unique("KC_"), unique("kc"));
    let out = Output::new(
        env.store.clone(),
        info(),
        spec("bus", &prefix, &stream, true),
        fast(None),
    )
    .unwrap();
    let sd = CancellationToken::new();
    out.drain(&sd).await.unwrap();
    let want = expected_ids(&env.store);
    assert!(
        want.len() > 100,
        "a fleet's worth of records: {}",
        want.len()
    );

    // The stream holds every record once: its count is what the output delivered, and the
    // message ids are the records' stable ids.
    let mut st = js.get_stream(&stream).await.unwrap();
    let n = st.info().await.unwrap().state.messages;
    let delivered = output_status(&env.store, "bus").await["delivered"]
        .as_u64()
        .unwrap();
    assert_eq!(n, delivered, "stream count = the output's delivered count");
    assert_eq!(n as usize, want.len(), "one message per record");
    let mut ids = BTreeSet::new();
    let mut subjects = BTreeSet::new();
    for seq in 1..=n {
        let m = st.get_raw_message(seq).await.unwrap();
        let id = m
            .headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .map(|v| v.as_str().to_string())
            .expect("Nats-Msg-Id");
        let body: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        assert!(body.is_object(), "a JSON record: {body}");
        ids.insert(id);
        subjects.insert(m.subject.to_string());
    }
    assert_eq!(ids, want, "every record, by its stable id");
    for s in &subjects {
        assert!(s.starts_with(&format!("{prefix}.acme.")), "{s}");
    }
    for category in ["inventory", "audit"] {
        assert!(
            subjects.contains(&format!("{prefix}.acme.{category}")),
            "{category}: {subjects:?}"
        );
    }

    // A resend of the same records (what a collector killed after sending and before its
    // offset committed does on restart: here a second output reading the outbox from the
    // start) is acknowledged, and the stream's duplicate window drops every repeat.
    let again = Output::new(
        env.store.clone(),
        info(),
        spec("bus-again", &prefix, &stream, true),
        fast(None),
    )
    .unwrap();
    again.drain(&sd).await.unwrap();
    let resent = output_status(&env.store, "bus-again").await["delivered"]
        .as_u64()
        .unwrap();
    assert_eq!(resent, n, "the resend delivered everything again");
    assert_eq!(
        st.info().await.unwrap().state.messages,
        n,
        "and the stream kept one copy of each"
    );
    js.delete_stream(&stream).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_stream_holds_the_outbox_back_and_dead_letters_nothing() {
    let Some(_js) = jetstream("a_missing_stream_holds_the_outbox_back").await else {
        return;
    };
    let env = env(sim_config(5, 7)).await;
    cycle(&env, &[kandji_collector::streams::StreamName::Devices]).await;
    let (stream, prefix) = (unique("KC_MISSING_"), unique("kcm"));
    let out = Output::new(
        env.store.clone(),
        info(),
        spec("bus", &prefix, &stream, false),
        fast(Some(2)),
    )
    .unwrap();
    let sd = CancellationToken::new();
    let err = match out.drain(&sd).await {
        Err(OutputError::Sink(e)) => e,
        other => panic!("a missing stream must fail the send: {other:?}"),
    };
    assert!(err.is_transient(), "{err}");
    assert!(
        err.to_string().contains(&stream) && err.to_string().contains("create_stream"),
        "says which stream and what to do: {err}"
    );
    let s = output_status(&env.store, "bus").await;
    assert_eq!(s["delivered"], 0);
    assert_eq!(
        s["dead_letters"], 0,
        "a misconfiguration never drains into dead letters"
    );
    assert!(s["pending"].as_u64().unwrap() > 0, "the records wait: {s}");
}

/// The real binary (`run --no-console`) delivers to JetStream and is killed with SIGKILL
/// three times while delivering, then restarted: every record arrives, and any batch it
/// resends after a kill (published, its offset not yet committed) is dropped by the stream's
/// duplicate window, so the stream holds each record exactly once. (Whether a kill lands
/// between a publish and its offset is up to timing; the resend itself is covered
/// deterministically by the test above.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_while_publishing_leaves_each_record_once_in_the_stream() {
    use std::process::{Command, Stdio};
    let Some(js) = jetstream("kill_dash_nine_while_publishing").await else {
        return;
    };
    let mut cfg = sim_config(60, 33);
    cfg.churn = kandji_sim::Churn::none();
    let sim = kandji_sim::spawn(cfg).await.expect("sim");
    let dir = tempfile::tempdir().expect("dir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, sim.token()).expect("token");
    let (stream, prefix) = (unique("KC_KILL_"), unique("kck"));
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[[sources]]\nname = \"acme\"\nendpoint = {:?}\ntoken_file = {token_file:?}\n\
             allow_custom_endpoint = true\nper_second = 50\n\
             [[sources.sinks]]\ntype = \"nats\"\nname = \"bus\"\nformat = \"raw\"\nurl = {:?}\n\
             subject = \"{prefix}.{{source}}.{{category}}\"\nstream = {stream:?}\ncreate_stream = true\n\
             duplicate_window = \"10m\"\nbatch_size = 40\n",
            dir.path().join("data"),
            sim.base_url(),
            nats_url(),
        ),
    )
    .expect("config");
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_kandji-collector"))
            .args([
                "--config",
                &config.display().to_string(),
                "run",
                "--no-console",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn")
    };
    let messages = |js: jetstream::Context, name: String| async move {
        match js.get_stream(&name).await {
            Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
            Err(_) => 0,
        }
    };
    let mut last = 0;
    for _ in 0..3 {
        let mut child = spawn();
        for _ in 0..3000 {
            if messages(js.clone(), stream.clone()).await > last + 40 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");
        last = messages(js.clone(), stream.clone()).await;
    }
    assert!(last > 0, "it published before the kills");
    // Restart and let it catch up: the stream's message ids cover every record.
    let mut child = spawn();
    let data = dir.path().join("data");
    let mut want = BTreeSet::new();
    let mut caught_up = false;
    for _ in 0..3000 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let Ok(store) = kandji_collector::store::Store::open_read_only(&data) else {
            continue;
        };
        let ready = count(
            &store,
            "SELECT COUNT(*) FROM stream_status WHERE source = 'acme' AND last_success_at IS NOT NULL",
        ) >= 10;
        want = expected_ids(&store);
        if ready && messages(js.clone(), stream.clone()).await as usize >= want.len() {
            caught_up = true;
            break;
        }
    }
    child.kill().expect("kill");
    child.wait().expect("wait");
    assert!(caught_up, "the restarted collector caught up");
    let mut st = js.get_stream(&stream).await.unwrap();
    let n = st.info().await.unwrap().state.messages;
    let mut ids = Vec::new();
    for seq in 1..=n {
        let m = st.get_raw_message(seq).await.unwrap();
        ids.push(
            m.headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .map(|v| v.as_str().to_string())
                .expect("Nats-Msg-Id"),
        );
    }
    let distinct: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(distinct.len(), ids.len(), "no record twice in the stream");
    assert!(
        distinct.is_superset(&want),
        "missing {} of {} records",
        want.difference(&distinct).count(),
        want.len()
    );
    js.delete_stream(&stream).await.unwrap();
    sim.shutdown().await;
}
