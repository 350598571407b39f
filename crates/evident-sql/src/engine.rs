//! The SQL engine: runs one statement. It owns the catalog of views and their maintenance
//! threads; `POST /v1/sql`, `evident sql` and the library all come through [`Engine::execute`].
//!
//! Pull queries read a table's rows as they are in memory (any WHERE, GROUP BY, ORDER BY and
//! LIMIT over them), or scan a topic or stream (bounded by [`SCAN_MAX`] events). `AS OF`
//! recomputes the view from its source up to the given sequence or time, with the view's own
//! plan, so the answer is exactly what the view held then (bounded by [`SCAN_MAX`] too).
//! `min_sequence` makes a pull query wait until the view has applied that source sequence:
//! read-your-writes for a client that has just appended.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use evident_log::Log;

use crate::catalog::{self, ViewDef};
use crate::error::{Result, SqlError};
use crate::join::{JoinInput, Source};
use crate::maintain::{self, PushChange, ViewHandle};
use crate::parse::{self, AsOf, Select, Statement, ViewKind};
use crate::plan::{self, Column, Plan, Use};
use crate::source::{type_named, Decoder, EventInput, PayloadDecoder, RowInput};
use crate::value::Value;
use crate::view::{project, Aggregator};

/// Most source events a pull query or `AS OF` reads.
pub const SCAN_MAX: u64 = 5_000_000;
/// Most rows one answer holds (a larger one is refused: add LIMIT).
pub const ROWS_MAX: usize = 100_000;
/// Longest `min_sequence` wait.
pub const WAIT_MAX: Duration = Duration::from_secs(30);

/// A request.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// One statement.
    pub sql: String,
    /// Wait until the view has applied this source sequence.
    pub min_sequence: Option<u64>,
    /// How long to wait for it (default 5 s, at most [`WAIT_MAX`]).
    pub timeout: Option<Duration>,
}

/// The answer to a statement.
#[derive(Debug)]
pub enum Outcome {
    /// A query's result.
    Rows {
        /// Columns.
        columns: Vec<Column>,
        /// Rows.
        rows: Vec<Vec<Value>>,
    },
    /// A statement's status.
    Done {
        /// Which statement (`CREATE TABLE`, `DROP STREAM`, ...).
        statement: String,
        /// What happened.
        message: String,
    },
    /// A push query, to be read change by change.
    Push(Box<PushQuery>),
}

/// The engine.
pub struct Engine {
    log: Arc<Log>,
    views: RwLock<BTreeMap<String, Arc<ViewHandle>>>,
    /// Views whose definition no longer plans (their source was deleted): listed and
    /// droppable, not served.
    broken: RwLock<BTreeMap<String, (ViewDef, String)>>,
    ddl: Mutex<()>,
    decoder: Option<Decoder>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// A view's runtime numbers, for SHOW and /metrics.
#[derive(Debug, Clone)]
pub struct ViewStatus {
    /// Name.
    pub name: String,
    /// Table or stream.
    pub kind: ViewKind,
    /// Source topic.
    pub source: String,
    /// Last source sequence applied.
    pub position: Option<u64>,
    /// Source events not yet applied.
    pub lag: u64,
    /// Rows (tables).
    pub rows: u64,
    /// Events applied since start.
    pub applied: u64,
    /// Events parked.
    pub parked: u64,
    /// Late events dropped (windows).
    pub late: u64,
    /// `running` or `failed: why`.
    pub status: String,
}

impl Engine {
    /// Opens the catalog and starts every view (each catches up from its topic's position).
    pub fn open(log: Arc<Log>) -> Result<Arc<Engine>> {
        Engine::open_with(log, None)
    }

    /// [`Engine::open`], reading payloads in Confluent's wire format with `decoder` (the
    /// server's is backed by its schema registry).
    pub fn open_with(log: Arc<Log>, decoder: Option<Arc<dyn PayloadDecoder>>) -> Result<Arc<Engine>> {
        let defs = catalog::open(&log)?;
        let engine = Arc::new(Engine {
            log,
            views: RwLock::default(),
            broken: RwLock::default(),
            ddl: Mutex::new(()),
            decoder: decoder.map(Decoder),
        });
        for (name, def) in defs {
            match engine.start_view(def.clone()) {
                Ok(h) => {
                    engine.views.write().unwrap_or_else(|e| e.into_inner()).insert(name, h);
                }
                Err(e) => {
                    tracing::error!(view = %name, "view not started: {e}");
                    engine.broken.write().unwrap_or_else(|e| e.into_inner()).insert(name, (def, e.to_string()));
                }
            }
        }
        Ok(engine)
    }

    /// Stops every view's thread.
    pub fn close(&self) {
        for h in self.views.read().unwrap_or_else(|e| e.into_inner()).values() {
            h.stop();
        }
    }

    fn view(&self, name: &str) -> Option<Arc<ViewHandle>> {
        let views = self.views.read().unwrap_or_else(|e| e.into_inner());
        views
            .get(name)
            .cloned()
            .or_else(|| views.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone()))
    }

    /// Runs one statement.
    pub fn execute(&self, req: &Request) -> Result<Outcome> {
        if req.sql.len() > 1 << 20 {
            return Err(SqlError::TooLarge("a statement is at most 1 MiB".into()));
        }
        let stmt = parse::parse(&req.sql)?;
        self.run(stmt, req)
    }

    fn run(&self, stmt: Statement, req: &Request) -> Result<Outcome> {
        match stmt {
            Statement::Create { kind, name, if_not_exists, select } => {
                self.create(kind, &name, if_not_exists, select, &req.sql)
            }
            Statement::Drop { kind, name, if_exists } => self.drop_view(kind, &name, if_exists),
            Statement::Query(select) if select.emit_changes => Ok(Outcome::Push(Box::new(self.push(select)?))),
            Statement::Query(select) => self.pull(select, req),
            Statement::ShowViews(kind) => Ok(self.show_views(kind)),
            Statement::ShowQueries => Ok(self.show_queries()),
            Statement::Describe(name) => self.describe(&name),
            Statement::Explain(inner) => self.explain(*inner),
            Statement::Rebuild { kind, name } => self.rebuild(kind, &name),
        }
    }

    /// The numbers of every view.
    pub fn statuses(&self) -> Vec<ViewStatus> {
        let views: Vec<Arc<ViewHandle>> =
            self.views.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        let mut out = Vec::new();
        for h in views {
            let (position, rows, applied, parked, late, failed) = {
                let d = h.data.read().unwrap_or_else(|e| e.into_inner());
                (
                    d.position,
                    d.agg.as_ref().map_or(0, |a| a.rows().count() as u64),
                    d.applied,
                    d.parked,
                    d.agg.as_ref().map_or(0, |a| a.late),
                    d.failed.clone(),
                )
            };
            let lag = self.log.topic_sequence_lag(&h.source, position).map_or(0, |(_, lag)| lag);
            out.push(ViewStatus {
                name: h.def.name.clone(),
                kind: h.def.kind,
                source: h.source.clone(),
                position,
                lag,
                rows,
                applied,
                parked,
                late,
                status: failed.map_or_else(|| "running".to_string(), |f| format!("failed: {f}")),
            });
        }
        for (name, (def, why)) in self.broken.read().unwrap_or_else(|e| e.into_inner()).iter() {
            out.push(ViewStatus {
                name: name.clone(),
                kind: def.kind,
                source: String::new(),
                position: None,
                lag: 0,
                rows: 0,
                applied: 0,
                parked: 0,
                late: 0,
                status: format!("failed: {why}"),
            });
        }
        out
    }

    fn show_views(&self, kind: Option<ViewKind>) -> Outcome {
        let col = |n: &str, t: &str| Column { name: n.into(), ty: t.into() };
        let columns = vec![
            col("name", "STRING"),
            col("kind", "STRING"),
            col("source", "STRING"),
            col("topic", "STRING"),
            col("position", "BIGINT"),
            col("lag", "BIGINT"),
            col("rows", "BIGINT"),
            col("status", "STRING"),
        ];
        let rows = self
            .statuses()
            .into_iter()
            .filter(|s| kind.is_none_or(|k| k == s.kind))
            .map(|s| {
                vec![
                    Value::string(&s.name),
                    Value::string(s.kind.keyword()),
                    Value::string(&s.source),
                    Value::string(&s.name),
                    s.position.map_or(Value::Null, |p| Value::Int(p as i64)),
                    Value::Int(s.lag as i64),
                    Value::Int(s.rows as i64),
                    Value::string(&s.status),
                ]
            })
            .collect();
        Outcome::Rows { columns, rows }
    }

    fn show_queries(&self) -> Outcome {
        let col = |n: &str, t: &str| Column { name: n.into(), ty: t.into() };
        let columns = vec![
            col("view", "STRING"),
            col("sql", "STRING"),
            col("applied", "BIGINT"),
            col("parked", "BIGINT"),
            col("late", "BIGINT"),
            col("status", "STRING"),
        ];
        let sql: BTreeMap<String, String> = self
            .views
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, h)| (k.clone(), h.def.sql.clone()))
            .chain(
                self.broken
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .map(|(k, (d, _))| (k.clone(), d.sql.clone())),
            )
            .collect();
        let rows = self
            .statuses()
            .into_iter()
            .map(|s| {
                vec![
                    Value::string(&s.name),
                    Value::string(sql.get(&s.name).map_or("", String::as_str)),
                    Value::Int(s.applied as i64),
                    Value::Int(s.parked as i64),
                    Value::Int(s.late as i64),
                    Value::string(&s.status),
                ]
            })
            .collect();
        Outcome::Rows { columns, rows }
    }

    fn describe(&self, name: &str) -> Result<Outcome> {
        let h = self.view(name).ok_or_else(|| SqlError::UnknownView(name.to_string()))?;
        let columns = vec![
            Column { name: "column".into(), ty: "STRING".into() },
            Column { name: "type".into(), ty: "STRING".into() },
            Column { name: "key".into(), ty: "BOOLEAN".into() },
        ];
        let keys: Vec<String> = match &h.plan.grouping {
            Some(g) => h.plan.outputs[..h.plan.columns.len()]
                .iter()
                .zip(&h.plan.columns)
                .filter(|(o, _)| matches!(o, crate::expr::Expr::Slot(i) if *i < g.keys.len()))
                .map(|(_, c)| c.name.clone())
                .collect(),
            None => Vec::new(),
        };
        let rows = h
            .plan
            .columns
            .iter()
            .map(|c| vec![Value::string(&c.name), Value::string(&c.ty), Value::Bool(keys.contains(&c.name))])
            .collect();
        Ok(Outcome::Rows { columns, rows })
    }

    fn explain(&self, stmt: Statement) -> Result<Outcome> {
        let lines = match &stmt {
            Statement::Create { kind, name, select, .. } => {
                let (plan, source, _) = self.plan_view(*kind, select)?;
                let mut lines = vec![format!(
                    "{} {name}: maintained incrementally from topic {source:?} in commit order",
                    kind.keyword()
                )];
                lines.extend(describe_plan(&plan));
                lines.push(match kind {
                    ViewKind::Table => format!("state: in memory, one group per key; changelog topic {name:?} (1 partition, compacted): each batch of changed rows carries the source position, written atomically"),
                    ViewKind::Stream => format!("output topic {name:?} (1 partition): each batch of rows carries the source position, written atomically"),
                });
                lines
            }
            Statement::Query(select) => {
                let (name, _) = plan::source_of(&select.query)?;
                let what = match self.view(&name) {
                    Some(h) if h.def.kind == ViewKind::Table && select.as_of.is_none() => format!("pull query over the rows of table {name:?} in memory"),
                    Some(_) if select.as_of.is_some() => format!("pull query over {name:?} recomputed from its source up to the AS OF point (at most {SCAN_MAX} events)"),
                    _ => format!("scan of topic {name:?} in commit order (at most {SCAN_MAX} events)"),
                };
                vec![if select.emit_changes { format!("push query: {what}, then every change") } else { what }]
            }
            other => vec![format!("{other:?}")],
        };
        Ok(Outcome::Rows {
            columns: vec![Column { name: "plan".into(), ty: "STRING".into() }],
            rows: lines.into_iter().map(|l| vec![Value::string(&l)]).collect(),
        })
    }

    /// The topic a view's FROM (or JOIN) names: a topic, or a view's own topic. A table view
    /// cannot be a stream source (its topic is a changelog), but it is a join's table side.
    fn source_topic(&self, name: &str, as_table: bool) -> Result<String> {
        match self.view(name) {
            Some(h) if h.def.kind == ViewKind::Table && !as_table => Err(SqlError::unsupported(format!(
                "{name} is a table: its topic is a changelog (upserts), not events; aggregate its source instead, or JOIN it"
            ))),
            Some(h) => Ok(h.def.name.clone()),
            None if self.log.topic_meta(name).is_err() => Err(SqlError::UnknownTopic(name.to_string())),
            None => Ok(name.to_string()),
        }
    }

    /// Resolves a view's source and plans its query.
    fn plan_view(&self, kind: ViewKind, select: &Select) -> Result<(Plan, String, Source)> {
        let from = plan::from_clause(&select.query)?;
        let topic = self.source_topic(&from.source, false)?;
        if select.window.is_some() && kind == ViewKind::Stream {
            return Err(SqlError::invalid("WINDOW needs GROUP BY: it belongs to CREATE TABLE"));
        }
        let stream = EventInput::sampled(&self.log, &topic, from.alias.clone(), self.decoder.clone())?;
        let usage = if kind == ViewKind::Table { Use::Table } else { Use::Stream };
        let (plan, input) = match &from.join {
            None => {
                let mut input = stream;
                let plan = plan::plan(&select.query, select.window, &mut input, usage)?;
                (plan, Source::Events(input))
            }
            Some(j) => {
                let table_topic = self.source_topic(&j.table, true)?;
                if table_topic == topic {
                    return Err(SqlError::invalid("a join needs two different sources"));
                }
                // A table view's single key column may be named in ON, as its ROWKEY may.
                let key_column = self.view(&j.table).and_then(|h| {
                    let g = h.plan.grouping.as_ref()?;
                    if g.keys.len() != 1 {
                        return None;
                    }
                    h.plan.outputs[..h.plan.columns.len()]
                        .iter()
                        .zip(&h.plan.columns)
                        .find(|(o, _)| matches!(o, crate::expr::Expr::Slot(0)))
                        .map(|(_, c)| c.name.clone())
                });
                let mut input = JoinInput::new(
                    &self.log,
                    stream,
                    &table_topic,
                    j.alias.clone().or_else(|| Some(j.table.clone())),
                    key_column,
                )?;
                let plan = plan::plan(&select.query, select.window, &mut input, usage)?;
                (plan, Source::Join(Box::new(input)))
            }
        };
        if plan.limit.is_some() || plan.offset > 0 {
            return Err(SqlError::invalid("LIMIT applies to queries, not to a view's definition"));
        }
        Ok((plan, topic, input))
    }

    fn start_view(&self, def: ViewDef) -> Result<Arc<ViewHandle>> {
        let Statement::Create { kind, select, .. } = parse::parse(&def.sql)? else {
            return Err(SqlError::Corrupted(format!("the catalog's statement for {} is not a CREATE", def.name)));
        };
        debug_assert_eq!(kind, def.kind);
        let (plan, source, input) = self.plan_view(kind, &select)?;
        maintain::start(self.log.clone(), def, plan, source, input)
    }

    fn create(&self, kind: ViewKind, name: &str, if_not_exists: bool, select: Select, sql: &str) -> Result<Outcome> {
        if evident_core::TopicName::new(name).is_err() || name.starts_with('_') {
            return Err(SqlError::invalid(format!(
                "{name:?} cannot name a view: a view's rows go to a topic of its name (letters, digits, '.', '_', '-'; not starting with '_')"
            )));
        }
        let _ddl = self.ddl.lock().unwrap_or_else(|e| e.into_inner());
        let statement = format!("CREATE {}", kind.keyword());
        if self.view(name).is_some() || self.broken.read().unwrap_or_else(|e| e.into_inner()).contains_key(name) {
            if if_not_exists {
                return Ok(Outcome::Done { statement, message: format!("{name} exists; nothing done") });
            }
            return Err(SqlError::Exists(format!("a view named {name:?} exists (DROP it first)")));
        }
        if self.log.topic_meta(name).is_ok() {
            return Err(SqlError::Exists(format!(
                "a topic named {name:?} exists: a view's rows go to a topic of its name; choose another name"
            )));
        }
        let (plan, source, input) = self.plan_view(kind, &select)?;
        self.log.create_topic(name, maintain::view_topic_config(kind))?;
        let def = ViewDef {
            name: name.to_string(),
            kind,
            sql: sql.trim().trim_end_matches(';').trim().to_string(),
            created_ms: now_ms(),
        };
        if let Err(e) = catalog::put(&self.log, &def) {
            let _ = self.log.delete_topic(name);
            return Err(e);
        }
        let handle = maintain::start(self.log.clone(), def, plan, source.clone(), input)?;
        self.views.write().unwrap_or_else(|e| e.into_inner()).insert(name.to_string(), handle);
        Ok(Outcome::Done {
            statement,
            message: format!(
                "created {} {name} over {source:?}; it catches up from the first event, then follows new ones",
                kind.keyword().to_lowercase()
            ),
        })
    }

    fn drop_view(&self, kind: ViewKind, name: &str, if_exists: bool) -> Result<Outcome> {
        let _ddl = self.ddl.lock().unwrap_or_else(|e| e.into_inner());
        let statement = format!("DROP {}", kind.keyword());
        let handle = self.view(name);
        let broken = self.broken.read().unwrap_or_else(|e| e.into_inner()).get(name).map(|(d, _)| d.clone());
        let (real_name, real_kind) = match (&handle, &broken) {
            (Some(h), _) => (h.def.name.clone(), h.def.kind),
            (None, Some(d)) => (d.name.clone(), d.kind),
            (None, None) if if_exists => {
                return Ok(Outcome::Done { statement, message: format!("no view {name}; nothing done") })
            }
            (None, None) => return Err(SqlError::UnknownView(name.to_string())),
        };
        if real_kind != kind {
            return Err(SqlError::invalid(format!(
                "{real_name} is a {}, not a {}",
                real_kind.keyword(),
                kind.keyword()
            )));
        }
        if let Some(dep) = self.views.read().unwrap_or_else(|e| e.into_inner()).values().find(|h| h.source == real_name)
        {
            return Err(SqlError::InUse { view: real_name, dependent: dep.def.name.clone() });
        }
        catalog::remove(&self.log, &real_name, now_ms())?;
        if let Some(h) = self.views.write().unwrap_or_else(|e| e.into_inner()).remove(&real_name) {
            h.stop();
        }
        self.broken.write().unwrap_or_else(|e| e.into_inner()).remove(&real_name);
        match self.log.delete_topic(&real_name) {
            Ok(()) | Err(evident_log::Error::UnknownTopic(_)) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(Outcome::Done {
            statement,
            message: format!("dropped {} {real_name} and its topic", kind.keyword().to_lowercase()),
        })
    }

    /// Recomputes a view from its sources: its topic is emptied (deleted and created again)
    /// and the view catches up from the first event, as when it was created.
    fn rebuild(&self, kind: ViewKind, name: &str) -> Result<Outcome> {
        let _ddl = self.ddl.lock().unwrap_or_else(|e| e.into_inner());
        let Some(h) = self.view(name) else {
            return Err(SqlError::UnknownView(name.to_string()));
        };
        if h.def.kind != kind {
            return Err(SqlError::invalid(format!(
                "{} is a {}, not a {}",
                h.def.name,
                h.def.kind.keyword(),
                kind.keyword()
            )));
        }
        // A view reading this one would see its source start over: rebuild that one after.
        if let Some(dep) = self
            .views
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .find(|d| d.def.name != h.def.name && d.input.topics().contains(&h.def.name))
        {
            return Err(SqlError::InUse { view: h.def.name.clone(), dependent: dep.def.name.clone() });
        }
        h.stop();
        self.views.write().unwrap_or_else(|e| e.into_inner()).remove(&h.def.name);
        match self.log.delete_topic(&h.def.name) {
            Ok(()) | Err(evident_log::Error::UnknownTopic(_)) => {}
            Err(e) => return Err(e.into()),
        }
        // The view starts again (its topic created anew by `start`); if planning fails now
        // (its source is gone), it is listed as failed, as at server start.
        match self.start_view(h.def.clone()) {
            Ok(handle) => {
                self.views.write().unwrap_or_else(|e| e.into_inner()).insert(h.def.name.clone(), handle);
            }
            Err(e) => {
                self.broken
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(h.def.name.clone(), (h.def.clone(), e.to_string()));
                return Err(e);
            }
        }
        Ok(Outcome::Done {
            statement: format!("REBUILD {}", kind.keyword()),
            message: format!(
                "{} {} is recomputed from the first event of its source",
                kind.keyword().to_lowercase(),
                h.def.name
            ),
        })
    }

    fn pull(&self, select: Select, req: &Request) -> Result<Outcome> {
        if select.window.is_some() {
            return Err(SqlError::invalid("WINDOW belongs to CREATE TABLE; query the windowed table instead"));
        }
        let (name, alias) = plan::source_of(&select.query)?;
        let handle = self.view(&name);
        if let Some(h) = handle.as_ref().filter(|h| h.def.kind == ViewKind::Table) {
            if let Some(f) = h.data.read().unwrap_or_else(|e| e.into_inner()).failed.clone() {
                return Err(SqlError::ViewFailed { view: h.def.name.clone(), reason: f });
            }
            let mut input = RowInput {
                name: h.def.name.clone(),
                alias,
                columns: h.plan.columns.iter().map(|c| (c.name.clone(), type_named(&c.ty))).collect(),
            };
            let plan = plan::plan(&select.query, None, &mut input, Use::Pull)?;
            if let Some(as_of) = select.as_of {
                let rows = self.recompute(h, as_of)?;
                return finish(&plan, rows.into_iter());
            }
            if let Some(seq) = req.min_sequence {
                let timeout = req.timeout.unwrap_or(Duration::from_secs(5)).min(WAIT_MAX);
                let started = Instant::now();
                if !h.wait_for(seq, timeout) {
                    return Err(SqlError::NotCaughtUp {
                        view: h.def.name.clone(),
                        position: h.position().unwrap_or(0),
                        wanted: seq,
                        waited_ms: started.elapsed().as_millis() as u64,
                    });
                }
            }
            // `WHERE key = literal` on a table with one key is a lookup, not a scan.
            let lookup = key_lookup(h, &plan);
            let rows: Vec<Arc<[Value]>> = {
                let data = h.data.read().unwrap_or_else(|e| e.into_inner());
                match (data.agg.as_ref(), lookup) {
                    (Some(a), Some(key)) => a.row(&key).cloned().into_iter().collect(),
                    (Some(a), None) => a.rows().cloned().collect(),
                    (None, _) => Vec::new(),
                }
            };
            return finish(&plan, rows.into_iter().map(|r| r.to_vec()));
        }
        // A topic, or a stream's topic: scan its events.
        let topic = handle.map_or(name, |h| h.def.name.clone());
        if self.log.topic_meta(&topic).is_err() {
            return Err(SqlError::UnknownTopic(topic));
        }
        let mut input = EventInput::sampled(&self.log, &topic, alias, self.decoder.clone())?;
        let plan = plan::plan(&select.query, None, &mut input, Use::Pull)?;
        let rows = scan(&self.log, &plan, &mut Source::Events(input), select.as_of)?;
        finish(&plan, rows.into_iter().map(|(r, _)| r))
    }

    /// A table as it was at `as_of`: its plan run over its source up to that point.
    fn recompute(&self, h: &ViewHandle, as_of: AsOf) -> Result<Vec<Vec<Value>>> {
        let mut input = h.input.clone();
        let events = scan(&self.log, &h.plan, &mut input, Some(as_of))?;
        let mut agg = Aggregator::new(&h.plan, false);
        for (row, time) in events {
            if let Some(f) = &h.plan.filter {
                if !f.eval(&row).map(|v| v.is_true()).unwrap_or(false) {
                    continue;
                }
            }
            // Events the live view parked are skipped here too.
            let _ = agg.add(&row, time);
        }
        let _ = agg.changes(false);
        Ok(agg.rows().map(|r| r.to_vec()).collect())
    }

    fn push(&self, select: Select) -> Result<PushQuery> {
        let (name, alias) = plan::source_of(&select.query)?;
        if select.as_of.is_some() || select.window.is_some() {
            return Err(SqlError::invalid("push queries take no AS OF or WINDOW"));
        }
        if let Some(h) = self.view(&name).filter(|h| h.def.kind == ViewKind::Table) {
            let mut input = RowInput {
                name: h.def.name.clone(),
                alias,
                columns: h.plan.columns.iter().map(|c| (c.name.clone(), type_named(&c.ty))).collect(),
            };
            let plan = plan::plan(&select.query, None, &mut input, Use::Stream)?;
            let rx = h.subscribe();
            return Ok(PushQuery {
                columns: plan.columns.clone(),
                remaining: plan.limit,
                plan,
                source: PushSource::View { rx, view: h },
            });
        }
        let topic = self.view(&name).map_or(name, |h| h.def.name.clone());
        if self.log.topic_meta(&topic).is_err() {
            return Err(SqlError::UnknownTopic(topic));
        }
        let mut input = EventInput::sampled(&self.log, &topic, alias, self.decoder.clone())?;
        let plan = plan::plan(&select.query, None, &mut input, Use::Stream)?;
        // From the end, as ksqlDB's push queries start (auto.offset.reset=latest).
        let next = self.log.stats().next_sequence;
        Ok(PushQuery {
            columns: plan.columns.clone(),
            remaining: plan.limit,
            plan,
            source: PushSource::Topic { log: self.log.clone(), topic, next, input: Box::new(input) },
        })
    }
}

/// The changelog key a pull query's WHERE pins, when it is `key_column = literal` (either way
/// round, possibly ANDed with more conditions, which `finish` still applies) on a table with
/// one key and no window.
fn key_lookup(h: &ViewHandle, plan: &Plan) -> Option<Vec<u8>> {
    use crate::expr::{BinOp, Expr};
    let g = h.plan.grouping.as_ref().filter(|g| g.keys.len() == 1 && g.window.is_none())?;
    let key_col = h.plan.outputs[..h.plan.columns.len()].iter().position(|o| matches!(o, Expr::Slot(0)))?;
    fn find(e: &Expr, key_col: usize) -> Option<&Value> {
        match e {
            Expr::Binary(BinOp::Eq, a, b) => match (a.as_ref(), b.as_ref()) {
                (Expr::Slot(i), Expr::Literal(v)) | (Expr::Literal(v), Expr::Slot(i)) if *i == key_col => Some(v),
                _ => None,
            },
            Expr::And(a, b) => find(a, key_col).or_else(|| find(b, key_col)),
            _ => None,
        }
    }
    let v = find(plan.filter.as_ref()?, key_col)?;
    // The literal must have the key's type for its encoding to be the stored key's.
    (crate::value::SqlType::of(v) == Some(g.key_types[0]))
        .then(|| crate::view::encode_key(std::slice::from_ref(v), &g.key_types, None))
}

/// Reads a source's events as rows (with their times), up to `as_of`, at most [`SCAN_MAX`].
fn scan(log: &Log, plan: &Plan, input: &mut Source, as_of: Option<AsOf>) -> Result<Vec<(Vec<Value>, i64)>> {
    let topics = input.topics();
    let topic = topics[0].clone();
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    let mut out = Vec::new();
    let mut next = 0u64;
    let mut read = 0u64;
    let versions = input.needs_versions();
    let end = log.stats().next_sequence;
    'read: loop {
        let (events, after) = log.read_topics_events(&topics, next, 8192, versions)?;
        if events.is_empty() && after <= next {
            break;
        }
        for e in &events {
            match as_of {
                Some(AsOf::Sequence(s)) if e.sequence > s => break 'read,
                Some(AsOf::Time(t)) if e.timestamp_ms > t => continue,
                _ => {}
            }
            if e.sequence >= end {
                break 'read;
            }
            read += 1;
            if read > SCAN_MAX {
                return Err(SqlError::TooLarge(format!("the query would read more than {SCAN_MAX} events of {topic:?}: query a view instead, or narrow AS OF")));
            }
            let mut row = vec![Value::Null; input.width()];
            // An event that is not a JSON object yields no row (a view parks it); a join's
            // table records only update its table.
            if input.read(plan, e, &mut row) == Ok(true) {
                out.push((row, crate::source::event_time(e)));
            }
        }
        next = after.max(next + 1);
        if next >= end {
            break;
        }
    }
    Ok(out)
}

/// Runs a pull plan over input rows: filter, group, project, order, offset, limit.
fn finish(plan: &Plan, rows: impl Iterator<Item = Vec<Value>>) -> Result<Outcome> {
    let mut out: Vec<Vec<Value>> = Vec::new();
    let too_many =
        || SqlError::TooLarge(format!("the answer would hold more than {ROWS_MAX} rows: add LIMIT or narrow WHERE"));
    let cap = if plan.order.is_empty() { plan.limit.map(|l| l.saturating_add(plan.offset)) } else { None };
    if plan.grouping.is_some() {
        let mut agg = Aggregator::new(plan, true);
        for row in rows {
            if let Some(f) = &plan.filter {
                if !f.eval(&row).map_err(SqlError::Invalid)?.is_true() {
                    continue;
                }
            }
            agg.add(&row, 0).map_err(SqlError::Invalid)?;
        }
        let _ = agg.changes(false);
        out.extend(agg.rows().map(|r| r.to_vec()));
    } else {
        for row in rows {
            project(plan, &row, &mut out).map_err(SqlError::Invalid)?;
            if cap.is_some_and(|c| out.len() as u64 >= c) {
                break;
            }
            if out.len() > ROWS_MAX && plan.order.is_empty() && plan.limit.is_none() {
                return Err(too_many());
            }
        }
    }
    if !plan.order.is_empty() {
        out.sort_by(|a, b| {
            for k in &plan.order {
                let (x, y) = (&a[k.column], &b[k.column]);
                let ord = match (x.is_null(), y.is_null()) {
                    (true, true) => std::cmp::Ordering::Equal,
                    (true, false) => {
                        if k.nulls_first {
                            std::cmp::Ordering::Less
                        } else {
                            std::cmp::Ordering::Greater
                        }
                    }
                    (false, true) => {
                        if k.nulls_first {
                            std::cmp::Ordering::Greater
                        } else {
                            std::cmp::Ordering::Less
                        }
                    }
                    _ => {
                        if k.desc {
                            y.total_cmp(x)
                        } else {
                            x.total_cmp(y)
                        }
                    }
                };
                if ord != std::cmp::Ordering::Equal {
                    return ord;
                }
            }
            std::cmp::Ordering::Equal
        });
    }
    let start = (plan.offset as usize).min(out.len());
    let end = plan.limit.map_or(out.len(), |l| start.saturating_add(l as usize).min(out.len()));
    if end - start > ROWS_MAX {
        return Err(too_many());
    }
    let visible = plan.columns.len();
    let rows = out.drain(start..end).map(|mut r| {
        r.truncate(visible);
        r
    });
    Ok(Outcome::Rows { columns: plan.columns.clone(), rows: rows.collect() })
}

fn describe_plan(plan: &Plan) -> Vec<String> {
    let mut lines = Vec::new();
    if plan.filter.is_some() {
        lines.push("filter: WHERE, per event".into());
    }
    if let Some(g) = &plan.grouping {
        lines.push(format!(
            "group by: {} key(s) ({})",
            g.keys.len(),
            g.key_types.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")
        ));
        lines.push(format!(
            "aggregates: {}",
            g.aggs.iter().map(|a| format!("{:?}", a.kind)).collect::<Vec<_>>().join(", ")
        ));
        if let Some(w) = &g.window {
            lines.push(format!("window: {} on event time (ROWTIME)", w.describe()));
        }
        if g.having.is_some() {
            lines.push("having: rows that fail it are deleted from the table".into());
        }
    }
    if !plan.explode.is_empty() {
        lines.push("explode: one row per array element".into());
    }
    lines.push(format!(
        "columns: {}",
        plan.columns.iter().map(|c| format!("{} {}", c.name, c.ty)).collect::<Vec<_>>().join(", ")
    ));
    lines
}

enum PushSource {
    View { rx: std::sync::mpsc::Receiver<PushChange>, view: Arc<ViewHandle> },
    Topic { log: Arc<Log>, topic: String, next: u64, input: Box<EventInput> },
}

/// A push query: its changes, read as they happen.
pub struct PushQuery {
    /// Columns of its rows.
    pub columns: Vec<Column>,
    plan: Plan,
    source: PushSource,
    remaining: Option<u64>,
}

impl std::fmt::Debug for PushQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushQuery").field("columns", &self.columns).finish_non_exhaustive()
    }
}

/// One change of a push query.
#[derive(Debug, Clone)]
pub struct PushRow {
    /// `upsert` or `delete`.
    pub op: &'static str,
    /// The row (for a delete: the key, as a one-column row).
    pub row: Vec<Value>,
}

impl PushQuery {
    /// The next changes, waiting at most `timeout`. `Ok(None)`: the query ended (its LIMIT
    /// reached, or its view dropped or stopped).
    pub fn next(&mut self, timeout: Duration) -> Result<Option<Vec<PushRow>>> {
        if self.remaining == Some(0) {
            return Ok(None);
        }
        let mut out = Vec::new();
        match &mut self.source {
            PushSource::View { rx, view } => {
                let first = match rx.recv_timeout(timeout) {
                    Ok(c) => c,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        if let Some(f) = view.data.read().unwrap_or_else(|e| e.into_inner()).failed.clone() {
                            return Err(SqlError::ViewFailed { view: view.def.name.clone(), reason: f });
                        }
                        return Ok(Some(out));
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Ok(None),
                };
                for c in std::iter::once(first).chain(rx.try_iter().take(4095)) {
                    match c.row {
                        Some(row) => {
                            let mut rows = Vec::new();
                            project(&self.plan, &row, &mut rows).map_err(SqlError::Invalid)?;
                            out.extend(rows.into_iter().map(|r| PushRow { op: "upsert", row: r }));
                        }
                        None => out
                            .push(PushRow { op: "delete", row: vec![Value::string(&String::from_utf8_lossy(&c.key))] }),
                    }
                }
            }
            PushSource::Topic { log, topic, next, input } => {
                let (events, after) = log.read_topic_events(topic, *next, 4096, input.needs_versions())?;
                if events.is_empty() {
                    *next = (*next).max(after);
                    log.wait_for_sequence(*next, timeout)?;
                    return Ok(Some(out));
                }
                let mut row = vec![Value::Null; input.width()];
                let mut rows = Vec::new();
                for e in &events {
                    if input.fill(e, &mut row).is_ok() {
                        // A row the query cannot evaluate is skipped, as a view parks it.
                        let _ = project(&self.plan, &row, &mut rows);
                    }
                }
                *next = after;
                out.extend(rows.into_iter().map(|r| PushRow { op: "upsert", row: r }));
            }
        }
        if let Some(n) = &mut self.remaining {
            out.truncate(*n as usize);
            *n -= out.len() as u64;
        }
        Ok(Some(out))
    }
}
