//! Events as the library sees them: a [`RecordedEvent`] read back from a backend (the same
//! record whichever backend served it), and the JSON codec that turns a user's serde event enum
//! into a CloudEvents record and back.
//!
//! The codec needs no attribute on the user's enum: serde's default (externally tagged)
//! representation of `AccountEvent::MoneyDeposited { amount: 5 }` is
//! `{"MoneyDeposited": {"amount": 5}}`, so the variant name becomes the event type (`ce_type`)
//! and the inner object the payload. Reading reverses it. A `#[serde(rename)]` on a variant
//! renames the stored type.

use evident_core::{Offset, Sequence, Version};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::upcast::Upcasters;
use crate::Error;

/// Header holding the schema version of an event's (or a snapshot's) payload; absent means 1.
pub const SCHEMA_VERSION_HEADER: &str = "evident-schema-version";

/// A record header: name and value (None for a null value).
pub type Header = (String, Option<Vec<u8>>);

/// An event read back from a backend, with its positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Offset in the partition.
    pub offset: Offset,
    /// Store-wide commit sequence.
    pub sequence: Sequence,
    /// Version in its stream (None for a record with a null key).
    pub version: Option<Version>,
    /// The stream key (None for a null key; non-UTF-8 keys are converted lossily).
    pub key: Option<String>,
    /// Event id (`ce_id`).
    pub id: Option<String>,
    /// Event type (`ce_type`).
    pub event_type: Option<String>,
    /// Record timestamp, milliseconds since the epoch.
    pub timestamp_ms: i64,
    /// Headers other than the CloudEvents attributes above, in order.
    pub headers: Vec<Header>,
    /// The payload.
    pub data: Vec<u8>,
}

impl RecordedEvent {
    /// The first header named `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(k, _)| k == name).and_then(|(_, v)| v.as_deref())
    }

    /// The first header named `name`, if it is UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The payload's schema version (the [`SCHEMA_VERSION_HEADER`]; 1 when absent).
    pub fn schema_version(&self) -> Result<u32, Error> {
        match self.header_str(SCHEMA_VERSION_HEADER) {
            None => Ok(1),
            Some(v) => v.parse::<u32>().ok().filter(|&v| v >= 1).ok_or_else(|| {
                Error::Decode(format!("{} holds {SCHEMA_VERSION_HEADER} {v:?}, not a version >= 1", self.position()))
            }),
        }
    }

    /// The stream this event belongs to, as `topic/key` (the topic alone for a null key).
    pub fn stream(&self) -> String {
        match &self.key {
            Some(k) => format!("{}/{k}", self.topic),
            None => self.topic.clone(),
        }
    }

    /// Where the event is, for messages: `topic/partition@offset (sequence n)`.
    pub fn position(&self) -> String {
        format!("{}/{}@{} (sequence {})", self.topic, self.partition, self.offset, self.sequence)
    }

    /// The payload parsed as JSON into `T` (no upcasting; see [`decode`] for typed events).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.data)
            .map_err(|e| Error::Decode(format!("{} is not the JSON expected: {e}", self.position())))
    }
}

/// An event type of an aggregate: a serde enum (or struct) whose variants are the event types.
///
/// Implementing it is one line (`impl DomainEvent for AccountEvent {}`) unless a type's payload
/// has changed shape: then [`DomainEvent::schema_version`] names the current version of that
/// type, and an [`Upcasters`] registry turns stored older versions into it.
pub trait DomainEvent: Serialize + DeserializeOwned + Clone + std::fmt::Debug + Send + Sync + 'static {
    /// The current schema version of the payload of `event_type` (default 1).
    fn schema_version(event_type: &str) -> u32 {
        let _ = event_type;
        1
    }
}

/// An event encoded for appending: its type, schema version and JSON payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Event type (`ce_type`): the serde variant name.
    pub event_type: String,
    /// The payload's schema version.
    pub schema_version: u32,
    /// JSON payload.
    pub data: Vec<u8>,
}

/// Encodes `event` (see the module comment for the mapping).
pub fn encode<E: DomainEvent>(event: &E) -> Result<Encoded, Error> {
    let value = serde_json::to_value(event).map_err(|e| Error::Encode(e.to_string()))?;
    let (event_type, payload) = match value {
        Value::Object(map) if map.len() == 1 => map.into_iter().next().expect("one entry"),
        Value::String(unit_variant) => (unit_variant, Value::Null),
        other => {
            return Err(Error::Encode(format!(
                "an event must serialize as a serde enum variant ({{\"Type\": payload}} or \"Type\"), not {other}"
            )))
        }
    };
    let data = serde_json::to_vec(&payload).map_err(|e| Error::Encode(e.to_string()))?;
    let schema_version = E::schema_version(&event_type);
    Ok(Encoded { event_type, schema_version, data })
}

/// Decodes a recorded event into `E`, upcasting its payload from its stored schema version to
/// the current one first.
pub fn decode<E: DomainEvent>(event: &RecordedEvent, upcasters: &Upcasters) -> Result<E, Error> {
    decode_with(event, upcasters, E::schema_version)
}

/// [`decode`], with the current schema version of each event type given by `current_version`
/// instead of [`DomainEvent::schema_version`] (a repository with registered schemas uses the
/// registered versions).
pub fn decode_with<E: DomainEvent>(
    event: &RecordedEvent,
    upcasters: &Upcasters,
    current_version: impl Fn(&str) -> u32,
) -> Result<E, Error> {
    let event_type = event
        .event_type
        .as_deref()
        .ok_or_else(|| Error::Decode(format!("{} has no ce_type header", event.position())))?;
    let stored = event.schema_version()?;
    let current = current_version(event_type);
    let undecodable = |e: serde_json::Error| {
        Error::Decode(format!("{} ({event_type} v{current}) does not decode: {e}", event.position()))
    };
    let is_null = event.data.is_empty() || event.data.trim_ascii() == b"null";
    if stored == current {
        // The common case: no upcasting, so wrap the payload's bytes as `{"Type": payload}`
        // and deserialize once, without building a JSON tree.
        let key = serde_json::to_string(event_type).map_err(|e| Error::Decode(e.to_string()))?;
        if is_null {
            return serde_json::from_str(&key).map_err(undecodable);
        }
        let mut tagged = Vec::with_capacity(key.len() + event.data.len() + 3);
        tagged.push(b'{');
        tagged.extend_from_slice(key.as_bytes());
        tagged.push(b':');
        tagged.extend_from_slice(&event.data);
        tagged.push(b'}');
        return serde_json::from_slice(&tagged).map_err(undecodable);
    }
    let payload: Value = if is_null {
        Value::Null
    } else {
        serde_json::from_slice(&event.data)
            .map_err(|e| Error::Decode(format!("{} ({event_type}) is not JSON: {e}", event.position())))?
    };
    let payload = upcasters.upcast(event_type, stored, current, payload).map_err(|e| {
        Error::Decode(format!("{} ({event_type} v{stored}) cannot be upcast to v{current}: {e}", event.position()))
    })?;
    let tagged = match payload {
        Value::Null => Value::String(event_type.to_string()),
        payload => {
            let mut map = serde_json::Map::with_capacity(1);
            map.insert(event_type.to_string(), payload);
            Value::Object(map)
        }
    };
    serde_json::from_value(tagged).map_err(undecodable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Ev {
        Opened {
            owner: String,
        },
        Closed,
        #[serde(rename = "money-deposited")]
        Deposited(u64),
    }
    impl DomainEvent for Ev {}

    fn recorded(enc: &Encoded) -> RecordedEvent {
        RecordedEvent {
            topic: "t".into(),
            partition: 0,
            offset: Offset(0),
            sequence: Sequence(0),
            version: Some(Version(0)),
            key: Some("k".into()),
            id: Some("i".into()),
            event_type: Some(enc.event_type.clone()),
            timestamp_ms: 0,
            headers: vec![],
            data: enc.data.clone(),
        }
    }

    #[test]
    fn variants_round_trip_through_type_and_payload() {
        for ev in [Ev::Opened { owner: "ann".into() }, Ev::Closed, Ev::Deposited(5)] {
            let enc = encode(&ev).expect("encodes");
            let back: Ev = decode(&recorded(&enc), &Upcasters::default()).expect("decodes");
            assert_eq!(back, ev);
        }
        let enc = encode(&Ev::Opened { owner: "ann".into() }).expect("encodes");
        assert_eq!(enc.event_type, "Opened");
        assert_eq!(enc.data, br#"{"owner":"ann"}"#);
        assert_eq!(encode(&Ev::Deposited(5)).expect("encodes").event_type, "money-deposited");
    }

    #[test]
    fn a_bad_schema_version_header_is_an_error() {
        let mut e = recorded(&encode(&Ev::Closed).expect("encodes"));
        e.headers.push((SCHEMA_VERSION_HEADER.into(), Some(b"zero".to_vec())));
        assert!(matches!(e.schema_version(), Err(Error::Decode(_))));
    }
}
