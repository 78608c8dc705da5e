//! The five shared loops a stream runs on, one per shape of endpoint. A stream configures
//! one (its endpoint, query, mapping); the driver owns the paging, its typed checkpoint and
//! the rules for restarts and removals.
//!
//! Each driver's checkpoint is a `#[derive(Serialize, Deserialize)]` struct stored as JSON.
//! [`load`] reads the stored value (older field names are read through serde aliases); one
//! that does not parse is reset, with the reason logged, never misread.

pub mod cursor_events;
pub mod envelope_events;
pub mod offset_sweep;
pub mod per_device;
pub mod prism_snapshot;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::StreamName;
use super::runtime::{SourceRuntime, StreamError};

/// A stream's checkpoint (or, with `key`, one entry of it: a Prism category), typed. Missing
/// is the default; one that does not parse as `T` is reset to the default with a warning.
pub async fn load<T: DeserializeOwned + Default>(
    rt: &SourceRuntime,
    stream: StreamName,
    key: Option<&str>,
) -> Result<T, StreamError> {
    let stored = rt.store.checkpoint(rt.name(), stream.as_str()).await?;
    let value = match (stored, key) {
        (Some(v), Some(k)) => v.get(k).cloned(),
        (v, None) => v,
        (None, Some(_)) => None,
    };
    Ok(parse(rt.name(), stream, key, value))
}

/// See [`load`]: the parse, on its own.
pub fn parse<T: DeserializeOwned + Default>(
    source: &str,
    stream: StreamName,
    key: Option<&str>,
    value: Option<Value>,
) -> T {
    match value {
        None | Some(Value::Null) => T::default(),
        Some(v) => match serde_json::from_value(v) {
            Ok(cp) => cp,
            Err(e) => {
                crate::internal_events::emit(crate::internal_events::CheckpointReset {
                    source,
                    stream: stream.as_str(),
                    key: key.unwrap_or(""),
                    reason: &e,
                });
                T::default()
            }
        },
    }
}

/// A checkpoint as the store keeps it.
pub fn save<T: Serialize>(cp: &T) -> Value {
    // A checkpoint is plain data (numbers, strings, options): it always serializes.
    serde_json::to_value(cp).unwrap_or(Value::Null)
}
