//! Nested request objects that must be JSON objects. serde's derived `Deserialize` for a
//! struct also accepts a JSON array (the fields by position), which the OpenAPI document does
//! not allow: `"config": []` created a topic with the default configuration (schemathesis,
//! ST201). Fields holding a struct take it through these functions, which read a JSON object
//! (a map) first and only then the struct.

use serde::de::{DeserializeOwned, Error};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

fn from_map<T: DeserializeOwned, E: Error>(map: Map<String, Value>) -> Result<T, E> {
    T::deserialize(Value::Object(map)).map_err(E::custom)
}

/// An optional struct given as a JSON object (or `null`).
pub fn optional<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
    Option::<Map<String, Value>>::deserialize(d)?.map(from_map).transpose()
}

/// A list of structs, each given as a JSON object.
pub fn list<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Vec<T>, D::Error> {
    Vec::<Map<String, Value>>::deserialize(d)?.into_iter().map(from_map).collect()
}

#[cfg(test)]
mod tests {
    use crate::groups::CommitOffsets;
    use crate::topics::CreateTopic;

    #[test]
    fn nested_structs_must_be_objects() {
        let ok: CreateTopic = serde_json::from_str(r#"{"name": "t", "config": {"partitions": 2}}"#).expect("object");
        assert_eq!(ok.config.map(|c| c.partitions), Some(2));
        let null: CreateTopic = serde_json::from_str(r#"{"name": "t", "config": null}"#).expect("null");
        assert!(null.config.is_none());
        assert!(serde_json::from_str::<CreateTopic>(r#"{"name": "t", "config": []}"#).is_err());
        let err = serde_json::from_str::<CreateTopic>(r#"{"name": "t", "config": {"nope": 1}}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        assert!(serde_json::from_str::<CommitOffsets>(r#"{"offsets": [["t", 0, 5]]}"#).is_err());
    }
}
