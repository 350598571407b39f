//! Goal: the registry store does what its module doc says on a real log: ids belong to content
//! and are never reused (not even after a permanent delete and a reopen), versions never
//! either, soft and permanent deletes follow Confluent's order, references resolve and protect
//! what they name, compatibility is checked against live versions, modes refuse writes, and
//! everything acknowledged survives a close and a crash (`Log::halt`), while refused requests
//! write nothing.
//!
//! Method: each test opens a fresh log in a temporary directory (real files, fsync), drives a
//! `RegistryStore`, and checks concrete values, often again after reopening both.

use std::sync::Arc;

use evident_log::{Log, LogConfig};
use evident_registry::{
    Compatibility, Mode, Reference, RegisterOptions, RegistryError, RegistryStore, SchemaId, SchemaInput, SchemaSource,
    SchemaType, VersionSpec, SCHEMAS_TOPIC,
};

fn avro(text: &str) -> SchemaInput {
    SchemaInput { schema: text.to_string(), schema_type: SchemaType::Avro, references: vec![] }
}

fn record(fields: &str) -> SchemaInput {
    avro(&format!(r#"{{"type":"record","name":"Order","fields":[{fields}]}}"#))
}

const V1: &str = r#"{"name":"id","type":"string"}"#;
const V2: &str = r#"{"name":"id","type":"string"},{"name":"qty","type":"int","default":1}"#;
/// Adds a field without a default: not BACKWARD compatible with V1.
const BAD: &str = r#"{"name":"id","type":"string"},{"name":"price","type":"double"}"#;

struct Fixture {
    dir: tempfile::TempDir,
    log: Arc<Log>,
    store: RegistryStore,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let (log, store) = open(&dir);
        Fixture { dir, log, store }
    }

    /// Closes cleanly and reopens.
    fn reopen(self) -> Self {
        let Fixture { dir, log, store } = self;
        drop(store);
        log.close().expect("close");
        drop(log);
        let (log, store) = open(&dir);
        Fixture { dir, log, store }
    }

    /// Stops the log as a crash would and reopens.
    fn crash(self) -> Self {
        let Fixture { dir, log, store } = self;
        drop(store);
        Arc::try_unwrap(log).expect("only the fixture holds the log").halt();
        let (log, store) = open(&dir);
        Fixture { dir, log, store }
    }

    fn register(&self, subject: &str, input: &SchemaInput) -> (i32, i32) {
        let r = self.store.register(subject, input, RegisterOptions::default()).expect("register");
        (r.id.0, r.version)
    }

    fn records_in_topic(&self) -> u64 {
        self.log.partition_offsets(SCHEMAS_TOPIC, 0).expect("offsets").high_watermark
    }
}

fn open(dir: &tempfile::TempDir) -> (Arc<Log>, RegistryStore) {
    let log = Arc::new(Log::open(dir.path(), LogConfig::default()).expect("open log"));
    let store = RegistryStore::open(log.clone()).expect("open store");
    (log, store)
}

#[test]
fn ids_belong_to_content_and_versions_count_per_subject() {
    let f = Fixture::new();
    assert_eq!(f.register("orders-value", &record(V1)), (1, 1));
    // The same schema again, even formatted differently: same id and version, nothing written.
    let before = f.records_in_topic();
    let spaced = avro(r#"{ "type": "record", "name": "Order", "fields": [ {"name": "id", "type": "string"} ] }"#);
    let again = f.store.register("orders-value", &spaced, RegisterOptions::default()).expect("again");
    assert_eq!((again.id, again.version, again.existed), (SchemaId(1), 1, true));
    assert_eq!(f.records_in_topic(), before);
    // The same content in another subject: same id, that subject's version 1.
    assert_eq!(f.register("other-value", &record(V1)), (1, 1));
    assert_eq!(f.register("orders-value", &record(V2)), (2, 2));
    assert_eq!(f.store.subjects(None, false), ["orders-value", "other-value"]);
    assert_eq!(f.store.subjects(Some("oth"), false), ["other-value"]);
    assert_eq!(f.store.versions("orders-value", false).expect("versions"), [1, 2]);
    let latest = f.store.version("orders-value", VersionSpec::Latest, false).expect("latest");
    assert_eq!((latest.version, latest.id), (2, SchemaId(2)));
    let subjects = f.store.id_subjects(SchemaId(1), false).expect("subjects");
    assert_eq!(subjects, ["orders-value", "other-value"]);
    // Lookup finds the version holding the schema.
    let found = f.store.lookup("orders-value", &spaced, false, false).expect("lookup");
    assert_eq!((found.version, found.id), (1, SchemaId(1)));
    let missing = f.store.lookup("orders-value", &avro(r#""int""#), false, false).unwrap_err();
    assert_eq!(missing.error_code(), 40403);
    assert_eq!(f.store.lookup("nobody", &spaced, false, false).unwrap_err().error_code(), 40401);
    // The parsed view validation uses.
    assert!(f.store.schema_by_id(SchemaId(2)).is_some());
    assert!(f.store.subject_has_id("other-value", SchemaId(1)));
    assert!(!f.store.subject_has_id("other-value", SchemaId(2)));
    assert_eq!(f.store.latest("orders-value").map(|(id, _)| id), Some(SchemaId(2)));
}

#[test]
fn refusals_write_nothing_and_carry_confluents_codes() {
    let f = Fixture::new();
    f.register("s", &record(V1));
    let before = f.records_in_topic();
    let code = |r: Result<evident_registry::Registered, RegistryError>| r.unwrap_err().error_code();
    let opts = RegisterOptions::default();
    assert_eq!(code(f.store.register("s", &avro("{not json"), opts)), 42201);
    assert_eq!(code(f.store.register("s", &record(BAD), opts)), 409);
    let dangling = SchemaInput {
        references: vec![Reference { name: "x.Y".into(), subject: "nope".into(), version: 1 }],
        ..record(V1)
    };
    assert_eq!(code(f.store.register("s2", &dangling, opts)), 42201);
    assert_eq!(code(f.store.register("", &record(V1), opts)), 42208);
    assert_eq!(code(f.store.register("a\u{0}b", &record(V1), opts)), 42208);
    let huge = avro(&format!("\"{}\"", "x".repeat(evident_registry::SCHEMA_LEN_MAX)));
    assert_eq!(code(f.store.register("s", &huge, opts)), 42209);
    let imported = RegisterOptions { id: Some(50), ..opts };
    assert_eq!(code(f.store.register("s3", &record(V1), imported)), 42205);
    assert_eq!(f.records_in_topic(), before, "a refused request wrote to _schemas");
    // The incompatible reasons name the version.
    let Err(RegistryError::Incompatible { reasons, .. }) = f.store.register("s", &record(BAD), opts) else {
        panic!("expected 409")
    };
    assert!(reasons.iter().any(|r| r.contains("version 1")), "{reasons:?}");
    assert_eq!(f.store.versions("s", false).expect("versions"), [1]);
}

#[test]
fn compatibility_follows_the_configured_levels_and_checks_live_versions_only() {
    let f = Fixture::new();
    f.register("s", &record(V1));
    assert_eq!(f.store.effective_compatibility(Some("s")), Compatibility::Backward);
    assert_eq!(f.store.check_compatibility("s", &record(BAD), None, false).expect("check").len(), 1);
    f.store.set_compatibility(Some("s"), Compatibility::None).expect("none");
    assert!(f.store.check_compatibility("s", &record(BAD), None, false).expect("check").is_empty());
    assert_eq!(f.store.compatibility(Some("s")), Some(Compatibility::None));
    assert_eq!(f.store.delete_compatibility(Some("s")).expect("delete"), Compatibility::None);
    assert_eq!(f.store.delete_compatibility(Some("s")).unwrap_err().error_code(), 40408);
    f.store.set_compatibility(None, Compatibility::Forward).expect("global");
    assert_eq!(f.store.effective_compatibility(Some("s")), Compatibility::Forward);
    f.store.set_compatibility(None, Compatibility::Backward).expect("global back");
    // A soft-deleted version no longer constrains the next.
    f.store.delete_version("s", VersionSpec::Number(1), false).expect("soft delete");
    assert_eq!(f.register("s", &record(BAD)), (2, 2));
    // Against one named version.
    let against = f.store.check_compatibility("s", &record(V1), Some(VersionSpec::Number(2)), false).expect("check");
    assert!(against.is_empty(), "{against:?}");
    let gone = f.store.check_compatibility("s", &record(V1), Some(VersionSpec::Number(1)), false).unwrap_err();
    assert_eq!(gone.error_code(), 40402);
}

#[test]
fn deletes_go_soft_then_permanent_and_ids_and_versions_are_never_reused() {
    let mut f = Fixture::new();
    f.register("s", &record(V1));
    f.register("s", &record(V2));
    assert_eq!(f.store.delete_version("s", VersionSpec::Number(2), true).unwrap_err().error_code(), 40407);
    assert_eq!(f.store.delete_version("s", VersionSpec::Number(2), false).expect("soft"), 2);
    assert_eq!(f.store.delete_version("s", VersionSpec::Number(2), false).unwrap_err().error_code(), 40406);
    assert_eq!(f.store.versions("s", false).expect("live"), [1]);
    assert_eq!(f.store.versions("s", true).expect("all"), [1, 2]);
    // Still readable by id: data written with it must stay readable.
    assert!(f.store.schema(SchemaId(2), None).is_ok());
    assert!(f.store.version("s", VersionSpec::Number(2), true).expect("deleted=true").deleted);
    assert_eq!(f.store.version("s", VersionSpec::Number(2), false).unwrap_err().error_code(), 40402);
    assert_eq!(f.store.delete_version("s", VersionSpec::Number(2), true).expect("permanent"), 2);
    assert_eq!(f.store.schema(SchemaId(2), None).unwrap_err().error_code(), 40403);
    // Subject-level.
    assert_eq!(f.store.delete_subject("s", true).unwrap_err().error_code(), 40405);
    assert_eq!(f.store.delete_subject("s", false).expect("soft subject"), [1]);
    assert_eq!(f.store.delete_subject("s", false).unwrap_err().error_code(), 40404);
    assert!(f.store.subjects(None, false).is_empty());
    assert_eq!(f.store.subjects(None, true), ["s"]);
    f.store.set_mode(Some("s"), Mode::Readwrite, false).expect("mode");
    assert_eq!(f.store.delete_subject("s", true).expect("permanent subject"), [1]);
    assert_eq!(f.store.mode(Some("s")), None, "a permanent delete also removes the subject's mode");
    assert!(f.store.subjects(None, true).is_empty());
    assert_eq!(f.store.versions("s", true).unwrap_err().error_code(), 40401);
    for round in 0..2 {
        f = if round == 0 { f.reopen() } else { f.crash() };
        // Same content as the deleted id 1: a new id (ids are never reused); the subject
        // starts again at version 1, as Confluent's does after a permanent delete.
        let (id, version) = f.register("s", &record(V1));
        assert!(id > 2 + round, "id {id} reused after a permanent delete");
        assert_eq!(version, 1, "a permanently deleted subject starts again at version 1");
        f.store.delete_subject("s", false).expect("soft");
        f.store.delete_subject("s", true).expect("permanent");
    }
}

#[test]
fn references_resolve_transitively_and_protect_what_they_name() {
    let f = Fixture::new();
    let money =
        avro(r#"{"type":"record","name":"Money","namespace":"shop","fields":[{"name":"cents","type":"long"}]}"#);
    f.register("money", &money);
    let line = SchemaInput {
        schema: r#"{"type":"record","name":"Line","namespace":"shop","fields":[{"name":"price","type":"shop.Money"}]}"#
            .into(),
        schema_type: SchemaType::Avro,
        references: vec![Reference { name: "shop.Money".into(), subject: "money".into(), version: 1 }],
    };
    assert_eq!(f.register("line", &line), (2, 1));
    let order = SchemaInput {
        schema: r#"{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"line","type":"shop.Line"},{"name":"total","type":"shop.Money"}]}"#
            .into(),
        schema_type: SchemaType::Avro,
        references: vec![Reference { name: "shop.Line".into(), subject: "line".into(), version: 1 }],
    };
    assert_eq!(f.register("order", &order), (3, 1));
    assert_eq!(f.store.referenced_by("money", VersionSpec::Number(1)).expect("refs"), [SchemaId(2)]);
    let err = f.store.delete_version("money", VersionSpec::Number(1), false).unwrap_err();
    assert_eq!(err.error_code(), 42206, "{err}");
    assert_eq!(f.store.delete_subject("line", false).unwrap_err().error_code(), 42206);
    // Once the referrers are gone, the referenced version may go.
    f.store.delete_subject("order", false).expect("order");
    f.store.delete_subject("line", false).expect("line");
    // A soft-deleted referrer still blocks a permanent delete.
    f.store.delete_version("money", VersionSpec::Number(1), false).expect("soft money");
    assert_eq!(f.store.delete_version("money", VersionSpec::Number(1), true).unwrap_err().error_code(), 42206);
    // The parsed cache survives a reopen (references resolve after replay).
    let f = f.reopen();
    assert!(f.store.schema_by_id(SchemaId(3)).is_some());
}

#[test]
fn modes_refuse_writes_and_import_chooses_ids() {
    let f = Fixture::new();
    f.register("s", &record(V1));
    f.store.set_mode(Some("s"), Mode::Readonly, false).expect("readonly");
    let err = f.store.register("s", &record(V2), RegisterOptions::default()).unwrap_err();
    assert_eq!(err.error_code(), 42205);
    assert_eq!(f.store.delete_subject("s", false).unwrap_err().error_code(), 42205);
    assert_eq!(f.store.delete_mode("s").expect("delete mode"), Mode::Readonly);
    assert_eq!(f.store.delete_mode("s").unwrap_err().error_code(), 40409);
    // IMPORT needs an empty registry unless forced.
    assert_eq!(f.store.set_mode(None, Mode::Import, false).unwrap_err().error_code(), 42205);
    f.store.set_mode(Some("imported"), Mode::Import, false).expect("import into an empty subject");
    let chosen = RegisterOptions { id: Some(100), version: Some(7), ..RegisterOptions::default() };
    let r = f.store.register("imported", &record(V2), chosen).expect("import");
    assert_eq!((r.id, r.version), (SchemaId(100), 7));
    let clash = RegisterOptions { id: Some(1), ..RegisterOptions::default() };
    assert_eq!(f.store.register("imported", &record(BAD), clash).unwrap_err().error_code(), 42207);
    f.store.set_mode(Some("imported"), Mode::Readwrite, false).expect("back");
    // New ids continue above the imported one.
    assert_eq!(f.register("fresh", &avro(r#""string""#)).0, 101);
}

#[test]
fn everything_acknowledged_survives_close_and_crash() {
    let mut f = Fixture::new();
    f.register("a", &record(V1));
    f.register("a", &record(V2));
    f.register("b", &avro(r#""string""#));
    f.store.delete_version("a", VersionSpec::Number(1), false).expect("soft");
    f.store.set_compatibility(Some("b"), Compatibility::Full).expect("config");
    f.store.set_compatibility(None, Compatibility::ForwardTransitive).expect("global");
    f.store.set_mode(Some("b"), Mode::Readonly, false).expect("mode");
    for round in 0..2 {
        f = if round == 0 { f.reopen() } else { f.crash() };
        assert_eq!(f.store.versions("a", false).expect("a"), [2], "round {round}");
        assert_eq!(f.store.versions("a", true).expect("a all"), [1, 2]);
        assert_eq!(f.store.version("b", VersionSpec::Latest, false).expect("b").id, SchemaId(3));
        assert_eq!(f.store.compatibility(Some("b")), Some(Compatibility::Full));
        assert_eq!(f.store.compatibility(None), Some(Compatibility::ForwardTransitive));
        assert_eq!(f.store.mode(Some("b")), Some(Mode::Readonly));
        assert_eq!(f.store.max_id(), 3);
        assert!(f.store.schema_by_id(SchemaId(1)).is_some(), "soft-deleted schemas stay parsed");
    }
}

#[test]
fn the_front_doors_know_schemas_is_internal() {
    assert!(evident_groups::is_internal_topic(SCHEMAS_TOPIC));
    assert_eq!(evident_groups::SCHEMAS_TOPIC, SCHEMAS_TOPIC);
}
