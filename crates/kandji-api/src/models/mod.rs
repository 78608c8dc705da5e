//! Typed, lenient models of the API payloads the collector uses.
//!
//! Every model keeps the full original object in `raw` beside the typed fields, tolerates
//! `"True"`/`"False"` booleans, `""`/null/missing (→ `None`), string numbers, unknown extra
//! fields and unknown enum values (`Other(String)`), and parses every timestamp format through
//! [`crate::parse_timestamp`]. Decoding a model from a JSON *object* never fails; only a
//! non-object item is refused.

pub mod lenient;

mod devices;
mod misc;
mod prism;
mod security;

pub use devices::*;
pub use misc::*;
pub use prism::*;
pub use security::*;

use serde::de::DeserializeOwned;
use serde_json::Value;

/// A payload model decoded leniently from JSON, keeping the raw value.
pub trait Model: Sized + DeserializeOwned {
    /// Store the original JSON.
    fn set_raw(&mut self, raw: Value);
    /// Post-processing hook (e.g. mapping alternative field names). Default: nothing.
    fn finish(&mut self) {}

    /// Decode leniently. Fails only if `v` is not a JSON object.
    fn from_value(v: Value) -> Result<Self, String> {
        if !v.is_object() {
            return Err(format!("expected a JSON object, got {}", type_name(&v)));
        }
        let mut m: Self = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
        m.set_raw(v);
        m.finish();
        Ok(m)
    }
}

/// Decode leniently from raw bytes (JSON); never panics.
pub fn decode<M: Model>(bytes: &[u8]) -> Result<M, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    M::from_value(v)
}

pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

macro_rules! impl_model {
    ($($t:ty),+ $(,)?) => {
        $(impl $crate::models::Model for $t {
            fn set_raw(&mut self, raw: serde_json::Value) {
                self.raw = raw;
            }
        })+
    };
}
pub(crate) use impl_model;
