//! The registry's vocabulary, spelled as Confluent's REST API spells it: schema formats
//! (`"AVRO"`, `"JSON"`, `"PROTOBUF"`; absent means Avro), references, the seven compatibility
//! levels, the registry modes, schema ids and subject versions.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A schema's format. Confluent's API omits `schemaType` for Avro, and so does ours on output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SchemaType {
    /// Apache Avro (the default when a request names no type).
    #[default]
    #[serde(rename = "AVRO")]
    Avro,
    /// JSON Schema.
    #[serde(rename = "JSON")]
    Json,
    /// Protocol Buffers (proto2 or proto3 `.proto` text, or a base64 `FileDescriptorProto`).
    #[serde(rename = "PROTOBUF")]
    Protobuf,
}

impl SchemaType {
    /// Every format, in the order `GET /schemas/types` lists them (Confluent's order).
    pub const ALL: [SchemaType; 3] = [SchemaType::Json, SchemaType::Protobuf, SchemaType::Avro];

    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaType::Avro => "AVRO",
            SchemaType::Json => "JSON",
            SchemaType::Protobuf => "PROTOBUF",
        }
    }
}

impl fmt::Display for SchemaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SchemaType {
    type Err = String;
    /// Case-insensitive, as Confluent's server accepts `"avro"` and `"AVRO"` alike.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "AVRO" => Ok(SchemaType::Avro),
            "JSON" => Ok(SchemaType::Json),
            "PROTOBUF" => Ok(SchemaType::Protobuf),
            _ => Err(format!("unknown schema type {s:?}: expected AVRO, JSON or PROTOBUF")),
        }
    }
}

/// A schema id: global to the registry, assigned once to a schema's content and never reused,
/// not even after a permanent delete. Confluent's ids are 32-bit signed and start at 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SchemaId(pub i32);

impl fmt::Display for SchemaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A subject and one of its versions (versions start at 1 and are never reused within a
/// subject, even after deletes).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SubjectVersion {
    /// The subject's name.
    pub subject: String,
    /// The version within the subject.
    pub version: i32,
}

/// A reference from one schema to another registered one: `name` is how the referring schema
/// names it (an Avro full name, a JSON Schema `$ref` URL, a Protobuf import path).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Reference {
    /// The name the referring schema uses.
    pub name: String,
    /// The subject holding the referenced schema.
    pub subject: String,
    /// Its version in that subject.
    pub version: i32,
}

/// The seven compatibility levels (Confluent's names). A check compares a candidate schema with
/// the latest version (plain levels) or with every version (`_TRANSITIVE`) of the subject.
#[allow(missing_docs)] // the names are Confluent's; docs/registry.md says what each admits
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Compatibility {
    None,
    #[default]
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

impl Compatibility {
    /// Every level.
    pub const ALL: [Compatibility; 7] = [
        Compatibility::None,
        Compatibility::Backward,
        Compatibility::BackwardTransitive,
        Compatibility::Forward,
        Compatibility::ForwardTransitive,
        Compatibility::Full,
        Compatibility::FullTransitive,
    ];

    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Compatibility::None => "NONE",
            Compatibility::Backward => "BACKWARD",
            Compatibility::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Compatibility::Forward => "FORWARD",
            Compatibility::ForwardTransitive => "FORWARD_TRANSITIVE",
            Compatibility::Full => "FULL",
            Compatibility::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    /// Whether new readers must read data written with the old schemas.
    pub fn backward(self) -> bool {
        matches!(self, Self::Backward | Self::BackwardTransitive | Self::Full | Self::FullTransitive)
    }

    /// Whether old readers must read data written with the new schema.
    pub fn forward(self) -> bool {
        matches!(self, Self::Forward | Self::ForwardTransitive | Self::Full | Self::FullTransitive)
    }

    /// Whether the check covers every version rather than only the latest.
    pub fn transitive(self) -> bool {
        matches!(self, Self::BackwardTransitive | Self::ForwardTransitive | Self::FullTransitive)
    }
}

impl fmt::Display for Compatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Compatibility {
    type Err = String;
    /// Case-insensitive, as Confluent's server accepts it.
    fn from_str(s: &str) -> Result<Self, String> {
        Compatibility::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive (got {s:?})"))
    }
}

/// The registry's mode, globally or per subject (Confluent's `/mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Mode {
    /// Registering and deleting are allowed.
    #[default]
    Readwrite,
    /// Registering and deleting are refused (42205).
    Readonly,
    /// Schemas may be registered with a given id and version (migrations); only into an empty
    /// registry or subject unless forced.
    Import,
}

impl Mode {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Readwrite => "READWRITE",
            Mode::Readonly => "READONLY",
            Mode::Import => "IMPORT",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "READWRITE" => Ok(Mode::Readwrite),
            "READONLY" => Ok(Mode::Readonly),
            "IMPORT" => Ok(Mode::Import),
            _ => Err(format!("Invalid mode {s:?}: expected READWRITE, READONLY or IMPORT")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_case_insensitively() {
        for c in Compatibility::ALL {
            assert_eq!(c.as_str().to_lowercase().parse::<Compatibility>(), Ok(c));
            assert_eq!(serde_json::to_string(&c).unwrap(), format!("\"{}\"", c.as_str()));
        }
        assert!("sideways".parse::<Compatibility>().is_err());
        for t in SchemaType::ALL {
            assert_eq!(t.as_str().to_lowercase().parse::<SchemaType>(), Ok(t));
        }
        assert_eq!("import".parse::<Mode>(), Ok(Mode::Import));
    }

    #[test]
    fn levels_say_which_directions_they_check() {
        assert!(!Compatibility::None.backward() && !Compatibility::None.forward());
        assert!(Compatibility::Full.backward() && Compatibility::Full.forward() && !Compatibility::Full.transitive());
        assert!(Compatibility::ForwardTransitive.forward() && !Compatibility::ForwardTransitive.backward());
    }
}
