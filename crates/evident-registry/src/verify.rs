//! `verify=stored`: a candidate schema tried on every stored event of a subject, so an
//! evolution is proven against the history actually kept, not only by the compatibility rules
//! (a JSON Schema property added as optional is rule-compatible, yet a stored event may already
//! hold that property with another type; the rules cannot see it, the stored events can).
//!
//! The events of a subject are the record values of which the subject is the one their topic's
//! value strategy gives ([`crate::subject_name`]): wire-format values (any registered id) are
//! read with the candidate as reader — Avro with the stored id's schema as writer and the
//! candidate as reader (schema resolution), JSON validated against the candidate, Protobuf
//! decoded with the candidate's message of the stored indexes — and for the event-type strategy
//! also JSON events appended over HTTP (no wire format: the `ce_type` header names the subject)
//! validated against the candidate. Keys are not verified. Null values (tombstones) have no
//! schema and are skipped.

use evident_log::{Event, Log, TopicMeta};

use crate::parse::ParsedSchema;
use crate::payload::{self, wire, Invalid};
use crate::source::SchemaSource;
use crate::subject_name::{self, Part, SubjectNameStrategy};

/// Events read from the log per call: bounds the memory one verify holds at a time.
const READ_CHUNK: usize = 1024;

/// A stored event the candidate cannot read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Failure {
    /// Its topic.
    pub topic: String,
    /// Its partition.
    pub partition: u32,
    /// Its offset.
    pub offset: u64,
    /// Why the candidate cannot read it (for JSON, with the failing path).
    pub reason: String,
}

/// What a verify found.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Report {
    /// Events of the subject read with the candidate (up to the last failure reported, when
    /// the verify stopped at `max_failures`).
    pub checked: u64,
    /// The first failures, in log order per partition.
    pub failures: Vec<Failure>,
    /// Whether the verify stopped at `max_failures` before reading every event.
    pub stopped_early: bool,
}

/// Reads every stored event of `subject` with `candidate` and reports the first
/// `max_failures` it cannot read.
pub fn verify_stored(
    log: &Log,
    source: &dyn SchemaSource,
    subject: &str,
    candidate: &ParsedSchema,
    max_failures: usize,
) -> Result<Report, evident_log::Error> {
    // Built once: compiling a JSON Schema costs more than validating an event.
    let validator = match candidate {
        ParsedSchema::Json(s) => {
            Some(payload::json_validator(s).map_err(|e| evident_log::Error::InvalidConfig(e.reason))?)
        }
        _ => None,
    };
    let mut report = Report::default();
    for meta in log.list_topics() {
        let name = meta.name.as_str().to_string();
        if name.starts_with("__") || !may_hold(&meta, subject) {
            continue;
        }
        for offsets in log.topic_offsets(&name)? {
            let mut offset = offsets.log_start_offset;
            while offset < offsets.high_watermark {
                let events = log.read_partition_events(&name, offsets.partition, offset, READ_CHUNK)?;
                let Some(last) = events.last() else { break };
                offset = last.offset + 1;
                for event in &events {
                    let Some(result) = read_one(&meta, source, subject, candidate, validator.as_ref(), event) else {
                        continue;
                    };
                    report.checked += 1;
                    if let Err(e) = result {
                        report.failures.push(Failure {
                            topic: name.clone(),
                            partition: event.partition,
                            offset: event.offset,
                            reason: e.to_string(),
                        });
                        if report.failures.len() >= max_failures {
                            report.stopped_early = true;
                            return Ok(report);
                        }
                    }
                }
            }
        }
    }
    Ok(report)
}

/// Whether `topic`'s strategy can give `subject` (skips reading topics that cannot).
fn may_hold(topic: &TopicMeta, subject: &str) -> bool {
    let name = topic.name.as_str();
    match topic.config.value_subject_name_strategy {
        // Unset: Kafka records name `<topic>-value`, HTTP events `<topic>-<type>`.
        None | Some(SubjectNameStrategy::EventType) | Some(SubjectNameStrategy::TopicRecord) => {
            subject.strip_prefix(name).is_some_and(|rest| rest.starts_with('-'))
        }
        Some(SubjectNameStrategy::Topic) => subject == subject_name::topic_subject(name, Part::Value),
        Some(SubjectNameStrategy::Record) => true,
    }
}

/// The candidate's reading of `event` if it belongs to `subject`, `None` if it does not.
fn read_one(
    topic: &TopicMeta,
    source: &dyn SchemaSource,
    subject: &str,
    candidate: &ParsedSchema,
    validator: Option<&jsonschema::Validator>,
    event: &Event,
) -> Option<Result<(), Invalid>> {
    let value = event.value.as_deref()?;
    let name = topic.name.as_str();
    let strategy = topic.config.value_subject_name_strategy;
    let event_type = event.header(evident_core::envelope::CE_TYPE);
    let Ok((id, body)) = wire::split(value) else {
        // Not wire format: an HTTP JSON event, which belongs to the subject its type names.
        let event_type = std::str::from_utf8(event_type?).ok()?;
        if subject_name::http_subject(strategy, name, event_type) != subject {
            return None;
        }
        return Some(read_json(candidate, validator, value));
    };
    let writer = source.schema_by_id(id)?;
    let own = subject_name::subject(
        strategy.unwrap_or_default(),
        name,
        Part::Value,
        || payload::record_name(&writer, body).map_err(|e| e.reason),
        event_type,
    )
    .ok()?;
    if own != subject {
        return None;
    }
    Some(match (candidate, &*writer) {
        (ParsedSchema::Avro(reader), ParsedSchema::Avro(writer)) => {
            payload::read_avro(writer, Some(reader), body).map(|_| ())
        }
        (ParsedSchema::Json(_), ParsedSchema::Json(_)) => read_json(candidate, validator, body),
        (ParsedSchema::Protobuf(reader), ParsedSchema::Protobuf(_)) => {
            payload::decode_protobuf(reader, body).map(|_| ())
        }
        (c, w) => Err(Invalid {
            reason: format!(
                "written as {} (schema id {id}); a {} schema cannot read it",
                w.schema_type(),
                c.schema_type()
            ),
            path: None,
        }),
    })
}

fn read_json(candidate: &ParsedSchema, validator: Option<&jsonschema::Validator>, body: &[u8]) -> Result<(), Invalid> {
    match validator {
        Some(v) => payload::validate_json(v, body),
        None => Err(Invalid {
            reason: format!("a JSON event; a {} schema cannot read it", candidate.schema_type()),
            path: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use evident_core::batch::BatchBuilder;
    use evident_core::envelope::EventData;
    use evident_log::{LogConfig, TopicConfig};

    use super::*;
    use crate::parse::parse;
    use crate::schema::{SchemaId, SchemaType};
    use crate::validation::MemorySource;

    fn json(text: &str) -> ParsedSchema {
        parse(SchemaType::Json, text, &[]).unwrap()
    }

    #[test]
    fn finds_a_stored_json_event_a_rule_compatible_schema_cannot_read() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), LogConfig::default()).unwrap();
        // The event-type strategy set explicitly: Kafka-produced records (wire format) belong to
        // the subject of their ce_type as HTTP events do.
        let config =
            TopicConfig { value_subject_name_strategy: Some(SubjectNameStrategy::EventType), ..TopicConfig::default() };
        log.create_topic("bank", config).unwrap();
        let v1 = json(r#"{"type":"object","properties":{"amount":{"type":"number"}},"required":["amount"]}"#);
        // Adds `note` as optional: rule-compatible, but one stored event has a numeric note.
        let v2 = json(
            r#"{"type":"object","properties":{"amount":{"type":"number"},"note":{"type":"string"}},"required":["amount"]}"#,
        );
        let source = MemorySource::default();
        source.add("bank-MoneyDeposited", 1, v1.clone());
        let events =
            [r#"{"amount":1}"#, r#"{"amount":2,"note":"rent"}"#, r#"{"amount":3,"note":42}"#, r#"{"amount":4}"#];
        let mut batch = BatchBuilder::new();
        for (i, data) in events.iter().enumerate() {
            batch.push(
                EventData::json(format!("e{i}"), "MoneyDeposited", data.as_bytes().to_vec()).to_record(b"acct-1", 1),
            );
        }
        // An event of another type: another subject, not read.
        batch.push(EventData::json("w", "MoneyWithdrawn", br#"{"note":7}"#.to_vec()).to_record(b"acct-1", 1));
        // A wire-format record (Kafka produced) of the same subject's id 1, also read.
        let mut framed =
            EventData::json("k", "MoneyDeposited", wire::frame(SchemaId(1), br#"{"amount":5,"note":false}"#));
        framed.content_type = None;
        batch.push(framed.to_record(b"acct-2", 1));
        log.append_batch("bank", 0, &batch.build(), None).unwrap();

        let report = verify_stored(&log, &source, "bank-MoneyDeposited", &v2, 10).unwrap();
        assert_eq!(report.checked, 5, "{report:?}");
        assert!(!report.stopped_early);
        let at: Vec<_> = report.failures.iter().map(|f| (f.topic.as_str(), f.partition, f.offset)).collect();
        assert_eq!(at, [("bank", 0, 2), ("bank", 0, 5)], "{report:?}");
        assert!(report.failures[0].reason.contains("/note"), "{}", report.failures[0].reason);

        assert_eq!(verify_stored(&log, &source, "bank-MoneyDeposited", &v1, 10).unwrap().failures, []);
        let first = verify_stored(&log, &source, "bank-MoneyDeposited", &v2, 1).unwrap();
        assert_eq!((first.failures.len(), first.stopped_early), (1, true));
    }

    #[test]
    fn avro_events_are_read_with_the_candidate_as_reader() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), LogConfig::default()).unwrap();
        log.create_topic("orders", TopicConfig::default()).unwrap();
        let v1 =
            parse(SchemaType::Avro, r#"{"type":"record","name":"O","fields":[{"name":"id","type":"string"}]}"#, &[])
                .unwrap();
        let with_default = parse(
            SchemaType::Avro,
            r#"{"type":"record","name":"O","fields":[{"name":"id","type":"string"},{"name":"n","type":"int","default":0}]}"#,
            &[],
        )
        .unwrap();
        let without = parse(
            SchemaType::Avro,
            r#"{"type":"record","name":"O","fields":[{"name":"id","type":"string"},{"name":"n","type":"int"}]}"#,
            &[],
        )
        .unwrap();
        let source = MemorySource::default();
        source.add("orders-value", 1, v1.clone());
        let ParsedSchema::Avro(a) = &v1 else { unreachable!() };
        let datum = apache_avro::writer::datum::GenericDatumWriter::builder(&a.schema)
            .build()
            .unwrap()
            .write_value_to_vec(apache_avro::types::Value::Record(vec![(
                "id".into(),
                apache_avro::types::Value::String("o-1".into()),
            )]))
            .unwrap();
        let mut batch = BatchBuilder::new();
        batch.push_parts(Some(b"k"), Some(&wire::frame(SchemaId(1), &datum)), &[], 1);
        batch.push_parts(Some(b"k"), Some(b"not framed"), &[], 1);
        log.append_batch("orders", 0, &batch.build(), None).unwrap();
        let ok = verify_stored(&log, &source, "orders-value", &with_default, 10).unwrap();
        assert_eq!((ok.checked, ok.failures.len()), (1, 0), "{ok:?}");
        let bad = verify_stored(&log, &source, "orders-value", &without, 10).unwrap();
        assert_eq!(bad.failures.len(), 1, "{bad:?}");
        assert_eq!(bad.failures[0].offset, 0);
        assert!(bad.failures[0].reason.starts_with("cannot be read"), "{}", bad.failures[0].reason);
    }
}
