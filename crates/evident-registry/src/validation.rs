//! Validation at the store: whether a produced record's key or value, or an HTTP-appended
//! event's data, is data of a schema registered for its subject. The Kafka and HTTP front doors
//! hold one [`Validation`] over the registry's [`SchemaSource`] and ask it per record; what to
//! do with a refusal (refuse the whole batch) is theirs.
//!
//! A Kafka record must be in Confluent's wire format, name a schema id registered (not deleted)
//! under the subject its topic's strategy gives, and decode as that schema's data. A null key
//! or value (a tombstone, a record without a key) has no schema and passes. An HTTP event's
//! data must be JSON valid against the JSON Schema of its subject's latest version.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use crate::parse::ParsedSchema;
use crate::payload::{self, wire};
use crate::schema::SchemaId;
use crate::source::SchemaSource;
use crate::subject_name::{self, Part, SubjectNameStrategy};

/// Most compiled JSON Schema validators kept. Building one costs far more than validating a
/// payload, so they are kept per id (an id's schema never changes); the bound keeps a producer
/// cycling through ids from growing the cache without end.
const VALIDATORS_MAX: usize = 1024;

/// Why a record or event is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The subject the record was checked against, when it could be named.
    pub subject: Option<String>,
    /// What is wrong.
    pub reason: String,
    /// For JSON, the JSON Pointer of the failing instance.
    pub path: Option<String>,
}

impl Refusal {
    fn new(subject: Option<&str>, reason: impl Into<String>) -> Self {
        Self { subject: subject.map(str::to_owned), reason: reason.into(), path: None }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = &self.subject {
            write!(f, "subject {s:?}: ")?;
        }
        f.write_str(&self.reason)?;
        if let Some(p) = &self.path {
            write!(f, " (at {:?})", if p.is_empty() { "/" } else { p })?;
        }
        Ok(())
    }
}

/// Payload validation against the registry.
pub struct Validation {
    source: Arc<dyn SchemaSource>,
    validators: Mutex<HashMap<SchemaId, Arc<jsonschema::Validator>>>,
}

impl fmt::Debug for Validation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Validation").finish_non_exhaustive()
    }
}

impl Validation {
    /// Validation reading schemas from `source`.
    pub fn new(source: Arc<dyn SchemaSource>) -> Self {
        Self { source, validators: Mutex::new(HashMap::new()) }
    }

    /// The registry this validation reads.
    pub fn source(&self) -> &Arc<dyn SchemaSource> {
        &self.source
    }

    /// Checks one part of a Kafka record produced to `topic`: the schema id it names, when it
    /// passes (`None` for a null part). A whole batch is checked faster with [`Self::batch`].
    pub fn check_record(
        &self,
        topic: &str,
        part: Part,
        strategy: SubjectNameStrategy,
        payload: Option<&[u8]>,
        event_type: Option<&[u8]>,
    ) -> Result<Option<SchemaId>, Refusal> {
        self.batch(topic).check_record(part, strategy, payload, event_type)
    }

    /// A checker for the records of one batch produced to `topic`.
    pub fn batch<'v>(&'v self, topic: &'v str) -> BatchCheck<'v> {
        BatchCheck { validation: self, topic, last: [None, None] }
    }

    /// The subject a framed payload names its schema under and that schema, once the id is
    /// found registered under the subject.
    fn resolve(
        &self,
        topic: &str,
        part: Part,
        strategy: SubjectNameStrategy,
        payload: &[u8],
        event_type: Option<&[u8]>,
    ) -> Result<(SchemaId, String, Arc<ParsedSchema>), Refusal> {
        // The subject is named before the payload is looked at where the strategy allows, so
        // the refusal of an unframed payload names it too.
        let early = if subject_from_name_alone(strategy) {
            Some(
                subject_name::subject(strategy, topic, part, || Err(String::new()), event_type)
                    .map_err(|e| Refusal::new(None, e))?,
            )
        } else {
            None
        };
        let (id, body) = wire::split(payload).map_err(|e| Refusal::new(early.as_deref(), e.to_string()))?;
        let schema = self
            .source
            .schema_by_id(id)
            .ok_or_else(|| Refusal::new(early.as_deref(), format!("schema id {id} is not registered")))?;
        let subject = match early {
            Some(s) => s,
            None => subject_name::subject(
                strategy,
                topic,
                part,
                || payload::record_name(&schema, body).map_err(|e| e.reason),
                event_type,
            )
            .map_err(|e| Refusal::new(None, format!("schema id {id}: {e}")))?,
        };
        if !self.source.subject_has_id(&subject, id) {
            return Err(Refusal::new(Some(&subject), format!("schema id {id} is not registered under the subject")));
        }
        Ok((id, subject, schema))
    }

    /// Checks an HTTP-appended JSON event's `data` against the latest schema of its subject
    /// on `topic`; the id of the schema it was validated against.
    pub fn check_event(
        &self,
        topic: &str,
        strategy: Option<SubjectNameStrategy>,
        event_type: &str,
        data: &serde_json::Value,
    ) -> Result<SchemaId, Refusal> {
        let subject = subject_name::http_subject(strategy, topic, event_type);
        let (id, schema) = self
            .source
            .latest(&subject)
            .ok_or_else(|| Refusal::new(Some(&subject), "no schema is registered under the subject"))?;
        if !matches!(*schema, ParsedSchema::Json(_)) {
            return Err(Refusal::new(
                Some(&subject),
                format!(
                    "the subject's latest schema (id {id}) is {}; JSON events validate against JSON Schema only",
                    schema.schema_type()
                ),
            ));
        }
        let validator = self.json_validator(id, &schema).map_err(|e| Refusal::new(Some(&subject), e.reason))?;
        payload::validate_json_value(&validator, data).map_err(|e| Refusal {
            subject: Some(subject.clone()),
            reason: format!("data does not match schema id {id}: {}", e.reason),
            path: e.path,
        })?;
        Ok(id)
    }

    fn check_body(&self, id: SchemaId, schema: &ParsedSchema, body: &[u8]) -> Result<(), payload::Invalid> {
        match schema {
            ParsedSchema::Json(_) => payload::validate_json(&*self.json_validator(id, schema)?, body),
            other => payload::check(other, body, None),
        }
    }

    /// The compiled validator of JSON Schema `id`, built once.
    fn json_validator(
        &self,
        id: SchemaId,
        schema: &ParsedSchema,
    ) -> Result<Arc<jsonschema::Validator>, payload::Invalid> {
        if let Some(v) = self.cached(id) {
            return Ok(v);
        }
        let ParsedSchema::Json(json) = schema else {
            return Err(payload::Invalid { reason: format!("schema id {id} is not a JSON Schema"), path: None });
        };
        let built = Arc::new(payload::json_validator(json)?);
        let mut cache = self.validators.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= VALIDATORS_MAX {
            cache.clear();
        }
        cache.insert(id, built.clone());
        Ok(built)
    }

    fn cached(&self, id: SchemaId) -> Option<Arc<jsonschema::Validator>> {
        self.validators.lock().unwrap_or_else(|p| p.into_inner()).get(&id).cloned()
    }
}

/// Whether `strategy` names the subject from the topic and the event type alone, without
/// looking at the payload's schema.
fn subject_from_name_alone(strategy: SubjectNameStrategy) -> bool {
    matches!(strategy, SubjectNameStrategy::Topic | SubjectNameStrategy::EventType)
}

/// Checks the records of one produced batch ([`Validation::batch`]). The records of a batch
/// nearly always name one schema, so the last schema each part resolved to is kept: a record
/// naming the same id, under a strategy that names the subject from the topic and event type
/// alone (and with the same event type), skips naming the subject and looking the id up, and
/// only its payload is checked. Without that, the lookups cost more than checking an Avro
/// payload does.
pub struct BatchCheck<'v> {
    validation: &'v Validation,
    topic: &'v str,
    /// The last resolution of the key (0) and of the value (1).
    last: [Option<Resolved>; 2],
}

struct Resolved {
    strategy: SubjectNameStrategy,
    event_type: Option<Vec<u8>>,
    id: SchemaId,
    subject: String,
    schema: Arc<ParsedSchema>,
}

impl BatchCheck<'_> {
    /// Checks one part of a record of the batch: the schema id it names, when it passes
    /// (`None` for a null part).
    pub fn check_record(
        &mut self,
        part: Part,
        strategy: SubjectNameStrategy,
        payload: Option<&[u8]>,
        event_type: Option<&[u8]>,
    ) -> Result<Option<SchemaId>, Refusal> {
        let Some(payload) = payload else { return Ok(None) };
        let slot = match part {
            Part::Key => 0,
            Part::Value => 1,
        };
        let known = self.last[slot].as_ref().filter(|r| {
            subject_from_name_alone(strategy)
                && r.strategy == strategy
                && (strategy != SubjectNameStrategy::EventType || r.event_type.as_deref() == event_type)
                && wire::split(payload).is_ok_and(|(id, _)| id == r.id)
        });
        if known.is_none() {
            let (id, subject, schema) = self.validation.resolve(self.topic, part, strategy, payload, event_type)?;
            self.last[slot] =
                Some(Resolved { strategy, event_type: event_type.map(<[u8]>::to_vec), id, subject, schema });
        }
        let r = self.last[slot].as_ref().unwrap_or_else(|| unreachable!("resolved just above"));
        let (_, body) = wire::split(payload).map_err(|e| Refusal::new(Some(&r.subject), e.to_string()))?;
        self.validation.check_body(r.id, &r.schema, body).map_err(|e| Refusal {
            subject: Some(r.subject.clone()),
            reason: format!("payload is not data of schema id {}: {}", r.id, e.reason),
            path: e.path,
        })?;
        Ok(Some(r.id))
    }
}

/// A [`SchemaSource`] held in memory, for tests of the code that validates against a registry
/// (the store's own source is in the store).
#[doc(hidden)]
#[derive(Default)]
pub struct MemorySource {
    schemas: Mutex<Vec<(SchemaId, String, Arc<ParsedSchema>)>>,
}

impl MemorySource {
    /// Registers `schema` under `subject` with `id` (a later one is the subject's latest).
    pub fn add(&self, subject: &str, id: i32, schema: ParsedSchema) {
        self.schemas.lock().unwrap_or_else(|p| p.into_inner()).push((SchemaId(id), subject.into(), Arc::new(schema)));
    }
}

impl SchemaSource for MemorySource {
    fn schema_by_id(&self, id: SchemaId) -> Option<Arc<ParsedSchema>> {
        let all = self.schemas.lock().unwrap_or_else(|p| p.into_inner());
        all.iter().find(|(i, _, _)| *i == id).map(|(_, _, s)| s.clone())
    }

    fn subject_has_id(&self, subject: &str, id: SchemaId) -> bool {
        let all = self.schemas.lock().unwrap_or_else(|p| p.into_inner());
        all.iter().any(|(i, s, _)| *i == id && s == subject)
    }

    fn latest(&self, subject: &str) -> Option<(SchemaId, Arc<ParsedSchema>)> {
        let all = self.schemas.lock().unwrap_or_else(|p| p.into_inner());
        all.iter().rev().find(|(_, s, _)| s == subject).map(|(i, _, p)| (*i, p.clone()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::parse::parse;
    use crate::schema::SchemaType;

    const ORDER_JSON: &str = r#"{"title":"OrderPlaced","type":"object",
        "properties":{"order_id":{"type":"string"},"amount":{"type":"number"}},"required":["order_id"]}"#;
    const ORDER_AVRO: &str = r#"{"type":"record","name":"OrderPlaced","namespace":"shop","fields":[
        {"name":"order_id","type":"string"},{"name":"amount","type":"double"}]}"#;

    fn registry() -> Validation {
        let source = MemorySource::default();
        source.add("orders-value", 1, parse(SchemaType::Json, ORDER_JSON, &[]).unwrap());
        source.add("orders-OrderPlaced", 1, parse(SchemaType::Json, ORDER_JSON, &[]).unwrap());
        source.add("shop.OrderPlaced", 2, parse(SchemaType::Avro, ORDER_AVRO, &[]).unwrap());
        source.add("other-value", 3, parse(SchemaType::Json, r#"{"type":"string"}"#, &[]).unwrap());
        Validation::new(Arc::new(source))
    }

    /// A batch's checker reuses what it resolved only where that cannot change the outcome:
    /// each record is judged as it would be alone.
    #[test]
    fn a_batch_checks_each_record_as_it_would_be_checked_alone() {
        let v = registry();
        let topic = SubjectNameStrategy::Topic;
        let et = SubjectNameStrategy::EventType;
        let good = wire::frame(SchemaId(1), br#"{"order_id":"o-1"}"#);
        let bad = wire::frame(SchemaId(1), br#"{"order_id":7}"#);
        let other = wire::frame(SchemaId(3), b"\"x\"");
        type Record<'a> = (SubjectNameStrategy, &'a [u8], Option<&'a [u8]>);
        let records: [Record; 8] = [
            (topic, &good, None),
            (topic, &bad, None),
            (topic, &good, None),
            (topic, &other, None),
            (topic, b"not framed", None),
            (et, &good, Some(b"OrderPlaced")),
            (et, &good, Some(b"OrderShipped")),
            (et, &good, Some(b"OrderPlaced")),
        ];
        let mut batch = v.batch("orders");
        for (i, (strategy, payload, event_type)) in records.iter().enumerate() {
            let alone = v.batch("orders").check_record(Part::Value, *strategy, Some(payload), *event_type);
            let within = batch.check_record(Part::Value, *strategy, Some(payload), *event_type);
            assert_eq!(within, alone, "record {i}");
        }
        assert!(batch.check_record(Part::Value, topic, Some(&bad), None).is_err());
        assert_eq!(batch.check_record(Part::Key, topic, None, None), Ok(None));
        let e = batch.check_record(Part::Key, topic, Some(&good), None).unwrap_err();
        assert_eq!(e.subject.as_deref(), Some("orders-key"));
    }

    fn avro_order() -> Vec<u8> {
        let ParsedSchema::Avro(s) = parse(SchemaType::Avro, ORDER_AVRO, &[]).unwrap() else { unreachable!() };
        let record = apache_avro::types::Value::Record(vec![
            ("order_id".into(), apache_avro::types::Value::String("o-1".into())),
            ("amount".into(), apache_avro::types::Value::Double(2.0)),
        ]);
        apache_avro::writer::datum::GenericDatumWriter::builder(&s.schema)
            .build()
            .unwrap()
            .write_value_to_vec(record)
            .unwrap()
    }

    #[test]
    fn kafka_records_must_name_a_registered_id_of_their_subject_and_decode() {
        let v = registry();
        let topic = SubjectNameStrategy::Topic;
        let good = wire::frame(SchemaId(1), br#"{"order_id":"o-1","amount":3}"#);
        assert_eq!(v.check_record("orders", Part::Value, topic, Some(&good), None), Ok(Some(SchemaId(1))));
        assert_eq!(v.check_record("orders", Part::Value, topic, None, None), Ok(None), "tombstones pass");

        let e = v.check_record("orders", Part::Value, topic, Some(br#"{"order_id":"o-1"}"#), None).unwrap_err();
        assert_eq!(e.subject.as_deref(), Some("orders-value"));
        assert!(e.reason.contains("magic byte"), "{e}");

        let e = v.check_record("orders", Part::Value, topic, Some(&wire::frame(SchemaId(9), b"{}")), None).unwrap_err();
        assert!(e.reason.contains("schema id 9 is not registered"), "{e}");

        let e =
            v.check_record("orders", Part::Value, topic, Some(&wire::frame(SchemaId(3), b"\"x\"")), None).unwrap_err();
        assert_eq!(e.to_string(), "subject \"orders-value\": schema id 3 is not registered under the subject");

        let bad = wire::frame(SchemaId(1), br#"{"order_id":7}"#);
        let e = v.check_record("orders", Part::Value, topic, Some(&bad), None).unwrap_err();
        assert_eq!(e.path.as_deref(), Some("/order_id"));
        assert!(e.reason.starts_with("payload is not data of schema id 1"), "{e}");
    }

    #[test]
    fn record_and_event_type_strategies() {
        let v = registry();
        let avro = wire::frame(SchemaId(2), &avro_order());
        assert_eq!(
            v.check_record("orders", Part::Value, SubjectNameStrategy::Record, Some(&avro), None),
            Ok(Some(SchemaId(2)))
        );
        let e = v.check_record("orders", Part::Value, SubjectNameStrategy::TopicRecord, Some(&avro), None).unwrap_err();
        assert_eq!(e.subject.as_deref(), Some("orders-shop.OrderPlaced"));
        let mut truncated = avro.clone();
        truncated.pop();
        let e = v.check_record("orders", Part::Value, SubjectNameStrategy::Record, Some(&truncated), None).unwrap_err();
        assert!(e.reason.contains("not valid Avro"), "{e}");

        let json = wire::frame(SchemaId(1), br#"{"order_id":"o-1"}"#);
        let et = SubjectNameStrategy::EventType;
        assert!(v.check_record("orders", Part::Value, et, Some(&json), Some(b"OrderPlaced")).is_ok());
        let e = v.check_record("orders", Part::Value, et, Some(&json), Some(b"OrderShipped")).unwrap_err();
        assert_eq!(e.subject.as_deref(), Some("orders-OrderShipped"));
        assert!(v.check_record("orders", Part::Value, et, Some(&json), None).unwrap_err().reason.contains("ce_type"));
    }

    #[test]
    fn http_events_validate_against_the_latest_json_schema() {
        let v = registry();
        assert_eq!(v.check_event("orders", None, "OrderPlaced", &json!({"order_id": "o-1"})), Ok(SchemaId(1)));
        let e = v.check_event("orders", None, "OrderPlaced", &json!({"order_id": "o-1", "amount": "3"})).unwrap_err();
        assert_eq!(e.path.as_deref(), Some("/amount"));
        assert_eq!(e.subject.as_deref(), Some("orders-OrderPlaced"));
        let e = v.check_event("orders", None, "OrderShipped", &json!({})).unwrap_err();
        assert!(e.reason.contains("no schema is registered"), "{e}");
        let e = v.check_event("x", Some(SubjectNameStrategy::Record), "shop.OrderPlaced", &json!({})).unwrap_err();
        assert!(e.reason.contains("AVRO"), "{e}");
    }
}

#[cfg(test)]
mod deep_payloads {
    use super::*;
    use crate::parse::parse;
    use crate::schema::SchemaType;

    /// A recursive schema lets a payload nest as deep as its bytes allow; the check refuses
    /// it by its depth instead of recursing until the stack overflows (which aborts the whole
    /// server, not only the producer's request).
    #[test]
    fn a_payload_nested_a_million_deep_is_refused_not_a_crash() {
        let source = Arc::new(MemorySource::default());
        let list = r#"{"type":"record","name":"List","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","List"]}]}"#;
        source.add("deep-value", 1, parse(SchemaType::Avro, list, &[]).expect("parses"));
        let v = Validation::new(source);
        let mut body = Vec::new();
        for _ in 0..1_000_000 {
            body.extend_from_slice(&[0, 2]);
        }
        body.extend_from_slice(&[0, 0]);
        let framed = wire::frame(SchemaId(1), &body);
        let e =
            v.check_record("deep", Part::Value, SubjectNameStrategy::Topic, Some(&framed), None).expect_err("refused");
        assert!(e.reason.contains("values nest more than"), "{e}");
    }
}
