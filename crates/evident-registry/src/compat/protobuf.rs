//! Protobuf compatibility, as Confluent's registry decides it (`ProtobufSchemaDiff`): the old
//! and the new file are compared type by type and field by field, each change classified, and
//! the new schema is refused when any change is of an incompatible kind. Fields are matched by
//! number, never by name, because the number is what is on the wire.
//!
//! Compatible: adding or removing a message's optional field (old readers skip unknown numbers,
//! new readers see the default), renaming a field, adding a message or an enum, any change to
//! an enum's constants (a reader keeps unknown enum numbers), adding or removing a oneof,
//! adding a field to a oneof, moving one field into a new oneof, changing a scalar within its
//! wire group: {int32, int64, uint32, uint64, bool, enums}, {sint32, sint64},
//! {string, bytes}, {fixed32, sfixed32}, {fixed64, sfixed64}.
//!
//! Incompatible: changing the package; removing a message (a message index names it); adding
//! or removing a proto2 `required` field; changing a field between scalar, message and map, or
//! across scalar wire groups, or to another message type; removing a field from a oneof;
//! moving several existing fields into one oneof, or a field into a oneof that already had
//! fields. A change is directional only through removal and addition: `can_read(reader,
//! writer)` compares the writer's file (the "original") with the reader's (the "update").

use std::collections::{BTreeMap, BTreeSet, HashSet};

use prost_reflect::{Cardinality, FieldDescriptor, Kind, MessageDescriptor};

use crate::parse::ProtobufSchema;

/// What kind of change one difference is (Confluent's `Difference.Type` names, kept so that
/// the reasons match what users of Confluent's registry search for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    PackageChanged,
    MessageRemoved,
    RequiredFieldAdded,
    RequiredFieldRemoved,
    FieldKindChanged,
    FieldScalarKindChanged,
    FieldNamedTypeChanged,
    OneofFieldRemoved,
    MultipleFieldsMovedToOneof,
    FieldMovedToExistingOneof,
}

impl Change {
    fn name(self) -> &'static str {
        match self {
            Change::PackageChanged => "PACKAGE_CHANGED",
            Change::MessageRemoved => "MESSAGE_REMOVED",
            Change::RequiredFieldAdded => "REQUIRED_FIELD_ADDED",
            Change::RequiredFieldRemoved => "REQUIRED_FIELD_REMOVED",
            Change::FieldKindChanged => "FIELD_KIND_CHANGED",
            Change::FieldScalarKindChanged => "FIELD_SCALAR_KIND_CHANGED",
            Change::FieldNamedTypeChanged => "FIELD_NAMED_TYPE_CHANGED",
            Change::OneofFieldRemoved => "ONEOF_FIELD_REMOVED",
            Change::MultipleFieldsMovedToOneof => "MULTIPLE_FIELDS_MOVED_TO_ONEOF",
            Change::FieldMovedToExistingOneof => "FIELD_MOVED_TO_EXISTING_ONEOF",
        }
    }
}

/// Whether a reader with `reader` reads what `writer` wrote: the writer's file is the original,
/// the reader's the update.
pub(crate) fn can_read(reader: &ProtobufSchema, writer: &ProtobufSchema) -> Result<(), Vec<String>> {
    let mut diff = Diff { problems: Vec::new(), visiting: HashSet::new(), steps: 0 };
    let (old, new) = (&writer.file, &reader.file);
    if old.package_name() != new.package_name() {
        diff.add(Change::PackageChanged, format!("package '{}' became '{}'", old.package_name(), new.package_name()));
    }
    diff.messages(old.messages().collect(), new.messages().collect());
    if diff.steps > super::MAX_STEPS {
        diff.problems = vec![super::too_complex()];
    }
    if diff.problems.is_empty() {
        Ok(())
    } else {
        Err(diff.problems)
    }
}

struct Diff {
    problems: Vec<String>,
    /// Message pairs being compared up the stack (recursive message types).
    visiting: HashSet<(String, String)>,
    /// Comparison steps taken (bounded by [`super::MAX_STEPS`]).
    steps: usize,
}

/// Scalars grouped by wire encoding: within a group a reader decodes what a writer encoded
/// (Protobuf's "updating a message type" rules, as Confluent groups them).
fn scalar_group(kind: &Kind) -> &'static str {
    match kind {
        Kind::Int32 | Kind::Int64 | Kind::Uint32 | Kind::Uint64 | Kind::Bool | Kind::Enum(_) => "varint",
        Kind::Sint32 | Kind::Sint64 => "zigzag varint",
        Kind::String | Kind::Bytes => "length-delimited string/bytes",
        Kind::Fixed32 | Kind::Sfixed32 => "32-bit fixed",
        Kind::Fixed64 | Kind::Sfixed64 => "64-bit fixed",
        Kind::Float => "float",
        Kind::Double => "double",
        Kind::Message(_) => "message",
    }
}

fn type_label(field: &FieldDescriptor) -> String {
    match field.kind() {
        Kind::Message(m) => m.full_name().to_string(),
        Kind::Enum(e) => e.full_name().to_string(),
        k => format!("{k:?}").to_lowercase(),
    }
}

/// The oneof a field really belongs to (proto3 `optional` makes a synthetic one, which is not a
/// oneof on the wire or to Confluent's parser).
fn real_oneof(field: &FieldDescriptor) -> Option<String> {
    field.containing_oneof().filter(|o| !o.is_synthetic()).map(|o| o.name().to_string())
}

/// A message's full name without its package: how Confluent compares message types, so that a
/// type moved with its package is the same type.
fn local_name(m: &MessageDescriptor) -> &str {
    let pkg = m.package_name();
    if pkg.is_empty() {
        m.full_name()
    } else {
        m.full_name().strip_prefix(pkg).and_then(|s| s.strip_prefix('.')).unwrap_or(m.full_name())
    }
}

impl Diff {
    fn add(&mut self, change: Change, what: String) {
        self.problems.push(format!("{what} ({})", change.name()));
    }

    /// Messages of one scope (file or enclosing message), matched by name; map entries are
    /// the compiler's, compared through their map fields.
    fn messages(&mut self, old: Vec<MessageDescriptor>, new: Vec<MessageDescriptor>) {
        for o in old.iter().filter(|m| !m.is_map_entry()) {
            match new.iter().find(|n| n.name() == o.name()) {
                None => self.add(Change::MessageRemoved, format!("message '{}' was removed", o.full_name())),
                Some(n) => self.message(o, n),
            }
        }
    }

    fn message(&mut self, old: &MessageDescriptor, new: &MessageDescriptor) {
        self.steps += 1 + old.fields().len();
        if self.steps > super::MAX_STEPS {
            return;
        }
        let key = (old.full_name().to_string(), new.full_name().to_string());
        if !self.visiting.insert(key.clone()) {
            return;
        }
        let msg = new.full_name().to_string();
        let old_all: BTreeMap<u32, FieldDescriptor> = old.fields().map(|f| (f.number(), f)).collect();
        let new_all: BTreeMap<u32, FieldDescriptor> = new.fields().map(|f| (f.number(), f)).collect();
        let mut old_top: BTreeMap<u32, FieldDescriptor> =
            old.fields().filter(|f| real_oneof(f).is_none()).map(|f| (f.number(), f)).collect();
        let new_top: BTreeMap<u32, FieldDescriptor> =
            new.fields().filter(|f| real_oneof(f).is_none()).map(|f| (f.number(), f)).collect();

        // Oneofs of the new message: at most one existing plain field may move into each, and
        // only into a oneof that is new (else two values could be set where one is allowed).
        let mut new_oneofs: BTreeMap<String, Vec<FieldDescriptor>> = BTreeMap::new();
        for f in new.fields() {
            if let Some(o) = real_oneof(&f) {
                new_oneofs.entry(o).or_default().push(f);
            }
        }
        let mut old_oneofs: BTreeMap<String, Vec<FieldDescriptor>> = BTreeMap::new();
        for f in old.fields() {
            if let Some(o) = real_oneof(&f) {
                old_oneofs.entry(o).or_default().push(f);
            }
        }
        for (name, fields) in &new_oneofs {
            let mut moved = 0;
            let mut existing = 0;
            for f in fields {
                if old_top.remove(&f.number()).is_some() {
                    moved += 1;
                } else if old_all.get(&f.number()).is_some_and(|o| real_oneof(o).is_some()) {
                    existing += 1;
                }
            }
            if moved > 1 {
                self.add(
                    Change::MultipleFieldsMovedToOneof,
                    format!("message '{msg}': {moved} existing fields were moved into oneof '{name}'"),
                );
            } else if moved == 1 && existing > 0 {
                self.add(
                    Change::FieldMovedToExistingOneof,
                    format!("message '{msg}': a field was moved into oneof '{name}', which already held fields"),
                );
            }
        }
        // Oneofs present in both: a member dropped from the whole message loses data a writer
        // may have set as the oneof's only value.
        for (name, old_fields) in &old_oneofs {
            let Some(new_fields) = new_oneofs.get(name) else { continue };
            for of in old_fields {
                match new_fields.iter().find(|nf| nf.number() == of.number()) {
                    Some(nf) => self.field(&msg, of, nf),
                    None if !new_all.contains_key(&of.number()) => self.add(
                        Change::OneofFieldRemoved,
                        format!(
                            "message '{msg}': field {} '{}' was removed from oneof '{name}'",
                            of.number(),
                            of.name()
                        ),
                    ),
                    None => {}
                }
            }
        }
        let tags: BTreeSet<u32> = old_top.keys().chain(new_top.keys()).copied().collect();
        for tag in tags {
            match (old_top.get(&tag), new_top.get(&tag)) {
                (Some(of), None) if of.cardinality() == Cardinality::Required => self.add(
                    Change::RequiredFieldRemoved,
                    format!("message '{msg}': required field {tag} '{}' was removed", of.name()),
                ),
                (None, Some(nf)) if nf.cardinality() == Cardinality::Required => self.add(
                    Change::RequiredFieldAdded,
                    format!("message '{msg}': required field {tag} '{}' was added", nf.name()),
                ),
                (Some(of), Some(nf)) => self.field(&msg, of, nf),
                _ => {}
            }
        }
        // Fields whose oneof membership changed are compared by number too.
        for (tag, of) in &old_all {
            let Some(nf) = new_all.get(tag) else { continue };
            let (oo, no) = (real_oneof(of), real_oneof(nf));
            let compared = (oo.is_none() && no.is_none()) || (oo.is_some() && oo == no);
            if !compared {
                self.field(&msg, of, nf);
            }
        }
        self.messages(old.child_messages().collect(), new.child_messages().collect());
        self.visiting.remove(&key);
    }

    fn field(&mut self, msg: &str, old: &FieldDescriptor, new: &FieldDescriptor) {
        let at = format!("message '{msg}': field {} '{}'", new.number(), new.name());
        self.types(&at, old, new);
    }

    fn types(&mut self, at: &str, old: &FieldDescriptor, new: &FieldDescriptor) {
        let shape = |f: &FieldDescriptor| {
            if f.is_map() {
                "map"
            } else if matches!(f.kind(), Kind::Message(_)) {
                "message"
            } else {
                "scalar"
            }
        };
        if shape(old) != shape(new) {
            self.add(
                Change::FieldKindChanged,
                format!("{at}: changed from {} {} to {} {}", shape(old), type_label(old), shape(new), type_label(new)),
            );
            return;
        }
        match (old.kind(), new.kind()) {
            (Kind::Message(om), Kind::Message(nm)) if old.is_map() => {
                let (ok, nk) = (om.map_entry_key_field(), nm.map_entry_key_field());
                let (ov, nv) = (om.map_entry_value_field(), nm.map_entry_value_field());
                self.types(&format!("{at} (map key)"), &ok, &nk);
                self.types(&format!("{at} (map value)"), &ov, &nv);
            }
            (Kind::Message(om), Kind::Message(nm)) => {
                if local_name(&om) != local_name(&nm) {
                    self.add(
                        Change::FieldNamedTypeChanged,
                        format!("{at}: type changed from {} to {}", om.full_name(), nm.full_name()),
                    );
                } else {
                    let before = self.problems.len();
                    self.message(&om, &nm);
                    if self.problems.len() > before {
                        self.add(
                            Change::FieldNamedTypeChanged,
                            format!("{at}: its type {} changed incompatibly", nm.full_name()),
                        );
                    }
                }
            }
            (ok, nk) => {
                if scalar_group(&ok) != scalar_group(&nk) {
                    self.add(
                        Change::FieldScalarKindChanged,
                        format!(
                            "{at}: type changed from {} to {} ({} and {} are encoded differently on the wire)",
                            type_label(old),
                            type_label(new),
                            scalar_group(&ok),
                            scalar_group(&nk)
                        ),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse, ParsedSchema};
    use crate::schema::SchemaType;

    fn proto(text: &str) -> ProtobufSchema {
        match parse(SchemaType::Protobuf, text, &[]).unwrap() {
            ParsedSchema::Protobuf(p) => p,
            other => unreachable!("{other:?}"),
        }
    }

    #[test]
    fn map_values_are_compared_and_map_entries_are_not_messages() {
        let a = proto("syntax = \"proto3\"; message M { map<string, int32> counts = 1; }");
        let b = proto("syntax = \"proto3\"; message M { map<string, int64> counts = 1; }");
        let c = proto("syntax = \"proto3\"; message M { map<string, string> counts = 1; }");
        assert!(can_read(&b, &a).is_ok());
        let err = can_read(&c, &a).unwrap_err();
        assert_eq!(err.len(), 1, "{err:?}");
        assert!(err[0].contains("(map value)") && err[0].contains("FIELD_SCALAR_KIND_CHANGED"), "{err:?}");
    }

    #[test]
    fn proto3_optional_is_a_plain_field_not_a_oneof() {
        let a = proto("syntax = \"proto3\"; message M { int32 a = 1; int32 b = 2; }");
        let b = proto("syntax = \"proto3\"; message M { optional int32 a = 1; optional int32 b = 2; }");
        assert!(can_read(&b, &a).is_ok());
        assert!(can_read(&a, &b).is_ok());
    }

    #[test]
    fn a_recursive_message_terminates() {
        let a = proto("syntax = \"proto3\"; message Node { int32 v = 1; repeated Node kids = 2; }");
        let b = proto("syntax = \"proto3\"; message Node { string v = 1; repeated Node kids = 2; }");
        let err = can_read(&b, &a).unwrap_err();
        assert!(err.iter().any(|e| e.contains("field 1 'v'")), "{err:?}");
    }

    #[test]
    fn an_exponentially_shared_message_is_refused_within_the_step_budget() {
        let mut text = String::from("syntax = \"proto3\"; message M0 { int32 v = 1; }");
        for i in 1..=40 {
            text.push_str(&format!(" message M{i} {{ M{p} a = 1; M{p} b = 2; }}", p = i - 1));
        }
        let s = proto(&text);
        let started = std::time::Instant::now();
        let err = can_read(&s, &s).unwrap_err();
        assert_eq!(err, [crate::compat::too_complex()]);
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
    }
}
