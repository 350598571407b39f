//! Protobuf schemas: `.proto` text (proto2 or proto3), compiled by `protox` (a pure-Rust
//! compiler) into descriptors that `prost-reflect` reads; or a base64-encoded
//! `FileDescriptorProto`, the form confluent-kafka's `ProtobufSerializer` registers. Imports
//! resolve against the schema's references (by import path) and Google's well-known types.

use std::collections::HashMap;

use base64::Engine;
use prost_reflect::{prost::Message, DescriptorPool, FileDescriptor};
use protox::file::{File, FileResolver, GoogleFileResolver};

use super::{ParseError, ResolvedReference};
use crate::schema::SchemaType;

/// The file name a schema registered as `.proto` text is compiled under. Chosen so that it
/// cannot collide with an import path (those never contain a `<`).
const MAIN_FILE: &str = "<registered>.proto";

/// A parsed Protobuf file.
#[derive(Debug, Clone)]
pub struct ProtobufSchema {
    /// Every file: the schema's, its references' and the well-known types it imports.
    pub pool: DescriptorPool,
    /// The schema's own file.
    pub file: FileDescriptor,
}

impl ProtobufSchema {
    /// The file's descriptor, encoded and base64ed: formatting and comments gone, the same for
    /// the `.proto` text and for the descriptor the text compiles to.
    pub fn canonical(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.descriptor_without_name())
    }

    /// As [`canonical`](Self::canonical): descriptors have no key order to normalize.
    pub fn normalized(&self) -> String {
        self.canonical()
    }

    /// The `FileDescriptorProto` serialized, base64ed: what Confluent's
    /// `GET /schemas/ids/{id}?format=serialized` answers.
    pub fn serialized(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.file.file_descriptor_proto().encode_to_vec())
    }

    /// The descriptor with its file name cleared: a name is where a file was found, not what it
    /// defines, so it must not make two equal schemas different.
    fn descriptor_without_name(&self) -> Vec<u8> {
        let mut proto = self.file.file_descriptor_proto().clone();
        proto.name = None;
        proto.source_code_info = None;
        proto.encode_to_vec()
    }
}

/// The schema's references by import path, then Google's well-known types.
struct Registered {
    files: HashMap<String, File>,
    google: GoogleFileResolver,
}

impl FileResolver for Registered {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        match self.files.get(name) {
            Some(file) => Ok(file.clone()),
            None => self.google.open_file(name),
        }
    }
}

/// Reads a schema text: `.proto` source, or (when it is base64 of a valid `FileDescriptorProto`
/// with a syntax or a package or some definition) a serialized descriptor.
fn source_file(name: &str, text: &str) -> Result<File, protox::Error> {
    if let Some(file) = serialized_descriptor(name, text) {
        return Ok(file);
    }
    File::from_source(name, text)
}

fn serialized_descriptor(name: &str, text: &str) -> Option<File> {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed.contains(char::is_whitespace) {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD.decode(trimmed).ok()?;
    let mut proto = prost_reflect::prost_types::FileDescriptorProto::decode(bytes.as_slice()).ok()?;
    let defines_something = proto.syntax.is_some()
        || proto.package.is_some()
        || !proto.message_type.is_empty()
        || !proto.enum_type.is_empty();
    if !defines_something {
        return None;
    }
    proto.name = Some(name.to_string());
    Some(File::from_file_descriptor_proto(proto))
}

pub(super) fn parse(text: &str, references: &[ResolvedReference]) -> Result<ProtobufSchema, ParseError> {
    let invalid = |e: protox::Error| ParseError::new(SchemaType::Protobuf, e.to_string());
    let mut files = HashMap::with_capacity(references.len() + 1);
    for r in references {
        files.insert(r.name.clone(), source_file(&r.name, &r.schema).map_err(invalid)?);
    }
    files.insert(MAIN_FILE.to_string(), source_file(MAIN_FILE, text).map_err(invalid)?);
    let mut compiler = protox::Compiler::with_file_resolver(Registered { files, google: GoogleFileResolver::new() });
    compiler.include_imports(true);
    compiler.open_file(MAIN_FILE).map_err(invalid)?;
    let pool = compiler.descriptor_pool();
    let file = pool
        .get_file_by_name(MAIN_FILE)
        .unwrap_or_else(|| unreachable!("the compiled file {MAIN_FILE} is in its own pool"));
    Ok(ProtobufSchema { pool, file })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: &str = r#"
        syntax = "proto3";
        package shop;
        import "google/protobuf/timestamp.proto";
        // An order was placed.
        message OrderPlaced {
          string order_id = 1;
          double amount = 2;
          google.protobuf.Timestamp at = 3;
        }"#;

    #[test]
    fn proto_text_and_its_serialized_descriptor_are_the_same_schema() {
        let text = parse(ORDER, &[]).unwrap();
        assert_eq!(text.file.messages().map(|m| m.full_name().to_string()).collect::<Vec<_>>(), ["shop.OrderPlaced"]);
        let from_descriptor = parse(&text.serialized(), &[]).unwrap();
        assert_eq!(text.canonical(), from_descriptor.canonical());
        let reformatted = parse(&ORDER.replace("// An order was placed.", ""), &[]).unwrap();
        assert_eq!(text.canonical(), reformatted.canonical());
    }

    #[test]
    fn invalid_protos_are_refused() {
        let e = parse("syntax = \"proto3\"; message A { strin x = 1; }", &[]).unwrap_err();
        assert_eq!(e.schema_type, SchemaType::Protobuf);
        assert!(parse("message A { string x = 1; ", &[]).is_err());
        assert!(parse("syntax = \"proto3\"; import \"missing.proto\";", &[]).is_err());
    }

    #[test]
    fn imports_resolve_against_references() {
        let money = ResolvedReference {
            name: "shop/money.proto".into(),
            schema_type: SchemaType::Protobuf,
            schema: "syntax = \"proto3\"; package shop; message Money { int64 cents = 1; }".into(),
        };
        let order =
            "syntax = \"proto3\"; package shop; import \"shop/money.proto\"; message Order { Money total = 1; }";
        let parsed = parse(order, &[money]).unwrap();
        assert!(parsed.pool.get_message_by_name("shop.Money").is_some());
    }
}
