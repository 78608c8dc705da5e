//! Shared helpers for the simulator's integration tests.
#![allow(dead_code, clippy::missing_panics_doc)]

use kandji_sim::{Churn, SimConfig, SimHandle};
use serde_json::Value;

pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn client() -> reqwest::Client {
    install_crypto();
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

pub fn static_config(devices: usize, seed: u64) -> SimConfig {
    SimConfig {
        devices,
        seed,
        churn: Churn::none(),
        per_second_limit: 100_000,
        hourly_limit: 1_000_000,
        ..SimConfig::default()
    }
}

pub async fn start(cfg: SimConfig) -> SimHandle {
    kandji_sim::spawn(cfg).await.expect("spawn simulator")
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| {
            panic!("not JSON ({e}): {}", &self.text[..self.text.len().min(300)])
        })
    }
    pub fn header(&self, k: &str) -> Option<String> {
        self.headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

/// GET `path_and_query` (relative to the base URL, or absolute) with an optional token.
pub async fn get(c: &reqwest::Client, sim: &SimHandle, path: &str, token: Option<&str>) -> Resp {
    let url = if path.starts_with("http") {
        path.to_owned()
    } else {
        format!("{}{}", sim.base_url(), path)
    };
    let mut rb = c.get(&url);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let r = rb.send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap_or_default();
    Resp {
        status,
        headers,
        text,
    }
}

pub async fn post_json(
    c: &reqwest::Client,
    sim: &SimHandle,
    path: &str,
    token: &str,
    body: &Value,
) -> Resp {
    let url = format!("{}{}", sim.base_url(), path);
    let r = c
        .post(&url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("POST");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap_or_default();
    Resp {
        status,
        headers,
        text,
    }
}

/// GET with the all-permission token, asserting 200, returning JSON.
pub async fn ok(c: &reqwest::Client, sim: &SimHandle, path: &str) -> Value {
    let r = get(c, sim, path, Some(sim.token())).await;
    assert_eq!(
        r.status,
        200,
        "GET {path}: {}",
        &r.text[..r.text.len().min(300)]
    );
    r.json()
}

/// Rebuild a `next` URL (possibly on the web host) against the simulator.
pub fn rebase(sim: &SimHandle, next: &str) -> String {
    let u = url::Url::parse(next).expect("next is a URL");
    match u.query() {
        Some(q) => format!("{}{}?{}", sim.base_url(), u.path(), q),
        None => format!("{}{}", sim.base_url(), u.path()),
    }
}

pub fn first_mac(sim: &SimHandle) -> Value {
    sim.truth("devices")
        .as_array()
        .expect("devices truth")
        .iter()
        .find(|d| d["platform"] == "Mac" && d["user"].is_object())
        .cloned()
        .expect("a Mac with a user")
}
