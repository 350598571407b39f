//! Running a plan: the grouped state of a table (kept incrementally, event by event) and the
//! row-by-row output of a stream. The same code evaluates a pull query over a view's rows, so
//! a pull query and a view agree on every expression and aggregate.
//!
//! An event is applied whole or not at all: its filter, keys and every aggregate's update are
//! checked before any state changes, so an event parked for bad data (a string where a
//! number was planned, an overflow) leaves no trace in the view.

use std::collections::HashMap;
use std::sync::Arc;

use crate::aggregate::Acc;
use crate::plan::{Grouping, Plan};
use crate::value::{SqlType, Value};
use crate::window::{WindowKind, WindowSpec};

/// A change to a view: a row upserted (or deleted, `row: None`) under its key.
#[derive(Debug, Clone)]
pub struct Change {
    /// The row's key in the changelog topic.
    pub key: Vec<u8>,
    /// The visible row (None: deleted, e.g. HAVING no longer holds).
    pub row: Option<Arc<[Value]>>,
    /// The group's whole state (keys, window, accumulators) as JSON, for the changelog.
    pub state: Option<String>,
}

/// One group of a table.
#[derive(Debug, Clone)]
struct Group {
    keys: Vec<Value>,
    window: Option<(i64, i64)>,
    accs: Vec<Acc>,
    row: Option<Arc<[Value]>>,
    dirty: bool,
}

/// The grouped state of a table (or of a grouped pull query).
#[derive(Debug)]
pub struct Aggregator {
    grouping: Grouping,
    outputs: Vec<Expr>,
    visible: usize,
    key_types: Vec<SqlType>,
    groups: HashMap<Vec<u8>, Group>,
    dirty: Vec<Vec<u8>>,
    /// Session windows: each key's sessions (start, end).
    sessions: HashMap<Vec<u8>, Vec<(i64, i64)>>,
    /// Groups merged away since the last [`Aggregator::changes`] (deleted rows).
    removed: Vec<Vec<u8>>,
    /// The largest event time seen (windows close by it).
    pub stream_time: i64,
    /// Events dropped because their window had closed.
    pub late: u64,
    keys_buf: Vec<Value>,
    args_buf: Vec<Option<Value>>,
}

use crate::expr::Expr;

impl Aggregator {
    /// State for `plan` (which must be grouped). Rows hold the visible columns, or with
    /// `all_outputs` also the hidden ones a pull query sorts by.
    pub fn new(plan: &Plan, all_outputs: bool) -> Self {
        let grouping = plan.grouping.clone().unwrap_or_else(unreachable_grouping);
        let key_types = grouping.key_types.clone();
        Aggregator {
            grouping,
            outputs: plan.outputs.clone(),
            visible: if all_outputs { plan.outputs.len() } else { plan.columns.len() },
            key_types,
            groups: HashMap::new(),
            dirty: Vec::new(),
            sessions: HashMap::new(),
            removed: Vec::new(),
            stream_time: i64::MIN,
            late: 0,
            keys_buf: Vec::new(),
            args_buf: Vec::new(),
        }
    }

    /// Adds one input row with event time `time`. Err: the row's data does not fit (nothing
    /// changed).
    pub fn add(&mut self, row: &[Value], time: i64) -> Result<(), String> {
        self.keys_buf.clear();
        for k in &self.grouping.keys {
            self.keys_buf.push(k.eval(row)?);
        }
        self.args_buf.clear();
        for a in &self.grouping.aggs {
            self.args_buf.push(a.arg.as_ref().map(|e| e.eval(row)).transpose()?);
        }
        if let Some(WindowSpec { kind: WindowKind::Session { gap }, grace }) = self.grouping.window {
            return self.add_to_session(time, gap, grace);
        }
        let windowed = self.grouping.window.is_some();
        let targets: Vec<Option<(i64, i64)>> = match &self.grouping.window {
            None => vec![None],
            Some(w) => {
                let size = w.size().unwrap_or(0);
                w.starts(time)
                    .map(|s| (s, s + size))
                    .filter(|(_, end)| end.saturating_add(w.grace) > self.stream_time.max(time))
                    .map(Some)
                    .collect()
            }
        };
        // Check every update first, so a failing one changes nothing, not even stream time. A
        // late event is checked too (against empty accumulators): bad data is parked whether
        // or not its window is still open.
        if targets.is_empty() {
            for (call, arg) in self.grouping.aggs.iter().zip(&self.args_buf) {
                call.kind.start().clone_for_check(call.kind, arg.as_ref())?;
            }
        }
        for w in &targets {
            let key = encode_key(&self.keys_buf, &self.key_types, w.map(|w| w.0));
            if let Some(g) = self.groups.get(&key) {
                for ((acc, call), arg) in g.accs.iter().zip(&self.grouping.aggs).zip(&self.args_buf) {
                    acc.clone_for_check(call.kind, arg.as_ref())?;
                }
            } else {
                for (call, arg) in self.grouping.aggs.iter().zip(&self.args_buf) {
                    call.kind.start().clone_for_check(call.kind, arg.as_ref())?;
                }
            }
        }
        if windowed {
            self.stream_time = self.stream_time.max(time);
            if targets.is_empty() {
                self.late += 1;
                return Ok(());
            }
        }
        for w in targets {
            let key = encode_key(&self.keys_buf, &self.key_types, w.map(|w| w.0));
            let g = self.groups.entry(key.clone()).or_insert_with(|| Group {
                keys: self.keys_buf.clone(),
                window: w,
                accs: self.grouping.aggs.iter().map(|c| c.kind.start()).collect(),
                row: None,
                dirty: false,
            });
            for ((acc, call), arg) in g.accs.iter_mut().zip(&self.grouping.aggs).zip(&self.args_buf) {
                let checked = acc.update(call.kind, arg.as_ref());
                debug_assert!(checked.is_ok(), "an update checked beforehand failed: {checked:?}");
            }
            if !g.dirty {
                g.dirty = true;
                self.dirty.push(key);
            }
        }
        Ok(())
    }

    /// Session windows: the event joins every session of its key it falls within `gap` of,
    /// merging them (their accumulators folded in time order) into one session whose start is
    /// the earliest and whose end the latest event time. A merged-away session's row is
    /// deleted (its changelog key held its old start). Late: the resulting session ends more
    /// than `grace` before stream time.
    fn add_to_session(&mut self, time: i64, gap: i64, grace: i64) -> Result<(), String> {
        let base = encode_key(&self.keys_buf, &self.key_types, None);
        let sessions = self.sessions.entry(base.clone()).or_default();
        let touching: Vec<(i64, i64)> = sessions
            .iter()
            .copied()
            .filter(|(s, e)| s.saturating_sub(gap) <= time && time <= e.saturating_add(gap))
            .collect();
        let start = touching.iter().map(|w| w.0).min().unwrap_or(time).min(time);
        let end = touching.iter().map(|w| w.1).max().unwrap_or(time).max(time);
        // The merged accumulators, built aside, then the event: nothing changes on failure, and
        // bad data is parked (the error) even when the session has closed.
        let mut accs: Vec<Acc> = self.grouping.aggs.iter().map(|c| c.kind.start()).collect();
        for w in &touching {
            let key = encode_key(&self.keys_buf, &self.key_types, Some(w.0));
            let Some(g) = self.groups.get(&key) else { continue };
            for ((acc, call), old) in accs.iter_mut().zip(&self.grouping.aggs).zip(&g.accs) {
                acc.merge(call.kind, old)?;
            }
        }
        for ((acc, call), arg) in accs.iter_mut().zip(&self.grouping.aggs).zip(&self.args_buf) {
            acc.update(call.kind, arg.as_ref())?;
        }
        if end.saturating_add(grace) < self.stream_time {
            self.late += 1;
            return Ok(());
        }
        self.stream_time = self.stream_time.max(time);
        sessions.retain(|w| !touching.contains(w));
        sessions.push((start, end));
        for w in &touching {
            let key = encode_key(&self.keys_buf, &self.key_types, Some(w.0));
            if w.0 != start && self.groups.remove(&key).is_some() {
                self.removed.push(key);
            }
        }
        let key = encode_key(&self.keys_buf, &self.key_types, Some(start));
        let g = self.groups.entry(key.clone()).or_insert_with(|| Group {
            keys: self.keys_buf.clone(),
            window: None,
            accs: Vec::new(),
            row: None,
            dirty: false,
        });
        g.window = Some((start, end));
        g.accs = accs;
        self.removed.retain(|k| *k != key);
        if !g.dirty {
            g.dirty = true;
            self.dirty.push(key);
        }
        Ok(())
    }

    /// The rows changed since the last call. Err: an output expression failed on a group's
    /// values (a bug in planning, or data of a type the plan could not know).
    pub fn changes(&mut self, with_state: bool) -> Vec<Change> {
        let mut out = Vec::with_capacity(self.dirty.len() + self.removed.len());
        for key in std::mem::take(&mut self.removed) {
            out.push(Change { key, row: None, state: None });
        }
        for key in std::mem::take(&mut self.dirty) {
            let Some(g) = self.groups.get_mut(&key) else { continue };
            g.dirty = false;
            let row = output_row(&self.grouping, &self.outputs, self.visible, g);
            g.row = row.clone();
            let state = with_state.then(|| group_state(g));
            out.push(Change { key, row, state });
        }
        out
    }

    /// Every visible row.
    pub fn rows(&self) -> impl Iterator<Item = &Arc<[Value]>> {
        self.groups.values().filter_map(|g| g.row.as_ref())
    }

    /// The row with changelog key `key`.
    pub fn row(&self, key: &[u8]) -> Option<&Arc<[Value]>> {
        self.groups.get(key).and_then(|g| g.row.as_ref())
    }

    /// How many groups changed since the last [`Aggregator::changes`].
    pub fn dirty_len(&self) -> usize {
        self.dirty.len()
    }

    /// How many groups.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Whether there are no groups.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Restores a group from its changelog record.
    pub fn restore(&mut self, key: Vec<u8>, state: &str) -> Result<(), String> {
        let v = Value::from_json(state.as_bytes())
            .map_err(|e| format!("state of {:?}: {e}", String::from_utf8_lossy(&key)))?;
        let Value::Struct(fields) = v else { return Err("a group's state is not an object".into()) };
        let keys = match fields.get("k") {
            Some(Value::Array(k)) => k.to_vec(),
            _ => return Err("a group's state has no keys".into()),
        };
        let window = match (fields.get("ws"), fields.get("we")) {
            (Some(Value::Int(s)), Some(Value::Int(e))) => Some((*s, *e)),
            _ => None,
        };
        let accs_state = match fields.get("a") {
            Some(Value::Array(a)) if a.len() == self.grouping.aggs.len() => a.clone(),
            _ => return Err("a group's state does not hold one value per aggregate".into()),
        };
        let accs = self
            .grouping
            .aggs
            .iter()
            .zip(accs_state.iter())
            .map(|(c, s)| Acc::from_state(c.kind, s))
            .collect::<Result<Vec<_>, _>>()?;
        if let (Some(WindowSpec { kind: WindowKind::Session { .. }, .. }), Some(w)) = (self.grouping.window, window) {
            let base = encode_key(&keys, &self.key_types, None);
            let sessions = self.sessions.entry(base).or_default();
            sessions.retain(|s| s.0 != w.0);
            sessions.push(w);
            self.stream_time = self.stream_time.max(w.1);
        } else if let Some(w) = window {
            // Fixed windows: stream time is at least the latest window start seen (a bound
            // from below, enough for late events to stay late after a restart).
            self.stream_time = self.stream_time.max(w.0);
        }
        let mut g = Group { keys, window, accs, row: None, dirty: false };
        g.row = output_row(&self.grouping, &self.outputs, self.visible, &g);
        self.groups.insert(key, g);
        Ok(())
    }

    /// Removes a group (a tombstone in the changelog).
    pub fn remove(&mut self, key: &[u8]) {
        if let Some(g) = self.groups.remove(key) {
            if let Some(w) = g.window {
                let base = encode_key(&g.keys, &self.key_types, None);
                if let Some(sessions) = self.sessions.get_mut(&base) {
                    sessions.retain(|s| s.0 != w.0);
                }
            }
        }
    }
}

fn unreachable_grouping() -> Grouping {
    // Planning gives an aggregator only grouped plans; an empty grouping makes one group.
    Grouping { keys: Vec::new(), aggs: Vec::new(), having: None, window: None, key_types: Vec::new() }
}

impl Acc {
    /// Whether `update` would succeed, without changing `self`.
    fn clone_for_check(&self, kind: crate::aggregate::AggKind, arg: Option<&Value>) -> Result<(), String> {
        match self {
            // Counting and collecting cannot fail (COUNT(DISTINCT) only at its bound).
            Acc::Count(_) | Acc::List(_) | Acc::Set(_) => Ok(()),
            Acc::Distinct(set) => match arg {
                Some(v) if !v.is_null() && set.len() >= crate::aggregate::DISTINCT_LIMIT && !set.contains(v) => {
                    Err(format!(
                        "COUNT(DISTINCT) holds {} values for this group, its limit",
                        crate::aggregate::DISTINCT_LIMIT
                    ))
                }
                _ => Ok(()),
            },
            other => other.clone().update(kind, arg),
        }
    }
}

fn group_row(g: &Group) -> Vec<Value> {
    let mut row: Vec<Value> = g.keys.clone();
    row.extend(g.accs.iter().map(Acc::result));
    if let Some((s, e)) = g.window {
        row.push(Value::Int(s));
        row.push(Value::Int(e));
    }
    row
}

fn output_row(grouping: &Grouping, outputs: &[Expr], visible: usize, g: &Group) -> Option<Arc<[Value]>> {
    let row = group_row(g);
    if let Some(h) = &grouping.having {
        if !h.eval(&row).map(|v| v.is_true()).unwrap_or(false) {
            return None;
        }
    }
    // Output expressions over keys and aggregates were type-checked; one that still fails
    // (an ANY key of an unexpected type) shows NULL rather than losing the group.
    Some(outputs[..visible].iter().map(|o| o.eval(&row).unwrap_or(Value::Null)).collect())
}

fn group_state(g: &Group) -> String {
    let mut s = String::from("{\"k\":");
    s.push_str(&Value::Array(Arc::new(g.keys.clone())).to_json());
    if let Some((ws, we)) = g.window {
        s.push_str(&format!(",\"ws\":{ws},\"we\":{we}"));
    }
    s.push_str(",\"a\":[");
    for (i, a) in g.accs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&a.to_state().to_json());
    }
    s.push_str("]}");
    s
}

/// The changelog key of a group: a single STRING key as its text (`order-7`, what a Kafka
/// consumer of the changelog expects), anything else as a JSON array of the keys (and the
/// window start), which cannot be confused with a text key of another type.
pub fn encode_key(keys: &[Value], types: &[SqlType], window: Option<i64>) -> Vec<u8> {
    if let ([Value::String(s)], [SqlType::String], None) = (keys, types, window) {
        return s.as_bytes().to_vec();
    }
    let mut all = keys.to_vec();
    if let Some(w) = window {
        all.push(Value::Int(w));
    }
    Value::Array(Arc::new(all)).to_json().into_bytes()
}

/// A row as a JSON object of its columns.
pub fn row_json(columns: &[crate::plan::Column], row: &[Value]) -> String {
    let mut s = String::with_capacity(64);
    s.push('{');
    for (i, (c, v)) in columns.iter().zip(row).enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&serde_json::to_string(&c.name).unwrap_or_default());
        s.push(':');
        s.push_str(&v.to_json());
    }
    s.push('}');
    s
}

/// The rows a row-by-row plan makes of one input row: none when WHERE does not hold, one, or
/// one per element of its EXPLODE column(s) (several EXPLODEs go in step; the shorter ones
/// give NULL, as ksqlDB does).
pub fn project(plan: &Plan, row: &[Value], out: &mut Vec<Vec<Value>>) -> Result<(), String> {
    if let Some(f) = &plan.filter {
        if !f.eval(row)?.is_true() {
            return Ok(());
        }
    }
    let values = plan.outputs.iter().map(|o| o.eval(row)).collect::<Result<Vec<_>, _>>()?;
    if plan.explode.is_empty() {
        out.push(values);
        return Ok(());
    }
    let mut n = 0;
    for &i in &plan.explode {
        match &values[i] {
            Value::Array(a) => n = n.max(a.len()),
            Value::Null => {}
            other => return Err(format!("EXPLODE of {}", other.to_json())),
        }
    }
    for j in 0..n {
        let mut r = values.clone();
        for &i in &plan.explode {
            r[i] = match &values[i] {
                Value::Array(a) => a.get(j).cloned().unwrap_or(Value::Null),
                _ => Value::Null,
            };
        }
        out.push(r);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse, Statement};
    use crate::plan::{plan, Use};
    use crate::source::RowInput;

    fn table_plan(sql: &str) -> Plan {
        let Statement::Create { select, .. } = parse(sql).unwrap() else { panic!("not a CREATE") };
        let mut input = RowInput {
            name: "s".into(),
            alias: None,
            columns: vec![("k".into(), SqlType::String), ("v".into(), SqlType::Bigint), ("t".into(), SqlType::Bigint)],
        };
        plan(&select.query, select.window, &mut input, Use::Table).unwrap()
    }

    fn row(k: &str, v: i64, t: i64) -> Vec<Value> {
        vec![Value::string(k), Value::Int(v), Value::Int(t)]
    }

    fn rows(a: &Aggregator) -> Vec<Vec<Value>> {
        let mut out: Vec<Vec<Value>> = a.rows().map(|r| r.to_vec()).collect();
        out.sort();
        out
    }

    /// Restoring from the changelog's records (each change's key, row and state, latest per
    /// key) gives back the same rows and state: a restart loses and repeats nothing.
    fn restored(plan: &Plan, changes: &[Change]) -> Aggregator {
        let mut latest: HashMap<Vec<u8>, &Change> = HashMap::new();
        for c in changes {
            latest.insert(c.key.clone(), c);
        }
        let mut b = Aggregator::new(plan, false);
        for c in latest.values() {
            // As `maintain::restore` reads the topic: a state restores the group (row or
            // HAVING-hidden tombstone); a tombstone without state removes it.
            match &c.state {
                Some(s) => b.restore(c.key.clone(), s).unwrap(),
                None => b.remove(&c.key),
            }
        }
        b
    }

    #[test]
    fn groups_having_and_restore() {
        let plan = table_plan("CREATE TABLE x AS SELECT k, COUNT(*) AS n, AVG(v) AS a, COUNT(DISTINCT v) AS d FROM s GROUP BY k HAVING COUNT(*) > 1");
        let mut a = Aggregator::new(&plan, false);
        let mut log = Vec::new();
        for (k, v) in [("x", 1), ("y", 5), ("x", 3), ("x", 3)] {
            a.add(&row(k, v, 0), 0).unwrap();
            log.extend(a.changes(true));
        }
        // y has one event: HAVING hides it.
        assert_eq!(rows(&a), vec![vec![Value::string("x"), Value::Int(3), Value::Double(7.0 / 3.0), Value::Int(2)]]);
        let mut b = restored(&plan, &log);
        assert_eq!(rows(&b), rows(&a));
        // Both go on alike.
        for agg in [&mut a, &mut b] {
            agg.add(&row("y", 5, 0), 0).unwrap();
            agg.changes(true);
        }
        assert_eq!(rows(&a), rows(&b));
        assert_eq!(rows(&a).len(), 2);
    }

    #[test]
    fn a_bad_event_changes_nothing() {
        let plan = table_plan("CREATE TABLE x AS SELECT k, SUM(v) AS s, COUNT(*) AS n FROM s GROUP BY k");
        let mut a = Aggregator::new(&plan, false);
        a.add(&row("x", i64::MAX, 0), 0).unwrap();
        a.changes(true);
        // SUM would overflow: refused, and COUNT (checked first in order) did not move either.
        assert!(a.add(&row("x", 1, 0), 0).is_err());
        assert!(a.changes(true).is_empty());
        assert_eq!(rows(&a), vec![vec![Value::string("x"), Value::Int(i64::MAX), Value::Int(1)]]);
    }

    #[test]
    fn sessions_merge_and_restore() {
        let plan = table_plan("CREATE TABLE x AS SELECT k, WINDOWSTART AS ws, WINDOWEND AS we, COUNT(*) AS n FROM s WINDOW SESSION (10 SECONDS) GROUP BY k");
        let mut a = Aggregator::new(&plan, false);
        let mut log = Vec::new();
        for t in [0, 5_000, 30_000] {
            a.add(&row("x", 1, t), t).unwrap();
            log.extend(a.changes(true));
        }
        assert_eq!(rows(&a).len(), 2);
        // 21 s is 16 s after 5 s and 9 s before 30 s: it joins the second session.
        a.add(&row("x", 1, 21_000), 21_000).unwrap();
        log.extend(a.changes(true));
        // 13 s bridges the two (8 s after 5 s, 8 s before 21 s): one session of five.
        a.add(&row("x", 1, 13_000), 13_000).unwrap();
        let last = a.changes(true);
        assert!(last.iter().any(|c| c.row.is_none()), "the merged-away session is deleted");
        log.extend(last);
        assert_eq!(rows(&a), vec![vec![Value::string("x"), Value::Int(0), Value::Int(30_000), Value::Int(5)]]);
        let b = restored(&plan, &log);
        assert_eq!(rows(&b), rows(&a));
    }
}
