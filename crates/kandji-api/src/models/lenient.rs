//! Lenient field decoders used by every model: they never fail, they return `None` instead.
//!
//! All are `deserialize_with` helpers that first read any JSON value, then convert.

use serde::{Deserialize, Deserializer};
use serde_json::Value;
use time::OffsetDateTime;

use crate::time::parse_timestamp;

/// String, number or bool → `Some(string)`; `""`, null, missing, objects → `None`.
pub fn string_from_value(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if s.trim().is_empty() => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `true`/`false`, `"True"`/`"False"`/`"yes"`/`"no"`/`"1"`/`"0"`, 0/1 → bool; else `None`.
pub fn bool_from_value(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_f64().map(|f| f != 0.0),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "1" | "on" | "enabled" => Some(true),
            "false" | "no" | "n" | "0" | "off" | "disabled" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Integer or integer-looking string (also `"12.0"`) → i64.
pub fn i64_from_value(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => {
            let t = s.trim();
            t.parse::<i64>().ok().or_else(|| {
                t.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite() && f.fract() == 0.0 && f.abs() < 9e15)
                    .map(|f| f as i64)
            })
        }
        _ => None,
    }
}

/// Number or numeric string → f64.
pub fn f64_from_value(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

/// Any timestamp string (see [`parse_timestamp`]) or unix seconds → instant.
pub fn time_from_value(v: &Value) -> Option<OffsetDateTime> {
    match v {
        Value::String(s) => parse_timestamp(s),
        Value::Number(n) => n
            .as_i64()
            .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok()),
        _ => None,
    }
}

/// Array of strings (numbers converted, others skipped); a single string → one element;
/// a comma-free empty value → empty.
pub fn strings_from_value(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items
            .iter()
            .filter_map(|i| match i {
                Value::Object(o) => o.get("name").and_then(string_from_value),
                other => string_from_value(other),
            })
            .collect(),
        Value::String(s) if !s.trim().is_empty() => vec![s.clone()],
        _ => Vec::new(),
    }
}

macro_rules! lenient_fn {
    ($name:ident, $t:ty, $conv:path) => {
        #[doc = concat!("`deserialize_with` helper: `Option<", stringify!($t), ">`, never fails.")]
        pub fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<$t>, D::Error> {
            Ok(Value::deserialize(d).ok().as_ref().and_then($conv))
        }
    };
}

lenient_fn!(opt_string, String, string_from_value);
lenient_fn!(opt_bool, bool, bool_from_value);
lenient_fn!(opt_i64, i64, i64_from_value);
lenient_fn!(opt_f64, f64, f64_from_value);
lenient_fn!(opt_time, OffsetDateTime, time_from_value);

/// `deserialize_with` helper: `Vec<String>`, never fails.
pub fn strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Value::deserialize(d)
        .ok()
        .map(|v| strings_from_value(&v))
        .unwrap_or_default())
}

/// `deserialize_with` helper: a nested model, `None` for `""`, null or non-objects.
pub fn opt_object<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let v = Value::deserialize(d).ok();
    Ok(match v {
        Some(v @ Value::Object(_)) => serde_json::from_value(v).ok(),
        _ => None,
    })
}

/// `deserialize_with` helper: a list of nested models; non-objects and undecodable items skipped.
pub fn object_vec<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let v = Value::deserialize(d).ok();
    Ok(match v {
        Some(Value::Array(items)) => items
            .into_iter()
            .filter(Value::is_object)
            .filter_map(|i| serde_json::from_value(i).ok())
            .collect(),
        _ => Vec::new(),
    })
}

/// Look up the first present, non-empty key among `keys` in an object.
pub fn first_of<'a>(obj: &'a serde_json::Map<String, Value>, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().filter_map(|k| obj.get(*k)).find(|v| match v {
        Value::Null => false,
        Value::String(s) => !s.trim().is_empty(),
        _ => true,
    })
}

/// Declare an open enum: known variants plus `Other(String)`, parsed case-insensitively.
macro_rules! open_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => [$($s:literal),+]),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
        #[serde(into = "String")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A value this crate does not know (kept verbatim).
            Other(String),
        }

        impl $name {
            /// Parse leniently (case-insensitive); unknown values become `Other`.
            pub fn parse(s: &str) -> Self {
                let lower = s.trim().to_ascii_lowercase();
                $(if [$($s),+].contains(&lower.as_str()) { return Self::$variant; })+
                Self::Other(s.to_string())
            }

            /// The canonical string (first spelling) or the unknown value.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => [$($s),+][0],)+
                    Self::Other(s) => s,
                }
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.as_str().to_string()
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let v = serde_json::Value::deserialize(d)?;
                Ok(match $crate::models::lenient::string_from_value(&v) {
                    Some(s) => Self::parse(&s),
                    None => Self::Other(String::new()),
                })
            }
        }
    };
}
pub(crate) use open_enum;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bools() {
        for (v, want) in [
            (json!(true), Some(true)),
            (json!("True"), Some(true)),
            (json!("False"), Some(false)),
            (json!("yes"), Some(true)),
            (json!(""), None),
            (json!(null), None),
            (json!(1), Some(true)),
            (json!({}), None),
        ] {
            assert_eq!(bool_from_value(&v), want, "{v}");
        }
    }

    #[test]
    fn strings_and_numbers() {
        assert_eq!(string_from_value(&json!("")), None);
        assert_eq!(string_from_value(&json!(5)), Some("5".into()));
        assert_eq!(i64_from_value(&json!("123456")), Some(123_456));
        assert_eq!(i64_from_value(&json!("12.0")), Some(12));
        assert_eq!(i64_from_value(&json!("1e400")), None);
        assert_eq!(f64_from_value(&json!("7.5")), Some(7.5));
        assert_eq!(
            strings_from_value(&json!(["a", 1, null, {"name": "b"}])),
            vec!["a", "1", "b"]
        );
    }
}
