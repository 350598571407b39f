//! Avro compatibility: Avro's schema resolution, checked the way Confluent's registry checks it
//! (its `AvroSchema.isBackwardCompatible` runs Apache Avro Java's `SchemaCompatibility`), written
//! here over `apache-avro`'s parsed [`Schema`] rather than delegated to the crate's own
//! `SchemaCompatibility::can_read`, because that one departs from the Java rules the registry
//! clients expect:
//! - it answers `Partial` (which a caller easily mistakes for success) when an enum loses a
//!   symbol or a union loses a branch; Java refuses both (`MISSING_ENUM_SYMBOLS`,
//!   `MISSING_UNION_BRANCH`);
//! - it ignores a named type's reader aliases (Java accepts a renamed record whose reader lists
//!   the writer's full name among its aliases);
//! - it compares two references to named types by name only and never resolves them, so a
//!   change inside a type defined once and used twice (or defined by a registered reference)
//!   goes unseen;
//! - it checks decimal precision and scale, which Java's resolution (and so Confluent) does
//!   not: resolution is on the underlying types, logical types are annotations.
//!
//! The rules (Avro specification, "Schema Resolution"; Java `SchemaCompatibility`):
//! same kinds match (records, enums and fixed also by unqualified name or reader alias; fixed by
//! size); the promotions int→long→float→double and string↔bytes; a writer union needs every
//! branch readable; a reader union needs some branch that reads the writer; a reader record's
//! field is found in the writer by its name, then by its aliases, and needs a default when
//! absent; an enum needs every writer symbol unless the reader declares a default.

use std::collections::{HashMap, HashSet};

use apache_avro::schema::{DecimalSchema, EnumSchema, FixedSchema, InnerDecimalSchema, RecordSchema, UuidSchema};
use apache_avro::Schema;

use crate::parse::AvroSchema;

/// Whether a reader holding `reader` reads everything written with `writer`; the reasons when not.
pub(crate) fn can_read(reader: &AvroSchema, writer: &AvroSchema) -> Result<(), Vec<String>> {
    let mut checker = Checker {
        reader_names: named_types(&reader.schema, &reader.references),
        writer_names: named_types(&writer.schema, &writer.references),
        in_progress: HashSet::new(),
        steps: 0,
    };
    let mut problems = Vec::new();
    checker.check(&reader.schema, &writer.schema, "", &mut problems);
    if checker.steps > super::MAX_STEPS {
        problems = vec![super::too_complex()];
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Every named type a schema defines (its own and its references'), by full name and by alias,
/// so that a `Schema::Ref` resolves to its definition.
fn named_types<'a>(schema: &'a Schema, references: &'a [Schema]) -> HashMap<String, &'a Schema> {
    fn walk<'a>(s: &'a Schema, enclosing: Option<&str>, out: &mut HashMap<String, &'a Schema>) {
        let aliases = match s {
            Schema::Record(r) => &r.aliases,
            Schema::Enum(e) => &e.aliases,
            Schema::Fixed(f) | Schema::Duration(f) => &f.aliases,
            _ => &None,
        };
        // A type defined inside a record inherits the record's namespace when it names none.
        let mut namespace = enclosing.map(str::to_string);
        if let Schema::Ref { .. } = s {
            return;
        }
        if let Some(name) = s.name() {
            let full = name.fullname(enclosing);
            if out.contains_key(&full) {
                return;
            }
            out.insert(full.clone(), s);
            namespace = full.rsplit_once('.').map(|(ns, _)| ns.to_string());
            for alias in aliases.iter().flatten() {
                out.entry(alias.fullname(namespace.as_deref())).or_insert(s);
            }
        }
        let ns = namespace.as_deref();
        match s {
            Schema::Record(r) => r.fields.iter().for_each(|f| walk(&f.schema, ns, out)),
            Schema::Array(a) => walk(&a.items, ns, out),
            Schema::Map(m) => walk(&m.types, ns, out),
            Schema::Union(u) => u.variants().iter().for_each(|v| walk(v, ns, out)),
            _ => {}
        }
    }
    let mut out = HashMap::new();
    for s in references.iter().chain(std::iter::once(schema)) {
        walk(s, None, &mut out);
    }
    out
}

/// A schema reduced to what resolution looks at: logical types are their underlying types, and
/// references are resolved.
#[derive(Clone, Copy)]
enum Kind<'a> {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Array(&'a Schema),
    Map(&'a Schema),
    Union(&'a [Schema]),
    Record(&'a RecordSchema),
    Enum(&'a EnumSchema),
    Fixed(&'a FixedSchema),
    /// A reference to a name nothing defines (the parser refuses these; kept total anyway).
    Unknown(&'a str),
}

impl Kind<'_> {
    fn label(&self) -> String {
        match self {
            Kind::Null => "null".into(),
            Kind::Boolean => "boolean".into(),
            Kind::Int => "int".into(),
            Kind::Long => "long".into(),
            Kind::Float => "float".into(),
            Kind::Double => "double".into(),
            Kind::Bytes => "bytes".into(),
            Kind::String => "string".into(),
            Kind::Array(_) => "array".into(),
            Kind::Map(_) => "map".into(),
            Kind::Union(_) => "union".into(),
            Kind::Record(r) => format!("record '{}'", r.name.fullname(None)),
            Kind::Enum(e) => format!("enum '{}'", e.name.fullname(None)),
            Kind::Fixed(f) => format!("fixed '{}'", f.name.fullname(None)),
            Kind::Unknown(n) => format!("undefined type '{n}'"),
        }
    }

    fn same_kind(&self, other: &Kind<'_>) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

struct Checker<'a> {
    reader_names: HashMap<String, &'a Schema>,
    writer_names: HashMap<String, &'a Schema>,
    /// Record pairs being compared further up the stack: a recursive type meets itself again,
    /// and is assumed compatible there (Java's checker does the same).
    in_progress: HashSet<(usize, usize)>,
    /// Comparison steps taken (bounded by [`super::MAX_STEPS`]).
    steps: usize,
}

fn kind<'a>(s: &'a Schema, names: &HashMap<String, &'a Schema>) -> Kind<'a> {
    match s {
        Schema::Null => Kind::Null,
        Schema::Boolean => Kind::Boolean,
        Schema::Int | Schema::Date | Schema::TimeMillis => Kind::Int,
        Schema::Long
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => Kind::Long,
        Schema::Float => Kind::Float,
        Schema::Double => Kind::Double,
        Schema::Bytes
        | Schema::BigDecimal
        | Schema::Uuid(UuidSchema::Bytes)
        | Schema::Decimal(DecimalSchema { inner: InnerDecimalSchema::Bytes, .. }) => Kind::Bytes,
        Schema::String | Schema::Uuid(UuidSchema::String) => Kind::String,
        Schema::Array(a) => Kind::Array(&a.items),
        Schema::Map(m) => Kind::Map(&m.types),
        Schema::Union(u) => Kind::Union(u.variants()),
        Schema::Record(r) => Kind::Record(r),
        Schema::Enum(e) => Kind::Enum(e),
        Schema::Fixed(f)
        | Schema::Duration(f)
        | Schema::Uuid(UuidSchema::Fixed(f))
        | Schema::Decimal(DecimalSchema { inner: InnerDecimalSchema::Fixed(f), .. }) => Kind::Fixed(f),
        Schema::Ref { name } => match names.get(&name.fullname(None)).or_else(|| {
            // An unqualified reference inside a namespace: the one definition with that name.
            let mut by_name = names.iter().filter(|(k, _)| k.rsplit('.').next() == Some(name.name()));
            match (by_name.next(), by_name.next()) {
                (Some((_, def)), None) => Some(def),
                _ => None,
            }
        }) {
            // A definition is never itself a Ref, so this recursion is one step deep.
            Some(def) if !matches!(def, Schema::Ref { .. }) => kind(def, names),
            _ => Kind::Unknown(name.name()),
        },
    }
}

/// Where in the reader's schema a problem is, for the reason's text.
fn at(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    }
}

impl<'a> Checker<'a> {
    fn compatible(&mut self, reader: &'a Schema, writer: &'a Schema) -> bool {
        let mut scratch = Vec::new();
        self.check(reader, writer, "", &mut scratch);
        scratch.is_empty()
    }

    fn check(&mut self, reader: &'a Schema, writer: &'a Schema, path: &str, out: &mut Vec<String>) {
        self.steps += 1;
        if self.steps > super::MAX_STEPS {
            return;
        }
        let r = kind(reader, &self.reader_names);
        let w = kind(writer, &self.writer_names);
        if r.same_kind(&w) {
            match (r, w) {
                (Kind::Array(ri), Kind::Array(wi)) => self.check(ri, wi, &format!("{path}[]"), out),
                (Kind::Map(rv), Kind::Map(wv)) => self.check(rv, wv, &format!("{path}{{}}"), out),
                (Kind::Fixed(rf), Kind::Fixed(wf)) => {
                    if !names_match(&rf.name, &rf.aliases, &wf.name) {
                        out.push(name_mismatch(path, &r, &w));
                    } else if rf.size != wf.size {
                        out.push(format!(
                            "{}the reader's {} has size {} but the writer's has size {}",
                            at(path),
                            r.label(),
                            rf.size,
                            wf.size
                        ));
                    }
                }
                (Kind::Enum(re), Kind::Enum(we)) => {
                    if !names_match(&re.name, &re.aliases, &we.name) {
                        out.push(name_mismatch(path, &r, &w));
                        return;
                    }
                    let missing: Vec<&str> =
                        we.symbols.iter().filter(|s| !re.symbols.contains(s)).map(String::as_str).collect();
                    let has_default = re.default.as_ref().is_some_and(|d| re.symbols.contains(d));
                    if !missing.is_empty() && !has_default {
                        out.push(format!(
                            "{}the reader's {} lacks the writer's symbol(s) {} and declares no default",
                            at(path),
                            r.label(),
                            missing.join(", ")
                        ));
                    }
                }
                (Kind::Record(rr), Kind::Record(wr)) => self.check_record(rr, wr, path, out),
                (Kind::Union(_), Kind::Union(wb)) => {
                    for (i, branch) in wb.iter().enumerate() {
                        if !self.compatible(reader, branch) {
                            out.push(format!(
                                "{}the reader's union has no branch that reads the writer's branch {} ({})",
                                at(path),
                                i,
                                kind(branch, &self.writer_names).label()
                            ));
                        }
                    }
                }
                (Kind::Unknown(_), _) => out.push(format!("{}the reader's type {} is undefined", at(path), r.label())),
                _ => {}
            }
            return;
        }
        if let Kind::Union(branches) = w {
            for (i, branch) in branches.iter().enumerate() {
                self.check(reader, branch, &format!("{path}<branch {i}>"), out);
            }
            return;
        }
        let promoted = matches!(
            (r, w),
            (Kind::Long, Kind::Int)
                | (Kind::Float, Kind::Int | Kind::Long)
                | (Kind::Double, Kind::Int | Kind::Long | Kind::Float)
                | (Kind::Bytes, Kind::String)
                | (Kind::String, Kind::Bytes)
        );
        if promoted {
            return;
        }
        if let Kind::Union(branches) = r {
            if branches.iter().any(|b| self.compatible(b, writer)) {
                return;
            }
            out.push(format!("{}no branch of the reader's union reads the writer's {}", at(path), w.label()));
            return;
        }
        out.push(format!("{}the reader's {} cannot read the writer's {}", at(path), r.label(), w.label()));
    }

    fn check_record(&mut self, rr: &'a RecordSchema, wr: &'a RecordSchema, path: &str, out: &mut Vec<String>) {
        let record = rr.name.fullname(None);
        if !names_match(&rr.name, &rr.aliases, &wr.name) {
            out.push(format!(
                "{}the reader's record '{}' does not match the writer's record '{}' (names differ and no reader alias names it)",
                at(path),
                record,
                wr.name.fullname(None)
            ));
            return;
        }
        let key = (rr as *const RecordSchema as usize, wr as *const RecordSchema as usize);
        if !self.in_progress.insert(key) {
            return;
        }
        for field in &rr.fields {
            let found = std::iter::once(&field.name)
                .chain(field.aliases.iter())
                .find_map(|name| wr.fields.iter().find(|wf| &wf.name == name));
            match found {
                Some(wf) => {
                    let mut inner = Vec::new();
                    self.check(&field.schema, &wf.schema, "", &mut inner);
                    for problem in inner {
                        out.push(format!("{}field '{}' of record '{}': {}", at(path), field.name, record, problem));
                    }
                }
                None if field.default.is_none() => out.push(format!(
                    "{}field '{}' of record '{}': the reader has no default for a field the writer lacks",
                    at(path),
                    field.name,
                    record
                )),
                None => {}
            }
        }
        self.in_progress.remove(&key);
    }
}

/// Java's `schemaNameEquals`: unqualified names equal, or a reader alias naming the writer.
fn names_match(
    reader: &apache_avro::schema::Name,
    aliases: &apache_avro::schema::Aliases,
    writer: &apache_avro::schema::Name,
) -> bool {
    reader.name() == writer.name() || aliases.iter().flatten().any(|a| a.fullname(None) == writer.fullname(None))
}

fn name_mismatch(path: &str, r: &Kind<'_>, w: &Kind<'_>) -> String {
    format!(
        "{}the reader's {} does not match the writer's {} (names differ and no reader alias names it)",
        at(path),
        r.label(),
        w.label()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse, ParsedSchema};
    use crate::schema::SchemaType;

    fn avro(text: &str) -> AvroSchema {
        match parse(SchemaType::Avro, text, &[]).unwrap() {
            ParsedSchema::Avro(a) => a,
            other => unreachable!("{other:?}"),
        }
    }

    #[test]
    fn a_recursive_record_terminates_and_changes_inside_it_are_seen() {
        let v1 = avro(
            r#"{"type":"record","name":"Node","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","Node"]}]}"#,
        );
        let v2 = avro(
            r#"{"type":"record","name":"Node","fields":[{"name":"v","type":"long"},{"name":"next","type":["null","Node"]}]}"#,
        );
        assert!(can_read(&v2, &v1).is_ok());
        let err = can_read(&v1, &v2).unwrap_err();
        assert!(err.iter().any(|e| e.contains("field 'v' of record 'Node'") && e.contains("int")), "{err:?}");
    }

    #[test]
    fn a_named_type_used_twice_is_compared_at_its_second_use() {
        let v1 = avro(
            r#"{"type":"record","name":"P","fields":[{"name":"a","type":{"type":"enum","name":"E","symbols":["X","Y"]}},{"name":"b","type":"E"}]}"#,
        );
        let v2 = avro(
            r#"{"type":"record","name":"P","fields":[{"name":"a","type":{"type":"enum","name":"E","symbols":["X"]}},{"name":"b","type":"E"}]}"#,
        );
        let err = can_read(&v2, &v1).unwrap_err();
        assert_eq!(err.len(), 2, "both uses of E: {err:?}");
    }

    #[test]
    fn an_exponentially_shared_type_is_refused_within_the_step_budget() {
        // L_i has two fields of type L_{i-1}: 2^30 field comparisons without a bound.
        let mut text = r#"{"type":"record","name":"L0","fields":[{"name":"v","type":"int"}]}"#.to_string();
        for i in 1..=30 {
            text = format!(
                r#"{{"type":"record","name":"L{i}","fields":[{{"name":"a","type":{text}}},{{"name":"b","type":"L{}"}}]}}"#,
                i - 1
            );
        }
        let s = avro(&text);
        let started = std::time::Instant::now();
        let err = can_read(&s, &s).unwrap_err();
        assert_eq!(err, [crate::compat::too_complex()]);
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
    }
}
