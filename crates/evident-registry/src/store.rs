//! [`RegistryStore`]: subjects, versions, schema ids, compatibility levels and modes kept
//! durably in the log's internal topic `_schemas`, as `evident-groups` keeps committed offsets
//! in `__consumer_offsets`, and the operations of Confluent's Schema Registry over them.
//!
//! # Storage format of `_schemas` (version 1)
//!
//! One partition, `cleanup.policy=compact`. Every change is **one record batch, one append**,
//! durable (synced) before the call returns, so an acknowledged registration, delete or config
//! change survives a crash, and a refused one wrote nothing. Keys are JSON arrays whose first
//! element is the record kind; values are JSON objects with a format version `"v":1`; a null
//! value (tombstone) removes the key.
//!
//! | key | value | meaning |
//! |-----|-------|---------|
//! | `["schema", subject, version]` | `{"v":1,"id":N,"schemaType":"AVRO","schema":"…","references":[{"name","subject","version"}],"deleted":false}` | a subject version; `deleted:true` is a soft delete; a tombstone a permanent delete |
//! | `["config", subject]` / `["config", null]` | `{"v":1,"compatibility":"BACKWARD"}` | compatibility level of a subject / global; tombstone = not configured |
//! | `["mode", subject]` / `["mode", null]` | `{"v":1,"mode":"READONLY"}` | mode of a subject / global; tombstone = not configured |
//! | `["ids"]` | `{"v":1,"max_id":N}` | highest schema id ever given |
//! | `["versions", subject]` | `{"v":1,"max_version":N}` | read, no longer written (see Versions below) |
//!
//! The ids floor record is written in the same batch as every permanent delete: without it a
//! replay after compaction would no longer see the deleted ids, and could give them to other
//! content. Ids are therefore never reused, even after a permanent delete and a restart. Records carry no headers; their timestamp is the write time.
//!
//! On [`RegistryStore::open`] the topic is replayed from offset 0 to its high watermark and
//! each record applied in offset order; then every schema is parsed once (references first)
//! and kept parsed in memory behind an `Arc` ([`SchemaSource`] answers from there). A record
//! that cannot be decoded stops the open with [`RegistryError::Corrupted`]; an unknown kind or
//! value version with [`RegistryError::UnsupportedFormat`] (written by a newer evident).
//!
//! # Model (Confluent's, except where said)
//!
//! - **Ids** belong to content: registering a schema whose format, canonical text (or
//!   normalized text, with `normalize`) and references equal an existing one's gives its id,
//!   in any subject. New content gets the highest id ever given + 1, starting at 1.
//! - **Versions** start at 1 per subject; the next is the highest the subject holds, live or
//!   soft-deleted, + 1. So a soft delete never frees a version, but a permanent delete of the
//!   highest versions does, as in Confluent (whose clients expect a subject deleted
//!   permanently and registered again to start at version 1; `delete.permanent_subject` in
//!   tests/registry/confluent_suite.py). Registering a schema already live in the subject
//!   returns that version and writes nothing.
//! - **Compatibility** of a new version is checked with [`crate::compat::check`] against the
//!   subject's live versions (soft-deleted ones do not count) at the subject's level, else the
//!   global one, else BACKWARD. IMPORT mode skips the check.
//! - **Modes**: READONLY refuses registrations and deletes (42205); IMPORT lets a registration
//!   choose its id and version (refused in the other modes), and may only be entered while the
//!   registry (or subject) is empty unless forced.
//! - **Deletes**: a soft delete hides a version (or every version of a subject) from lookups,
//!   listings (unless `deleted`) and compatibility checks, but its id still resolves (data
//!   written with it stays readable). A permanent delete needs a soft delete first (40405,
//!   40407), removes the version and, when no version holds its id any more, the schema. A
//!   version that other live versions reference cannot be deleted (42206); permanently, not
//!   even while soft-deleted referrers remain. A permanent subject delete also removes the
//!   subject's compatibility and mode.
//! - **References** are resolved to their transitive closure, dependencies first, each under
//!   the name its referrer uses; an unknown subject or version, a cycle, a closure above
//!   [`REFERENCES_CLOSURE_MAX`] schemas, or a reference of another format is an invalid
//!   schema (42201).
//! - **Bounds**: schema text up to [`SCHEMA_LEN_MAX`] bytes (42209), subject names 1 to
//!   [`SUBJECT_LEN_MAX`] bytes without control characters (42208), at most
//!   [`REFERENCES_MAX`] direct references (42201).
//!
//! # Concurrency
//!
//! Writers are serialized by one mutex held across their check, append and apply: ids and
//! versions are allocated from the state the check saw, and registrations are rare next to
//! reads. Readers take the state's read lock only, never across an append, so lookups by id
//! (every produce with validation) never wait for a registration's fsync.

mod record;
mod state;

use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};

use evident_core::BatchBuilder;
use evident_log::{CleanupPolicy, Log, ScanError, TopicConfig};

use crate::compat::{self, Existing};
use crate::error::{RegistryError, Result};
use crate::parse::{ParsedSchema, ResolvedReference};
use crate::schema::{Compatibility, Mode, Reference, SchemaId, SchemaType, SubjectVersion};
use crate::source::SchemaSource;

use record::{DecodeError, Key, Record, SchemaValue, Value};
use state::State;

/// The internal topic that holds the registry.
pub const SCHEMAS_TOPIC: &str = "_schemas";
/// Longest schema text, in bytes (Confluent has no fixed limit; 1 MiB bounds what one request
/// makes the store parse and keep).
pub const SCHEMA_LEN_MAX: usize = 1 << 20;
/// Longest subject name, in bytes.
pub const SUBJECT_LEN_MAX: usize = 1024;
/// Most references one schema may list.
pub const REFERENCES_MAX: usize = 256;
/// Most schemas a schema's references may reach, transitively.
pub const REFERENCES_CLOSURE_MAX: usize = 1024;

/// Which version of a subject a request names: a number, or `latest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSpec {
    /// The highest live version (with `deleted`, the highest of all).
    Latest,
    /// A version number (1 to 2^31-1).
    Number(i32),
}

impl FromStr for VersionSpec {
    type Err = RegistryError;
    /// `latest`, `-1` (Confluent's alias for it) or a positive number; else 42202.
    fn from_str(s: &str) -> Result<Self> {
        if s.eq_ignore_ascii_case("latest") || s == "-1" {
            return Ok(VersionSpec::Latest);
        }
        match s.parse::<i32>() {
            Ok(n) if n >= 1 => Ok(VersionSpec::Number(n)),
            _ => Err(RegistryError::InvalidVersion(s.to_string())),
        }
    }
}

/// A schema as a client sends it to register, look up or check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaInput {
    /// The schema's text.
    pub schema: String,
    /// Its format.
    pub schema_type: SchemaType,
    /// Its references.
    pub references: Vec<Reference>,
}

/// A registration's options.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegisterOptions {
    /// Compare by normalized rather than canonical text.
    pub normalize: bool,
    /// The id to give (IMPORT mode only).
    pub id: Option<i32>,
    /// The version to give (IMPORT mode only).
    pub version: Option<i32>,
}

/// What a registration returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    /// The schema's id.
    pub id: SchemaId,
    /// Its version in the subject.
    pub version: i32,
    /// Whether the subject already held it live (nothing was written).
    pub existed: bool,
}

/// One subject version, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectSchema {
    /// The subject.
    pub subject: String,
    /// The version.
    pub version: i32,
    /// The schema's id.
    pub id: SchemaId,
    /// Its format.
    pub schema_type: SchemaType,
    /// Its text as first registered.
    pub schema: Arc<str>,
    /// Its references.
    pub references: Vec<Reference>,
    /// Whether the version is soft-deleted.
    pub deleted: bool,
}

/// A schema by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaById {
    /// The id.
    pub id: SchemaId,
    /// Its format.
    pub schema_type: SchemaType,
    /// Its text as first registered.
    pub schema: Arc<str>,
    /// Its references.
    pub references: Vec<Reference>,
}

/// The schema registry, kept in `_schemas`. Open one per [`Log`]: the store assumes it is the
/// only writer of that topic.
pub struct RegistryStore {
    log: Arc<Log>,
    state: RwLock<State>,
    writer: Mutex<()>,
}

impl std::fmt::Debug for RegistryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryStore").field("log", &self.log).finish_non_exhaustive()
    }
}

/// Checks a subject name (42208).
pub fn validate_subject(subject: &str) -> Result<()> {
    if subject.is_empty() || subject.len() > SUBJECT_LEN_MAX {
        return Err(RegistryError::InvalidSubject(format!(
            "Invalid subject: a subject name is 1 to {SUBJECT_LEN_MAX} bytes long, not {}",
            subject.len()
        )));
    }
    if subject.chars().any(char::is_control) {
        return Err(RegistryError::InvalidSubject(format!(
            "Invalid subject {subject:?}: control characters are not allowed"
        )));
    }
    Ok(())
}

impl RegistryStore {
    /// Creates `_schemas` if absent (one partition, compacted) and replays it.
    pub fn open(log: Arc<Log>) -> Result<Self> {
        let config = TopicConfig {
            partitions: 1,
            cleanup_policy: CleanupPolicy::Compact,
            key_partition_guard: false,
            ..TopicConfig::default()
        };
        match log.create_topic(SCHEMAS_TOPIC, config) {
            Ok(_) | Err(evident_log::Error::TopicExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let mut state = replay(&log)?;
        state.parse_all(REFERENCES_CLOSURE_MAX);
        Ok(Self { log, state: RwLock::new(state), writer: Mutex::new(()) })
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        // A panic under the lock is a bug caught by an assertion; the state it left is still
        // a replay's, so keep serving rather than cascade panics.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn writer(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `records` as one batch (durable when this returns) and applies them.
    /// `parsed` is the parse of a newly registered content, kept in memory.
    fn write(&self, records: Vec<Record>, parsed: Option<Arc<ParsedSchema>>) -> Result<()> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let mut builder = BatchBuilder::new();
        for (key, value) in &records {
            let value = value.as_ref().map(Value::encode);
            builder.push_parts(Some(&key.encode()), value.as_deref(), &[], now);
        }
        let outcome = self.log.append_batch(SCHEMAS_TOPIC, 0, &builder.build(), None)?;
        assert_eq!(outcome.records.len(), records.len(), "the log reported another number of records");
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        for (key, value) in records {
            match (key, value) {
                (Key::Schema { subject, version }, Some(Value::Schema(v))) => {
                    st.put_version(subject, version, v, parsed.clone());
                }
                (key, value) => st.apply(key, value),
            }
        }
        Ok(())
    }

    /// Parses a schema with its references resolved against the store (42201 if it does not
    /// parse or a reference is unknown or cyclic).
    pub fn parse(&self, input: &SchemaInput) -> Result<Arc<ParsedSchema>> {
        check_input(input)?;
        let refs = self.resolve(&input.references)?;
        Ok(Arc::new(crate::parse::parse(input.schema_type, &input.schema, &refs)?))
    }

    fn resolve(&self, references: &[Reference]) -> Result<Vec<ResolvedReference>> {
        self.read()
            .resolve(references, REFERENCES_CLOSURE_MAX)
            .map_err(|why| RegistryError::InvalidSchema(format!("Invalid schema: {why}")))
    }

    /// Registers `input` under `subject` (Confluent's `POST /subjects/{s}/versions`).
    pub fn register(&self, subject: &str, input: &SchemaInput, options: RegisterOptions) -> Result<Registered> {
        validate_subject(subject)?;
        check_input(input)?;
        let _writer = self.writer();
        let mode = self.read().mode(subject);
        match mode {
            Mode::Readonly => {
                return Err(RegistryError::OperationNotPermitted(format!("Subject {subject} is in read-only mode")))
            }
            Mode::Readwrite if options.id.is_some() || options.version.is_some() => {
                return Err(RegistryError::OperationNotPermitted(format!(
                    "Subject {subject} is not in import mode: a registration may not choose its id or version"
                )))
            }
            _ => {}
        }
        if let Some(id) = options.id {
            if id < 1 {
                return Err(RegistryError::IdDoesNotMatch(format!("Invalid id {id}: ids start at 1")));
            }
        }
        if let Some(v) = options.version {
            if v < 1 {
                return Err(RegistryError::InvalidVersion(v.to_string()));
            }
        }
        let parsed = self.parse(input)?;
        let key_text = if options.normalize { parsed.normalized() } else { parsed.canonical() };
        let content_key = (input.schema_type, key_text, input.references.clone());
        let (id, version, new_content, level, existing) = {
            let st = self.read();
            let index = if options.normalize { &st.by_normalized } else { &st.by_canonical };
            let known = index.get(&content_key).copied();
            let sub = st.subjects.get(subject);
            // Already live in the subject: its version, nothing written.
            if let (Some(id), Some(sub)) = (known, sub) {
                if let Some((v, _)) = sub.versions.iter().rev().find(|(_, e)| !e.deleted && e.id == id) {
                    if options.id.is_none_or(|want| want == id.0) {
                        return Ok(Registered { id, version: *v, existed: true });
                    }
                }
            }
            let id = match (options.id, known) {
                (Some(want), _) => {
                    if st.contents.contains_key(&SchemaId(want)) {
                        if known != Some(SchemaId(want)) {
                            return Err(RegistryError::IdDoesNotMatch(format!(
                                "Schema id {want} already holds another schema"
                            )));
                        }
                    } else if want <= st.id_floor {
                        return Err(RegistryError::IdDoesNotMatch(format!(
                            "Schema id {want} was used before and permanently deleted; ids are never reused"
                        )));
                    }
                    SchemaId(want)
                }
                (None, Some(id)) => id,
                (None, None) => SchemaId(
                    st.max_id()
                        .checked_add(1)
                        .ok_or_else(|| RegistryError::InvalidSchema("the registry ran out of schema ids".into()))?,
                ),
            };
            let max_version = sub.map_or(0, state::Subject::max_version);
            let version = match options.version {
                Some(v) if v <= max_version => {
                    return Err(RegistryError::InvalidVersion(format!(
                        "{v} (subject {subject} already reached version {max_version}; versions are never reused)"
                    )))
                }
                Some(v) => v,
                None => {
                    max_version.checked_add(1).ok_or_else(|| RegistryError::InvalidVersion("2147483648".to_string()))?
                }
            };
            let existing: Vec<(i32, Arc<ParsedSchema>)> = sub
                .map(|s| {
                    s.versions
                        .iter()
                        .filter(|(_, e)| !e.deleted)
                        .filter_map(|(v, e)| st.contents.get(&e.id).and_then(|c| c.parsed.clone()).map(|p| (*v, p)))
                        .collect()
                })
                .unwrap_or_default();
            let new_content = !st.contents.contains_key(&id);
            (id, version, new_content, st.compatibility(subject), existing)
        };
        if mode != Mode::Import {
            let existing: Vec<Existing<'_>> =
                existing.iter().map(|(version, schema)| Existing { version: *version, schema }).collect();
            let reasons = compat::check(level, &parsed, &existing);
            if !reasons.is_empty() {
                return Err(RegistryError::Incompatible { subject: subject.to_string(), reasons });
            }
        }
        let value = SchemaValue {
            id,
            schema_type: input.schema_type,
            schema: input.schema.clone(),
            references: input.references.clone(),
            deleted: false,
        };
        let record = (Key::Schema { subject: subject.to_string(), version }, Some(Value::Schema(value)));
        self.write(vec![record], new_content.then_some(parsed))?;
        Ok(Registered { id, version, existed: false })
    }

    /// The reasons `input` may not follow `subject`'s versions: against one version when
    /// `against` names it, else against the live versions the subject's level covers (as a
    /// registration would check). Empty means compatible; a subject without versions accepts
    /// anything.
    pub fn check_compatibility(
        &self,
        subject: &str,
        input: &SchemaInput,
        against: Option<VersionSpec>,
        normalize: bool,
    ) -> Result<Vec<String>> {
        validate_subject(subject)?;
        let _ = normalize; // identity does not matter to a check; accepted for the API's sake
        let (level, existing) = {
            let st = self.read();
            let level = st.compatibility(subject);
            let existing: Vec<(i32, Option<Arc<ParsedSchema>>)> = match against {
                Some(spec) => {
                    let (v, e) = find_version(&st, subject, spec, false)?;
                    vec![(v, st.contents.get(&e.id).and_then(|c| c.parsed.clone()))]
                }
                None => st
                    .subjects
                    .get(subject)
                    .map(|s| {
                        s.versions
                            .iter()
                            .filter(|(_, e)| !e.deleted)
                            .map(|(v, e)| (*v, st.contents.get(&e.id).and_then(|c| c.parsed.clone())))
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            (level, existing)
        };
        let parsed = self.parse(input)?;
        let existing: Vec<(i32, Arc<ParsedSchema>)> =
            existing.into_iter().filter_map(|(v, p)| p.map(|p| (v, p))).collect();
        let existing: Vec<Existing<'_>> =
            existing.iter().map(|(version, schema)| Existing { version: *version, schema }).collect();
        Ok(compat::check(level, &parsed, &existing))
    }

    /// The version of `subject` holding `input` (Confluent's `POST /subjects/{s}`); with
    /// `deleted`, soft-deleted versions count too. 40401 if the subject has no (live) version,
    /// 40403 if none holds the schema.
    pub fn lookup(&self, subject: &str, input: &SchemaInput, normalize: bool, deleted: bool) -> Result<SubjectSchema> {
        validate_subject(subject)?;
        {
            let st = self.read();
            let known = st.subjects.get(subject).is_some_and(|s| s.versions.values().any(|e| deleted || !e.deleted));
            if !known {
                return Err(RegistryError::SubjectNotFound(subject.to_string()));
            }
        }
        let parsed = self.parse(input)?;
        let st = self.read();
        let sub = st.subjects.get(subject).ok_or_else(|| RegistryError::SubjectNotFound(subject.to_string()))?;
        let (text, normalized) =
            if normalize { (None, Some(parsed.normalized())) } else { (Some(parsed.canonical()), None) };
        let hit = sub.versions.iter().rev().filter(|(_, e)| deleted || !e.deleted).find(|(_, e)| {
            st.contents.get(&e.id).is_some_and(|c| {
                c.schema_type == input.schema_type
                    && c.references == input.references
                    && match (&text, &normalized) {
                        (Some(t), _) => c.canonical.as_ref() == Some(t),
                        (_, Some(n)) => c.normalized.as_ref() == Some(n),
                        _ => false,
                    }
            })
        });
        let (version, _) = hit.ok_or(RegistryError::SchemaNotFound(None))?;
        subject_schema(&st, subject, *version)
    }

    /// Subjects with a live version (with `deleted`, soft-deleted ones too), by name, those
    /// starting with `prefix` if given.
    pub fn subjects(&self, prefix: Option<&str>, deleted: bool) -> Vec<String> {
        let st = self.read();
        st.subjects
            .iter()
            .filter(|(name, s)| {
                prefix.is_none_or(|p| name.starts_with(p)) && s.versions.values().any(|e| deleted || !e.deleted)
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The subject's versions (live; with `deleted`, soft-deleted too). 40401 if none.
    pub fn versions(&self, subject: &str, deleted: bool) -> Result<Vec<i32>> {
        validate_subject(subject)?;
        let st = self.read();
        let versions: Vec<i32> = st
            .subjects
            .get(subject)
            .map(|s| s.versions.iter().filter(|(_, e)| deleted || !e.deleted).map(|(v, _)| *v).collect())
            .unwrap_or_default();
        if versions.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_string()));
        }
        Ok(versions)
    }

    /// One version of a subject (with `deleted`, a soft-deleted one may be named).
    pub fn version(&self, subject: &str, spec: VersionSpec, deleted: bool) -> Result<SubjectSchema> {
        validate_subject(subject)?;
        let st = self.read();
        let (version, _) = find_version(&st, subject, spec, deleted)?;
        subject_schema(&st, subject, version)
    }

    /// Ids of the live schemas that reference this version (Confluent's `referencedby`).
    pub fn referenced_by(&self, subject: &str, spec: VersionSpec) -> Result<Vec<SchemaId>> {
        validate_subject(subject)?;
        let st = self.read();
        let (version, _) = find_version(&st, subject, spec, true)?;
        Ok(st.referrers(subject, version, false))
    }

    /// The schema with this id (soft-deleted versions still resolve); with `subject`, only if
    /// that subject holds it. 40403 otherwise.
    pub fn schema(&self, id: SchemaId, subject: Option<&str>) -> Result<SchemaById> {
        let st = self.read();
        let content = st.contents.get(&id).ok_or(RegistryError::SchemaNotFound(Some(id)))?;
        if let Some(subject) = subject {
            if !st.uses.get(&id).is_some_and(|u| u.iter().any(|(s, _)| s == subject)) {
                return Err(RegistryError::SchemaNotFound(Some(id)));
            }
        }
        Ok(SchemaById {
            id,
            schema_type: content.schema_type,
            schema: content.text.clone(),
            references: content.references.clone(),
        })
    }

    /// The subject versions holding this id (live; with `deleted`, soft-deleted too).
    pub fn id_versions(&self, id: SchemaId, deleted: bool) -> Result<Vec<SubjectVersion>> {
        let st = self.read();
        let uses = st.uses.get(&id).ok_or(RegistryError::SchemaNotFound(Some(id)))?;
        Ok(uses
            .iter()
            .filter(|(s, v)| {
                deleted || st.subjects.get(s).and_then(|sub| sub.versions.get(v)).is_some_and(|e| !e.deleted)
            })
            .map(|(s, v)| SubjectVersion { subject: s.clone(), version: *v })
            .collect())
    }

    /// The subjects holding this id (live; with `deleted`, soft-deleted too).
    pub fn id_subjects(&self, id: SchemaId, deleted: bool) -> Result<Vec<String>> {
        let mut subjects: Vec<String> = self.id_versions(id, deleted)?.into_iter().map(|sv| sv.subject).collect();
        subjects.dedup();
        Ok(subjects)
    }

    /// Deletes one version: softly, or permanently (which needs a soft delete first). Returns
    /// the version deleted.
    pub fn delete_version(&self, subject: &str, spec: VersionSpec, permanent: bool) -> Result<i32> {
        validate_subject(subject)?;
        let _writer = self.writer();
        let records = {
            let st = self.read();
            refuse_readonly(&st, subject)?;
            // A numbered version is found even when soft-deleted, so a second soft delete is
            // 40406 (as Confluent answers); `latest` is the latest live one for a soft delete.
            let include_deleted = permanent || matches!(spec, VersionSpec::Number(_));
            let (version, entry) = find_version(&st, subject, spec, include_deleted)?;
            if !permanent && entry.deleted {
                return Err(RegistryError::VersionSoftDeleted { subject: subject.to_string(), version });
            }
            if permanent && !entry.deleted {
                return Err(RegistryError::VersionNotSoftDeleted { subject: subject.to_string(), version });
            }
            let referrers = st.referrers(subject, version, permanent);
            if !referrers.is_empty() {
                return Err(reference_exists(subject, version, &referrers));
            }
            if permanent {
                let key = Key::Schema { subject: subject.to_string(), version };
                vec![(key, None), floor_ids(&st)]
            } else {
                let content = st.contents.get(&entry.id).expect("a version's content is in memory");
                vec![soft_deleted(subject, version, entry.id, content)]
            }
        };
        let version = match &records[0].0 {
            Key::Schema { version, .. } => *version,
            _ => unreachable!("the first record is the version's"),
        };
        self.write(records, None)?;
        Ok(version)
    }

    /// Deletes every version of a subject: softly (the live ones; 40404 if none is live), or
    /// permanently (all, once all are soft-deleted; also the subject's config and mode).
    /// Returns the versions deleted.
    pub fn delete_subject(&self, subject: &str, permanent: bool) -> Result<Vec<i32>> {
        validate_subject(subject)?;
        let _writer = self.writer();
        let (records, versions) = {
            let st = self.read();
            refuse_readonly(&st, subject)?;
            let sub = st
                .subjects
                .get(subject)
                .filter(|s| !s.versions.is_empty())
                .ok_or_else(|| RegistryError::SubjectNotFound(subject.to_string()))?;
            if permanent && sub.has_live() {
                return Err(RegistryError::SubjectNotSoftDeleted(subject.to_string()));
            }
            if !permanent && !sub.has_live() {
                return Err(RegistryError::SubjectSoftDeleted(subject.to_string()));
            }
            let mut records = Vec::new();
            let mut versions = Vec::new();
            for (&version, entry) in &sub.versions {
                if !permanent && entry.deleted {
                    continue;
                }
                // Referrers inside the subject itself go with it.
                let referrers: Vec<SchemaId> = st
                    .referrers(subject, version, permanent)
                    .into_iter()
                    .filter(|id| st.uses.get(id).is_some_and(|u| u.iter().any(|(s, _)| s != subject)))
                    .collect();
                if !referrers.is_empty() {
                    return Err(reference_exists(subject, version, &referrers));
                }
                versions.push(version);
                let key = Key::Schema { subject: subject.to_string(), version };
                if permanent {
                    records.push((key, None));
                } else {
                    let content = st.contents.get(&entry.id).expect("a version's content is in memory");
                    records.push(soft_deleted(subject, version, entry.id, content));
                }
            }
            if permanent {
                records.push(floor_ids(&st));
                if st.subject_compat.contains_key(subject) {
                    records.push((Key::Config(Some(subject.to_string())), None));
                }
                if st.subject_mode.contains_key(subject) {
                    records.push((Key::Mode(Some(subject.to_string())), None));
                }
            }
            (records, versions)
        };
        self.write(records, None)?;
        Ok(versions)
    }

    /// The compatibility level configured for `subject` (or globally when `None`), if any.
    pub fn compatibility(&self, subject: Option<&str>) -> Option<Compatibility> {
        let st = self.read();
        match subject {
            Some(s) => st.subject_compat.get(s).copied(),
            None => st.global_compat,
        }
    }

    /// The level that applies to `subject`: its own, else the global one, else BACKWARD.
    pub fn effective_compatibility(&self, subject: Option<&str>) -> Compatibility {
        let st = self.read();
        match subject {
            Some(s) => st.compatibility(s),
            None => st.global_compat.unwrap_or_default(),
        }
    }

    /// Sets the compatibility level of `subject` (or the global one).
    pub fn set_compatibility(&self, subject: Option<&str>, level: Compatibility) -> Result<()> {
        if let Some(s) = subject {
            validate_subject(s)?;
        }
        let _writer = self.writer();
        self.write(vec![(Key::Config(subject.map(str::to_string)), Some(Value::Config(level)))], None)
    }

    /// Removes the configured level of `subject` (40408 if none) or the global one (back to
    /// BACKWARD); returns the level removed (the global default if none was configured).
    pub fn delete_compatibility(&self, subject: Option<&str>) -> Result<Compatibility> {
        if let Some(s) = subject {
            validate_subject(s)?;
        }
        let _writer = self.writer();
        let previous = match subject {
            Some(s) => self
                .compatibility(Some(s))
                .ok_or_else(|| RegistryError::SubjectCompatibilityNotConfigured(s.to_string()))?,
            None => self.effective_compatibility(None),
        };
        self.write(vec![(Key::Config(subject.map(str::to_string)), None)], None)?;
        Ok(previous)
    }

    /// The mode configured for `subject` (or globally), if any.
    pub fn mode(&self, subject: Option<&str>) -> Option<Mode> {
        let st = self.read();
        match subject {
            Some(s) => st.subject_mode.get(s).copied(),
            None => st.global_mode,
        }
    }

    /// The mode that applies to `subject` (or globally): configured, else READWRITE.
    pub fn effective_mode(&self, subject: Option<&str>) -> Mode {
        let st = self.read();
        match subject {
            Some(s) => st.mode(s),
            None => st.global_mode.unwrap_or_default(),
        }
    }

    /// Sets the mode of `subject` (or the global one). IMPORT needs an empty registry (or
    /// subject) unless `force` (42205).
    pub fn set_mode(&self, subject: Option<&str>, mode: Mode, force: bool) -> Result<()> {
        if let Some(s) = subject {
            validate_subject(s)?;
        }
        let _writer = self.writer();
        if mode == Mode::Import && !force {
            let st = self.read();
            let occupied = match subject {
                Some(s) => st.subjects.get(s).is_some_and(|sub| !sub.versions.is_empty()),
                None => st.subjects.values().any(|sub| !sub.versions.is_empty()),
            };
            if occupied {
                return Err(RegistryError::OperationNotPermitted(
                    "Cannot import since found existing subjects (set force=true to import anyway)".to_string(),
                ));
            }
        }
        self.write(vec![(Key::Mode(subject.map(str::to_string)), Some(Value::Mode(mode)))], None)
    }

    /// Removes the configured mode of `subject` (40409 if none); returns the mode removed.
    pub fn delete_mode(&self, subject: &str) -> Result<Mode> {
        validate_subject(subject)?;
        let _writer = self.writer();
        let previous =
            self.mode(Some(subject)).ok_or_else(|| RegistryError::SubjectModeNotConfigured(subject.to_string()))?;
        self.write(vec![(Key::Mode(Some(subject.to_string())), None)], None)?;
        Ok(previous)
    }

    /// The highest schema id ever given (0 if none).
    pub fn max_id(&self) -> i32 {
        self.read().max_id()
    }
}

impl SchemaSource for RegistryStore {
    fn schema_by_id(&self, id: SchemaId) -> Option<Arc<ParsedSchema>> {
        self.read().contents.get(&id).and_then(|c| c.parsed.clone())
    }

    fn subject_has_id(&self, subject: &str, id: SchemaId) -> bool {
        let st = self.read();
        st.subjects.get(subject).is_some_and(|s| s.versions.values().any(|e| !e.deleted && e.id == id))
    }

    fn latest(&self, subject: &str) -> Option<(SchemaId, Arc<ParsedSchema>)> {
        let st = self.read();
        let (_, entry) = st.subjects.get(subject)?.versions.iter().rev().find(|(_, e)| !e.deleted)?;
        let parsed = st.contents.get(&entry.id)?.parsed.clone()?;
        Some((entry.id, parsed))
    }
}

/// Size and count bounds of a schema input (42209, 42201).
fn check_input(input: &SchemaInput) -> Result<()> {
    if input.schema.len() > SCHEMA_LEN_MAX {
        return Err(RegistryError::SchemaTooLarge(format!(
            "Schema too large: {} bytes; at most {SCHEMA_LEN_MAX} are allowed",
            input.schema.len()
        )));
    }
    if input.references.len() > REFERENCES_MAX {
        return Err(RegistryError::InvalidSchema(format!(
            "Invalid schema: {} references; at most {REFERENCES_MAX} are allowed",
            input.references.len()
        )));
    }
    for r in &input.references {
        if r.version < 1 {
            return Err(RegistryError::InvalidSchema(format!(
                "Invalid schema: reference {:?} names version {}; versions start at 1",
                r.name, r.version
            )));
        }
        validate_subject(&r.subject)
            .map_err(|e| RegistryError::InvalidSchema(format!("Invalid schema: reference {:?}: {e}", r.name)))?;
    }
    Ok(())
}

/// The version a spec names: `latest` is the highest live one (with `deleted`, the highest of
/// all). 40401 if the subject has no such versions, 40402 if the version is absent (or
/// soft-deleted without `deleted`).
fn find_version<'a>(
    st: &'a State,
    subject: &str,
    spec: VersionSpec,
    deleted: bool,
) -> Result<(i32, &'a state::VersionEntry)> {
    let sub = st
        .subjects
        .get(subject)
        .filter(|s| s.versions.values().any(|e| deleted || !e.deleted))
        .ok_or_else(|| RegistryError::SubjectNotFound(subject.to_string()))?;
    let found = match spec {
        VersionSpec::Latest => sub.versions.iter().rev().find(|(_, e)| deleted || !e.deleted),
        VersionSpec::Number(n) => sub.versions.get_key_value(&n).filter(|(_, e)| deleted || !e.deleted),
    };
    let version = match spec {
        VersionSpec::Latest => -1,
        VersionSpec::Number(n) => n,
    };
    found.map(|(v, e)| (*v, e)).ok_or_else(|| RegistryError::VersionNotFound { subject: subject.to_string(), version })
}

fn subject_schema(st: &State, subject: &str, version: i32) -> Result<SubjectSchema> {
    let entry = st
        .subjects
        .get(subject)
        .and_then(|s| s.versions.get(&version))
        .ok_or_else(|| RegistryError::VersionNotFound { subject: subject.to_string(), version })?;
    let content = st.contents.get(&entry.id).ok_or(RegistryError::SchemaNotFound(Some(entry.id)))?;
    Ok(SubjectSchema {
        subject: subject.to_string(),
        version,
        id: entry.id,
        schema_type: content.schema_type,
        schema: content.text.clone(),
        references: content.references.clone(),
        deleted: entry.deleted,
    })
}

fn refuse_readonly(st: &State, subject: &str) -> Result<()> {
    if st.mode(subject) == Mode::Readonly {
        return Err(RegistryError::OperationNotPermitted(format!("Subject {subject} is in read-only mode")));
    }
    Ok(())
}

fn reference_exists(subject: &str, version: i32, referrers: &[SchemaId]) -> RegistryError {
    let ids: Vec<String> = referrers.iter().map(ToString::to_string).collect();
    RegistryError::ReferenceExists(format!(
        "One or more references exist to the schema {{subject={subject},version={version}}}: schema ids {}",
        ids.join(", ")
    ))
}

fn soft_deleted(subject: &str, version: i32, id: SchemaId, content: &state::Content) -> Record {
    let value = SchemaValue {
        id,
        schema_type: content.schema_type,
        schema: content.text.to_string(),
        references: content.references.clone(),
        deleted: true,
    };
    (Key::Schema { subject: subject.to_string(), version }, Some(Value::Schema(value)))
}

fn floor_ids(st: &State) -> Record {
    (Key::Ids, Some(Value::Ids(st.max_id())))
}

/// Rebuilds the state from `_schemas`, from offset 0 to the high watermark.
fn replay(log: &Log) -> Result<State> {
    let mut st = State::default();
    log.scan_partition(SCHEMAS_TOPIC, 0, |offset, key, value| {
        let (key, value) = decode(offset, key, value)?;
        st.apply(key, value);
        Ok(())
    })
    .map_err(|e| match e {
        ScanError::Log(e) => e.into(),
        ScanError::Damaged { offset, what } => RegistryError::Corrupted { offset, what },
        ScanError::Visitor(e) => e,
    })?;
    Ok(st)
}

fn decode(offset: u64, key: Option<&[u8]>, value: Option<&[u8]>) -> Result<Record> {
    let failed = |e: DecodeError| match e {
        DecodeError::Corrupted(what) => RegistryError::Corrupted { offset, what },
        DecodeError::Unsupported(what) => RegistryError::UnsupportedFormat { offset, what },
    };
    let key = key.ok_or_else(|| RegistryError::Corrupted { offset, what: "record has no key".into() })?;
    let key = Key::decode(key).map_err(failed)?;
    let value = value.map(|v| Value::decode(&key, v)).transpose().map_err(failed)?;
    Ok((key, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_names_the_offset_and_the_problem() {
        let err = decode(12, None, None).unwrap_err();
        assert_eq!(err.to_string(), "_schemas is corrupted at offset 12: record has no key");
        let err = decode(13, Some(br#"["ids"]"#), Some(br#"{"v":9}"#)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "_schemas offset 13 uses a format this version of evident does not read (value format version 9); upgrade evident"
        );
        let (k, v) = decode(14, Some(br#"["config","s"]"#), None).expect("tombstone");
        assert_eq!((k, v), (Key::Config(Some("s".into())), None));
    }

    #[test]
    fn versions_parse_as_confluent_names_them() {
        assert_eq!("latest".parse::<VersionSpec>().ok(), Some(VersionSpec::Latest));
        assert_eq!("-1".parse::<VersionSpec>().ok(), Some(VersionSpec::Latest));
        assert_eq!("3".parse::<VersionSpec>().ok(), Some(VersionSpec::Number(3)));
        for bad in ["0", "-2", "x", "2147483648", ""] {
            assert_eq!(bad.parse::<VersionSpec>().map_err(|e| e.error_code()), Err(42202), "{bad}");
        }
    }
}
