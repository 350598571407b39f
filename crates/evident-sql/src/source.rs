//! A topic's events as rows. The payload is JSON (an object; its top-level fields are the
//! columns, nested fields are reached with `a.b` or `a->b`, array elements with `a[1]`); a
//! missing field is NULL. Pseudo-columns give each event's place and envelope:
//! ROWTIME (timestamp, ms), ROWKEY (key, text), ROWPARTITION, ROWOFFSET, ROWSEQUENCE (commit
//! sequence), ROWVERSION (version in its stream) and ROWTYPE (the CloudEvents type,
//! `ce_type`). They win over a JSON field of the same name.
//!
//! Column types come from the events already in the topic: up to [`SAMPLE_EVENTS`] are read
//! when a statement is planned, and a field seen with one JSON type gets it (a field of
//! integers is BIGINT, of strings STRING); fields not seen or seen with mixed types are ANY
//! and checked per event. So `SUM(customerId)` over string ids is refused at CREATE time,
//! as it would be against a declared schema.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use evident_log::{Event, Log};

use crate::error::Result;
use crate::plan::Input;
use crate::value::{read_fields, SqlType, Value};

/// Events read to learn a topic's column types.
pub const SAMPLE_EVENTS: usize = 1000;

/// Turns payloads that are not JSON text into JSON: the server gives one backed by the schema
/// registry, for events in Confluent's wire format (Avro, Protobuf, JSON Schema).
pub trait PayloadDecoder: Send + Sync {
    /// The payload as JSON text, when it is in Confluent's wire format (magic byte 0, a
    /// schema id, the body); None when it is not (then it is read as JSON text).
    fn decode(&self, payload: &[u8]) -> Option<Result<Vec<u8>, String>>;
}

/// A shared [`PayloadDecoder`].
#[derive(Clone)]
pub struct Decoder(pub Arc<dyn PayloadDecoder>);

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Decoder")
    }
}

/// A payload as JSON text: itself, or what `decoder` makes of a wire-format payload (a JSON
/// text never starts with byte 0, so the two cannot be confused).
pub fn payload_json<'a>(decoder: Option<&Decoder>, payload: &'a [u8]) -> Result<Cow<'a, [u8]>, String> {
    match (decoder, payload.first()) {
        (Some(d), Some(0)) => match d.0.decode(payload) {
            Some(Ok(json)) => Ok(Cow::Owned(json)),
            Some(Err(why)) => Err(why),
            None => Ok(Cow::Borrowed(payload)),
        },
        _ => Ok(Cow::Borrowed(payload)),
    }
}

/// The types of a topic's top-level JSON fields, from a sample of its events, and the field
/// names in the order the sample first showed them.
pub(crate) fn sample_types(
    log: &Log,
    topic: &str,
    decoder: Option<&Decoder>,
) -> Result<(HashMap<String, SqlType>, Vec<String>)> {
    let (events, _) = log.read_topic_events(topic, 0, SAMPLE_EVENTS, false)?;
    let mut types: HashMap<String, Option<SqlType>> = HashMap::new();
    let mut seen = Vec::new();
    for e in &events {
        let json = e.value.as_ref().and_then(|v| payload_json(decoder, v).ok());
        let Some(Value::Struct(fields)) = json.and_then(|v| Value::from_json(&v).ok()) else { continue };
        for (k, v) in fields.iter() {
            let entry = types.entry(k.to_ascii_lowercase()).or_insert_with(|| {
                seen.push(k.clone());
                None
            });
            *entry = SqlType::unify(*entry, SqlType::of(v));
        }
    }
    Ok((types.into_iter().map(|(k, t)| (k, t.unwrap_or(SqlType::Any))).collect(), seen))
}

/// A pseudo-column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pseudo {
    /// ROWTIME.
    RowTime,
    /// ROWKEY.
    RowKey,
    /// ROWPARTITION.
    RowPartition,
    /// ROWOFFSET.
    RowOffset,
    /// ROWSEQUENCE.
    RowSequence,
    /// ROWVERSION.
    RowVersion,
    /// ROWTYPE.
    RowType,
}

impl Pseudo {
    fn lookup(name: &str) -> Option<Pseudo> {
        Some(match name.to_ascii_uppercase().as_str() {
            "ROWTIME" => Pseudo::RowTime,
            "ROWKEY" => Pseudo::RowKey,
            "ROWPARTITION" => Pseudo::RowPartition,
            "ROWOFFSET" => Pseudo::RowOffset,
            "ROWSEQUENCE" => Pseudo::RowSequence,
            "ROWVERSION" => Pseudo::RowVersion,
            "ROWTYPE" => Pseudo::RowType,
            _ => return None,
        })
    }

    fn ty(self) -> SqlType {
        match self {
            Pseudo::RowKey | Pseudo::RowType => SqlType::String,
            _ => SqlType::Bigint,
        }
    }

    fn value(self, e: &Event) -> Value {
        match self {
            Pseudo::RowTime => Value::Int(e.timestamp_ms),
            Pseudo::RowKey => e.key.as_ref().map_or(Value::Null, |k| Value::string(&String::from_utf8_lossy(k))),
            Pseudo::RowPartition => Value::Int(i64::from(e.partition)),
            Pseudo::RowOffset => Value::Int(e.offset as i64),
            Pseudo::RowSequence => Value::Int(e.sequence as i64),
            Pseudo::RowVersion => e.version.map_or(Value::Null, |v| Value::Int(v as i64)),
            Pseudo::RowType => e.event_type().map_or(Value::Null, Value::string),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    Field(usize),
    Pseudo(Pseudo),
}

/// The columns a query reads from a topic's events, and how to fill them.
#[derive(Debug, Clone)]
pub struct EventInput {
    name: String,
    alias: Option<String>,
    fields: Vec<Box<str>>,
    slots: Vec<Slot>,
    types: HashMap<String, SqlType>,
    /// Field names in the order the sample first showed them (for `SELECT *`).
    seen: Vec<String>,
    scratch: Vec<Value>,
    decoder: Option<Decoder>,
}

impl EventInput {
    /// An input over `topic`, typed from a sample of its events.
    pub fn sampled(log: &Log, topic: &str, alias: Option<String>, decoder: Option<Decoder>) -> Result<Self> {
        let (types, seen) = sample_types(log, topic, decoder.as_ref())?;
        Ok(EventInput {
            name: topic.to_string(),
            alias,
            fields: Vec::new(),
            slots: Vec::new(),
            types,
            seen,
            scratch: Vec::new(),
            decoder,
        })
    }

    /// The decoder of wire-format payloads.
    pub fn decoder(&self) -> Option<&Decoder> {
        self.decoder.as_ref()
    }

    /// The number of slots a row has.
    pub fn width(&self) -> usize {
        self.slots.len()
    }

    /// The topic read.
    pub fn topic(&self) -> &str {
        &self.name
    }

    /// Whether the plan reads stream versions (they cost an index lookup per event).
    pub fn needs_versions(&self) -> bool {
        self.slots.iter().any(|s| matches!(s, Slot::Pseudo(Pseudo::RowVersion)))
    }

    /// Fills `row` (of [`EventInput::width`]) from `event`. Errors when the payload is not
    /// a JSON object (the event is parked).
    pub fn fill(&mut self, event: &Event, row: &mut [Value]) -> Result<(), String> {
        if !self.fields.is_empty() {
            self.scratch.resize(self.fields.len(), Value::Null);
            match &event.value {
                Some(v) => {
                    let json = payload_json(self.decoder.as_ref(), v)?;
                    read_fields(&json, &self.fields, &mut self.scratch)
                        .map_err(|e| format!("the payload is not a JSON object: {e}"))?
                }
                None => self.scratch.iter_mut().for_each(|v| *v = Value::Null),
            }
        }
        for (out, slot) in row.iter_mut().zip(&self.slots) {
            *out = match *slot {
                Slot::Field(i) => std::mem::take(&mut self.scratch[i]),
                Slot::Pseudo(p) => p.value(event),
            };
        }
        Ok(())
    }
}

impl Input for EventInput {
    fn column(&mut self, _qualifier: Option<&str>, name: &str) -> Result<Option<(usize, SqlType)>> {
        if let Some(p) = Pseudo::lookup(name) {
            if let Some(i) = self.slots.iter().position(|s| matches!(s, Slot::Pseudo(q) if *q == p)) {
                return Ok(Some((i, p.ty())));
            }
            self.slots.push(Slot::Pseudo(p));
            return Ok(Some((self.slots.len() - 1, p.ty())));
        }
        let ty = self.types.get(&name.to_ascii_lowercase()).copied().unwrap_or(SqlType::Any);
        let existing = self.fields.iter().position(|f| f.eq_ignore_ascii_case(name));
        let field = match existing {
            Some(i) => i,
            None => {
                self.fields.push(name.into());
                self.fields.len() - 1
            }
        };
        if let Some(i) = self.slots.iter().position(|s| matches!(s, Slot::Field(f) if *f == field)) {
            return Ok(Some((i, ty)));
        }
        self.slots.push(Slot::Field(field));
        Ok(Some((self.slots.len() - 1, ty)))
    }

    fn star(&mut self) -> Result<Vec<(String, usize, SqlType)>> {
        if self.seen.is_empty() {
            return Err(crate::error::SqlError::invalid(format!(
                "SELECT * needs events in {:?} to learn its columns: name the columns",
                self.name
            )));
        }
        let mut out = Vec::new();
        for name in self.seen.clone() {
            if let Some((slot, ty)) = self.column(None, &name)? {
                out.push((name, slot, ty));
            }
        }
        Ok(out)
    }

    fn qualifiers(&self) -> Vec<String> {
        let mut q = vec![self.name.clone()];
        q.extend(self.alias.clone());
        q
    }
}

/// A view's rows as the input of a pull query: its columns by name.
#[derive(Debug, Clone)]
pub struct RowInput {
    /// The view's name.
    pub name: String,
    /// Its alias in the query.
    pub alias: Option<String>,
    /// Its columns (name, type).
    pub columns: Vec<(String, SqlType)>,
}

impl Input for RowInput {
    fn column(&mut self, _qualifier: Option<&str>, name: &str) -> Result<Option<(usize, SqlType)>> {
        Ok(self.columns.iter().position(|(n, _)| n.eq_ignore_ascii_case(name)).map(|i| (i, self.columns[i].1)))
    }

    fn star(&mut self) -> Result<Vec<(String, usize, SqlType)>> {
        Ok(self.columns.iter().enumerate().map(|(i, (n, t))| (n.clone(), i, *t)).collect())
    }

    fn qualifiers(&self) -> Vec<String> {
        let mut q = vec![self.name.clone()];
        q.extend(self.alias.clone());
        q
    }
}

/// An event's time for windows: its CloudEvents `ce_time` when it has one (what an HTTP
/// append's `time` sets; RFC 3339), else the record's timestamp (what a Kafka producer sets).
pub fn event_time(e: &Event) -> i64 {
    e.header(evident_core::envelope::CE_TIME)
        .and_then(|t| std::str::from_utf8(t).ok())
        .and_then(|t| crate::functions::parse_time(t).ok())
        .unwrap_or(e.timestamp_ms)
}

/// Reads a type name back (`DESCRIBE` output is what views store of their columns).
pub fn type_named(name: &str) -> SqlType {
    match name {
        "BOOLEAN" => SqlType::Boolean,
        "BIGINT" => SqlType::Bigint,
        "DOUBLE" => SqlType::Double,
        "STRING" => SqlType::String,
        "ARRAY" => SqlType::Array,
        "STRUCT" => SqlType::Struct,
        _ => SqlType::Any,
    }
}
