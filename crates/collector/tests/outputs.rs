//! Outputs against local receivers (axum on 127.0.0.1:0): an OTLP/HTTP logs receiver that
//! decodes with the opentelemetry-proto types, a webhook receiver that checks the HMAC and
//! the batches, and at-least-once delivery across a receiver outage, an output restart and
//! permanent rejections (dead letters). The kill -9 case is in `outputs_crash.rs`.

mod common;

mod receivers;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use kandji_collector::outputs::config::{Format, OtlpEncoding, SinkKind, SinkSpec};
use kandji_collector::outputs::{self, Output, Pacing, SourceInfo};
use kandji_collector::store::Store;
use opentelemetry_proto::tonic::common::v1::any_value;
use receivers::*;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

fn webhook_spec(base: &str, name: &str, format: Format, batch: usize) -> SinkSpec {
    SinkSpec {
        name: name.into(),
        format,
        batch_size: batch,
        kind: SinkKind::Webhook {
            url: format!("{base}/hook").parse().unwrap(),
            gzip: true,
            auth: Some((
                "Authorization".into(),
                "Bearer hook-token".to_string().into(),
            )),
            hmac_secret: Some(SECRET.to_string().into()),
            timeout: Duration::from_secs(10),
        },
    }
}

fn otlp_spec(base: &str, encoding: OtlpEncoding, gzip: bool) -> SinkSpec {
    SinkSpec {
        name: format!("otlp-{encoding:?}"),
        format: Format::Ocsf,
        batch_size: 200,
        kind: SinkKind::Otlp {
            endpoint: format!("{base}/v1/logs").parse().unwrap(),
            encoding,
            gzip,
            headers: vec![("x-scope".into(), "kandji".into())],
            secret_headers: vec![],
            timeout: Duration::from_secs(10),
        },
    }
}

fn fast() -> Pacing {
    Pacing {
        poll: Duration::from_millis(20),
        min_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(40),
        max_attempts: None,
    }
}

fn info() -> SourceInfo {
    SourceInfo {
        source: "acme".into(),
        tenant: "acme-tenant".into(),
    }
}

async fn collected(devices: usize) -> Env {
    let env = env(sim_config(devices, 7)).await;
    cycle(&env, &kandji_collector::streams::StreamName::ALL).await;
    env
}

fn outbox_len(store: &Store) -> i64 {
    count(store, "SELECT COUNT(*) FROM outbox WHERE source = 'acme'")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_batches_are_signed_gzipped_and_complete() {
    let env = collected(30).await;
    let (rx, base) = receiver().await;
    let out = Output::new(
        env.store.clone(),
        info(),
        webhook_spec(&base, "hook", Format::Raw, 250),
        fast(),
    )
    .unwrap();
    let sd = CancellationToken::new();
    let n = out.drain(&sd).await.unwrap();
    assert!(n as i64 >= outbox_len(&env.store) && n > 0);
    let got = {
        let st = rx.state.lock().unwrap();
        assert_eq!(st.bad_signatures, 0);
        assert!(st.batches.iter().all(|b| *b <= 250), "{:?}", st.batches);
        assert!(st.batches.len() > 1, "several batches");
        let got: BTreeSet<String> = st.ids.iter().cloned().collect();
        assert_eq!(got.len(), st.ids.len(), "no repeats without failures");
        assert_eq!(got, expected_ids(&env.store), "every record, once");
        let h = &st.headers[0];
        assert_eq!(h.get("content-encoding").unwrap(), "gzip");
        assert!(h.get("x-kandji-batch").is_some());
        got
    };
    // Offsets and status.
    let status = outputs::status(&env.store).await.unwrap();
    let s = &status[0];
    assert_eq!(s["output"], "hook");
    assert_eq!(s["pending"], 0);
    assert_eq!(s["dead_letters"], 0);
    assert_eq!(s["delivered"].as_i64().unwrap() as usize, got.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ocsf_webhook_bodies_are_ocsf() {
    let env = collected(10).await;
    let (rx, base) = receiver().await;
    let out = Output::new(
        env.store.clone(),
        info(),
        webhook_spec(&base, "ocsf", Format::Ocsf, 500),
        fast(),
    )
    .unwrap();
    let sd = CancellationToken::new();
    out.drain(&sd).await.unwrap();
    assert!(!rx.state.lock().unwrap().ids.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_protobuf_and_json_decode_with_the_proto_types() {
    let env = collected(15).await;
    for (encoding, gzip) in [(OtlpEncoding::Protobuf, true), (OtlpEncoding::Json, false)] {
        let (rx, base) = receiver().await;
        let out = Output::new(
            env.store.clone(),
            info(),
            otlp_spec(&base, encoding, gzip),
            fast(),
        )
        .unwrap();
        let sd = CancellationToken::new();
        out.drain(&sd).await.unwrap();
        let st = rx.state.lock().unwrap();
        assert!(!st.otlp.is_empty(), "{encoding:?}");
        assert_eq!(st.headers[0].get("x-scope").unwrap(), "kandji");
        let mut classes = BTreeSet::new();
        for req in &st.otlp {
            let rl = &req.resource_logs[0];
            let res: BTreeMap<String, String> = rl
                .resource
                .as_ref()
                .unwrap()
                .attributes
                .iter()
                .map(|a| {
                    let v = match a.value.as_ref().and_then(|v| v.value.as_ref()) {
                        Some(any_value::Value::StringValue(s)) => s.clone(),
                        other => format!("{other:?}"),
                    };
                    (a.key.clone(), v)
                })
                .collect();
            assert_eq!(res["kandji.source"], "acme");
            assert_eq!(res["kandji.tenant"], "acme-tenant");
            for lr in &rl.scope_logs[0].log_records {
                let attr = |k: &str| {
                    lr.attributes
                        .iter()
                        .find(|a| a.key == k)
                        .and_then(|a| a.value.as_ref())
                        .and_then(|v| v.value.clone())
                };
                assert!(attr("kandji.category").is_some());
                let Some(any_value::Value::IntValue(class)) = attr("ocsf.class_uid") else {
                    panic!("ocsf.class_uid");
                };
                classes.insert(class);
                let Some(any_value::Value::StringValue(body)) =
                    lr.body.as_ref().and_then(|b| b.value.clone())
                else {
                    panic!("string body");
                };
                let ev: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(ev["class_uid"].as_i64(), Some(class));
                assert_eq!(lr.time_unix_nano, ev["time"].as_u64().unwrap() * 1_000_000);
                let Some(any_value::Value::StringValue(id)) = attr("kandji.event_id") else {
                    panic!("kandji.event_id");
                };
                assert_eq!(ev["metadata"]["uid"], id.as_str());
                if ev.pointer("/device/uid").is_some() && class == 5001 {
                    assert!(attr("kandji.device_id").is_some());
                }
            }
        }
        assert!(
            classes.contains(&5001) && classes.contains(&5020),
            "{classes:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_outage_then_recovery_delivers_everything() {
    let env = collected(20).await;
    let (rx, base) = receiver().await;
    rx.fail_next.store(7, Ordering::SeqCst);
    let out = Output::new(
        env.store.clone(),
        info(),
        webhook_spec(&base, "hook", Format::Raw, 100),
        fast(),
    )
    .unwrap();
    let tx = CancellationToken::new();
    let task = tokio::spawn(out.run(tx.clone()));
    let want = expected_ids(&env.store);
    wait_for(|| {
        rx.state
            .lock()
            .unwrap()
            .ids
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>()
            == want
    })
    .await;
    tx.cancel();
    task.await.unwrap();
    assert_eq!(
        rx.fail_next.load(Ordering::SeqCst),
        0,
        "the outage happened"
    );
}

async fn wait_for(mut f: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached in 20 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_restart_resumes_from_its_offset() {
    let env = collected(25).await;
    let (rx, base) = receiver().await;
    let want = expected_ids(&env.store);
    // First run: stopped after a few batches.
    let out = Output::new(
        env.store.clone(),
        info(),
        webhook_spec(&base, "hook", Format::Raw, 50),
        fast(),
    )
    .unwrap();
    let tx = CancellationToken::new();
    let task = tokio::spawn(out.run(tx.clone()));
    wait_for(|| rx.state.lock().unwrap().batches.len() >= 3).await;
    tx.cancel();
    task.await.unwrap();
    let first = rx.state.lock().unwrap().ids.len();
    assert!(
        first < want.len(),
        "stopped midway ({first} of {})",
        want.len()
    );
    // New records arrive while it is down: the collector keeps writing.
    env.sim.advance(Duration::from_secs(6 * 3600));
    cycle(&env, &kandji_collector::streams::StreamName::ALL).await;
    let want = expected_ids(&env.store);
    // Restart: a new output with the same name continues.
    let out = Output::new(
        env.store.clone(),
        info(),
        webhook_spec(&base, "hook", Format::Raw, 50),
        fast(),
    )
    .unwrap();
    let sd = CancellationToken::new();
    out.drain(&sd).await.unwrap();
    let st = rx.state.lock().unwrap();
    let got: BTreeSet<String> = st.ids.iter().cloned().collect();
    assert!(
        got.is_superset(&want),
        "missing {:?}",
        want.difference(&got).take(5).collect::<Vec<_>>()
    );
    // Repeats carry the id of a version already delivered (a row rewritten while the output
    // was down has older outbox entries that read its current version): receivers drop them.
    assert!(st.ids.len() >= got.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_rejections_are_dead_lettered_and_the_rest_delivered() {
    let env = collected(10).await;
    let (rx, base) = receiver().await;
    let want = expected_ids(&env.store);
    let bad: BTreeSet<String> = want.iter().take(3).cloned().collect();
    *rx.reject.lock().unwrap() = bad.clone();
    let out = Output::new(
        env.store.clone(),
        info(),
        webhook_spec(&base, "hook", Format::Raw, 100),
        fast(),
    )
    .unwrap();
    let sd = CancellationToken::new();
    out.drain(&sd).await.unwrap();
    let got: BTreeSet<String> = rx.state.lock().unwrap().ids.iter().cloned().collect();
    assert_eq!(got, want.difference(&bad).cloned().collect());
    let status = outputs::status(&env.store).await.unwrap();
    assert_eq!(status[0]["dead_letters"], 3);
    assert_eq!(status[0]["dead_letters_total"], 3);
    let dl = env.store.dead_letters("acme", "hook", 10).await.unwrap();
    let dl_ids: BTreeSet<String> = dl
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["record_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(dl_ids, bad);
    assert_eq!(dl[0]["status"], 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_rotates_by_size_and_writes_every_record() {
    let env = collected(10).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.ndjson");
    let spec = SinkSpec {
        name: "file".into(),
        format: Format::Ocsf,
        batch_size: 100,
        kind: SinkKind::Ndjson {
            path: Some(path.clone()),
            rotate_bytes: 200_000,
            rotate_every: None,
            keep_files: 1000,
        },
    };
    let out = Output::new(env.store.clone(), info(), spec, fast()).unwrap();
    let sd = CancellationToken::new();
    out.drain(&sd).await.unwrap();
    let mut lines = 0;
    let mut files = 0;
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let p = e.unwrap().path();
        files += 1;
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.len() <= 200_000 + 100 * 4096, "rotated near the limit");
        for l in text.lines() {
            let v: Value = serde_json::from_str(l).unwrap();
            assert!(v["class_uid"].is_i64());
            lines += 1;
        }
    }
    assert!(files > 1, "rotated");
    assert!(lines > 0);
}

#[test]
fn sink_config_errors_name_the_field() {
    let bad = [
        ("type = \"kafka\"", "sources[0].sinks[0].type"),
        ("type = \"webhook\"", "sources[0].sinks[0].url"),
        (
            "type = \"webhook\"\nurl = \"ftp://x\"",
            "sources[0].sinks[0].url",
        ),
        (
            "type = \"webhook\"\nurl = \"http://x\"\nformat = \"xml\"",
            "sources[0].sinks[0].format",
        ),
        (
            "type = \"ndjson\"\npath = \"-\"\nrotate_every = \"soon\"",
            "sources[0].sinks[0].rotate_every",
        ),
        (
            "type = \"otlp\"\nendpoint = \"http://x/v1/logs\"\nbogus = 1",
            "sources[0].sinks[0].bogus",
        ),
        (
            "type = \"webhook\"\nurl = \"http://x\"\nauth_header = \"X-Key\"",
            "sources[0].sinks[0].auth_env",
        ),
        (
            "type = \"ndjson\"\npath = \"-\"\nbatch_size = 0",
            "sources[0].sinks[0].batch_size",
        ),
    ];
    for (toml_text, field) in bad {
        let v: toml::Value = toml::from_str(toml_text).unwrap();
        let errs = kandji_collector::outputs::config::problems(0, &[v]);
        assert_eq!(errs.len(), 1, "{toml_text}");
        let msg = errs[0].to_string();
        assert!(msg.starts_with(field), "{toml_text}: {msg}");
    }
    let ok: toml::Value =
        toml::from_str("type = \"ndjson\"\npath = \"-\"\nformat = \"raw\"").unwrap();
    assert!(kandji_collector::outputs::config::problems(0, &[ok]).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_format_ocsf_writes_one_ocsf_event_per_line() {
    let env = collected(8).await;
    let run = |stream: &str, format: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kandji-collector"))
            .args(["--data-dir", &env.dir.path().display().to_string()])
            .args(["--config", "/nonexistent.toml"])
            .args([
                "export", "--source", "acme", "--stream", stream, "--format", format,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    let devices = count(
        &env.store,
        "SELECT COUNT(*) FROM devices WHERE removed_at IS NULL",
    );
    let ocsf = run("devices", "ocsf");
    assert_eq!(ocsf.len() as i64, devices);
    assert!(
        ocsf.iter()
            .all(|e| e["class_uid"] == 5001 && e["metadata"]["version"] == "1.8.0")
    );
    let raw = run("devices", "ndjson");
    assert_eq!(raw.len() as i64, devices);
    assert!(
        raw.iter()
            .all(|e| e.get("class_uid").is_none() && e["device_id"].is_string())
    );
    let audit = run("audit_events", "ocsf");
    assert!(!audit.is_empty());
    assert!(
        audit
            .iter()
            .all(|e| [3001, 3004, 2002, 2004].contains(&e["class_uid"].as_i64().unwrap()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_failures_are_retried_not_dead_lettered() {
    let env = collected(8).await;
    let (rx, base) = receiver().await;
    // A revoked or wrong token answers 401 until the receiver is fixed.
    rx.fail_status.store(401, Ordering::SeqCst);
    rx.fail_next.store(5, Ordering::SeqCst);
    let out = Output::new(
        env.store.clone(),
        info(),
        webhook_spec(&base, "hook", Format::Raw, 200),
        fast(),
    )
    .unwrap();
    let sd = CancellationToken::new();
    out.drain(&sd).await.unwrap();
    let got: BTreeSet<String> = rx.state.lock().unwrap().ids.iter().cloned().collect();
    assert_eq!(got, expected_ids(&env.store));
    let status = outputs::status(&env.store).await.unwrap();
    assert_eq!(status[0]["dead_letters"], 0);
}

/// Every record collected from the simulator (two cycles, so change events exist) maps to an
/// OCSF event whose base and class required attributes, and whose objects' required and
/// at-least-one attributes, are present (OCSF 1.8.0 definitions vendored in `crates/ocsf`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_collected_record_maps_to_valid_ocsf() {
    // FileVault toggles often enough that a day surely has one (class 5019), whichever
    // devices of 25 are Macs.
    let mut cfg = sim_config(25, 7);
    cfg.churn.filevault_toggles = 400.0;
    let env = env(cfg).await;
    cycle(&env, &kandji_collector::streams::StreamName::ALL).await;
    env.sim.advance(Duration::from_secs(24 * 3600));
    cycle(&env, &kandji_collector::streams::StreamName::ALL).await;
    let schema: Value =
        serde_json::from_str(include_str!("../../ocsf/tests/schema/ocsf-1.8.0.json")).unwrap();
    let (records, _, _) = kandji_collector::outputs::outbox::read_batch(
        &env.store,
        &info(),
        Format::Ocsf,
        kandji_collector::store::OutboxPos::default(),
        10_000_000,
    )
    .await
    .unwrap();
    fn present(v: &Value, k: &str) -> bool {
        !matches!(v.get(k), None | Some(Value::Null))
            && v.get(k) != Some(&Value::String(String::new()))
    }
    fn check(schema: &Value, v: &Value, errors: &mut Vec<String>) {
        let Some(obj) = v.as_object() else { return };
        for (k, child) in obj {
            if k == "unmapped" {
                continue;
            }
            let Some(kind) = schema["attribute_objects"].get(k).and_then(Value::as_str) else {
                continue;
            };
            let items: Vec<&Value> = match child {
                Value::Array(a) => a.iter().collect(),
                c => vec![c],
            };
            for item in items {
                let def = &schema["objects"][kind];
                for r in def["required"].as_array().into_iter().flatten() {
                    if !present(item, r.as_str().unwrap()) {
                        errors.push(format!("{kind} requires {r}: {item}"));
                    }
                }
                if let Some(any) = def["at_least_one"].as_array()
                    && !any.iter().any(|k| present(item, k.as_str().unwrap()))
                {
                    errors.push(format!("{kind} needs one of {any:?}: {item}"));
                }
                check(schema, item, errors);
            }
        }
    }
    let mut classes = BTreeSet::new();
    let mut errors = Vec::new();
    for r in &records {
        let ev = &r.body;
        let class = ev["class_uid"].as_i64().unwrap();
        classes.insert(class);
        let def = &schema["classes"][class.to_string()];
        assert!(def.is_object(), "class {class}");
        for req in schema["base_event"]["required"]
            .as_array()
            .unwrap()
            .iter()
            .chain(def["required"].as_array().unwrap())
        {
            if !present(ev, req.as_str().unwrap()) {
                errors.push(format!("{class} requires {req}: {}", r.kind));
            }
        }
        assert_eq!(
            ev["type_uid"].as_i64().unwrap(),
            class * 100 + ev["activity_id"].as_i64().unwrap()
        );
        check(&schema, ev, &mut errors);
    }
    errors.sort();
    errors.dedup();
    assert!(
        errors.is_empty(),
        "{}",
        errors[..errors.len().min(20)].join("\n")
    );
    for c in [5001, 5002, 5003, 5019, 5020, 2002, 2003, 2004, 3001, 3004] {
        assert!(classes.contains(&c), "class {c} among {classes:?}");
    }
    println!("{} records, classes {classes:?}", records.len());
}
