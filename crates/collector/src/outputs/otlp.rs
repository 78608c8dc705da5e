//! OTLP/HTTP logs output: each batch is one `ExportLogsServiceRequest` (protobuf or JSON),
//! optionally gzip'ed, to any OpenTelemetry collector's `/v1/logs`.
//!
//! One record is one `LogRecord`: the resource carries the source and tenant
//! (`kandji.source`, `kandji.tenant`, `service.name`), the attributes carry the category,
//! OCSF class, device and event id (`kandji.category`, `ocsf.class_uid`, `kandji.device_id`,
//! `kandji.event_id` — the stable id receivers dedupe on — and `kandji.kind`), the body is
//! the OCSF or raw JSON as a string, and the timestamp is the event time.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use secrecy::{ExposeSecret, SecretString};

use super::outbox::{OutRecord, SourceInfo};
use super::{SinkError, classify, gzip, http_client};
use crate::config::sinks::OtlpEncoding;

pub struct OtlpSink {
    client: reqwest::Client,
    endpoint: url::Url,
    encoding: OtlpEncoding,
    gzip: bool,
    headers: Vec<(String, String)>,
    secret_headers: Vec<(String, SecretString)>,
    info: SourceInfo,
}

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.to_string())
}

/// OTel severity number (1–24) from an OCSF severity id.
fn severity(id: i64) -> (i32, &'static str) {
    match id {
        1 => (9, "INFO"),
        2 => (10, "INFO2"),
        3 => (13, "WARN"),
        4 => (17, "ERROR"),
        5 => (21, "FATAL"),
        6 => (24, "FATAL4"),
        _ => (0, "UNSPECIFIED"),
    }
}

/// The request for a batch.
pub fn request(info: &SourceInfo, records: &[OutRecord], now_ns: u64) -> ExportLogsServiceRequest {
    let logs = records
        .iter()
        .map(|r| {
            let (num, text) = severity(r.severity_id);
            let mut attributes = vec![
                kv("kandji.category", s(&r.category)),
                kv("kandji.kind", s(&r.kind)),
                kv("kandji.event_id", s(&r.id)),
                kv("kandji.record_key", s(&r.record_key)),
            ];
            if let Some(c) = r.class_uid {
                attributes.push(kv("ocsf.class_uid", any_value::Value::IntValue(c)));
            }
            if let Some(d) = &r.device_id {
                attributes.push(kv("kandji.device_id", s(d)));
            }
            LogRecord {
                time_unix_nano: u64::try_from(r.time_ms).unwrap_or(0) * 1_000_000,
                observed_time_unix_nano: now_ns,
                severity_number: num,
                severity_text: text.to_string(),
                body: Some(AnyValue {
                    value: Some(s(&r.body.to_string())),
                }),
                attributes,
                event_name: r.kind.clone(),
                ..Default::default()
            }
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", s("kandji-collector")),
                    kv("kandji.source", s(&info.source)),
                    kv("kandji.tenant", s(&info.tenant)),
                ],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "kandji-collector".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                log_records: logs,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

impl OtlpSink {
    pub fn new(
        info: SourceInfo,
        endpoint: url::Url,
        encoding: OtlpEncoding,
        gzip: bool,
        headers: Vec<(String, String)>,
        secret_headers: Vec<(String, SecretString)>,
        timeout: std::time::Duration,
    ) -> Result<OtlpSink, SinkError> {
        Ok(OtlpSink {
            client: http_client(timeout)?,
            endpoint,
            encoding,
            gzip,
            headers,
            secret_headers,
            info,
        })
    }

    pub async fn send(&self, records: &[OutRecord]) -> Result<(), SinkError> {
        let now_ns = u64::try_from(crate::store::now_ms()).unwrap_or(0) * 1_000_000;
        let req = request(&self.info, records, now_ns);
        let (payload, content_type) = match self.encoding {
            OtlpEncoding::Protobuf => (req.encode_to_vec(), "application/x-protobuf"),
            OtlpEncoding::Json => (
                serde_json::to_vec(&req).map_err(|e| SinkError::Permanent {
                    status: None,
                    message: e.to_string(),
                })?,
                "application/json",
            ),
        };
        let body = if self.gzip { gzip(&payload)? } else { payload };
        let mut r = self
            .client
            .post(self.endpoint.clone())
            .header(reqwest::header::CONTENT_TYPE, content_type);
        if self.gzip {
            r = r.header(reqwest::header::CONTENT_ENCODING, "gzip");
        }
        for (k, v) in &self.headers {
            r = r.header(k.as_str(), v.as_str());
        }
        for (k, v) in &self.secret_headers {
            let mut hv =
                reqwest::header::HeaderValue::from_str(v.expose_secret()).map_err(|_| {
                    SinkError::Permanent {
                        status: None,
                        message: format!("the {k} header value is not valid"),
                    }
                })?;
            hv.set_sensitive(true);
            r = r.header(k.as_str(), hv);
        }
        let resp = r.body(body).send().await.map_err(|e| {
            SinkError::Transient(format!("otlp: {}", super::error_chain(&e.without_url())))
        })?;
        classify("otlp", resp).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_encoding_follows_the_otlp_json_mapping() {
        let info = SourceInfo {
            source: "acme".into(),
            tenant: "acme".into(),
        };
        let rec = OutRecord {
            seq: 1,
            id: "id-1".into(),
            category: "inventory".into(),
            kind: "devices".into(),
            class_uid: Some(5001),
            device_id: Some("d1".into()),
            record_key: "d1".into(),
            time_ms: 1_700_000_000_123,
            severity_id: 1,
            body: json!({"class_uid": 5001}),
        };
        let v = serde_json::to_value(request(&info, &[rec], 5)).unwrap();
        let lr = &v["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
        assert_eq!(lr["timeUnixNano"], json!("1700000000123000000"));
        assert_eq!(lr["severityNumber"], json!(9));
        assert_eq!(lr["body"]["stringValue"], json!("{\"class_uid\":5001}"));
        let attrs = lr["attributes"].as_array().unwrap();
        let class = attrs.iter().find(|a| a["key"] == "ocsf.class_uid").unwrap();
        assert_eq!(class["value"]["intValue"], json!("5001"));
    }
}
