//! SQL values and types. Events are JSON, so a value is JSON's shapes with the two numbers SQL
//! tells apart (BIGINT and DOUBLE). Values have one total order (NULL < BOOLEAN < numbers <
//! STRING < ARRAY < STRUCT; integers and doubles compare by numeric value), used by ORDER BY,
//! MIN/MAX and range filters, so sorting never fails on mixed data.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

/// One SQL value.
#[derive(Debug, Clone, Default)]
pub enum Value {
    /// SQL NULL (also a missing JSON field).
    #[default]
    Null,
    /// BOOLEAN.
    Bool(bool),
    /// BIGINT.
    Int(i64),
    /// DOUBLE.
    Double(f64),
    /// STRING.
    String(Arc<str>),
    /// ARRAY.
    Array(Arc<Vec<Value>>),
    /// STRUCT (a JSON object; fields in name order).
    Struct(Arc<BTreeMap<String, Value>>),
}

/// The static type of an expression, known at CREATE time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SqlType {
    /// BOOLEAN.
    Boolean,
    /// BIGINT.
    Bigint,
    /// DOUBLE.
    Double,
    /// STRING.
    String,
    /// ARRAY.
    Array,
    /// STRUCT.
    Struct,
    /// A JSON field whose events disagree on its type, or that no event has shown yet: checked
    /// per event, and an event whose value does not fit is parked (dead-lettered).
    Any,
}

impl SqlType {
    /// The name shown in `columns[].type` and `DESCRIBE`.
    pub fn name(self) -> &'static str {
        match self {
            SqlType::Boolean => "BOOLEAN",
            SqlType::Bigint => "BIGINT",
            SqlType::Double => "DOUBLE",
            SqlType::String => "STRING",
            SqlType::Array => "ARRAY",
            SqlType::Struct => "STRUCT",
            SqlType::Any => "ANY",
        }
    }

    /// Whether a value of this type may be a number.
    pub fn numeric(self) -> bool {
        matches!(self, SqlType::Bigint | SqlType::Double | SqlType::Any)
    }

    /// The type of `value` (None for NULL, which fits every type).
    pub fn of(value: &Value) -> Option<SqlType> {
        Some(match value {
            Value::Null => return None,
            Value::Bool(_) => SqlType::Boolean,
            Value::Int(_) => SqlType::Bigint,
            Value::Double(_) => SqlType::Double,
            Value::String(_) => SqlType::String,
            Value::Array(_) => SqlType::Array,
            Value::Struct(_) => SqlType::Struct,
        })
    }

    /// The type two branches (CASE, COALESCE) or two observations of a field unify to.
    pub fn unify(a: Option<SqlType>, b: Option<SqlType>) -> Option<SqlType> {
        match (a, b) {
            (None, x) | (x, None) => x,
            (Some(a), Some(b)) if a == b => Some(a),
            (Some(SqlType::Bigint), Some(SqlType::Double)) | (Some(SqlType::Double), Some(SqlType::Bigint)) => {
                Some(SqlType::Double)
            }
            _ => Some(SqlType::Any),
        }
    }
}

impl fmt::Display for SqlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Value {
    /// A STRING value.
    pub fn string(s: &str) -> Value {
        Value::String(Arc::from(s))
    }

    /// Whether this is NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The number as a double, if this is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Double(d) => Some(*d),
            _ => None,
        }
    }

    /// The text of a STRING.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// SQL truth: only TRUE is true (NULL and FALSE filter a row out).
    pub fn is_true(&self) -> bool {
        matches!(self, Value::Bool(true))
    }

    fn rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Int(_) | Value::Double(_) => 2,
            Value::String(_) => 3,
            Value::Array(_) => 4,
            Value::Struct(_) => 5,
        }
    }

    /// The total order described in the module comment.
    pub fn total_cmp(&self, other: &Value) -> Ordering {
        match (self, other) {
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (Value::Int(a), Value::Int(b)) => a.cmp(b),
            (Value::Int(a), Value::Double(b)) => (*a as f64).total_cmp(b),
            (Value::Double(a), Value::Int(b)) => a.total_cmp(&(*b as f64)),
            (Value::Double(a), Value::Double(b)) => a.total_cmp(b),
            (Value::String(a), Value::String(b)) => a.cmp(b),
            (Value::Array(a), Value::Array(b)) => {
                for (x, y) in a.iter().zip(b.iter()) {
                    match x.total_cmp(y) {
                        Ordering::Equal => {}
                        other => return other,
                    }
                }
                a.len().cmp(&b.len())
            }
            (Value::Struct(a), Value::Struct(b)) => {
                for ((ka, va), (kb, vb)) in a.iter().zip(b.iter()) {
                    match ka.cmp(kb).then_with(|| va.total_cmp(vb)) {
                        Ordering::Equal => {}
                        other => return other,
                    }
                }
                a.len().cmp(&b.len())
            }
            _ => self.rank().cmp(&other.rank()),
        }
    }

    /// SQL comparison: NULL when either side is NULL or the two cannot be compared (a string
    /// and a number), else the order.
    pub fn sql_cmp(&self, other: &Value) -> Option<Ordering> {
        if self.is_null() || other.is_null() || self.rank() != other.rank() {
            return None;
        }
        Some(self.total_cmp(other))
    }

    /// The value as JSON text (strings quoted).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "null".into())
    }

    /// The value as text for messages and string functions: a STRING's own text, other values
    /// as JSON.
    pub fn to_text(&self) -> String {
        match self {
            Value::String(s) => s.to_string(),
            other => other.to_json(),
        }
    }

    /// Reads JSON text.
    pub fn from_json(text: &[u8]) -> serde_json::Result<Value> {
        serde_json::from_slice(text)
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        self.total_cmp(other) == Ordering::Equal
    }
}

impl Eq for Value {}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Value) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Value {
    fn cmp(&self, other: &Value) -> Ordering {
        self.total_cmp(other)
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            // JSON has no NaN or infinity: they are written as null (as serde_json does).
            Value::Double(d) if !d.is_finite() => s.serialize_unit(),
            Value::Double(d) => s.serialize_f64(*d),
            Value::String(v) => s.serialize_str(v),
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items.iter() {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Value::Struct(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields.iter() {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

/// Reads JSON straight into [`Value`] (no `serde_json::Value` in between).
struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        // Above i64::MAX a JSON integer becomes a DOUBLE (as JavaScript reads it).
        Ok(i64::try_from(v).map_or(Value::Double(v as f64), Value::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Double(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::string(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(Arc::new(items)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut fields = BTreeMap::new();
        while let Some((k, v)) = map.next_entry::<String, Value>()? {
            fields.insert(k, v);
        }
        Ok(Value::Struct(Arc::new(fields)))
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

/// Reads the top-level fields `wanted` of a JSON object into `out` (same length as `wanted`),
/// skipping every other field without building it: the source of a view reads only the
/// columns its query names. A field is matched by exact name first; failing that, by name
/// ignoring ASCII case (SQL identifiers are case-insensitive, JSON keys are not: `orderid`
/// finds `orderId`). Fields absent stay NULL. Errors when the text is not a JSON object.
pub fn read_fields(text: &[u8], wanted: &[Box<str>], out: &mut [Value]) -> serde_json::Result<()> {
    debug_assert_eq!(wanted.len(), out.len());
    for v in out.iter_mut() {
        *v = Value::Null;
    }
    let mut de = serde_json::Deserializer::from_slice(text);
    de.deserialize_map(FieldsVisitor { wanted, out })?;
    de.end()
}

struct FieldsVisitor<'a> {
    wanted: &'a [Box<str>],
    out: &'a mut [Value],
}

impl<'de> Visitor<'de> for FieldsVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Bit i set: out[i] was filled by an exact match, which a case-insensitive one must
        // not overwrite. Queries name few columns; past 64 only exact matches are tracked.
        let mut exact: u64 = 0;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let slot = self.wanted.iter().position(|w| **w == *key).map(|i| (i, true)).or_else(|| {
                self.wanted
                    .iter()
                    .enumerate()
                    .position(|(i, w)| w.eq_ignore_ascii_case(&key) && (i >= 64 || exact & (1 << i) == 0))
                    .map(|i| (i, false))
            });
            match slot {
                Some((i, is_exact)) => {
                    self.out[i] = map.next_value()?;
                    if is_exact && i < 64 {
                        exact |= 1 << i;
                    }
                }
                None => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_across_int_and_double() {
        assert_eq!(Value::Int(2).total_cmp(&Value::Double(2.5)), Ordering::Less);
        assert_eq!(Value::Int(3), Value::Double(3.0));
        assert_eq!(Value::Null.total_cmp(&Value::Bool(false)), Ordering::Less);
        assert_eq!(Value::string("a").sql_cmp(&Value::Int(1)), None);
    }

    #[test]
    fn read_fields_takes_only_the_wanted_and_prefers_exact_case() {
        let wanted: Vec<Box<str>> = vec!["orderid".into(), "item_price".into(), "missing".into()];
        let mut out = vec![Value::Null; 3];
        read_fields(br#"{"orderId":"o-1","skip":{"deep":[1,2]},"item_price":12,"orderid":"exact"}"#, &wanted, &mut out)
            .unwrap();
        assert_eq!(out[0], Value::string("exact"));
        assert_eq!(out[1], Value::Int(12));
        assert!(out[2].is_null());
        read_fields(br#"{"ORDERID":"o-2"}"#, &wanted, &mut out).unwrap();
        assert_eq!(out[0], Value::string("o-2"));
        assert!(read_fields(b"[1]", &wanted, &mut out).is_err());
        assert!(read_fields(b"{\"a\":1} x", &wanted, &mut out).is_err());
    }

    #[test]
    fn json_round_trip() {
        let v = Value::from_json(br#"{"a":[1,2.5,"x",null,true],"b":{"c":18446744073709551615}}"#).unwrap();
        assert_eq!(v.to_json(), r#"{"a":[1,2.5,"x",null,true],"b":{"c":1.8446744073709552e+19}}"#);
    }
}
