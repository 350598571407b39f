//! The registry in memory: what a replay of `_schemas` builds, and what every write updates
//! after its append. Applying a record here is the only way the model changes, on replay and
//! on writes alike, so memory always equals what a replay of the log would build.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::parse::{ParsedSchema, ResolvedReference};
use crate::schema::{Compatibility, Mode, Reference, SchemaId, SchemaType};

use super::record::{Key, SchemaValue, Value};

/// One version of a subject.
#[derive(Debug, Clone)]
pub(crate) struct VersionEntry {
    pub id: SchemaId,
    pub deleted: bool,
}

/// A subject: its versions (live and soft-deleted), and the highest version it ever had.
#[derive(Debug, Clone, Default)]
pub(crate) struct Subject {
    pub versions: BTreeMap<i32, VersionEntry>,
    /// From `["versions", s]` floors, which earlier builds wrote at permanent deletes (read,
    /// no longer written).
    pub floor: i32,
}

impl Subject {
    /// The highest version ever given in this subject.
    pub fn max_version(&self) -> i32 {
        self.versions.keys().next_back().copied().unwrap_or(0).max(self.floor)
    }

    /// Whether the subject has a version not soft-deleted.
    pub fn has_live(&self) -> bool {
        self.versions.values().any(|v| !v.deleted)
    }
}

/// A schema's content, shared by every subject version with its id.
#[derive(Debug, Clone)]
pub(crate) struct Content {
    pub schema_type: SchemaType,
    pub text: Arc<str>,
    pub references: Vec<Reference>,
    /// Parsed once (after replay, or by the write that registered it); `None` only if a
    /// stored schema no longer parses (then lookups by content skip it, reads by id still
    /// answer its text).
    pub parsed: Option<Arc<ParsedSchema>>,
    /// Identity keys (canonical and normalized texts), when parsed.
    pub canonical: Option<String>,
    pub normalized: Option<String>,
}

/// What identifies a schema's content: its format, its canonical (or normalized) text and its
/// references.
pub(crate) type ContentKey = (SchemaType, String, Vec<Reference>);

#[derive(Debug, Default)]
pub(crate) struct State {
    pub subjects: BTreeMap<String, Subject>,
    pub contents: BTreeMap<SchemaId, Content>,
    /// Which subject versions hold each id.
    pub uses: BTreeMap<SchemaId, BTreeSet<(String, i32)>>,
    /// From `["ids"]` (written at permanent deletes).
    pub id_floor: i32,
    pub by_canonical: HashMap<ContentKey, SchemaId>,
    pub by_normalized: HashMap<ContentKey, SchemaId>,
    pub global_compat: Option<Compatibility>,
    pub subject_compat: BTreeMap<String, Compatibility>,
    pub global_mode: Option<Mode>,
    pub subject_mode: BTreeMap<String, Mode>,
}

impl State {
    /// The highest id ever given.
    pub fn max_id(&self) -> i32 {
        self.contents.keys().next_back().map_or(0, |id| id.0).max(self.id_floor)
    }

    /// Applies one record (in log order).
    pub fn apply(&mut self, key: Key, value: Option<Value>) {
        match (key, value) {
            (Key::Schema { subject, version }, Some(Value::Schema(value))) => {
                self.put_version(subject, version, value, None);
            }
            (Key::Schema { subject, version }, _) => self.remove_version(&subject, version),
            (Key::Config(None), v) => self.global_compat = config_of(v),
            (Key::Config(Some(s)), v) => match config_of(v) {
                Some(c) => {
                    self.subject_compat.insert(s, c);
                }
                None => {
                    self.subject_compat.remove(&s);
                }
            },
            (Key::Mode(None), v) => self.global_mode = mode_of(v),
            (Key::Mode(Some(s)), v) => match mode_of(v) {
                Some(m) => {
                    self.subject_mode.insert(s, m);
                }
                None => {
                    self.subject_mode.remove(&s);
                }
            },
            (Key::Ids, Some(Value::Ids(n))) => self.id_floor = self.id_floor.max(n),
            (Key::Versions(s), Some(Value::Versions(n))) => {
                let subject = self.subjects.entry(s).or_default();
                subject.floor = subject.floor.max(n);
            }
            // Floors are never deleted; a tombstone (or a mismatched value, which decoding
            // rules out) changes nothing.
            (Key::Ids | Key::Versions(_), _) => {}
        }
    }

    /// Records a subject version; `parsed` is the write path's parse of new content.
    pub fn put_version(
        &mut self,
        subject: String,
        version: i32,
        value: SchemaValue,
        parsed: Option<Arc<ParsedSchema>>,
    ) {
        let id = value.id;
        if !self.contents.contains_key(&id) {
            let mut content = Content {
                schema_type: value.schema_type,
                text: value.schema.into(),
                references: value.references,
                parsed: None,
                canonical: None,
                normalized: None,
            };
            if let Some(parsed) = parsed {
                self.index(id, &mut content, parsed);
            }
            self.contents.insert(id, content);
        }
        self.uses.entry(id).or_default().insert((subject.clone(), version));
        let name = subject.clone();
        let entry = self.subjects.entry(subject).or_default();
        if let Some(old) = entry.versions.insert(version, VersionEntry { id, deleted: value.deleted }) {
            if old.id != id {
                // A version never changes its id through the API; a log that says otherwise
                // is followed (last record wins), and the old id loses this use.
                self.drop_use(old.id, &name, version);
            }
        }
    }

    /// Sets a content's parse and indexes it by identity.
    pub fn index(&mut self, id: SchemaId, content: &mut Content, parsed: Arc<ParsedSchema>) {
        let canonical = parsed.canonical();
        let normalized = parsed.normalized();
        self.by_canonical.entry((content.schema_type, canonical.clone(), content.references.clone())).or_insert(id);
        self.by_normalized.entry((content.schema_type, normalized.clone(), content.references.clone())).or_insert(id);
        content.canonical = Some(canonical);
        content.normalized = Some(normalized);
        content.parsed = Some(parsed);
    }

    fn remove_version(&mut self, subject: &str, version: i32) {
        let Some(entry) = self.subjects.get_mut(subject) else { return };
        let Some(removed) = entry.versions.remove(&version) else { return };
        // No version floor: a permanently deleted highest version may be given again, as in
        // Confluent (see the module doc of `store`).
        self.drop_use(removed.id, subject, version);
    }

    fn drop_use(&mut self, id: SchemaId, subject: &str, version: i32) {
        let unused = match self.uses.get_mut(&id) {
            Some(uses) => {
                uses.remove(&(subject.to_string(), version));
                uses.is_empty()
            }
            None => true,
        };
        if unused {
            self.uses.remove(&id);
            if let Some(content) = self.contents.remove(&id) {
                // The id stays used up: remember it as the floor.
                self.id_floor = self.id_floor.max(id.0);
                let refs = content.references;
                if let Some(c) = content.canonical {
                    let key = (content.schema_type, c, refs.clone());
                    if self.by_canonical.get(&key) == Some(&id) {
                        self.by_canonical.remove(&key);
                    }
                }
                if let Some(n) = content.normalized {
                    let key = (content.schema_type, n, refs);
                    if self.by_normalized.get(&key) == Some(&id) {
                        self.by_normalized.remove(&key);
                    }
                }
            }
        }
    }

    /// The transitive closure of `references` (dependencies before their dependents, each
    /// under the name its referrer uses), or why it cannot be built: an unknown subject or
    /// version, a cycle, or more than `max` schemas.
    pub fn resolve(&self, references: &[Reference], max: usize) -> Result<Vec<ResolvedReference>, String> {
        let mut out = Vec::new();
        let mut done: BTreeSet<(String, i32)> = BTreeSet::new();
        let mut path: Vec<(String, i32)> = Vec::new();
        for r in references {
            self.resolve_one(r, max, &mut out, &mut done, &mut path)?;
        }
        Ok(out)
    }

    fn resolve_one(
        &self,
        r: &Reference,
        max: usize,
        out: &mut Vec<ResolvedReference>,
        done: &mut BTreeSet<(String, i32)>,
        path: &mut Vec<(String, i32)>,
    ) -> Result<(), String> {
        let at = (r.subject.clone(), r.version);
        if path.contains(&at) {
            return Err(format!("reference cycle through subject {:?} version {}", r.subject, r.version));
        }
        if done.contains(&at) {
            return Ok(());
        }
        let content = self
            .subjects
            .get(&r.subject)
            .and_then(|s| s.versions.get(&r.version))
            .and_then(|v| self.contents.get(&v.id))
            .ok_or_else(|| {
                format!(
                    "reference {:?} names subject {:?} version {}, which does not exist",
                    r.name, r.subject, r.version
                )
            })?;
        path.push(at.clone());
        for inner in &content.references {
            self.resolve_one(inner, max, out, done, path)?;
        }
        path.pop();
        done.insert(at);
        if out.len() >= max {
            return Err(format!("the references reach more than {max} schemas"));
        }
        out.push(ResolvedReference {
            name: r.name.clone(),
            schema_type: content.schema_type,
            schema: content.text.to_string(),
        });
        Ok(())
    }

    /// Parses every stored content not parsed yet (after replay: references may come later in
    /// a compacted log than their referrers, so parsing waits until everything is applied).
    pub fn parse_all(&mut self, max_closure: usize) {
        let ids: Vec<SchemaId> = self.contents.iter().filter(|(_, c)| c.parsed.is_none()).map(|(id, _)| *id).collect();
        for id in ids {
            let Some(content) = self.contents.get(&id) else { continue };
            let parsed = self.resolve(&content.references, max_closure).and_then(|refs| {
                crate::parse::parse(content.schema_type, &content.text, &refs).map_err(|e| e.to_string())
            });
            match parsed {
                Ok(parsed) => {
                    let mut content = self.contents.remove(&id).expect("present above");
                    self.index(id, &mut content, Arc::new(parsed));
                    self.contents.insert(id, content);
                }
                // It parsed when it was registered; a parser that changed since must not make
                // the registry refuse to start: the schema stays readable by id, as text.
                Err(why) => tracing_warn(id, &why),
            }
        }
    }

    /// The effective compatibility level of a subject.
    pub fn compatibility(&self, subject: &str) -> Compatibility {
        self.subject_compat.get(subject).copied().or(self.global_compat).unwrap_or_default()
    }

    /// The effective mode of a subject.
    pub fn mode(&self, subject: &str) -> Mode {
        self.subject_mode.get(subject).copied().or(self.global_mode).unwrap_or_default()
    }

    /// Live subject versions that reference `(subject, version)` (with `deleted`, soft-deleted
    /// ones too), as their ids.
    pub fn referrers(&self, subject: &str, version: i32, deleted: bool) -> Vec<SchemaId> {
        let mut ids = BTreeSet::new();
        for (id, content) in &self.contents {
            if content.references.iter().any(|r| r.subject == subject && r.version == version) {
                let used = self.uses.get(id).is_some_and(|uses| {
                    uses.iter().any(|(s, v)| {
                        self.subjects.get(s).and_then(|sub| sub.versions.get(v)).is_some_and(|e| deleted || !e.deleted)
                    })
                });
                if used {
                    ids.insert(*id);
                }
            }
        }
        ids.into_iter().collect()
    }
}

fn config_of(v: Option<Value>) -> Option<Compatibility> {
    match v {
        Some(Value::Config(c)) => Some(c),
        _ => None,
    }
}

fn mode_of(v: Option<Value>) -> Option<Mode> {
    match v {
        Some(Value::Mode(m)) => Some(m),
        _ => None,
    }
}

/// Reported on stderr: this crate has no logging dependency, and the condition is rare and
/// worth seeing (a parser upgrade that refuses a schema registered earlier).
fn tracing_warn(id: SchemaId, why: &str) {
    eprintln!("evident registry: stored schema {id} no longer parses ({why}); it is served as text only");
}
