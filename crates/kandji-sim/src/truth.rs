//! Ground truth (`/__sim/truth/<category>`): what the API serves, for test assertions.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::model::Tenant;
use crate::render;
use crate::server::Shared;
use crate::util::parse_uuid;

pub const CATEGORIES: &[&str] = &[
    "devices",
    "device_details",
    "apps",
    "compliance",
    "audit_events",
    "threats",
    "behavioral_detections",
    "vulnerability_detections",
    "vulnerabilities",
    "users",
    "blueprints",
    "tags",
    "ade_devices",
    "licensing",
    "removed_devices",
    "history",
];

const PER_DEVICE: &[&str] = &["devices", "device_details", "apps", "compliance"];

pub fn is_category(c: &str) -> bool {
    CATEGORIES.contains(&c)
}

/// Items of a category from position `pos`, at most `n`; returns the next position.
pub fn chunk(
    t: &Tenant,
    cat: &str,
    device: Option<&str>,
    pos: usize,
    n: usize,
) -> (Vec<Value>, Option<usize>) {
    let dev = device.and_then(parse_uuid);
    if device.is_some() && dev.is_none() {
        return (Vec::new(), None);
    }
    if PER_DEVICE.contains(&cat) {
        let sel: Vec<&crate::model::Device> = match dev {
            Some(id) => t.device_by_uuid(id).into_iter().collect(),
            None => t.devices.iter().skip(pos).take(n).collect(),
        };
        use crate::catalog::Platform;
        // What each device's endpoint serves: Android in its own shapes, Windows left out
        // of details and apps.
        let items = sel
            .iter()
            .filter_map(|d| match (cat, d.platform) {
                ("devices", _) => Some(render::device_item(t, d)),
                ("device_details" | "apps", Platform::Windows) => None,
                ("device_details", Platform::Android) => Some(render::android_details(t, d)),
                ("device_details", _) => Some(render::device_details(t, d)),
                ("apps", Platform::Android) => Some(render::android_apps(t, d)),
                ("apps", _) => Some(render::device_apps(t, d)),
                _ => Some(render::device_status(t, d)),
            })
            .collect();
        let more = dev.is_none() && pos + n < t.devices.len();
        return (items, more.then_some(pos + n));
    }
    let dev_id = dev.map(crate::util::uuid_of);
    let keep = |v: &Value, key: &str| {
        dev_id
            .as_ref()
            .is_none_or(|id| v.pointer(key).and_then(Value::as_str) == Some(id))
    };
    let all: Vec<Value> = match cat {
        "audit_events" => {
            let end = (pos + n).min(t.audit.len());
            let items: Vec<Value> = t.audit[pos.min(end)..end]
                .iter()
                .filter(|e| dev.is_none_or(|_| t.device_uuid(e.target) == dev.unwrap_or(0)))
                .map(|e| render::audit_item(t, e))
                .collect();
            return (items, (end < t.audit.len()).then_some(end));
        }
        "threats" => t
            .threats
            .iter()
            .map(|x| render::threat_item(t, x))
            .filter(|v| keep(v, "/device_id"))
            .collect(),
        "behavioral_detections" => t
            .behavioral
            .iter()
            .map(|x| render::behavioral_item(t, x))
            .filter(|v| keep(v, "/device_info/id"))
            .collect(),
        "vulnerability_detections" => t
            .vulns
            .iter()
            .filter(|v| v.open() && t.device_pos(v.device).is_some())
            .map(|x| render::vuln_item(t, x))
            .filter(|v| keep(v, "/device_id"))
            .collect(),
        "vulnerabilities" => crate::routes::security::cve_rows(t),
        "users" => (0..t.users.len() as u32)
            .map(|u| render::user_item(t, u))
            .collect(),
        "blueprints" => (0..t.blueprints.len() as u16)
            .map(|b| render::blueprint_item(t, b))
            .collect(),
        "tags" => (0..t.n_tags).map(|i| render::tag_item(t, i)).collect(),
        "ade_devices" => crate::routes::ade::ade_all(t),
        "removed_devices" => t
            .removed
            .iter()
            .map(|(d, ts)| {
                let mut v = render::device_item(t, d);
                v["is_removed"] = json!(true);
                v["removed_at"] = json!(render::plus(*ts));
                v
            })
            .filter(|v| keep(v, "/device_id"))
            .collect(),
        "licensing" => vec![render::licensing(t)],
        "history" => t
            .history
            .iter()
            .map(|e| history_item(t, e))
            .filter(|v| keep(v, "/device_id"))
            .collect(),
        _ => Vec::new(),
    };
    let items: Vec<Value> = all.into_iter().skip(pos).take(n).collect();
    let more = items.len() == n;
    (items, more.then_some(pos + n))
}

/// The whole category as one JSON value (`licensing` is an object, the rest arrays).
pub fn full(sh: &Shared, cat: &str, device: Option<&str>) -> Value {
    let t = sh.tenant();
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        let (items, next) = chunk(&t, cat, device, pos, 1000);
        out.extend(items);
        match next {
            Some(p) => pos = p,
            None => break,
        }
    }
    if cat == "licensing" {
        return out.into_iter().next().unwrap_or(Value::Null);
    }
    Value::Array(out)
}

/// Stream a category as NDJSON or as a JSON array.
pub fn stream(
    sh: Arc<Shared>,
    cat: String,
    device: Option<String>,
    ndjson: bool,
) -> axum::body::Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(2);
    tokio::task::spawn_blocking(move || {
        let mut pos = 0;
        let mut first = true;
        if !ndjson
            && cat != "licensing"
            && tx.blocking_send(bytes::Bytes::from_static(b"[")).is_err()
        {
            return;
        }
        loop {
            let (items, next) = {
                let t = sh.tenant();
                let n = if PER_DEVICE.contains(&cat.as_str()) {
                    50
                } else {
                    500
                };
                chunk(&t, &cat, device.as_deref(), pos, n)
            };
            let mut buf = Vec::new();
            for it in items {
                if ndjson {
                    buf.extend(serde_json::to_vec(&it).unwrap_or_default());
                    buf.push(b'\n');
                } else {
                    if !first && cat != "licensing" {
                        buf.push(b',');
                    }
                    first = false;
                    buf.extend(serde_json::to_vec(&it).unwrap_or_default());
                }
            }
            if !buf.is_empty() && tx.blocking_send(bytes::Bytes::from(buf)).is_err() {
                return;
            }
            match next {
                Some(p) => pos = p,
                None => break,
            }
        }
        if !ndjson && cat != "licensing" {
            let _ = tx.blocking_send(bytes::Bytes::from_static(b"]"));
        }
    });
    let s = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<bytes::Bytes, std::io::Error>(b), rx))
    });
    axum::body::Body::from_stream(s)
}

/// One churn history entry: when, which device, what kind of change, and its subject in the
/// collector's key terms (an app's bundle id, else path, else name; a compliance item as
/// `library_item|<id>` or `parameter|<id>`).
fn history_item(t: &Tenant, e: &crate::model::HistoryEntry) -> Value {
    use crate::model::{AppChangeKind, Changed};
    let (kind, subject) = match e.what {
        Changed::App(app, k) => {
            let m = crate::derive::app_meta_ref(usize::from(app));
            let ident = [&m.bundle_id, &m.path, &m.name]
                .into_iter()
                .find(|x| !x.is_empty())
                .cloned()
                .unwrap_or_default();
            let kind = match k {
                AppChangeKind::Install => "app_install",
                AppChangeKind::Remove => "app_remove",
                AppChangeKind::Update => "app_update",
            };
            (kind, ident)
        }
        Changed::Status(false, i) => (
            "status",
            format!(
                "library_item|{}",
                crate::util::uuid_of(t.library_item_uuid(i))
            ),
        ),
        Changed::Status(true, i) => (
            "status",
            format!("parameter|{}", crate::util::uuid_of(t.parameter_uuid(i))),
        ),
        Changed::FileVault => ("filevault", String::new()),
        Changed::Os => ("os", String::new()),
        Changed::Blueprint => ("blueprint", String::new()),
    };
    json!({
        "ts": render::plus(e.ts),
        "device_id": t.device_id(e.device),
        "kind": kind,
        "subject": subject,
    })
}
