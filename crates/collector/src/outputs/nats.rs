//! NATS JetStream output: each record is published to a subject of its source and category
//! (`kandji.{source}.{category}` by default) with `Nats-Msg-Id` set to its stable id, so the
//! stream drops a repeat within its duplicate window (a batch resent after a crash, before
//! its offset committed). A batch is published whole, then every acknowledgement is awaited:
//! the offset moves only once the stream has stored each record.
//!
//! Failures: no server, a broken connection, an ack timeout or a missing stream are
//! transient (backoff, the outbox waits); a record larger than the server's `max_payload` is
//! rejected, so it is retried alone and dead-lettered.

use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind};
use bytes::Bytes;
use secrecy::ExposeSecret;
use tokio::sync::OnceCell;

use super::outbox::{OutRecord, SourceInfo};
use super::{SinkError, error_chain};
use crate::config::sinks::{NatsAuth, NatsSpec, SUBJECT_FIELDS};

pub struct NatsSink {
    info: SourceInfo,
    spec: NatsSpec,
    /// Connected on first use (and the stream checked or created); the client reconnects by
    /// itself after that.
    js: OnceCell<jetstream::Context>,
}

/// A subject token from a value: NATS splits subjects at '.', and '*', '>' and spaces are not
/// allowed in a token, so each becomes '_'.
fn token(v: &str) -> String {
    let t: String = v
        .chars()
        .map(|c| {
            if c == '.' || c == '*' || c == '>' || c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if t.is_empty() { "_".into() } else { t }
}

/// The subject of one record.
pub fn subject_for(template: &str, source: &str, category: &str, kind: &str) -> String {
    template
        .replace("{source}", &token(source))
        .replace("{category}", &token(category))
        .replace("{kind}", &token(kind))
}

/// The subjects a created stream listens on: the template with each placeholder a wildcard.
pub fn stream_subjects(template: &str) -> String {
    let mut s = template.to_string();
    for p in SUBJECT_FIELDS {
        // A placeholder that is a whole token becomes `*`; one inside a token makes the
        // whole token `*`.
        s = s.replace(p, "\u{0}");
    }
    s.split('.')
        .map(|t| if t.contains('\u{0}') { "*" } else { t })
        .collect::<Vec<_>>()
        .join(".")
}

impl NatsSink {
    pub fn new(info: SourceInfo, spec: NatsSpec) -> NatsSink {
        NatsSink {
            info,
            spec,
            js: OnceCell::new(),
        }
    }

    async fn connect(&self) -> Result<jetstream::Context, SinkError> {
        let mut opts = async_nats::ConnectOptions::new()
            .name(concat!("kandji-collector/", env!("CARGO_PKG_VERSION")))
            .connection_timeout(self.spec.timeout.min(Duration::from_secs(10)))
            .request_timeout(Some(self.spec.timeout));
        opts = match &self.spec.auth {
            NatsAuth::None => opts,
            NatsAuth::Token(t) => opts.token(t.expose_secret().to_string()),
            NatsAuth::UserPassword(u, p) => {
                opts.user_and_password(u.clone(), p.expose_secret().to_string())
            }
            NatsAuth::Credentials(path) => {
                opts.credentials_file(path)
                    .await
                    .map_err(|e| SinkError::Permanent {
                        status: None,
                        message: format!("nats: cannot read {}: {e}", path.display()),
                    })?
            }
        };
        let client = opts
            .connect(self.spec.servers.as_slice())
            .await
            .map_err(|e| SinkError::Transient(format!("nats: connect: {}", error_chain(&e))))?;
        let js = jetstream::new(client);
        if let Some(name) = &self.spec.stream {
            if self.spec.create_stream {
                js.get_or_create_stream(jetstream::stream::Config {
                    name: name.clone(),
                    subjects: vec![stream_subjects(&self.spec.subject)],
                    duplicate_window: self.spec.duplicate_window,
                    ..Default::default()
                })
                .await
                .map_err(|e| {
                    SinkError::Transient(format!(
                        "nats: cannot create stream {name}: {}",
                        error_chain(&e)
                    ))
                })?;
                tracing::info!(source = %self.info.source, stream = %name, subjects = %stream_subjects(&self.spec.subject), "nats stream ready");
            } else {
                js.get_stream(name).await.map_err(|e| {
                    SinkError::Transient(format!(
                        "nats: stream {name} is not there ({}); create it, or set \
                         create_stream = true",
                        error_chain(&e)
                    ))
                })?;
            }
        }
        Ok(js)
    }

    pub async fn send(&self, records: &[OutRecord]) -> Result<(), SinkError> {
        let js = self.js.get_or_try_init(|| self.connect()).await?;
        let mut acks = Vec::with_capacity(records.len());
        for r in records {
            let payload = serde_json::to_vec(&r.body).map_err(|e| SinkError::Permanent {
                status: None,
                message: e.to_string(),
            })?;
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, r.id.as_str());
            let subject = subject_for(&self.spec.subject, &self.info.source, &r.category, &r.kind);
            let ack = js
                .publish_with_headers(subject, headers, Bytes::from(payload))
                .await
                .map_err(|e| publish_error(e.kind(), &e))?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await.map_err(|e| publish_error(e.kind(), &e))?;
        }
        Ok(())
    }
}

fn publish_error(kind: PublishErrorKind, e: &dyn std::error::Error) -> SinkError {
    match kind {
        PublishErrorKind::MaxPayloadExceeded => SinkError::Permanent {
            status: None,
            message: format!("nats: {}", error_chain(e)),
        },
        PublishErrorKind::StreamNotFound => SinkError::Transient(format!(
            "nats: no stream holds this subject ({}); create one, or set stream and \
             create_stream = true",
            error_chain(e)
        )),
        _ => SinkError::Transient(format!("nats: {}", error_chain(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_filled_per_record_and_stay_valid() {
        assert_eq!(
            subject_for(
                "kandji.{source}.{category}",
                "acme.eu",
                "audit",
                "audit_events"
            ),
            "kandji.acme_eu.audit"
        );
        assert_eq!(
            subject_for(
                "k.{source}.{category}-{kind}",
                "a b",
                "inventory",
                "devices"
            ),
            "k.a_b.inventory-devices"
        );
        assert_eq!(stream_subjects("kandji.{source}.{category}"), "kandji.*.*");
        assert_eq!(stream_subjects("k.{source}.{category}-{kind}.x"), "k.*.*.x");
    }
}
