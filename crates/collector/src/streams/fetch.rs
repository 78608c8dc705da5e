//! Single requests for the streams, and lenient field access over raw JSON (through the
//! client's decoders, so every stream reads `"True"`, `""` and the timestamp zoo the same way).

use kandji_api::models::lenient;
use kandji_api::{KandjiError, Priority};
use serde_json::Value;

use super::runtime::SourceRuntime;

/// GET `path` (a concrete path for `template`) with `query`, and return the JSON body.
pub async fn get(
    rt: &SourceRuntime,
    template: &'static str,
    path: String,
    query: Vec<(String, String)>,
    priority: Priority,
) -> Result<Value, KandjiError> {
    rt.client.get_raw(template, path, query, priority).await
}

/// A query pair.
pub fn q(k: &str, v: impl ToString) -> (String, String) {
    (k.to_string(), v.to_string())
}

/// The items of a page in any of the envelope shapes: a bare array, `results`, `data`.
pub fn items(body: &Value) -> Vec<Value> {
    match body {
        Value::Array(a) => a.clone(),
        Value::Object(o) => o
            .get("results")
            .or_else(|| o.get("data"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// A string field; `""` and null are absent.
pub fn s(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(lenient::string_from_value)
}

/// A nested string field.
pub fn s2(v: &Value, a: &str, b: &str) -> Option<String> {
    v.get(a).and_then(|x| s(x, b))
}

/// A lenient boolean: true/false, "True"/"False", "yes"/"no", 1/0.
pub fn b(v: &Value, key: &str) -> Option<bool> {
    v.get(key).and_then(lenient::bool_from_value)
}

/// A timestamp field in any of the API's formats, as ms since the epoch.
pub fn ts(v: &Value, key: &str) -> Option<i64> {
    v.get(key)
        .and_then(lenient::time_from_value)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// ms since the epoch as RFC 3339.
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lenient_fields() {
        let v = json!({"a": "True", "b": "", "c": null, "d": 5, "e": "no",
                       "t": "2024-01-26 16:15:36.087016+00:00", "n": "2023-04-21T17:23:13.883134"});
        assert_eq!(b(&v, "a"), Some(true));
        assert_eq!(b(&v, "e"), Some(false));
        assert_eq!(s(&v, "b"), None);
        assert_eq!(s(&v, "c"), None);
        assert_eq!(s(&v, "d").as_deref(), Some("5"));
        assert_eq!(ts(&v, "t"), Some(1_706_285_736_087));
        assert_eq!(ts(&v, "n"), Some(1_682_097_793_883));
        assert_eq!(rfc3339(1_706_285_736_087), "2024-01-26T16:15:36.087Z");
    }
}
