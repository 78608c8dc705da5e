//! HTTP webhook output: each batch is one POST of a JSON array, optionally gzip'ed, with an
//! auth header and an optional HMAC-SHA256 signature of the exact body sent
//! (`X-Kandji-Signature-256: sha256=<hex>`). Every element carries its stable id (`metadata.uid`
//! in OCSF, `id` in raw), and `X-Kandji-Batch` names the outbox range, so receivers can dedupe.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use super::outbox::OutRecord;
use super::{SinkError, classify, gzip, http_client};

pub const SIGNATURE_HEADER: &str = "x-kandji-signature-256";
pub const BATCH_HEADER: &str = "x-kandji-batch";

pub struct WebhookSink {
    client: reqwest::Client,
    url: url::Url,
    gzip: bool,
    auth: Option<(String, SecretString)>,
    hmac_secret: Option<SecretString>,
}

/// `sha256=<hex>` of `body` under `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(body);
    format!("sha256={}", super::hex(&mac.finalize().into_bytes()))
}

impl WebhookSink {
    pub fn new(
        url: url::Url,
        gzip: bool,
        auth: Option<(String, SecretString)>,
        hmac_secret: Option<SecretString>,
        timeout: std::time::Duration,
    ) -> Result<WebhookSink, SinkError> {
        Ok(WebhookSink {
            client: http_client(timeout)?,
            url,
            gzip,
            auth,
            hmac_secret,
        })
    }

    pub async fn send(&self, records: &[OutRecord]) -> Result<(), SinkError> {
        let bodies: Vec<&serde_json::Value> = records.iter().map(|r| &r.body).collect();
        let json = serde_json::to_vec(&bodies).map_err(|e| SinkError::Permanent {
            status: None,
            message: e.to_string(),
        })?;
        let body = if self.gzip { gzip(&json)? } else { json };
        let mut req = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if self.gzip {
            req = req.header(reqwest::header::CONTENT_ENCODING, "gzip");
        }
        if let (Some(first), Some(last)) = (records.first(), records.last()) {
            req = req.header(BATCH_HEADER, format!("{}-{}", first.seq, last.seq));
        }
        if let Some((name, value)) = &self.auth {
            let mut v =
                reqwest::header::HeaderValue::from_str(value.expose_secret()).map_err(|_| {
                    SinkError::Permanent {
                        status: None,
                        message: format!("the {name} value is not a valid header value"),
                    }
                })?;
            v.set_sensitive(true);
            req = req.header(name.as_str(), v);
        }
        if let Some(secret) = &self.hmac_secret {
            req = req.header(
                SIGNATURE_HEADER,
                sign(secret.expose_secret().as_bytes(), &body),
            );
        }
        let resp = req.body(body).send().await.map_err(|e| {
            // Without the URL: a user may have put a credential in it.
            SinkError::Transient(format!("webhook: {}", super::error_chain(&e.without_url())))
        })?;
        classify("webhook", resp).await
    }
}
