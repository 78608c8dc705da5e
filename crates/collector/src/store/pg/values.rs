//! Typed values between the store's rows and PostgreSQL.
//!
//! The streams map inventory rows to SQLite's dynamic [`Value`]s, one per typed column of
//! `tables.rs`. PostgreSQL's columns are typed (`TEXT`, `BIGINT`, `DOUBLE PRECISION`), so a
//! value is converted the way SQLite's column affinity converts it: a number in a `TEXT`
//! column is its text, numeric text in an `INTEGER` column is the number. (SQLite would keep
//! non-numeric text in an `INTEGER` column; PostgreSQL stores NULL there, and the row's `raw`
//! record keeps what the API sent. The streams never produce such a value.)
//!
//! Many rows go in one statement as arrays (`unnest`), one [`ColArray`] per column.

use bytes::BytesMut;
use rusqlite::types::Value;
use tokio_postgres::Row;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

/// One column's values for an array parameter.
#[derive(Debug)]
pub(super) enum ColArray {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
    Real(Vec<Option<f64>>),
}

impl ColArray {
    pub(super) fn for_type(sql_type: &str, capacity: usize) -> ColArray {
        match sql_type {
            "INTEGER" => ColArray::Int(Vec::with_capacity(capacity)),
            "REAL" => ColArray::Real(Vec::with_capacity(capacity)),
            _ => ColArray::Text(Vec::with_capacity(capacity)),
        }
    }

    /// The array type's name, for a cast in SQL (`$4::BIGINT[]`).
    pub(super) fn array_type(&self) -> &'static str {
        match self {
            ColArray::Text(_) => "TEXT[]",
            ColArray::Int(_) => "BIGINT[]",
            ColArray::Real(_) => "DOUBLE PRECISION[]",
        }
    }

    pub(super) fn push(&mut self, v: &Value) {
        match self {
            ColArray::Text(a) => a.push(match v {
                Value::Null => None,
                Value::Text(s) => Some(s.clone()),
                Value::Integer(i) => Some(i.to_string()),
                Value::Real(f) => Some(f.to_string()),
                Value::Blob(b) => Some(String::from_utf8_lossy(b).into_owned()),
            }),
            ColArray::Int(a) => a.push(match v {
                Value::Integer(i) => Some(*i),
                Value::Real(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
                Value::Text(s) => s.trim().parse().ok(),
                _ => None,
            }),
            ColArray::Real(a) => a.push(match v {
                Value::Real(f) => Some(*f),
                Value::Integer(i) => Some(*i as f64),
                Value::Text(s) => s.trim().parse().ok(),
                _ => None,
            }),
        }
    }
}

impl ToSql for ColArray {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            ColArray::Text(v) => v.to_sql(ty, out),
            ColArray::Int(v) => v.to_sql(ty, out),
            ColArray::Real(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <Vec<Option<String>> as ToSql>::accepts(ty)
            || <Vec<Option<i64>> as ToSql>::accepts(ty)
            || <Vec<Option<f64>> as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

/// One typed column of a row, back as SQLite's [`Value`].
pub(super) fn value_at(row: &Row, idx: usize, sql_type: &str) -> Value {
    match sql_type {
        "INTEGER" => row
            .try_get::<_, Option<i64>>(idx)
            .ok()
            .flatten()
            .map_or(Value::Null, Value::Integer),
        "REAL" => row
            .try_get::<_, Option<f64>>(idx)
            .ok()
            .flatten()
            .map_or(Value::Null, Value::Real),
        _ => row
            .try_get::<_, Option<String>>(idx)
            .ok()
            .flatten()
            .map_or(Value::Null, Value::Text),
    }
}

/// A value as PostgreSQL stores it in a column of `sql_type` (what a later read gives back):
/// what the write path compares a row's new values with.
pub(super) fn normalized(v: &Value, sql_type: &str) -> Value {
    let mut a = ColArray::for_type(sql_type, 1);
    a.push(v);
    match a {
        ColArray::Text(mut x) => x.pop().flatten().map_or(Value::Null, Value::Text),
        ColArray::Int(mut x) => x.pop().flatten().map_or(Value::Null, Value::Integer),
        ColArray::Real(mut x) => x.pop().flatten().map_or(Value::Null, Value::Real),
    }
}

/// A parameter of any type, for statements built at run time (`&[&dyn ToSql]` from owned
/// values).
pub(super) type Param = Box<dyn ToSql + Sync + Send>;

pub(super) fn refs(p: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    p.iter()
        .map(|b| b.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_convert_as_sqlite_affinity_does() {
        assert_eq!(
            normalized(&Value::Integer(5), "TEXT"),
            Value::Text("5".into())
        );
        assert_eq!(
            normalized(&Value::Text(" 12".into()), "INTEGER"),
            Value::Integer(12)
        );
        assert_eq!(normalized(&Value::Real(3.0), "INTEGER"), Value::Integer(3));
        assert_eq!(normalized(&Value::Integer(2), "REAL"), Value::Real(2.0));
        assert_eq!(normalized(&Value::Null, "TEXT"), Value::Null);
    }
}
