//! The compatibility matrix: every case of tests/registry/compat_cases.json (a schema change in
//! Avro, JSON Schema or Protobuf, with the outcome the Avro specification and Confluent's
//! documented rules give it) is run through `compat::check` at all seven levels; any
//! disagreement fails, every disagreement is listed. The same file drives
//! scripts/compat-cases.py against a reference registry.
//!
//! It also keeps the table in docs/registry-compatibility.md in step with the cases: the test
//! fails when the table is stale, and `UPDATE_EXPECT=1` rewrites it.

use std::path::PathBuf;

use evident_registry::compat::{check, Existing};
use evident_registry::{parse, Compatibility, ParsedSchema, SchemaType};
use serde_json::Value;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Case {
    name: String,
    format: SchemaType,
    history: Vec<String>,
    candidate: String,
    backward: Vec<bool>,
    forward: Vec<bool>,
    why: String,
}

/// A schema in the cases file is `.proto` text (Protobuf) or JSON (Avro, JSON Schema; an Avro
/// primitive is a JSON string, so its text is quoted).
fn schema_text(format: SchemaType, v: &Value) -> String {
    match (format, v) {
        (SchemaType::Protobuf, Value::String(s)) => s.clone(),
        (_, other) => other.to_string(),
    }
}

fn load() -> Vec<Case> {
    let text = std::fs::read_to_string(repo_root().join("tests/registry/compat_cases.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let bools = |v: &Value| v.as_array().unwrap().iter().map(|b| b.as_bool().unwrap()).collect::<Vec<_>>();
    doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let format: SchemaType = c["format"].as_str().unwrap().parse().unwrap();
            Case {
                name: c["name"].as_str().unwrap().to_string(),
                format,
                history: c["history"].as_array().unwrap().iter().map(|v| schema_text(format, v)).collect(),
                candidate: schema_text(format, &c["candidate"]),
                backward: bools(&c["backward"]),
                forward: bools(&c["forward"]),
                why: c["why"].as_str().unwrap().to_string(),
            }
        })
        .collect()
}

/// The expected outcome at `level`, from the per-version directions.
fn expected(case: &Case, level: Compatibility) -> bool {
    let n = case.history.len();
    let range = if level.transitive() { 0..n } else { n - 1..n };
    range.clone().all(|i| !level.backward() || case.backward[i])
        && range.clone().all(|i| !level.forward() || case.forward[i])
}

fn parsed(case: &Case, text: &str) -> ParsedSchema {
    parse(case.format, text, &[]).unwrap_or_else(|e| panic!("{}: schema does not parse: {e}\n{text}", case.name))
}

#[test]
fn every_case_agrees_at_every_level() {
    let cases = load();
    assert!(cases.len() >= 90, "the matrix shrank to {} cases", cases.len());
    let mut disagreements = Vec::new();
    let mut checked = 0;
    for case in &cases {
        assert_eq!(case.backward.len(), case.history.len(), "{}", case.name);
        assert_eq!(case.forward.len(), case.history.len(), "{}", case.name);
        let history: Vec<ParsedSchema> = case.history.iter().map(|t| parsed(case, t)).collect();
        let existing: Vec<Existing<'_>> =
            history.iter().enumerate().map(|(i, schema)| Existing { version: i as i32 + 1, schema }).collect();
        let candidate = parsed(case, &case.candidate);
        for level in Compatibility::ALL {
            checked += 1;
            let reasons = check(level, &candidate, &existing);
            let want = expected(case, level);
            if reasons.is_empty() != want {
                disagreements.push(format!(
                    "{} at {level}: expected {}, got {}{}\n    rule: {}",
                    case.name,
                    if want { "compatible" } else { "incompatible" },
                    if reasons.is_empty() { "compatible" } else { "incompatible: " },
                    reasons.join(" | "),
                    case.why
                ));
            }
            for r in &reasons {
                assert!(r.starts_with("version "), "{}: a reason names its version: {r}", case.name);
            }
        }
    }
    assert!(disagreements.is_empty(), "{} of {checked} disagree:\n{}", disagreements.len(), disagreements.join("\n"));
}

#[test]
fn reasons_name_the_version_direction_and_field() {
    let cases = load();
    let case = cases.iter().find(|c| c.name == "avro/add-field-without-default").unwrap();
    let old = parsed(case, &case.history[0]);
    let new = parsed(case, &case.candidate);
    let reasons = check(Compatibility::Backward, &new, &[Existing { version: 2, schema: &old }]);
    assert_eq!(
        reasons,
        ["version 2 (BACKWARD): field 'note' of record 'shop.OrderPlaced': the reader has no default for a field the writer lacks"]
    );
    let case = cases.iter().find(|c| c.name == "protobuf/int32-to-sint32").unwrap();
    let old = parsed(case, &case.history[0]);
    let new = parsed(case, &case.candidate);
    let reasons = check(Compatibility::Forward, &new, &[Existing { version: 1, schema: &old }]);
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].starts_with("version 1 (FORWARD): message 'shop.OrderPlaced': field 2 'qty'"), "{reasons:?}");
    assert!(reasons[0].contains("FIELD_SCALAR_KIND_CHANGED"), "{reasons:?}");
    let case = cases.iter().find(|c| c.name == "json/open-add-optional-property").unwrap();
    let old = parsed(case, &case.history[0]);
    let new = parsed(case, &case.candidate);
    let reasons = check(Compatibility::Full, &new, &[Existing { version: 1, schema: &old }]);
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].starts_with("version 1 (BACKWARD): #/properties/note: "), "{reasons:?}");
    assert!(reasons[0].contains("PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL"), "{reasons:?}");
}

#[test]
fn a_changed_schema_type_is_refused_at_every_level_but_none() {
    let avro = parse(SchemaType::Avro, r#""string""#, &[]).unwrap();
    let json = parse(SchemaType::Json, r#"{"type":"string"}"#, &[]).unwrap();
    for level in Compatibility::ALL {
        let reasons = check(level, &json, &[Existing { version: 1, schema: &avro }]);
        assert_eq!(reasons.is_empty(), level == Compatibility::None, "{level}: {reasons:?}");
    }
}

const BEGIN: &str = "<!-- BEGIN compat-matrix (generated by crates/evident-registry/tests/compat_matrix.rs; UPDATE_EXPECT=1 regenerates) -->";
const END: &str = "<!-- END compat-matrix -->";

fn table(cases: &[Case]) -> String {
    let mut out = String::new();
    for format in [SchemaType::Avro, SchemaType::Json, SchemaType::Protobuf] {
        out.push_str(&format!("\n#### {format}\n\n| change | versions |"));
        for level in Compatibility::ALL {
            out.push_str(&format!(" {} |", level.as_str().replace("_TRANSITIVE", " TRANS.")));
        }
        out.push_str(" rule |\n|---|---|");
        out.push_str(&"---|".repeat(Compatibility::ALL.len()));
        out.push_str("---|\n");
        for case in cases.iter().filter(|c| c.format == format) {
            let short = case.name.split_once('/').map_or(case.name.as_str(), |(_, n)| n);
            out.push_str(&format!("| `{short}` | {} |", case.history.len() + 1));
            for level in Compatibility::ALL {
                out.push_str(if expected(case, level) { " ✓ |" } else { " ✗ |" });
            }
            out.push_str(&format!(" {} |\n", case.why.replace('|', "\\|")));
        }
    }
    out
}

#[test]
fn the_docs_table_is_generated_from_the_cases() {
    let path = repo_root().join("docs/registry-compatibility.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let (head, rest) = doc.split_once(BEGIN).expect("the doc has the BEGIN marker");
    let (_, tail) = rest.split_once(END).expect("the doc has the END marker");
    let fresh = format!("{head}{BEGIN}\n{}\n{END}{tail}", table(&load()));
    if std::env::var("UPDATE_EXPECT").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    assert!(doc == fresh, "docs/registry-compatibility.md's table is stale: run UPDATE_EXPECT=1 cargo test -p evident-registry --test compat_matrix");
}
