//! The export download (`/__sim/export/<id>.csv`): S3-like, streamed CSV.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Response, StatusCode};
use bytes::Bytes;
use serde_json::Value;

use crate::prism::{self, Filter, Query};
use crate::server::{Shared, lock};

fn s3_error(status: StatusCode, code: &str, msg: &str) -> Response<Body> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{msg}</Message><RequestId>SIMULATED</RequestId></Error>"
    );
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        axum::http::HeaderValue::from_static("application/xml"),
    );
    r
}

fn cell(v: &Value, buf: &mut String) {
    use std::fmt::Write;
    buf.clear();
    match v {
        Value::Null => {}
        Value::String(s) => buf.push_str(s),
        Value::Bool(b) => buf.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(buf, "{n}");
        }
        other => {
            let _ = write!(buf, "{other}");
        }
    }
}

/// Write rows as CSV records (no header) into a buffer. `cols` must be in key order (a sorted
/// subsequence of the row keys, as `prism::columns` gives them), so each row is one merge walk.
pub fn csv_rows(cols: &[String], rows: &[Value]) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    let mut buf = String::new();
    let null = Value::Null;
    for r in rows {
        let Some(map) = r.as_object() else { continue };
        let mut it = map.iter().peekable();
        for c in cols {
            let mut v = &null;
            while let Some((k, val)) = it.peek() {
                match k.as_str().cmp(c.as_str()) {
                    std::cmp::Ordering::Less => {
                        it.next();
                    }
                    std::cmp::Ordering::Equal => {
                        v = val;
                        it.next();
                        break;
                    }
                    std::cmp::Ordering::Greater => break,
                }
            }
            let _ = match v {
                Value::String(s) => w.write_field(s.as_bytes()),
                _ => {
                    cell(v, &mut buf);
                    w.write_field(buf.as_bytes())
                }
            };
        }
        let _ = w.write_record(None::<&[u8]>);
    }
    w.into_inner().unwrap_or_default()
}

pub async fn download(
    sh: Arc<Shared>,
    file: String,
    query: String,
    headers: HeaderMap,
) -> Response<Body> {
    if headers.contains_key("authorization") {
        return s3_error(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified",
        );
    }
    let id = file.trim_end_matches(".csv").to_owned();
    let Some(e) = lock(&sh.exports).get(&id).cloned() else {
        return s3_error(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "The specified key does not exist.",
        );
    };
    let sig = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "X-Amz-Signature")
        .map(|(_, v)| v.into_owned());
    if lock(&sh.faults).faults.expired_export_urls {
        return s3_error(StatusCode::FORBIDDEN, "AccessDenied", "Request has expired");
    }
    if sig.as_deref() != Some(e.signature.as_str()) {
        return s3_error(
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        );
    }
    let strs = |k: &str| -> Vec<String> {
        e.args[k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let filter = Filter::from_value(&e.args["filter"]).unwrap_or_default();
    let q = Query {
        category: e.category.clone(),
        blueprint_ids: strs("blueprint_ids"),
        device_families: strs("device_families"),
        filter_raw: e.args["filter"].to_string(),
        filter,
    };
    let wanted = strs("columns");
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let sh2 = sh.clone();
    tokio::task::spawn_blocking(move || {
        let cols = {
            let t = sh2.tenant();
            let all = if q.category == "ms_compliance" {
                t.devices
                    .first()
                    .map(|d| match prism::ms_compliance_row(&t, d) {
                        Value::Object(o) => o.keys().cloned().collect(),
                        _ => Vec::new(),
                    })
                    .unwrap_or_default()
            } else {
                prism::columns(&t, &q.category)
            };
            if wanted.is_empty() {
                all
            } else {
                all.into_iter()
                    .filter(|c| wanted.contains(c))
                    .collect::<Vec<_>>()
            }
        };
        let mut cols = cols;
        cols.sort();
        let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
        let _ = w.write_record(&cols);
        let header = w.into_inner().unwrap_or_default();
        if tx.blocking_send(Bytes::from(header)).is_err() {
            return;
        }
        let since = q.filter.changed_since();
        let ids = q.prefilter_ids();
        let mut after: Option<u32> = None;
        loop {
            let buf = {
                let t = sh2.tenant();
                let start = after
                    .map(|a| t.devices.partition_point(|d| d.idx <= a))
                    .unwrap_or(0);
                let chunk = &t.devices[start..(start + 50).min(t.devices.len())];
                if chunk.is_empty() {
                    break;
                }
                after = chunk.last().map(|d| d.idx);
                // Render and encode one device at a time: small, reused allocations.
                let mut out = Vec::with_capacity(1 << 20);
                for d in chunk {
                    if !q.device_ok(&t, d, since, &ids) {
                        continue;
                    }
                    let rows = if q.category == "ms_compliance" {
                        vec![prism::ms_compliance_row(&t, d)]
                    } else {
                        let mut r = prism::rows(&t, &q.category, d);
                        if !q.filter.is_empty() {
                            r.retain(|x| q.filter.matches(x));
                        }
                        r
                    };
                    out.extend_from_slice(&csv_rows(&cols, &rows));
                }
                out
            };
            if !buf.is_empty() && tx.blocking_send(Bytes::from(buf)).is_err() {
                return;
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<Bytes, std::io::Error>(b), rx))
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        "content-type",
        axum::http::HeaderValue::from_static("text/csv"),
    );
    r
}
