//! Names and positions. Each is a newtype so that an offset is never passed where a version or a
//! commit sequence is expected: the three are all `u64` underneath and all count events, but
//! from different origins (a partition, a stream, the whole store).

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("topic name is empty")]
    Empty,
    /// The name is longer than Kafka allows.
    #[error("topic name is {len} bytes long; at most {max} are allowed")]
    TooLong {
        /// Length of the refused name.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The name holds a character outside `[a-zA-Z0-9._-]`.
    #[error("topic name {name:?} holds {bad:?}; only ASCII letters, digits, '.', '_' and '-' are allowed")]
    BadCharacter {
        /// The refused name.
        name: String,
        /// The first offending character.
        bad: char,
    },
    /// `.` and `..` are refused because they are path components.
    #[error("topic name {0:?} is reserved")]
    Reserved(String),
}

/// A topic name, validated with Kafka's rules (1 to 249 characters of `[a-zA-Z0-9._-]`, not `.`
/// or `..`) so that every evident topic is also a valid Kafka topic.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TopicName(Arc<str>); // shared: every event read carries its topic's name

impl TopicName {
    /// Kafka's limit on a topic name's length.
    pub const LEN_MAX: usize = 249;

    /// Validates `name`.
    pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
        let name = name.into();
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.len() > Self::LEN_MAX {
            return Err(NameError::TooLong { len: name.len(), max: Self::LEN_MAX });
        }
        if name == "." || name == ".." {
            return Err(NameError::Reserved(name));
        }
        if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
            return Err(NameError::BadCharacter { name, bad });
        }
        Ok(Self(name.into()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TopicName {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<TopicName> for String {
    fn from(value: TopicName) -> Self {
        value.0.to_string()
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A partition of a topic, numbered from 0. Kafka encodes it as `int32`; evident never has a
/// negative partition.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub struct PartitionId(pub u32);

/// The position of a record in its partition: dense, from 0, never reused.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default, Serialize, Deserialize)]
pub struct Offset(pub u64);

/// The 0-based position of an event in its entity stream (topic + key).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default, Serialize, Deserialize)]
pub struct Version(pub u64);

/// The store-wide commit sequence: every event of every topic gets the next number when it
/// commits, gapless, so "everything after sequence N" is a deterministic question.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default, Serialize, Deserialize)]
pub struct Sequence(pub u64);

macro_rules! display_inner {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    )*};
}
display_inner!(PartitionId, Offset, Version, Sequence);

macro_rules! position_next {
    ($($t:ty),*) => {$(
        impl $t {
            /// The position just after this one (positions count events, so "from the next
            /// one" is `+ 1` without leaving the type).
            pub const fn next(self) -> Self {
                Self(self.0 + 1)
            }
        }
    )*};
}
position_next!(Offset, Version, Sequence);

/// The key of an entity stream: the Kafka record key, as bytes. Keys are usually UTF-8 entity
/// ids, but Kafka allows any bytes, so evident does too.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct StreamKey(pub Bytes);

impl StreamKey {
    /// Kafka has no limit on key size; evident caps it so that the in-memory stream index
    /// stays bounded by what a peer can send.
    pub const LEN_MAX: usize = 4096;

    /// A key from a string.
    pub fn from_str_key(key: &str) -> Self {
        Self(Bytes::copy_from_slice(key.as_bytes()))
    }
}

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(s) => f.write_str(s),
            Err(_) => {
                for b in self.0.iter() {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(TopicName::new("bank-account.events_v2").is_ok());
        assert_eq!(TopicName::new(""), Err(NameError::Empty));
        assert!(matches!(TopicName::new("a b"), Err(NameError::BadCharacter { bad: ' ', .. })));
        assert!(matches!(TopicName::new("..".to_string()), Err(NameError::Reserved(_))));
        assert!(matches!(TopicName::new("x".repeat(250)), Err(NameError::TooLong { len: 250, .. })));
        assert!(TopicName::new("x".repeat(249)).is_ok());
    }

    #[test]
    fn positions_step_and_display_as_their_number() {
        assert_eq!(Version(4).next(), Version(5));
        assert_eq!(Sequence(0).next().to_string(), "1");
        assert!(Offset(9).next() > Offset(9));
    }

    #[test]
    fn binary_keys_display_as_hex() {
        assert_eq!(StreamKey(Bytes::from_static(&[0xff, 0x01])).to_string(), "ff01");
        assert_eq!(StreamKey::from_str_key("acct-1").to_string(), "acct-1");
    }
}
