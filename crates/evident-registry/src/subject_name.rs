//! Subject name strategies: which registry subject a record's key or value belongs to, so
//! validation knows which subject's ids a record may name. Confluent's three
//! (`TopicNameStrategy`, `RecordNameStrategy`, `TopicRecordNameStrategy`) and evident's
//! event-type strategy, `<topic>-<event type>`, the event type being the record's `ce_type`
//! header ([`evident_core::envelope::CE_TYPE`]): one subject per event type, which is how an
//! event-sourced stream's events evolve (each type on its own).

pub use evident_log::SubjectNameStrategy;

/// Which part of a record a subject is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The record key.
    Key,
    /// The record value.
    Value,
}

impl Part {
    /// `key` or `value`, as the topic strategy's suffix.
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Key => "key",
            Part::Value => "value",
        }
    }
}

/// TopicNameStrategy's subject: `<topic>-key` or `<topic>-value`.
pub fn topic_subject(topic: &str, part: Part) -> String {
    format!("{topic}-{}", part.as_str())
}

/// The event-type strategy's subject: `<topic>-<event type>`.
pub fn event_type_subject(topic: &str, event_type: &str) -> String {
    format!("{topic}-{event_type}")
}

/// The subject `strategy` gives a Kafka record's `part` on `topic`. `record_name` yields the
/// full name of the record the payload's schema describes (asked only by the record
/// strategies); `event_type` is the record's `ce_type` header, if any.
pub fn subject(
    strategy: SubjectNameStrategy,
    topic: &str,
    part: Part,
    record_name: impl FnOnce() -> Result<String, String>,
    event_type: Option<&[u8]>,
) -> Result<String, String> {
    match strategy {
        SubjectNameStrategy::Topic => Ok(topic_subject(topic, part)),
        SubjectNameStrategy::Record => record_name(),
        SubjectNameStrategy::TopicRecord => Ok(format!("{topic}-{}", record_name()?)),
        SubjectNameStrategy::EventType => match event_type.map(std::str::from_utf8) {
            Some(Ok(t)) if !t.is_empty() => Ok(event_type_subject(topic, t)),
            Some(_) => Err(format!(
                "the {} header is not a UTF-8 event type, which the event-type subject strategy needs",
                evident_core::envelope::CE_TYPE
            )),
            None => Err(format!(
                "the record has no {} header, which the event-type subject strategy needs",
                evident_core::envelope::CE_TYPE
            )),
        },
    }
}

/// The subject an HTTP append's JSON event of `event_type` validates against. Unset, the
/// strategy is the event type's (an HTTP event always names its type); the record strategies
/// take the event type as the record's name, since an HTTP event carries no schema of its own.
pub fn http_subject(strategy: Option<SubjectNameStrategy>, topic: &str, event_type: &str) -> String {
    match strategy {
        None | Some(SubjectNameStrategy::EventType) | Some(SubjectNameStrategy::TopicRecord) => {
            event_type_subject(topic, event_type)
        }
        Some(SubjectNameStrategy::Topic) => topic_subject(topic, Part::Value),
        Some(SubjectNameStrategy::Record) => event_type.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named() -> Result<String, String> {
        Ok("shop.OrderPlaced".into())
    }

    #[test]
    fn each_strategy_names_its_subject() {
        use SubjectNameStrategy::*;
        assert_eq!(subject(Topic, "orders", Part::Value, named, None).unwrap(), "orders-value");
        assert_eq!(subject(Topic, "orders", Part::Key, named, None).unwrap(), "orders-key");
        assert_eq!(subject(Record, "orders", Part::Value, named, None).unwrap(), "shop.OrderPlaced");
        assert_eq!(subject(TopicRecord, "orders", Part::Value, named, None).unwrap(), "orders-shop.OrderPlaced");
        assert_eq!(
            subject(EventType, "orders", Part::Value, named, Some(b"OrderPlaced")).unwrap(),
            "orders-OrderPlaced"
        );
        let e = subject(EventType, "orders", Part::Value, named, None).unwrap_err();
        assert!(e.contains("ce_type"), "{e}");
        assert!(subject(EventType, "orders", Part::Value, named, Some(&[0xff])).is_err());
        assert!(subject(Record, "orders", Part::Value, || Err("no name".into()), None).is_err());
    }

    #[test]
    fn http_appends_default_to_the_event_type() {
        assert_eq!(http_subject(None, "bank", "MoneyDeposited"), "bank-MoneyDeposited");
        assert_eq!(http_subject(Some(SubjectNameStrategy::Topic), "bank", "MoneyDeposited"), "bank-value");
        assert_eq!(http_subject(Some(SubjectNameStrategy::Record), "bank", "MoneyDeposited"), "MoneyDeposited");
    }
}
