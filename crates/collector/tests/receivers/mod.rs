//! Local receivers for the output tests (axum on 127.0.0.1:0): a webhook receiver that checks
//! the HMAC signature and the auth header and records batches, and an OTLP/HTTP logs receiver
//! that decodes with the opentelemetry-proto types. Both can simulate an outage (503s) and
//! permanent rejections (400 for given ids).
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::Read;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use kandji_collector::store::Store;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message;
use serde_json::Value;

pub const SECRET: &str = "s3cret-hmac";

#[derive(Default)]
pub struct Recv {
    /// Every record id received, in order (repeats included).
    pub ids: Vec<String>,
    pub batches: Vec<usize>,
    pub otlp: Vec<ExportLogsServiceRequest>,
    pub bad_signatures: usize,
    pub headers: Vec<HeaderMap>,
}

#[derive(Clone, Default)]
pub struct Receiver {
    pub state: Arc<Mutex<Recv>>,
    /// Answer 503 to this many more requests.
    pub fail_next: Arc<AtomicU32>,
    /// Reject (400) any batch holding one of these ids.
    pub reject: Arc<Mutex<BTreeSet<String>>>,
    /// Answer webhook requests after this many milliseconds.
    pub delay_ms: Arc<AtomicU32>,
    /// The status of the `fail_next` answers (503 when 0).
    pub fail_status: Arc<AtomicU32>,
}

fn gunzip(headers: &HeaderMap, body: &[u8]) -> Vec<u8> {
    if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body)
            .read_to_end(&mut out)
            .expect("gzip");
        out
    } else {
        body.to_vec()
    }
}

fn record_id(v: &Value) -> String {
    v.pointer("/metadata/uid")
        .or_else(|| v.get("id"))
        .and_then(Value::as_str)
        .expect("every record has an id")
        .to_string()
}

async fn webhook(State(rx): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let delay = rx.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(u64::from(delay))).await;
    }
    if rx
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return match rx.fail_status.load(Ordering::SeqCst) {
            0 => StatusCode::SERVICE_UNAVAILABLE,
            code => StatusCode::from_u16(code as u16).unwrap(),
        };
    }
    let expected = kandji_collector::outputs::webhook::sign(SECRET.as_bytes(), &body);
    let sig = headers
        .get("x-kandji-signature-256")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mut st = rx.state.lock().unwrap();
    if sig != expected {
        st.bad_signatures += 1;
        return StatusCode::UNAUTHORIZED;
    }
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer hook-token") {
        return StatusCode::FORBIDDEN;
    }
    let items: Vec<Value> = serde_json::from_slice(&gunzip(&headers, &body)).expect("JSON array");
    let ids: Vec<String> = items.iter().map(record_id).collect();
    if ids.iter().any(|i| rx.reject.lock().unwrap().contains(i)) {
        return StatusCode::BAD_REQUEST;
    }
    st.batches.push(items.len());
    st.ids.extend(ids);
    st.headers.push(headers);
    StatusCode::OK
}

async fn otlp(State(rx): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if rx
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let raw = gunzip(&headers, &body);
    let req = match headers.get("content-type").and_then(|v| v.to_str().ok()) {
        Some("application/x-protobuf") => {
            ExportLogsServiceRequest::decode(raw.as_slice()).expect("protobuf")
        }
        Some("application/json") => serde_json::from_slice(&raw).expect("OTLP JSON"),
        other => panic!("content-type {other:?}"),
    };
    let mut st = rx.state.lock().unwrap();
    for rl in &req.resource_logs {
        for sl in &rl.scope_logs {
            st.batches.push(sl.log_records.len());
            for lr in &sl.log_records {
                let id = lr
                    .attributes
                    .iter()
                    .find(|a| a.key == "kandji.event_id")
                    .and_then(|a| a.value.as_ref())
                    .and_then(|v| match &v.value {
                        Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                        _ => None,
                    })
                    .expect("kandji.event_id");
                st.ids.push(id);
            }
        }
    }
    st.headers.push(headers);
    st.otlp.push(req);
    StatusCode::OK
}

pub async fn receiver() -> (Receiver, String) {
    let rx = Receiver::default();
    let app = axum::Router::new()
        .route("/hook", post(webhook))
        .route("/v1/logs", post(otlp))
        .with_state(rx.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (rx, format!("http://{addr}"))
}

/// Ids (raw form) of the current version of every row and event of source `acme`: what every
/// output must have received once caught up.
pub fn expected_ids(store: &Store) -> BTreeSet<String> {
    let c = rusqlite::Connection::open_with_flags(
        store.path(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut out = BTreeSet::new();
    for t in kandji_collector::store::tables::ALL {
        let mut st = c
            .prepare(&format!(
                "SELECT key, hash, removed_at FROM {} WHERE source = 'acme'",
                t.name()
            ))
            .unwrap();
        let rows: Vec<(String, Option<i64>, Option<i64>)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for (k, h, removed_at) in rows {
            // The store derives an app install's hash (the view shows NULL): ask it.
            let h = h.unwrap_or_else(|| {
                tokio::task::block_in_place(|| {
                    tokio::runtime::Handle::current().block_on(async {
                        store
                            .inventory_row("acme", t, &k)
                            .await
                            .unwrap()
                            .expect("row")
                            .hash
                    })
                })
            });
            out.insert(ocsf::inventory_uid("acme", t.name(), &k, h, removed_at));
        }
    }
    let mut st = c
        .prepare("SELECT stream, uid, hash FROM events WHERE source = 'acme'")
        .unwrap();
    let rows = st
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .unwrap();
    for r in rows {
        let (s, u, h) = r.unwrap();
        out.insert(ocsf::record_uid("acme", &s, &u, h));
    }
    out
}
