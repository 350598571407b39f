//! Stream-table joins: `FROM stream s [LEFT] JOIN table t ON s.expr = t.key`. The table side
//! is a table view (its changelog: the row under its key) or any topic read as a table (the
//! latest value under each record key, a tombstone removing it), as ksqlDB reads a topic
//! declared as a TABLE.
//!
//! Determinism: a join reads its two topics **merged in commit order**, applying the table
//! side's records to its own copy of the table and looking each stream event up in that copy.
//! So an event meets the table exactly as the log held it when the event was committed, the
//! same on every replay: a view over a join stays a function of its sources up to its
//! position (ksqlDB joins against whatever the table holds when the event is processed, which
//! a replay can change). The copy is rebuilt at start by reading the table's topic up to the
//! view's position.

use std::collections::HashMap;

use evident_log::{Event, Log};

use crate::error::Result;
use crate::expr::Expr;
use crate::plan::{Input, JoinPlan};
use crate::source::{payload_json, sample_types, EventInput};
use crate::value::{SqlType, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// A slot of the stream's input.
    Stream(usize),
    /// A field of the table's row.
    TableField(usize),
    /// The table record's key (ROWKEY).
    TableKey,
}

/// The input of a join: the stream's columns, then the table's.
#[derive(Debug, Clone)]
pub struct JoinInput {
    /// The stream side.
    pub stream: EventInput,
    /// The table side's topic.
    pub table: String,
    alias: Option<String>,
    /// The table view's key column, when the table is a view with one key.
    key_column: Option<String>,
    types: HashMap<String, SqlType>,
    fields: Vec<String>,
    slots: Vec<Slot>,
    /// The table as of the last event read: key -> row (a JSON object).
    rows: HashMap<Vec<u8>, Value>,
    stream_row: Vec<Value>,
}

impl JoinInput {
    /// A join of `stream` with the table in `table` (`key_column`: a table view's key column).
    pub fn new(
        log: &Log,
        stream: EventInput,
        table: &str,
        alias: Option<String>,
        key_column: Option<String>,
    ) -> Result<Self> {
        let (types, _) = sample_types(log, table, stream.decoder())?;
        Ok(JoinInput {
            stream,
            table: table.to_string(),
            alias,
            key_column,
            types,
            fields: Vec::new(),
            slots: Vec::new(),
            rows: HashMap::new(),
            stream_row: Vec::new(),
        })
    }

    /// The number of slots a row has.
    pub fn width(&self) -> usize {
        self.slots.len()
    }

    /// Applies a record of the table's topic.
    pub fn apply_table(&mut self, e: &Event) {
        let Some(key) = &e.key else { return };
        let decoder = self.stream.decoder();
        let json = e
            .value
            .as_ref()
            .map(|v| payload_json(decoder, v).map_err(|_| ()).and_then(|j| Value::from_json(&j).map_err(|_| ())));
        match json {
            Some(Ok(row @ Value::Struct(_))) => {
                self.rows.insert(key.to_vec(), row);
            }
            // A tombstone removes the row; a value that is not a JSON object is no row.
            _ => {
                self.rows.remove(key.as_ref());
            }
        }
    }

    /// Fills `row` for a stream event: the stream's columns, then the table row its key finds.
    /// `Ok(false)`: an inner join found no row (the event yields nothing).
    pub fn fill(&mut self, plan: &JoinPlan, e: &Event, row: &mut [Value]) -> Result<bool, String> {
        self.stream_row.resize(self.stream.width(), Value::Null);
        self.stream.fill(e, &mut self.stream_row)?;
        for (out, slot) in row.iter_mut().zip(&self.slots) {
            *out = match slot {
                Slot::Stream(i) => self.stream_row[*i].clone(),
                _ => Value::Null,
            };
        }
        let key = plan.stream_key.eval(row)?;
        let key_bytes = match &key {
            Value::Null => None,
            Value::String(s) => Some(s.as_bytes().to_vec()),
            other => Some(other.to_json().into_bytes()),
        };
        let found = key_bytes.as_ref().and_then(|k| self.rows.get(k));
        if found.is_none() && !plan.left {
            return Ok(false);
        }
        for (out, slot) in row.iter_mut().zip(&self.slots) {
            match (slot, found) {
                (Slot::TableField(i), Some(Value::Struct(fields))) => {
                    let name = &self.fields[*i];
                    *out = fields
                        .get(name)
                        .or_else(|| fields.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
                        .cloned()
                        .unwrap_or(Value::Null);
                }
                (Slot::TableKey, Some(_)) => *out = key.clone(),
                _ => {}
            }
        }
        Ok(true)
    }

    fn is_table(&self, qualifier: &str) -> bool {
        qualifier.eq_ignore_ascii_case(&self.table)
            || self.alias.as_deref().is_some_and(|a| a.eq_ignore_ascii_case(qualifier))
    }
}

impl Input for JoinInput {
    fn column(&mut self, qualifier: Option<&str>, name: &str) -> Result<Option<(usize, SqlType)>> {
        let table_side = qualifier.is_some_and(|q| self.is_table(q));
        let (slot, ty) = if !table_side {
            let Some((i, ty)) = self.stream.column(None, name)? else { return Ok(None) };
            (Slot::Stream(i), ty)
        } else if name.eq_ignore_ascii_case("ROWKEY") {
            (Slot::TableKey, SqlType::String)
        } else {
            let ty = self.types.get(&name.to_ascii_lowercase()).copied().unwrap_or(SqlType::Any);
            let i = match self.fields.iter().position(|f| f.eq_ignore_ascii_case(name)) {
                Some(i) => i,
                None => {
                    self.fields.push(name.to_string());
                    self.fields.len() - 1
                }
            };
            (Slot::TableField(i), ty)
        };
        if let Some(i) = self.slots.iter().position(|s| *s == slot) {
            return Ok(Some((i, ty)));
        }
        self.slots.push(slot);
        Ok(Some((self.slots.len() - 1, ty)))
    }

    fn star(&mut self) -> Result<Vec<(String, usize, SqlType)>> {
        self.stream.star().map(|cols| {
            cols.into_iter()
                .map(|(n, i, t)| {
                    let slot = Slot::Stream(i);
                    let at = self.slots.iter().position(|s| *s == slot).unwrap_or_else(|| {
                        self.slots.push(slot);
                        self.slots.len() - 1
                    });
                    (n, at, t)
                })
                .collect()
        })
    }

    fn qualifiers(&self) -> Vec<String> {
        let mut q = self.stream.qualifiers();
        q.push(self.table.clone());
        q.extend(self.alias.clone());
        q
    }

    fn is_table_key(&self, e: &Expr) -> bool {
        match e {
            Expr::Slot(i) => match self.slots.get(*i) {
                Some(Slot::TableKey) => true,
                Some(Slot::TableField(f)) => {
                    self.key_column.as_deref().is_some_and(|k| k.eq_ignore_ascii_case(&self.fields[*f]))
                }
                _ => false,
            },
            _ => false,
        }
    }

    fn is_stream_only(&self, e: &Expr) -> bool {
        let mut ok = true;
        visit_slots(e, &mut |i| ok &= matches!(self.slots.get(i), Some(Slot::Stream(_))));
        ok
    }
}

fn visit_slots(e: &Expr, f: &mut dyn FnMut(usize)) {
    match e {
        Expr::Slot(i) => f(*i),
        Expr::Literal(_) => {}
        Expr::Not(x) | Expr::Neg(x) | Expr::IsNull(x, _) | Expr::Cast(x, _) | Expr::Field(x, _) => visit_slots(x, f),
        Expr::Binary(_, a, b) | Expr::And(a, b) | Expr::Or(a, b) | Expr::Index(a, b) | Expr::Like(a, b, _, _) => {
            visit_slots(a, f);
            visit_slots(b, f);
        }
        Expr::InList(x, items, _) => {
            visit_slots(x, f);
            items.iter().for_each(|i| visit_slots(i, f));
        }
        Expr::Between(a, b, c, _) => {
            for x in [a, b, c] {
                visit_slots(x, f);
            }
        }
        Expr::Case(op, whens, else_) => {
            if let Some(o) = op {
                visit_slots(o, f);
            }
            for (c, r) in whens {
                visit_slots(c, f);
                visit_slots(r, f);
            }
            if let Some(e) = else_ {
                visit_slots(e, f);
            }
        }
        Expr::Call(_, args) => args.iter().for_each(|a| visit_slots(a, f)),
    }
}

/// A view's input: one topic's events, or a join.
#[derive(Debug, Clone)]
pub enum Source {
    /// Events of one topic.
    Events(EventInput),
    /// A stream-table join.
    Join(Box<JoinInput>),
}

impl Source {
    /// The topics to read, stream first.
    pub fn topics(&self) -> Vec<String> {
        match self {
            Source::Events(i) => vec![i.topic().to_string()],
            Source::Join(j) => vec![j.stream.topic().to_string(), j.table.clone()],
        }
    }

    /// Slots per row.
    pub fn width(&self) -> usize {
        match self {
            Source::Events(i) => i.width(),
            Source::Join(j) => j.width(),
        }
    }

    /// Whether rows need stream versions.
    pub fn needs_versions(&self) -> bool {
        match self {
            Source::Events(i) => i.needs_versions(),
            Source::Join(j) => j.stream.needs_versions(),
        }
    }

    /// Reads one event: `Ok(true)` when `row` holds a row to apply; `Ok(false)` when the
    /// event only updated a join's table (or an inner join found nothing).
    pub fn read(&mut self, plan: &crate::plan::Plan, e: &Event, row: &mut [Value]) -> Result<bool, String> {
        match self {
            Source::Events(i) => i.fill(e, row).map(|()| true),
            Source::Join(j) => {
                if e.topic.as_str() == j.table && e.topic.as_str() != j.stream.topic() {
                    j.apply_table(e);
                    return Ok(false);
                }
                let Some(jp) = &plan.join else { return Err("a join without its plan".into()) };
                j.fill(jp, e, row)
            }
        }
    }

    /// Rebuilds a join's table as of `position` (everything at or before it).
    pub fn restore_table(&mut self, log: &Log, position: Option<u64>) -> Result<()> {
        let (Source::Join(j), Some(position)) = (self, position) else { return Ok(()) };
        let mut next = 0;
        loop {
            let (events, after) = log.read_topic_events(&j.table, next, 8192, false)?;
            for e in events.iter().filter(|e| e.sequence <= position) {
                j.apply_table(e);
            }
            if after <= next || after > position {
                return Ok(());
            }
            next = after;
        }
    }
}
