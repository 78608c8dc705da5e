//! Detection Finding (2004, Findings): EDR threats, behavioral detections, and audit events
//! about file detections. `finding_info.uid` is the detection's id, so every later state of
//! the same detection updates one finding.

use serde_json::{Value, json};

use crate::common::{Base, Raw, device_ref, finish, severity_id, unknown_device};
use crate::{Context, EventRecord};

/// (activity, finding status) from a Kandji threat status.
fn status(s: &str) -> ((i64, &'static str), (i64, &'static str)) {
    let s = s.to_ascii_lowercase();
    if s.contains("resolved") || s.contains("released") || s.contains("not_malicious") {
        ((3, "Close"), (4, "Resolved"))
    } else if s.contains("quarantin") || s.contains("blocked") || s.contains("killed") {
        ((2, "Update"), (2, "In Progress"))
    } else {
        ((1, "Create"), (1, "New"))
    }
}

pub(crate) fn from_event(ctx: &Context<'_>, e: &EventRecord<'_>, uid: &str) -> Value {
    let audit = e.stream == "audit_events";
    // Audit events split a detection between `metadata` and `new_state`: read them as one.
    let merged: Value = if audit {
        let mut m = e.raw.get("metadata").cloned().unwrap_or_else(|| json!({}));
        if let (Some(mo), Some(ns)) = (
            m.as_object_mut(),
            e.raw.get("new_state").and_then(Value::as_object),
        ) {
            for (k, v) in ns {
                mo.insert(k.clone(), v.clone());
            }
        }
        m
    } else {
        Value::Null
    };
    let state_src = if audit { &merged } else { e.raw };
    let r = Raw::new(e.raw);
    let st = Raw::new(state_src);
    let classification = st.s("classification").unwrap_or_else(|| "unknown".into());
    let threat_status = st
        .s("status")
        .or_else(|| st.s("threat_status"))
        .or_else(|| r.s("action"))
        .unwrap_or_default();
    let ((activity_id, activity_name), (status_id, status_name)) = status(&threat_status);
    let title = st
        .s("threat_name")
        .or_else(|| st.s("threat_id"))
        .or_else(|| st.s("name"))
        .unwrap_or_else(|| format!("{classification} detection"));
    let mut info = json!({
        "uid": e.uid,
        "title": title,
        "types": [classification.clone()],
        "desc": st.s("description").unwrap_or_else(|| e.summary.to_string()),
    });
    if let Some(t) = st.t("detection_date") {
        info["created_time"] = json!(t);
        info["first_seen_time"] = json!(t);
    }
    let device_name = st.s("device_name").or_else(|| {
        st.get("device_info")
            .and_then(|d| d.get("name"))
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    st.skip(&["device_id", "detection_date"]);
    let device = device_ref(e.device_id, device_name).unwrap_or_else(unknown_device);
    let mut evidences = Vec::new();
    if let Some(p) = st.s("file_path") {
        let mut f = json!({"path": p, "name": p.rsplit('/').next().unwrap_or(&p), "type_id": 1, "type": "Regular File"});
        if let Some(h) = st.s("file_hash") {
            f["hashes"] = json!([{"algorithm_id": 3, "algorithm": "SHA-256", "value": h}]);
        }
        evidences.push(json!({"file": f}));
    }
    if let Some(p) = st.s("process_name") {
        evidences.push(json!({"process": {"name": p}}));
    }
    let base = Base {
        class_uid: 2004,
        class_name: "Detection Finding",
        category_uid: 2,
        category_name: "Findings",
        activity_id,
        activity_name,
        severity_id: severity_id(e.severity),
        time: e.occurred_at,
        log_name: e.stream,
        uid,
        message: Some(e.summary.to_string()),
    };
    let mut m = base.build(ctx);
    m.insert("finding_info".into(), info);
    m.insert("is_alert".into(), json!(true));
    m.insert("status_id".into(), json!(status_id));
    m.insert("status".into(), json!(status_name));
    if !threat_status.is_empty() {
        m.insert("status_detail".into(), json!(threat_status));
    }
    m.insert("device".into(), device);
    if classification.eq_ignore_ascii_case("malware")
        || classification.eq_ignore_ascii_case("malicious")
    {
        m.insert(
            "malware".into(),
            json!([{"name": title_of(&m), "classification_ids": [99], "classifications": [classification]}]),
        );
    }
    if !evidences.is_empty() {
        m.insert("evidences".into(), json!(evidences));
    }
    let unmapped = if audit {
        r.skip(&["id", "occurred_at", "new_state", "metadata"]);
        let mut u = r.unmapped().unwrap_or_else(|| json!({}));
        if let Some(rest) = st.unmapped() {
            u["detection"] = rest;
        }
        u["event_type"] = json!(e.event_type);
        Some(u)
    } else {
        r.skip(&["id"]);
        // `st` is `r` here: what either took is mapped.
        merge_unmapped(&r, &st)
    };
    finish(m, unmapped)
}

fn title_of(m: &serde_json::Map<String, Value>) -> String {
    m.get("finding_info")
        .and_then(|f| f.get("title"))
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_string()
}

fn merge_unmapped(a: &Raw<'_>, b: &Raw<'_>) -> Option<Value> {
    let ua = a.unmapped()?;
    let ub = b.unmapped()?;
    let (Some(oa), Some(ob)) = (ua.as_object(), ub.as_object()) else {
        return None;
    };
    let both: serde_json::Map<String, Value> = oa
        .iter()
        .filter(|(k, _)| ob.contains_key(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (!both.is_empty()).then_some(Value::Object(both))
}
