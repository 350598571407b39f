//! Avro binary data checked against its schema without being decoded into values: the check
//! validation at produce runs on every record.
//!
//! `apache-avro` stays the crate that parses schemas, resolves reader and writer, and decodes
//! (verify=stored, the library's readers). But its decoder builds a `Value` tree (a `String`
//! per field name, per string, a `Vec` per record) and resolves the schema's names again on
//! every call; measured on the benchmark's 186-byte order record that is ~1 µs a record, more
//! than the broker's whole cost of storing it, and the benchmark's target (produce with
//! validation at >= 0.8 of produce without) cannot be met that way. So a schema is compiled
//! once, when it is parsed, into a [`Plan`]: a flat table of nodes, named types resolved to
//! indexes (recursive types become cycles in the table). Checking a payload walks the plan and
//! the bytes together, allocating nothing unless the payload is refused.
//!
//! The walk is at least as strict as `apache-avro`'s decoder (a property test holds the two
//! together: everything the crate writes passes, and nothing passes that the crate cannot
//! read), and stricter where the crate is lenient: a payload cut short inside a boolean, a
//! string or a union index is refused here (the crate reads it as `null`). Two bounds keep a
//! hostile payload from costing more than its size: values nest at most [`DEPTH_MAX`] deep (a
//! recursive schema would otherwise let a 1 MiB payload recurse a million frames deep and
//! overflow the stack), and a payload may hold at most [`VALUES_BASE`] + 8 × its length values
//! (an array of a zero-byte type can claim 2^62 items in ten bytes).

use std::collections::HashMap;
use std::fmt::Write as _;

use apache_avro::schema::{InnerDecimalSchema, Name, NamespaceRef, ResolvedSchema, Schema, UuidSchema};

/// Deepest nesting of values a checked payload may have. Records of records a hundred levels
/// deep are not data anyone writes by hand; a recursive type (a tree, a linked list) deeper
/// than this in one event is refused rather than risk the stack.
pub const DEPTH_MAX: usize = 256;

/// Values every payload may hold whatever its size; beyond it, 8 per byte. Only values that
/// take no bytes (null, an empty record, a zero-size fixed) can exceed one per byte.
pub const VALUES_BASE: u64 = 1 << 20;

/// A schema compiled for checking payloads: see the module documentation.
#[derive(Debug, Clone)]
pub struct Plan {
    nodes: Vec<Node>,
    root: usize,
}

/// One schema node. Children are indexes into [`Plan::nodes`].
#[derive(Debug, Clone)]
enum Node {
    Null,
    Boolean,
    /// int and the logical types stored as one (date, time-millis).
    Int,
    /// long and the logical types stored as one (timestamps, time-micros).
    Long,
    Float,
    Double,
    /// bytes, and decimal on bytes.
    Bytes,
    String,
    /// fixed, and decimal on fixed.
    Fixed(usize),
    /// uuid on string: a string that parses as a UUID.
    UuidString,
    /// uuid on bytes: bytes that are exactly 16 long.
    UuidBytes,
    /// uuid on fixed: the fixed must be 16 bytes.
    UuidFixed(usize),
    /// duration: a fixed that must be 12 bytes.
    Duration(usize),
    /// big-decimal: bytes holding a length-prefixed big integer and a long scale.
    BigDecimal,
    Enum {
        symbols: usize,
    },
    Array(usize),
    Map(usize),
    Union(Vec<usize>),
    Record {
        fields: Vec<(String, usize)>,
    },
}

impl Plan {
    /// Compiles `schema`, whose references to named types defined elsewhere are in
    /// `references` (the named schemas of the schema's references, as parsed with it).
    pub fn compile(schema: &Schema, references: &[Schema]) -> Result<Plan, String> {
        let schemata: Vec<&Schema> = references.iter().chain(std::iter::once(schema)).collect();
        let resolved = ResolvedSchema::new_with_schemata(schemata).map_err(|e| e.to_string())?;
        let mut compiler = Compiler { names: resolved.get_names(), nodes: Vec::new(), named: HashMap::new() };
        let root = compiler.node(schema, None)?;
        Ok(Plan { nodes: compiler.nodes, root })
    }

    /// Checks that `body` is exactly one datum of the schema, every byte used.
    pub fn check(&self, body: &[u8]) -> Result<(), Fault> {
        let budget = VALUES_BASE.saturating_add((body.len() as u64).saturating_mul(8));
        let mut walk = Walk { plan: self, bytes: body, pos: 0, values_left: budget };
        walk.value(self.root, 0)?;
        if walk.pos != body.len() {
            return Err(Fault::new(format!("{} bytes left after the datum", body.len() - walk.pos)));
        }
        Ok(())
    }
}

/// Why a payload does not check, and where in the datum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// What is wrong.
    pub reason: String,
    /// Where: field names, array indexes and map keys from the root, innermost last.
    segments: Vec<String>,
}

impl Fault {
    fn new(reason: impl Into<String>) -> Self {
        Self { reason: reason.into(), segments: Vec::new() }
    }

    fn within(mut self, segment: impl FnOnce() -> String) -> Self {
        self.segments.push(segment());
        self
    }

    /// The place of the fault as a JSON Pointer (`""` is the datum itself), the notation
    /// the JSON Schema refusals use too.
    pub fn pointer(&self) -> String {
        let mut out = String::new();
        for s in self.segments.iter().rev() {
            let _ = write!(out, "/{}", s.replace('~', "~0").replace('/', "~1"));
        }
        out
    }
}

struct Compiler<'s> {
    names: &'s HashMap<Name, &'s Schema>,
    nodes: Vec<Node>,
    /// Named types already given a node, by full name: what makes recursion a cycle.
    named: HashMap<Name, usize>,
}

impl Compiler<'_> {
    fn push(&mut self, node: Node) -> usize {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// The node of a named type, compiled once: its index is taken before its children are
    /// compiled, so a child referring back to it finds it.
    fn named(
        &mut self,
        name: &Name,
        ns: NamespaceRef,
        build: impl FnOnce(&mut Self, NamespaceRef) -> Result<Node, String>,
    ) -> Result<usize, String> {
        let full = name.fully_qualified_name(ns).into_owned();
        if let Some(&at) = self.named.get(&full) {
            return Ok(at);
        }
        let at = self.push(Node::Null);
        self.named.insert(full.clone(), at);
        let node = build(self, full.namespace())?;
        self.nodes[at] = node;
        Ok(at)
    }

    fn node(&mut self, schema: &Schema, ns: NamespaceRef) -> Result<usize, String> {
        let node = match schema {
            Schema::Null => Node::Null,
            Schema::Boolean => Node::Boolean,
            Schema::Int | Schema::Date | Schema::TimeMillis => Node::Int,
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => Node::Long,
            Schema::Float => Node::Float,
            Schema::Double => Node::Double,
            Schema::Bytes => Node::Bytes,
            Schema::String => Node::String,
            Schema::BigDecimal => Node::BigDecimal,
            Schema::Uuid(UuidSchema::String) => Node::UuidString,
            Schema::Uuid(UuidSchema::Bytes) => Node::UuidBytes,
            Schema::Uuid(UuidSchema::Fixed(f)) => {
                let size = f.size;
                return self.named(&f.name, ns, |_, _| Ok(Node::UuidFixed(size)));
            }
            Schema::Decimal(d) => match &d.inner {
                InnerDecimalSchema::Bytes => Node::Bytes,
                InnerDecimalSchema::Fixed(f) => {
                    let size = f.size;
                    return self.named(&f.name, ns, |_, _| Ok(Node::Fixed(size)));
                }
            },
            Schema::Duration(f) => {
                let size = f.size;
                return self.named(&f.name, ns, |_, _| Ok(Node::Duration(size)));
            }
            Schema::Fixed(f) => {
                let size = f.size;
                return self.named(&f.name, ns, |_, _| Ok(Node::Fixed(size)));
            }
            Schema::Enum(e) => {
                let symbols = e.symbols.len();
                return self.named(&e.name, ns, |_, _| Ok(Node::Enum { symbols }));
            }
            Schema::Record(r) => {
                return self.named(&r.name, ns, |c, inner| {
                    let mut fields = Vec::with_capacity(r.fields.len());
                    for f in &r.fields {
                        fields.push((f.name.clone(), c.node(&f.schema, inner)?));
                    }
                    Ok(Node::Record { fields })
                });
            }
            Schema::Array(a) => Node::Array(self.node(&a.items, ns)?),
            Schema::Map(m) => Node::Map(self.node(&m.types, ns)?),
            Schema::Union(u) => {
                let mut variants = Vec::with_capacity(u.variants().len());
                for v in u.variants() {
                    variants.push(self.node(v, ns)?);
                }
                Node::Union(variants)
            }
            Schema::Ref { name } => {
                let full = name.fully_qualified_name(ns);
                if let Some(&at) = self.named.get(full.as_ref()) {
                    return Ok(at);
                }
                let target = *self.names.get(full.as_ref()).ok_or_else(|| format!("unknown named type {full:?}"))?;
                return self.node(target, full.namespace());
            }
        };
        Ok(self.push(node))
    }
}

struct Walk<'a> {
    plan: &'a Plan,
    bytes: &'a [u8],
    pos: usize,
    values_left: u64,
}

impl<'a> Walk<'a> {
    fn value(&mut self, at: usize, depth: usize) -> Result<(), Fault> {
        if depth >= DEPTH_MAX {
            return Err(Fault::new(format!("values nest more than {DEPTH_MAX} deep")));
        }
        self.values_left = self
            .values_left
            .checked_sub(1)
            .ok_or_else(|| Fault::new("more values than a payload of this size may hold"))?;
        let plan = self.plan;
        match &plan.nodes[at] {
            Node::Null => {}
            Node::Boolean => match self.take(1, "boolean")?[0] {
                0 | 1 => {}
                b => return Err(Fault::new(format!("boolean byte {b} is neither 0 nor 1"))),
            },
            Node::Int => {
                let v = self.long("int")?;
                if i32::try_from(v).is_err() {
                    return Err(Fault::new(format!("int {v} is out of range")));
                }
            }
            Node::Long => {
                self.long("long")?;
            }
            Node::Float => {
                self.take(4, "float")?;
            }
            Node::Double => {
                self.take(8, "double")?;
            }
            Node::Bytes => {
                self.sized("bytes")?;
            }
            Node::String => {
                self.string("string")?;
            }
            Node::Fixed(size) => {
                self.take(*size, "fixed")?;
            }
            Node::UuidString => {
                let s = self.string("uuid")?;
                apache_avro::Uuid::parse_str(s).map_err(|e| Fault::new(format!("uuid {s:?}: {e}")))?;
            }
            Node::UuidBytes => {
                let b = self.sized("uuid")?;
                if b.len() != 16 {
                    return Err(Fault::new(format!("uuid of {} bytes, not 16", b.len())));
                }
            }
            Node::UuidFixed(size) => {
                if *size != 16 {
                    return Err(Fault::new(format!("uuid on a fixed of size {size}, not 16")));
                }
                self.take(16, "uuid")?;
            }
            Node::Duration(size) => {
                if *size != 12 {
                    return Err(Fault::new(format!("duration on a fixed of size {size}, not 12")));
                }
                self.take(12, "duration")?;
            }
            Node::BigDecimal => {
                let mut inner = Walk { plan, bytes: self.sized("big-decimal")?, pos: 0, values_left: 1 };
                inner.sized("big-decimal digits")?;
                inner.long("big-decimal scale")?;
            }
            Node::Enum { symbols } => {
                let v = self.long("enum index")?;
                if usize::try_from(v).map_or(true, |i| i >= *symbols) {
                    return Err(Fault::new(format!("enum index {v} is not one of the {symbols} symbols")));
                }
            }
            Node::Array(items) => {
                let mut index = 0u64;
                while let Some(count) = self.block("array")? {
                    for _ in 0..count {
                        self.value(*items, depth + 1).map_err(|f| f.within(|| index.to_string()))?;
                        index += 1;
                    }
                }
            }
            Node::Map(values) => {
                while let Some(count) = self.block("map")? {
                    for _ in 0..count {
                        let key = self.string("map key")?;
                        self.value(*values, depth + 1).map_err(|f| f.within(|| key.to_owned()))?;
                    }
                }
            }
            Node::Union(variants) => {
                let v = self.long("union index")?;
                let Some(&variant) = usize::try_from(v).ok().and_then(|i| variants.get(i)) else {
                    return Err(Fault::new(format!("union index {v} is not one of the {} branches", variants.len())));
                };
                self.value(variant, depth + 1)?;
            }
            Node::Record { fields } => {
                for (field, node) in fields {
                    self.value(*node, depth + 1).map_err(|f| f.within(|| field.clone()))?;
                }
            }
        }
        Ok(())
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], Fault> {
        let left = self.bytes.len() - self.pos;
        if n > left {
            return Err(Fault::new(format!("{what} needs {n} bytes, {left} left")));
        }
        let bytes: &'a [u8] = self.bytes;
        let out = &bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// A zigzag varint of at most 10 bytes, as Avro encodes int and long.
    fn long(&mut self, what: &str) -> Result<i64, Fault> {
        let mut z = 0u64;
        for i in 0..10 {
            let Some(&b) = self.bytes.get(self.pos) else {
                return Err(Fault::new(format!("{what} is cut short")));
            };
            self.pos += 1;
            z |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok((z >> 1) as i64 ^ -((z & 1) as i64));
            }
        }
        Err(Fault::new(format!("{what} is a varint longer than 10 bytes")))
    }

    /// A long length, then that many bytes.
    fn sized(&mut self, what: &str) -> Result<&'a [u8], Fault> {
        let len = self.long(what)?;
        let len = usize::try_from(len).map_err(|_| Fault::new(format!("{what} has negative length {len}")))?;
        self.take(len, what)
    }

    fn string(&mut self, what: &str) -> Result<&'a str, Fault> {
        let bytes = self.sized(what)?;
        std::str::from_utf8(bytes).map_err(|e| Fault::new(format!("{what} is not UTF-8: {e}")))
    }

    /// The item count of the next block of an array or map (`None` at the end): a negative
    /// count is followed by the block's size in bytes, which is read and not trusted.
    fn block(&mut self, what: &str) -> Result<Option<u64>, Fault> {
        let count = self.long(what)?;
        if count == 0 {
            return Ok(None);
        }
        if count < 0 {
            self.long(what)?;
        }
        let count = count.unsigned_abs();
        if count > self.values_left {
            return Err(Fault::new(format!(
                "{what} block claims {count} items, more than a payload of this size may hold"
            )));
        }
        Ok(Some(count))
    }
}

#[cfg(test)]
mod tests {
    use apache_avro::reader::datum::GenericDatumReader;
    use apache_avro::types::Value;
    use apache_avro::writer::datum::GenericDatumWriter;
    use proptest::prelude::*;

    use super::*;

    /// Schemas covering every kind of node: primitives, logical types, named types defined
    /// once and referred to again, namespaces, a recursive type, nested collections.
    const SCHEMAS: &[&str] = &[
        r#"{"type":"record","name":"OrderPlaced","namespace":"shop","fields":[
            {"name":"id","type":"long"},{"name":"customer","type":"string"},{"name":"amount","type":"double"},
            {"name":"paid","type":"boolean"},{"name":"qty","type":"int"},{"name":"ratio","type":"float"},
            {"name":"blob","type":"bytes"},{"name":"n","type":"null"}]}"#,
        r#"{"type":"record","name":"Event","namespace":"a.b","fields":[
            {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["A","B","C"]}},
            {"name":"again","type":"Kind"},
            {"name":"hash","type":{"type":"fixed","name":"Hash","size":4}},
            {"name":"other","type":{"type":"record","name":"Inner","namespace":"x","fields":[
                {"name":"h","type":"a.b.Hash"},{"name":"opt","type":["null","string"]}]}},
            {"name":"inner2","type":"x.Inner"}]}"#,
        r#"{"type":"record","name":"Node","fields":[
            {"name":"value","type":"int"},{"name":"next","type":["null","Node"]},
            {"name":"children","type":{"type":"array","items":"Node"}}]}"#,
        r#"{"type":"record","name":"Logical","fields":[
            {"name":"d","type":{"type":"int","logicalType":"date"}},
            {"name":"tm","type":{"type":"int","logicalType":"time-millis"}},
            {"name":"tu","type":{"type":"long","logicalType":"time-micros"}},
            {"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
            {"name":"tsu","type":{"type":"long","logicalType":"timestamp-micros"}},
            {"name":"u","type":{"type":"string","logicalType":"uuid"}},
            {"name":"dec","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}},
            {"name":"decf","type":{"type":"fixed","name":"D","size":8,"logicalType":"decimal","precision":10}},
            {"name":"dur","type":{"type":"fixed","name":"Dur","size":12,"logicalType":"duration"}}]}"#,
        r#"{"type":"map","values":{"type":"array","items":["null","long","string",
            {"type":"record","name":"R","fields":[{"name":"f","type":{"type":"map","values":"boolean"}}]}]}}"#,
        r#"["null","string","long"]"#,
        r#""string""#,
        r#"{"type":"array","items":"null"}"#,
    ];

    fn schema(text: &str) -> (Schema, Plan) {
        let s = Schema::parse_str(text).expect("schema parses");
        let plan = Plan::compile(&s, &[]).expect("compiles");
        (s, plan)
    }

    /// A small deterministic generator (xorshift), so a proptest seed picks the value.
    struct Gen(u64);

    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
        fn text(&mut self) -> String {
            let n = self.below(6) as usize;
            (0..n).map(|_| ['a', 'é', '7', '✓', ' '][self.below(5) as usize]).collect()
        }
    }

    /// A random value of `schema` (named types looked up in `names`), nesting bounded.
    fn value(g: &mut Gen, schema: &Schema, names: &HashMap<Name, &Schema>, ns: NamespaceRef, depth: u32) -> Value {
        match schema {
            Schema::Null => Value::Null,
            Schema::Boolean => Value::Boolean(g.below(2) == 1),
            Schema::Int => Value::Int(g.next() as i32),
            Schema::Long => Value::Long(g.next() as i64),
            Schema::Float => Value::Float(g.next() as u32 as f32),
            Schema::Double => Value::Double(g.next() as f64),
            Schema::Bytes => {
                let n = g.below(5) as usize;
                Value::Bytes(g.bytes(n))
            }
            Schema::String => Value::String(g.text()),
            Schema::Date => Value::Date(g.next() as i32),
            Schema::TimeMillis => Value::TimeMillis(g.below(86_400_000) as i32),
            Schema::TimeMicros => Value::TimeMicros(g.below(86_400_000_000) as i64),
            Schema::TimestampMillis => Value::TimestampMillis(g.next() as i64),
            Schema::TimestampMicros => Value::TimestampMicros(g.next() as i64),
            Schema::Uuid(_) => Value::Uuid(apache_avro::Uuid::from_u64_pair(g.next(), g.next())),
            Schema::Decimal(d) => match &d.inner {
                InnerDecimalSchema::Bytes => Value::Decimal(g.bytes(3).into()),
                InnerDecimalSchema::Fixed(f) => Value::Decimal(g.bytes(f.size).into()),
            },
            Schema::Duration(_) => {
                let b: [u8; 12] = g.bytes(12).try_into().expect("12 bytes");
                Value::Duration(b.into())
            }
            Schema::Fixed(f) => Value::Fixed(f.size, g.bytes(f.size)),
            Schema::Enum(e) => {
                let i = g.below(e.symbols.len() as u64) as usize;
                Value::Enum(i as u32, e.symbols[i].clone())
            }
            Schema::Array(a) => {
                let n = if depth > 3 { 0 } else { g.below(4) };
                Value::Array((0..n).map(|_| value(g, &a.items, names, ns, depth + 1)).collect())
            }
            Schema::Map(m) => {
                let n = if depth > 3 { 0 } else { g.below(4) };
                Value::Map(
                    (0..n).map(|i| (format!("k{i}{}", g.text()), value(g, &m.types, names, ns, depth + 1))).collect(),
                )
            }
            Schema::Union(u) => {
                // Deep down, the first branch (null in the recursive schema) ends the nesting.
                let i = if depth > 3 { 0 } else { g.below(u.variants().len() as u64) as usize };
                Value::Union(i as u32, Box::new(value(g, &u.variants()[i], names, ns, depth + 1)))
            }
            Schema::Record(r) => {
                let full = r.name.fully_qualified_name(ns);
                Value::Record(
                    r.fields
                        .iter()
                        .map(|f| (f.name.clone(), value(g, &f.schema, names, full.namespace(), depth + 1)))
                        .collect(),
                )
            }
            Schema::Ref { name } => {
                let full = name.fully_qualified_name(ns);
                value(g, names[full.as_ref()], names, full.namespace(), depth)
            }
            other => unreachable!("no generator for {other:?}"),
        }
    }

    fn crate_reads(schema: &Schema, body: &[u8]) -> bool {
        let reader = GenericDatumReader::builder(schema).build().expect("reader");
        let mut rest = body;
        reader.read_value(&mut rest).is_ok() && rest.is_empty()
    }

    /// Bytes that make varints, lengths, booleans and indexes go wrong.
    const DAMAGE: [u8; 8] = [0, 1, 2, 3, 0x7f, 0x80, 0x81, 0xff];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        /// Everything `apache-avro` writes passes; and after any damage (each byte in turn
        /// changed to each of [`DAMAGE`], the payload cut at each length, a byte inserted at
        /// each place), nothing passes that the crate cannot read.
        #[test]
        fn agrees_with_apache_avro(which in 0..SCHEMAS.len(), seed in 1u64..) {
            let (s, plan) = schema(SCHEMAS[which]);
            let resolved = ResolvedSchema::new(&s).expect("resolves");
            let mut g = Gen(seed);
            let v = value(&mut g, &s, resolved.get_names(), None, 0);
            let body = GenericDatumWriter::builder(&s).build().expect("writer").write_value_to_vec(v).expect("writes");
            prop_assert_eq!(plan.check(&body), Ok(()));
            let mut damaged: Vec<Vec<u8>> = (0..body.len()).map(|n| body[..n].to_vec()).collect();
            for i in 0..=body.len() {
                for b in DAMAGE {
                    if i < body.len() {
                        let mut d = body.clone();
                        d[i] = b;
                        damaged.push(d);
                    }
                    let mut d = body.clone();
                    d.insert(i, b);
                    damaged.push(d);
                }
            }
            for d in damaged {
                if plan.check(&d).is_ok() {
                    prop_assert!(crate_reads(&s, &d), "passed here, unreadable by apache-avro: {d:?} (from {body:?})");
                }
            }
        }
    }

    #[test]
    fn refusals_name_the_place_and_the_reason() {
        let (_, plan) = schema(SCHEMAS[1]);
        // kind=B, again=C, hash, other.h, then other.opt's union index 7.
        let body = [2, 4, 1, 2, 3, 4, 5, 6, 7, 8, 14];
        let fault = plan.check(&body).unwrap_err();
        assert_eq!(fault.pointer(), "/other/opt");
        assert_eq!(fault.reason, "union index 7 is not one of the 2 branches");
        let (_, plan) = schema(SCHEMAS[4]);
        // A map of one entry "k" whose array's second item is a string cut short.
        let body = [2, 2, b'k', 4, 0, 4, 10, b'a'];
        let fault = plan.check(&body).unwrap_err();
        assert_eq!(fault.pointer(), "/k/1");
        assert_eq!(fault.reason, "string needs 5 bytes, 1 left");
        assert_eq!(plan.check(&[0, 7]).unwrap_err().reason, "1 bytes left after the datum");
    }

    #[test]
    fn payloads_cut_short_are_refused_where_the_crate_reads_null() {
        let (s, plan) = schema(r#"{"type":"record","name":"R","fields":[{"name":"s","type":"string"}]}"#);
        // A length of 3 and no bytes: apache-avro's decoder reads this as a null string.
        assert!(crate_reads(&s, &[6]));
        assert_eq!(plan.check(&[6]).unwrap_err().reason, "string needs 3 bytes, 0 left");
        let (_, plan) = schema(r#"["null","string"]"#);
        assert_eq!(plan.check(&[]).unwrap_err().reason, "union index is cut short");
    }

    #[test]
    fn deep_nesting_is_refused_before_the_stack_runs_out() {
        let (_, plan) = schema(SCHEMAS[2]);
        // A linked list a million nodes deep: value 0, next = branch 1, ... in 2 MiB.
        let mut body = Vec::new();
        for _ in 0..1_000_000 {
            body.extend_from_slice(&[0, 2]);
        }
        body.extend_from_slice(&[0, 0, 0]);
        body.extend(std::iter::repeat_n(0, 1_000_000));
        let fault = plan.check(&body).unwrap_err();
        assert_eq!(fault.reason, format!("values nest more than {DEPTH_MAX} deep"));
        // Nesting within the bound passes.
        let mut body = Vec::new();
        for _ in 0..100 {
            body.extend_from_slice(&[0, 2]);
        }
        body.extend_from_slice(&[0, 0, 0]);
        body.extend(std::iter::repeat_n(0, 100));
        assert_eq!(plan.check(&body), Ok(()));
    }

    #[test]
    fn a_count_of_zero_byte_items_is_bounded_by_the_payload_size() {
        let (s, plan) = schema(SCHEMAS[7]);
        // One block claiming 2^40 nulls, then the end: eight bytes.
        let mut body = Vec::new();
        let z = (1u64 << 40) << 1;
        let mut v = z;
        while v >= 0x80 {
            body.push((v as u8) | 0x80);
            v >>= 7;
        }
        body.push(v as u8);
        body.push(0);
        let started = std::time::Instant::now();
        let fault = plan.check(&body).unwrap_err();
        assert!(fault.reason.contains("more than a payload of this size may hold"), "{fault:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "refused without walking the items");
        // A thousand nulls in a short payload are fine (and what the crate writes).
        let v = Value::Array(vec![Value::Null; 1000]);
        let body = GenericDatumWriter::builder(&s).build().unwrap().write_value_to_vec(v).unwrap();
        assert_eq!(plan.check(&body), Ok(()));
    }

    #[test]
    fn big_decimals_and_references_from_other_schemas() {
        let (_, plan) = schema(r#"{"type":"bytes","logicalType":"big-decimal"}"#);
        // Outer length 3: digits of length 1 (0x7b), scale 2.
        assert_eq!(plan.check(&[6, 2, 0x7b, 4]), Ok(()));
        assert!(plan.check(&[6, 4, 0x7b, 4]).is_err(), "digits longer than the bytes");
        let money = Schema::parse_str(r#"{"type":"fixed","name":"Money","namespace":"shop","size":2}"#).unwrap();
        let (s, refs) = Schema::parse_str_with_list(
            r#"{"type":"record","name":"Paid","namespace":"shop","fields":[{"name":"m","type":"Money"}]}"#,
            [r#"{"type":"fixed","name":"Money","namespace":"shop","size":2}"#],
        )
        .unwrap();
        assert_eq!(refs, vec![money]);
        let plan = Plan::compile(&s, &refs).unwrap();
        assert_eq!(plan.check(&[1, 2]), Ok(()));
        assert!(plan.check(&[1]).is_err());
    }
}
