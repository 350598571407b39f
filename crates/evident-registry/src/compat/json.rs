//! JSON Schema compatibility, as Confluent's registry decides it (`JsonSchemaDiff`): the old
//! schema (the writer's, "original") and the new one (the reader's, "update") are walked
//! together, every difference is classified, and the reader is refused when one of them is of
//! an incompatible kind. The question each rule answers: does every document valid under the
//! writer's schema stay valid under the reader's?
//!
//! The rules that surprise most are the content-model ones. An object schema is *open* when it
//! admits properties it does not name (`additionalProperties` absent or `true`, no
//! `patternProperties`), *closed* when `additionalProperties` is `false`, *partially open*
//! when additional properties must match a schema. Adding a property to an open writer is
//! incompatible (old documents may already carry that name with any value) unless the new
//! property's schema is `{}`; adding an optional property to a closed writer is compatible,
//! a required one only with a default. Removing a property is compatible when the reader is
//! open and incompatible when it is closed (unless the writer's property was `false`).
//! Narrowing (number to integer, a smaller enum, a tighter bound, a new `pattern`, a new
//! `required`) is incompatible; widening (integer to number, a type added to a union, an
//! enum value added, a bound relaxed or dropped) compatible.
//!
//! Schemas are read the way Confluent's parser (everit) reads them: `type` alone gives a typed
//! schema; several keyword groups (`type` with `enum`, `allOf` beside `properties`, ...) a
//! synthetic `allOf`; a `type` array an `anyOf` of typed schemas; `true`/`{}` the empty schema.
//! `$ref` resolves within the document and to registered references; recursion stops where a
//! pair of schemas is already being compared.

use std::cell::Cell;
use std::collections::HashSet;
use std::rc::Rc;

use serde_json::{Map, Value};

use crate::parse::JsonSchema;

/// A difference's kind (Confluent's `Difference.Type` names) and whether it is compatible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)]
enum Change {
    TypeChanged,
    TypeExtended,
    TypeNarrowed,
    SchemaAdded,
    SchemaRemoved,
    MaxLengthAdded,
    MaxLengthDecreased,
    MinLengthAdded,
    MinLengthIncreased,
    PatternAdded,
    PatternChanged,
    MaximumAdded,
    MaximumDecreased,
    MinimumAdded,
    MinimumIncreased,
    ExclusiveMaximumAdded,
    ExclusiveMaximumDecreased,
    ExclusiveMinimumAdded,
    ExclusiveMinimumIncreased,
    MultipleOfAdded,
    MultipleOfChanged,
    RequiredAttributeAdded,
    MaxPropertiesAdded,
    MaxPropertiesDecreased,
    MinPropertiesAdded,
    MinPropertiesIncreased,
    AdditionalPropertiesRemoved,
    AdditionalPropertiesNarrowed,
    PropertyAddedToOpenContentModel,
    RequiredPropertyAddedToUnopenContentModel,
    PropertyRemovedFromClosedContentModel,
    PropertyAddedNotCoveredByPartiallyOpenContentModel,
    PropertyRemovedNotCoveredByPartiallyOpenContentModel,
    DependencyArrayAdded,
    DependencyArrayExtended,
    DependencyArrayChanged,
    DependencySchemaAdded,
    MaxItemsAdded,
    MaxItemsDecreased,
    MinItemsAdded,
    MinItemsIncreased,
    UniqueItemsAdded,
    AdditionalItemsRemoved,
    AdditionalItemsNarrowed,
    ItemAddedToOpenContentModel,
    ItemRemovedFromClosedContentModel,
    EnumArrayNarrowed,
    EnumArrayChanged,
    ConstChanged,
    CombinedTypeChanged,
    ProductTypeExtended,
    SumTypeNarrowed,
    CombinedTypeSubschemasChanged,
    NotTypeExtended,
    /// Every compatible kind (the reason text never needs to tell them apart).
    Compatible,
}

impl Change {
    fn compatible(self) -> bool {
        matches!(self, Change::Compatible | Change::TypeExtended | Change::SchemaRemoved)
    }

    /// Confluent's name, and what it means for data.
    fn describe(self) -> (&'static str, &'static str) {
        use Change::*;
        match self {
            TypeChanged => ("TYPE_CHANGED", "the type changed"),
            TypeExtended => ("TYPE_EXTENDED", "the type was widened"),
            TypeNarrowed => ("TYPE_NARROWED", "the type was narrowed (number to integer)"),
            SchemaAdded => ("SCHEMA_ADDED", "a schema now constrains what was unconstrained"),
            SchemaRemoved => ("SCHEMA_REMOVED", "a constraint was removed"),
            MaxLengthAdded => ("MAX_LENGTH_ADDED", "maxLength was added"),
            MaxLengthDecreased => ("MAX_LENGTH_DECREASED", "maxLength was lowered"),
            MinLengthAdded => ("MIN_LENGTH_ADDED", "minLength was added"),
            MinLengthIncreased => ("MIN_LENGTH_INCREASED", "minLength was raised"),
            PatternAdded => ("PATTERN_ADDED", "a pattern was added"),
            PatternChanged => ("PATTERN_CHANGED", "the pattern changed"),
            MaximumAdded => ("MAXIMUM_ADDED", "maximum was added"),
            MaximumDecreased => ("MAXIMUM_DECREASED", "maximum was lowered"),
            MinimumAdded => ("MINIMUM_ADDED", "minimum was added"),
            MinimumIncreased => ("MINIMUM_INCREASED", "minimum was raised"),
            ExclusiveMaximumAdded => ("EXCLUSIVE_MAXIMUM_ADDED", "exclusiveMaximum was added"),
            ExclusiveMaximumDecreased => ("EXCLUSIVE_MAXIMUM_DECREASED", "exclusiveMaximum was lowered"),
            ExclusiveMinimumAdded => ("EXCLUSIVE_MINIMUM_ADDED", "exclusiveMinimum was added"),
            ExclusiveMinimumIncreased => ("EXCLUSIVE_MINIMUM_INCREASED", "exclusiveMinimum was raised"),
            MultipleOfAdded => ("MULTIPLE_OF_ADDED", "multipleOf was added"),
            MultipleOfChanged => {
                ("MULTIPLE_OF_CHANGED", "multipleOf changed to a value the old one does not divide into")
            }
            RequiredAttributeAdded => {
                ("REQUIRED_ATTRIBUTE_ADDED", "an existing property became required without a default")
            }
            MaxPropertiesAdded => ("MAX_PROPERTIES_ADDED", "maxProperties was added"),
            MaxPropertiesDecreased => ("MAX_PROPERTIES_DECREASED", "maxProperties was lowered"),
            MinPropertiesAdded => ("MIN_PROPERTIES_ADDED", "minProperties was added"),
            MinPropertiesIncreased => ("MIN_PROPERTIES_INCREASED", "minProperties was raised"),
            AdditionalPropertiesRemoved => {
                ("ADDITIONAL_PROPERTIES_REMOVED", "the reader closed a content model the writer left open")
            }
            AdditionalPropertiesNarrowed => {
                ("ADDITIONAL_PROPERTIES_NARROWED", "additional properties must now match a schema")
            }
            PropertyAddedToOpenContentModel => (
                "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL",
                "the writer's open content model admits this property with any value",
            ),
            RequiredPropertyAddedToUnopenContentModel => (
                "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL",
                "a required property without a default was added; the writer never wrote it",
            ),
            PropertyRemovedFromClosedContentModel => (
                "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL",
                "the reader's closed content model refuses a property the writer wrote",
            ),
            PropertyAddedNotCoveredByPartiallyOpenContentModel => (
                "PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
                "the property's schema is narrower than the writer's additionalProperties",
            ),
            PropertyRemovedNotCoveredByPartiallyOpenContentModel => (
                "PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
                "the reader's additionalProperties does not admit the removed property's values",
            ),
            DependencyArrayAdded => ("DEPENDENCY_ARRAY_ADDED", "a property dependency was added"),
            DependencyArrayExtended => ("DEPENDENCY_ARRAY_EXTENDED", "a property dependency was extended"),
            DependencyArrayChanged => ("DEPENDENCY_ARRAY_CHANGED", "a property dependency changed"),
            DependencySchemaAdded => ("DEPENDENCY_SCHEMA_ADDED", "a schema dependency was added"),
            MaxItemsAdded => ("MAX_ITEMS_ADDED", "maxItems was added"),
            MaxItemsDecreased => ("MAX_ITEMS_DECREASED", "maxItems was lowered"),
            MinItemsAdded => ("MIN_ITEMS_ADDED", "minItems was added"),
            MinItemsIncreased => ("MIN_ITEMS_INCREASED", "minItems was raised"),
            UniqueItemsAdded => ("UNIQUE_ITEMS_ADDED", "uniqueItems was added"),
            AdditionalItemsRemoved => ("ADDITIONAL_ITEMS_REMOVED", "additional items are no longer allowed"),
            AdditionalItemsNarrowed => ("ADDITIONAL_ITEMS_NARROWED", "additional items must now match a schema"),
            ItemAddedToOpenContentModel => {
                ("ITEM_ADDED_TO_OPEN_CONTENT_MODEL", "a tuple item was added where the writer admitted any item")
            }
            ItemRemovedFromClosedContentModel => {
                ("ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL", "a tuple item was removed from a closed tuple")
            }
            EnumArrayNarrowed => ("ENUM_ARRAY_NARROWED", "enum values the writer may write were removed"),
            EnumArrayChanged => ("ENUM_ARRAY_CHANGED", "the enum's values changed"),
            ConstChanged => ("CONST_CHANGED", "the const value changed"),
            CombinedTypeChanged => ("COMBINED_TYPE_CHANGED", "the combination (allOf/anyOf/oneOf) changed"),
            ProductTypeExtended => ("PRODUCT_TYPE_EXTENDED", "allOf gained a subschema"),
            SumTypeNarrowed => ("SUM_TYPE_NARROWED", "anyOf/oneOf lost a subschema"),
            CombinedTypeSubschemasChanged => {
                ("COMBINED_TYPE_SUBSCHEMAS_CHANGED", "the subschemas do not pair up compatibly")
            }
            NotTypeExtended => ("NOT_TYPE_EXTENDED", "the 'not' schema now excludes more"),
            Compatible => ("COMPATIBLE", "compatible"),
        }
    }
}

/// Whether a reader with `reader` accepts every document valid under `writer`.
pub(crate) fn can_read(reader: &JsonSchema, writer: &JsonSchema) -> Result<(), Vec<String>> {
    let old = Doc { root: &writer.schema, references: &writer.references };
    let new = Doc { root: &reader.schema, references: &reader.references };
    let mut ctx = Ctx::default();
    ctx.compare(old, new, Some(&writer.schema), Some(&reader.schema), "#", 0);
    if ctx.steps.get() > super::MAX_STEPS {
        return Err(vec![super::too_complex()]);
    }
    let problems: Vec<String> = ctx
        .diffs
        .iter()
        .filter(|(_, c)| !c.compatible())
        .map(|(path, c)| {
            let (name, what) = c.describe();
            format!("{path}: {what} ({name})")
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Where `$ref`s resolve: the document a schema is part of, and the registered references.
#[derive(Clone, Copy)]
struct Doc<'a> {
    root: &'a Value,
    references: &'a [(String, Value)],
}

impl<'a> Doc<'a> {
    /// The schema a `$ref` names, and the document it lives in.
    fn resolve(self, reference: &str) -> Option<(Doc<'a>, &'a Value)> {
        let (file, pointer) = match reference.split_once('#') {
            Some((file, pointer)) => (file, pointer),
            None => (reference, ""),
        };
        let doc = if file.is_empty() {
            self
        } else {
            let found = self.references.iter().find(|(name, _)| {
                file == name || file.strip_suffix(name.as_str()).is_some_and(|head| head.ends_with('/'))
            })?;
            Doc { root: &found.1, references: self.references }
        };
        let target = if pointer.is_empty() { doc.root } else { doc.root.pointer(pointer)? };
        Some((doc, target))
    }
}

/// How deep schemas may nest before the comparison stops (a registered schema is bounded, but
/// a deep one must not exhaust the stack).
const MAX_DEPTH: usize = 64;

#[derive(Default)]
struct Ctx {
    diffs: Vec<(String, Change)>,
    /// `$ref` target pairs being compared up the stack (recursive schemas).
    visiting: HashSet<(usize, usize)>,
    /// Comparison steps taken, shared with sub-contexts (bounded by [`super::MAX_STEPS`]).
    steps: Rc<Cell<usize>>,
}

/// The shape of one schema, as everit reads it (children stay raw JSON, read when compared).
enum Node<'a> {
    Empty,
    False,
    Null,
    Boolean,
    String(&'a Map<String, Value>),
    Number { map: &'a Map<String, Value>, integer: bool },
    Object(&'a Map<String, Value>),
    Array(&'a Map<String, Value>),
    Enum(&'a Vec<Value>),
    Const(&'a Value),
    Combined { criterion: &'static str, subs: Vec<Node<'a>> },
    Not(&'a Value),
    Ref(&'a str),
}

impl Node<'_> {
    fn class(&self) -> &'static str {
        match self {
            Node::Empty => "empty",
            Node::False => "false",
            Node::Null => "null",
            Node::Boolean => "boolean",
            Node::String(_) => "string",
            Node::Number { .. } => "number",
            Node::Object(_) => "object",
            Node::Array(_) => "array",
            Node::Enum(_) => "enum",
            Node::Const(_) => "const",
            Node::Combined { .. } => "combined",
            Node::Not(_) => "not",
            Node::Ref(_) => "ref",
        }
    }
}

const OBJECT_KEYWORDS: [&str; 7] = [
    "properties",
    "additionalProperties",
    "required",
    "patternProperties",
    "minProperties",
    "maxProperties",
    "dependencies",
];
const ARRAY_KEYWORDS: [&str; 6] = ["items", "additionalItems", "minItems", "maxItems", "uniqueItems", "prefixItems"];
const STRING_KEYWORDS: [&str; 3] = ["minLength", "maxLength", "pattern"];
const NUMBER_KEYWORDS: [&str; 5] = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"];

fn typed<'a>(t: &str, map: &'a Map<String, Value>) -> Node<'a> {
    match t {
        "string" => Node::String(map),
        "integer" => Node::Number { map, integer: true },
        "number" => Node::Number { map, integer: false },
        "boolean" => Node::Boolean,
        "null" => Node::Null,
        "object" => Node::Object(map),
        "array" => Node::Array(map),
        _ => Node::Empty,
    }
}

fn node(v: &Value) -> Node<'_> {
    let map = match v {
        Value::Bool(true) => return Node::Empty,
        Value::Bool(false) => return Node::False,
        Value::Object(map) => map,
        _ => return Node::Empty,
    };
    if let Some(Value::String(r)) = map.get("$ref") {
        return Node::Ref(r);
    }
    let mut groups = Vec::new();
    match map.get("type") {
        Some(Value::String(t)) => groups.push(typed(t, map)),
        Some(Value::Array(ts)) => {
            let subs: Vec<Node<'_>> = ts.iter().filter_map(Value::as_str).map(|t| typed(t, map)).collect();
            groups.push(if subs.len() == 1 {
                subs.into_iter().next().unwrap_or(Node::Empty)
            } else {
                Node::Combined { criterion: "anyOf", subs }
            });
        }
        _ => {
            let has = |keys: &[&str]| keys.iter().any(|k| map.contains_key(*k));
            if has(&OBJECT_KEYWORDS) {
                groups.push(Node::Object(map));
            }
            if has(&ARRAY_KEYWORDS) {
                groups.push(Node::Array(map));
            }
            if has(&STRING_KEYWORDS) {
                groups.push(Node::String(map));
            }
            if has(&NUMBER_KEYWORDS) {
                groups.push(Node::Number { map, integer: false });
            }
        }
    }
    if let Some(Value::Array(values)) = map.get("enum") {
        groups.push(Node::Enum(values));
    }
    if let Some(c) = map.get("const") {
        groups.push(Node::Const(c));
    }
    for criterion in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(subs)) = map.get(criterion) {
            groups.push(Node::Combined { criterion, subs: subs.iter().map(node).collect() });
        }
    }
    if let Some(not) = map.get("not") {
        groups.push(Node::Not(not));
    }
    match groups.len() {
        0 => Node::Empty,
        1 => groups.pop().unwrap_or(Node::Empty),
        _ => Node::Combined { criterion: "allOf", subs: groups },
    }
}

fn num(map: &Map<String, Value>, key: &str) -> Option<f64> {
    map.get(key).and_then(Value::as_f64)
}

fn has_default(v: &Value) -> bool {
    v.get("default").is_some()
}

/// Classifies a change of an optional upper bound (`max*`): adding or lowering narrows.
fn upper(old: Option<f64>, new: Option<f64>, added: Change, decreased: Change) -> Option<Change> {
    match (old, new) {
        (None, Some(_)) => Some(added),
        (Some(o), Some(n)) if n < o => Some(decreased),
        (Some(o), n) if n != Some(o) => Some(Change::Compatible),
        _ => None,
    }
}

/// Classifies a change of an optional lower bound (`min*`): adding or raising narrows.
fn lower(old: Option<f64>, new: Option<f64>, added: Change, increased: Change) -> Option<Change> {
    match (old, new) {
        (None, Some(_)) => Some(added),
        (Some(o), Some(n)) if n > o => Some(increased),
        (Some(o), n) if n != Some(o) => Some(Change::Compatible),
        _ => None,
    }
}

/// Additional properties (or items): absent/true open, false closed, else a schema.
enum Extra<'a> {
    Open,
    Closed,
    Schema(&'a Value),
}

fn extra<'a>(map: &'a Map<String, Value>, key: &str) -> Extra<'a> {
    match map.get(key) {
        None | Some(Value::Bool(true)) => Extra::Open,
        Some(Value::Bool(false)) => Extra::Closed,
        Some(v) => Extra::Schema(v),
    }
}

fn pattern_properties(map: &Map<String, Value>) -> Vec<(&str, &Value)> {
    match map.get("patternProperties") {
        Some(Value::Object(p)) => p.iter().map(|(k, v)| (k.as_str(), v)).collect(),
        _ => Vec::new(),
    }
}

fn is_open(map: &Map<String, Value>) -> bool {
    pattern_properties(map).is_empty() && matches!(extra(map, "additionalProperties"), Extra::Open)
}

/// The schema a partially open object gives a property it does not name: the first matching
/// `patternProperties` entry, else `additionalProperties` when it is a schema.
fn partial_schema<'a>(map: &'a Map<String, Value>, property: &str) -> Option<&'a Value> {
    for (pattern, schema) in pattern_properties(map) {
        // An invalid regex never matches (the parser's meta-schema check keeps them rare).
        if regex_find(pattern, property) {
            return Some(schema);
        }
    }
    match extra(map, "additionalProperties") {
        Extra::Schema(v) => Some(v),
        _ => None,
    }
}

/// ECMA-262-ish `find`: `jsonschema` already depends on `fancy-regex`/`regex`, but the crate
/// is not a dependency here; the common anchored literal-prefix patterns are handled, anything
/// else is treated as matching (the conservative reading: the property is covered, and its
/// schema is compared against the pattern's).
fn regex_find(pattern: &str, s: &str) -> bool {
    let p = pattern.strip_suffix(".*").unwrap_or(pattern);
    if let Some(prefix) = p.strip_prefix('^') {
        if prefix.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-') {
            return s.starts_with(prefix);
        }
    }
    true
}

fn props(map: &Map<String, Value>) -> Vec<(&str, &Value)> {
    match map.get("properties") {
        Some(Value::Object(p)) => p.iter().map(|(k, v)| (k.as_str(), v)).collect(),
        _ => Vec::new(),
    }
}

fn required(map: &Map<String, Value>) -> Vec<&str> {
    match map.get("required") {
        Some(Value::Array(r)) => r.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

impl Ctx {
    fn add(&mut self, path: &str, change: Change) {
        self.diffs.push((path.to_string(), change));
    }

    fn is_compatible(&self) -> bool {
        self.diffs.iter().all(|(_, c)| c.compatible())
    }

    fn sub(&self) -> Ctx {
        Ctx { diffs: Vec::new(), visiting: self.visiting.clone(), steps: Rc::clone(&self.steps) }
    }

    /// Compares two raw schemas (either may be absent).
    fn compare(
        &mut self,
        od: Doc<'_>,
        nd: Doc<'_>,
        old: Option<&Value>,
        new: Option<&Value>,
        path: &str,
        depth: usize,
    ) {
        match (old, new) {
            (None, None) => {}
            (None, Some(_)) => self.add(path, Change::SchemaAdded),
            (Some(_), None) => self.add(path, Change::SchemaRemoved),
            (Some(o), Some(n)) => self.compare_nodes(od, nd, node(o), node(n), path, depth),
        }
    }

    fn compare_nodes<'a>(&mut self, od: Doc<'a>, nd: Doc<'a>, old: Node<'a>, new: Node<'a>, path: &str, depth: usize) {
        self.steps.set(self.steps.get() + 1);
        if depth > MAX_DEPTH || self.steps.get() > super::MAX_STEPS {
            return;
        }
        // References are followed (Confluent's `normalizeSchema`), once per pair of targets.
        if matches!(old, Node::Ref(_)) || matches!(new, Node::Ref(_)) {
            let (od2, ov) = match old {
                Node::Ref(r) => match od.resolve(r) {
                    Some(x) => x,
                    None => return,
                },
                _ => (od, od.root),
            };
            let old_key = if matches!(old, Node::Ref(_)) { ov as *const Value as usize } else { node_ptr(&old) };
            let (nd2, nv) = match new {
                Node::Ref(r) => match nd.resolve(r) {
                    Some(x) => x,
                    None => return,
                },
                _ => (nd, nd.root),
            };
            let new_key = if matches!(new, Node::Ref(_)) { nv as *const Value as usize } else { node_ptr(&new) };
            let key = (old_key, new_key);
            if !self.visiting.insert(key) {
                return;
            }
            let o = if matches!(old, Node::Ref(_)) { node(ov) } else { old };
            let n = if matches!(new, Node::Ref(_)) { node(nv) } else { new };
            self.compare_nodes(od2, nd2, o, n, path, depth + 1);
            self.visiting.remove(&key);
            return;
        }
        let old_combined = matches!(old, Node::Combined { .. });
        let new_combined = matches!(new, Node::Combined { .. });
        if !old_combined {
            if let Node::Combined { criterion, subs } = &new {
                if subs.len() == 1 || *criterion != "allOf" {
                    // A singleton union, or a union that gained branches around the old type.
                    for sub in subs {
                        let mut sc = self.sub();
                        sc.compare_nodes(od, nd, node_clone(&old), node_clone(sub), path, depth + 1);
                        if sc.is_compatible() {
                            self.diffs.extend(sc.diffs);
                            if subs.len() > 1 {
                                self.add(path, Change::Compatible);
                            }
                            return;
                        }
                    }
                }
            }
        } else if !new_combined {
            if let Node::Combined { subs, .. } = &old {
                if subs.len() == 1 {
                    let mut sc = self.sub();
                    sc.compare_nodes(od, nd, node_clone(&subs[0]), node_clone(&new), path, depth + 1);
                    if sc.is_compatible() {
                        self.diffs.extend(sc.diffs);
                        return;
                    }
                }
            }
        }
        if old.class() != new.class() {
            if !matches!(old, Node::False) && !matches!(new, Node::Empty) {
                self.add(path, Change::TypeChanged);
            }
            return;
        }
        match (old, new) {
            (Node::String(o), Node::String(n)) => {
                self.bound(
                    path,
                    upper(num(o, "maxLength"), num(n, "maxLength"), Change::MaxLengthAdded, Change::MaxLengthDecreased),
                );
                self.bound(
                    path,
                    lower(num(o, "minLength"), num(n, "minLength"), Change::MinLengthAdded, Change::MinLengthIncreased),
                );
                match (o.get("pattern"), n.get("pattern")) {
                    (None, Some(_)) => self.add(&format!("{path}/pattern"), Change::PatternAdded),
                    (Some(a), Some(b)) if a != b => self.add(&format!("{path}/pattern"), Change::PatternChanged),
                    _ => {}
                }
            }
            (Node::Number { map: o, integer: oi }, Node::Number { map: n, integer: ni }) => {
                self.bound(
                    path,
                    upper(num(o, "maximum"), num(n, "maximum"), Change::MaximumAdded, Change::MaximumDecreased),
                );
                self.bound(
                    path,
                    lower(num(o, "minimum"), num(n, "minimum"), Change::MinimumAdded, Change::MinimumIncreased),
                );
                self.bound(
                    path,
                    upper(
                        num(o, "exclusiveMaximum"),
                        num(n, "exclusiveMaximum"),
                        Change::ExclusiveMaximumAdded,
                        Change::ExclusiveMaximumDecreased,
                    ),
                );
                self.bound(
                    path,
                    lower(
                        num(o, "exclusiveMinimum"),
                        num(n, "exclusiveMinimum"),
                        Change::ExclusiveMinimumAdded,
                        Change::ExclusiveMinimumIncreased,
                    ),
                );
                match (num(o, "multipleOf"), num(n, "multipleOf")) {
                    (None, Some(_)) => self.add(&format!("{path}/multipleOf"), Change::MultipleOfAdded),
                    // A reader's multipleOf that divides the writer's admits all the writer's values.
                    (Some(a), Some(b)) if a != b && (a / b).fract() != 0.0 => {
                        self.add(&format!("{path}/multipleOf"), Change::MultipleOfChanged)
                    }
                    _ => {}
                }
                if oi != ni {
                    self.add(path, if oi { Change::TypeExtended } else { Change::TypeNarrowed });
                }
            }
            (Node::Enum(o), Node::Enum(n)) if o != n => {
                let change = if o.iter().all(|v| n.contains(v)) {
                    Change::Compatible
                } else if n.iter().all(|v| o.contains(v)) {
                    Change::EnumArrayNarrowed
                } else {
                    Change::EnumArrayChanged
                };
                self.add(&format!("{path}/enum"), change);
            }
            (Node::Const(o), Node::Const(n)) if o != n => self.add(&format!("{path}/const"), Change::ConstChanged),
            (Node::Not(o), Node::Not(n)) => {
                // The reader must exclude no more than the writer: compare the other way round.
                let mut sc = self.sub();
                sc.compare(nd, od, Some(n), Some(o), &format!("{path}/not"), depth + 1);
                if !sc.is_compatible() {
                    self.add(&format!("{path}/not"), Change::NotTypeExtended);
                }
            }
            (Node::Combined { criterion: oc, subs: os }, Node::Combined { criterion: nc, subs: ns }) => {
                self.combined(od, nd, (oc, os), (nc, ns), path, depth);
            }
            (Node::Object(o), Node::Object(n)) => self.object(od, nd, o, n, path, depth),
            (Node::Array(o), Node::Array(n)) => self.array(od, nd, o, n, path, depth),
            _ => {}
        }
    }

    fn bound(&mut self, path: &str, change: Option<Change>) {
        if let Some(c) = change {
            self.add(path, c);
        }
    }

    fn combined<'a>(
        &mut self,
        od: Doc<'a>,
        nd: Doc<'a>,
        (oc, os): (&'static str, Vec<Node<'a>>),
        (nc, ns): (&'static str, Vec<Node<'a>>),
        path: &str,
        depth: usize,
    ) {
        if oc != nc {
            let extended = match nc {
                "anyOf" => true,
                "oneOf" => os.len() == 1,
                _ => os.len() == 1 && ns.len() == 1,
            };
            if !extended {
                self.add(path, Change::CombinedTypeChanged);
                return;
            }
        }
        if os.len() < ns.len() && nc == "allOf" {
            self.add(path, Change::ProductTypeExtended);
        } else if os.len() > ns.len() && nc != "allOf" {
            self.add(path, Change::SumTypeNarrowed);
        }
        // Pair old and new subschemas compatibly (maximum bipartite matching).
        let mut edges = vec![Vec::new(); os.len()];
        let mut found: Vec<Vec<Vec<(String, Change)>>> = vec![vec![Vec::new(); ns.len()]; os.len()];
        for (i, o) in os.iter().enumerate() {
            for (j, n) in ns.iter().enumerate() {
                let mut sc = self.sub();
                sc.compare_nodes(od, nd, node_clone(o), node_clone(n), &format!("{path}/{oc}/{i}"), depth + 1);
                if sc.is_compatible() {
                    edges[i].push(j);
                    found[i][j] = sc.diffs;
                }
            }
        }
        let matched = max_matching(&edges, ns.len());
        for (j, i) in matched.iter().enumerate() {
            if let Some(i) = i {
                self.diffs.append(&mut found[*i][j]);
            }
        }
        if matched.iter().flatten().count() < os.len().min(ns.len()) {
            self.add(path, Change::CombinedTypeSubschemasChanged);
        }
    }

    fn object<'a>(
        &mut self,
        od: Doc<'a>,
        nd: Doc<'a>,
        o: &'a Map<String, Value>,
        n: &'a Map<String, Value>,
        path: &str,
        depth: usize,
    ) {
        let (op, np) = (props(o), props(n));
        let (or, nr) = (required(o), required(n));
        for (name, _) in &op {
            if let Some((_, nv)) = np.iter().find(|(k, _)| k == name) {
                if !or.contains(name) && nr.contains(name) && !has_default(nv) {
                    self.add(&format!("{path}/required/{name}"), Change::RequiredAttributeAdded);
                }
            }
        }
        for (name, ov) in &op {
            let at = format!("{path}/properties/{name}");
            match np.iter().find(|(k, _)| k == name) {
                Some((_, nv)) => self.compare(od, nd, Some(ov), Some(nv), &at, depth + 1),
                None if is_open(n) => {}
                None => match partial_schema(n, name) {
                    Some(partial) => {
                        let mut sc = self.sub();
                        sc.compare(od, nd, Some(ov), Some(partial), &at, depth + 1);
                        let ok = sc.is_compatible();
                        self.diffs.extend(sc.diffs);
                        if !ok {
                            self.add(&at, Change::PropertyRemovedNotCoveredByPartiallyOpenContentModel);
                        }
                    }
                    None if matches!(ov, Value::Bool(false)) => {}
                    None => self.add(&at, Change::PropertyRemovedFromClosedContentModel),
                },
            }
        }
        for (name, nv) in &np {
            if op.iter().any(|(k, _)| k == name) {
                continue;
            }
            let at = format!("{path}/properties/{name}");
            if is_open(o) {
                if !matches!(node(nv), Node::Empty) {
                    self.add(&at, Change::PropertyAddedToOpenContentModel);
                }
                continue;
            }
            if let Some(partial) = partial_schema(o, name) {
                let mut sc = self.sub();
                sc.compare(od, nd, Some(partial), Some(nv), &at, depth + 1);
                let ok = sc.is_compatible();
                self.diffs.extend(sc.diffs);
                if !ok {
                    self.add(&at, Change::PropertyAddedNotCoveredByPartiallyOpenContentModel);
                }
            }
            if nr.contains(name) && !has_default(nv) {
                self.add(&at, Change::RequiredPropertyAddedToUnopenContentModel);
            }
        }
        self.dependencies(od, nd, o, n, path, depth);
        let at = format!("{path}/additionalProperties");
        match (extra(o, "additionalProperties"), extra(n, "additionalProperties")) {
            (Extra::Closed, Extra::Closed) | (Extra::Open, Extra::Open) => {}
            (Extra::Closed, _) => {}
            (_, Extra::Closed) => self.add(&at, Change::AdditionalPropertiesRemoved),
            (Extra::Open, Extra::Schema(_)) => self.add(&at, Change::AdditionalPropertiesNarrowed),
            (Extra::Schema(_), Extra::Open) => {}
            (Extra::Schema(a), Extra::Schema(b)) => self.compare(od, nd, Some(a), Some(b), &at, depth + 1),
        }
        self.bound(
            path,
            upper(
                num(o, "maxProperties"),
                num(n, "maxProperties"),
                Change::MaxPropertiesAdded,
                Change::MaxPropertiesDecreased,
            ),
        );
        self.bound(
            path,
            lower(
                num(o, "minProperties"),
                num(n, "minProperties"),
                Change::MinPropertiesAdded,
                Change::MinPropertiesIncreased,
            ),
        );
    }

    fn dependencies<'a>(
        &mut self,
        od: Doc<'a>,
        nd: Doc<'a>,
        o: &'a Map<String, Value>,
        n: &'a Map<String, Value>,
        path: &str,
        depth: usize,
    ) {
        let empty = Map::new();
        let od_map = o.get("dependencies").and_then(Value::as_object).unwrap_or(&empty);
        let nd_map = n.get("dependencies").and_then(Value::as_object).unwrap_or(&empty);
        let names: Vec<&String> = od_map.keys().chain(nd_map.keys().filter(|k| !od_map.contains_key(*k))).collect();
        for name in names {
            let at = format!("{path}/dependencies/{name}");
            match (od_map.get(name), nd_map.get(name)) {
                (Some(Value::Array(a)), Some(Value::Array(b))) => {
                    if a != b {
                        if b.iter().all(|x| a.contains(x)) {
                            self.add(&at, Change::Compatible);
                        } else if a.iter().all(|x| b.contains(x)) {
                            self.add(&at, Change::DependencyArrayExtended);
                        } else {
                            self.add(&at, Change::DependencyArrayChanged);
                        }
                    }
                }
                (None, Some(Value::Array(_))) => self.add(&at, Change::DependencyArrayAdded),
                (None, Some(_)) => self.add(&at, Change::DependencySchemaAdded),
                (Some(_), None) => {}
                (Some(a), Some(b)) => self.compare(od, nd, Some(a), Some(b), &at, depth + 1),
                (None, None) => {}
            }
        }
    }

    fn array<'a>(
        &mut self,
        od: Doc<'a>,
        nd: Doc<'a>,
        o: &'a Map<String, Value>,
        n: &'a Map<String, Value>,
        path: &str,
        depth: usize,
    ) {
        let single = |m: &'a Map<String, Value>| m.get("items").filter(|v| !v.is_array());
        let tuple = |m: &'a Map<String, Value>| -> Vec<&'a Value> {
            match m.get("prefixItems").or_else(|| m.get("items")) {
                Some(Value::Array(items)) => items.iter().collect(),
                _ => Vec::new(),
            }
        };
        self.compare(od, nd, single(o), single(n), &format!("{path}/items"), depth + 1);
        let (ot, nt) = (tuple(o), tuple(n));
        for (i, (a, b)) in ot.iter().zip(nt.iter()).enumerate() {
            self.compare(od, nd, Some(a), Some(b), &format!("{path}/items/{i}"), depth + 1);
        }
        let additional = |m: &'a Map<String, Value>| {
            if m.contains_key("prefixItems") {
                extra(m, "items")
            } else {
                extra(m, "additionalItems")
            }
        };
        let tuple_open = |m: &'a Map<String, Value>| matches!(additional(m), Extra::Open);
        for (i, removed) in ot.iter().enumerate().skip(nt.len()) {
            let at = format!("{path}/items/{i}");
            match additional(n) {
                Extra::Open => {}
                Extra::Schema(s) => self.compare(od, nd, Some(removed), Some(s), &at, depth + 1),
                Extra::Closed if matches!(removed, Value::Bool(false)) => {}
                Extra::Closed => self.add(&at, Change::ItemRemovedFromClosedContentModel),
            }
        }
        for (i, added) in nt.iter().enumerate().skip(ot.len()) {
            let at = format!("{path}/items/{i}");
            if tuple_open(o) {
                if !matches!(node(added), Node::Empty) {
                    self.add(&at, Change::ItemAddedToOpenContentModel);
                }
            } else if let Extra::Schema(s) = additional(o) {
                self.compare(od, nd, Some(s), Some(added), &at, depth + 1);
            }
        }
        if !ot.is_empty() || !nt.is_empty() {
            let at = format!("{path}/additionalItems");
            match (additional(o), additional(n)) {
                (Extra::Closed, _) | (Extra::Open, Extra::Open) | (Extra::Schema(_), Extra::Open) => {}
                (_, Extra::Closed) => self.add(&at, Change::AdditionalItemsRemoved),
                (Extra::Open, Extra::Schema(_)) => self.add(&at, Change::AdditionalItemsNarrowed),
                (Extra::Schema(a), Extra::Schema(b)) => self.compare(od, nd, Some(a), Some(b), &at, depth + 1),
            }
        }
        self.bound(
            path,
            upper(num(o, "maxItems"), num(n, "maxItems"), Change::MaxItemsAdded, Change::MaxItemsDecreased),
        );
        self.bound(
            path,
            lower(num(o, "minItems"), num(n, "minItems"), Change::MinItemsAdded, Change::MinItemsIncreased),
        );
        let unique = |m: &Map<String, Value>| m.get("uniqueItems").and_then(Value::as_bool).unwrap_or(false);
        if !unique(o) && unique(n) {
            self.add(path, Change::UniqueItemsAdded);
        }
    }
}

/// The address of the JSON a node was read from (0 for the keyword-less ones), to recognise
/// a pair of schemas already being compared.
fn node_ptr(n: &Node<'_>) -> usize {
    match n {
        Node::String(m) | Node::Object(m) | Node::Array(m) | Node::Number { map: m, .. } => {
            *m as *const Map<String, Value> as usize
        }
        Node::Enum(v) => *v as *const Vec<Value> as usize,
        Node::Const(v) | Node::Not(v) => *v as *const Value as usize,
        _ => 0,
    }
}

/// Nodes borrow the document; a cheap structural copy for trying one pairing.
fn node_clone<'a>(n: &Node<'a>) -> Node<'a> {
    match n {
        Node::Empty => Node::Empty,
        Node::False => Node::False,
        Node::Null => Node::Null,
        Node::Boolean => Node::Boolean,
        Node::String(m) => Node::String(m),
        Node::Number { map, integer } => Node::Number { map, integer: *integer },
        Node::Object(m) => Node::Object(m),
        Node::Array(m) => Node::Array(m),
        Node::Enum(v) => Node::Enum(v),
        Node::Const(v) => Node::Const(v),
        Node::Combined { criterion, subs } => Node::Combined { criterion, subs: subs.iter().map(node_clone).collect() },
        Node::Not(v) => Node::Not(v),
        Node::Ref(r) => Node::Ref(r),
    }
}

/// Maximum bipartite matching (Kuhn's augmenting paths): `edges[i]` lists the right vertices
/// left vertex `i` may pair with; the answer gives each right vertex its left partner.
fn max_matching(edges: &[Vec<usize>], right: usize) -> Vec<Option<usize>> {
    fn augment(i: usize, edges: &[Vec<usize>], seen: &mut [bool], owner: &mut [Option<usize>]) -> bool {
        for &j in &edges[i] {
            if seen[j] {
                continue;
            }
            seen[j] = true;
            if owner[j].is_none_or(|k| augment(k, edges, seen, owner)) {
                owner[j] = Some(i);
                return true;
            }
        }
        false
    }
    let mut owner = vec![None; right];
    for i in 0..edges.len() {
        let mut seen = vec![false; right];
        augment(i, edges, &mut seen, &mut owner);
    }
    owner
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse, ParsedSchema, ResolvedReference};
    use crate::schema::SchemaType;

    fn json(text: &str, refs: &[ResolvedReference]) -> JsonSchema {
        match parse(SchemaType::Json, text, refs).unwrap() {
            ParsedSchema::Json(j) => j,
            other => unreachable!("{other:?}"),
        }
    }

    #[test]
    fn a_recursive_schema_terminates_and_changes_inside_it_are_seen() {
        let tree = |leaf: &str| {
            format!(
                r##"{{"type":"object","properties":{{"v":{{"type":"{leaf}"}},"kids":{{"type":"array","items":{{"$ref":"#"}}}}}}}}"##
            )
        };
        let (int, num) = (json(&tree("integer"), &[]), json(&tree("number"), &[]));
        assert!(can_read(&num, &int).is_ok());
        let err = can_read(&int, &num).unwrap_err();
        assert!(err.iter().all(|e| e.contains("TYPE_NARROWED")), "{err:?}");
    }

    #[test]
    fn references_are_followed_into_registered_documents() {
        let money = |t: &str| ResolvedReference {
            name: "money.json".into(),
            schema_type: SchemaType::Json,
            schema: format!(r#"{{"type":"object","properties":{{"cents":{{"type":"{t}"}}}}}}"#),
        };
        let order = r#"{"type":"object","properties":{"total":{"$ref":"money.json"}}}"#;
        let (a, b) = (json(order, &[money("integer")]), json(order, &[money("string")]));
        let err = can_read(&b, &a).unwrap_err();
        assert_eq!(err, ["#/properties/total/properties/cents: the type changed (TYPE_CHANGED)"]);
    }

    #[test]
    fn matching_pairs_subschemas_whatever_their_order() {
        let a = json(r#"{"oneOf":[{"type":"string"},{"type":"integer"}]}"#, &[]);
        let b = json(r#"{"oneOf":[{"type":"number"},{"type":"string"}]}"#, &[]);
        assert!(can_read(&b, &a).is_ok());
        assert!(can_read(&a, &b).is_err(), "number narrowed back to integer");
    }

    #[test]
    fn exponentially_nested_unions_are_refused_within_the_step_budget() {
        // s_i = anyOf of three references to s_{i-1}: 9^20 pairings without a bound.
        let mut defs = serde_json::Map::new();
        defs.insert("s0".into(), serde_json::json!({"type": "string"}));
        for i in 1..=20 {
            let r = serde_json::json!({"$ref": format!("#/definitions/s{}", i - 1)});
            defs.insert(format!("s{i}"), serde_json::json!({"anyOf": [r, r, r]}));
        }
        let doc = serde_json::json!({"definitions": defs, "$ref": "#/definitions/s20"});
        let s = json(&doc.to_string(), &[]);
        let started = std::time::Instant::now();
        let err = can_read(&s, &s).unwrap_err();
        assert_eq!(err, [crate::compat::too_complex()]);
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
    }
}
